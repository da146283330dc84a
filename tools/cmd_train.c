/*
 * cmd_train.c - `hlpt train`: offline training of an adapter on a JSONL file, with a progress bar on
 * a terminal and one JSON line per logged step otherwise.
 *
 * A thin shell around the library's fine-tuning entry point (include/hlpt/finetune.h), the one the
 * daemon's workers run: the flags become a job in the JSON shape the daemon's API takes, checked by
 * the same parser, and the hooks print progress and write the checkpoint and the adapter where the
 * flags say.
 */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "hlpt/adapter.h"
#include "hlpt/config.h"
#include "hlpt/engine.h"
#include "hlpt/err.h"
#include "hlpt/fileio.h"
#include "hlpt/finetune.h"
#include "hlpt/model.h"

static const char train_usage[] =
    "usage: hlpt train --model DIR --data FILE [--valid FILE] [--method hlpt|h2lpt|lora|prefix]\n"
    "                  [--gate causal|sequence|none] [--rank R] [--alpha A] [--virtual-tokens P]\n"
    "                  [--targets q_proj,v_proj,...]\n"
    "                  [--epochs N] [--batch-size B] [--grad-accum K] [--lr X] [--max-length T]\n"
    "                  [--seed S] [--max-steps N] [--eval-every N] [--threads N] [--recompute]\n"
    "                  [--resume CKPT] [--checkpoint FILE] [--dtype auto|bf16|f32] --out DIR\n"
    "Trains an adapter and writes it to DIR (adapter_config.json, adapter_model.safetensors).\n"
    "--batch-size is examples per forward pass; --grad-accum passes per optimizer step.\n"
    "--checkpoint FILE keeps the latest checkpoint there (default DIR/checkpoint.safetensors);\n"
    "--resume continues from one exactly.\n"
    "--dtype stores the base's matrices as bf16 or f32; auto (the default) is bf16 where the CPU\n"
    "has AVX512-BF16 or AMX, else f32.\n";

typedef struct {
    int tty;
    const char *method;     /* for the start line */
    const char *out;        /* the adapter's directory */
    const char *ckpt_path;  /* where the latest checkpoint goes */
    char ckpt_why[512];     /* why the last checkpoint write failed */
} train_view;

/* The output directory is made once the data has loaded, before the first step. */
static int on_started(void *ctx, const hlpt_finetune_started *s, char *why, size_t len) {
    train_view *v = ctx;
    if (mkdir(v->out, 0755) != 0 && access(v->out, W_OK) != 0)
        return hlpt_why(why, len, HLPT_ERR_IO, "%s: cannot create the output directory", v->out);
    fprintf(stderr, "hlpt: %s adapter, %zu trainable parameters, %d examples (%d truncated), %d steps\n",
            v->method, s->trainable_params, s->examples, s->truncated, s->total_steps);
    return HLPT_OK;
}

static void on_progress(void *ctx, const hlpt_train_progress *p) {
    train_view *v = ctx;
    double eta = p->step > 0 ? p->elapsed_s / p->step * (p->total_steps - p->step) : 0;
    if (v->tty) {
        int width = 30, done = p->total_steps ? width * p->step / p->total_steps : width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < done ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r[%s] %d/%d  loss %.4f", bar, p->step, p->total_steps, p->train_loss);
        if (!isnan(p->valid_loss)) fprintf(stderr, "  valid %.4f", p->valid_loss);
        fprintf(stderr, "  %.0f tok/s  ETA %dm%02ds ", p->tokens_per_s, (int)eta / 60, (int)eta % 60);
        if (!isnan(p->valid_loss) || p->step == p->total_steps) fputc('\n', stderr);
        fflush(stderr);
        return;
    }
    printf("{\"step\":%d,\"total_steps\":%d,\"epoch\":%d,\"train_loss\":%.6f,\"learning_rate\":%.6g,"
           "\"grad_norm\":%.6g,\"tokens_per_s\":%.1f,\"eta_s\":%.1f",
           p->step, p->total_steps, p->epoch, p->train_loss, p->learning_rate, p->grad_norm, p->tokens_per_s, eta);
    if (!isnan(p->valid_loss)) printf(",\"valid_loss\":%.6f,\"valid_acc\":%.6f", p->valid_loss, p->valid_acc);
    printf("}\n");
    fflush(stdout);
}

static int on_checkpoint(void *ctx, int step, const hlpt_train_progress *p, const void *blob, size_t n) {
    train_view *v = ctx;
    return hlpt_file_write(v->ckpt_path, blob, n, 1, v->ckpt_why, sizeof v->ckpt_why);
}

static int on_adapter(void *ctx, const hlpt_adapter *a, const char *extra_json, int best_step, double best_loss,
                      char *why, size_t len) {
    train_view *v = ctx;
    return hlpt_adapter_save(a, v->out, extra_json, why, len);
}

/* The flags that are a job's settings, already converted (NULL or negative: not given). */
typedef struct {
    const char *method, *gate, *targets;
    long rank, virt, epochs, micro, accum, max_len, max_steps, eval_every;
    double alpha, lr;
    int recompute;
} train_flags;

/* The job those flags describe, in the JSON shape the daemon's API takes (hlpt_job_spec_parse), so
 * that the command line is held to the daemon's rules. Returns owned, NULL when out of memory. */
static cJSON *flags_job(const train_flags *f) {
    cJSON *job = cJSON_CreateObject(), *method = cJSON_AddObjectToObject(job, "method");
    cJSON *set = cJSON_AddObjectToObject(method, f->method), *hp = cJSON_AddObjectToObject(job, "hyperparameters");
    int ok = set && hp;
    ok &= cJSON_AddStringToObject(method, "type", f->method) != NULL;
    if (f->gate) ok &= cJSON_AddStringToObject(set, "gate", f->gate) != NULL;
    if (f->rank > 0) ok &= cJSON_AddNumberToObject(set, "r", (double)f->rank) != NULL;
    if (f->alpha > 0) ok &= cJSON_AddNumberToObject(set, "lora_alpha", f->alpha) != NULL;
    if (f->virt > 0) ok &= cJSON_AddNumberToObject(set, "num_virtual_tokens", (double)f->virt) != NULL;
    if (f->targets) {
        /* "down_proj,up_proj": the modules LoRA adapts. */
        cJSON *list = cJSON_AddArrayToObject(set, "target_modules");
        ok &= list != NULL;
        for (const char *s = f->targets, *e; ok && *s; s = *e ? e + 1 : e) {
            e = strchr(s, ',');
            if (!e) e = s + strlen(s);
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(e - s), s);
            cJSON *item = cJSON_CreateString(name);
            if (!item || !cJSON_AddItemToArray(list, item)) {
                cJSON_Delete(item);
                ok = 0;
            }
        }
    }
    if (f->epochs > 0) ok &= cJSON_AddNumberToObject(hp, "n_epochs", (double)f->epochs) != NULL;
    if (f->micro > 0) {
        /* --batch-size is examples per forward pass, --grad-accum passes per optimizer step. */
        ok &= cJSON_AddNumberToObject(hp, "micro_batch_size", (double)f->micro) != NULL;
        ok &= cJSON_AddNumberToObject(hp, "batch_size", (double)(f->micro * f->accum)) != NULL;
    }
    if (f->lr > 0) ok &= cJSON_AddNumberToObject(hp, "learning_rate", f->lr) != NULL;
    if (f->max_len > 0) ok &= cJSON_AddNumberToObject(hp, "max_length", (double)f->max_len) != NULL;
    if (f->max_steps >= 0) ok &= cJSON_AddNumberToObject(hp, "max_steps", (double)f->max_steps) != NULL;
    if (f->eval_every >= 0) ok &= cJSON_AddNumberToObject(hp, "eval_every", (double)f->eval_every) != NULL;
    if (f->recompute) ok &= cJSON_AddTrueToObject(hp, "recompute") != NULL;
    if (!ok) {
        cJSON_Delete(job);
        return NULL;
    }
    return job;
}

int cmd_train(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *valid = NULL, *method = "hlpt", *gate = NULL, *rank = NULL,
               *alpha = NULL, *virt = NULL, *epochs = NULL, *batch = NULL, *accum = NULL, *lr = NULL,
               *max_len = NULL, *seed = NULL, *resume = NULL, *out = NULL, *max_steps = NULL,
               *eval_every = NULL, *threads = NULL, *ckpt = NULL, *targets = NULL, *dtype = NULL;
    int recompute = 0;
    cli_opt opts[] = {{"--model", &model, NULL},     {"--data", &data, NULL},
                      {"--valid", &valid, NULL},     {"--method", &method, NULL},
                      {"--gate", &gate, NULL},       {"--rank", &rank, NULL},
                      {"--alpha", &alpha, NULL},     {"--virtual-tokens", &virt, NULL},
                      {"--epochs", &epochs, NULL},   {"--batch-size", &batch, NULL},
                      {"--grad-accum", &accum, NULL}, {"--lr", &lr, NULL},
                      {"--max-length", &max_len, NULL}, {"--seed", &seed, NULL},
                      {"--resume", &resume, NULL},   {"--out", &out, NULL},
                      {"--max-steps", &max_steps, NULL}, {"--eval-every", &eval_every, NULL},
                      {"--threads", &threads, NULL}, {"--checkpoint", &ckpt, NULL},
                      {"--targets", &targets, NULL},  {"--recompute", NULL, &recompute},
                      {"--dtype", &dtype, NULL}};
    char **rest;
    int n_rest, st = cli_parse(argc, argv, opts, (int)(sizeof opts / sizeof *opts), train_usage, &rest, &n_rest);
    if (st) return st == CLI_HELP ? CLI_OK : st;
    if ((st = cli_require("train", opts, (int)(sizeof opts / sizeof *opts), "--model --data --out", n_rest, rest, 0,
                          train_usage)))
        return st;
    if (hlpt_method_from_name(method) < 0)
        return cli_fail("--method: expected hlpt, h2lpt, lora or prefix, got '%s'", method) + 1;
    if (gate && hlpt_gate_from_name(gate) < 0)
        return cli_fail("--gate: expected causal, sequence or none, got '%s'", gate) + 1;
    hlpt_train_params d;
    hlpt_train_params_defaults(&d);
    train_flags f = {.method = method, .gate = gate, .targets = targets, .rank = -1, .virt = -1, .epochs = -1,
                     .micro = -1, .accum = d.batch_size / d.micro_batch, .max_len = -1, .max_steps = -1,
                     .eval_every = -1, .alpha = -1, .lr = -1, .recompute = recompute};
    uint64_t seed_value = 0;
    long th = 0;
    hlpt_base_dtype dt = HLPT_BASE_AUTO;
    if ((st = cli_int("--rank", rank, 1, 4096, &f.rank)) || (st = cli_float("--alpha", alpha, 1e-6, 1e6, &f.alpha)) ||
        (st = cli_int("--virtual-tokens", virt, 1, 1024, &f.virt)) || (st = cli_int("--epochs", epochs, 1, 1000, &f.epochs)) ||
        (st = cli_int("--batch-size", batch, 1, 4096, &f.micro)) || (st = cli_int("--grad-accum", accum, 1, 4096, &f.accum)) ||
        (st = cli_float("--lr", lr, 1e-9, 10, &f.lr)) || (st = cli_int("--max-length", max_len, 2, 1 << 16, &f.max_len)) ||
        (st = cli_u64("--seed", seed, &seed_value)) || (st = cli_int("--max-steps", max_steps, 0, 100000000, &f.max_steps)) ||
        (st = cli_int("--eval-every", eval_every, 0, 10000000, &f.eval_every)) ||
        (st = cli_int("--threads", threads, 0, 1024, &th)) || (st = cli_dtype("--dtype", dtype, &dt)))
        return st;
    if (accum && !batch) f.micro = d.micro_batch;

    /* The job is checked against the base's config before its weights are read. */
    char why[512] = "";
    hlpt_config c;
    if (hlpt_config_load(model, &c, why, sizeof why)) return cli_fail("%s: %s", model, why);
    cJSON *job = flags_job(&f);
    if (!job) return cli_fail("out of memory");
    hlpt_job_spec spec;
    int err = hlpt_job_spec_parse(&spec, job, c.n_layers, NULL, 0, why, sizeof why);
    cJSON_Delete(job);
    if (err) return cli_fail("%s", why) + 1;
    /* A u64 seed is more than a JSON number carries exactly: it goes in as it is. */
    if (seed) spec.params.seed = seed_value;
    spec.training_file = data;
    spec.validation_file = valid;
    spec.resume_checkpoint = resume;
    snprintf(spec.adapter.base_name, sizeof spec.adapter.base_name, "%s", model);

    if (th > 0) hlpt_engine_set_threads((int)th);
    hlpt_model *m = NULL;
    if ((err = hlpt_model_open(model, dt, &m, why, sizeof why))) return cli_fail("%s: %s", model, why);
    char ckpt_default[4200];
    snprintf(ckpt_default, sizeof ckpt_default, "%s/checkpoint.safetensors", out);
    train_view view = {.tty = isatty(2) && isatty(1), .method = hlpt_method_name(spec.adapter.method), .out = out,
                       .ckpt_path = ckpt ? ckpt : ckpt_default};
    hlpt_finetune_hooks hooks = {.ctx = &view, .on_started = on_started, .on_progress = on_progress,
                                 .on_checkpoint = on_checkpoint, .on_adapter = on_adapter};
    hlpt_finetune_result res;
    err = hlpt_finetune_run(m, &spec, &hooks, &res, why, sizeof why);
    if (err && view.ckpt_why[0]) st = cli_fail("writing the checkpoint: %s", view.ckpt_why);
    else if (err) st = cli_fail("%s", why);
    else fprintf(stderr, "hlpt: adapter written to %s (step %d)\n", out, res.best_step);
    hlpt_model_close(m);
    return st;
}
