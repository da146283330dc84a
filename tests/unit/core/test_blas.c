/*
 * The BLAS door: after hlpt_blas_init() OpenBLAS runs a real kernel set on any CPU with AVX2, and
 * hlpt_gemm (those fast kernels) matches the naive double-accumulating hlpt_gemm_ref for every
 * transpose combination, odd sizes, padded strides and alpha/beta.
 */
#include "hlpt/blas.h"

#include <math.h>
#include <stdint.h>
#include <strings.h>

#include "../check_main.h"

static int is_fallback(const char *name) {
    return strncasecmp(name, "prescott", 8) == 0 || strncasecmp(name, "generic", 7) == 0 ||
           strncasecmp(name, "unknown", 7) == 0;
}

START_TEST(test_corename) {
    const char *name = hlpt_blas_corename(), *env = getenv("OPENBLAS_CORETYPE");
    printf("OpenBLAS core: %s (OPENBLAS_CORETYPE=%s)\n", name, env ? env : "unset");
    ck_assert_ptr_nonnull(name);
    __builtin_cpu_init();
    /* Only a user who asks for the fallback by name gets it on a CPU with AVX2. */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !(env && is_fallback(env)))
        ck_assert_msg(!is_fallback(name), "OpenBLAS still runs its fallback kernels (%s) on an AVX2 CPU", name);
}
END_TEST

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (2.0 / 16777216.0) - 1.0);
}

/* One case: stored A is [ra, ca] with row stride lda = ca + pad (same for B, C). */
static double gemm_case(int ta, int tb, int M, int N, int K, float alpha, float beta, int pad) {
    int ra = ta ? K : M, ca = ta ? M : K, rb = tb ? N : K, cb = tb ? K : N;
    int lda = ca + pad, ldb = cb + pad + 1, ldc = N + pad + 2;
    float *A = malloc(sizeof(float) * (size_t)ra * lda), *B = malloc(sizeof(float) * (size_t)rb * ldb);
    float *C = malloc(sizeof(float) * (size_t)M * ldc), *R = malloc(sizeof(float) * (size_t)M * ldc);
    for (size_t i = 0; i < (size_t)ra * lda; i++) A[i] = frand();
    for (size_t i = 0; i < (size_t)rb * ldb; i++) B[i] = frand();
    for (size_t i = 0; i < (size_t)M * ldc; i++) C[i] = R[i] = frand();
    hlpt_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    hlpt_gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
    /* Error relative to the size of the terms: |alpha| sqrt(K) + |beta| bounds each entry's scale. */
    double tol_scale = fabs(alpha) * sqrt((double)K) + fabs(beta), err = 0.0;
    for (int m = 0; m < M; m++)
        for (int j = 0; j < ldc; j++) {
            double e = fabs((double)C[(size_t)m * ldc + j] - R[(size_t)m * ldc + j]);
            if (j >= N) ck_assert_msg(e == 0.0, "gemm wrote outside C's N columns");
            err = e > err ? e : err;
        }
    free(A), free(B), free(C), free(R);
    return err / tol_scale;
}

START_TEST(test_gemm_vs_ref) {
    static const int sizes[][3] = {{1, 1, 1}, {7, 1, 63}, {1, 257, 7}, {63, 7, 257}, {257, 63, 1},
                                   {64, 64, 64}, {129, 200, 300}, {1, 2048, 128}};
    static const float ab[][2] = {{1.0f, 0.0f}, {0.5f, 1.0f}, {-1.25f, 0.75f}};
    const double tol = 1e-5;
    double worst = 0.0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (size_t c = 0; c < sizeof ab / sizeof ab[0]; c++) {
                    double e = gemm_case(ta, tb, sizes[s][0], sizes[s][1], sizes[s][2], ab[c][0],
                                         ab[c][1], (int)(s % 3));
                    ck_assert_msg(e < tol, "gemm %dx%dx%d ta=%d tb=%d alpha=%g beta=%g: rel err %.3g",
                                  sizes[s][0], sizes[s][1], sizes[s][2], ta, tb, ab[c][0], ab[c][1], e);
                    worst = e > worst ? e : worst;
                }
    printf("gemm vs ref: worst error / (|alpha| sqrt(K) + |beta|) = %.3g (tolerance %.0e)\n", worst, tol);
}
END_TEST

/* beta = 0 means C is not read: a NaN left in an uninitialised buffer must not leak through, on
 * the sgemm path or the single-row/column (sgemv) paths. */
START_TEST(test_beta_zero_ignores_c) {
    static const int shapes[][3] = {{1, 9, 5}, {9, 1, 5}, {4, 6, 5}};
    float A[9 * 5], B[9 * 5], C[9 * 9];
    for (int i = 0; i < 45; i++) A[i] = frand(), B[i] = frand();
    for (int s = 0; s < 3; s++)
        for (int tb = 0; tb < 2; tb++) {
            int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            for (int i = 0; i < 81; i++) C[i] = NAN;
            hlpt_gemm(0, tb, M, N, K, 1.0f, A, K, B, tb ? K : N, 0.0f, C, N);
            for (int i = 0; i < M * N; i++) ck_assert_msg(isfinite(C[i]), "%dx%dx%d tb=%d: NaN from C", M, N, K, tb);
        }
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_corename);
    tcase_add_test(tc, test_gemm_vs_ref);
    tcase_add_test(tc, test_beta_zero_ignores_c);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
