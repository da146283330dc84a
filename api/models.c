/*
 * models.c - /v1/models: list, retrieve and delete, and the one resolver that turns a `model` id
 * into what serves it, for these routes and for generation.
 *
 * A model id is the base model's name (or "base"), an adapter's name or id (a job's
 * fine_tuned_model is an adapter name), or a checkpoint's model id "<job's model>:ckpt-step-<N>"
 * (hlptd_jobs_model_name). A checkpoint is made servable on first use: its adapter is read out of
 * the checkpoint (hlpt_checkpoint_adapter) and registered under that id, so the inference thread
 * fetches it like any adapter. Everything here runs on the loop thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "app.h"
#include "hlpt/adapter.h"
#include "hlpt/err.h"
#include "hlpt/train.h"
#include "http.h"
#include "store.h"

#define CKPT_MARK ":ckpt-step-"

static int is_base(hlptd *d, const char *id) { return !strcmp(id, "base") || !strcmp(id, hlptd_model_name(d)); }

/* The job and checkpoint a checkpoint model id names (both owned), or HLPT_ERR_NOENT. */
static int checkpoint_of(hlptd *d, const char *id, hlpt_job **job, hlpt_checkpoint **ck, char *why, size_t len) {
    *job = NULL;
    *ck = NULL;
    const char *mark = strstr(id, CKPT_MARK);
    char *end;
    if (!mark) return hlpt_why(why, len, HLPT_ERR_NOENT, "no model `%s`", id);
    long long step = strtoll(mark + strlen(CKPT_MARK), &end, 10);
    const char *tail = mark;
    while (tail > id && tail[-1] != ':') tail--;
    char job_id[HLPT_ID_MAX], name[512];
    if (*end || step < 0 || tail == id || mark - tail >= HLPT_ID_MAX - (int)strlen(HLPT_ID_JOB))
        return hlpt_why(why, len, HLPT_ERR_NOENT, "no model `%s`", id);
    snprintf(job_id, sizeof job_id, "%s%.*s", HLPT_ID_JOB, (int)(mark - tail), tail);
    if (hlpt_store_job_get(hlptd_store(d), job_id, job, why, len) != HLPT_OK)
        return hlpt_why(why, len, HLPT_ERR_NOENT, "no model `%s`", id);
    hlptd_jobs_model_name(hlptd_model_name(d), *job, step, name, sizeof name);
    if (strcmp(name, id) || hlpt_store_checkpoint_at_step(hlptd_store(d), job_id, step, ck, why, len) != HLPT_OK) {
        hlpt_job_free(*job);
        *job = NULL;
        return hlpt_why(why, len, HLPT_ERR_NOENT, "no model `%s`", id);
    }
    return HLPT_OK;
}

/* Registers the adapter of checkpoint ck under the model id `name`. */
static int register_checkpoint(hlptd *d, const char *name, const hlpt_checkpoint *ck, hlpt_adapter_rec **out,
                               char *why, size_t len) {
    char *blob = NULL, sha[HLPT_SHA256_HEX] = "";
    void *weights = NULL;
    size_t n = 0, wn = 0;
    hlpt_adapter *a = NULL;
    char *cfg = NULL;
    int err = hlptd_blob_read(hlptd_blob_store(d), ck->sha256, (size_t)1 << 34, &blob, &n, why, len);
    if (!err) err = hlpt_checkpoint_adapter(blob, n, hlpt_model_config(hlptd_model(d)), &a, why, len);
    if (!err) err = hlpt_adapter_to_safetensors(a, a->params, NULL, &weights, &wn, why, len);
    if (!err && !(cfg = hlpt_adapter_config_json(&a->cfg))) err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    if (!err) err = hlptd_blob_put(hlptd_blob_store(d), weights, wn, sha, why, len);
    if (!err) {
        hlpt_adapter_rec_new in = {.name = name, .config = cfg, .sha256 = sha, .bytes = (int64_t)wn,
                                   .base_hash = a->cfg.base_hash[0] ? a->cfg.base_hash : NULL,
                                   .job_id = ck->job_id, .checkpoint_id = ck->id};
        err = hlpt_store_adapter_insert(hlptd_store(d), &in, out, why, len);
        if (err) hlpt_store_blob_release(hlptd_store(d), sha, NULL, 0);
    }
    free(cfg);
    free(weights);
    hlpt_adapter_free(a);
    free(blob);
    return err;
}

int api_model_resolve(hlptd *d, const char *id, hlpt_adapter_rec **out, char *why, size_t len) {
    *out = NULL;
    if (is_base(d, id)) return HLPT_OK;
    int err = hlpt_store_adapter_get(hlptd_store(d), id, out, why, len);
    if (err != HLPT_ERR_NOENT) return err;
    hlpt_job *job;
    hlpt_checkpoint *ck;
    if ((err = checkpoint_of(d, id, &job, &ck, why, len))) return err;
    err = register_checkpoint(d, id, ck, out, why, len);
    hlpt_job_free(job);
    hlpt_checkpoint_free(ck);
    return err;
}

static cJSON *model_json(const char *id, long long created, const char *parent) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "id", id);
    cJSON_AddStringToObject(e, "object", "model");
    cJSON_AddNumberToObject(e, "created", (double)created);
    cJSON_AddStringToObject(e, "owned_by", "hlpt");
    if (parent) cJSON_AddStringToObject(e, "parent", parent);
    else cJSON_AddNullToObject(e, "parent");
    return e;
}

static cJSON *adapter_model_json(hlptd *d, const hlpt_adapter_rec *a) {
    cJSON *e = model_json(a->name, (long long)a->created_at, hlptd_model_name(d));
    cJSON_AddStringToObject(e, "adapter_id", a->id);
    return e;
}

/* Every model at once (OpenAI's /v1/models does not page): the base, then each adapter by name. */
static void list_work(void *app, hlpt_req *r) {
    hlptd *d = app;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    cJSON_AddItemToArray(data, model_json(hlptd_model_name(d), (long long)hlptd_model_created(d), NULL));
    char after[HLPT_ID_MAX] = "", why[256];
    for (int more = 1; more;) {
        hlpt_adapter_rec **a = NULL;
        size_t n = 0;
        int err = hlpt_store_adapter_list(hlptd_store(d), after[0] ? after : NULL, 100, &a, &n, &more, why, sizeof why);
        if (err) {
            cJSON_Delete(o);
            hlpt_reply_err(r, err, NULL, "%s", why);
            return;
        }
        for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(data, adapter_model_json(d, a[i]));
        if (n) snprintf(after, sizeof after, "%s", a[n - 1]->id);
        hlpt_adapter_rec_list_free(a, n);
        if (!n) break;
    }
    hlpt_reply_json(r, 200, o);
}

static void not_found(hlpt_req *r, const char *id) {
    hlpt_reply_http_err(r, 404, "invalid_request_error", "model_not_found", "model", "The model `%s` does not exist", id);
}

static void get_work(void *app, hlpt_req *r) {
    hlptd *d = app;
    const char *id = hlpt_req_param(r, "id");
    char why[256];
    if (is_base(d, id)) {
        hlpt_reply_json(r, 200, model_json(hlptd_model_name(d), (long long)hlptd_model_created(d), NULL));
        return;
    }
    hlpt_adapter_rec *a = NULL;
    int err = hlpt_store_adapter_get(hlptd_store(d), id, &a, why, sizeof why);
    if (!err) {
        hlpt_reply_json(r, 200, adapter_model_json(d, a));
        hlpt_adapter_rec_free(a);
        return;
    }
    if (err != HLPT_ERR_NOENT) {
        hlpt_reply_err(r, err, "model", "%s", why);
        return;
    }
    /* A checkpoint answers without being registered: that waits for its first request. */
    hlpt_job *job;
    hlpt_checkpoint *ck;
    if (checkpoint_of(d, id, &job, &ck, why, sizeof why)) {
        not_found(r, id);
        return;
    }
    hlpt_reply_json(r, 200, model_json(id, (long long)ck->created_at, hlptd_model_name(d)));
    hlpt_job_free(job);
    hlpt_checkpoint_free(ck);
}

static void delete_work(void *app, hlpt_req *r) {
    hlptd *d = app;
    const char *id = hlpt_req_param(r, "id");
    char why[256];
    if (is_base(d, id)) {
        hlpt_reply_http_err(r, 403, "invalid_request_error", "model_not_deletable", "model",
                            "`%s` is the base model this daemon serves; it cannot be deleted", id);
        return;
    }
    hlpt_adapter_rec *a = NULL;
    int err = hlpt_store_adapter_get(hlptd_store(d), id, &a, why, sizeof why);
    if (err == HLPT_ERR_NOENT) {
        not_found(r, id);
        return;
    }
    if (!err) err = hlpt_store_adapter_delete(hlptd_store(d), a->id, why, sizeof why);
    if (err) {
        hlpt_reply_err(r, err, "model", "%s", why);
    } else {
        /* Served requests keep their copy until they end; the cache frees it then. */
        if (hlptd_inference(d)) hlptd_infer_forget(hlptd_inference(d), a->id);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "object", "model");
        cJSON_AddBoolToObject(o, "deleted", 1);
        hlpt_reply_json(r, 200, o);
    }
    hlpt_adapter_rec_free(a);
}

void hlpt_api_models(hlpt_req *r) { hlpt_req_defer(r, list_work); }
void hlpt_api_models_get(hlpt_req *r) { hlpt_req_defer(r, get_work); }
void hlpt_api_models_delete(hlpt_req *r) { hlpt_req_defer(r, delete_work); }
