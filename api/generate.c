/*
 * generate.c - OpenAI completions and chat completions with a per-request adapter, and the model
 * list.
 *
 * A request's life: the HTTP thread validates the body and tokenizes the prompt (chat messages are
 * rendered with the same template code that renders training data, so an adapter sees at serving
 * time the text it was trained on); the loop thread resolves `model` to the base or an adapter in
 * the store and hands n hlptd_req to the inference thread, keeping the HTTP request. The inference
 * thread's callbacks then stream chunks (SSE) or, when every choice is done, reply and finish the
 * request. No HTTP thread ever waits for the model.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "app.h"
#include "hlpt/dataset.h"
#include "hlpt/err.h"
#include "hlpt/tokenizer.h"
#include "http.h"
#include "serving.h"
#include "store.h"

#define MAX_N 8

typedef struct gen_call gen_call;

typedef struct {
    hlptd_req r;             /* first: the callback gets &choice->r */
    gen_call *call;
    int index;
    char *text;              /* final text (non-streaming), owned */
    size_t text_len;
    hlpt_finish finish;
    int completion_tokens;
    hlpt_gen_token *toks;    /* logprobs (non-streaming), owned */
    int n_toks;
} choice;

struct gen_call {
    hlpt_req *req;
    hlptd *d;
    int chat, stream, n, logprobs, top_logprobs;
    char model[256];         /* as the client named it */
    char adapter_label[128]; /* for metrics: "base" or the adapter name */
    char id[48];
    long created;
    int *prompt;
    int n_prompt;
    hlpt_gen_params params;
    char *stop_store[HLPT_MAX_STOP];
    choice choices[MAX_N];
    pthread_mutex_t mu;
    atomic_int refs;         /* the HTTP request's, and one per choice in flight */
    int remaining;
    int failed;
    int err;
    char why[256];
    hlpt_sse *sse;
};

/* Drops one reference; the last frees the call. A stream's request may end (client gone) while its
 * choices still run, and the choices may end before the request: whoever is last frees. */
static void call_release(void *p) {
    gen_call *c = p;
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1) return;
    for (int i = 0; i < c->n; i++) {
        free(c->choices[i].text);
        free(c->choices[i].toks);
    }
    for (int i = 0; i < HLPT_MAX_STOP; i++) free(c->stop_store[i]);
    free(c->prompt);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static const char *finish_name(hlpt_finish f) { return f == HLPT_FINISH_STOP ? "stop" : "length"; }

/* The logprobs object of a completion choice (OpenAI's legacy shape) or of a chat choice. */
static cJSON *logprobs_json(const gen_call *c, const hlpt_gen_token *t, int n) {
    const hlpt_tokenizer *tok = hlpt_model_tokenizer(hlptd_model(c->d));
    cJSON *o = cJSON_CreateObject();
    if (c->chat) {
        cJSON *content = cJSON_AddArrayToObject(o, "content");
        for (int i = 0; i < n; i++) {
            cJSON *e = cJSON_CreateObject();
            const char *piece = hlpt_tokenizer_piece(tok, t[i].id);
            cJSON_AddStringToObject(e, "token", piece ? piece : "");
            cJSON_AddNumberToObject(e, "logprob", t[i].logprob);
            cJSON *top = cJSON_AddArrayToObject(e, "top_logprobs");
            for (int k = 0; k < t[i].n_top; k++) {
                cJSON *a = cJSON_CreateObject();
                const char *p = hlpt_tokenizer_piece(tok, t[i].top_id[k]);
                cJSON_AddStringToObject(a, "token", p ? p : "");
                cJSON_AddNumberToObject(a, "logprob", t[i].top_logprob[k]);
                cJSON_AddItemToArray(top, a);
            }
            cJSON_AddItemToArray(content, e);
        }
        return o;
    }
    cJSON *tokens = cJSON_AddArrayToObject(o, "tokens"), *lps = cJSON_AddArrayToObject(o, "token_logprobs"),
          *tops = cJSON_AddArrayToObject(o, "top_logprobs");
    for (int i = 0; i < n; i++) {
        const char *piece = hlpt_tokenizer_piece(tok, t[i].id);
        cJSON_AddItemToArray(tokens, cJSON_CreateString(piece ? piece : ""));
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(t[i].logprob));
        cJSON *top = cJSON_CreateObject();
        for (int k = 0; k < t[i].n_top; k++) {
            const char *p = hlpt_tokenizer_piece(tok, t[i].top_id[k]);
            if (p && !cJSON_GetObjectItemCaseSensitive(top, p)) cJSON_AddNumberToObject(top, p, t[i].top_logprob[k]);
        }
        cJSON_AddItemToArray(tops, top);
    }
    return o;
}

static cJSON *usage_json(const gen_call *c) {
    int completion = 0;
    for (int i = 0; i < c->n; i++) completion += c->choices[i].completion_tokens;
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", c->n_prompt * c->n);
    cJSON_AddNumberToObject(u, "completion_tokens", completion);
    cJSON_AddNumberToObject(u, "total_tokens", c->n_prompt * c->n + completion);
    return u;
}

static cJSON *envelope(const gen_call *c, int chunk) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", c->id);
    cJSON_AddStringToObject(o, "object", c->chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)c->created);
    cJSON_AddStringToObject(o, "model", c->model);
    return o;
}

/* One streamed chunk: text delta of a choice, or its finish. Inference thread. */
static void send_chunk(gen_call *c, int index, const char *delta, size_t n, const char *finish) {
    cJSON *o = envelope(c, 1), *choices = cJSON_AddArrayToObject(o, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", index);
    char *text = malloc(n + 1);
    if (text) {
        memcpy(text, delta ? delta : "", n);
        text[n] = 0;
    }
    if (c->chat) {
        cJSON *d = cJSON_AddObjectToObject(ch, "delta");
        if (n || !finish) cJSON_AddStringToObject(d, "content", text ? text : "");
    } else {
        cJSON_AddStringToObject(ch, "text", text ? text : "");
        cJSON_AddNullToObject(ch, "logprobs");
    }
    free(text);
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(choices, ch);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s && hlpt_sse_send(c->sse, NULL, s) == HLPT_ERR_CANCELLED) {
        /* The client left: stop generating for it. */
        for (int i = 0; i < c->n; i++) hlptd_infer_cancel(hlptd_inference(c->d), &c->choices[i].r);
    }
    free(s);
}

/* The non-streaming answer, once every choice is done. Inference thread. */
static void reply_all(gen_call *c) {
    cJSON *o = envelope(c, 0), *choices = cJSON_AddArrayToObject(o, "choices");
    for (int i = 0; i < c->n; i++) {
        choice *ch = &c->choices[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "index", i);
        if (c->chat) {
            cJSON *m = cJSON_AddObjectToObject(j, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            cJSON_AddStringToObject(m, "content", ch->text ? ch->text : "");
        } else {
            cJSON_AddStringToObject(j, "text", ch->text ? ch->text : "");
        }
        if (c->logprobs) cJSON_AddItemToObject(j, "logprobs", logprobs_json(c, ch->toks, ch->n_toks));
        else cJSON_AddNullToObject(j, "logprobs");
        cJSON_AddStringToObject(j, "finish_reason", finish_name(ch->finish));
        cJSON_AddItemToArray(choices, j);
    }
    cJSON_AddItemToObject(o, "usage", usage_json(c));
    hlpt_reply_json(c->req, 200, o);
}

static void on_event(hlptd_req *r, hlptd_event ev, const char *delta, size_t n) {
    choice *ch = (choice *)r;
    gen_call *c = ch->call;
    if (ev == HLPTD_EV_TEXT) {
        if (c->stream && !c->failed) send_chunk(c, ch->index, delta, n, NULL);
        return;
    }
    if (ev == HLPTD_EV_DONE && r->gen) {
        size_t len;
        const char *text = hlpt_gen_text(r->gen, &len);
        int nt;
        const hlpt_gen_token *t = hlpt_gen_tokens(r->gen, &nt);
        ch->finish = hlpt_gen_finish(r->gen);
        ch->completion_tokens = nt;
        if (c->stream && len > r->sent && !c->failed) send_chunk(c, ch->index, text + r->sent, len - r->sent, NULL);
        if (!c->stream) {
            ch->text = malloc(len + 1);
            if (ch->text) {
                memcpy(ch->text, text, len);
                ch->text[len] = 0;
            }
            if (c->logprobs && nt) {
                ch->toks = malloc(sizeof *t * (size_t)nt);
                if (ch->toks) memcpy(ch->toks, t, sizeof *t * (size_t)nt);
                ch->n_toks = ch->toks ? nt : 0;
            }
        }
        api_metrics_request(c->chat ? "chat" : "completions", c->adapter_label, nt, r->submitted_s, r->first_token_s,
                            r->done_s);
        if (c->stream && !c->failed) send_chunk(c, ch->index, NULL, 0, finish_name(ch->finish));
    }
    pthread_mutex_lock(&c->mu);
    if (ev == HLPTD_EV_ERROR && !c->failed) {
        c->failed = 1;
        c->err = r->err;
        snprintf(c->why, sizeof c->why, "%s", r->why);
    }
    int last = --c->remaining == 0;
    pthread_mutex_unlock(&c->mu);
    if (!last) {
        call_release(c);
        return;
    }
    /* The last choice: answer, and let go of the request. */
    if (c->stream) {
        if (c->failed) {
            cJSON *e = cJSON_CreateObject(), *in = cJSON_AddObjectToObject(e, "error");
            cJSON_AddStringToObject(in, "message", c->why);
            cJSON_AddStringToObject(in, "type", "server_error");
            char *s = cJSON_PrintUnformatted(e);
            hlpt_sse_send(c->sse, NULL, s);
            free(s);
            cJSON_Delete(e);
        }
        hlpt_sse_send(c->sse, NULL, "[DONE]");
        hlpt_sse_close(c->sse);
        hlpt_sse_unref(c->sse);
        call_release(c);
        return;
    }
    if (c->failed) hlpt_reply_err(c->req, c->err ? c->err : HLPT_ERR_INTERNAL, c->err == HLPT_ERR_NOENT ? "model" : NULL,
                                  "%s", c->why);
    else reply_all(c);
    hlpt_req *req = c->req;
    call_release(c);
    hlpt_req_finish(req);
}

/* Loop thread: model name -> adapter id (or base), then off to the inference thread. */
static void generate_work(void *app, hlpt_req *r) {
    hlptd *d = app;
    gen_call *c = hlpt_req_data(r);
    hlptd_infer *inf = hlptd_inference(d);
    if (!inf) {
        hlpt_reply_http_err(r, 503, "server_error", "loading", NULL, "the base model is still loading");
        return;
    }
    char adapter_id[64] = "";
    if (strcmp(c->model, "base") && strcmp(c->model, hlptd_model_name(d))) {
        hlpt_adapter_rec *a = NULL;
        char why[256];
        if (hlpt_store_adapter_get(hlptd_store(d), c->model, &a, why, sizeof why) != HLPT_OK) {
            hlpt_reply_http_err(r, 404, "invalid_request_error", "model_not_found", "model",
                                "The model `%s` does not exist", c->model);
            return;
        }
        snprintf(adapter_id, sizeof adapter_id, "%s", a->id);
        snprintf(c->adapter_label, sizeof c->adapter_label, "%s", a->name);
        hlpt_adapter_rec_free(a);
    } else {
        snprintf(c->adapter_label, sizeof c->adapter_label, "base");
    }
    if (c->stream) {
        c->sse = hlpt_req_stream(r);
        if (!c->sse) return;
    }
    c->remaining = c->n;
    atomic_fetch_add(&c->refs, c->n);
    for (int i = 0; i < c->n; i++) {
        choice *ch = &c->choices[i];
        ch->call = c;
        ch->index = i;
        snprintf(ch->r.adapter_id, sizeof ch->r.adapter_id, "%s", adapter_id);
        ch->r.prompt = c->prompt;
        ch->r.n_prompt = c->n_prompt;
        ch->r.params = c->params;
        ch->r.params.seed = c->params.seed + (uint64_t)i;
        ch->r.on_event = on_event;
    }
    for (int i = 0; i < c->n; i++) {
        if (hlptd_infer_submit(inf, &c->choices[i].r) != HLPT_OK) {
            /* Stopping: the remaining choices fail at once through the same path. */
            c->choices[i].r.err = HLPT_ERR_STATE;
            snprintf(c->choices[i].r.why, sizeof c->choices[i].r.why, "the daemon is shutting down");
            on_event(&c->choices[i].r, HLPTD_EV_ERROR, NULL, 0);
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Validation (HTTP thread)                                                                        */

static int bad(hlpt_req *r, const char *param, const char *msg) {
    hlpt_reply_err(r, HLPT_ERR_INVAL, param, "%s", msg);
    return -1;
}

/* A number field in [lo, hi]; integer when want_int. Absent or null keeps *out. */
static int num_field(hlpt_req *r, const cJSON *j, const char *key, double lo, double hi, int want_int, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) return 0;
    char msg[160];
    if (!cJSON_IsNumber(v) || (want_int && v->valuedouble != floor(v->valuedouble))) {
        snprintf(msg, sizeof msg, "`%s` must be %s", key, want_int ? "an integer" : "a number");
        return bad(r, key, msg);
    }
    if (!(v->valuedouble >= lo && v->valuedouble <= hi)) {
        if (want_int) snprintf(msg, sizeof msg, "`%s` must be an integer from %.0f to %.0f", key, lo, hi);
        else snprintf(msg, sizeof msg, "`%s` must be between %g and %g", key, lo, hi);
        return bad(r, key, msg);
    }
    *out = v->valuedouble;
    return 0;
}

static const char *const known_keys[] = {
    "model", "prompt", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
    "stop", "seed", "n", "logprobs", "top_logprobs", "stream", "stream_options", "user", "ignore_eos",
    "frequency_penalty", "presence_penalty", "echo", "suffix", "best_of", "logit_bias",
};

/* The prompt text of a chat: the messages rendered by the training template, up to where the
 * assistant's reply begins. */
static int chat_prompt(hlpt_req *r, const cJSON *messages, char **prompt) {
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0)
        return bad(r, "messages", "`messages` must be a non-empty array of {role, content}");
    cJSON *line = cJSON_CreateObject(), *copy = cJSON_Duplicate(messages, 1);
    cJSON *asst = cJSON_CreateObject();
    cJSON_AddStringToObject(asst, "role", "assistant");
    cJSON_AddStringToObject(asst, "content", ".");
    cJSON_AddItemToArray(copy, asst);
    cJSON_AddItemToObject(line, "messages", copy);
    char *text = cJSON_PrintUnformatted(line);
    cJSON_Delete(line);
    hlpt_example ex = {0};
    char why[256];
    int err = text ? hlpt_dataset_parse_line(text, strlen(text), 1, NULL, &ex, why, sizeof why) : HLPT_ERR_NOMEM;
    free(text);
    if (err) {
        /* The parser speaks of line 1 and its own last message: say it of the request. */
        const char *field = strstr(why, "field ");
        char msg[300];
        snprintf(msg, sizeof msg, "invalid `messages`: %s", field ? field + 6 : why);
        return bad(r, "messages", msg);
    }
    *prompt = ex.prompt;
    ex.prompt = NULL;
    hlpt_example_free(&ex);
    return 0;
}

static void generate_handler(hlpt_req *r, int chat) {
    hlptd *d = hlpt_req_app(r);
    const hlpt_model *m = hlptd_model(d);
    if (!m) {
        hlpt_reply_http_err(r, 503, "server_error", "loading", NULL, "the base model is still loading");
        return;
    }
    cJSON *j = hlpt_req_json(r);
    if (!j) return;
    if (!cJSON_IsObject(j)) {
        bad(r, NULL, "the body must be a JSON object");
        return;
    }
    const cJSON *v;
    cJSON_ArrayForEach(v, j) {
        int known = 0;
        for (size_t i = 0; i < sizeof known_keys / sizeof *known_keys; i++) known |= !strcmp(v->string, known_keys[i]);
        if (!known) {
            char msg[160];
            snprintf(msg, sizeof msg, "unknown field `%.64s`", v->string);
            bad(r, v->string, msg);
            return;
        }
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    if (!cJSON_IsString(model) || !*model->valuestring || strlen(model->valuestring) >= 256) {
        bad(r, "model", "`model` is required: the base model's name, \"base\", or an adapter's name or id");
        return;
    }
    const cJSON *echo = cJSON_GetObjectItemCaseSensitive(j, "echo");
    if (cJSON_IsTrue(echo)) {
        bad(r, "echo", "`echo` is not supported");
        return;
    }
    const cJSON *best_of = cJSON_GetObjectItemCaseSensitive(j, "best_of");
    if (best_of && !cJSON_IsNull(best_of) && !(cJSON_IsNumber(best_of) && best_of->valuedouble == 1)) {
        bad(r, "best_of", "`best_of` is not supported");
        return;
    }
    gen_call *c = calloc(1, sizeof *c);
    if (!c) {
        hlpt_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    pthread_mutex_init(&c->mu, NULL);
    atomic_init(&c->refs, 1);
    c->chat = chat;
    c->d = d;
    c->req = r;
    snprintf(c->model, sizeof c->model, "%s", model->valuestring);
    hlpt_req_set_data(r, c, call_release);

    hlpt_gen_params *p = &c->params;
    hlpt_gen_params_defaults(p);
    double max_tokens = chat ? 256 : 16, temperature = 1, top_p = 1, top_k = 0, seed = 0, n = 1, lp = 0, tlp = 0;
    const char *mt_key = cJSON_GetObjectItemCaseSensitive(j, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (num_field(r, j, mt_key, 1, 1 << 20, 1, &max_tokens) || num_field(r, j, "temperature", 0, 2, 0, &temperature) ||
        num_field(r, j, "top_p", 1e-9, 1, 0, &top_p) || num_field(r, j, "top_k", 0, 1 << 30, 1, &top_k) ||
        num_field(r, j, "seed", 0, 9007199254740991.0, 1, &seed) || num_field(r, j, "n", 1, MAX_N, 1, &n))
        return;
    const cJSON *logprobs = cJSON_GetObjectItemCaseSensitive(j, "logprobs");
    if (chat) {
        if (logprobs && !cJSON_IsNull(logprobs) && !cJSON_IsBool(logprobs)) {
            bad(r, "logprobs", "`logprobs` must be true or false");
            return;
        }
        if (num_field(r, j, "top_logprobs", 0, 20, 1, &tlp)) return;
        c->logprobs = cJSON_IsTrue(logprobs);
        c->top_logprobs = (int)tlp;
    } else {
        if (num_field(r, j, "logprobs", 0, 20, 1, &lp)) return;
        c->logprobs = logprobs && !cJSON_IsNull(logprobs);
        c->top_logprobs = (int)lp;
    }
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(j, "stream"), *ign = cJSON_GetObjectItemCaseSensitive(j, "ignore_eos");
    if ((stream && !cJSON_IsNull(stream) && !cJSON_IsBool(stream)) || (ign && !cJSON_IsNull(ign) && !cJSON_IsBool(ign))) {
        bad(r, stream && !cJSON_IsBool(stream) ? "stream" : "ignore_eos", "must be true or false");
        return;
    }
    c->stream = cJSON_IsTrue(stream);
    if (c->stream && c->logprobs) {
        bad(r, "logprobs", "`logprobs` is not available with `stream`");
        return;
    }
    c->n = (int)n;
    p->max_tokens = (int)max_tokens;
    p->temperature = (float)temperature;
    p->top_p = (float)top_p;
    p->top_k = (int)top_k;
    p->seed = (uint64_t)seed;
    p->ignore_eos = cJSON_IsTrue(ign);
    p->logprobs = c->logprobs;
    p->top_logprobs = c->top_logprobs;
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(j, "stop");
    if (stop && !cJSON_IsNull(stop)) {
        if (cJSON_IsString(stop)) {
            c->stop_store[0] = strdup(stop->valuestring);
            p->n_stop = 1;
        } else if (cJSON_IsArray(stop) && cJSON_GetArraySize(stop) <= HLPT_MAX_STOP) {
            cJSON_ArrayForEach(v, stop) {
                if (!cJSON_IsString(v) || !*v->valuestring) {
                    bad(r, "stop", "`stop` must be a string or an array of non-empty strings");
                    return;
                }
                c->stop_store[p->n_stop++] = strdup(v->valuestring);
            }
        } else {
            bad(r, "stop", "`stop` must be a string or an array of at most 8 strings");
            return;
        }
        for (int i = 0; i < p->n_stop; i++) p->stop[i] = c->stop_store[i];
    }

    /* The prompt, tokenized here: BOS first, as in training. */
    char *text = NULL;
    if (chat) {
        if (cJSON_GetObjectItemCaseSensitive(j, "prompt")) {
            bad(r, "prompt", "chat completions take `messages`, not `prompt`");
            return;
        }
        if (chat_prompt(r, cJSON_GetObjectItemCaseSensitive(j, "messages"), &text)) return;
    } else {
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(j, "prompt");
        if (cJSON_IsArray(pr) && cJSON_GetArraySize(pr) == 1 && cJSON_IsString(cJSON_GetArrayItem(pr, 0)))
            pr = cJSON_GetArrayItem(pr, 0);
        if (!cJSON_IsString(pr)) {
            bad(r, "prompt", "`prompt` is required and must be a string");
            return;
        }
        text = strdup(pr->valuestring);
    }
    const hlpt_config *cfg = hlpt_model_config(m);
    int *ids = NULL, k = 0;
    char why[256];
    int err = text ? hlpt_tokenizer_encode(hlpt_model_tokenizer(m), text, strlen(text), 0, &ids, &k, why, sizeof why)
                   : HLPT_ERR_NOMEM;
    free(text);
    if (err) {
        hlpt_reply_err(r, err, chat ? "messages" : "prompt", "%s", why);
        return;
    }
    int bos = cfg->bos_id >= 0;
    c->prompt = malloc(sizeof(int) * (size_t)(k + 1));
    if (!c->prompt) {
        free(ids);
        hlpt_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    if (bos) c->prompt[0] = cfg->bos_id;
    memcpy(c->prompt + bos, ids, sizeof(int) * (size_t)k);
    free(ids);
    c->n_prompt = k + bos;
    /* Prefix slots take positions too: the worst case is checked again per adapter. */
    if ((long)c->n_prompt + p->max_tokens > cfg->max_pos) {
        char msg[200];
        snprintf(msg, sizeof msg, "the prompt (%d tokens) plus max_tokens (%d) exceed the model's context of %d tokens",
                 c->n_prompt, p->max_tokens, cfg->max_pos);
        bad(r, c->n_prompt >= cfg->max_pos ? (chat ? "messages" : "prompt") : mt_key, msg);
        return;
    }
    hlpt_id_new(c->id, chat ? "chatcmpl-" : "cmpl-");
    c->created = (long)time(NULL);
    hlpt_req_defer(r, generate_work);
}

void hlpt_api_completions(hlpt_req *r) { generate_handler(r, 0); }
void hlpt_api_chat_completions(hlpt_req *r) { generate_handler(r, 1); }

/* ---------------------------------------------------------------------------------------------- */
/* Models                                                                                          */

static void models_work(void *app, hlpt_req *r) {
    hlptd *d = app;
    cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data");
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "id", hlptd_model_name(d));
    cJSON_AddStringToObject(b, "object", "model");
    cJSON_AddNumberToObject(b, "created", 0);
    cJSON_AddStringToObject(b, "owned_by", "hlpt");
    cJSON_AddNullToObject(b, "parent");
    cJSON_AddItemToArray(data, b);
    const char *after = NULL;
    int more = 1;
    char why[256];
    char last[HLPT_ID_MAX] = "";
    while (more) {
        hlpt_adapter_rec **a = NULL;
        size_t n = 0;
        if (hlpt_store_adapter_list(hlptd_store(d), after, 100, &a, &n, &more, why, sizeof why)) break;
        for (size_t i = 0; i < n; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "id", a[i]->name);
            cJSON_AddStringToObject(e, "object", "model");
            cJSON_AddNumberToObject(e, "created", (double)a[i]->created_at);
            cJSON_AddStringToObject(e, "owned_by", "hlpt");
            cJSON_AddStringToObject(e, "parent", hlptd_model_name(d));
            cJSON_AddStringToObject(e, "adapter_id", a[i]->id);
            cJSON_AddItemToArray(data, e);
            snprintf(last, sizeof last, "%s", a[i]->id);
        }
        hlpt_adapter_rec_list_free(a, n);
        after = last;
        if (!n) break;
    }
    cJSON_AddBoolToObject(o, "has_more", 0);
    hlpt_reply_json(r, 200, o);
}

void hlpt_api_models(hlpt_req *r) { hlpt_req_defer(r, models_work); }
