/*
 * vec.h - the two inner loops the kernels share: a dot product and y += a*x over contiguous floats
 * (internal to core/).
 *
 * Without -ffast-math a compiler may not reorder a float sum, so a plain `s += a[i]*b[i]` loop runs
 * one scalar FMA at a time. vec_dot keeps VEC_LANES independent partial sums instead, which the
 * compiler maps onto vector registers; the order of additions is fixed, so results are
 * deterministic and do not depend on alignment.
 */
#ifndef HLPT_VEC_H
#define HLPT_VEC_H

enum { VEC_LANES = 16 };

/* sum_i a[i]*b[i], n >= 0. */
static inline float vec_dot(const float *restrict a, const float *restrict b, int n) {
    float acc[VEC_LANES] = {0};
    int i = 0;
    for (; i + VEC_LANES <= n; i += VEC_LANES)
        for (int j = 0; j < VEC_LANES; j++) acc[j] += a[i + j] * b[i + j];
    float s = 0.0f;
    for (int j = 0; j < VEC_LANES; j++) s += acc[j];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* y[n] += a * x[n]. */
static inline void vec_axpy(float *restrict y, float a, const float *restrict x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

#endif
