/*
 * generate.h - sampling and the life of one generation request.
 *
 * A hlpt_gen holds one request: its prompt, its KV-cached sequence, its sampler and stop rules, and
 * the text produced so far. It does not run the model itself: a driver (hlpt_generate() below, or
 * the daemon's batching thread) asks each request for the tokens to feed next, runs one batched
 * hlpt_model_step() over many requests, and hands each its row of logits. Requests with different
 * adapters share those steps.
 *
 * Sequence-gate adapters look at the whole text, so their request re-feeds every token after a
 * cache reset at each step: exact, and O(T) per token instead of O(1) (documented in docs/).
 */
#ifndef HLPT_GENERATE_H
#define HLPT_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "hlpt/model.h"

#define HLPT_MAX_STOP 8
#define HLPT_MAX_TOP_LOGPROBS 20

typedef struct {
    int max_tokens;          /* new tokens at most (>= 1) */
    float temperature;       /* 0: greedy */
    float top_p;             /* (0, 1]; 1: off */
    int top_k;               /* 0: off */
    uint64_t seed;           /* same seed, same text */
    int ignore_eos;          /* keep going past EOS */
    int n_stop;
    const char *stop[HLPT_MAX_STOP]; /* borrowed until the request is freed */
    int top_logprobs;        /* 0..HLPT_MAX_TOP_LOGPROBS alternatives recorded per token */
    int logprobs;            /* record the chosen token's logprob */
} hlpt_gen_params;

void hlpt_gen_params_defaults(hlpt_gen_params *p);

typedef enum { HLPT_FINISH_NONE, HLPT_FINISH_LENGTH, HLPT_FINISH_STOP } hlpt_finish;

/* One generated token's record. */
typedef struct {
    int id;
    float logprob;
    int n_top;
    int top_id[HLPT_MAX_TOP_LOGPROBS];
    float top_logprob[HLPT_MAX_TOP_LOGPROBS];
} hlpt_gen_token;

typedef struct hlpt_gen hlpt_gen;

/* A request over prompt[n] (copied). The adapter is borrowed and must outlive the request. The
 * context is n + max_tokens positions (HLPT_ERR_RANGE when that exceeds max_pos). */
int hlpt_gen_new(const hlpt_model *m, const hlpt_adapter *a, const int *prompt, int n,
                 const hlpt_gen_params *p, hlpt_gen **out, char *why, size_t len);
void hlpt_gen_free(hlpt_gen *g);

/* The tokens to feed in the next step (valid until hlpt_gen_accept) and the sequence to feed them to. */
void hlpt_gen_next(hlpt_gen *g, hlpt_seq **seq, const int **tokens, int *n);
/* Samples from the logits row of the step, updates text and stop state; returns 1 when finished. */
int hlpt_gen_accept(hlpt_gen *g, const float *logits);
int hlpt_gen_done(const hlpt_gen *g);
hlpt_finish hlpt_gen_finish(const hlpt_gen *g);

/* Completion text so far (NUL-terminated, stop string excluded), valid until the next accept. *n
 * bytes of valid UTF-8 (a character not complete yet reads U+FFFD); hlpt_gen_text_ready() is how
 * many of them are final (no character that later tokens may change, no possible start of a stop
 * string) and safe to stream: later texts begin with those same bytes. So the rest of the text
 * after them is the last delta of a generation that ends or is cancelled now. */
const char *hlpt_gen_text(const hlpt_gen *g, size_t *n);
size_t hlpt_gen_text_ready(const hlpt_gen *g);
const hlpt_gen_token *hlpt_gen_tokens(const hlpt_gen *g, int *n);

/* Runs requests to completion, batching them in each step. */
int hlpt_generate(hlpt_runner *r, hlpt_gen **gens, int n, char *why, size_t len);

#endif
