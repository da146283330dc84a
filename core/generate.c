/*
 * generate.c - sampling, stop rules and the state of one generation request (see generate.h).
 *
 * A request's text is re-decoded from all of its generated ids after each token: decoding is cheap
 * next to a model step, and it keeps byte-fallback and byte-level pieces exact (a character split
 * over two tokens appears whole once its last byte arrives).
 */
#include "hlpt/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/err.h"
#include "hlpt/tokenizer.h"
#include "rng.h"

static size_t sample_scratch_bytes(int V);

struct hlpt_gen {
    const hlpt_model *m;
    const hlpt_adapter *a;
    hlpt_gen_params p;
    hlpt_seq *seq;
    int *ids;            /* prompt then generated, [n_prompt + max_tokens] */
    int n_prompt, n_gen;
    int recompute;       /* sequence gates: re-feed everything each step */
    hlpt_gen_token *toks;/* [max_tokens] */
    float *work;         /* [V] the logits the sampler may reorder */
    void *cands;         /* [V] the sampler's sort buffer */
    char *text;          /* decoded completion */
    size_t text_len;
    size_t ready;
    hlpt_finish finish;
    uint64_t rng;
};

void hlpt_gen_params_defaults(hlpt_gen_params *p) {
    memset(p, 0, sizeof *p);
    p->max_tokens = 16;
    p->temperature = 1.0f;
    p->top_p = 1.0f;
}

int hlpt_gen_new(const hlpt_model *m, const hlpt_adapter *a, const int *prompt, int n,
                 const hlpt_gen_params *p, hlpt_gen **out, char *why, size_t len) {
    *out = NULL;
    const hlpt_config *c = hlpt_model_config(m);
    if (n <= 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "the prompt has no tokens");
    if (p->max_tokens < 1) return hlpt_why(why, len, HLPT_ERR_INVAL, "max_tokens must be at least 1");
    int pos0 = a && a->has_prefix ? a->cfg.n_virtual : 0;
    if ((long)n + p->max_tokens + pos0 > c->max_pos)
        return hlpt_why(why, len, HLPT_ERR_RANGE,
                        "prompt (%d tokens) + max_tokens (%d) exceed the model's context of %d", n,
                        p->max_tokens, c->max_pos - pos0);
    for (int i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= c->vocab)
            return hlpt_why(why, len, HLPT_ERR_RANGE, "prompt token %d is out of range", prompt[i]);
    hlpt_gen *g = calloc(1, sizeof *g);
    if (!g) return HLPT_ERR_NOMEM;
    g->m = m;
    g->a = a;
    g->p = *p;
    g->n_prompt = n;
    g->recompute = a && a->cfg.gate == HLPT_GATE_SEQUENCE;
    g->rng = rng_mix(p->seed ^ 0x5eedULL);
    g->ids = malloc(sizeof(int) * ((size_t)n + p->max_tokens));
    g->toks = calloc((size_t)p->max_tokens, sizeof *g->toks);
    g->text = calloc(1, 1);
    /* Per-request scratch, so that a token costs no allocation. */
    g->work = malloc(sizeof(float) * (size_t)c->vocab);
    g->cands = malloc(sample_scratch_bytes(c->vocab));
    int err = g->ids && g->toks && g->text && g->work && g->cands ? hlpt_seq_new(m, a, n + p->max_tokens, &g->seq)
                                                                  : HLPT_ERR_NOMEM;
    if (err) {
        hlpt_gen_free(g);
        return err;
    }
    memcpy(g->ids, prompt, sizeof(int) * (size_t)n);
    *out = g;
    return HLPT_OK;
}

void hlpt_gen_free(hlpt_gen *g) {
    if (!g) return;
    hlpt_seq_free(g->seq);
    free(g->ids);
    free(g->toks);
    free(g->text);
    free(g->work);
    free(g->cands);
    free(g);
}

void hlpt_gen_next(hlpt_gen *g, hlpt_seq **seq, const int **tokens, int *n) {
    int total = g->n_prompt + g->n_gen;
    *seq = g->seq;
    if (g->recompute) hlpt_seq_reset(g->seq);
    int have = hlpt_seq_len(g->seq);
    *tokens = g->ids + have;
    *n = total - have;
}

int hlpt_gen_done(const hlpt_gen *g) { return g->finish != HLPT_FINISH_NONE; }
hlpt_finish hlpt_gen_finish(const hlpt_gen *g) { return g->finish; }

const char *hlpt_gen_text(const hlpt_gen *g, size_t *n) {
    if (n) *n = g->text_len;
    return g->text;
}
size_t hlpt_gen_text_ready(const hlpt_gen *g) { return g->ready; }

const hlpt_gen_token *hlpt_gen_tokens(const hlpt_gen *g, int *n) {
    *n = g->n_gen;
    return g->toks;
}

/* Log-softmax value of logits[id] and, when wanted, the top alternatives. */
static void record_logprobs(hlpt_gen_token *t, const float *logits, int V, int top) {
    float mx = logits[0];
    for (int v = 1; v < V; v++) mx = logits[v] > mx ? logits[v] : mx;
    double z = 0;
    for (int v = 0; v < V; v++) z += exp((double)logits[v] - mx);
    double lz = mx + log(z);
    t->logprob = (float)(logits[t->id] - lz);
    t->n_top = 0;
    for (int v = 0; v < V; v++) {
        /* Insertion into a small sorted list: top is at most HLPT_MAX_TOP_LOGPROBS. */
        float lp = (float)(logits[v] - lz);
        if (t->n_top == top && (top == 0 || lp <= t->top_logprob[top - 1])) continue;
        int i = t->n_top < top ? t->n_top++ : top - 1;
        while (i > 0 && t->top_logprob[i - 1] < lp) {
            t->top_logprob[i] = t->top_logprob[i - 1];
            t->top_id[i] = t->top_id[i - 1];
            i--;
        }
        t->top_logprob[i] = lp;
        t->top_id[i] = v;
    }
}

typedef struct {
    float logit;
    int id;
} cand;

static size_t sample_scratch_bytes(int V) { return sizeof(cand) * (size_t)(V > 0 ? V : 1); }

static int cand_desc(const void *x, const void *y) {
    const cand *a = x, *b = y;
    if (a->logit != b->logit) return a->logit < b->logit ? 1 : -1;
    return a->id - b->id;
}

/* The sampler with its sort buffer given (V cands). */
static int sample(float *logits, cand *c, int V, const hlpt_gen_params *p, uint64_t *state) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    if (p->temperature <= 0) return best;
    float inv_t = 1.0f / p->temperature, mx = logits[best] * inv_t;
    int use_sort = p->top_k > 0 || p->top_p < 1.0f;
    if (!use_sort) {
        double z = 0;
        for (int v = 0; v < V; v++) z += exp((double)logits[v] * inv_t - mx);
        double u = rng_uniform(state) * z, acc = 0;
        for (int v = 0; v < V; v++) {
            acc += exp((double)logits[v] * inv_t - mx);
            if (acc > u) return v;
        }
        return best;
    }
    for (int v = 0; v < V; v++) c[v] = (cand){logits[v] * inv_t, v};
    qsort(c, (size_t)V, sizeof *c, cand_desc);
    int n = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    double z = 0;
    for (int i = 0; i < n; i++) z += exp((double)c[i].logit - mx);
    if (p->top_p < 1.0f) {
        /* The smallest prefix whose mass reaches top_p (at least one token). */
        double acc = 0;
        int k = 0;
        while (k < n) {
            acc += exp((double)c[k].logit - mx) / z;
            k++;
            if (acc >= p->top_p) break;
        }
        n = k;
        z = 0;
        for (int i = 0; i < n; i++) z += exp((double)c[i].logit - mx);
    }
    double u = rng_uniform(state) * z, acc = 0;
    int pick = c[n - 1].id;
    for (int i = 0; i < n; i++) {
        acc += exp((double)c[i].logit - mx);
        if (acc > u) {
            pick = c[i].id;
            break;
        }
    }
    return pick;
}

static int is_eos(const hlpt_config *c, int id) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return 1;
    return 0;
}

/* Bytes at the end of s[n] that might still change: an incomplete UTF-8 sequence, a replacement
 * character standing for one, or the beginning of a stop string. */
static size_t unsettled_tail(const hlpt_gen *g, const char *s, size_t n) {
    size_t hold = 0;
    /* A replacement character stands for bytes whose character is not complete yet (a byte-level
     * or byte-fallback piece); when the rest arrives, the text from there on changes. Everything
     * from the first one on waits (until the end, when the text is final whatever it holds). */
    const char *fffd = memmem(s, n, "\xEF\xBF\xBD", 3);
    if (fffd) hold = n - (size_t)(fffd - s);
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char ch = (unsigned char)s[n - back];
        if ((ch & 0xC0) == 0x80) continue;
        int need = ch >= 0xF0 ? 4 : ch >= 0xE0 ? 3 : ch >= 0xC0 ? 2 : 1;
        if ((size_t)need > back && back > hold) hold = back;
        break;
    }
    for (int i = 0; i < g->p.n_stop; i++) {
        size_t k = strlen(g->p.stop[i]);
        for (size_t j = k > n ? n : k - 1; j > hold; j--)
            if (!memcmp(s + n - j, g->p.stop[i], j)) {
                hold = j;
                break;
            }
    }
    return hold;
}

static int is_byte_piece(const hlpt_tokenizer *tok, int id) {
    const char *p = hlpt_tokenizer_piece(tok, id);
    return p && strlen(p) == 6 && !strncmp(p, "<0x", 3) && p[5] == '>';
}

/* HF's ByteFallback decodes a run of byte pieces ("<0xE2>") as one unit: valid UTF-8 as text,
 * otherwise one U+FFFD per byte. So while a run is still growing at the end of the completion, even
 * its whole characters may yet turn into U+FFFDs ("f" of <0x66> once <0xE2> follows): none of its
 * text is final. Special tokens are skipped before the decoder runs, so the byte pieces on either
 * side of one (</s> under ignore_eos, <unk>, <s>) are one run: <0x41> </s> is still growing, and
 * becomes two U+FFFD once <0x80> follows. Returns how many leading bytes of text precede such a
 * run (n when there is none). */
static size_t settled_before_byte_run(const hlpt_gen *g, const char *text, size_t n) {
    const hlpt_tokenizer *tok = hlpt_model_tokenizer(g->m);
    const int *gen = g->ids + g->n_prompt;
    int i = g->n_gen, bytes = 0;
    for (; i > 0; i--) {
        if (is_byte_piece(tok, gen[i - 1])) bytes++;
        else if (!hlpt_tokenizer_is_special(tok, gen[i - 1])) break;
    }
    if (bytes == 0) return n;
    if (i == 0) return 0;
    char *before = NULL;
    size_t k = 0, same = 0;
    if (hlpt_tokenizer_decode(tok, gen, i, 1, &before, &k, NULL, 0) != HLPT_OK) return 0;
    while (same < k && same < n && before[same] == text[same]) same++;
    free(before);
    return same;
}

int hlpt_gen_accept(hlpt_gen *g, const float *logits) {
    if (g->finish) return 1;
    const hlpt_config *c = hlpt_model_config(g->m);
    int V = c->vocab;
    hlpt_gen_token *t = &g->toks[g->n_gen];
    memcpy(g->work, logits, sizeof(float) * (size_t)V);
    t->id = sample(g->work, g->cands, V, &g->p, &g->rng);
    if (g->p.logprobs || g->p.top_logprobs)
        record_logprobs(t, logits, V, g->p.top_logprobs < HLPT_MAX_TOP_LOGPROBS ? g->p.top_logprobs : HLPT_MAX_TOP_LOGPROBS);
    if (!g->p.ignore_eos && is_eos(c, t->id)) {
        g->finish = HLPT_FINISH_STOP;
        g->ready = g->text_len;
        return 1;
    }
    g->ids[g->n_prompt + g->n_gen++] = t->id;

    /* Re-decode the completion; look for stop strings in the part that may have changed. */
    char *text = NULL;
    size_t n = 0;
    int gen_ids_n = g->n_gen;
    int *gen_ids = g->ids + g->n_prompt;
    if (hlpt_tokenizer_decode(hlpt_model_tokenizer(g->m), gen_ids, gen_ids_n, 1, &text, &n, NULL, 0) == HLPT_OK) {
        free(g->text);
        g->text = text;
        g->text_len = n;
    }
    for (int i = 0; i < g->p.n_stop; i++) {
        char *hit = strstr(g->text, g->p.stop[i]);
        if (hit && *g->p.stop[i]) {
            g->text_len = (size_t)(hit - g->text);
            g->text[g->text_len] = 0;
            g->finish = HLPT_FINISH_STOP;
        }
    }
    if (!g->finish && g->n_gen >= g->p.max_tokens) g->finish = HLPT_FINISH_LENGTH;
    if (g->finish) {
        g->ready = g->text_len;
    } else {
        g->ready = g->text_len - unsettled_tail(g, g->text, g->text_len);
        size_t settled = settled_before_byte_run(g, g->text, g->text_len);
        if (settled < g->ready) g->ready = settled;
    }
    return g->finish != HLPT_FINISH_NONE;
}

int hlpt_generate(hlpt_runner *r, hlpt_gen **gens, int n, char *why, size_t len) {
    hlpt_seq **seqs = malloc(sizeof *seqs * (size_t)n);
    const int **toks = malloc(sizeof *toks * (size_t)n);
    int *counts = malloc(sizeof *counts * (size_t)n);
    hlpt_gen **live = malloc(sizeof *live * (size_t)n);
    int err = seqs && toks && counts && live ? HLPT_OK : HLPT_ERR_NOMEM;
    while (!err) {
        int k = 0;
        for (int i = 0; i < n; i++) {
            if (hlpt_gen_done(gens[i])) continue;
            live[k] = gens[i];
            hlpt_gen_next(gens[i], &seqs[k], &toks[k], &counts[k]);
            k++;
        }
        if (k == 0) break;
        const float *logits;
        err = hlpt_model_step(r, seqs, toks, counts, k, 0, &logits, why, len);
        const hlpt_config *c = hlpt_model_config(gens[0]->m);
        for (int i = 0; !err && i < k; i++) hlpt_gen_accept(live[i], logits + (size_t)i * c->vocab);
    }
    free(seqs);
    free(toks);
    free(counts);
    free(live);
    return err;
}
