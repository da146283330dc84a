/*
 * bench_util.h - what the benchmarks measure the machine with: a monotonic clock, the sgemm rate of
 * a linear layer's shape through hlpt_gemm, and the memory read bandwidth (a streaming sum over
 * 1 GiB), the ceiling of decode speed. Header-only: each benchmark is a program of its own.
 */
#ifndef HLPT_BENCH_UTIL_H
#define HLPT_BENCH_UTIL_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "hlpt/blas.h"
#include "hlpt/engine.h"

static inline double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* GFLOP/s of C[M,N] = A[M,K] B[N,K]^T (the layout of a linear layer), best of runs over ~0.5 s. */
static inline double gemm_gflops(int M, int N, int K) {
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

/* GFLOP/s of the same product with W stored as BF16 in the engine's packed layout, through
 * hlpt_linear (the BF16 ceiling: oneDNN above HLPT_ENGINE_SMALL_M rows, the engine's kernel below);
 * 0 where BF16 cannot run. Threads: as set with hlpt_engine_set_threads. */
static inline double bf16_gflops(int M, int N, int K) {
    char why[128];
    if (hlpt_engine_check(HLPT_BASE_BF16, why, sizeof why)) return 0;
    hlpt_weight w = {.O = N, .I = K, .dtype = HLPT_BASE_BF16, .packed = 1};
    size_t bytes = hlpt_weight_bytes(HLPT_BASE_BF16, 1, N, K);
    float *A = malloc(sizeof(float) * (size_t)M * K), *B = malloc(sizeof(float) * (size_t)N * K);
    float *C = malloc(sizeof(float) * (size_t)M * N);
    void *packed = aligned_alloc(64, bytes);
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++) B[i] = (float)(i % 5) * 0.1f;
    hlpt_weight_store(&w, packed, B);
    w.data = packed;
    hlpt_engine *e;
    hlpt_engine_new(&e);
    hlpt_engine_reserve(e, M, K, 0);
    hlpt_linear(e, C, A, &w, M, 0); /* warm-up: creates the primitive */
    double best = 1e30, t_end = now() + 0.5;
    int runs = 0;
    while (runs < 3 || now() < t_end) {
        double t0 = now();
        hlpt_linear(e, C, A, &w, M, 0);
        double dt = now() - t0;
        best = dt < best ? dt : best;
        runs++;
    }
    hlpt_engine_free(e);
    free(A), free(B), free(C), free(packed);
    return 2.0 * M * N * K / best * 1e-9;
}

typedef struct {
    const float *p; /* this thread's slice */
    size_t n;       /* floats in the slice */
    float sum;      /* result, kept so the loop is not optimised away */
} stream_arg;

static inline void *stream_sum(void *arg) {
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
static inline double read_bandwidth(const float *buf, size_t n, int threads) {
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

/* The read bandwidth of `threads` threads over a fresh 1 GiB buffer; 0 without the memory. */
static inline double machine_bandwidth(int threads) {
    size_t n = (size_t)1 << 28;
    float *buf = malloc(n * sizeof(float));
    if (!buf) return 0;
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 7);
    double gbs = read_bandwidth(buf, n, threads);
    free(buf);
    return gbs;
}

#endif
