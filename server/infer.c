/*
 * infer.c - the inference thread.
 *
 * DESIGN
 * One thread owns the runner, every live generation and the adapter cache. HTTP threads hand it
 * requests through a mutex-protected queue and a condition variable; it never waits on them.
 * Each iteration admits queued requests (up to max_batch sequences and max_prefill prompt tokens),
 * then runs ONE hlpt_model_step over every live sequence: prompts being prefilled and tokens being
 * decoded, for the base and for any mix of adapters alike (the model runs the base's matrices once
 * over all rows and each adapter on its own rows). Finished and cancelled requests leave after the
 * step; new ones join before the next: continuous batching.
 *
 * Each admitted request's `model` is resolved here, on this thread (the resolve hook: a store read
 * through a connection of this thread's own, server/resolver.h), to the cache key of the adapter
 * that serves it; so an HTTP thread submits a request directly and nothing waits for the loop.
 *
 * The adapter cache holds loaded adapters by key with a byte budget. An adapter in use by a live
 * request is pinned (refcount); beyond the budget the least recently used unpinned ones are freed,
 * and their parameter arenas go back to the system (adapter.c maps them).
 */
#include "infer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hlpt/engine.h"
#include "hlpt/err.h"

typedef struct cached {
    char id[HLPTD_KEY_MAX];
    hlpt_adapter *a;
    size_t bytes;
    int refs;
    int forgotten;            /* deleted: free as soon as unpinned */
    unsigned long last_used;
    struct cached *next;
} cached;

typedef struct {
    hlptd_infer_req *r;
    cached *ad;
} live;

struct hlptd_infer {
    const hlpt_model *m;
    hlptd_infer_opts o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    hlptd_infer_req *queue_head, *queue_tail;  /* guarded by mu */
    int queued;                          /* guarded by mu */
    int stopping;                        /* guarded by mu */
    int cancel_all;                      /* guarded by mu: hlptd_infer_cancel_all was called */
    char forget[16][HLPTD_KEY_MAX];      /* guarded by mu: keys to drop */
    int n_forget;
    hlptd_infer_stats stats;             /* guarded by mu (copied out) */
    int joined;                          /* hlptd_infer_stop has joined the thread (its caller's) */
    /* inference thread only */
    hlpt_runner *runner;
    hlpt_seq **seqs;          /* [max_batch] one step's sequences, tokens and counts */
    const int **toks;
    int *counts;
    live *act;
    int n_act;
    cached *cache;
    unsigned long tick;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static size_t adapter_bytes(const hlpt_adapter *a) { return (a->n_params + 1) * sizeof(float); }

/* Unlinks and frees c (unpinned). */
static void cache_drop(hlptd_infer *inf, cached **link) {
    cached *c = *link;
    *link = c->next;
    hlpt_adapter_free(c->a);
    free(c);
    pthread_mutex_lock(&inf->mu);
    inf->stats.adapter_evictions++;
    pthread_mutex_unlock(&inf->mu);
}

/* Publishes the cache's size to the stats (the list itself is the inference thread's alone). */
static void cache_account(hlptd_infer *inf) {
    int n = 0;
    size_t bytes = 0;
    for (cached *c = inf->cache; c; c = c->next) {
        n++;
        bytes += c->bytes;
    }
    pthread_mutex_lock(&inf->mu);
    inf->stats.adapters_resident = n;
    inf->stats.adapter_bytes = bytes;
    inf->stats.active = inf->n_act;
    pthread_mutex_unlock(&inf->mu);
}

/* Frees forgotten adapters once unpinned, then least recently used unpinned ones while over budget. */
static void cache_trim(hlptd_infer *inf) {
    size_t total = 0;
    for (cached **l = &inf->cache; *l;) {
        if ((*l)->forgotten && (*l)->refs == 0) {
            cache_drop(inf, l);
            continue;
        }
        total += (*l)->bytes;
        l = &(*l)->next;
    }
    while (total > inf->o.adapter_budget) {
        cached **victim = NULL;
        for (cached **l = &inf->cache; *l; l = &(*l)->next)
            if ((*l)->refs == 0 && (!victim || (*l)->last_used < (*victim)->last_used)) victim = l;
        if (!victim) break; /* everything is pinned by live requests */
        total -= (*victim)->bytes;
        cache_drop(inf, victim);
    }
    cache_account(inf);
}

/* The loaded adapter for id, pinned; loads it on a miss. */
static int cache_get(hlptd_infer *inf, const char *id, cached **out, char *why, size_t len) {
    *out = NULL;
    for (cached *c = inf->cache; c; c = c->next)
        if (!strcmp(c->id, id) && !c->forgotten) {
            c->refs++;
            c->last_used = ++inf->tick;
            *out = c;
            return HLPT_OK;
        }
    if (!inf->o.fetch) return hlpt_why(why, len, HLPT_ERR_NOENT, "adapter %s is not known", id);
    char *cfg = NULL;
    void *w = NULL;
    size_t cn = 0, wn = 0;
    int err = inf->o.fetch(inf->o.ctx, id, &cfg, &cn, &w, &wn, why, len);
    if (err) {
        free(cfg);
        free(w);
        return err;
    }
    hlpt_adapter *a = NULL;
    err = hlpt_adapter_load_mem(cfg, cn, w, wn, hlpt_model_config(inf->m), hlpt_model_hash(inf->m), &a, why, len);
    free(cfg);
    free(w);
    /* Every stored adapter loaded when it was stored: one that no longer does is damaged, the
     * server's fault (500), not the client's. One made for another base stays a 422. */
    if (err && err != HLPT_ERR_NOMEM && err != HLPT_ERR_MISMATCH) {
        char detail[256];
        snprintf(detail, sizeof detail, "%s", why);
        return hlpt_why(why, len, HLPT_ERR_IO, "the stored adapter %s is damaged: %s", id, detail);
    }
    if (err) return err;
    cached *c = calloc(1, sizeof *c);
    if (!c) {
        hlpt_adapter_free(a);
        return HLPT_ERR_NOMEM;
    }
    snprintf(c->id, sizeof c->id, "%s", id);
    c->a = a;
    c->bytes = adapter_bytes(a);
    c->refs = 1;
    c->last_used = ++inf->tick;
    c->next = inf->cache;
    inf->cache = c;
    pthread_mutex_lock(&inf->mu);
    inf->stats.adapter_loads++;
    pthread_mutex_unlock(&inf->mu);
    cache_trim(inf);
    *out = c;
    return HLPT_OK;
}

static void finish(hlptd_infer *inf, live *lv, hlptd_infer_ev ev) {
    hlptd_infer_req *r = lv->r;
    hlpt_gen *g = r->gen;
    r->done_s = now_s();
    /* The last callback: its owner may free r in it, so r is not touched after it. */
    r->on_event(r, ev, NULL, 0);
    hlpt_gen_free(g);
    if (lv->ad) lv->ad->refs--;
}

static void fail_req(hlptd_infer_req *r, int err) {
    r->err = err;
    r->done_s = now_s();
    r->on_event(r, HLPTD_INFER_ERROR, NULL, 0);
}

/* What serves r: its adapter's cache key into key ("" for the base), its label into r->label. */
static int resolve(hlptd_infer *inf, hlptd_infer_req *r, char key[HLPTD_KEY_MAX]) {
    key[0] = 0;
    if (inf->o.resolve)
        return inf->o.resolve(inf->o.ctx, r->model, key, HLPTD_KEY_MAX, r->label, sizeof r->label, r->why, sizeof r->why);
    if (strlen(r->model) >= HLPTD_KEY_MAX) return hlpt_why(r->why, sizeof r->why, HLPT_ERR_NOENT, "no model `%s`", r->model);
    snprintf(key, HLPTD_KEY_MAX, "%.*s", HLPTD_KEY_MAX - 1, r->model);
    snprintf(r->label, sizeof r->label, "%.*s", (int)sizeof r->label - 1, r->model[0] ? r->model : "base");
    return HLPT_OK;
}

/* Moves queued requests into the live set within the batch and prefill limits. */
static void admit(hlptd_infer *inf) {
    int prefill = 0;
    for (;;) {
        pthread_mutex_lock(&inf->mu);
        hlptd_infer_req *r = inf->queue_head;
        int fits = r && inf->n_act < inf->o.max_batch &&
                   (prefill == 0 || prefill + r->n_prompt <= inf->o.max_prefill);
        if (fits) {
            inf->queue_head = r->next;
            if (!inf->queue_head) inf->queue_tail = NULL;
            inf->queued--;
        }
        pthread_mutex_unlock(&inf->mu);
        if (!fits) return;
        if (atomic_load(&r->cancelled)) {
            fail_req(r, HLPT_ERR_CANCELLED);
            continue;
        }
        char key[HLPTD_KEY_MAX];
        int err = resolve(inf, r, key);
        if (err) {
            fail_req(r, err);
            continue;
        }
        r->on_event(r, HLPTD_INFER_START, NULL, 0);
        cached *ad = NULL;
        err = key[0] ? cache_get(inf, key, &ad, r->why, sizeof r->why) : HLPT_OK;
        if (!err)
            err = hlpt_gen_new(inf->m, ad ? ad->a : NULL, r->prompt, r->n_prompt, &r->params, &r->gen, r->why,
                               sizeof r->why);
        if (err) {
            if (ad) ad->refs--;
            fail_req(r, err);
            continue;
        }
        inf->act[inf->n_act++] = (live){r, ad};
        prefill += r->n_prompt;
        pthread_mutex_lock(&inf->mu);
        inf->stats.prompt_tokens += r->n_prompt;
        pthread_mutex_unlock(&inf->mu);
    }
}

static void apply_forgets(hlptd_infer *inf) {
    pthread_mutex_lock(&inf->mu);
    for (int i = 0; i < inf->n_forget; i++)
        for (cached *c = inf->cache; c; c = c->next)
            if (!strcmp(c->id, inf->forget[i])) c->forgotten = 1;
    inf->n_forget = 0;
    pthread_mutex_unlock(&inf->mu);
    cache_trim(inf);
}

static void *infer_main(void *arg) {
    hlptd_infer *inf = arg;
    /* OpenMP sizes its team per calling thread: the setting of the thread that started this one
     * does not carry over (include/hlpt/engine.h). */
    if (inf->o.threads > 0) hlpt_engine_set_threads(inf->o.threads);
    int V = hlpt_model_config(inf->m)->vocab;
    hlpt_seq **seqs = inf->seqs;
    const int **toks = inf->toks;
    int *counts = inf->counts;
    for (;;) {
        pthread_mutex_lock(&inf->mu);
        while (!inf->queue_head && inf->n_act == 0 && !inf->stopping && !inf->n_forget)
            pthread_cond_wait(&inf->cv, &inf->mu);
        int stop = inf->stopping && !inf->queue_head && inf->n_act == 0;
        int cancel = inf->cancel_all;
        for (hlptd_infer_req *q = inf->queue_head; cancel && q; q = q->next) atomic_store(&q->cancelled, 1);
        pthread_mutex_unlock(&inf->mu);
        for (int i = 0; cancel && i < inf->n_act; i++) atomic_store(&inf->act[i].r->cancelled, 1);
        apply_forgets(inf);
        if (stop) break;
        admit(inf);
        if (inf->n_act == 0) continue;

        /* Cancelled requests leave before the step. */
        for (int i = 0; i < inf->n_act;) {
            if (atomic_load(&inf->act[i].r->cancelled)) {
                finish(inf, &inf->act[i], HLPTD_INFER_DONE);
                inf->act[i] = inf->act[--inf->n_act];
            } else {
                i++;
            }
        }
        if (inf->n_act == 0) continue;
        for (int i = 0; i < inf->n_act; i++) hlpt_gen_next(inf->act[i].r->gen, &seqs[i], &toks[i], &counts[i]);
        const float *logits;
        char why[256] = "";
        int err = hlpt_model_step(inf->runner, seqs, toks, counts, inf->n_act, 0, &logits, why, sizeof why);
        double t = now_s();
        int n_done = 0;
        for (int i = 0; i < inf->n_act; i++) {
            live *lv = &inf->act[i];
            hlptd_infer_req *r = lv->r;
            if (err) {
                snprintf(r->why, sizeof r->why, "%s", why);
                r->err = err;
                finish(inf, lv, HLPTD_INFER_ERROR);
                lv->r = NULL;
                n_done++;
                continue;
            }
            int done = hlpt_gen_accept(r->gen, logits + (size_t)i * V);
            if (!r->first_token_s) r->first_token_s = t;
            size_t ready = hlpt_gen_text_ready(r->gen), n;
            const char *text = hlpt_gen_text(r->gen, &n);
            if (ready > r->sent) {
                r->on_event(r, HLPTD_INFER_TEXT, text + r->sent, ready - r->sent);
                r->sent = ready;
            }
            if (done) {
                finish(inf, lv, HLPTD_INFER_DONE);
                lv->r = NULL;
                n_done++;
            }
        }
        pthread_mutex_lock(&inf->mu);
        inf->stats.steps++;
        inf->stats.tokens_generated += err ? 0 : inf->n_act;
        inf->stats.last_batch = inf->n_act;
        pthread_mutex_unlock(&inf->mu);
        if (n_done || inf->stats.active != inf->n_act) {
            int k = 0;
            for (int i = 0; i < inf->n_act; i++)
                if (inf->act[i].r) inf->act[k++] = inf->act[i];
            inf->n_act = k;
            cache_trim(inf);
        }
    }
    return NULL;
}

int hlptd_infer_start(const hlpt_model *m, const hlptd_infer_opts *o, hlptd_infer **out) {
    *out = NULL;
    hlptd_infer *inf = calloc(1, sizeof *inf);
    if (!inf) return HLPT_ERR_NOMEM;
    inf->m = m;
    inf->o = *o;
    if (inf->o.max_batch < 1) inf->o.max_batch = 16;
    if (inf->o.max_prefill < 1) inf->o.max_prefill = 2048;
    inf->act = calloc((size_t)inf->o.max_batch, sizeof *inf->act);
    inf->seqs = calloc((size_t)inf->o.max_batch, sizeof *inf->seqs);
    inf->toks = calloc((size_t)inf->o.max_batch, sizeof *inf->toks);
    inf->counts = calloc((size_t)inf->o.max_batch, sizeof *inf->counts);
    int err = inf->act && inf->seqs && inf->toks && inf->counts ? hlpt_runner_new(m, &inf->runner) : HLPT_ERR_NOMEM;
    if (err) {
        free(inf->act);
        free(inf->seqs);
        free(inf->toks);
        free(inf->counts);
        free(inf);
        return err;
    }
    pthread_mutex_init(&inf->mu, NULL);
    pthread_cond_init(&inf->cv, NULL);
    if (pthread_create(&inf->thread, NULL, infer_main, inf) != 0) {
        hlpt_runner_free(inf->runner);
        free(inf->seqs);
        free(inf->toks);
        free(inf->counts);
        free(inf->act);
        free(inf);
        return HLPT_ERR_INTERNAL;
    }
    *out = inf;
    return HLPT_OK;
}

void hlptd_infer_stop(hlptd_infer *inf) {
    if (!inf || inf->joined) return;
    pthread_mutex_lock(&inf->mu);
    inf->stopping = 1;
    pthread_cond_signal(&inf->cv);
    pthread_mutex_unlock(&inf->mu);
    pthread_join(inf->thread, NULL);
    inf->joined = 1;
}

void hlptd_infer_free(hlptd_infer *inf) {
    if (!inf) return;
    hlptd_infer_stop(inf);
    while (inf->cache) {
        cached *c = inf->cache;
        inf->cache = c->next;
        hlpt_adapter_free(c->a);
        free(c);
    }
    hlpt_runner_free(inf->runner);
    pthread_mutex_destroy(&inf->mu);
    pthread_cond_destroy(&inf->cv);
    free(inf->seqs);
    free(inf->toks);
    free(inf->counts);
    free(inf->act);
    free(inf);
}

int hlptd_infer_submit(hlptd_infer *inf, hlptd_infer_req *r) {
    r->next = NULL;
    r->sent = 0;
    r->gen = NULL;
    r->err = 0;
    r->first_token_s = r->done_s = 0;
    r->submitted_s = now_s();
    pthread_mutex_lock(&inf->mu);
    if (inf->stopping) {
        pthread_mutex_unlock(&inf->mu);
        return HLPT_ERR_STATE;
    }
    if (inf->queue_tail) inf->queue_tail->next = r;
    else inf->queue_head = r;
    inf->queue_tail = r;
    inf->queued++;
    pthread_cond_signal(&inf->cv);
    pthread_mutex_unlock(&inf->mu);
    return HLPT_OK;
}

void hlptd_infer_cancel(hlptd_infer *inf, hlptd_infer_req *r) {
    pthread_mutex_lock(&inf->mu);
    atomic_store(&r->cancelled, 1);
    pthread_cond_signal(&inf->cv);
    pthread_mutex_unlock(&inf->mu);
}

void hlptd_infer_cancel_all(hlptd_infer *inf) {
    pthread_mutex_lock(&inf->mu);
    inf->cancel_all = 1;
    pthread_cond_signal(&inf->cv);
    pthread_mutex_unlock(&inf->mu);
}

void hlptd_infer_forget(hlptd_infer *inf, const char *adapter_id) {
    pthread_mutex_lock(&inf->mu);
    if (inf->n_forget < 16) snprintf(inf->forget[inf->n_forget++], HLPTD_KEY_MAX, "%s", adapter_id);
    pthread_cond_signal(&inf->cv);
    pthread_mutex_unlock(&inf->mu);
}

void hlptd_infer_get_stats(hlptd_infer *inf, hlptd_infer_stats *s) {
    pthread_mutex_lock(&inf->mu);
    *s = inf->stats;
    s->queued = inf->queued;
    pthread_mutex_unlock(&inf->mu);
}
