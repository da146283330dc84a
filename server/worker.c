/*
 * worker.c - `hlptd --worker`: one fine-tuning job in its own process.
 *
 * DESIGN
 * The daemon spawns a worker per running job. The worker maps the sealed base-model arena it
 * inherits as fd 3 (hlpt_model_attach: the same physical pages as every other process, read-only by
 * the kernel's seals), reads its job spec as one JSON object on stdin, and hands it to the library's
 * fine-tuning entry point (include/hlpt/finetune.h: the parser the API validated the job with, and
 * the run that `hlpt train` uses too). What is left here is the process around it: signals, the
 * spec's paths, and the hooks that turn the run's reports into JSON lines on stdout. It never opens
 * the store: it reads its data and the checkpoint it resumes from as blobs (blobs.h) the spec names
 * by path, writes each checkpoint and the final adapter's weights as sealed blobs (fsynced, kept
 * under blobs/tmp/, never put into place: only the daemon's loop does that, with the row that names
 * them) and names them in its lines: SHA-256, size and the temporary's name. A worker that dies
 * takes nothing else with it; the daemon sees the exit, marks the job and removes the temporaries
 * it left.
 *
 * Lines (one JSON object each, "type" first):
 *   started    {total_steps, trainable_params, examples, truncated, valid_examples, resumed_from}
 *   progress   {step, total_steps, epoch, train_loss, valid_loss?, valid_acc?, learning_rate,
 *               grad_norm, tokens_per_s, tokens_seen, elapsed_s}
 *   checkpoint {step, sha256, bytes, tmp, train_loss, valid_loss?, valid_acc?}
 *   done       {sha256, bytes, tmp, config, best_step, best_valid_loss?}
 *              (sha256, bytes and tmp name a sealed blob: its name, its size, and its temporary's
 *              name under blobs/tmp/, "<pid>-<n>", which the daemon adopts with the row or discards;
 *              done's is adapter_model.safetensors; config is the adapter_config.json object)
 *   stopped    {step}            (SIGUSR1 or SIGTERM: checkpointed, exits 0)
 *   error      {message, code?}  (then exit status 1; code "no_space" when the disk is full)
 *
 * Job spec: {"model_dir", "data_dir" (its blobs/ is where blobs go), "training_file",
 *            "validation_file"?, "resume_checkpoint"? (the three: paths of blobs), "threads"?,
 *            "daemon_pid"?} and the job's settings as hlpt_job_spec_parse reads them:
 *           "method": {"type", "<type>": {...}}, "hyperparameters": {... validation_split?}, "seed"?,
 *           the method and hyperparameters as the job stored them.
 */
#include "worker.h"

#include <cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "hlpt/adapter.h"
#include "hlpt/engine.h"
#include "hlpt/err.h"
#include "hlpt/fileio.h"
#include "hlpt/finetune.h"
#include "hlpt/model.h"
#include "blobs.h"

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* One JSON line to the daemon; the object is consumed. */
static void emit(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    free(s);
    cJSON_Delete(o);
}

static cJSON *line(const char *type) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static void add_finite(cJSON *o, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
}

/* An error line; code (NULL for none) tells the daemon what kind: "no_space" pauses the job. */
static int fail_code(const char *code, const char *fmt, const char *detail) {
    char msg[1024];
    snprintf(msg, sizeof msg, fmt, detail);
    cJSON *o = line("error");
    cJSON_AddStringToObject(o, "message", msg);
    if (code) cJSON_AddStringToObject(o, "code", code);
    emit(o);
    return 1;
}

static int fail(const char *fmt, const char *detail) { return fail_code(NULL, fmt, detail); }

typedef struct {
    hlptd_blobs *blobs;
    int ckpt_err;      /* the last checkpoint write's status */
    char ckpt_why[512];
} worker_ctx;

static int on_started(void *ctx, const hlpt_finetune_started *s, char *why, size_t len) {
    cJSON *o = line("started");
    cJSON_AddNumberToObject(o, "total_steps", s->total_steps);
    cJSON_AddNumberToObject(o, "trainable_params", (double)s->trainable_params);
    cJSON_AddNumberToObject(o, "examples", s->examples);
    cJSON_AddNumberToObject(o, "truncated", s->truncated);
    cJSON_AddNumberToObject(o, "valid_examples", s->valid_examples);
    cJSON_AddNumberToObject(o, "resumed_from", s->resumed_from);
    emit(o);
    return HLPT_OK;
}

static void on_progress(void *ctx, const hlpt_train_progress *p) {
    cJSON *o = line("progress");
    cJSON_AddNumberToObject(o, "step", p->step);
    cJSON_AddNumberToObject(o, "total_steps", p->total_steps);
    cJSON_AddNumberToObject(o, "epoch", p->epoch);
    add_finite(o, "train_loss", p->train_loss);
    add_finite(o, "valid_loss", p->valid_loss);
    add_finite(o, "valid_acc", p->valid_acc);
    cJSON_AddNumberToObject(o, "learning_rate", p->learning_rate);
    add_finite(o, "grad_norm", p->grad_norm);
    cJSON_AddNumberToObject(o, "tokens_per_s", p->tokens_per_s);
    cJSON_AddNumberToObject(o, "tokens_seen", (double)p->tokens_seen);
    cJSON_AddNumberToObject(o, "elapsed_s", p->elapsed_s);
    emit(o);
}

/* Output: a checkpoint becomes a sealed blob, named in a "checkpoint" line. A failed write keeps
 * its status for the error line (the trainer reports only that the hook failed). */
static int write_checkpoint(void *ctx, int step, const hlpt_train_progress *p, const void *blob, size_t n) {
    worker_ctx *w = ctx;
    char sha[HLPT_SHA256_HEX], tmp[HLPTD_BLOB_TMP_MAX];
    if ((w->ckpt_err = hlptd_blob_put_sealed(w->blobs, blob, n, sha, tmp, sizeof tmp, w->ckpt_why, sizeof w->ckpt_why)))
        return -1;
    cJSON *o = line("checkpoint");
    cJSON_AddNumberToObject(o, "step", step);
    cJSON_AddStringToObject(o, "sha256", sha);
    cJSON_AddNumberToObject(o, "bytes", (double)n);
    cJSON_AddStringToObject(o, "tmp", tmp);
    add_finite(o, "train_loss", p->train_loss);
    add_finite(o, "valid_loss", p->valid_loss);
    add_finite(o, "valid_acc", p->valid_acc);
    emit(o);
    return 0;
}

/* Output: the final adapter's weights become a sealed blob, named in the "done" line with its config
 * (the store keeps the config as text). */
static int write_adapter(void *ctx, const hlpt_adapter *a, const char *extra_json, int best_step, double best_loss,
                         char *why, size_t len) {
    worker_ctx *w = ctx;
    char *config = hlpt_adapter_config_with(&a->cfg, extra_json), sha[HLPT_SHA256_HEX], tmp[HLPTD_BLOB_TMP_MAX];
    void *weights = NULL;
    size_t n = 0;
    int err = config ? hlpt_adapter_to_safetensors(a, a->params, NULL, &weights, &n, why, len)
                     : hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    if (!err) err = hlptd_blob_put_sealed(w->blobs, weights, n, sha, tmp, sizeof tmp, why, len);
    cJSON *config_json = err ? NULL : cJSON_Parse(config);
    free(config);
    free(weights);
    if (!err && !config_json) {
        hlptd_blob_discard(w->blobs, tmp);
        err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    }
    if (err) return err;
    cJSON *o = line("done");
    cJSON_AddStringToObject(o, "sha256", sha);
    cJSON_AddNumberToObject(o, "bytes", (double)n);
    cJSON_AddStringToObject(o, "tmp", tmp);
    cJSON_AddItemToObject(o, "config", config_json);
    cJSON_AddNumberToObject(o, "best_step", best_step);
    add_finite(o, "best_valid_loss", best_loss);
    emit(o);
    return HLPT_OK;
}

static int should_stop(void *ctx) {
    (void)ctx;
    return stop_requested;
}

static const char *str_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int hlptd_worker_main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGINT, SIG_IGN); /* a terminal's ^C goes to the daemon, which decides */
    /* A worker dies with its daemon: a daemon killed outright leaves no one to store what the worker
     * does, and the restarted daemon resumes the job in a new worker from its last stored checkpoint. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);

    size_t n;
    char *spec_text = NULL;
    hlpt_fd_read(0, (size_t)16 << 20, &spec_text, &n, NULL, 0);
    cJSON *json = spec_text ? cJSON_ParseWithLength(spec_text, n) : NULL;
    free(spec_text);
    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        return fail("%s", "the job spec on stdin is not a JSON object");
    }
    char why[1024] = "";
    int status = 1, err;
    hlpt_model *m = NULL;
    hlptd_blobs *blobs = NULL;
    const char *model_dir = str_field(json, "model_dir"), *data_dir = str_field(json, "data_dir");
    /* The daemon may have died before PR_SET_PDEATHSIG was in place. */
    const cJSON *daemon_pid = cJSON_GetObjectItemCaseSensitive(json, "daemon_pid");
    if (cJSON_IsNumber(daemon_pid) && (double)getppid() != daemon_pid->valuedouble) {
        status = fail("%s", "the daemon that started this worker is gone");
        goto out;
    }
    const cJSON *threads = cJSON_GetObjectItemCaseSensitive(json, "threads");
    if (!model_dir || !data_dir || !str_field(json, "training_file")) {
        status = fail("%s", "the job spec needs model_dir, data_dir and training_file");
        goto out;
    }
    if ((err = hlptd_blobs_open(data_dir, 0, &blobs, why, sizeof why))) {
        status = fail("%s", why);
        goto out;
    }
    if (cJSON_IsNumber(threads) && threads->valueint > 0) hlpt_engine_set_threads(threads->valueint);
    if ((err = hlpt_model_attach(model_dir, HLPTD_WORKER_MODEL_FD, &m, why, sizeof why))) {
        status = fail("base model: %s", why);
        goto out;
    }

    /* The stored method keeps OpenAI's type beside hlpt's as `requested` (api/jobs.c), for the job's
     * JSON: not a setting. */
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(json, "method"), "requested");
    hlpt_job_spec spec;
    if ((err = hlpt_job_spec_parse(&spec, json, hlpt_model_config(m)->n_layers, NULL, 0, why, sizeof why))) {
        status = fail("%s", why);
        goto out;
    }
    spec.training_file = str_field(json, "training_file");
    spec.validation_file = str_field(json, "validation_file");
    spec.resume_checkpoint = str_field(json, "resume_checkpoint");
    snprintf(spec.adapter.base_name, sizeof spec.adapter.base_name, "%s", model_dir);

    worker_ctx w = {.blobs = blobs, .ckpt_err = HLPT_OK};
    hlpt_finetune_hooks hooks = {.ctx = &w, .on_started = on_started, .on_progress = on_progress,
                                 .on_checkpoint = write_checkpoint, .should_stop = should_stop,
                                 .on_adapter = write_adapter};
    hlpt_finetune_result res;
    if ((err = hlpt_finetune_run(m, &spec, &hooks, &res, why, sizeof why))) {
        if (w.ckpt_err == HLPT_ERR_NOSPACE) status = fail_code("no_space", "writing a checkpoint: %s", w.ckpt_why);
        else status = fail_code(err == HLPT_ERR_NOSPACE ? "no_space" : NULL, "%s", why);
        goto out;
    }
    if (!res.finished) {
        cJSON *o = line("stopped");
        cJSON_AddNumberToObject(o, "step", res.step);
        emit(o);
    }
    status = 0;
out:
    hlpt_model_close(m);
    hlptd_blobs_close(blobs);
    cJSON_Delete(json);
    return status;
}
