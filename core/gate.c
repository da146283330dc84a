/*
 * gate.c - the HLPT gate of one sequence (docs/method.md, "Gate modes"): per-token scores s_t = sigmoid(w · inp_t)
 * and the scale g_t they give, by mode:
 *   HLPT_GATE_NONE      g_t = 1
 *   HLPT_GATE_SEQUENCE  g_t = mean(s_1..s_T)
 *   HLPT_GATE_CAUSAL    g_t = mean(s_1..s_t), with the sum and count of earlier tokens carried in
 *                       from the caller so a KV-cache continuation gives the same g as one call.
 * The scores use vec_dot row by row (not a BLAS gemv) so that a token's score does not depend on
 * how many tokens share the call; the running sum is a double added in token order.
 */
#include "layers.h"

#include <math.h>
#include <stddef.h>

#include "hlpt/adapter.h"
#include "hlpt/err.h"
#include "vec.h"

/* g[T], s[T], inp[T,I], w[I]; *sum, *count: the scores of earlier tokens (causal mode). */
void gate_forward(float *g, float *s, const float *inp, const float *w, int T, int I, int mode,
                  double *sum, int *count) {
    for (int t = 0; t < T; t++) s[t] = 1.0f / (1.0f + expf(-vec_dot(inp + (size_t)t * I, w, I)));
    switch (mode) {
    case HLPT_GATE_NONE:
        for (int t = 0; t < T; t++) g[t] = 1.0f;
        break;
    case HLPT_GATE_SEQUENCE: {
        double acc = 0.0;
        for (int t = 0; t < T; t++) acc += s[t];
        for (int t = 0; t < T; t++) g[t] = (float)(acc / T);
        break;
    }
    case HLPT_GATE_CAUSAL: {
        double acc = sum ? *sum : 0.0;
        int c = count ? *count : 0;
        for (int t = 0; t < T; t++) {
            acc += s[t];
            g[t] = (float)(acc / (c + t + 1));
        }
        if (sum) *sum = acc;
        if (count) *count = c + T;
        break;
    }
    default:
        HLPT_ASSERT(!"gate mode");
    }
}

/*
 * Differentiates s_t = sigmoid(w · inp_t) and
 *   sequence: g_t = (1/T) sum_j s_j        ->  ds_j = (1/T) sum_t dg_t
 *   causal:   g_t = (1/t) sum_{j<=t} s_j   ->  ds_j = sum_{t>=j} dg_t / t   (1-based t)
 * then dz_j = ds_j s_j (1 - s_j), dinp_j += dz_j w, dw += dz_j inp_j.
 * dinp[T,I], dw[I], dg[T], s[T] (the forward's), inp[T,I], w[I].
 */
void gate_backward(float *dinp, float *dw, const float *dg, const float *s, const float *inp,
                   const float *w, int T, int I, int mode) {
    if (mode == HLPT_GATE_NONE || (!dinp && !dw)) return;
    HLPT_ASSERT(mode == HLPT_GATE_SEQUENCE || mode == HLPT_GATE_CAUSAL);
    double seq = 0.0, tail = 0.0;
    if (mode == HLPT_GATE_SEQUENCE) {
        for (int t = 0; t < T; t++) seq += dg[t];
        seq /= T;
    }
    /* Walk backwards so the causal suffix sum sum_{t>=j} dg_t / t is one running total. */
    for (int j = T - 1; j >= 0; j--) {
        double ds = seq;
        if (mode == HLPT_GATE_CAUSAL) {
            tail += (double)dg[j] / (j + 1);
            ds = tail;
        }
        float dz = (float)(ds * s[j] * (1.0 - s[j]));
        if (dinp) vec_axpy(dinp + (size_t)j * I, dz, w, I);
        if (dw) vec_axpy(dw, dz, inp + (size_t)j * I, I);
    }
}
