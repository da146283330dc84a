/*
 * swiglu.c - LLaMA's gated FFN activation, out = silu(gate) * up with silu(x) = x * sigmoid(x),
 * elementwise over [N,F].
 */
#include "layers.h"

#include <math.h>
#include <stddef.h>

/* out[N,F], gate[N,F], up[N,F]. */
void swiglu_forward(float *out, const float *gate, const float *up, int N, int F) {
    size_t n = (size_t)N * F;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_ELEMS)
    for (size_t i = 0; i < n; i++) {
        float x = gate[i];
        out[i] = x / (1.0f + expf(-x)) * up[i];
    }
}

/* Differentiates out = silu(gate) * up; silu'(x) = sig(x) (1 + x (1 - sig(x))).
 * dgate[N,F], dup[N,F], dout[N,F]. */
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                     int N, int F) {
    size_t n = (size_t)N * F;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_ELEMS)
    for (size_t i = 0; i < n; i++) {
        float x = gate[i], sg = 1.0f / (1.0f + expf(-x));
        if (dgate) dgate[i] += dout[i] * up[i] * sg * (1.0f + x * (1.0f - sg));
        if (dup) dup[i] += dout[i] * x * sg;
    }
}
