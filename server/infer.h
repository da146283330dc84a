/*
 * infer.h - the inference thread: continuous batching of generation requests across adapters, and
 * the adapter cache.
 *
 * Threads: hlptd_infer_submit() and hlptd_infer_cancel() may be called from any thread (HTTP
 * threads). Every other piece of state belongs to the inference thread. A request's callbacks run
 * on the inference thread and must not block; they hand results to their connection.
 */
#ifndef HLPTD_INFER_H
#define HLPTD_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "hlpt/generate.h"
#include "hlpt/model.h"

typedef struct hlptd_infer hlptd_infer;
typedef struct hlptd_req hlptd_req;

/* Fetches an adapter's two files by id (config JSON text and safetensors bytes, both returned
 * owned, free()). Runs on the inference thread. Returns HLPT_ERR_NOENT when unknown. */
typedef int (*hlptd_adapter_fetch)(void *ctx, const char *id, char **config, size_t *config_len,
                                   void **weights, size_t *weights_len);

typedef struct {
    size_t adapter_budget;   /* bytes of adapter parameters kept resident (LRU beyond it) */
    int max_batch;           /* sequences per decode step */
    int max_prefill;         /* prompt tokens admitted per step (long prompts wait their turn) */
    int threads;             /* product threads, set by the inference thread itself (OpenMP's count
                              * is per thread); 0 = the libraries' defaults */
    hlptd_adapter_fetch fetch;
    void *fetch_ctx;
} hlptd_infer_opts;

int hlptd_infer_start(const hlpt_model *m, const hlptd_infer_opts *o, hlptd_infer **out);
/* Stops admitting, finishes every request in flight, joins the thread, frees everything. */
void hlptd_infer_stop(hlptd_infer *inf);

typedef enum { HLPTD_EV_TEXT, HLPTD_EV_DONE, HLPTD_EV_ERROR } hlptd_event;

/* A generation request. The submitter fills it and keeps it alive until HLPTD_EV_DONE or
 * HLPTD_EV_ERROR has been delivered: that last callback may free it. */
struct hlptd_req {
    char adapter_id[64];     /* "" for the base */
    int *prompt;             /* owned by the request's submitter */
    int n_prompt;
    hlpt_gen_params params;
    /* Called on the inference thread: TEXT with the newly final bytes of the completion (delta,
     * delta_len); DONE when finished (hlptd_req_gen gives text, tokens, finish); ERROR with a
     * message in err/why. */
    void (*on_event)(hlptd_req *r, hlptd_event ev, const char *delta, size_t delta_len);
    void *user;
    /* Filled by the inference thread. */
    int err;
    char why[256];
    hlpt_gen *gen;           /* valid until the DONE/ERROR callback returns */
    double submitted_s, first_token_s, done_s;
    volatile int cancelled;  /* set by hlptd_infer_cancel */
    size_t sent;             /* bytes of text already delivered */
    hlptd_req *next;
};

/* Queues r; returns HLPT_ERR_STATE when the thread is stopping. */
int hlptd_infer_submit(hlptd_infer *inf, hlptd_req *r);
/* Marks r cancelled: it is dropped at the next step and gets its DONE callback. */
void hlptd_infer_cancel(hlptd_infer *inf, hlptd_req *r);

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
