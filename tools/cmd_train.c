/*
 * cmd_train.c - `hlpt train`: offline training of an adapter on a JSONL file, with a progress bar on
 * a terminal and one JSON line per logged step otherwise.
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
#include "hlpt/engine.h"
#include "hlpt/err.h"
#include "hlpt/fileio.h"
#include "hlpt/model.h"
#include "hlpt/train.h"

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
    const char *ckpt_path;
} train_view;

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
    return hlpt_file_write(v->ckpt_path, blob, n, 1, NULL, 0);
}

static int load_set(const hlpt_model *m, const char *path, const hlpt_train_params *p, hlpt_examples *e) {
    size_t n;
    char why[512] = "", *buf;
    if (hlpt_file_read(path, (size_t)1 << 32, &buf, &n, why, sizeof why)) return cli_fail("%s", why);
    int err = hlpt_examples_load(hlpt_model_tokenizer(m), hlpt_model_config(m), buf, n, p, e, why, sizeof why);
    free(buf);
    if (err) return cli_fail("%s: %s", path, why);
    return CLI_OK;
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
    int meth = hlpt_method_from_name(method);
    if (meth < 0) return cli_fail("--method: expected hlpt, h2lpt, lora or prefix, got '%s'", method) + 1;
    int g = gate ? hlpt_gate_from_name(gate) : -1;
    if (gate && g < 0) return cli_fail("--gate: expected causal, sequence or none, got '%s'", gate) + 1;
    hlpt_train_params p;
    hlpt_train_params_defaults(&p);
    long r = -1, pv = -1, ep = p.n_epochs, mb = p.micro_batch, ga = p.batch_size / p.micro_batch,
         ml = p.max_length, ms = 0, ee = 0, th = 0;
    double a = -1, rate = p.learning_rate;
    hlpt_base_dtype dt = HLPT_BASE_AUTO;
    if ((st = cli_int("--rank", rank, 1, 4096, &r)) || (st = cli_float("--alpha", alpha, 1e-6, 1e6, &a)) ||
        (st = cli_int("--virtual-tokens", virt, 1, 1024, &pv)) || (st = cli_int("--epochs", epochs, 1, 1000, &ep)) ||
        (st = cli_int("--batch-size", batch, 1, 4096, &mb)) || (st = cli_int("--grad-accum", accum, 1, 4096, &ga)) ||
        (st = cli_float("--lr", lr, 1e-9, 10, &rate)) || (st = cli_int("--max-length", max_len, 2, 1 << 16, &ml)) ||
        (st = cli_u64("--seed", seed, &p.seed)) || (st = cli_int("--max-steps", max_steps, 0, 100000000, &ms)) ||
        (st = cli_int("--eval-every", eval_every, 0, 10000000, &ee)) || (st = cli_int("--threads", threads, 0, 1024, &th)) ||
        (st = cli_dtype("--dtype", dtype, &dt)))
        return st;
    p.n_epochs = (int)ep;
    p.micro_batch = (int)mb;
    p.batch_size = (int)(mb * ga);
    p.learning_rate = (float)rate;
    p.max_length = (int)ml;
    p.max_steps = (int)ms;
    p.eval_every = (int)ee;
    p.recompute = recompute;
    if (th > 0) hlpt_engine_set_threads((int)th);

    char why[512] = "";
    hlpt_model *m = NULL;
    hlpt_adapter *ad = NULL;
    hlpt_trainer *t = NULL;
    hlpt_examples train = {0}, val = {0};
    int err = hlpt_model_open(model, dt, &m, why, sizeof why);
    if (err) return cli_fail("%s: %s", model, why);
    const hlpt_config *c = hlpt_model_config(m);
    hlpt_adapter_config cfg;
    hlpt_adapter_config_defaults(&cfg, (hlpt_method)meth, c->n_layers);
    if (g >= 0) cfg.gate = (hlpt_gate_mode)g;
    if (r > 0) cfg.r = (int)r;
    if (a > 0) cfg.alpha = (float)a;
    if (pv > 0) cfg.n_virtual = (int)pv;
    if (targets) {
        /* "down_proj,up_proj": the modules LoRA adapts. */
        cfg.targets = 0;
        char buf[256];
        snprintf(buf, sizeof buf, "%s", targets);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            int mod = hlpt_module_from_name(tok);
            if (mod < 0) {
                hlpt_model_close(m);
                return cli_fail("--targets: unknown module '%s' (q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)", tok) + 1;
            }
            cfg.targets |= 1u << mod;
        }
    }
    snprintf(cfg.base_name, sizeof cfg.base_name, "%s", model);
    snprintf(cfg.base_hash, sizeof cfg.base_hash, "%s", hlpt_model_hash(m));
    char ckpt_default[4200];
    snprintf(ckpt_default, sizeof ckpt_default, "%s/checkpoint.safetensors", out);
    train_view view = {.tty = isatty(2) && isatty(1), .ckpt_path = ckpt ? ckpt : ckpt_default};
    hlpt_train_hooks hooks = {.ctx = &view, .on_progress = on_progress, .on_checkpoint = on_checkpoint};

    if ((st = load_set(m, data, &p, &train)) || (valid && (st = load_set(m, valid, &p, &val)))) goto out;
    if (mkdir(out, 0755) != 0 && access(out, W_OK) != 0) {
        st = cli_fail("%s: cannot create the output directory", out);
        goto out;
    }
    if ((err = hlpt_adapter_new(c, &cfg, &ad, why, sizeof why)) ||
        (hlpt_adapter_init(ad, p.seed), 0) ||
        (err = hlpt_trainer_new(m, ad, &train, valid ? &val : NULL, &p, &t, why, sizeof why))) {
        st = cli_fail("%s", why);
        goto out;
    }
    if (resume) {
        size_t n;
        char *blob;
        if (hlpt_file_read(resume, (size_t)1 << 34, &blob, &n, why, sizeof why)) {
            st = cli_fail("%s", why);
            goto out;
        }
        err = hlpt_trainer_restore(t, blob, n, why, sizeof why);
        free(blob);
        if (err) {
            st = cli_fail("%s: %s", resume, why);
            goto out;
        }
    }
    fprintf(stderr, "hlpt: %s adapter, %zu trainable parameters, %d examples (%d truncated), %d steps\n",
            method, ad->n_params, train.n, train.n_truncated, hlpt_trainer_total_steps(t));
    if ((err = hlpt_trainer_run(t, &hooks, why, sizeof why))) {
        st = cli_fail("training failed: %s", why);
        goto out;
    }
    int best_step;
    double best_loss;
    const float *best = hlpt_trainer_best_params(t, &best_step, &best_loss);
    memcpy(ad->params, best, ad->n_params * sizeof(float));
    char *extra = hlpt_train_params_json(&p);
    err = hlpt_adapter_save(ad, out, extra, why, sizeof why);
    free(extra);
    if (err) st = cli_fail("%s: %s", out, why);
    else fprintf(stderr, "hlpt: adapter written to %s (step %d)\n", out, best_step);
out:
    hlpt_trainer_free(t);
    hlpt_examples_free(&train);
    hlpt_examples_free(&val);
    hlpt_adapter_free(ad);
    hlpt_model_close(m);
    return st;
}
