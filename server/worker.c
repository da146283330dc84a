/*
 * worker.c - `hlptd --worker`: one fine-tuning job in its own process.
 *
 * DESIGN
 * The daemon spawns a worker per running job. The worker maps the sealed base-model arena it
 * inherits as fd 3 (hlpt_model_attach: the same physical pages as every other process, read-only by
 * the kernel's seals), reads its job spec as one JSON object on stdin, trains, and reports on stdout
 * as JSON lines. It never opens the store: it reads its data and the checkpoint it resumes from as
 * blobs (blobs.h) the spec names by path, writes each checkpoint and the final adapter's weights
 * as blobs into place, and names them (SHA-256 and size) in its lines; the daemon records them. A
 * worker that dies takes nothing else with it; the daemon sees the exit and marks the job.
 *
 * Lines (one JSON object each, "type" first):
 *   started    {total_steps, trainable_params, examples, truncated, valid_examples, resumed_from}
 *   progress   {step, total_steps, epoch, train_loss, valid_loss?, valid_acc?, learning_rate,
 *               grad_norm, tokens_per_s, tokens_seen, elapsed_s}
 *   checkpoint {step, sha256, bytes, train_loss, valid_loss?, valid_acc?}
 *   done       {sha256, bytes, config, best_step, best_valid_loss?}
 *              (sha256 and bytes name the blob of adapter_model.safetensors; config is the
 *              adapter_config.json object)
 *   stopped    {step}            (SIGUSR1 or SIGTERM: checkpointed, exits 0)
 *   error      {message}         (then exit status 1)
 *
 * Job spec: {"model_dir", "data_dir" (its blobs/ is where blobs go), "training_file",
 *            "validation_file"?, "validation_split"?,
 *            "method": {"type", "<type>": {...}}, "hyperparameters": {...}, "seed"?,
 *            "resume_checkpoint"?, "threads"?, "daemon_pid"?}
 */
#include "worker.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hlpt/adapter.h"
#include "hlpt/engine.h"
#include "hlpt/err.h"
#include "hlpt/fileio.h"
#include "hlpt/model.h"
#include "hlpt/train.h"
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

static int on_checkpoint(void *ctx, int step, const hlpt_train_progress *p, const void *blob, size_t n) {
    worker_ctx *w = ctx;
    char sha[HLPT_SHA256_HEX];
    if ((w->ckpt_err = hlptd_blob_put(w->blobs, blob, n, sha, w->ckpt_why, sizeof w->ckpt_why)) != HLPT_OK) return -1;
    cJSON *o = line("checkpoint");
    cJSON_AddNumberToObject(o, "step", step);
    cJSON_AddStringToObject(o, "sha256", sha);
    cJSON_AddNumberToObject(o, "bytes", (double)n);
    add_finite(o, "train_loss", p->train_loss);
    add_finite(o, "valid_loss", p->valid_loss);
    add_finite(o, "valid_acc", p->valid_acc);
    emit(o);
    return 0;
}

static int should_stop(void *ctx) {
    (void)ctx;
    return stop_requested;
}

static const char *str_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Reads and tokenizes one dataset file. */
static int load_set(const hlpt_model *m, const char *path, const hlpt_train_params *p, hlpt_examples *e,
                    char *why, size_t len) {
    size_t n;
    char *buf;
    int err = hlpt_file_read(path, (size_t)1 << 32, &buf, &n, why, len);
    if (err) return err;
    err = hlpt_examples_load(hlpt_model_tokenizer(m), hlpt_model_config(m), buf, n, p, e, why, len);
    free(buf);
    return err;
}

int hlptd_worker_main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGINT, SIG_IGN); /* a terminal's ^C goes to the daemon, which decides */
    /* A worker dies with its daemon: a daemon killed outright leaves no one to store what the worker
     * does, and the restarted daemon resumes the job in a new worker in the same job directory. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);

    size_t n;
    char *spec_text = NULL;
    hlpt_fd_read(0, (size_t)16 << 20, &spec_text, &n, NULL, 0);
    cJSON *spec = spec_text ? cJSON_ParseWithLength(spec_text, n) : NULL;
    free(spec_text);
    if (!cJSON_IsObject(spec)) {
        cJSON_Delete(spec);
        return fail("%s", "the job spec on stdin is not a JSON object");
    }
    char why[1024] = "";
    int status = 1, err;
    hlpt_model *m = NULL;
    hlpt_adapter *a = NULL;
    hlpt_trainer *t = NULL;
    hlpt_examples train = {0}, valid = {0};
    hlptd_blobs *blobs = NULL;
    const char *model_dir = str_field(spec, "model_dir"), *data_dir = str_field(spec, "data_dir");
    const char *train_path = str_field(spec, "training_file"), *valid_path = str_field(spec, "validation_file");
    const char *resume = str_field(spec, "resume_checkpoint");
    /* The daemon may have died before PR_SET_PDEATHSIG was in place. */
    const cJSON *daemon_pid = cJSON_GetObjectItemCaseSensitive(spec, "daemon_pid");
    if (cJSON_IsNumber(daemon_pid) && (double)getppid() != daemon_pid->valuedouble) {
        status = fail("%s", "the daemon that started this worker is gone");
        goto out;
    }
    const cJSON *threads = cJSON_GetObjectItemCaseSensitive(spec, "threads");
    if (!model_dir || !data_dir || !train_path) {
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
    const hlpt_config *c = hlpt_model_config(m);

    /* The adapter plan: method.type, then method.<type> settings. */
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(spec, "method");
    const char *type = method ? str_field(method, "type") : "hlpt";
    int meth = type ? hlpt_method_from_name(type) : -1;
    if (meth < 0) {
        status = fail("method.type: '%s' is not one of hlpt, h2lpt, lora, prefix", type ? type : "?");
        goto out;
    }
    hlpt_adapter_config cfg;
    hlpt_adapter_config_defaults(&cfg, (hlpt_method)meth, c->n_layers);
    const cJSON *settings = method ? cJSON_GetObjectItemCaseSensitive(method, type) : NULL;
    if (settings && (err = hlpt_adapter_config_apply(&cfg, settings, c->n_layers, 0, why, sizeof why))) {
        status = fail("method: %s", why);
        goto out;
    }
    snprintf(cfg.base_name, sizeof cfg.base_name, "%s", model_dir);
    snprintf(cfg.base_hash, sizeof cfg.base_hash, "%s", hlpt_model_hash(m));

    hlpt_train_params p;
    hlpt_train_params_defaults(&p);
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(spec, "hyperparameters");
    if (hp && (err = hlpt_train_params_apply(&p, hp, why, sizeof why))) {
        status = fail("%s", why);
        goto out;
    }
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(spec, "seed");
    if (cJSON_IsNumber(seed)) p.seed = (uint64_t)seed->valuedouble;

    if ((err = load_set(m, train_path, &p, &train, why, sizeof why))) {
        status = fail("training file: %s", why);
        goto out;
    }
    if (valid_path && (err = load_set(m, valid_path, &p, &valid, why, sizeof why))) {
        status = fail("validation file: %s", why);
        goto out;
    }
    const cJSON *split = cJSON_GetObjectItemCaseSensitive(spec, "validation_split");
    if (!valid_path && cJSON_IsNumber(split) && split->valuedouble > 0) {
        hlpt_examples all = train;
        memset(&train, 0, sizeof train);
        err = hlpt_examples_split(&all, split->valuedouble, p.seed, &train, &valid);
        hlpt_examples_free(&all);
        if (err) {
            status = fail("%s", "validation_split: out of memory");
            goto out;
        }
    }
    if ((err = hlpt_adapter_new(c, &cfg, &a, why, sizeof why))) {
        status = fail("adapter: %s", why);
        goto out;
    }
    hlpt_adapter_init(a, p.seed);
    if ((err = hlpt_trainer_new(m, a, &train, valid.n ? &valid : NULL, &p, &t, why, sizeof why))) {
        status = fail("%s", why);
        goto out;
    }
    int resumed_from = 0;
    if (resume) {
        char *blob = NULL;
        err = hlpt_file_read(resume, (size_t)1 << 34, &blob, &n, why, sizeof why);
        if (!err) err = hlpt_trainer_restore(t, blob, n, why, sizeof why);
        free(blob);
        if (err) {
            status = fail("resume: %s", why);
            goto out;
        }
        resumed_from = hlpt_trainer_step(t);
    }
    cJSON *o = line("started");
    cJSON_AddNumberToObject(o, "total_steps", hlpt_trainer_total_steps(t));
    cJSON_AddNumberToObject(o, "trainable_params", (double)a->n_params);
    cJSON_AddNumberToObject(o, "examples", train.n);
    cJSON_AddNumberToObject(o, "truncated", train.n_truncated);
    cJSON_AddNumberToObject(o, "valid_examples", valid.n);
    cJSON_AddNumberToObject(o, "resumed_from", resumed_from);
    emit(o);

    worker_ctx w = {.blobs = blobs, .ckpt_err = HLPT_OK};
    hlpt_train_hooks hooks = {.ctx = &w, .on_progress = on_progress, .on_checkpoint = on_checkpoint,
                              .should_stop = should_stop};
    if ((err = hlpt_trainer_run(t, &hooks, why, sizeof why))) {
        if (w.ckpt_err == HLPT_ERR_NOSPACE) status = fail_code("no_space", "writing a checkpoint: %s", w.ckpt_why);
        else status = fail("training: %s", why);
        goto out;
    }
    if (!hlpt_trainer_finished(t)) {
        o = line("stopped");
        cJSON_AddNumberToObject(o, "step", hlpt_trainer_step(t));
        emit(o);
        status = 0;
        goto out;
    }
    int best_step;
    double best_loss;
    memcpy(a->params, hlpt_trainer_best_params(t, &best_step, &best_loss), a->n_params * sizeof(float));
    /* The weights become a blob; the config travels in the line (the store keeps it as text). */
    char *extra = hlpt_train_params_json(&p), *config = hlpt_adapter_config_with(&a->cfg, extra), sha[HLPT_SHA256_HEX];
    void *weights = NULL;
    size_t wn = 0;
    err = config ? hlpt_adapter_to_safetensors(a, a->params, NULL, &weights, &wn, why, sizeof why)
                 : hlpt_why(why, sizeof why, HLPT_ERR_NOMEM, "out of memory");
    if (!err) err = hlptd_blob_put(blobs, weights, wn, sha, why, sizeof why);
    cJSON *config_json = err ? NULL : cJSON_Parse(config);
    free(extra);
    free(config);
    free(weights);
    if (err || !config_json) {
        status = fail_code(err == HLPT_ERR_NOSPACE ? "no_space" : NULL, "saving the adapter: %s", err ? why : "out of memory");
        goto out;
    }
    o = line("done");
    cJSON_AddStringToObject(o, "sha256", sha);
    cJSON_AddNumberToObject(o, "bytes", (double)wn);
    cJSON_AddItemToObject(o, "config", config_json);
    cJSON_AddNumberToObject(o, "best_step", best_step);
    add_finite(o, "best_valid_loss", best_loss);
    emit(o);
    status = 0;
out:
    hlpt_trainer_free(t);
    hlpt_examples_free(&train);
    hlpt_examples_free(&valid);
    hlpt_adapter_free(a);
    hlpt_model_close(m);
    hlptd_blobs_close(blobs);
    cJSON_Delete(spec);
    return status;
}
