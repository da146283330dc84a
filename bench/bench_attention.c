/*
 * bench_attention - attention_forward / attention_backward time for the shapes of a 7B-class GQA
 * model (H=32, KV=8, D=128, 20 prefix slots): decoding (T=1 over a long cache), short and long
 * prefill, and a training sequence (T=S=512, forward and backward).
 *
 * The forward switches from its by-query order to its by-head order at ATT_BY_HEAD_MIN_T queries
 * (core/attention.c); to compare the two on the same shapes build with -DATT_BY_HEAD_MIN_T=1 (all
 * by head) or =1000000 (all by query) into separate build trees, e.g.
 *   make BUILD=build-q CFLAGS="-O2 -march=native -DATT_BY_HEAD_MIN_T=1000000" build-q/bench/bench_attention
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "hlpt/blas.h"
#include "layers.h"

enum { H = 32, KV = 8, D = 128, P = 20 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *rnd(size_t n) {
    float *x = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return x;
}

/* Best time in ms of forward (and backward when bwd) over ~0.3 s of repeats. */
static void run(int T, int S, int bwd) {
    float *q = rnd((size_t)T * H * D), *k = rnd((size_t)S * KV * D), *v = rnd((size_t)S * KV * D);
    float *pk = rnd((size_t)P * KV * D), *pv = rnd((size_t)P * KV * D), *g = rnd(T);
    float *out = rnd((size_t)T * H * D), *att = rnd((size_t)H * T * (P + S)), *dout = rnd((size_t)T * H * D);
    float *dq = rnd((size_t)T * H * D), *dk = rnd((size_t)S * KV * D), *dv = rnd((size_t)S * KV * D);
    float *dpk = rnd((size_t)P * KV * D), *dpv = rnd((size_t)P * KV * D), *dg = rnd(T);
    double fbest = 1e30, bbest = 1e30, end = now() + 0.3;
    for (int it = 0; it < 2 || now() < end; it++) {
        double t0 = now();
        attention_forward(out, att, q, k, v, pk, pv, g, T, S, P, H, KV, D);
        double t1 = now();
        if (bwd) attention_backward(dq, dk, dv, dpk, dpv, dg, dout, att, q, k, v, pk, pv, g, T, S, P, H, KV, D);
        double t2 = now();
        fbest = t1 - t0 < fbest ? t1 - t0 : fbest;
        bbest = t2 - t1 < bbest ? t2 - t1 : bbest;
    }
    /* Useful flops: scores and weighted sums over the visible keys and the prefix. */
    double pairs = (double)T * P + (double)T * (S - T) + (double)T * (T + 1) / 2;
    double fl = 4.0 * H * D * pairs;
    printf("T=%-4d S=%-5d forward %8.3f ms (%5.1f GF/s)", T, S, fbest * 1e3, fl / fbest * 1e-9);
    if (bwd) printf("  backward %8.3f ms (%5.1f GF/s)", bbest * 1e3, 2.0 * fl / bbest * 1e-9);
    printf("\n");
    free(q), free(k), free(v), free(pk), free(pv), free(g), free(out), free(att), free(dout);
    free(dq), free(dk), free(dv), free(dpk), free(dpv), free(dg);
}

int main(int argc, char **argv) {
    (void)argc;
    hlpt_blas_init(argv);
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    hlpt_blas_set_threads(threads);
    printf("OpenBLAS core %s, %d BLAS thread(s), H=%d KV=%d D=%d P=%d\n", hlpt_blas_corename(), threads,
           H, KV, D, P);
    run(1, 512, 0);
    run(1, 2048, 0);
    run(1, 4096, 0);
    run(8, 8, 1);
    run(16, 16, 1);
    run(32, 32, 1);
    run(64, 64, 1);
    run(128, 128, 1);
    run(256, 256, 1);
    run(512, 512, 1);
    return 0;
}
