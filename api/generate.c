/*
 * generate.c - OpenAI completions and chat completions with a per-request adapter.
 *
 * A request's life (docs/design.md, "The path of a completion"): the HTTP thread validates the
 * body (hlptd_api_gen_request_parse) and tokenizes the prompt (hlptd_api_gen_tokenize; chat messages are
 * rendered by the same template code that renders training data, so an adapter sees at serving
 * time the text it was trained on), keeps the HTTP request and submits one hlptd_infer_req per choice
 * to the inference thread directly. The inference thread resolves `model` to the base or an
 * adapter (its START event) and generates; its callbacks open the event stream at the first START
 * and stream chunks (SSE) or, when every choice is done, reply and finish the request. No HTTP
 * thread ever waits for the model, and the loop thread takes no part.
 *
 * Who answers: a count of pending parts (one per choice, plus one for the handler while it
 * submits) decides; whoever brings it to zero replies. A model that cannot be resolved fails its
 * choices before any START, so the answer is a plain error (a 404 for an unknown model), streamed
 * or not, as it was before the request was kept; once a stream is open, failures are its events.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>

#include "api.h"
#include "app.h"
#include "hlpt/dataset.h"
#include "hlpt/err.h"
#include "hlpt/tokenizer.h"
#include "http.h"
#include "serving.h"

/* ---------------------------------------------------------------------------------------------- */
/* Validation (pure: HTTP thread, unit tests)                                                      */

/* The fields either endpoint knows; anything else is a 400 naming it (a typo must not be ignored). */
static const char *const known_keys[] = {
    "model", "prompt", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
    "stop", "seed", "n", "logprobs", "top_logprobs", "stream", "stream_options", "user", "ignore_eos",
    "frequency_penalty", "presence_penalty", "echo", "suffix", "best_of", "logit_bias",
    /* Chat's only: accepted (store, metadata, service_tier and parallel_tool_calls change nothing
     * here), or refused unless neutral (tools, tool_choice, response_format). */
    "store", "metadata", "service_tier", "parallel_tool_calls", "tools", "tool_choice", "response_format",
};

static const char *const chat_only_keys[] = {"store", "metadata", "service_tier", "parallel_tool_calls", "tools",
                                             "tool_choice", "response_format"};

static int fail(const char **param, const char *name, char *why, size_t len, int err, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static int fail(const char **param, const char *name, char *why, size_t len, int err, const char *fmt, ...) {
    *param = name;
    va_list ap;
    va_start(ap, fmt);
    hlpt_vwhy(why, len, err, fmt, ap);
    va_end(ap);
    return err;
}

static const cJSON *field(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* A number field in [lo, hi]; an integer when want_int. Absent or null keeps *out. */
static int num_field(const cJSON *j, const char *key, double lo, double hi, int want_int, double *out,
                     const char **param, char *why, size_t len) {
    const cJSON *v = field(j, key);
    if (!v) return HLPT_OK;
    if (!cJSON_IsNumber(v) || (want_int && v->valuedouble != floor(v->valuedouble)))
        return fail(param, key, why, len, HLPT_ERR_INVAL, "`%s` must be %s", key, want_int ? "an integer" : "a number");
    if (!(v->valuedouble >= lo && v->valuedouble <= hi)) {
        if (want_int) return fail(param, key, why, len, HLPT_ERR_INVAL, "`%s` must be an integer from %.0f to %.0f", key, lo, hi);
        return fail(param, key, why, len, HLPT_ERR_INVAL, "`%s` must be between %g and %g", key, lo, hi);
    }
    *out = v->valuedouble;
    return HLPT_OK;
}

static int bool_field(const cJSON *j, const char *key, int *out, const char **param, char *why, size_t len) {
    const cJSON *v = field(j, key);
    if (!v) return HLPT_OK;
    if (!cJSON_IsBool(v)) return fail(param, key, why, len, HLPT_ERR_INVAL, "`%s` must be true or false", key);
    *out = cJSON_IsTrue(v);
    return HLPT_OK;
}

/* Fields of OpenAI's API that change sampling in ways hlpt does not implement: accepted only at
 * their neutral value, refused otherwise (never silently ignored). */
static int neutral_fields(const cJSON *j, int chat, const char **param, char *why, size_t len) {
    static const char *const penalties[] = {"frequency_penalty", "presence_penalty"};
    for (size_t i = 0; i < sizeof penalties / sizeof *penalties; i++) {
        double v = 0;
        int err = num_field(j, penalties[i], -2, 2, 0, &v, param, why, len);
        if (err) return err;
        if (v != 0) return fail(param, penalties[i], why, len, HLPT_ERR_UNSUPPORTED, "`%s` is not supported (only 0)", penalties[i]);
    }
    int echo = 0;
    int err = bool_field(j, "echo", &echo, param, why, len);
    if (err) return err;
    if (echo) return fail(param, "echo", why, len, HLPT_ERR_UNSUPPORTED, "`echo` is not supported");
    if (chat && field(j, "echo")) return fail(param, "echo", why, len, HLPT_ERR_INVAL, "chat completions have no `echo`");
    double best_of = 1;
    if ((err = num_field(j, "best_of", 1, 20, 1, &best_of, param, why, len))) return err;
    if (best_of != 1) return fail(param, "best_of", why, len, HLPT_ERR_UNSUPPORTED, "`best_of` is not supported (only 1)");
    const cJSON *suffix = field(j, "suffix");
    if (suffix && !(cJSON_IsString(suffix) && !*suffix->valuestring))
        return fail(param, "suffix", why, len, HLPT_ERR_UNSUPPORTED, "`suffix` is not supported");
    const cJSON *bias = field(j, "logit_bias");
    if (bias && !(cJSON_IsObject(bias) && !bias->child))
        return fail(param, "logit_bias", why, len, HLPT_ERR_UNSUPPORTED, "`logit_bias` is not supported");
    const cJSON *user = field(j, "user");
    if (user && !cJSON_IsString(user)) return fail(param, "user", why, len, HLPT_ERR_INVAL, "`user` must be a string");
    return HLPT_OK;
}

/* Chat's OpenAI fields that hlpt takes without acting on them, and those it supports only at their
 * neutral value: no tools (hlpt renders tool calls in the conversation, but does not parse a
 * model's output into tool_calls), text responses only. */
static int chat_fields(const cJSON *j, const char **param, char *why, size_t len) {
    const cJSON *v;
    if ((v = field(j, "store")) && !cJSON_IsBool(v))
        return fail(param, "store", why, len, HLPT_ERR_INVAL, "`store` must be true or false");
    if ((v = field(j, "parallel_tool_calls")) && !cJSON_IsBool(v))
        return fail(param, "parallel_tool_calls", why, len, HLPT_ERR_INVAL, "`parallel_tool_calls` must be true or false");
    if ((v = field(j, "service_tier")) && !cJSON_IsString(v))
        return fail(param, "service_tier", why, len, HLPT_ERR_INVAL, "`service_tier` must be a string");
    if ((v = field(j, "metadata"))) {
        const cJSON *e;
        if (!cJSON_IsObject(v)) return fail(param, "metadata", why, len, HLPT_ERR_INVAL, "`metadata` must be an object of strings");
        cJSON_ArrayForEach(e, v) if (!cJSON_IsString(e))
            return fail(param, "metadata", why, len, HLPT_ERR_INVAL, "`metadata` must be an object of strings");
    }
    if ((v = field(j, "tools")) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0))
        return fail(param, "tools", why, len, HLPT_ERR_UNSUPPORTED,
                    "`tools` is not supported: hlpt does not turn a model's output into tool calls");
    if ((v = field(j, "tool_choice")) && !(cJSON_IsString(v) && (!strcmp(v->valuestring, "none") || !strcmp(v->valuestring, "auto"))))
        return fail(param, "tool_choice", why, len, HLPT_ERR_UNSUPPORTED, "`tool_choice` is not supported (only none or auto)");
    if ((v = field(j, "response_format"))) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "type");
        if (!cJSON_IsObject(v) || !cJSON_IsString(t))
            return fail(param, "response_format", why, len, HLPT_ERR_INVAL, "`response_format` must be an object with `type`");
        if (strcmp(t->valuestring, "text"))
            return fail(param, "response_format", why, len, HLPT_ERR_UNSUPPORTED,
                        "`response_format` type `%.32s` is not supported (only text)", t->valuestring);
    }
    return HLPT_OK;
}

static int stop_field(const cJSON *j, hlptd_api_gen_request *q, const char **param, char *why, size_t len) {
    const cJSON *stop = field(j, "stop"), *v;
    if (!stop) return HLPT_OK;
    hlpt_gen_params *p = &q->params;
    if (cJSON_IsString(stop)) {
        if (!*stop->valuestring) return fail(param, "stop", why, len, HLPT_ERR_INVAL, "`stop` must not be empty");
        if (!(q->stop[0] = strdup(stop->valuestring))) return fail(param, NULL, why, len, HLPT_ERR_NOMEM, "out of memory");
        p->n_stop = 1;
    } else if (cJSON_IsArray(stop) && cJSON_GetArraySize(stop) <= HLPT_MAX_STOP) {
        cJSON_ArrayForEach(v, stop) {
            if (!cJSON_IsString(v) || !*v->valuestring)
                return fail(param, "stop", why, len, HLPT_ERR_INVAL, "`stop` must be a string or an array of non-empty strings");
            if (!(q->stop[p->n_stop++] = strdup(v->valuestring)))
                return fail(param, NULL, why, len, HLPT_ERR_NOMEM, "out of memory");
        }
    } else {
        return fail(param, "stop", why, len, HLPT_ERR_INVAL, "`stop` must be a string or an array of at most %d strings",
                    HLPT_MAX_STOP);
    }
    for (int i = 0; i < p->n_stop; i++) p->stop[i] = q->stop[i];
    return HLPT_OK;
}

/* The chat's prompt: the messages as the training template renders them, the assistant's turn
 * opened. */
static int chat_prompt(const cJSON *j, hlptd_api_gen_request *q, const char **param, char *why, size_t len) {
    if (field(j, "prompt")) return fail(param, "prompt", why, len, HLPT_ERR_INVAL, "chat completions take `messages`, not `prompt`");
    const cJSON *msgs = field(j, "messages"), *m;
    int n = cJSON_GetArraySize(msgs);
    if (!cJSON_IsArray(msgs) || n == 0)
        return fail(param, "messages", why, len, HLPT_ERR_INVAL, "`messages` is required: a non-empty array of {role, content}");
    hlpt_chat_msg *v = calloc((size_t)n, sizeof *v);
    char **texts = calloc((size_t)n, sizeof *texts);
    if (!v || !texts) {
        free(v);
        free(texts);
        return fail(param, NULL, why, len, HLPT_ERR_NOMEM, "out of memory");
    }
    int i = 0, err = HLPT_OK;
    cJSON_ArrayForEach(m, msgs) {
        /* OpenAI's text shapes (content parts, developer, tool calls and results) become the
         * (role, text) turns the training template renders. */
        const char *role;
        if ((err = hlpt_chat_message(m, i, &role, &texts[i], why, len))) {
            *param = "messages";
            if (err == HLPT_ERR_FORMAT) err = HLPT_ERR_INVAL;
            break;
        }
        v[i] = (hlpt_chat_msg){role, texts[i]};
        i++;
    }
    if (!err && (err = hlpt_chat_prompt(v, n, NULL, &q->prompts[0], why, len))) {
        *param = "messages";
        if (err == HLPT_ERR_FORMAT) err = HLPT_ERR_INVAL;
    }
    for (int k = 0; k < n; k++) free(texts[k]);
    free(texts);
    free(v);
    return err;
}

/* A prompt of token ids: a non-empty array of non-negative integers (the vocabulary is checked
 * when the prompt is tokenized). Returns 0 when v is no such array. */
static int ids_prompt(const cJSON *v, hlptd_api_gen_request *q, int k) {
    int n = cJSON_GetArraySize(v);
    if (!cJSON_IsArray(v) || n == 0) return 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 2147483647.0 ||
                                 e->valuedouble != floor(e->valuedouble)) return 0;
    if (!(q->prompt_ids[k] = malloc(sizeof(int) * (size_t)n))) return 0;
    int i = 0;
    cJSON_ArrayForEach(e, v) q->prompt_ids[k][i++] = (int)e->valuedouble;
    q->n_prompt_ids[k] = n;
    return 1;
}

/* OpenAI's prompt: a string, an array of strings, an array of token ids, or an array of those. */
static int prompt_field(const cJSON *pr, hlptd_api_gen_request *q, const char **param, char *why, size_t len) {
    static const char shape[] = "`prompt` is required: a string, an array of strings, an array of token ids, "
                                "or an array of token-id arrays";
    if (cJSON_IsString(pr)) {
        q->n_prompts = 1;
        if (!(q->prompts[0] = strdup(pr->valuestring))) return fail(param, NULL, why, len, HLPT_ERR_NOMEM, "out of memory");
        return HLPT_OK;
    }
    int n = cJSON_GetArraySize(pr);
    if (!cJSON_IsArray(pr) || n == 0) return fail(param, "prompt", why, len, HLPT_ERR_INVAL, "%s", shape);
    if (cJSON_IsNumber(cJSON_GetArrayItem(pr, 0))) {
        if (!ids_prompt(pr, q, 0)) return fail(param, "prompt", why, len, HLPT_ERR_INVAL, "`prompt`: token ids must be non-negative integers");
        q->n_prompts = 1;
        return HLPT_OK;
    }
    if (n > API_GEN_MAX_PROMPTS)
        return fail(param, "prompt", why, len, HLPT_ERR_INVAL, "`prompt`: at most %d prompts in one request", API_GEN_MAX_PROMPTS);
    const cJSON *v;
    int k = 0;
    cJSON_ArrayForEach(v, pr) {
        if (cJSON_IsString(v)) {
            if (!(q->prompts[k] = strdup(v->valuestring))) return fail(param, NULL, why, len, HLPT_ERR_NOMEM, "out of memory");
        } else if (!ids_prompt(v, q, k)) {
            return fail(param, "prompt", why, len, HLPT_ERR_INVAL, "`prompt[%d]`: %s", k,
                        cJSON_IsArray(v) ? "token ids must be non-negative integers" : "must be a string or an array of token ids");
        }
        q->n_prompts = ++k;
    }
    return HLPT_OK;
}

int hlptd_api_gen_request_parse(const cJSON *j, int chat, hlptd_api_gen_request *q, const char **param, char *why, size_t len) {
    memset(q, 0, sizeof *q);
    *param = NULL;
    q->chat = chat;
    q->n = 1;
    q->max_tokens_key = "max_tokens";
    hlpt_gen_params *p = &q->params;
    hlpt_gen_params_defaults(p);
    if (!cJSON_IsObject(j)) return fail(param, NULL, why, len, HLPT_ERR_INVAL, "the body must be a JSON object");
    const cJSON *v;
    cJSON_ArrayForEach(v, j) {
        int known = 0;
        for (size_t i = 0; i < sizeof known_keys / sizeof *known_keys; i++) known |= !strcmp(v->string, known_keys[i]);
        if (!known) return fail(param, v->string, why, len, HLPT_ERR_INVAL, "unknown field `%.64s`", v->string);
        for (size_t i = 0; !chat && i < sizeof chat_only_keys / sizeof *chat_only_keys; i++)
            if (!strcmp(v->string, chat_only_keys[i]))
                return fail(param, v->string, why, len, HLPT_ERR_INVAL, "unknown field `%.64s` (it is chat's)", v->string);
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    if (!cJSON_IsString(model) || !*model->valuestring || strlen(model->valuestring) >= sizeof q->model)
        return fail(param, "model", why, len, HLPT_ERR_INVAL,
                    "`model` is required: the base model's name, \"base\", or an adapter's name or id");
    snprintf(q->model, sizeof q->model, "%s", model->valuestring);
    int err = neutral_fields(j, chat, param, why, len);
    if (!err && chat) err = chat_fields(j, param, why, len);
    if (err) return err;

    double max_tokens = chat ? 256 : 16, temperature = 1, top_p = 1, top_k = 0, n = 1, lp = 0, tlp = 0;
    if (field(j, "max_completion_tokens")) q->max_tokens_key = "max_completion_tokens";
    if ((err = num_field(j, q->max_tokens_key, 1, 1 << 20, 1, &max_tokens, param, why, len)) ||
        (err = num_field(j, "temperature", 0, 2, 0, &temperature, param, why, len)) ||
        (err = num_field(j, "top_p", 0, 1, 0, &top_p, param, why, len)) ||
        (err = num_field(j, "top_k", 0, 1 << 30, 1, &top_k, param, why, len)) ||
        (err = num_field(j, "n", 1, API_GEN_MAX_N, 1, &n, param, why, len)))
        return err;
    if (top_p <= 0) return fail(param, "top_p", why, len, HLPT_ERR_INVAL, "`top_p` must be greater than 0 and at most 1");
    /* A seed is any integer JSON carries exactly; without one, each request draws its own. */
    double seed = 0;
    if ((err = num_field(j, "seed", -9007199254740991.0, 9007199254740991.0, 1, &seed, param, why, len))) return err;
    uint64_t s;
    if (field(j, "seed")) s = (uint64_t)(int64_t)seed;
    else if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) s = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)q;

    if (chat) {
        if ((err = bool_field(j, "logprobs", &q->logprobs, param, why, len)) ||
            (err = num_field(j, "top_logprobs", 0, HLPT_MAX_TOP_LOGPROBS, 1, &tlp, param, why, len)))
            return err;
        if (field(j, "top_logprobs") && !q->logprobs)
            return fail(param, "top_logprobs", why, len, HLPT_ERR_INVAL, "`top_logprobs` needs `logprobs` true");
    } else {
        if (field(j, "top_logprobs"))
            return fail(param, "top_logprobs", why, len, HLPT_ERR_INVAL,
                        "completions take `logprobs` as the number of alternatives; `top_logprobs` is chat's");
        if ((err = num_field(j, "logprobs", 0, HLPT_MAX_TOP_LOGPROBS, 1, &lp, param, why, len))) return err;
        q->logprobs = field(j, "logprobs") != NULL;
        tlp = lp;
    }
    q->top_logprobs = (int)tlp;
    int ignore_eos = 0;
    if ((err = bool_field(j, "stream", &q->stream, param, why, len)) ||
        (err = bool_field(j, "ignore_eos", &ignore_eos, param, why, len)))
        return err;
    const cJSON *so = field(j, "stream_options");
    if (so) {
        if (!q->stream) return fail(param, "stream_options", why, len, HLPT_ERR_INVAL, "`stream_options` needs `stream` true");
        if (!cJSON_IsObject(so)) return fail(param, "stream_options", why, len, HLPT_ERR_INVAL, "`stream_options` must be an object");
        cJSON_ArrayForEach(v, so) if (strcmp(v->string, "include_usage"))
            return fail(param, "stream_options", why, len, HLPT_ERR_INVAL, "unknown field `stream_options.%.64s`", v->string);
        const cJSON *iu = field(so, "include_usage");
        if (iu && !cJSON_IsBool(iu))
            return fail(param, "stream_options", why, len, HLPT_ERR_INVAL, "`stream_options.include_usage` must be true or false");
        q->include_usage = cJSON_IsTrue(iu);
    }
    if (q->stream && q->logprobs)
        return fail(param, "logprobs", why, len, HLPT_ERR_UNSUPPORTED, "`logprobs` is not available with `stream`");
    if ((err = stop_field(j, q, param, why, len))) return err;

    q->n = (int)n;
    p->max_tokens = (int)max_tokens;
    p->temperature = (float)temperature;
    p->top_p = (float)top_p;
    p->top_k = (int)top_k;
    p->seed = s;
    p->ignore_eos = ignore_eos;
    p->logprobs = q->logprobs;
    p->top_logprobs = q->top_logprobs;

    if (chat) {
        q->n_prompts = 1;
        err = chat_prompt(j, q, param, why, len);
        q->prompt = q->prompts[0];
        return err;
    }
    if (field(j, "messages")) return fail(param, "messages", why, len, HLPT_ERR_INVAL, "completions take `prompt`; `messages` is for /v1/chat/completions");
    if ((err = prompt_field(field(j, "prompt"), q, param, why, len))) return err;
    if (q->n_prompts * q->n > API_GEN_MAX_CHOICES)
        return fail(param, "n", why, len, HLPT_ERR_INVAL, "%d prompts × n %d exceed %d choices in one request", q->n_prompts,
                    q->n, API_GEN_MAX_CHOICES);
    q->prompt = q->prompts[0];
    return HLPT_OK;
}

/* The fields of a Responses request, and how each maps onto a chat request (NULL: checked here). */
static const struct {
    const char *key, *chat_key;
} responses_keys[] = {
    {"model", "model"}, {"input", NULL}, {"instructions", NULL}, {"max_output_tokens", "max_completion_tokens"},
    {"temperature", "temperature"}, {"top_p", "top_p"}, {"stream", "stream"}, {"store", "store"},
    {"metadata", "metadata"}, {"user", "user"}, {"service_tier", "service_tier"},
    {"parallel_tool_calls", "parallel_tool_calls"}, {"tools", "tools"}, {"tool_choice", "tool_choice"},
    {"text", NULL}, {"truncation", NULL}, {"previous_response_id", NULL}, {"reasoning", NULL},
    {"include", NULL}, {"background", NULL},
};

/* A chat field's name as the Responses API calls it, for error replies. */
static const char *responses_name(const char *chat_key) {
    if (!chat_key) return NULL;
    if (!strcmp(chat_key, "messages")) return "input";
    for (size_t i = 0; i < sizeof responses_keys / sizeof *responses_keys; i++)
        if (responses_keys[i].chat_key && !strcmp(responses_keys[i].chat_key, chat_key)) return responses_keys[i].key;
    return chat_key;
}

int hlptd_api_responses_request_parse(const cJSON *j, hlptd_api_gen_request *q, hlptd_api_responses_extra *x, const char **param,
                                char *why, size_t len) {
    memset(q, 0, sizeof *q);
    memset(x, 0, sizeof *x);
    *param = NULL;
    if (!cJSON_IsObject(j)) return fail(param, NULL, why, len, HLPT_ERR_INVAL, "the body must be a JSON object");
    cJSON *chat = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(chat, "messages");
    const cJSON *v;
    int err = HLPT_OK;
    cJSON_ArrayForEach(v, j) {
        size_t i = 0;
        while (i < sizeof responses_keys / sizeof *responses_keys && strcmp(responses_keys[i].key, v->string)) i++;
        if (i == sizeof responses_keys / sizeof *responses_keys) {
            err = fail(param, v->string, why, len, HLPT_ERR_INVAL, "unknown field `%.64s`", v->string);
            goto out;
        }
        if (responses_keys[i].chat_key && !cJSON_IsNull(v))
            cJSON_AddItemToObject(chat, responses_keys[i].chat_key, cJSON_Duplicate(v, 1));
    }
    /* Fields hlpt has no use for, accepted at their neutral value only. */
    if ((v = field(j, "previous_response_id"))) {
        err = fail(param, "previous_response_id", why, len, HLPT_ERR_UNSUPPORTED,
                   "`previous_response_id` is not supported: hlptd keeps no responses (send the conversation in `input`)");
        goto out;
    }
    if ((v = field(j, "background")) && !cJSON_IsFalse(v)) {
        err = fail(param, "background", why, len, HLPT_ERR_UNSUPPORTED, "`background` is not supported");
        goto out;
    }
    if ((v = field(j, "reasoning")) && !(cJSON_IsObject(v) && !v->child)) {
        err = fail(param, "reasoning", why, len, HLPT_ERR_UNSUPPORTED, "`reasoning` is not supported");
        goto out;
    }
    if ((v = field(j, "include")) && !(cJSON_IsArray(v) && !v->child)) {
        err = fail(param, "include", why, len, HLPT_ERR_UNSUPPORTED, "`include` is not supported");
        goto out;
    }
    if ((v = field(j, "truncation")) && !(cJSON_IsString(v) && !strcmp(v->valuestring, "disabled"))) {
        err = fail(param, "truncation", why, len, HLPT_ERR_UNSUPPORTED, "`truncation` is not supported (only disabled)");
        goto out;
    }
    if ((v = field(j, "text"))) {
        const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(v, "format"), *t = cJSON_GetObjectItemCaseSensitive(fmt, "type");
        if (!cJSON_IsObject(v) || (fmt && !(cJSON_IsString(t) && !strcmp(t->valuestring, "text")))) {
            err = fail(param, "text", why, len, HLPT_ERR_UNSUPPORTED, "`text.format` is not supported (only text)");
            goto out;
        }
    }
    if ((v = field(j, "instructions"))) {
        if (!cJSON_IsString(v)) {
            err = fail(param, "instructions", why, len, HLPT_ERR_INVAL, "`instructions` must be a string");
            goto out;
        }
        x->instructions = strdup(v->valuestring);
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "developer");
        cJSON_AddStringToObject(m, "content", v->valuestring);
        cJSON_AddItemToArray(msgs, m);
    }
    const cJSON *input = field(j, "input");
    if (cJSON_IsString(input)) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", input->valuestring);
        cJSON_AddItemToArray(msgs, m);
    } else if (cJSON_IsArray(input) && cJSON_GetArraySize(input) > 0) {
        int i = 0;
        cJSON_ArrayForEach(v, input) {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(v, "type");
            if (!cJSON_IsObject(v) || (type && !(cJSON_IsString(type) && !strcmp(type->valuestring, "message")))) {
                err = fail(param, "input", why, len, HLPT_ERR_UNSUPPORTED,
                           "`input[%d]`: only message items ({role, content}) are supported", i);
                goto out;
            }
            cJSON *m = cJSON_Duplicate(v, 1);
            cJSON_DeleteItemFromObjectCaseSensitive(m, "type");
            cJSON_AddItemToArray(msgs, m);
            i++;
        }
    } else {
        err = fail(param, "input", why, len, HLPT_ERR_INVAL, "`input` is required: a string or an array of messages");
        goto out;
    }
    x->max_output_tokens = field(j, "max_output_tokens") != NULL;
    if ((v = field(j, "metadata")) && cJSON_IsObject(v)) x->metadata = cJSON_PrintUnformatted(v);
    /* The chat request's own default is 256 tokens; the Responses API has no n, seed or stop. */
    err = hlptd_api_gen_request_parse(chat, 1, q, param, why, len);
    if (!err && q->stream) q->include_usage = 1;
    if (err) *param = responses_name(*param);
out:
    cJSON_Delete(chat);
    return err;
}

void hlptd_api_responses_extra_free(hlptd_api_responses_extra *x) {
    if (!x) return;
    free(x->instructions);
    free(x->metadata);
    memset(x, 0, sizeof *x);
}

void hlptd_api_gen_request_free(hlptd_api_gen_request *q) {
    if (!q) return;
    for (int i = 0; i < HLPT_MAX_STOP; i++) free(q->stop[i]);
    for (int i = 0; i < API_GEN_MAX_PROMPTS; i++) {
        free(q->prompts[i]);
        free(q->prompt_ids[i]);
    }
    memset(q, 0, sizeof *q);
}

int hlptd_api_gen_tokenize(const hlpt_model *m, const hlptd_api_gen_request *q, int **out, int *n_out, const char **param,
                     char *why, size_t len) {
    return hlptd_api_gen_tokenize_at(m, q, 0, out, n_out, param, why, len);
}

int hlptd_api_gen_tokenize_at(const hlpt_model *m, const hlptd_api_gen_request *q, int i, int **out, int *n_out,
                        const char **param, char *why, size_t len) {
    *out = NULL;
    *n_out = 0;
    *param = q->chat ? "messages" : "prompt";
    const hlpt_config *cfg = hlpt_model_config(m);
    int *ids = NULL, k = 0, err;
    if (i < 0 || i >= q->n_prompts) return hlpt_why(why, len, HLPT_ERR_INVAL, "no prompt %d", i);
    int bos = cfg->bos_id >= 0;
    if (q->prompt_ids[i]) {
        /* Token ids are the exact input: no BOS is added to them. */
        k = q->n_prompt_ids[i];
        for (int t = 0; t < k; t++)
            if (q->prompt_ids[i][t] >= cfg->vocab)
                return hlpt_why(why, len, HLPT_ERR_INVAL, "`prompt`: token id %d is outside the vocabulary of %d",
                                q->prompt_ids[i][t], cfg->vocab);
        if (!(ids = malloc(sizeof(int) * (size_t)k))) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
        memcpy(ids, q->prompt_ids[i], sizeof(int) * (size_t)k);
        bos = 0;
    } else if ((err = hlpt_tokenizer_encode(hlpt_model_tokenizer(m), q->prompts[i], strlen(q->prompts[i]), 0, &ids, &k,
                                            why, len))) {
        return err;
    }
    int *p = malloc(sizeof(int) * (size_t)(k + bos));
    if (!p) {
        free(ids);
        return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    }
    if (bos) p[0] = cfg->bos_id;
    if (k) memcpy(p + bos, ids, sizeof(int) * (size_t)k);
    free(ids);
    k += bos;
    if (k == 0) {
        free(p);
        return hlpt_why(why, len, HLPT_ERR_INVAL, "the prompt is empty and the model has no BOS token to start from");
    }
    /* A prefix adapter's virtual tokens take positions too: that is checked once the adapter is known. */
    if ((long)k + q->params.max_tokens > cfg->max_pos) {
        if (k < cfg->max_pos) *param = q->max_tokens_key;
        free(p);
        return hlpt_why(why, len, HLPT_ERR_INVAL,
                        "the prompt (%d tokens) plus %s (%d) exceed the model's context of %d tokens", k,
                        q->max_tokens_key, q->params.max_tokens, cfg->max_pos);
    }
    *out = p;
    *n_out = k;
    return HLPT_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* One request in flight                                                                           */

typedef struct gen_call gen_call;

typedef struct {
    hlptd_infer_req r;             /* first: the callback gets &choice->r */
    gen_call *call;
    int index;               /* OpenAI's numbering: prompt × n + the choice's place among its prompt's */
    int prompt;              /* which prompt of the request */
    char *text;              /* final text (non-streaming), owned */
    hlpt_finish finish;
    int completion_tokens;
    hlpt_gen_token *toks;    /* logprobs (non-streaming), owned */
    int n_toks;
} choice;

struct gen_call {
    hlptd_api_gen_request q;
    hlptd_req *req;           /* kept: ours to reply to, until hlptd_req_finish (then NULL) */
    hlptd *d;
    hlptd_infer *inf;        /* where the choices run; set before the first is submitted */
    hlptd_stats *stats;      /* the daemon's serving counters */
    char id[HLPTD_ID_MAX + 8];
    long created;
    int *prompt[API_GEN_MAX_PROMPTS]; /* each prompt's token ids, owned */
    int n_prompt[API_GEN_MAX_PROMPTS];
    int prompt_tokens;       /* all prompts together, for usage */
    int n_choices;           /* q.n_prompts × q.n */
    choice choices[API_GEN_MAX_CHOICES];
    pthread_mutex_t mu;
    atomic_int refs;         /* the HTTP request's, and one per choice in flight */
    int pending;             /* under mu: choices not done, + 1 while the handler submits */
    int started;             /* under mu: a choice's model was resolved (its START) */
    int failed;              /* under mu */
    int err;
    char why[256];
    hlptd_sse *sse;
    atomic_int gone;         /* the streaming client left */
    /* /v1/responses: the request's extra fields, the message id, the event counter, and the text
     * streamed so far (its done events repeat it). Written by the inference thread only. */
    int responses;
    hlptd_api_responses_extra rx;
    char msg_id[HLPTD_ID_MAX + 8];
    long seq;
    char *rtext;
    size_t rtext_n;
};

/* Drops one reference; the last frees the call. A stream's request may end (client gone) while its
 * choices still run, and the choices may end before the request: whoever is last frees. */
static void call_release(void *p) {
    gen_call *c = p;
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1) return;
    for (int i = 0; i < API_GEN_MAX_CHOICES; i++) {
        free(c->choices[i].text);
        free(c->choices[i].toks);
    }
    hlptd_api_gen_request_free(&c->q);
    hlptd_api_responses_extra_free(&c->rx);
    free(c->rtext);
    for (int i = 0; i < API_GEN_MAX_PROMPTS; i++) free(c->prompt[i]);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static const char *finish_name(hlpt_finish f) { return f == HLPT_FINISH_STOP ? "stop" : "length"; }

/* The text a token adds after prev (decoding the pair keeps a leading space that decoding the
 * token alone would drop). Returns owned. */
static char *token_text(const hlpt_tokenizer *tok, int prev, int id) {
    int ids[2] = {prev, id};
    char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    if (prev < 0 || hlpt_tokenizer_decode(tok, ids, 1, 0, &a, &na, NULL, 0) ||
        hlpt_tokenizer_decode(tok, ids, 2, 0, &b, &nb, NULL, 0) || nb < na || memcmp(a, b, na)) {
        free(a);
        free(b);
        b = NULL;
        return hlpt_tokenizer_decode(tok, &id, 1, 0, &b, &nb, NULL, 0) ? strdup("") : b;
    }
    memmove(b, b + na, nb - na + 1);
    free(a);
    return b;
}

/* A chat logprob entry's token and its UTF-8 bytes (OpenAI's `bytes`: the text as byte values). */
static void add_token(cJSON *o, const char *key, const hlpt_tokenizer *tok, int prev, int id) {
    char *t = token_text(tok, prev, id);
    cJSON_AddStringToObject(o, key, t ? t : "");
    cJSON *bytes = cJSON_AddArrayToObject(o, "bytes");
    for (const unsigned char *p = (const unsigned char *)(t ? t : ""); *p; p++)
        cJSON_AddItemToArray(bytes, cJSON_CreateNumber(*p));
    free(t);
}

/* The logprobs object of a completion choice (OpenAI's legacy shape: tokens, token_logprobs,
 * top_logprobs as {token: logprob}) or of a chat choice (content: [{token, logprob, top_logprobs}]). */
static cJSON *logprobs_json(const gen_call *c, const choice *ch, const hlpt_gen_token *t, int n) {
    const hlpt_tokenizer *tok = hlpt_model_tokenizer(hlptd_model(c->d));
    int prev = c->prompt[ch->prompt][c->n_prompt[ch->prompt] - 1];
    cJSON *o = cJSON_CreateObject();
    if (c->q.chat) {
        cJSON *content = cJSON_AddArrayToObject(o, "content");
        for (int i = 0; i < n; i++) {
            cJSON *e = cJSON_CreateObject();
            add_token(e, "token", tok, prev, t[i].id);
            cJSON_AddNumberToObject(e, "logprob", t[i].logprob);
            cJSON *top = cJSON_AddArrayToObject(e, "top_logprobs");
            for (int k = 0; k < t[i].n_top; k++) {
                cJSON *a = cJSON_CreateObject();
                add_token(a, "token", tok, prev, t[i].top_id[k]);
                cJSON_AddNumberToObject(a, "logprob", t[i].top_logprob[k]);
                cJSON_AddItemToArray(top, a);
            }
            cJSON_AddItemToArray(content, e);
            prev = t[i].id;
        }
        return o;
    }
    cJSON *tokens = cJSON_AddArrayToObject(o, "tokens"), *lps = cJSON_AddArrayToObject(o, "token_logprobs"),
          *tops = cJSON_AddArrayToObject(o, "top_logprobs");
    for (int i = 0; i < n; i++) {
        char *s = token_text(tok, prev, t[i].id);
        cJSON_AddItemToArray(tokens, cJSON_CreateString(s ? s : ""));
        free(s);
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(t[i].logprob));
        cJSON *top = cJSON_CreateObject();
        for (int k = 0; k < t[i].n_top; k++) {
            /* Two ids may decode alike (U+FFFD): the first, most likely, keeps the key. */
            char *p = token_text(tok, prev, t[i].top_id[k]);
            if (p && !cJSON_GetObjectItemCaseSensitive(top, p)) cJSON_AddNumberToObject(top, p, t[i].top_logprob[k]);
            free(p);
        }
        cJSON_AddItemToArray(tops, top);
        prev = t[i].id;
    }
    return o;
}

/* OpenAI counts the prompt once however many choices share it. */
static cJSON *usage_json(const gen_call *c) {
    int completion = 0;
    for (int i = 0; i < c->n_choices; i++) completion += c->choices[i].completion_tokens;
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", c->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", completion);
    cJSON_AddNumberToObject(u, "total_tokens", c->prompt_tokens + completion);
    return u;
}

static cJSON *envelope(const gen_call *c, int chunk) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", c->id);
    cJSON_AddStringToObject(o, "object", c->q.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)c->created);
    cJSON_AddStringToObject(o, "model", c->q.model);
    return o;
}

static void cancel_all(gen_call *c) {
    /* c->inf, not hlptd_inference(): that is NULL once a shutdown began, while the thread runs on
     * until every generation has ended. */
    for (int i = 0; c->inf && i < c->n_choices; i++) hlptd_infer_cancel(c->inf, &c->choices[i].r);
}

static void send_json(gen_call *c, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s && !atomic_load(&c->gone) && hlptd_sse_send(c->sse, NULL, s) == HLPT_ERR_CANCELLED) {
        /* The client left: stop generating for it. */
        atomic_store(&c->gone, 1);
        cancel_all(c);
    }
    free(s);
}

/* ---- /v1/responses: OpenAI's response object and its typed stream events ---------------------- */

static cJSON *response_usage(const gen_call *c) {
    int out = c->choices[0].completion_tokens;
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "input_tokens", c->prompt_tokens);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "input_tokens_details"), "cached_tokens", 0);
    cJSON_AddNumberToObject(u, "output_tokens", out);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "output_tokens_details"), "reasoning_tokens", 0);
    cJSON_AddNumberToObject(u, "total_tokens", c->prompt_tokens + out);
    return u;
}

static cJSON *output_text_part(const char *text) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", "output_text");
    cJSON_AddStringToObject(p, "text", text);
    cJSON_AddArrayToObject(p, "annotations");
    cJSON_AddArrayToObject(p, "logprobs");
    return p;
}

/* The assistant message item; text NULL while it is being written. */
static cJSON *message_item(const gen_call *c, const char *text) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "type", "message");
    cJSON_AddStringToObject(m, "id", c->msg_id);
    cJSON_AddStringToObject(m, "status", text ? "completed" : "in_progress");
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON *content = cJSON_AddArrayToObject(m, "content");
    if (text) cJSON_AddItemToArray(content, output_text_part(text));
    return m;
}

/* The response object: in progress (text NULL), or done with its text. */
static cJSON *response_json(const gen_call *c, const char *text) {
    int length = text && c->choices[0].finish != HLPT_FINISH_STOP;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", c->id);
    cJSON_AddStringToObject(o, "object", "response");
    cJSON_AddNumberToObject(o, "created_at", (double)c->created);
    cJSON_AddStringToObject(o, "status", !text ? "in_progress" : length ? "incomplete" : "completed");
    cJSON_AddNullToObject(o, "error");
    if (length) cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "incomplete_details"), "reason", "max_output_tokens");
    else cJSON_AddNullToObject(o, "incomplete_details");
    if (c->rx.instructions) cJSON_AddStringToObject(o, "instructions", c->rx.instructions);
    else cJSON_AddNullToObject(o, "instructions");
    if (c->rx.max_output_tokens) cJSON_AddNumberToObject(o, "max_output_tokens", c->q.params.max_tokens);
    else cJSON_AddNullToObject(o, "max_output_tokens");
    cJSON_AddStringToObject(o, "model", c->q.model);
    cJSON *out = cJSON_AddArrayToObject(o, "output");
    if (text) cJSON_AddItemToArray(out, message_item(c, text));
    cJSON_AddBoolToObject(o, "parallel_tool_calls", 1);
    cJSON_AddNullToObject(o, "previous_response_id");
    cJSON_AddBoolToObject(o, "store", 0);
    cJSON_AddNumberToObject(o, "temperature", c->q.params.temperature);
    cJSON *fmt = cJSON_AddObjectToObject(cJSON_AddObjectToObject(o, "text"), "format");
    cJSON_AddStringToObject(fmt, "type", "text");
    cJSON_AddStringToObject(o, "tool_choice", "auto");
    cJSON_AddArrayToObject(o, "tools");
    cJSON_AddNumberToObject(o, "top_p", c->q.params.top_p);
    cJSON_AddStringToObject(o, "truncation", "disabled");
    cJSON *meta = c->rx.metadata ? cJSON_Parse(c->rx.metadata) : NULL;
    cJSON_AddItemToObject(o, "metadata", meta ? meta : cJSON_CreateObject());
    if (text) cJSON_AddItemToObject(o, "usage", response_usage(c));
    else cJSON_AddNullToObject(o, "usage");
    if (text) cJSON_AddStringToObject(o, "output_text", text);
    return o;
}

/* One typed event: `event: <type>` and the object (taken) with its type and sequence number. */
static void send_event(gen_call *c, const char *type, cJSON *o) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNumberToObject(e, "sequence_number", (double)c->seq++);
    cJSON *it;
    while ((it = o->child)) cJSON_AddItemToObject(e, it->string, cJSON_DetachItemViaPointer(o, it));
    cJSON_Delete(o);
    char *s = cJSON_PrintUnformatted(e);
    cJSON_Delete(e);
    if (s && !atomic_load(&c->gone) && hlptd_sse_send(c->sse, type, s) == HLPT_ERR_CANCELLED) {
        atomic_store(&c->gone, 1);
        cancel_all(c);
    }
    free(s);
}

/* The text part's position: the one message, its one part. */
static cJSON *part_ref(const gen_call *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "item_id", c->msg_id);
    cJSON_AddNumberToObject(o, "output_index", 0);
    cJSON_AddNumberToObject(o, "content_index", 0);
    return o;
}

/* The events before the first token: the response exists, is in progress, has a message with one
 * text part. */
static void responses_stream_open(gen_call *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "response", response_json(c, NULL));
    send_event(c, "response.created", o);
    o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "response", response_json(c, NULL));
    send_event(c, "response.in_progress", o);
    o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "output_index", 0);
    cJSON_AddItemToObject(o, "item", message_item(c, NULL));
    send_event(c, "response.output_item.added", o);
    o = part_ref(c);
    cJSON *part = output_text_part("");
    cJSON_DeleteItemFromObjectCaseSensitive(part, "logprobs");
    cJSON_AddItemToObject(o, "part", part);
    send_event(c, "response.content_part.added", o);
}

static void responses_stream_delta(gen_call *c, const char *delta, size_t n) {
    char *grown = realloc(c->rtext, c->rtext_n + n + 1);
    if (grown) {
        memcpy(grown + c->rtext_n, delta, n);
        c->rtext_n += n;
        grown[c->rtext_n] = 0;
        c->rtext = grown;
    }
    char *text = strndup(delta, n);
    cJSON *o = part_ref(c);
    cJSON_AddStringToObject(o, "delta", text ? text : "");
    cJSON_AddArrayToObject(o, "logprobs");
    free(text);
    send_event(c, "response.output_text.delta", o);
}

static void responses_stream_close(gen_call *c) {
    const char *text = c->rtext ? c->rtext : "";
    cJSON *o = part_ref(c);
    cJSON_AddStringToObject(o, "text", text);
    cJSON_AddArrayToObject(o, "logprobs");
    send_event(c, "response.output_text.done", o);
    o = part_ref(c);
    cJSON_AddItemToObject(o, "part", output_text_part(text));
    send_event(c, "response.content_part.done", o);
    o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "output_index", 0);
    cJSON_AddItemToObject(o, "item", message_item(c, text));
    send_event(c, "response.output_item.done", o);
    o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "response", response_json(c, text));
    send_event(c, c->choices[0].finish == HLPT_FINISH_STOP ? "response.completed" : "response.incomplete", o);
}

/* One streamed chunk of a choice: its role (chat's first chunk), a text delta, or its finish. */
static void send_chunk(gen_call *c, int index, const char *role, const char *delta, size_t n, const char *finish) {
    if (c->responses) {
        /* The opening and closing events are responses_stream_open and _close's. */
        if (n) responses_stream_delta(c, delta, n);
        return;
    }
    cJSON *o = envelope(c, 1), *choices = cJSON_AddArrayToObject(o, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", index);
    char *text = malloc(n + 1);
    if (text) {
        if (n) memcpy(text, delta, n);
        text[n] = 0;
    }
    if (c->q.chat) {
        cJSON *d = cJSON_AddObjectToObject(ch, "delta");
        if (role) cJSON_AddStringToObject(d, "role", role);
        if (role || n) cJSON_AddStringToObject(d, "content", text ? text : "");
        cJSON_AddNullToObject(ch, "logprobs");
    } else {
        cJSON_AddStringToObject(ch, "text", text ? text : "");
        cJSON_AddNullToObject(ch, "logprobs");
    }
    free(text);
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(choices, ch);
    send_json(c, o);
}

/* The first START: a streamed request's reply becomes its event stream, which opens with chat's
 * role chunks (OpenAI's first chunk of a choice names the role) or a response's opening events,
 * and goes back to its connection; the stream's events follow from here. Inference thread. */
static void open_stream(gen_call *c) {
    /* A generation's stream ends by itself: a shutdown lets it finish (docs/rest.md). */
    c->sse = hlptd_req_stream_finite(c->req);
    if (c->sse) {
        if (c->responses) responses_stream_open(c);
        else if (c->q.chat)
            for (int i = 0; i < c->n_choices; i++) send_chunk(c, i, "assistant", NULL, 0, NULL);
    }
    /* Out of memory: the request has its 500, and the choices stop. */
    hlptd_req_finish(c->req);
    c->req = NULL;
    if (!c->sse) {
        atomic_store(&c->gone, 1);
        cancel_all(c);
    }
}

/* The end of an open event stream: its error or closing events, then [DONE] where OpenAI sends it. */
static void close_stream(gen_call *c) {
    if (c->responses) {
        if (c->failed) {
            const char *type, *code;
            hlptd_http_status_of(c->err ? c->err : HLPT_ERR_INTERNAL, &type, &code);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "code", code ? code : "internal_error");
            cJSON_AddStringToObject(e, "message", c->why);
            cJSON_AddNullToObject(e, "param");
            send_event(c, "error", e);
        } else {
            responses_stream_close(c);
        }
    } else {
        if (c->failed) {
            cJSON *e = cJSON_CreateObject(), *in = cJSON_AddObjectToObject(e, "error");
            const char *type, *code;
            hlptd_http_status_of(c->err ? c->err : HLPT_ERR_INTERNAL, &type, &code);
            cJSON_AddStringToObject(in, "message", c->why);
            cJSON_AddStringToObject(in, "type", type ? type : "server_error");
            cJSON_AddNullToObject(in, "param");
            cJSON_AddStringToObject(in, "code", code ? code : "internal_error");
            send_json(c, e);
        } else if (c->q.include_usage) {
            cJSON *o = envelope(c, 1);
            cJSON_AddArrayToObject(o, "choices");
            cJSON_AddItemToObject(o, "usage", usage_json(c));
            send_json(c, o);
        }
        if (!atomic_load(&c->gone)) hlptd_sse_send(c->sse, NULL, "[DONE]");
    }
    hlptd_sse_close(c->sse);
    hlptd_sse_unref(c->sse);
    c->sse = NULL;
}

/* A failure as a plain reply. Before any START it is the model's: an unknown one is OpenAI's 404;
 * a cancellation or a refusal names no field. */
static void reply_failure(gen_call *c) {
    int err = c->err ? c->err : HLPT_ERR_INTERNAL;
    if (!c->started && err == HLPT_ERR_NOENT) {
        hlptd_reply_http_err(c->req, 404, "invalid_request_error", "model_not_found", "model",
                            "The model `%s` does not exist", c->q.model);
        return;
    }
    const char *param = err == HLPT_ERR_NOENT ? "model" : err == HLPT_ERR_RANGE ? c->q.max_tokens_key : NULL;
    if (!c->started && err != HLPT_ERR_CANCELLED && err != HLPT_ERR_STATE) param = "model";
    hlptd_reply_err(c->req, err, param, "%s", c->why);
}

/* The answer, once every part is done: the end of the stream, or the whole reply. Runs on the
 * inference thread, or on the handler's when every choice ended while it submitted. */
static void complete(gen_call *c) {
    if (!c->req) {
        /* The reply is the event stream, handed back at the first START. */
        if (c->sse) close_stream(c);
        return;
    }
    if (c->failed) {
        reply_failure(c);
    } else if (c->responses) {
        hlptd_reply_json(c->req, 200, response_json(c, c->choices[0].text ? c->choices[0].text : ""));
    } else {
        cJSON *o = envelope(c, 0), *choices = cJSON_AddArrayToObject(o, "choices");
        for (int i = 0; i < c->n_choices; i++) {
            choice *ch = &c->choices[i];
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "index", ch->index);
            if (c->q.chat) {
                cJSON *m = cJSON_AddObjectToObject(j, "message");
                cJSON_AddStringToObject(m, "role", "assistant");
                cJSON_AddStringToObject(m, "content", ch->text ? ch->text : "");
                cJSON_AddNullToObject(m, "refusal");
            } else {
                cJSON_AddStringToObject(j, "text", ch->text ? ch->text : "");
            }
            if (c->q.logprobs) cJSON_AddItemToObject(j, "logprobs", logprobs_json(c, ch, ch->toks, ch->n_toks));
            else cJSON_AddNullToObject(j, "logprobs");
            cJSON_AddStringToObject(j, "finish_reason", finish_name(ch->finish));
            cJSON_AddItemToArray(choices, j);
        }
        cJSON_AddItemToObject(o, "usage", usage_json(c));
        hlptd_reply_json(c->req, 200, o);
    }
    /* Kept by the handler: the connection is resumed from here, whichever thread this is. */
    hlptd_req_finish(c->req);
    c->req = NULL;
}

/* One part is done; the last one answers. */
static void part_done(gen_call *c) {
    pthread_mutex_lock(&c->mu);
    int last = --c->pending == 0;
    pthread_mutex_unlock(&c->mu);
    if (last) complete(c);
}

/* Inference thread (or the handler's, for a refused submission). */
static void on_event(hlptd_infer_req *r, hlptd_infer_ev ev, const char *delta, size_t n) {
    choice *ch = (choice *)r;
    gen_call *c = ch->call;
    if (ev == HLPTD_INFER_START) {
        pthread_mutex_lock(&c->mu);
        int first = !c->started;
        c->started = 1;
        pthread_mutex_unlock(&c->mu);
        if (first && c->q.stream) open_stream(c);
        return;
    }
    if (ev == HLPTD_INFER_TEXT) {
        if (c->q.stream) send_chunk(c, ch->index, NULL, delta, n, NULL);
        return;
    }
    if (ev == HLPTD_INFER_DONE && r->gen) {
        size_t len;
        const char *text = hlpt_gen_text(r->gen, &len);
        int nt;
        const hlpt_gen_token *t = hlpt_gen_tokens(r->gen, &nt);
        ch->finish = hlpt_gen_finish(r->gen);
        ch->completion_tokens = nt;
        if (c->q.stream) {
            if (len > r->sent) send_chunk(c, ch->index, NULL, text + r->sent, len - r->sent, NULL);
            send_chunk(c, ch->index, NULL, NULL, 0, finish_name(ch->finish));
        } else {
            ch->text = malloc(len + 1);
            if (ch->text) {
                memcpy(ch->text, text, len);
                ch->text[len] = 0;
            }
            if (c->q.logprobs && nt) {
                ch->toks = malloc(sizeof *t * (size_t)nt);
                if (ch->toks) memcpy(ch->toks, t, sizeof *t * (size_t)nt);
                ch->n_toks = ch->toks ? nt : 0;
            }
        }
        hlptd_stats_request(c->stats, c->responses ? "responses" : c->q.chat ? "chat" : "completions", r->label, nt,
                            r->submitted_s, r->first_token_s, r->done_s);
    } else if (ev == HLPTD_INFER_ERROR) {
        pthread_mutex_lock(&c->mu);
        if (!c->failed) {
            c->failed = 1;
            c->err = r->err;
            snprintf(c->why, sizeof c->why, "%s", r->why[0] ? r->why : hlpt_strerror(r->err));
        }
        pthread_mutex_unlock(&c->mu);
        /* One choice failed: the others need not run on for an answer that is an error. */
        cancel_all(c);
    }
    part_done(c);
    call_release(c);
}

/* Hands every choice to the inference thread, which resolves `model` and generates. MHD thread. */
static void submit(gen_call *c, hlptd_infer *inf) {
    c->inf = inf;
    for (int i = 0; i < c->n_choices; i++) {
        choice *ch = &c->choices[i];
        ch->call = c;
        ch->index = i;
        ch->prompt = i / c->q.n;
        snprintf(ch->r.model, sizeof ch->r.model, "%s", c->q.model);
        ch->r.prompt = c->prompt[ch->prompt];
        ch->r.n_prompt = c->n_prompt[ch->prompt];
        ch->r.params = c->q.params;
        /* Choice k of every prompt samples with seed + k: a prompt's text does not depend on the
         * batch it came in. */
        ch->r.params.seed = c->q.params.seed + (uint64_t)(i % c->q.n);
        ch->r.on_event = on_event;
    }
    c->pending = c->n_choices + 1;
    atomic_fetch_add(&c->refs, c->n_choices);
    /* The answer, a reply or an event stream, comes from the inference thread. */
    hlptd_req_keep(c->req);
    for (int i = 0; i < c->n_choices; i++) {
        if (hlptd_infer_submit(inf, &c->choices[i].r) != HLPT_OK) {
            /* Stopping: this choice fails at once through the same path. */
            c->choices[i].r.err = HLPT_ERR_STATE;
            snprintf(c->choices[i].r.why, sizeof c->choices[i].r.why, "the daemon is shutting down");
            on_event(&c->choices[i].r, HLPTD_INFER_ERROR, NULL, 0);
        }
    }
    part_done(c);
}

enum { GEN_COMPLETIONS, GEN_CHAT, GEN_RESPONSES };

static void generate_handler(hlptd_req *r, int kind) {
    int chat = kind != GEN_COMPLETIONS;
    hlptd *d = hlptd_req_app(r);
    const hlpt_model *m = hlptd_api_model(r);
    if (!m) return;
    cJSON *j = hlptd_req_json(r);
    if (!j) return;
    gen_call *c = calloc(1, sizeof *c);
    if (!c) {
        hlptd_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    pthread_mutex_init(&c->mu, NULL);
    atomic_init(&c->refs, 1);
    atomic_init(&c->gone, 0);
    c->d = d;
    c->req = r;
    c->stats = hlptd_serving_stats(d);
    hlptd_req_set_data(r, c, call_release);
    const char *param;
    char why[256];
    c->responses = kind == GEN_RESPONSES;
    int err = c->responses ? hlptd_api_responses_request_parse(j, &c->q, &c->rx, &param, why, sizeof why)
                           : hlptd_api_gen_request_parse(j, chat, &c->q, &param, why, sizeof why);
    for (int i = 0; !err && i < c->q.n_prompts; i++) {
        err = hlptd_api_gen_tokenize_at(m, &c->q, i, &c->prompt[i], &c->n_prompt[i], &param, why, sizeof why);
        c->prompt_tokens += c->n_prompt[i];
    }
    c->n_choices = c->q.n_prompts * c->q.n;
    if (err && c->responses) param = responses_name(param);
    if (err) {
        hlptd_reply_err(r, err, param, "%s", why);
        return;
    }
    hlptd_infer *inf = hlptd_inference(d);
    if (!inf) {
        if (hlptd_stopping(d))
            hlptd_reply_http_err(r, 503, "server_error", "shutting_down", NULL, "hlptd is shutting down");
        else
            hlptd_reply_http_err(r, 503, "server_error", "loading", NULL, "the base model is still loading");
        return;
    }
    hlptd_id_new(c->id, c->responses ? "resp_" : chat ? "chatcmpl-" : "cmpl-");
    hlptd_id_new(c->msg_id, "msg_");
    c->created = (long)time(NULL);
    submit(c, inf);
}

void hlptd_api_completions(hlptd_req *r) { generate_handler(r, GEN_COMPLETIONS); }
void hlptd_api_chat_completions(hlptd_req *r) { generate_handler(r, GEN_CHAT); }
void hlptd_api_responses(hlptd_req *r) { generate_handler(r, GEN_RESPONSES); }
