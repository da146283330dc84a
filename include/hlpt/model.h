/*
 * model.h - a frozen LLaMA-family base model: loading (private or sealed shared memory), batched
 * forward with per-sequence KV caches and per-sequence adapters, and the training forward/backward
 * of adapter parameters.
 *
 * The base weights are one arena, laid out by a table of tensors (model.c): norms in float32, matrices
 * as the engine stores them for the chosen dtype (include/hlpt/engine.h). In shared mode
 * the arena lives in a memfd that is written once, sealed against writes, shrinking and growing, and
 * mapped read-only: a worker process attaches to it by fd and sees the same physical pages.
 *
 * Threads: a loaded model is immutable and may be used from any thread. A runner (scratch memory) and
 * a seq (KV cache) belong to one thread at a time.
 */
#ifndef HLPT_MODEL_H
#define HLPT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "hlpt/adapter.h"
#include "hlpt/config.h"
#include "hlpt/engine.h"
#include "hlpt/tokenizer.h"

typedef struct hlpt_model hlpt_model;

/* Loads dir (config.json, model.safetensors or shards, tokenizer.json) into private memory, its
 * matrices stored as dtype (HLPT_BASE_AUTO: BF16 where the CPU has it, include/hlpt/engine.h).
 * HLPT_ERR_UNSUPPORTED when dtype cannot run on this CPU. */
int hlpt_model_open(const char *dir, hlpt_base_dtype dtype, hlpt_model **out, char *why, size_t len);
/* The same into a sealed memfd (hlpt_model_fd gives it to workers). */
int hlpt_model_open_shared(const char *dir, hlpt_base_dtype dtype, hlpt_model **out, char *why, size_t len);
/* Maps a sealed memfd made by hlpt_model_open_shared (in another process); dir supplies the
 * tokenizer. Takes nothing: fd stays the caller's. Fails with HLPT_ERR_FORMAT when fd does not hold
 * a sealed hlpt arena. */
int hlpt_model_attach(const char *dir, int fd, hlpt_model **out, char *why, size_t len);
void hlpt_model_close(hlpt_model *m);

const hlpt_config *hlpt_model_config(const hlpt_model *m);      /* valid until close */
const hlpt_tokenizer *hlpt_model_tokenizer(const hlpt_model *m); /* valid until close */
/* 16 hex digits identifying the base weights (an adapter records it): the same whatever the dtype,
 * as it is computed over the F32 values the checkpoint holds. */
const char *hlpt_model_hash(const hlpt_model *m);
int hlpt_model_fd(const hlpt_model *m);                          /* -1 unless shared */
size_t hlpt_model_bytes(const hlpt_model *m);                    /* arena size */
/* Bytes of the matrices a token's forward reads whole (all but an untied embedding table). */
size_t hlpt_model_matrix_bytes(const hlpt_model *m);
hlpt_base_dtype hlpt_model_dtype(const hlpt_model *m);          /* F32 or BF16 */

/*
 * A sequence under generation: its KV cache (max_tokens positions), the running sums of causal
 * gates, and the adapter it runs with (borrowed; NULL for the base; must outlive the seq).
 */
typedef struct hlpt_seq hlpt_seq;
int hlpt_seq_new(const hlpt_model *m, const hlpt_adapter *a, int max_tokens, hlpt_seq **out);
void hlpt_seq_free(hlpt_seq *s);
void hlpt_seq_reset(hlpt_seq *s);          /* forget every token, keep the memory */
int hlpt_seq_len(const hlpt_seq *s);       /* tokens in the cache */

/* Scratch memory for forward passes of one thread; grows on demand, reused across calls. */
typedef struct hlpt_runner hlpt_runner;
int hlpt_runner_new(const hlpt_model *m, hlpt_runner **out);
void hlpt_runner_free(hlpt_runner *r);

/*
 * One batched step: feeds tokens[i][0..n[i]) to seqs[i] (each appended to its cache), running the
 * base's linear layers once over all rows and each sequence's adapter on its own rows. *logits
 * receives [rows, V]: every token's logits when all_logits, else only each sequence's last token
 * (row i for seqs[i]). Valid until the next call on this runner. Errors: HLPT_ERR_RANGE when a
 * sequence would exceed its capacity or a token id is out of range (why names which).
 */
int hlpt_model_step(hlpt_runner *r, hlpt_seq **seqs, const int *const *tokens, const int *n,
                    int n_seqs, int all_logits, const float **logits, char *why, size_t len);

/* Options of one training forward/backward. */
typedef struct {
    int recompute;        /* 1: keep only each layer's input, recompute its activations in backward */
    uint64_t dropout_seed;/* seed of this micro-batch's LoRA dropout masks */
    int train;            /* 1: dropout active; 0: evaluation (no dropout, no backward) */
} hlpt_train_opts;

typedef struct {
    double loss_sum;      /* sum of cross-entropy over counted targets */
    int n_targets;        /* counted targets */
    int n_correct;        /* targets where argmax(logits) == label */
} hlpt_loss;

/*
 * Forward (and backward when grads is not NULL) of a packed batch: n_seqs sequences of lens[i]
 * tokens laid end to end in tokens[] and labels[] (HF convention per sequence: logits[t] predicts
 * labels[t+1]; -100 is masked). Gradients of the mean-free SUM of losses times grad_scale are
 * ACCUMULATED into grads (an arena of a->n_params floats); pass grad_scale = 1/targets of the
 * optimizer step. The base gets no gradient; backward stops at a->lowest_layer.
 */
int hlpt_model_train_step(hlpt_runner *r, const hlpt_adapter *a, const int *tokens,
                          const int *labels, const int *lens, int n_seqs,
                          const hlpt_train_opts *opts, float *grads, float grad_scale,
                          hlpt_loss *loss, char *why, size_t len);
/* Activation bytes per token the training step keeps (for reports), for sequences of T tokens. */
size_t hlpt_model_train_bytes_per_token(const hlpt_model *m, const hlpt_adapter *a, int T,
                                        int recompute);

#endif
