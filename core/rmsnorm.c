/*
 * rmsnorm.c - LLaMA's RMSNorm, out = inp * rstd * w with rstd = 1/sqrt(mean(inp^2) + eps), row by
 * row. The mean of squares is summed in double: rows are up to a few thousand wide and the forward
 * must match HF's float32 result closely.
 */
#include "layers.h"

#include <math.h>
#include <stddef.h>

/* out[N,C], rstd[N] (optional), inp[N,C], w[C]. out may == inp: rstd is known before any write. */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps) {
#pragma omp parallel for schedule(static) if (N > 1 && (size_t)N * C >= PAR_MIN_ELEMS)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        double ss = 0.0;
        for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        for (int i = 0; i < C; i++) y[i] = x[i] * r * w[i];
        if (rstd) rstd[n] = r;
    }
}

/*
 * Differentiates y_i = x_i * r * w_i, r = (mean(x^2) + eps)^-1/2, dr/dx_j = -r^3 x_j / C:
 *   dx_j = r w_j dy_j - (r^3 / C) x_j sum_i dy_i w_i x_i,   dw_i = sum_n dy_i x_i r.
 * dinp[N,C], dw[C], dout[N,C], inp[N,C], w[C], rstd[N] (required: the forward's).
 */
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      const float *rstd, int N, int C) {
    /* Rows are independent unless dw sums over them. */
#pragma omp parallel for schedule(static) if (!dw && N > 1 && (size_t)N * C >= PAR_MIN_ELEMS)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float r = rstd[n];
        if (dinp) {
            double dot = 0.0;
            for (int i = 0; i < C; i++) dot += (double)dy[i] * w[i] * x[i];
            float c = (float)(dot * r * r * r / C);
            float *dx = dinp + (size_t)n * C;
            for (int i = 0; i < C; i++) dx[i] += r * w[i] * dy[i] - c * x[i];
        }
        if (dw)
            for (int i = 0; i < C; i++) dw[i] += dy[i] * x[i] * r;
    }
}
