/*
 * resolver.c - see resolver.h.
 *
 * The store is reached through four reads and one write, all in the section "the store" below:
 * an adapter by name or id (its record), a checkpoint by model id (its job and record), an
 * adapter's files by id, a checkpoint's adapter by id, and the registration of a checkpoint's
 * adapter. The bytes are blobs the records name (blobs.h), read checked against their names.
 */
#include "resolver.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/adapter.h"
#include "hlpt/err.h"
#include "hlpt/train.h"
#include "jobs.h"
#include "log.h"

#define CKPT_MARK ":ckpt-step-"

/* A checkpoint served before it was registered. */
typedef struct pending {
    char name[256]; /* its model id, the adapter's name to be */
    char checkpoint_id[HLPTD_ID_MAX];
    char job_id[HLPTD_ID_MAX];
    struct pending *next;
} pending;

struct hlptd_resolver {
    char *db_path, *base_name;
    hlptd_blobs *blobs;    /* borrowed */
    const hlpt_config *base;
    void (*on_pending)(void *ctx);
    void *ctx;
    hlptd_store *st;        /* inference thread only: its read connection, opened on first use */
    pthread_mutex_t mu;
    pending *pending;      /* under mu */
};

int hlptd_resolver_is_base(const char *base_name, const char *model) {
    return !strcmp(model, "base") || !strcmp(model, base_name);
}

/* ---- the store ------------------------------------------------------------------------------------ */

int hlptd_resolver_checkpoint(hlptd_store *st, const char *base_name, const char *model, hlptd_job **job,
                              hlptd_checkpoint **ck, char *why, size_t len) {
    *job = NULL;
    *ck = NULL;
    const char *mark = strstr(model, CKPT_MARK);
    char *end;
    if (!mark) return hlpt_why(why, len, HLPT_ERR_NOENT, "no model `%s`", model);
    long long step = strtoll(mark + strlen(CKPT_MARK), &end, 10);
    const char *tail = mark;
    while (tail > model && tail[-1] != ':') tail--;
    char job_id[HLPTD_ID_MAX], name[512];
    if (*end || step < 0 || tail == model || mark - tail >= HLPTD_ID_MAX - (int)strlen(HLPTD_ID_JOB))
        return hlpt_why(why, len, HLPT_ERR_NOENT, "no model `%s`", model);
    snprintf(job_id, sizeof job_id, "%s%.*s", HLPTD_ID_JOB, (int)(mark - tail), tail);
    if (hlptd_store_job_get(st, job_id, job, why, len) != HLPT_OK)
        return hlpt_why(why, len, HLPT_ERR_NOENT, "no model `%s`", model);
    hlptd_jobs_model_name(base_name, *job, step, name, sizeof name);
    if (strcmp(name, model) || hlptd_store_checkpoint_at_step(st, job_id, step, ck, why, len) != HLPT_OK) {
        hlptd_job_free(*job);
        *job = NULL;
        return hlpt_why(why, len, HLPT_ERR_NOENT, "no model `%s`", model);
    }
    return HLPT_OK;
}

int hlptd_resolver_lookup(hlptd_store *st, const char *base_name, const char *model, hlptd_model_ref *out, char *why,
                          size_t len) {
    memset(out, 0, sizeof *out);
    if (hlptd_resolver_is_base(base_name, model)) {
        out->is_base = 1;
        return HLPT_OK;
    }
    int err = hlptd_store_adapter_get(st, model, &out->adapter, why, len);
    if (err != HLPT_ERR_NOENT) return err;
    return hlptd_resolver_checkpoint(st, base_name, model, &out->job, &out->ck, why, len);
}

void hlptd_model_ref_clear(hlptd_model_ref *ref) {
    hlptd_adapter_rec_free(ref->adapter);
    hlptd_job_free(ref->job);
    hlptd_checkpoint_free(ref->ck);
    memset(ref, 0, sizeof *ref);
}

/* Reads the blob sha256 whole, checked against its name: fetched first when this node lacks it,
 * and fetched again when its copy here is damaged (store.h, hlptd_store_blob_local). */
static int read_blob(hlptd_store *st, hlptd_blobs *blobs, const char *sha256, char **buf, size_t *n, char *why,
                     size_t len) {
    int err = hlptd_store_blob_local(st, sha256, 0, why, len);
    if (!err) err = hlptd_blob_read(blobs, sha256, (size_t)1 << 34, buf, n, why, len);
    if (err == HLPT_ERR_FORMAT && !(err = hlptd_store_blob_local(st, sha256, 1, why, len)))
        err = hlptd_blob_read(blobs, sha256, (size_t)1 << 34, buf, n, why, len);
    return err;
}

/* An adapter's two files by id. */
static int adapter_files(hlptd_store *st, hlptd_blobs *blobs, const char *id, char **config, size_t *config_len,
                         void **weights, size_t *weights_len, char *why, size_t len) {
    hlptd_adapter_rec *a = NULL;
    int err = hlptd_store_adapter_get(st, id, &a, why, len);
    if (!err) err = read_blob(st, blobs, a->sha256, (char **)weights, weights_len, why, len);
    if (!err && !(*config = strdup(a->config))) err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    if (!err) *config_len = strlen(*config);
    hlptd_adapter_rec_free(a);
    return err;
}

/* The adapter a checkpoint holds, by the checkpoint's id: *out owned. */
static int checkpoint_adapter(hlptd_store *st, hlptd_blobs *blobs, const hlpt_config *base, const char *checkpoint_id,
                              hlpt_adapter **out, char *why, size_t len) {
    hlptd_checkpoint *ck = NULL;
    char *state = NULL;
    size_t n = 0;
    int err = hlptd_store_checkpoint_get(st, checkpoint_id, &ck, why, len);
    if (!err) err = read_blob(st, blobs, ck->sha256, &state, &n, why, len);
    if (!err) err = hlpt_checkpoint_adapter(state, n, base, out, why, len);
    hlptd_checkpoint_free(ck);
    free(state);
    return err;
}

/* An adapter's two files, as a stored adapter has them. */
static int to_files(const hlpt_adapter *a, char **config, size_t *config_len, void **weights, size_t *weights_len,
                    char *why, size_t len) {
    int err = hlpt_adapter_to_safetensors(a, a->params, NULL, weights, weights_len, why, len);
    if (!err && !(*config = hlpt_adapter_config_json(&a->cfg))) err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    if (!err) *config_len = strlen(*config);
    return err;
}

/* Registers the adapter of checkpoint p->checkpoint_id under the name p->name: its weights become a
 * blob, which the insert puts into place with the row (or removes when the row is not stored). */
static int register_checkpoint(hlptd_store *st, hlptd_blobs *blobs, const hlpt_config *base, const pending *p,
                               char *why, size_t len) {
    hlpt_adapter *a = NULL;
    char *cfg = NULL, sha[HLPT_SHA256_HEX], tmp[HLPTD_BLOB_TMP_MAX];
    void *weights = NULL;
    size_t cn = 0, wn = 0;
    int err = checkpoint_adapter(st, blobs, base, p->checkpoint_id, &a, why, len);
    if (!err) err = to_files(a, &cfg, &cn, &weights, &wn, why, len);
    if (!err) err = hlptd_blob_put_sealed(blobs, weights, wn, sha, tmp, sizeof tmp, why, len);
    if (!err) {
        hlptd_adapter_fields in = {.name = p->name, .config = cfg, .sha256 = sha, .bytes = (int64_t)wn, .tmp = tmp,
                                   .base_hash = a->cfg.base_hash[0] ? a->cfg.base_hash : NULL,
                                   .job_id = p->job_id, .checkpoint_id = p->checkpoint_id};
        err = hlptd_store_adapter_insert(st, &in, NULL, why, len);
    }
    free(cfg);
    free(weights);
    hlpt_adapter_free(a);
    return err;
}

/* ---- the inference thread's hooks ------------------------------------------------------------------ */

static int connect_store(hlptd_resolver *r, char *why, size_t len) {
    return r->st ? HLPT_OK : hlptd_store_open(&r->st, r->db_path, r->blobs, why, len);
}

/* Notes a checkpoint served before its registration (once until the loop has registered it). */
static void note_pending(hlptd_resolver *r, const char *name, const hlptd_checkpoint *ck) {
    pthread_mutex_lock(&r->mu);
    int known = 0;
    for (pending *p = r->pending; p && !known; p = p->next) known = !strcmp(p->name, name);
    pending *p = known ? NULL : calloc(1, sizeof *p);
    if (p) {
        snprintf(p->name, sizeof p->name, "%s", name);
        snprintf(p->checkpoint_id, sizeof p->checkpoint_id, "%s", ck->id);
        snprintf(p->job_id, sizeof p->job_id, "%s", ck->job_id);
        p->next = r->pending;
        r->pending = p;
    }
    pthread_mutex_unlock(&r->mu);
    /* Out of memory: nothing is noted, and the next request for it tries again. */
    if (p && r->on_pending) r->on_pending(r->ctx);
}

static int resolve(void *ctx, const char *model, char *key, size_t key_len, char *label, size_t label_len, char *why,
                   size_t len) {
    hlptd_resolver *r = ctx;
    key[0] = 0;
    if (hlptd_resolver_is_base(r->base_name, model)) {
        snprintf(label, label_len, "base");
        return HLPT_OK;
    }
    hlptd_model_ref ref;
    int err = connect_store(r, why, len);
    if (err || (err = hlptd_resolver_lookup(r->st, r->base_name, model, &ref, why, len))) return err;
    if (ref.adapter) {
        snprintf(key, key_len, "%s", ref.adapter->id);
        snprintf(label, label_len, "%s", ref.adapter->name);
    } else {
        snprintf(key, key_len, "%s", ref.ck->id);
        snprintf(label, label_len, "%s", model);
        note_pending(r, model, ref.ck);
    }
    hlptd_model_ref_clear(&ref);
    return HLPT_OK;
}

static int fetch(void *ctx, const char *key, char **config, size_t *config_len, void **weights, size_t *weights_len,
                 char *why, size_t len) {
    hlptd_resolver *r = ctx;
    *config = NULL;
    *weights = NULL;
    int err = connect_store(r, why, len);
    if (err) return err;
    if (strncmp(key, HLPTD_ID_CHECKPOINT, strlen(HLPTD_ID_CHECKPOINT)))
        return adapter_files(r->st, r->blobs, key, config, config_len, weights, weights_len, why, len);
    hlpt_adapter *a = NULL;
    if (!(err = checkpoint_adapter(r->st, r->blobs, r->base, key, &a, why, len)))
        err = to_files(a, config, config_len, weights, weights_len, why, len);
    hlpt_adapter_free(a);
    return err;
}

/* ---- the resolver ------------------------------------------------------------------------------------ */

int hlptd_resolver_new(const hlptd_resolver_opts *o, hlptd_resolver **out) {
    *out = NULL;
    hlptd_resolver *r = calloc(1, sizeof *r);
    if (!r) return HLPT_ERR_NOMEM;
    r->db_path = strdup(o->db_path);
    r->base_name = strdup(o->base_name);
    if (!r->db_path || !r->base_name || pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r->db_path);
        free(r->base_name);
        free(r);
        return HLPT_ERR_NOMEM;
    }
    r->base = o->base;
    r->blobs = o->blobs;
    r->on_pending = o->on_pending;
    r->ctx = o->ctx;
    *out = r;
    return HLPT_OK;
}

void hlptd_resolver_free(hlptd_resolver *r) {
    if (!r) return;
    while (r->pending) {
        pending *p = r->pending;
        r->pending = p->next;
        free(p);
    }
    hlptd_store_close(r->st);
    pthread_mutex_destroy(&r->mu);
    free(r->db_path);
    free(r->base_name);
    free(r);
}

void hlptd_resolver_hook(hlptd_resolver *r, hlptd_infer_opts *o) {
    o->resolve = resolve;
    o->fetch = fetch;
    o->ctx = r;
}

void hlptd_resolver_register_pending(hlptd_resolver *r, hlptd_store *st) {
    pthread_mutex_lock(&r->mu);
    pending *list = r->pending;
    r->pending = NULL;
    pthread_mutex_unlock(&r->mu);
    while (list) {
        pending *p = list;
        list = p->next;
        char why[512];
        hlptd_adapter_rec *have = NULL;
        int err = hlptd_store_adapter_get(st, p->name, &have, why, sizeof why);
        hlptd_adapter_rec_free(have);
        if (err == HLPT_ERR_NOENT) err = register_checkpoint(st, r->blobs, r->base, p, why, sizeof why);
        if (err && err != HLPT_ERR_EXISTS)
            hlptd_warn("registering checkpoint %s as the adapter %s failed: %s", p->checkpoint_id, p->name, why);
        free(p);
    }
}
