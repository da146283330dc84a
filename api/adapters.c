/*
 * adapters.c - the adapter registry: list, show, delete, import (hlpt or HF PEFT files), and the two
 * files of an adapter for export.
 *
 * An import (multipart, or JSON with the weights in base64) is validated on the HTTP thread by
 * loading it against the base model (the model is immutable, so any thread may), exactly as
 * serving will load it: a bad adapter is refused with the tensor named, and nothing is stored.
 * Storing happens on the loop thread.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "app.h"
#include "hlpt/adapter.h"
#include "hlpt/err.h"
#include "http.h"

static cJSON *adapter_json(hlptd *d, const hlptd_adapter_rec *a) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", a->id);
    cJSON_AddStringToObject(o, "object", "adapter");
    cJSON_AddStringToObject(o, "name", a->name);
    cJSON_AddNumberToObject(o, "created_at", (double)a->created_at);
    cJSON_AddNumberToObject(o, "bytes", (double)a->bytes);
    cJSON_AddStringToObject(o, "parent", hlptd_model_name(d));
    if (a->base_hash) cJSON_AddStringToObject(o, "base_hash", a->base_hash);
    else cJSON_AddNullToObject(o, "base_hash");
    if (a->job_id) cJSON_AddStringToObject(o, "job_id", a->job_id);
    else cJSON_AddNullToObject(o, "job_id");
    if (a->checkpoint_id) cJSON_AddStringToObject(o, "checkpoint_id", a->checkpoint_id);
    else cJSON_AddNullToObject(o, "checkpoint_id");
    cJSON *cfg = a->config ? cJSON_ParseWithOpts(a->config, NULL, 1) : NULL;
    cJSON_AddItemToObject(o, "config", cfg ? cfg : cJSON_CreateNull());
    return o;
}

static int get_or_404(hlptd *d, hlptd_req *r, hlptd_adapter_rec **a) {
    char why[256];
    const char *id = hlptd_req_param(r, "id");
    if (hlptd_store_adapter_get(hlptd_store_of(d), id, a, why, sizeof why) != HLPT_OK) {
        hlptd_reply_err(r, HLPT_ERR_NOENT, "id", "no adapter %s", id);
        return -1;
    }
    return 0;
}

static void list_work(void *app, hlptd_req *r) {
    hlptd *d = app;
    int limit;
    const char *after;
    if (hlptd_api_page_args(r, 20, 100, &limit, &after)) return;
    hlptd_adapter_rec **a = NULL;
    size_t n = 0;
    int more = 0;
    char why[256];
    int err = hlptd_store_adapter_list(hlptd_store_of(d), after, limit, &a, &n, &more, why, sizeof why);
    if (err) {
        hlptd_reply_err(r, err, "after", "%s", why);
        return;
    }
    cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data");
    cJSON_AddStringToObject(o, "object", "list");
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(data, adapter_json(d, a[i]));
    cJSON_AddBoolToObject(o, "has_more", more);
    hlptd_adapter_rec_list_free(a, n);
    hlptd_reply_json(r, 200, o);
}

static void get_work(void *app, hlptd_req *r) {
    hlptd_adapter_rec *a;
    if (get_or_404(app, r, &a)) return;
    hlptd_reply_json(r, 200, adapter_json(app, a));
    hlptd_adapter_rec_free(a);
}

static void delete_work(void *app, hlptd_req *r) {
    hlptd *d = app;
    hlptd_adapter_rec *a;
    if (get_or_404(d, r, &a)) return;
    char why[256];
    int err = hlptd_store_adapter_delete(hlptd_store_of(d), a->id, why, sizeof why);
    if (err) {
        hlptd_reply_err(r, err, "id", "%s", why);
    } else {
        /* Served requests keep their copy until they end; the cache frees it then. */
        if (hlptd_inference(d)) hlptd_infer_forget(hlptd_inference(d), a->id);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", a->id);
        cJSON_AddStringToObject(o, "object", "adapter");
        cJSON_AddBoolToObject(o, "deleted", 1);
        hlptd_reply_json(r, 200, o);
    }
    hlptd_adapter_rec_free(a);
}

/* GET /v1/adapters/{id}/files/{name}: adapter_config.json or adapter_model.safetensors. A plain
 * LoRA adapter's config is given in HF PEFT's form so that PEFT loads the directory as it is. */
static void file_work(void *app, hlptd_req *r) {
    hlptd *d = app;
    hlptd_adapter_rec *a;
    if (get_or_404(d, r, &a)) return;
    const char *name = hlptd_req_param(r, "name");
    char why[256];
    if (!strcmp(name, "adapter_model.safetensors")) {
        int fd;
        uint64_t n;
        /* Sent from the blob as it is; a missing blob is the server's fault, not a 404. */
        int err = hlptd_store_blob_local(hlptd_store_of(d), a->sha256, 0, why, sizeof why);
        if (!err) err = hlptd_blob_open(hlptd_blob_store(d), a->sha256, &fd, &n, why, sizeof why);
        if (err) hlptd_reply_err(r, err == HLPT_ERR_NOENT ? HLPT_ERR_IO : err, NULL, "%s", why);
        else hlptd_reply_file(r, 200, "application/octet-stream", fd, n);
    } else if (!strcmp(name, "adapter_config.json")) {
        char *text = NULL;
        const hlpt_model *m = hlptd_model(d);
        hlpt_adapter_config cfg;
        cJSON *j = cJSON_ParseWithOpts(a->config, NULL, 1);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
        const cJSON *method = cJSON_GetObjectItemCaseSensitive(j, "method");
        if (m && cJSON_IsString(type) && !strcmp(type->valuestring, "HLPT") && cJSON_IsString(method) &&
            hlpt_method_from_name(method->valuestring) >= 0) {
            hlpt_adapter_config_defaults(&cfg, (hlpt_method)hlpt_method_from_name(method->valuestring),
                                         hlpt_model_config(m)->n_layers);
            if (hlpt_adapter_config_apply(&cfg, j, hlpt_model_config(m)->n_layers, 1, why, sizeof why) == HLPT_OK)
                text = hlpt_adapter_config_peft_json(&cfg, hlpt_model_config(m)->n_layers);
        }
        cJSON_Delete(j);
        if (!text) text = strdup(a->config);
        hlptd_reply_bytes(r, 200, "application/json", text, text ? strlen(text) : 0);
    } else {
        hlptd_reply_err(r, HLPT_ERR_NOENT, "name", "an adapter has adapter_config.json and adapter_model.safetensors");
    }
    hlptd_adapter_rec_free(a);
}

typedef struct {
    char *name, *config;
    void *weights;
    size_t weights_len;
    char base_hash[40];
} import_args;

static void import_free(void *p) {
    import_args *a = p;
    if (!a) return;
    free(a->name);
    free(a->config);
    free(a->weights);
    free(a);
}

static void import_work(void *app, hlptd_req *r) {
    hlptd *d = app;
    import_args *in = hlptd_req_data(r);
    char why[256], sha[HLPT_SHA256_HEX] = "", tmp[HLPTD_BLOB_TMP_MAX];
    /* The weights become a blob that the insert puts into place with the row (or removes when the
     * row is not stored); the same bytes imported twice are one blob. */
    int err = hlptd_blob_put_sealed(hlptd_blob_store(d), in->weights, in->weights_len, sha, tmp, sizeof tmp, why,
                                    sizeof why);
    hlptd_adapter_fields rec = {.name = in->name, .config = in->config, .sha256 = sha,
                                .bytes = (int64_t)in->weights_len, .tmp = tmp, .base_hash = in->base_hash};
    hlptd_adapter_rec *a = NULL;
    if (!err) err = hlptd_store_adapter_insert(hlptd_store_of(d), &rec, &a, why, sizeof why);
    if (err) {
        hlptd_reply_err(r, err, err == HLPT_ERR_EXISTS ? "name" : NULL, "%s", why);
        return;
    }
    hlptd_reply_json(r, 200, adapter_json(d, a));
    hlptd_adapter_rec_free(a);
}

/* strchr finds a NUL in any string: `c &&` keeps `demo\0x` out, which C strings would read as
 * `demo`. */
static int valid_name(const char *s, size_t n) {
    if (n == 0 || n > 100) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c && strchr("-_.:", c))))
            return 0;
    }
    return 1;
}

/* Standard base64 (RFC 4648, padding optional, whitespace skipped) into a new buffer. */
static int base64_decode(const char *s, unsigned char **out, size_t *n) {
    size_t len = strlen(s), k = 0;
    unsigned char *b = malloc(len / 4 * 3 + 3);
    if (!b) return HLPT_ERR_NOMEM;
    unsigned acc = 0;
    int bits = 0, pad = 0;
    for (; *s; s++) {
        int v;
        char c = *s;
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c == '=') {
            pad++;
            continue;
        }
        if (pad) goto bad; /* data after padding */
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '+') v = 62;
        else if (c == '/') v = 63;
        else goto bad;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            b[k++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits >= 6 || pad > 2) goto bad; /* a lone sixth of a byte */
    *out = b;
    *n = k;
    return HLPT_OK;
bad:
    free(b);
    return HLPT_ERR_INVAL;
}

/* The three parts of an import, borrowed from the request (or from *owned, freed by the caller). */
typedef struct {
    const char *config, *weights, *name;
    size_t config_len, weights_len, name_len;
    char *owned_config;
    unsigned char *owned_weights;
} import_parts;

/* JSON body: {"name"?, "config": {...} | "text", "weights_base64": "..."}. */
static int parts_from_json(hlptd_req *r, import_parts *p) {
    cJSON *j = hlptd_req_json(r);
    if (!j) return -1;
    if (!cJSON_IsObject(j)) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, NULL, "the body must be a JSON object {name?, config, weights_base64}");
        return -1;
    }
    const cJSON *v;
    cJSON_ArrayForEach(v, j) if (strcmp(v->string, "name") && strcmp(v->string, "config") && strcmp(v->string, "weights_base64")) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, v->string, "unknown field `%.64s`", v->string);
        return -1;
    }
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(j, "config"), *w = cJSON_GetObjectItemCaseSensitive(j, "weights_base64"),
                *name = cJSON_GetObjectItemCaseSensitive(j, "name");
    if (cJSON_IsObject(cfg)) p->owned_config = cJSON_PrintUnformatted(cfg);
    else if (cJSON_IsString(cfg)) p->owned_config = strdup(cfg->valuestring);
    else {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "config", "`config` is required: the adapter_config.json object");
        return -1;
    }
    if (!cJSON_IsString(w)) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "weights_base64", "`weights_base64` is required: adapter_model.safetensors in base64");
        return -1;
    }
    if (name && !cJSON_IsNull(name) && !cJSON_IsString(name)) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "name", "`name` must be a string");
        return -1;
    }
    int err = p->owned_config ? base64_decode(w->valuestring, &p->owned_weights, &p->weights_len) : HLPT_ERR_NOMEM;
    if (err) {
        hlptd_reply_err(r, err, err == HLPT_ERR_INVAL ? "weights_base64" : NULL,
                       err == HLPT_ERR_INVAL ? "`weights_base64` is not valid base64" : "out of memory");
        return -1;
    }
    p->config = p->owned_config;
    p->config_len = strlen(p->owned_config);
    p->weights = (const char *)p->owned_weights;
    if (cJSON_IsString(name)) {
        p->name = name->valuestring;
        p->name_len = strlen(name->valuestring);
    }
    return 0;
}

/* multipart/form-data: field `config` (adapter_config.json text), file `weights`
 * (adapter_model.safetensors), optional field `name`. */
static int parts_from_form(hlptd_req *r, import_parts *p) {
    const char *fname;
    char why[512];
    int err = hlptd_req_form(r, "config", &p->config, &p->config_len, &fname, why, sizeof why);
    if (err == HLPT_ERR_FORMAT) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, NULL, "%s", why);
        return -1;
    }
    if (err) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "config", "a multipart field `config` (adapter_config.json) is required");
        return -1;
    }
    if (hlptd_req_form(r, "weights", &p->weights, &p->weights_len, &fname, why, sizeof why)) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "weights", "a multipart file `weights` (adapter_model.safetensors) is required");
        return -1;
    }
    if (hlptd_req_form(r, "name", &p->name, &p->name_len, &fname, why, sizeof why) != HLPT_OK) p->name = NULL;
    return 0;
}

void hlptd_api_adapters_import(hlptd_req *r) {
    hlptd *d = hlptd_req_app(r);
    const hlpt_model *m = hlptd_api_model(r);
    if (!m) return;
    import_parts p = {0};
    const char *ct = hlptd_req_header(r, "Content-Type");
    int json = ct && !strncasecmp(ct, "application/json", 16);
    import_args *in = NULL;
    if (json ? parts_from_json(r, &p) : parts_from_form(r, &p)) goto out;
    if (p.name && !valid_name(p.name, p.name_len)) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "name", "`name` must be 1-100 letters, digits, '-', '_', '.' or ':'");
        goto out;
    }
    if (p.name && ((p.name_len == 4 && !memcmp(p.name, "base", 4)) ||
                   (p.name_len == strlen(hlptd_model_name(d)) && !memcmp(p.name, hlptd_model_name(d), p.name_len)))) {
        hlptd_reply_err(r, HLPT_ERR_EXISTS, "name", "`%.*s` names the base model", (int)p.name_len, p.name);
        goto out;
    }
    /* Lookups take an id or a name: a name shaped like an id could shadow another adapter. */
    if (p.name && p.name_len >= strlen(HLPTD_ID_ADAPTER) && !memcmp(p.name, HLPTD_ID_ADAPTER, strlen(HLPTD_ID_ADAPTER))) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "name", "`name` must not start with `%s`, the prefix of adapter ids",
                       HLPTD_ID_ADAPTER);
        goto out;
    }
    const char *end = NULL;
    cJSON *cj = cJSON_ParseWithOpts(p.config, &end, 0);
    int cfg_ok = cJSON_IsObject(cj) && (size_t)(end - p.config) <= p.config_len;
    cJSON_Delete(cj);
    if (!cfg_ok) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "config", "`config` is not a JSON object (adapter_config.json)");
        goto out;
    }
    /* Load it as serving will: shapes, layers, modules and base hash are all checked. */
    hlpt_adapter *a = NULL;
    char why[512];
    int err = hlpt_adapter_load_mem(p.config, p.config_len, p.weights, p.weights_len, hlpt_model_config(m),
                                    hlpt_model_hash(m), &a, why, sizeof why);
    if (err == HLPT_ERR_NOMEM) {
        hlptd_reply_err(r, err, NULL, "out of memory");
        goto out;
    }
    if (err) {
        /* A file that is not what it should be is a bad request; one that is well formed but does
         * not fit this base is unprocessable. */
        hlptd_reply_http_err(r, err == HLPT_ERR_MISMATCH ? 422 : 400, "invalid_request_error", "invalid_adapter",
                            json ? "weights_base64" : "weights", "the adapter does not load on %s: %s",
                            hlptd_model_name(d), why);
        goto out;
    }
    /* A NaN or an infinity would load and then turn every generation with it into garbage. */
    size_t n_params = a->n_params, bad = n_params;
    for (size_t i = 0; i < n_params && bad == n_params; i++)
        if (!isfinite(a->params[i])) bad = i;
    hlpt_adapter_free(a);
    if (bad < n_params) {
        hlptd_reply_http_err(r, 400, "invalid_request_error", "invalid_adapter", json ? "weights_base64" : "weights",
                            "the adapter's weights hold a NaN or an infinity (parameter %zu of %zu)", bad, n_params);
        goto out;
    }
    if (!(in = calloc(1, sizeof *in))) goto oom;
    if (p.name) {
        if ((in->name = malloc(p.name_len + 1))) memcpy(in->name, p.name, p.name_len), in->name[p.name_len] = 0;
    } else {
        char id[HLPTD_ID_MAX];
        hlptd_id_new(id, "imported-");
        in->name = strdup(id);
    }
    in->config = malloc(p.config_len + 1);
    in->weights = malloc(p.weights_len ? p.weights_len : 1);
    if (!in->name || !in->config || !in->weights) goto oom;
    memcpy(in->config, p.config, p.config_len);
    in->config[p.config_len] = 0;
    memcpy(in->weights, p.weights, p.weights_len);
    in->weights_len = p.weights_len;
    snprintf(in->base_hash, sizeof in->base_hash, "%s", hlpt_model_hash(m));
    hlptd_req_set_data(r, in, import_free);
    in = NULL;
    hlptd_req_defer(r, import_work);
    goto out;
oom:
    hlptd_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
out:
    import_free(in);
    free(p.owned_config);
    free(p.owned_weights);
}

void hlptd_api_adapters_list(hlptd_req *r) { hlptd_req_defer(r, list_work); }
void hlptd_api_adapters_get(hlptd_req *r) { hlptd_req_defer(r, get_work); }
void hlptd_api_adapters_delete(hlptd_req *r) { hlptd_req_defer(r, delete_work); }
void hlptd_api_adapters_file(hlptd_req *r) { hlptd_req_defer(r, file_work); }
