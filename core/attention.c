/*
 * attention.c - causal multi-head attention of one sequence with an optional gated prefix
 * (DESIGN.md §1), forward and backward.
 *
 * For head h (kv head c = h / (H/KV)) and query t (key index S-T+t, seeing keys 0..S-T+t):
 *   z_p = g_t * q_t·pk_p / sqrt(D)   for the P prefix slots,   z_s = q_t·k_s / sqrt(D)   for s <= S-T+t
 *   a   = softmax([z_prefix, z_keys])                             (att row, masked keys hold 0)
 *   o_t = g_t * sum_p a_p pv_p + sum_s a_s v_s
 * att[H,T,P+S] keeps the probabilities of each row: prefix slots first, then the S keys.
 *
 * Two ways to the same numbers:
 *  - rows: per (head, query) dot products and axpys over contiguous D (vec.h). Used for short
 *    calls, above all decoding (T = 1), where a gemm's packing overhead would dominate.
 *  - gemm: per head, the scores, the weighted sums and all backward products as hlpt_gemm calls on
 *    strided views ([T,D] with row stride H*D, [S,D] with row stride KV*D, [T,P+S] with stride P+S).
 *    It computes the masked upper triangle too and throws it away, and still wins by a wide margin
 *    for prefill and training (bench/bench_attention).
 * ATT_GEMM_MIN_T picks between them; both share the per-row softmax and its backward.
 */
#include "layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/err.h"
#include "hlpt/tensor.h"
#include "vec.h"

/* Calls with at least this many queries take the gemm path (measured by bench/bench_attention). */
#ifndef ATT_GEMM_MIN_T
#define ATT_GEMM_MIN_T 32
#endif

/* In place: z[0, P+n) scores -> softmax probabilities; z[P+n, P+S) (masked keys) -> 0. */
static void softmax_row(float *z, int P, int n, int S) {
    int len = P + n;
    float mx = z[0];
    for (int j = 1; j < len; j++) mx = z[j] > mx ? z[j] : mx;
    float sum = 0.0f;
    for (int j = 0; j < len; j++) {
        z[j] = expf(z[j] - mx);
        sum += z[j];
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < len; j++) z[j] *= inv;
    memset(z + len, 0, sizeof(float) * (size_t)(S - n));
}

/*
 * Backward of one row. In: d[0,P) = dout_t·pv_p and d[P,P+n) = dout_t·v_s (the gradients of the
 * probabilities before g_t scales the prefix part). Out: d becomes the gradient of the scores with
 * g_t already applied to the prefix part, i.e. of the unscaled q·pk/sqrt(D), so callers multiply by
 * the key and 1/sqrt(D) alike; masked entries become 0. Returns dL/dg_t of this row.
 *   da_p = g_t d_p,  dz = a (da - sum_j a_j da_j),  dg_t = sum_p a_p d_p + sum_p dz_p q·pk_p/sqrt(D)
 * qpk[P] holds q_t·pk_p/sqrt(D) (NULL when dg is not needed).
 */
static float softmax_row_backward(float *d, const float *a, const float *qpk, float gt, int P, int n,
                                  int S) {
    int len = P + n;
    float dg = 0.0f;
    for (int p = 0; p < P; p++) {
        dg += a[p] * d[p];
        d[p] *= gt;
    }
    float dot = 0.0f;
    for (int j = 0; j < len; j++) dot += a[j] * d[j];
    for (int j = 0; j < len; j++) d[j] = a[j] * (d[j] - dot);
    memset(d + len, 0, sizeof(float) * (size_t)(S - n));
    for (int p = 0; p < P; p++) {
        if (qpk) dg += d[p] * qpk[p];
        d[p] *= gt;
    }
    return dg;
}

static void forward_rows(float *out, float *att, const float *q, const float *k, const float *v,
                         const float *pk, const float *pv, const float *g, int T, int S, int P, int H,
                         int KV, int D) {
    float scale = 1.0f / sqrtf((float)D);
    int LA = P + S, HD = H * D, KD = KV * D;
    for (int h = 0; h < H; h++) {
        int c = h / (H / KV);
        for (int t = 0; t < T; t++) {
            int n = S - T + t + 1;
            float gt = g ? g[t] : 1.0f;
            const float *qt = q + (size_t)t * HD + (size_t)h * D;
            float *z = att + ((size_t)h * T + t) * LA;
            for (int p = 0; p < P; p++) z[p] = gt * scale * vec_dot(qt, pk + (size_t)p * KD + c * D, D);
            for (int s = 0; s < n; s++) z[P + s] = scale * vec_dot(qt, k + (size_t)s * KD + c * D, D);
            softmax_row(z, P, n, S);
            float *o = out + (size_t)t * HD + (size_t)h * D;
            memset(o, 0, sizeof(float) * (size_t)D);
            for (int p = 0; p < P; p++) vec_axpy(o, gt * z[p], pv + (size_t)p * KD + c * D, D);
            for (int s = 0; s < n; s++) vec_axpy(o, z[P + s], v + (size_t)s * KD + c * D, D);
        }
    }
}

static void forward_gemm(float *out, float *att, const float *q, const float *k, const float *v,
                         const float *pk, const float *pv, const float *g, int T, int S, int P, int H,
                         int KV, int D) {
    float scale = 1.0f / sqrtf((float)D);
    int LA = P + S, HD = H * D, KD = KV * D;
    for (int h = 0; h < H; h++) {
        int c = h / (H / KV);
        const float *qh = q + (size_t)h * D;
        float *ah = att + (size_t)h * T * LA, *oh = out + (size_t)h * D;
        /* Scores: att_h[:, P:] = Q_h K_c^T / sqrt(D);  att_h[:, :P] = g * Q_h PK_c^T / sqrt(D). */
        hlpt_gemm(0, 1, T, S, D, scale, qh, HD, k + c * D, KD, 0.0f, ah + P, LA);
        if (P > 0) {
            hlpt_gemm(0, 1, T, P, D, scale, qh, HD, pk + c * D, KD, 0.0f, ah, LA);
            if (g)
                for (int t = 0; t < T; t++)
                    for (int p = 0; p < P; p++) ah[(size_t)t * LA + p] *= g[t];
        }
        for (int t = 0; t < T; t++) softmax_row(ah + (size_t)t * LA, P, S - T + t + 1, S);
        /* O_h = g * A_prefix PV_c + A_keys V_c. */
        float beta = 0.0f;
        if (P > 0) {
            hlpt_gemm(0, 0, T, D, P, 1.0f, ah, LA, pv + c * D, KD, 0.0f, oh, HD);
            if (g)
                for (int t = 0; t < T; t++)
                    for (int j = 0; j < D; j++) oh[(size_t)t * HD + j] *= g[t];
            beta = 1.0f;
        }
        hlpt_gemm(0, 0, T, D, S, 1.0f, ah + P, LA, v + c * D, KD, beta, oh, HD);
    }
}

/* q[T,H,D], k,v[S,KV,D], pk,pv[P,KV,D] or NULL, g[T] or NULL; out[T,H,D], att[H,T,P+S]. */
void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       const float *pk, const float *pv, const float *g,
                       int T, int S, int P, int H, int KV, int D) {
    HLPT_ASSERT(T >= 1 && S >= T && P >= 0 && KV >= 1 && H % KV == 0 && (P == 0 || (pk && pv)));
    if (T >= ATT_GEMM_MIN_T)
        forward_gemm(out, att, q, k, v, pk, pv, g, T, S, P, H, KV, D);
    else
        forward_rows(out, att, q, k, v, pk, pv, g, T, S, P, H, KV, D);
}

/* d[P+S]: one row of scratch. */
static void backward_rows(float *dq, float *dk, float *dv, float *dpk, float *dpv, float *dg,
                          const float *dout, const float *att, const float *q, const float *k,
                          const float *v, const float *pk, const float *pv, const float *g, int T,
                          int S, int P, int H, int KV, int D, float *d, float *qpk) {
    float scale = 1.0f / sqrtf((float)D);
    int LA = P + S, HD = H * D, KD = KV * D;
    int need_dz = dq || dk || dpk || dg;
    for (int h = 0; h < H; h++) {
        int c = h / (H / KV);
        for (int t = 0; t < T; t++) {
            int n = S - T + t + 1;
            float gt = g ? g[t] : 1.0f;
            const float *a = att + ((size_t)h * T + t) * LA;
            const float *qt = q + (size_t)t * HD + (size_t)h * D;
            const float *dot = dout + (size_t)t * HD + (size_t)h * D;
            /* o_t = g_t sum_p a_p pv_p + sum_s a_s v_s */
            if (dpv)
                for (int p = 0; p < P; p++) vec_axpy(dpv + (size_t)p * KD + c * D, gt * a[p], dot, D);
            if (dv)
                for (int s = 0; s < n; s++) vec_axpy(dv + (size_t)s * KD + c * D, a[P + s], dot, D);
            if (!need_dz) continue;
            for (int p = 0; p < P; p++) d[p] = vec_dot(dot, pv + (size_t)p * KD + c * D, D);
            for (int s = 0; s < n; s++) d[P + s] = vec_dot(dot, v + (size_t)s * KD + c * D, D);
            if (dg)
                for (int p = 0; p < P; p++) qpk[p] = scale * vec_dot(qt, pk + (size_t)p * KD + c * D, D);
            float dgt = softmax_row_backward(d, a, dg ? qpk : NULL, gt, P, n, S);
            if (dg) dg[t] += dgt;
            /* z_p = g_t q·pk_p/sqrt(D), z_s = q·k_s/sqrt(D); d already carries g_t. */
            float *dqt = dq ? dq + (size_t)t * HD + (size_t)h * D : NULL;
            for (int p = 0; p < P; p++) {
                float w = d[p] * scale;
                if (dqt) vec_axpy(dqt, w, pk + (size_t)p * KD + c * D, D);
                if (dpk) vec_axpy(dpk + (size_t)p * KD + c * D, w, qt, D);
            }
            for (int s = 0; s < n; s++) {
                float w = d[P + s] * scale;
                if (dqt) vec_axpy(dqt, w, k + (size_t)s * KD + c * D, D);
                if (dk) vec_axpy(dk + (size_t)s * KD + c * D, w, qt, D);
            }
        }
    }
}

/* dA[T,P+S] and qpk[P]: scratch. */
static void backward_gemm(float *dq, float *dk, float *dv, float *dpk, float *dpv, float *dg,
                          const float *dout, const float *att, const float *q, const float *k,
                          const float *v, const float *pk, const float *pv, const float *g, int T,
                          int S, int P, int H, int KV, int D, float *dA, float *qpk) {
    float scale = 1.0f / sqrtf((float)D);
    int LA = P + S, HD = H * D, KD = KV * D;
    int need_dz = dq || dk || dpk || dg;
    for (int h = 0; h < H; h++) {
        int c = h / (H / KV);
        const float *ah = att + (size_t)h * T * LA, *qh = q + (size_t)h * D, *doh = dout + (size_t)h * D;
        /* o = g A_prefix PV + A_keys V:  dV += A_keys^T dO,  dPV += (g A_prefix)^T dO. */
        if (dv) hlpt_gemm(1, 0, S, D, T, 1.0f, ah + P, LA, doh, HD, 1.0f, dv + c * D, KD);
        if (dpv)
            for (int t = 0; t < T; t++)
                for (int p = 0; p < P; p++)
                    vec_axpy(dpv + (size_t)p * KD + c * D, (g ? g[t] : 1.0f) * ah[(size_t)t * LA + p],
                             doh + (size_t)t * HD, D);
        if (!need_dz) continue;
        hlpt_gemm(0, 1, T, S, D, 1.0f, doh, HD, v + c * D, KD, 0.0f, dA + P, LA);
        if (P > 0) hlpt_gemm(0, 1, T, P, D, 1.0f, doh, HD, pv + c * D, KD, 0.0f, dA, LA);
        for (int t = 0; t < T; t++) {
            if (dg)
                for (int p = 0; p < P; p++)
                    qpk[p] = scale * vec_dot(qh + (size_t)t * HD, pk + (size_t)p * KD + c * D, D);
            float dgt = softmax_row_backward(dA + (size_t)t * LA, ah + (size_t)t * LA, dg ? qpk : NULL,
                                             g ? g[t] : 1.0f, P, S - T + t + 1, S);
            if (dg) dg[t] += dgt;
        }
        /* dQ_h += (dZ_keys K + dZ_prefix PK) / sqrt(D);  dK += dZ_keys^T Q_h / sqrt(D); dPK alike. */
        if (dq) {
            hlpt_gemm(0, 0, T, D, S, scale, dA + P, LA, k + c * D, KD, 1.0f, dq + (size_t)h * D, HD);
            if (P > 0) hlpt_gemm(0, 0, T, D, P, scale, dA, LA, pk + c * D, KD, 1.0f, dq + (size_t)h * D, HD);
        }
        if (dk) hlpt_gemm(1, 0, S, D, T, scale, dA + P, LA, qh, HD, 1.0f, dk + c * D, KD);
        if (dpk && P > 0) hlpt_gemm(1, 0, P, D, T, scale, dA, LA, qh, HD, 1.0f, dpk + c * D, KD);
    }
}

/*
 * Differentiates attention_forward (see the top of the file). Scratch: one malloc per call of
 * (P+S) floats (rows path) or T*(P+S) floats (gemm path), plus P; aborts if that fails.
 */
void attention_backward(float *dq, float *dk, float *dv, float *dpk, float *dpv, float *dg,
                        const float *dout, const float *att, const float *q, const float *k,
                        const float *v, const float *pk, const float *pv, const float *g,
                        int T, int S, int P, int H, int KV, int D) {
    HLPT_ASSERT(T >= 1 && S >= T && P >= 0 && KV >= 1 && H % KV == 0 && (P == 0 || (pk && pv)));
    if (P == 0) dpk = dpv = NULL;
    int gemm = T >= ATT_GEMM_MIN_T;
    size_t rows = gemm ? (size_t)T : 1;
    float *scratch = malloc(sizeof(float) * (rows * (size_t)(P + S) + (size_t)P + 1));
    HLPT_ASSERT(scratch);
    float *qpk = scratch + rows * (size_t)(P + S);
    if (gemm)
        backward_gemm(dq, dk, dv, dpk, dpv, dg, dout, att, q, k, v, pk, pv, g, T, S, P, H, KV, D,
                      scratch, qpk);
    else
        backward_rows(dq, dk, dv, dpk, dpv, dg, dout, att, q, k, v, pk, pv, g, T, S, P, H, KV, D,
                      scratch, qpk);
    free(scratch);
}
