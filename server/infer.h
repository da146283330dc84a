/*
 * infer.h - the inference thread: continuous batching of generation requests across adapters, the
 * resolution of each request's `model` to the adapter that serves it, and the adapter cache.
 *
 * Threads: hlptd_infer_submit(), hlptd_infer_cancel(), hlptd_infer_cancel_all(),
 * hlptd_infer_forget() and hlptd_infer_get_stats() may be called from any thread (HTTP threads
 * submit directly). Every other piece of state belongs to the inference thread. A request's
 * callbacks run on the inference thread and must not block; they hand results to their connection.
 */
#ifndef HLPTD_INFER_H
#define HLPTD_INFER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "hlpt/generate.h"
#include "hlpt/model.h"

typedef struct hlptd_infer hlptd_infer;
typedef struct hlptd_infer_req hlptd_infer_req;

#define HLPTD_KEY_MAX 64 /* bytes of an adapter's cache key, NUL included */

/* Names what serves `model` (borrowed): the cache key of its adapter into key[key_len] ("" for the
 * base) and a label for metrics into label[label_len] ("base" or the adapter's name). Runs on the
 * inference thread, once for each request it admits. HLPT_ERR_NOENT when no model has that name;
 * why says what went wrong. */
typedef int (*hlptd_model_resolve)(void *ctx, const char *model, char *key, size_t key_len, char *label,
                                   size_t label_len, char *why, size_t len);
/* Fetches the two files of the adapter with cache key `key` (config JSON text and safetensors
 * bytes, both returned owned, free()). Runs on the inference thread, on a cache miss. Returns
 * HLPT_ERR_NOENT when unknown; why says what went wrong. */
typedef int (*hlptd_adapter_fetch)(void *ctx, const char *key, char **config, size_t *config_len, void **weights,
                                   size_t *weights_len, char *why, size_t len);

typedef struct {
    size_t adapter_budget;   /* bytes of adapter parameters kept resident (LRU beyond it) */
    int max_batch;           /* sequences per decode step */
    int max_prefill;         /* prompt tokens admitted per step (long prompts wait their turn) */
    int threads;             /* product threads, set by the inference thread itself (OpenMP's count
                              * is per thread); 0 = the libraries' defaults */
    hlptd_model_resolve resolve; /* NULL: a model names its adapter's cache key, "" the base */
    hlptd_adapter_fetch fetch;   /* NULL: every adapter is unknown */
    void *ctx;                   /* given to resolve and fetch */
} hlptd_infer_opts;

/* Starts the thread. Borrows m and o's ctx until hlptd_infer_free. *out owned. HLPT_ERR_NOMEM,
 * HLPT_ERR_INTERNAL (no thread). */
int hlptd_infer_start(const hlpt_model *m, const hlptd_infer_opts *o, hlptd_infer **out);
/* Stops admitting (later submissions get HLPT_ERR_STATE), finishes every request queued or in
 * flight, and joins the thread. The handle stays valid for the other calls until hlptd_infer_free,
 * so that a thread that took it before the stop may still submit (and be refused) or cancel.
 * Idempotent. Any thread but the inference thread. */
void hlptd_infer_stop(hlptd_infer *inf);
/* Stops (if not yet stopped) and frees. Once no other thread can reach inf. NULL is fine. */
void hlptd_infer_free(hlptd_infer *inf);

/* START: the model is resolved (label filled) and the generation begins; TEXT: newly final bytes of
 * the completion; DONE: finished; ERROR: failed (before or after START). */
typedef enum { HLPTD_INFER_START, HLPTD_INFER_TEXT, HLPTD_INFER_DONE, HLPTD_INFER_ERROR } hlptd_infer_ev;

/* A generation request. The submitter fills it and keeps it alive until HLPTD_INFER_DONE or
 * HLPTD_INFER_ERROR has been delivered: that last callback may free it. */
struct hlptd_infer_req {
    char model[256];         /* what the client named: resolved on admission (hlptd_model_resolve) */
    int *prompt;             /* owned by the request's submitter */
    int n_prompt;
    hlpt_gen_params params;
    /* Called on the inference thread: START once `model` is resolved; TEXT with the newly final
     * bytes of the completion (delta, delta_len); DONE when finished (gen gives text, tokens,
     * finish); ERROR with a message in err/why, either before START (the model could not
     * be resolved, or the request was cancelled or refused first) or after it. */
    void (*on_event)(hlptd_infer_req *r, hlptd_infer_ev ev, const char *delta, size_t delta_len);
    void *user;
    /* Filled by the inference thread. */
    char label[128];         /* "base" or the serving adapter's name, from START on */
    int err;
    char why[256];
    hlpt_gen *gen;           /* valid until the DONE/ERROR callback returns */
    double submitted_s, first_token_s, done_s;
    atomic_int cancelled;    /* set by hlptd_infer_cancel (any thread), read by the inference thread */
    size_t sent;             /* bytes of text already delivered */
    hlptd_infer_req *next;
};

/* Queues r (borrowed until its last callback). Any thread. HLPT_ERR_STATE once the thread is
 * stopping: r then gets no callback. */
int hlptd_infer_submit(hlptd_infer *inf, hlptd_infer_req *r);
/* Marks r cancelled: it is dropped at the next step and gets its DONE callback (ERROR with
 * HLPT_ERR_CANCELLED when it was not admitted yet). Any thread; also before r is submitted. */
void hlptd_infer_cancel(hlptd_infer *inf, hlptd_infer_req *r);

/* Cancels every queued and live request (a shutdown that cannot wait any longer): each gets its
 * DONE callback, as hlptd_infer_cancel's do. Any thread. */
void hlptd_infer_cancel_all(hlptd_infer *inf);

typedef struct {
    int queued, active;
    long steps, tokens_generated, prompt_tokens;
    int adapters_resident;
    size_t adapter_bytes;
    long adapter_loads, adapter_evictions;
    double last_batch;      /* sequences in the last step */
} hlptd_infer_stats;
void hlptd_infer_get_stats(hlptd_infer *inf, hlptd_infer_stats *s);

/* Drops an adapter from the cache once no request uses it (after a DELETE). Any thread. */
void hlptd_infer_forget(hlptd_infer *inf, const char *adapter_id);

#endif
