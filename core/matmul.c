/*
 * matmul.c - the linear layer without bias, out = inp @ w^T (nn.Linear's [O,I] weight layout).
 * Both directions are single hlpt_gemm calls; a NULL gradient skips its product entirely, which is
 * how the frozen base weights cost nothing in backward.
 */
#include "layers.h"

#include "hlpt/blas.h"

/* out[N,O], inp[N,I], w[O,I]. */
void matmul_forward(float *out, const float *inp, const float *w, int N, int I, int O, int accumulate) {
    hlpt_gemm(0, 1, N, O, I, 1.0f, inp, I, w, I, accumulate ? 1.0f : 0.0f, out, O);
}

/* Differentiates out = inp @ w^T.  dinp[N,I], dw[O,I], dout[N,O]. */
void matmul_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                     int N, int I, int O) {
    if (dinp) hlpt_gemm(0, 0, N, I, O, 1.0f, dout, O, w, I, 1.0f, dinp, I);
    if (dw) hlpt_gemm(1, 0, O, I, N, 1.0f, dout, O, inp, I, 1.0f, dw, I);
}
