/*
 * bench_train - training speed of the four methods on one model (forward + backward + AdamW):
 * tokens/s, trainable parameters, activation bytes per token, and the achieved fraction of the
 * product rate of the dtype in use (sgemm for f32, the engine's BF16 product for bf16, measured in
 * the same run), counting 4 x base parameters FLOPs per token (2 forward, 2 for activation
 * gradients; the base gets no weight gradient).
 *
 *   bench_train --model DIR [--dtype auto|bf16|f32] [--tokens T] [--batch B] [--steps N] [--threads N]
 *
 * Use bench_model --make-model DIR for the realistic shape (a 4-layer slice of a 1B model).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "hlpt/adapter.h"
#include "hlpt/blas.h"
#include "hlpt/engine.h"
#include "hlpt/model.h"
#include "hlpt/train.h"

int main(int argc, char **argv) {
    hlpt_blas_init(argv);
    const char *dir = NULL;
    int T = 256, B = 4, steps = 3, threads = 2;
    hlpt_base_dtype dtype = HLPT_BASE_AUTO;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc && !hlpt_base_dtype_parse(argv[i + 1], &dtype)) i++;
        else dir = NULL, i = argc;
    }
    if (!dir || T < 2 || B < 1 || steps < 1 || threads < 1) {
        fprintf(stderr, "usage: bench_train --model DIR [--dtype auto|bf16|f32] [--tokens T] [--batch B] [--steps N] "
                        "[--threads N]\n");
        return 2;
    }
    char why[512] = "";
    hlpt_model *m;
    if (hlpt_model_open(dir, dtype, &m, why, sizeof why)) {
        fprintf(stderr, "bench_train: %s\n", why);
        return 1;
    }
    hlpt_engine_set_threads(threads);
    const hlpt_config *c = hlpt_model_config(m);
    int bf16 = hlpt_model_dtype(m) == HLPT_BASE_BF16;
    double base_params = (double)hlpt_model_matrix_bytes(m) / (bf16 ? 2 : 4);
    double peak = bf16 ? bf16_gflops(B * T, c->ffn, c->hidden) : gemm_gflops(B * T, c->ffn, c->hidden);
    printf("model %s: %d layers, hidden %d; %.1f M matmul parameters; dtype %s, %d threads\n", dir, c->n_layers,
           c->hidden, base_params / 1e6, hlpt_base_dtype_name(hlpt_model_dtype(m)), threads);
    printf("engine: %s; ceiling: %s %dx%dx%d %.1f GFLOP/s\n", hlpt_engine_describe(hlpt_model_dtype(m), why, sizeof why),
           bf16 ? "bf16 product" : "sgemm", B * T, c->ffn, c->hidden, peak);
    printf("batch %d sequences x %d tokens, %d optimizer steps each\n\n", B, T, steps);
    printf("%-8s %12s %14s %12s %12s %10s\n", "method", "trainable", "act bytes/tok", "tokens/s", "GFLOP/s",
           bf16 ? "of bf16" : "of sgemm");
    hlpt_examples ex = {0};
    int *prompt = malloc(sizeof(int) * (size_t)T);
    for (int i = 0; i < B * steps; i++) {
        for (int k = 0; k < T; k++) prompt[k] = 3 + (i * 131 + k * 7) % (c->vocab - 3);
        hlpt_examples_add(&ex, prompt, T / 2, prompt + T / 2, T - T / 2 - 2, 1, 2, T, 0);
    }
    for (int meth = 0; meth < 4; meth++) {
        hlpt_adapter_config cfg;
        hlpt_adapter_config_defaults(&cfg, (hlpt_method)meth, c->n_layers);
        cfg.dropout = 0.05f;
        hlpt_adapter *a;
        if (hlpt_adapter_new(c, &cfg, &a, why, sizeof why)) {
            fprintf(stderr, "bench_train: %s\n", why);
            return 1;
        }
        hlpt_adapter_init(a, 1);
        hlpt_train_params p;
        hlpt_train_params_defaults(&p);
        p.batch_size = p.micro_batch = B;
        p.n_epochs = 1;
        p.max_length = T;
        hlpt_trainer *t;
        if (hlpt_trainer_new(m, a, &ex, NULL, &p, &t, why, sizeof why)) {
            fprintf(stderr, "bench_train: %s\n", why);
            return 1;
        }
        double t0 = now();
        if (hlpt_trainer_run(t, NULL, why, sizeof why)) {
            fprintf(stderr, "bench_train: %s\n", why);
            return 1;
        }
        double dt = now() - t0, tps = (double)B * T * steps / dt, gflops = tps * 4 * base_params / 1e9;
        printf("%-8s %12zu %14zu %12.0f %12.1f %9.0f%%\n", hlpt_method_name((hlpt_method)meth), a->n_params,
               hlpt_model_train_bytes_per_token(m, a, T, 0), tps, gflops, 100 * gflops / peak);
        hlpt_trainer_free(t);
        hlpt_adapter_free(a);
    }
    free(prompt);
    hlpt_examples_free(&ex);
    hlpt_model_close(m);
    return 0;
}
