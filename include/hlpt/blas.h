/*
 * blas.h - the BLAS entry point and OpenBLAS start-up.
 *
 * core/blas.c is the only file that includes <cblas.h>. Everything multiplies matrices through
 * hlpt_gemm(); hlpt_gemm_ref() is the naive reference the tests compare it with.
 */
#ifndef HLPT_BLAS_H
#define HLPT_BLAS_H

/*
 * Call first in every main(), before any thread exists. Debian's OpenBLAS 0.3.21 does not know
 * newer CPUs (AMD Zen 4/5, recent Intel) and falls back to its generic "Prescott" kernels, about 10x
 * slower. OpenBLAS picks its kernels in a library constructor, before main() runs, so the only fix
 * is to set OPENBLAS_CORETYPE and re-execute the program: when the core name is a fallback and the
 * CPU has AVX-512 (SkylakeX kernels) or AVX2+FMA (Haswell kernels), this sets the variable and
 * execv()s /proc/self/exe with argv. A user-set OPENBLAS_CORETYPE is left alone. Returns HLPT_OK when
 * no re-exec was needed; on a failed re-exec it returns an error and BLAS keeps working (slowly).
 */
int hlpt_blas_init(char **argv);
/* The kernel set OpenBLAS runs (e.g. "SkylakeX", "Haswell", "Prescott"). */
const char *hlpt_blas_corename(void);
/* BLAS threads for this process (>= 1). Any thread. */
void hlpt_blas_set_threads(int n);
int hlpt_blas_threads(void);

/*
 * Row-major C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C. trans_a/trans_b non-zero take the
 * transpose of the stored matrix; lda/ldb/ldc are the row strides of the stored matrices.
 */
void hlpt_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);
/* The same contract in plain loops (double accumulation): the reference for tests. */
void hlpt_gemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
