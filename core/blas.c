/*
 * blas.c - the one door to BLAS (the only includer of <cblas.h>) and OpenBLAS start-up.
 *
 * hlpt_gemm() forwards to cblas_sgemm in row-major order; hlpt_gemm_ref() is the same contract in
 * plain loops with double accumulation, the reference the tests hold the fast kernels to.
 *
 * Workaround, hlpt_blas_init(): Debian's OpenBLAS 0.3.21 picks its kernel set from the CPU model in
 * a library constructor, before main() runs. It does not know newer CPUs (AMD Zen 4/5 EPYC among
 * them) and falls back to its generic "Prescott" SSE3 kernels: about 35 GFLOP/s sgemm instead of
 * about 300 with the SkylakeX (AVX-512) kernels. The only way to change the choice is the
 * OPENBLAS_CORETYPE variable, read by that constructor, so when the choice is a fallback we set the
 * variable from the features the CPU reports and execute the program again. An environment marker
 * stops a second re-exec if OpenBLAS still falls back.
 */
#include "hlpt/blas.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "hlpt/err.h"

/* Set in the environment of the re-executed process; its presence means "do not try again". */
#define REEXEC_MARKER "HLPT_BLAS_REEXEC"

/* OpenBLAS's names for "I did not recognise this CPU". */
static int core_is_fallback(const char *name) {
    static const char *const fallbacks[] = {"prescott", "generic", "unknown"};
    if (!name || !*name) return 1;
    for (size_t i = 0; i < sizeof fallbacks / sizeof fallbacks[0]; i++)
        if (strncasecmp(name, fallbacks[i], strlen(fallbacks[i])) == 0) return 1;
    return 0;
}

/* The best kernel set of Debian's OpenBLAS this CPU can run, or NULL when none is better than the
 * fallback. */
static const char *core_for_cpu(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

int hlpt_blas_init(char **argv) {
    if (getenv(REEXEC_MARKER)) {
        /* We are the re-executed process. Drop the marker so that programs we start decide for
         * themselves (they inherit OPENBLAS_CORETYPE), and never try a second time. */
        unsetenv(REEXEC_MARKER);
        return core_is_fallback(openblas_get_corename()) ? HLPT_ERR_UNSUPPORTED : HLPT_OK;
    }
    if (getenv("OPENBLAS_CORETYPE")) return HLPT_OK; /* the user's choice */
    if (!core_is_fallback(openblas_get_corename())) return HLPT_OK;
    const char *core = core_for_cpu();
    if (!core) return HLPT_OK; /* the fallback is the right choice on this CPU */
    if (!argv || !argv[0]) return HLPT_ERR_INVAL;
    if (setenv("OPENBLAS_CORETYPE", core, 1) != 0 || setenv(REEXEC_MARKER, "1", 1) != 0)
        return HLPT_ERR_NOMEM;
    execv("/proc/self/exe", argv);
    /* Only reached when exec failed: undo, and run on with the fallback kernels. */
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv(REEXEC_MARKER);
    return HLPT_ERR_IO;
}

const char *hlpt_blas_corename(void) {
    return openblas_get_corename();
}

void hlpt_blas_set_threads(int n) {
    openblas_set_num_threads(n < 1 ? 1 : n);
}

int hlpt_blas_threads(void) {
    return openblas_get_num_threads();
}

void hlpt_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    /* OpenBLAS 0.3.21 packs both operands even for a single row or column, which makes a decode
     * step's [1,K] x [K,N] several times slower than reading the weights at memory speed; a
     * matrix-vector product is what that shape is, so send it to sgemv. */
    if (M == 1 && K > 0) {
        /* c[N] = alpha op(B)^T a + beta c;  a is row 0 of op(A): stride 1, or lda when transposed. */
        int inca = trans_a ? lda : 1;
        if (trans_b)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, alpha, B, ldb, A, inca, beta, C, 1);
        else
            cblas_sgemv(CblasRowMajor, CblasTrans, K, N, alpha, B, ldb, A, inca, beta, C, 1);
        return;
    }
    if (N == 1 && K > 0) {
        /* c[M] (stride ldc) = alpha op(A) b + beta c;  b is column 0 of op(B). */
        int incb = trans_b ? 1 : ldb;
        if (trans_a)
            cblas_sgemv(CblasRowMajor, CblasTrans, K, M, alpha, A, lda, B, incb, beta, C, ldc);
        else
            cblas_sgemv(CblasRowMajor, CblasNoTrans, M, K, alpha, A, lda, B, incb, beta, C, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void hlpt_gemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                double a = trans_a ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k];
                double b = trans_b ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n];
                acc += a * b;
            }
            float *c = &C[(size_t)m * ldc + n];
            /* BLAS semantics: beta == 0 overwrites C without reading it (C may hold NaN). */
            *c = (float)(alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}
