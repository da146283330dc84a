/*
 * models.c - /v1/models: list, retrieve and delete. What a model id names (the base, an adapter by
 * name or id, a checkpoint by its model id) is the daemon's resolver's (server/resolver.h), which
 * generation uses too. These routes run on the loop thread, with its store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "app.h"
#include "hlpt/err.h"


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

static cJSON *adapter_model_json(hlptd *d, const hlptd_adapter_rec *a) {
    cJSON *e = model_json(a->name, (long long)a->created_at, hlptd_model_name(d));
    cJSON_AddStringToObject(e, "adapter_id", a->id);
    return e;
}

/* Every model at once (OpenAI's /v1/models does not page): the base, then each adapter by name. */
static void list_work(void *app, hlptd_req *r) {
    hlptd *d = app;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    cJSON_AddItemToArray(data, model_json(hlptd_model_name(d), (long long)hlptd_model_created(d), NULL));
    char after[HLPTD_ID_MAX] = "", why[256];
    for (int more = 1; more;) {
        hlptd_adapter_rec **a = NULL;
        size_t n = 0;
        int err = hlptd_store_adapter_list(hlptd_store_of(d), after[0] ? after : NULL, 100, &a, &n, &more, why, sizeof why);
        if (err) {
            cJSON_Delete(o);
            hlptd_reply_err(r, err, NULL, "%s", why);
            return;
        }
        for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(data, adapter_model_json(d, a[i]));
        if (n) snprintf(after, sizeof after, "%s", a[n - 1]->id);
        hlptd_adapter_rec_list_free(a, n);
        if (!n) break;
    }
    hlptd_reply_json(r, 200, o);
}

static void not_found(hlptd_req *r, const char *id) {
    hlptd_reply_http_err(r, 404, "invalid_request_error", "model_not_found", "model", "The model `%s` does not exist", id);
}

static void get_work(void *app, hlptd_req *r) {
    hlptd *d = app;
    const char *id = hlptd_req_param(r, "id");
    char why[256];
    hlptd_model_ref ref;
    int err = hlptd_resolver_lookup(hlptd_store_of(d), hlptd_model_name(d), id, &ref, why, sizeof why);
    if (err == HLPT_ERR_NOENT) not_found(r, id);
    else if (err) hlptd_reply_err(r, err, "model", "%s", why);
    else if (ref.is_base) hlptd_reply_json(r, 200, model_json(hlptd_model_name(d), (long long)hlptd_model_created(d), NULL));
    else if (ref.adapter) hlptd_reply_json(r, 200, adapter_model_json(d, ref.adapter));
    /* A checkpoint answers without being registered: that waits for its first request. */
    else hlptd_reply_json(r, 200, model_json(id, (long long)ref.ck->created_at, hlptd_model_name(d)));
    hlptd_model_ref_clear(&ref);
}

static void delete_work(void *app, hlptd_req *r) {
    hlptd *d = app;
    const char *id = hlptd_req_param(r, "id");
    char why[256];
    hlptd_model_ref ref;
    int err = hlptd_resolver_lookup(hlptd_store_of(d), hlptd_model_name(d), id, &ref, why, sizeof why);
    if (!err && ref.is_base) {
        hlptd_reply_http_err(r, 403, "invalid_request_error", "model_not_deletable", "model",
                            "`%s` is the base model this daemon serves; it cannot be deleted", id);
        return;
    }
    /* A checkpoint is not a model one deletes: only fine-tuned models (adapters) are. */
    if (err == HLPT_ERR_NOENT || (!err && !ref.adapter)) {
        hlptd_model_ref_clear(&ref);
        not_found(r, id);
        return;
    }
    hlptd_adapter_rec *a = ref.adapter;
    if (!err) err = hlptd_store_adapter_delete(hlptd_store_of(d), a->id, why, sizeof why);
    if (err) {
        hlptd_reply_err(r, err, "model", "%s", why);
    } else {
        /* Served requests keep their copy until they end; the cache frees it then. */
        if (hlptd_inference(d)) hlptd_infer_forget(hlptd_inference(d), a->id);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "object", "model");
        cJSON_AddBoolToObject(o, "deleted", 1);
        hlptd_reply_json(r, 200, o);
    }
    hlptd_adapter_rec_free(a);
}

void hlptd_api_models(hlptd_req *r) { hlptd_req_defer(r, list_work); }
void hlptd_api_models_get(hlptd_req *r) { hlptd_req_defer(r, get_work); }
void hlptd_api_models_delete(hlptd_req *r) { hlptd_req_defer(r, delete_work); }
