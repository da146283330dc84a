/*
 * train.h - the training loop of an adapter on a frozen base: hyperparameters, tokenized examples,
 * AdamW with warm-up and decay, gradient accumulation and clipping, evaluation, checkpoints that
 * resume exactly.
 *
 * Determinism: the data order of epoch e is a permutation drawn from (seed, e); the dropout masks of
 * a micro-batch are a pure function of (seed, step, micro-batch). A checkpoint therefore needs only
 * the step, the parameters and the AdamW moments for training to continue exactly as if it had
 * never stopped. The same seed, data and BLAS thread count give the same loss curve bit for bit.
 */
#ifndef HLPT_TRAIN_H
#define HLPT_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "hlpt/adapter.h"
#include "hlpt/model.h"

typedef enum { HLPT_SCHED_LINEAR, HLPT_SCHED_COSINE, HLPT_SCHED_CONSTANT } hlpt_sched;

typedef struct {
    int n_epochs;          /* passes over the training set (default 3) */
    int batch_size;        /* examples per optimizer step (default 16) */
    int micro_batch;       /* examples per forward/backward (default 4); accumulation = batch/micro */
    float learning_rate;   /* peak (default 3e-3) */
    int warmup_steps;      /* linear warm-up (default 100, capped at a tenth of the steps) */
    hlpt_sched schedule;   /* decay after warm-up (default linear to 0) */
    float weight_decay;    /* decoupled (default 0) */
    float beta1, beta2, eps; /* AdamW (0.9, 0.999, 1e-8) */
    float max_grad_norm;   /* global-norm clipping; 0 = off (default 1.0) */
    int max_length;        /* tokens per example, longer ones truncated (default 256) */
    int train_on_inputs;   /* also learn the prompt tokens (default 0) */
    uint64_t seed;         /* default 42 */
    int max_steps;         /* stop after this many steps; 0 = all epochs */
    int log_every;         /* steps between progress reports (default 1) */
    int eval_every;        /* steps between validation passes; 0 = at each epoch end */
    int save_every;        /* steps between checkpoints; 0 = at each epoch end */
    int recompute;         /* recompute activations in backward (less memory) */
    int patience;          /* early stopping: evaluations without improvement; 0 = off */
    float min_delta;       /* improvement that counts */
} hlpt_train_params;

void hlpt_train_params_defaults(hlpt_train_params *p);
/* Applies a JSON object (a job's `hyperparameters`) on top of *p. Unknown keys and bad values are
 * errors naming the key. Accepted keys: n_epochs, batch_size, micro_batch_size, learning_rate,
 * learning_rate_multiplier (x the default), warmup_steps, lr_scheduler (linear|cosine|constant),
 * weight_decay, max_grad_norm, max_length, train_on_inputs, max_steps, log_every, eval_every,
 * save_every, recompute, early_stopping_patience, early_stopping_min_delta. "auto" means default. */
struct cJSON;
int hlpt_train_params_apply(hlpt_train_params *p, const struct cJSON *json, char *why, size_t len);
/* The params as JSON text (returns owned). */
char *hlpt_train_params_json(const hlpt_train_params *p);

/* Tokenized examples: ids and HF-convention labels (-100 on masked positions), packed. */
typedef struct {
    int n;                 /* examples */
    int *off;              /* [n+1] token offsets */
    int *ids;              /* [off[n]] */
    int *labels;           /* [off[n]] */
    int n_truncated;       /* examples cut at max_length */
    long n_targets;        /* label positions that are not -100 */
} hlpt_examples;
void hlpt_examples_free(hlpt_examples *e);

/* Appends one example: bos + prompt + completion + eos, truncated to max_length; labels mask the
 * prompt (and bos) unless train_on_inputs. bos/eos < 0 are left out. An example with no target
 * left after truncation is still kept (it contributes nothing) but counted as truncated. */
int hlpt_examples_add(hlpt_examples *e, const int *prompt, int n_prompt, const int *completion,
                      int n_completion, int bos, int eos, int max_length, int train_on_inputs);

/*
 * Reads a JSONL dataset (any format of dataset.h) and tokenizes it for training: BOS (config's
 * bos_token_id) + prompt + completion + EOS, truncated to p->max_length, prompt masked unless
 * p->train_on_inputs. Appends to *out. A bad line is HLPT_ERR_INVAL with its line number and field.
 */
struct hlpt_tokenizer;
int hlpt_examples_load(const struct hlpt_tokenizer *tok, const hlpt_config *c, const char *buf,
                       size_t n, const hlpt_train_params *p, hlpt_examples *out, char *why,
                       size_t len);

/* The prompt and completion text of one JSONL line (n bytes; line is its number, for messages),
 * both returned owned: {"prompt","completion"}, Alpaca {"instruction","input"?,"output"} rendered
 * with the Alpaca template the paper trained with, or {"text"} (empty prompt). */
int hlpt_examples_texts(const char *json, size_t n, long line, char **prompt, char **completion,
                        char *why, size_t len);

/* Splits src into train and valid: a fraction frac (0 < frac < 1, at least one example each when
 * src has two or more) of a seeded shuffle goes to valid. src is left untouched. */
int hlpt_examples_split(const hlpt_examples *src, double frac, uint64_t seed, hlpt_examples *train,
                        hlpt_examples *valid);

/* What the loop reports after an optimizer step (or an evaluation). */
typedef struct {
    int step, total_steps;
    int epoch;             /* 0-based epoch the step belongs to */
    double train_loss;     /* mean over the step's targets */
    double valid_loss;     /* NAN when not evaluated at this step */
    double valid_acc;      /* token accuracy on validation; NAN when not evaluated */
    double learning_rate;
    double grad_norm;      /* before clipping */
    double tokens_per_s;   /* tokens processed per second over the last step */
    long tokens_seen;
    double elapsed_s;
} hlpt_train_progress;

typedef struct {
    void *ctx;
    /* After every log_every-th step, and after each evaluation. */
    void (*on_progress)(void *ctx, const hlpt_train_progress *p);
    /* A checkpoint (hlpt_trainer_checkpoint's bytes, borrowed for the call). Non-zero aborts. */
    int (*on_checkpoint)(void *ctx, int step, const hlpt_train_progress *p, const void *blob, size_t n);
    /* Polled between steps: non-zero stops the loop after a final checkpoint (pause, drain). */
    int (*should_stop)(void *ctx);
} hlpt_train_hooks;

typedef struct hlpt_trainer hlpt_trainer;
/* Borrows m, a, train and valid (valid may be NULL) for the trainer's life; a's parameters are
 * trained in place. */
int hlpt_trainer_new(const hlpt_model *m, hlpt_adapter *a, const hlpt_examples *train,
                     const hlpt_examples *valid, const hlpt_train_params *p, hlpt_trainer **out,
                     char *why, size_t len);
void hlpt_trainer_free(hlpt_trainer *t);
int hlpt_trainer_total_steps(const hlpt_trainer *t);
int hlpt_trainer_step(const hlpt_trainer *t);        /* optimizer steps done */
/* Runs until the last step, early stopping, or should_stop. Returns HLPT_OK (finished or stopped:
 * see hlpt_trainer_finished) or an error. */
int hlpt_trainer_run(hlpt_trainer *t, const hlpt_train_hooks *hooks, char *why, size_t len);
int hlpt_trainer_finished(const hlpt_trainer *t);
/* Validation loss and token accuracy of the current parameters (NAN without a validation set). */
int hlpt_trainer_evaluate(hlpt_trainer *t, double *loss, double *acc, char *why, size_t len);
/* The checkpoint: adapter parameters, AdamW moments, step, best validation loss (safetensors bytes,
 * returned owned). */
int hlpt_trainer_checkpoint(hlpt_trainer *t, void **blob, size_t *n, char *why, size_t len);
/* Restores a checkpoint made for the same adapter plan and data. */
int hlpt_trainer_restore(hlpt_trainer *t, const void *blob, size_t n, char *why, size_t len);
/* The adapter a checkpoint holds (borrows blob): its plan and its parameters at the checkpoint's
 * step, for base c, without the optimizer state; *out returned owned (hlpt_adapter_free).
 * HLPT_ERR_FORMAT for bytes that are no hlpt checkpoint, HLPT_ERR_MISMATCH when they do not fit c.
 * Any thread. */
int hlpt_checkpoint_adapter(const void *blob, size_t n, const hlpt_config *c, hlpt_adapter **out, char *why,
                            size_t len);
/* The parameters of the best evaluation so far (or the current ones without a validation set). */
const float *hlpt_trainer_best_params(const hlpt_trainer *t, int *best_step, double *best_loss);

#endif
