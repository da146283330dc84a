/*
 * finetune.h - one fine-tuning job from start to end: the job spec, parsed from the JSON the
 * daemon's API accepts, and the run that loads the data, builds the adapter and its trainer, resumes
 * from a checkpoint, trains, keeps the best parameters and hands the adapter over.
 *
 * Everyone goes through these two functions (docs/design.md, "Fine-tuning"): the API validates a
 * job's request with hlpt_job_spec_parse before it stores the job, `hlptd --worker` parses the
 * stored job with it and runs it, and `hlpt train` builds the same JSON from its flags. The caller
 * decides where checkpoints and the adapter are written (the hooks) and when to stop.
 */
#ifndef HLPT_FINETUNE_H
#define HLPT_FINETUNE_H

#include <stddef.h>

#include "hlpt/adapter.h"
#include "hlpt/model.h"
#include "hlpt/train.h"

/* The method a job trains when it names none, or names OpenAI's `supervised`. */
#define HLPT_JOB_DEFAULT_METHOD HLPT_METHOD_HLPT

/* A parsed job: what to train, how, and on what. A plain value struct; its paths are borrowed. */
typedef struct {
    hlpt_adapter_config adapter;   /* the plan: method and its settings; base_name is the caller's to
                                      set, base_hash is set from the model by hlpt_finetune_run */
    hlpt_train_params params;      /* hyperparameters; params.seed is the job's seed */
    const char *training_file;     /* JSONL path (borrowed); set by the caller, not the parser */
    const char *validation_file;   /* JSONL path (borrowed), or NULL */
    double validation_split;       /* fraction of the training examples held out for validation when
                                      there is no validation_file; 0 = none */
    const char *resume_checkpoint; /* checkpoint file (hlpt_trainer_checkpoint's bytes) to continue
                                      from (borrowed), or NULL for a fresh start */
} hlpt_job_spec;

/*
 * Fills *spec from a job's JSON object (borrowed), for a base of n_layers layers: the defaults, then
 *
 *   method            {type, <type>: {settings..., hyperparameters?}}, type one of hlpt, h2lpt, lora,
 *                     prefix (the settings of hlpt_adapter_config_apply), or OpenAI's
 *                     {type: supervised, supervised: {hyperparameters?}}, which trains
 *                     HLPT_JOB_DEFAULT_METHOD; absent or null: that default with its default plan
 *   hyperparameters   what hlpt_train_params_apply takes, plus validation_split; at the top level or
 *                     in method.<type>, not both
 *   validation_split  in (0, 1), in hyperparameters or at the top level, not both
 *   seed              an integer in [0, 2^53) (default 42)
 *
 * Other keys are the caller's and are ignored; the paths are left NULL. Errors: HLPT_ERR_INVAL or
 * HLPT_ERR_RANGE for a bad value, HLPT_ERR_UNSUPPORTED for OpenAI's method types hlpt does not
 * train (dpo, reinforcement), HLPT_ERR_NOMEM. why starts with the field it is about
 * ("method.lora.r: ...", "hyperparameters.n_epochs: ...") or quotes it ("`method.type` must be
 * ..."); param (param_len bytes; may be NULL) receives the field to report: the hyperparameter's path
 * ("method.supervised.hyperparameters.n_epochs"), or for the adapter's settings, which are checked as
 * one plan, the object that holds them ("method.lora"); "" on success. Any thread.
 */
struct cJSON;
int hlpt_job_spec_parse(hlpt_job_spec *spec, const struct cJSON *json, int n_layers, char *param,
                        size_t param_len, char *why, size_t len);

/* What a run reports once its data, adapter and trainer are ready, before its first step. */
typedef struct {
    int total_steps;          /* optimizer steps of the whole run, those before a resume included */
    size_t trainable_params;  /* the adapter's parameters */
    int examples;             /* training examples (after a validation split) */
    int truncated;            /* of those, cut at max_length */
    int valid_examples;       /* validation examples; 0 = none */
    int resumed_from;         /* the step restored from resume_checkpoint; 0 = a fresh start */
} hlpt_finetune_started;

/* The caller's side of a run; every hook may be NULL and is called on the thread of the run. */
typedef struct {
    void *ctx;
    /* Once, before the first step. A non-zero status ends the run with that status (why is the
     * hook's to fill). */
    int (*on_started)(void *ctx, const hlpt_finetune_started *s, char *why, size_t len);
    /* As in hlpt_train_hooks. */
    void (*on_progress)(void *ctx, const hlpt_train_progress *p);
    /* A checkpoint, as in hlpt_train_hooks: bytes borrowed for the call; non-zero aborts the run. */
    int (*on_checkpoint)(void *ctx, int step, const hlpt_train_progress *p, const void *blob, size_t n);
    /* Polled between steps, as in hlpt_train_hooks. */
    int (*should_stop)(void *ctx);
    /* The final adapter (borrowed for the call) with the best parameters of the run, best_step and
     * best_loss (the validation loss there; NAN without validation); extra_json (borrowed) holds the
     * training settings to merge into its config (hlpt_adapter_save's extra_json). Called only when
     * the run finished, not when it stopped. A non-zero status fails the run with that status. */
    int (*on_adapter)(void *ctx, const hlpt_adapter *a, const char *extra_json, int best_step, double best_loss,
                      char *why, size_t len);
} hlpt_finetune_hooks;

typedef struct {
    int finished;      /* 1: trained to the end (or stopped early by early stopping) and on_adapter
                          succeeded; 0: stopped by should_stop after a final checkpoint */
    int step;          /* optimizer steps done */
    int best_step;     /* step of the adapter handed to on_adapter; -1 when not finished */
    double best_loss;  /* its validation loss; NAN without validation or when not finished */
} hlpt_finetune_result;

/*
 * Runs the job spec (borrowed) on base m (borrowed): reads and tokenizes the data files, holds out
 * validation_split of the training examples (seeded by params.seed) when there is no validation
 * file, creates the adapter (initialised from params.seed) and its trainer, restores
 * resume_checkpoint, reports on_started, trains with the hooks, and hands the adapter with the best
 * parameters to on_adapter. *res is filled on HLPT_OK (finished or stopped). Errors are those of the
 * step that failed, why naming it ("training file: line 3: ...", "resume: ...", "training: ...",
 * "saving the adapter: ..."); a hook's status is returned as it is (HLPT_ERR_NOSPACE from
 * on_adapter, say), while a failing on_checkpoint ends the run with HLPT_ERR_IO (the hook keeps its
 * own detail). Runs on the calling thread; the same spec, data, checkpoint and thread count give the
 * same parameters bit for bit (train.h).
 */
int hlpt_finetune_run(const hlpt_model *m, const hlpt_job_spec *spec, const hlpt_finetune_hooks *hooks,
                      hlpt_finetune_result *res, char *why, size_t len);

#endif
