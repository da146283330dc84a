/*
 * jobs.c - the fine-tuning REST API: /v1/fine_tuning/jobs and its events, metrics, checkpoints and
 * loss plot.
 *
 * Handlers validate on the HTTP thread — the JSON shape, and the method, hyperparameters and seed
 * through the parser the worker will apply (hlpt_job_spec_parse), so a job that is accepted will not
 * fail on its settings — and defer to the loop thread for everything that touches the store or the
 * job queue.
 *
 * Event streams: a `?stream=true` request becomes a subscriber of the daemon's job event streams
 * (server/subscribers.h), which the job queue feeds after every change; this file only renders the
 * events.
 */
#include "api.h"
#include "fine_tuning.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "hlpt/adapter.h"
#include "hlpt/err.h"
#include "hlpt/finetune.h"
#include "http.h"

/* One daemon is one organization; OpenAI's job objects name theirs. */
#define API_JOBS_ORGANIZATION "org-hlpt"

static void add_num_or_null(cJSON *o, const char *k, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

static cJSON *parse_or_empty(const char *json) {
    cJSON *j = json ? cJSON_Parse(json) : NULL;
    return j ? j : cJSON_CreateObject();
}

/* The job's method as the client gave it: OpenAI's {type: supervised, supervised: {hyperparameters}}
 * with `hlpt_method` saying what it trains, or hlpt's own {type, <type>: {settings}}. */
static cJSON *method_json(const hlptd_job *job) {
    cJSON *stored = parse_or_empty(job->method);
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(stored, "requested");
    if (!cJSON_IsString(req) || strcmp(req->valuestring, "supervised")) return stored;
    cJSON_DeleteItemFromObjectCaseSensitive(stored, "requested");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "supervised");
    cJSON *sup = cJSON_AddObjectToObject(o, "supervised");
    cJSON_AddItemToObject(sup, "hyperparameters", parse_or_empty(job->hyperparameters));
    cJSON_AddItemToObject(o, "hlpt_method", stored);
    return o;
}

/* The OpenAI job object, with hlpt's progress figures. Loop thread. */
static cJSON *job_json(hlptd *d, const hlptd_job *job) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", job->id);
    cJSON_AddStringToObject(o, "object", "fine_tuning.job");
    cJSON_AddStringToObject(o, "model", job->model);
    cJSON_AddNumberToObject(o, "created_at", (double)job->created_at);
    if (job->finished_at) cJSON_AddNumberToObject(o, "finished_at", (double)job->finished_at);
    else cJSON_AddNullToObject(o, "finished_at");
    if (job->fine_tuned_model) cJSON_AddStringToObject(o, "fine_tuned_model", job->fine_tuned_model);
    else cJSON_AddNullToObject(o, "fine_tuned_model");
    cJSON_AddStringToObject(o, "status", hlptd_job_state_name(job->status));
    cJSON_AddStringToObject(o, "training_file", job->training_file);
    if (job->validation_file) cJSON_AddStringToObject(o, "validation_file", job->validation_file);
    else cJSON_AddNullToObject(o, "validation_file");
    cJSON_AddItemToObject(o, "method", method_json(job));
    cJSON_AddItemToObject(o, "hyperparameters", parse_or_empty(job->hyperparameters));
    cJSON_AddNumberToObject(o, "seed", (double)job->seed);
    if (job->suffix) cJSON_AddStringToObject(o, "suffix", job->suffix);
    else cJSON_AddNullToObject(o, "suffix");
    if (job->error) cJSON_AddItemToObject(o, "error", parse_or_empty(job->error));
    else cJSON_AddNullToObject(o, "error");
    cJSON_AddStringToObject(o, "organization_id", API_JOBS_ORGANIZATION);
    if (job->suffix) cJSON_AddStringToObject(o, "user_provided_suffix", job->suffix);
    else cJSON_AddNullToObject(o, "user_provided_suffix");
    cJSON *meta = job->metadata ? cJSON_Parse(job->metadata) : NULL;
    if (meta) cJSON_AddItemToObject(o, "metadata", meta);
    else cJSON_AddNullToObject(o, "metadata");
    cJSON *integ = job->integrations ? cJSON_Parse(job->integrations) : NULL;
    cJSON_AddItemToObject(o, "integrations", integ ? integ : cJSON_CreateArray());
    cJSON *results = cJSON_AddArrayToObject(o, "result_files");
    if (job->result_file) cJSON_AddItemToArray(results, cJSON_CreateString(job->result_file));
    if (job->trained_tokens >= 0) cJSON_AddNumberToObject(o, "trained_tokens", (double)job->trained_tokens);
    else cJSON_AddNullToObject(o, "trained_tokens");

    /* Progress: the live worker's last line, else the last stored metric row. */
    cJSON *p = cJSON_AddObjectToObject(o, "progress");
    cJSON_AddNumberToObject(p, "step", (double)job->step);
    cJSON_AddNumberToObject(p, "total_steps", (double)job->total_steps);
    cJSON_AddNumberToObject(p, "epoch", job->epoch);
    cJSON_AddNumberToObject(p, "tokens_per_s", job->tokens_per_s);
    hlptd_job_live live;
    double train = NAN, valid = NAN, acc = NAN, lr = NAN;
    /* A worker that has not reported a step yet has no figures (its live record is zeros). */
    if (hlptd_jobs_live(hlptd_job_queue(d), job->id, &live) && live.step > 0) {
        train = live.train_loss;
        valid = live.valid_loss;
        lr = live.learning_rate;
        double eta = live.step > 0 && live.elapsed_s > 0 ? live.elapsed_s / live.step * (live.total_steps - live.step) : NAN;
        add_num_or_null(p, "eta_s", eta);
        add_num_or_null(o, "estimated_finish", isfinite(eta) ? (double)(time(NULL) + (time_t)eta) : NAN);
    } else {
        cJSON_AddNullToObject(p, "eta_s");
        cJSON_AddNullToObject(o, "estimated_finish");
    }
    /* One read of the job's rows: the last for the latest figures, and the validation history
     * for the latest and the best validation loss (which may be from earlier steps). */
    hlptd_metric *rows = NULL;
    size_t n = 0;
    char why[128];
    if (hlptd_store_metric_list(hlptd_store_of(d), job->id, 0, 1 << 30, &rows, &n, why, sizeof why) == HLPT_OK && n) {
        if (!isfinite(train)) train = rows[n - 1].train_loss;
        if (!isfinite(lr)) lr = rows[n - 1].lr;
        double best = INFINITY;
        long best_step = -1;
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(rows[i].valid_loss)) continue;
            valid = rows[i].valid_loss;
            acc = rows[i].valid_acc;
            if (rows[i].valid_loss < best) {
                best = rows[i].valid_loss;
                best_step = (long)rows[i].step;
            }
        }
        if (best_step >= 0) {
            cJSON *b = cJSON_AddObjectToObject(o, "best");
            cJSON_AddNumberToObject(b, "step", (double)best_step);
            cJSON_AddNumberToObject(b, "valid_loss", best);
        }
    }
    free(rows);
    add_num_or_null(p, "train_loss", train);
    add_num_or_null(p, "valid_loss", valid);
    add_num_or_null(p, "valid_token_accuracy", acc);
    add_num_or_null(p, "learning_rate", lr);
    int pos = job->status == HLPTD_JOB_QUEUED ? hlptd_jobs_queue_position(hlptd_job_queue(d), job->id) : 0;
    if (pos) cJSON_AddNumberToObject(o, "queue_position", pos);
    else cJSON_AddNullToObject(o, "queue_position");
    /* The node that runs it, or last ran it (GET /v1/nodes lists them). */
    if (job->node) cJSON_AddStringToObject(o, "node", job->node);
    else cJSON_AddNullToObject(o, "node");
    return o;
}

/* Replies with the job, or 404. Loop thread. */
static void reply_job(hlptd *d, hlptd_req *r, const char *id, int status) {
    hlptd_job *job = NULL;
    char why[256];
    int err = hlptd_store_job_get(hlptd_store_of(d), id, &job, why, sizeof why);
    if (err) {
        hlptd_reply_err(r, err, "id", "no fine-tuning job %s", id);
        return;
    }
    hlptd_reply_json(r, status, job_json(d, job));
    hlptd_job_free(job);
}

/* ---------------------------------------------------------------------------------------------- */
/* Create                                                                                          */

/* What the handler validated, for the loop. */
typedef struct {
    char *training_file, *validation_file, *method, *hyperparameters, *suffix, *model, *metadata, *integrations;
    int64_t seed;
} create_args;

static void create_args_free(void *p) {
    create_args *a = p;
    if (!a) return;
    free(a->training_file);
    free(a->validation_file);
    free(a->method);
    free(a->hyperparameters);
    free(a->suffix);
    free(a->model);
    free(a->metadata);
    free(a->integrations);
    free(a);
}

static const char *const create_keys[] = {"model", "training_file", "validation_file", "method", "hyperparameters",
                                          "seed", "suffix", "integrations", "metadata"};

static void create_work(void *app, hlptd_req *r) {
    hlptd *d = app;
    create_args *a = hlptd_req_data(r);
    hlptd_store *st = hlptd_store_of(d);
    char why[512];
    hlptd_file *f = NULL;
    const char *files[2] = {a->training_file, a->validation_file}, *params[2] = {"training_file", "validation_file"};
    for (int i = 0; i < 2; i++) {
        if (!files[i]) continue;
        if (hlptd_store_file_get(st, files[i], &f, why, sizeof why) != HLPT_OK) {
            hlptd_reply_http_err(r, 404, "invalid_request_error", "file_not_found", params[i], "no file %s", files[i]);
            return;
        }
        int bad = f->status && !strcmp(f->status, "error");
        hlptd_file_free(f);
        f = NULL;
        if (bad) {
            hlptd_reply_err(r, HLPT_ERR_INVAL, params[i], "file %s did not pass validation", files[i]);
            return;
        }
    }
    hlptd_job_fields in = {.status = HLPTD_JOB_QUEUED, .model = a->model, .training_file = a->training_file,
                       .validation_file = a->validation_file, .method = a->method,
                       .hyperparameters = a->hyperparameters, .seed = a->seed, .suffix = a->suffix,
                       .metadata = a->metadata, .integrations = a->integrations};
    hlptd_job *job = NULL;
    int err = hlptd_store_job_insert(st, &in, &job, why, sizeof why);
    if (err) {
        hlptd_reply_err(r, err, NULL, "creating the job failed: %s", why);
        return;
    }
    hlptd_store_event_add(st, job->id, "info", "Created fine-tuning job; files validated", NULL, NULL, why, sizeof why);
    char id[HLPTD_ID_MAX];
    snprintf(id, sizeof id, "%s", job->id);
    hlptd_job_free(job);
    hlptd_jobs_schedule(hlptd_job_queue(d));
    reply_job(d, r, id, 200);
}

static int valid_suffix(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 40) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_') return 0;
    return 1;
}

void hlptd_api_jobs_create(hlptd_req *r) {
    hlptd *d = hlptd_req_app(r);
    const hlpt_model *m = hlptd_api_model(r);
    if (!m) return;
    cJSON *j = hlptd_req_json(r);
    if (!j) return;
    if (!cJSON_IsObject(j)) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, NULL, "the body must be a JSON object");
        return;
    }
    const cJSON *v;
    cJSON_ArrayForEach(v, j) {
        int known = 0;
        for (size_t i = 0; i < sizeof create_keys / sizeof *create_keys; i++) known |= !strcmp(v->string, create_keys[i]);
        if (!known) {
            hlptd_reply_err(r, HLPT_ERR_INVAL, v->string, "unknown field `%s`", v->string);
            return;
        }
    }
    const cJSON *tf = cJSON_GetObjectItemCaseSensitive(j, "training_file"),
                *vf = cJSON_GetObjectItemCaseSensitive(j, "validation_file"),
                *model = cJSON_GetObjectItemCaseSensitive(j, "model"),
                *method = cJSON_GetObjectItemCaseSensitive(j, "method"),
                *hp = cJSON_GetObjectItemCaseSensitive(j, "hyperparameters"),
                *suffix = cJSON_GetObjectItemCaseSensitive(j, "suffix");
    if (!cJSON_IsString(tf) || !*tf->valuestring) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "training_file", tf ? "`training_file` must be a file id" : "`training_file` is required");
        return;
    }
    if (vf && !cJSON_IsNull(vf) && !cJSON_IsString(vf)) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "validation_file", "`validation_file` must be a file id");
        return;
    }
    if (model && !cJSON_IsNull(model) &&
        (!cJSON_IsString(model) || (strcmp(model->valuestring, hlptd_model_name(d)) && strcmp(model->valuestring, "base")))) {
        hlptd_reply_http_err(r, 404, "invalid_request_error", "model_not_found", "model",
                            "this daemon fine-tunes %s only", hlptd_model_name(d));
        return;
    }
    if (suffix && !cJSON_IsNull(suffix) && (!cJSON_IsString(suffix) || !valid_suffix(suffix->valuestring))) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "suffix", "`suffix` must be 1-40 letters, digits, '-' or '_'");
        return;
    }

    /* metadata: OpenAI's limits, up to 16 string pairs, keys to 64 and values to 512 characters. */
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(j, "metadata"),
                *integ = cJSON_GetObjectItemCaseSensitive(j, "integrations");
    if (meta && !cJSON_IsNull(meta)) {
        if (!cJSON_IsObject(meta) || cJSON_GetArraySize(meta) > 16) {
            hlptd_reply_err(r, HLPT_ERR_INVAL, "metadata", "`metadata` must be an object of at most 16 strings");
            return;
        }
        cJSON_ArrayForEach(v, meta) {
            if (!cJSON_IsString(v) || strlen(v->string) > 64 || strlen(v->valuestring) > 512) {
                char p[96];
                snprintf(p, sizeof p, "metadata.%.64s", v->string);
                hlptd_reply_err(r, HLPT_ERR_INVAL, p, "`metadata` values must be strings of at most 512 characters, "
                               "keys at most 64");
                return;
            }
        }
    }
    /* integrations: hlpt reports to none (it reaches no outside service); an empty list is fine. */
    if (integ && !cJSON_IsNull(integ) && (!cJSON_IsArray(integ) || cJSON_GetArraySize(integ) > 0)) {
        hlptd_reply_err(r, cJSON_IsArray(integ) ? HLPT_ERR_UNSUPPORTED : HLPT_ERR_INVAL, "integrations",
                       "`integrations` are not supported: hlptd reports to no outside service (give [] or leave it out)");
        return;
    }

    /* method, hyperparameters and seed: the parser the worker applies decides (finetune.h). */
    hlpt_job_spec spec;
    char why[512] = "", param[192] = "";
    int err = hlpt_job_spec_parse(&spec, j, hlpt_model_config(m)->n_layers, param, sizeof param, why, sizeof why);
    if (err) {
        hlptd_reply_err(r, err, param[0] ? param : NULL, "%s", why);
        return;
    }
    /* Stored as the client gave them, now known to be well formed: the method's type and adapter
     * settings, and the hyperparameters from wherever they were given. */
    const char *type = hlpt_method_name(spec.adapter.method);
    const cJSON *given = cJSON_IsObject(method) ? cJSON_GetObjectItemCaseSensitive(method, "type") : NULL;
    int supervised = cJSON_IsString(given) && !strcmp(given->valuestring, "supervised");
    const cJSON *settings = cJSON_IsString(given) ? cJSON_GetObjectItemCaseSensitive(method, given->valuestring) : NULL;
    const cJSON *nested_hp = cJSON_IsObject(settings) ? cJSON_GetObjectItemCaseSensitive(settings, "hyperparameters") : NULL;
    if (cJSON_IsObject(nested_hp)) hp = nested_hp;
    cJSON *plan = cJSON_IsObject(settings) && !supervised ? cJSON_Duplicate(settings, 1) : cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(plan, "hyperparameters");
    create_args *a = calloc(1, sizeof *a);
    if (!a) {
        cJSON_Delete(plan);
        hlptd_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    /* The method is stored as the worker reads it (type and its adapter settings), so the job says
     * what it will train; `requested` keeps OpenAI's type when that is what the client asked for. */
    cJSON *m_store = cJSON_CreateObject();
    cJSON_AddStringToObject(m_store, "type", type);
    cJSON_AddItemToObject(m_store, type, plan);
    if (supervised) cJSON_AddStringToObject(m_store, "requested", "supervised");
    a->method = cJSON_PrintUnformatted(m_store);
    cJSON_Delete(m_store);
    a->hyperparameters = hp && !cJSON_IsNull(hp) ? cJSON_PrintUnformatted(hp) : strdup("{}");
    a->training_file = strdup(tf->valuestring);
    a->validation_file = cJSON_IsString(vf) ? strdup(vf->valuestring) : NULL;
    a->suffix = cJSON_IsString(suffix) ? strdup(suffix->valuestring) : NULL;
    a->model = strdup(hlptd_model_name(d));
    a->seed = (int64_t)spec.params.seed;
    a->metadata = meta && cJSON_IsObject(meta) ? cJSON_PrintUnformatted(meta) : NULL;
    a->integrations = integ && cJSON_IsArray(integ) ? cJSON_PrintUnformatted(integ) : NULL;
    hlptd_req_set_data(r, a, create_args_free);
    hlptd_req_defer(r, create_work);
}

/* ---------------------------------------------------------------------------------------------- */
/* List, show, lifecycle                                                                           */

/* Pages of jobs, events and checkpoints hold at most this many. */
#define JOBS_PAGE_MAX 100

/* OpenAI's metadata filter, `?metadata[key]=value` (several: all must match). With job NULL,
 * answers whether the request has no such filter (1) or has one (0). */
static int metadata_matches(hlptd_req *r, const hlptd_job *job) {
    cJSON *meta = job && job->metadata ? cJSON_Parse(job->metadata) : NULL;
    int ok = 1;
    const char *k, *v;
    for (size_t i = 0; ok && (k = hlptd_req_query_at(r, i, &v)); i++) {
        size_t n = strlen(k);
        if (strncmp(k, "metadata[", 9) || n < 11 || k[n - 1] != ']') continue;
        if (!job) {
            ok = 0;
            break;
        }
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)(n - 10), k + 9);
        const cJSON *have = cJSON_GetObjectItemCaseSensitive(meta, key);
        ok = cJSON_IsString(have) && !strcmp(have->valuestring, v ? v : "");
    }
    cJSON_Delete(meta);
    return ok;
}

static void list_work(void *app, hlptd_req *r) {
    hlptd *d = app;
    int limit;
    const char *after;
    if (hlptd_api_page_args(r, 20, JOBS_PAGE_MAX, &limit, &after)) return;
    const char *status = hlptd_req_query(r, "status");
    /* A status no job can have (-1) matches none. */
    int want = status ? hlptd_job_state_from_name(status) : -1;
    hlptd_job **jobs = NULL;
    size_t n = 0;
    int more = 0;
    char why[256];
    /* A filter pages over the unfiltered list; ask for more and filter. */
    int filtered = status || metadata_matches(r, NULL) == 0;
    int err = hlptd_store_job_list(hlptd_store_of(d), after, filtered ? 1000 : limit, &jobs, &n, &more, why, sizeof why);
    if (err) {
        hlptd_reply_err(r, err, "after", "%s", why);
        return;
    }
    cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data");
    cJSON_AddStringToObject(o, "object", "list");
    int shown = 0;
    for (size_t i = 0; i < n; i++) {
        if (status && (int)jobs[i]->status != want) continue;
        if (!metadata_matches(r, jobs[i])) continue;
        if (shown == limit) {
            more = 1;
            break;
        }
        cJSON_AddItemToArray(data, job_json(d, jobs[i]));
        shown++;
    }
    cJSON_AddBoolToObject(o, "has_more", more);
    hlptd_job_list_free(jobs, n);
    hlptd_reply_json(r, 200, o);
}

static void show_work(void *app, hlptd_req *r) { reply_job(app, r, hlptd_req_param(r, "id"), 200); }

static void lifecycle_work(void *app, hlptd_req *r) {
    hlptd *d = app;
    const char *id = hlptd_req_param(r, "id"), *path = hlptd_req_path(r);
    const char *verb = strrchr(path, '/') + 1;
    char why[512] = "";
    int err = !strcmp(verb, "cancel")  ? hlptd_jobs_cancel(hlptd_job_queue(d), id, why, sizeof why)
              : !strcmp(verb, "pause") ? hlptd_jobs_pause(hlptd_job_queue(d), id, why, sizeof why)
                                       : hlptd_jobs_resume(hlptd_job_queue(d), id, why, sizeof why);
    if (err == HLPT_ERR_NOENT) hlptd_reply_err(r, err, "id", "no fine-tuning job %s", id);
    else if (err) hlptd_reply_err(r, err, NULL, "%s", why);
    else reply_job(d, r, id, 200);
}

void hlptd_api_jobs_list(hlptd_req *r) { hlptd_req_defer(r, list_work); }
void hlptd_api_jobs_get(hlptd_req *r) { hlptd_req_defer(r, show_work); }
void hlptd_api_jobs_lifecycle(hlptd_req *r) { hlptd_req_defer(r, lifecycle_work); }

/* ---------------------------------------------------------------------------------------------- */
/* Events                                                                                          */

static cJSON *event_json(const hlptd_job_event *e) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", e->id);
    cJSON_AddStringToObject(o, "object", "fine_tuning.job.event");
    cJSON_AddNumberToObject(o, "created_at", (double)e->created_at);
    cJSON_AddStringToObject(o, "level", e->level);
    cJSON_AddStringToObject(o, "message", e->message);
    cJSON_AddStringToObject(o, "type", e->data ? "metrics" : "message");
    if (e->data) cJSON_AddItemToObject(o, "data", parse_or_empty(e->data));
    else cJSON_AddNullToObject(o, "data");
    cJSON_AddNumberToObject(o, "seq", (double)e->seq);
    return o;
}

/* An event as its stream sends it (server/subscribers.h). */
static char *event_text(const hlptd_job_event *e) {
    cJSON *o = event_json(e);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

static void events_work(void *app, hlptd_req *r) {
    hlptd *d = app;
    const char *id = hlptd_req_param(r, "id");
    hlptd_job *job = NULL;
    char why[256];
    if (hlptd_store_job_get(hlptd_store_of(d), id, &job, why, sizeof why)) {
        hlptd_reply_err(r, HLPT_ERR_NOENT, "id", "no fine-tuning job %s", id);
        return;
    }
    hlptd_job_free(job);
    const char *stream = hlptd_req_query(r, "stream");
    if (stream && (!strcmp(stream, "true") || !strcmp(stream, "1") || !*stream)) {
        hlptd_subscribers_follow(hlptd_job_streams(d), r, id, event_text);
        return;
    }
    int limit;
    const char *after;
    if (hlptd_api_page_args(r, 20, JOBS_PAGE_MAX, &limit, &after)) return;
    /* Newest first, paged by event id, as OpenAI lists them (the stream above is oldest first). */
    hlptd_job_event **ev = NULL;
    size_t n = 0;
    int more = 0;
    int err = hlptd_store_event_page(hlptd_store_of(d), id, after, limit, &ev, &n, &more, why,
                                    sizeof why);
    if (err) {
        hlptd_reply_err(r, err, err == HLPT_ERR_NOENT ? "after" : NULL, "%s", why);
        return;
    }
    cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data");
    cJSON_AddStringToObject(o, "object", "list");
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(data, event_json(ev[i]));
    cJSON_AddBoolToObject(o, "has_more", more);
    hlptd_job_event_list_free(ev, n);
    hlptd_reply_json(r, 200, o);
}

void hlptd_api_jobs_events(hlptd_req *r) { hlptd_req_defer(r, events_work); }

/* ---------------------------------------------------------------------------------------------- */
/* Metrics, checkpoints, loss plot                                                                 */

/* The job's metric rows, or a 404 reply and NULL. */
static hlptd_metric *job_metrics(hlptd *d, hlptd_req *r, size_t *n) {
    const char *id = hlptd_req_param(r, "id");
    hlptd_job *job = NULL;
    char why[256];
    if (hlptd_store_job_get(hlptd_store_of(d), id, &job, why, sizeof why)) {
        hlptd_reply_err(r, HLPT_ERR_NOENT, "id", "no fine-tuning job %s", id);
        return NULL;
    }
    hlptd_job_free(job);
    hlptd_metric *rows = NULL;
    if (hlptd_store_metric_list(hlptd_store_of(d), id, -1, 1 << 30, &rows, n, why, sizeof why)) {
        hlptd_reply_err(r, HLPT_ERR_DB, NULL, "%s", why);
        return NULL;
    }
    return rows ? rows : calloc(1, sizeof *rows);
}

static void metrics_work(void *app, hlptd_req *r) {
    size_t n;
    hlptd_metric *rows = job_metrics(app, r, &n);
    if (!rows) return;
    const char *format = hlptd_req_query(r, "format");
    if (format && !strcmp(format, "csv")) {
        size_t cap = 256, len = 0;
        char *buf = malloc(cap);
        int err = buf ? HLPT_OK : HLPT_ERR_NOMEM;
        if (buf)
            len = (size_t)snprintf(buf, cap, "step,train_loss,valid_loss,valid_token_accuracy,learning_rate,tokens_per_s\n");
        for (size_t i = 0; !err && i < n; i++) {
            if ((err = hlptd_csv_num(&buf, &len, &cap, (double)rows[i].step, ",")) ||
                (err = hlptd_csv_num(&buf, &len, &cap, rows[i].train_loss, ",")) ||
                (err = hlptd_csv_num(&buf, &len, &cap, rows[i].valid_loss, ",")) ||
                (err = hlptd_csv_num(&buf, &len, &cap, rows[i].valid_acc, ",")) ||
                (err = hlptd_csv_num(&buf, &len, &cap, rows[i].lr, ",")) ||
                (err = hlptd_csv_num(&buf, &len, &cap, rows[i].tokens_per_s, "\n")))
                break;
        }
        free(rows);
        if (err) {
            free(buf);
            hlptd_reply_err(r, err, NULL, "out of memory");
            return;
        }
        hlptd_reply_bytes(r, 200, "text/csv; charset=utf-8", buf, len);
        return;
    }
    if (format && strcmp(format, "json")) {
        free(rows);
        hlptd_reply_err(r, HLPT_ERR_INVAL, "format", "`format` must be json or csv");
        return;
    }
    cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data");
    cJSON_AddStringToObject(o, "object", "list");
    for (size_t i = 0; i < n; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddNumberToObject(m, "step", (double)rows[i].step);
        add_num_or_null(m, "train_loss", rows[i].train_loss);
        add_num_or_null(m, "valid_loss", rows[i].valid_loss);
        add_num_or_null(m, "valid_token_accuracy", rows[i].valid_acc);
        add_num_or_null(m, "learning_rate", rows[i].lr);
        add_num_or_null(m, "tokens_per_s", rows[i].tokens_per_s);
        cJSON_AddNumberToObject(m, "created_at", (double)rows[i].created_at);
        cJSON_AddItemToArray(data, m);
    }
    cJSON_AddBoolToObject(o, "has_more", 0);
    free(rows);
    hlptd_reply_json(r, 200, o);
}

/* A checkpoint's metrics under OpenAI's names. hlpt measures no training accuracy (null), and
 * evaluates the whole validation set, so the full_valid_* figures are the valid_* ones. */
static cJSON *checkpoint_metrics(const hlptd_checkpoint *c) {
    cJSON *stored = parse_or_empty(c->metrics), *o = cJSON_CreateObject();
    const cJSON *train = cJSON_GetObjectItemCaseSensitive(stored, "train_loss"),
                *valid = cJSON_GetObjectItemCaseSensitive(stored, "valid_loss"),
                *acc = cJSON_GetObjectItemCaseSensitive(stored, "valid_acc");
    double t = cJSON_IsNumber(train) ? train->valuedouble : NAN, v = cJSON_IsNumber(valid) ? valid->valuedouble : NAN,
           a = cJSON_IsNumber(acc) ? acc->valuedouble : NAN;
    cJSON_AddNumberToObject(o, "step", (double)c->step);
    add_num_or_null(o, "train_loss", t);
    cJSON_AddNullToObject(o, "train_mean_token_accuracy");
    add_num_or_null(o, "valid_loss", v);
    add_num_or_null(o, "valid_mean_token_accuracy", a);
    add_num_or_null(o, "full_valid_loss", v);
    add_num_or_null(o, "full_valid_mean_token_accuracy", a);
    cJSON_Delete(stored);
    return o;
}

static void checkpoints_work(void *app, hlptd_req *r) {
    hlptd *d = app;
    const char *id = hlptd_req_param(r, "id");
    hlptd_checkpoint **c = NULL;
    size_t n = 0;
    int more = 0;
    char why[256];
    hlptd_job *job = NULL;
    if (hlptd_store_job_get(hlptd_store_of(d), id, &job, why, sizeof why)) {
        hlptd_reply_err(r, HLPT_ERR_NOENT, "id", "no fine-tuning job %s", id);
        return;
    }
    int limit;
    const char *after;
    if (hlptd_api_page_args(r, 10, JOBS_PAGE_MAX, &limit, &after)) {
        hlptd_job_free(job);
        return;
    }
    int err = hlptd_store_checkpoint_page(hlptd_store_of(d), id, after, limit, &c, &n, &more, why,
                                         sizeof why);
    if (err) {
        hlptd_job_free(job);
        hlptd_reply_err(r, err, err == HLPT_ERR_NOENT ? "after" : NULL, "%s", why);
        return;
    }
    cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data");
    cJSON_AddStringToObject(o, "object", "list");
    for (size_t i = 0; i < n; i++) {
        char model[512];
        hlptd_jobs_model_name(hlptd_model_name(d), job, c[i]->step, model, sizeof model);
        cJSON *k = cJSON_CreateObject();
        cJSON_AddStringToObject(k, "id", c[i]->id);
        cJSON_AddStringToObject(k, "object", "fine_tuning.job.checkpoint");
        cJSON_AddNumberToObject(k, "created_at", (double)c[i]->created_at);
        cJSON_AddStringToObject(k, "fine_tuning_job_id", c[i]->job_id);
        cJSON_AddStringToObject(k, "fine_tuned_model_checkpoint", model);
        cJSON_AddNumberToObject(k, "step_number", (double)c[i]->step);
        cJSON_AddNumberToObject(k, "bytes", (double)c[i]->bytes);
        cJSON_AddItemToObject(k, "metrics", checkpoint_metrics(c[i]));
        cJSON_AddItemToArray(data, k);
    }
    if (n) {
        cJSON_AddStringToObject(o, "first_id", c[0]->id);
        cJSON_AddStringToObject(o, "last_id", c[n - 1]->id);
    }
    cJSON_AddBoolToObject(o, "has_more", more);
    hlptd_checkpoint_list_free(c, n);
    hlptd_job_free(job);
    hlptd_reply_json(r, 200, o);
}

static void loss_svg_work(void *app, hlptd_req *r) {
    size_t n;
    hlptd_metric *rows = job_metrics(app, r, &n);
    if (!rows) return;
    char *svg = NULL;
    size_t len = 0;
    int err = hlptd_api_loss_svg(hlptd_req_param(r, "id"), rows, n, &svg, &len);
    free(rows);
    if (err) hlptd_reply_err(r, err, NULL, "rendering the plot failed");
    else hlptd_reply_bytes(r, 200, "image/svg+xml", svg, len);
}

void hlptd_api_jobs_metrics(hlptd_req *r) { hlptd_req_defer(r, metrics_work); }
void hlptd_api_jobs_checkpoints(hlptd_req *r) { hlptd_req_defer(r, checkpoints_work); }
void hlptd_api_jobs_loss_svg(hlptd_req *r) { hlptd_req_defer(r, loss_svg_work); }

