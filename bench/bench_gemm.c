/*
 * bench_gemm - sgemm GFLOP/s through hlpt_gemm for the shapes a LLaMA layer runs (prefill,
 * training, decode) at 1 and 2 BLAS threads, and the machine's memory read bandwidth (a streaming
 * sum over 1 GiB, 1 and 2 threads), the ceiling of decode speed.
 *
 *   build/bench/bench_gemm            (OPENBLAS_CORETYPE=Prescott to see the fallback kernels)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hlpt/err.h"
#include "hlpt/tensor.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* GFLOP/s of C[M,N] = A[M,K] B[N,K]^T (the layout of a linear layer), best of runs over ~0.5 s. */
static double gemm_gflops(int M, int N, int K) {
    float *A = malloc(sizeof(float) * (size_t)M * K), *B = malloc(sizeof(float) * (size_t)N * K);
    float *C = malloc(sizeof(float) * (size_t)M * N);
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++) B[i] = (float)(i % 5) * 0.1f;
    hlpt_gemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N); /* warm-up */
    double best = 1e30, t_end = now() + 0.5;
    int runs = 0;
    while (runs < 3 || now() < t_end) {
        double t0 = now();
        hlpt_gemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
        double dt = now() - t0;
        best = dt < best ? dt : best;
        runs++;
    }
    free(A), free(B), free(C);
    return 2.0 * M * N * K / best * 1e-9;
}

typedef struct {
    const float *p; /* this thread's slice */
    size_t n;       /* floats in the slice */
    float sum;      /* result, kept so the loop is not optimised away */
} stream_arg;

static void *stream_sum(void *arg) {
    stream_arg *a = arg;
    /* Four independent 16-float sums (four vector registers) so add latency does not bound it. */
    float s0[16] = {0}, s1[16] = {0}, s2[16] = {0}, s3[16] = {0};
    for (size_t i = 0; i + 64 <= a->n; i += 64)
        for (int j = 0; j < 16; j++) {
            s0[j] += a->p[i + j];
            s1[j] += a->p[i + 16 + j];
            s2[j] += a->p[i + 32 + j];
            s3[j] += a->p[i + 48 + j];
        }
    for (int j = 0; j < 16; j++) a->sum += s0[j] + s1[j] + s2[j] + s3[j];
    return NULL;
}

/* GB/s (1e9 bytes) of reading buf[n] with `threads` threads, best of 5 passes. */
static double read_bandwidth(const float *buf, size_t n, int threads) {
    double best = 1e30;
    for (int pass = 0; pass < 5; pass++) {
        pthread_t th[2];
        stream_arg args[2];
        double t0 = now();
        for (int i = 0; i < threads; i++) {
            args[i] = (stream_arg){buf + n / threads * i, n / threads, 0.0f};
            pthread_create(&th[i], NULL, stream_sum, &args[i]);
        }
        for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
        double dt = now() - t0;
        best = dt < best ? dt : best;
        if (args[0].sum == 12345.0f) printf(" "); /* keeps the sums live */
    }
    return n * sizeof(float) / best * 1e-9;
}

int main(int argc, char **argv) {
    (void)argc;
    int st = hlpt_blas_init(argv);
    printf("OpenBLAS core: %s%s\n", hlpt_blas_corename(), st ? " (could not switch kernels)" : "");
    static const int shapes[][3] = {{512, 2048, 2048}, {2048, 5632, 2048}, {1, 2048, 2048}, {1, 5632, 2048}};
    printf("%-20s %12s %12s\n", "sgemm MxNxK", "1 thread", "2 threads");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        char name[40];
        snprintf(name, sizeof name, "%dx%dx%d", shapes[s][0], shapes[s][1], shapes[s][2]);
        double g[2];
        for (int t = 1; t <= 2; t++) {
            hlpt_blas_set_threads(t);
            g[t - 1] = gemm_gflops(shapes[s][0], shapes[s][1], shapes[s][2]);
        }
        printf("%-20s %8.1f GF/s %8.1f GF/s\n", name, g[0], g[1]);
    }
    size_t n = ((size_t)1 << 30) / sizeof(float);
    float *buf = malloc(n * sizeof(float));
    if (!buf) {
        fprintf(stderr, "bench_gemm: no memory for the 1 GiB bandwidth buffer\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 7); /* real pages, faulted in before timing */
    printf("memory read bandwidth (1 GiB streaming sum): %.1f GB/s 1 thread, %.1f GB/s 2 threads\n",
           read_bandwidth(buf, n, 1), read_bandwidth(buf, n, 2));
    free(buf);
    return 0;
}
