/*
 * attention.c - causal multi-head attention of one sequence with an optional gated prefix
 * (docs/method.md, "Gated prefix"), forward and backward.
 *
 * For head h (kv head c = h / (H/KV)) and query t (key index S-T+t, seeing keys 0..S-T+t):
 *   z_p = g_t * q_t·pk_p / sqrt(D)   for the P prefix slots,   z_s = q_t·k_s / sqrt(D)   for s <= S-T+t
 *   a   = softmax([z_prefix, z_keys])                             (att row, masked keys hold 0)
 *   o_t = g_t * sum_p a_p pv_p + sum_s a_s v_s
 * att[H,T,P+S] keeps the probabilities of each row: prefix slots first, then the S keys.
 *
 * Everything runs through hlpt_gemm on strided views of the buffers: q and out rows [T,H,D], keys
 * [S,KV,D] (row stride KV*D), att rows [H,T,P+S]. The forward has two orders of the same math:
 *  - by query (T < ATT_BY_HEAD_MIN_T, decoding and short prompts): for query t and kv head c, the G =
 *    H/KV heads sharing c form one [G,D] x [D,n] product over exactly the n visible keys, so each
 *    key is read once per group and nothing masked is computed (with G = 1 this is sgemv);
 *  - by head (long prompts, training): one [T,D] x [D,S] product per head computes the masked upper
 *    triangle too and discards it, but large gemms run near BLAS peak.
 * The backward (training only, whole sequences) is always by head. Measured with
 * bench/bench_attention (H=32 KV=8 D=128 P=20, 1 thread): decoding at S=2048 2.8 ms by query vs
 * 2.9 ms by head vs 7.3 ms with hand-written dot-product loops; T=S=128 4.2 vs 5.7 ms; T=S=512 168
 * vs 70 ms; backward by head 5-10x faster than loops at every size.
 */
#include "layers.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/blas.h"
#include "hlpt/err.h"
#include "vec.h"

/* Calls with less work (T x S x H x D) than this run on the calling thread alone: below it, waking
 * the other OpenMP threads costs more than they save. */
#define PAR_MIN_WORK (1u << 20)

/* Forward calls with at least this many queries run by head (bench/bench_attention: by query is
 * faster up to T=S=256, by head from about 400). */
#ifndef ATT_BY_HEAD_MIN_T
#define ATT_BY_HEAD_MIN_T 256
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

static void forward_by_query(float *out, float *att, const float *q, const float *k, const float *v,
                             const float *pk, const float *pv, const float *g, int T, int S, int P, int H,
                             int KV, int D) {
    float scale = 1.0f / sqrtf((float)D);
    int LA = P + S, HD = H * D, KD = KV * D, G = H / KV;
#pragma omp parallel for collapse(2) schedule(static) if (T * KV > 1 && (size_t)T * S * H * D >= PAR_MIN_WORK)
    for (int t = 0; t < T; t++) {
        for (int c = 0; c < KV; c++) {
            int n = S - T + t + 1;
            float gt = g ? g[t] : 1.0f;
            /* The G heads of kv head c: q and out rows with stride D, att rows with stride T*LA. */
            const float *qg = q + (size_t)t * HD + (size_t)c * G * D;
            float *ag = att + ((size_t)c * G * T + t) * LA, *og = out + (size_t)t * HD + (size_t)c * G * D;
            size_t LG = (size_t)T * LA;
            hlpt_gemm(0, 1, G, n, D, scale, qg, D, k + c * D, KD, 0.0f, ag + P, (int)LG);
            if (P > 0) hlpt_gemm(0, 1, G, P, D, gt * scale, qg, D, pk + c * D, KD, 0.0f, ag, (int)LG);
            for (int i = 0; i < G; i++) softmax_row(ag + i * LG, P, n, S);
            float beta = 0.0f;
            if (P > 0) {
                hlpt_gemm(0, 0, G, D, P, gt, ag, (int)LG, pv + c * D, KD, 0.0f, og, D);
                beta = 1.0f;
            }
            hlpt_gemm(0, 0, G, D, n, 1.0f, ag + P, (int)LG, v + c * D, KD, beta, og, D);
        }
    }
}

static void forward_by_head(float *out, float *att, const float *q, const float *k, const float *v,
                            const float *pk, const float *pv, const float *g, int T, int S, int P, int H,
                            int KV, int D) {
    float scale = 1.0f / sqrtf((float)D);
    int LA = P + S, HD = H * D, KD = KV * D;
#pragma omp parallel for schedule(static) if (H > 1 && (size_t)T * S * H * D >= PAR_MIN_WORK)
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
    if (T >= ATT_BY_HEAD_MIN_T)
        forward_by_head(out, att, q, k, v, pk, pv, g, T, S, P, H, KV, D);
    else
        forward_by_query(out, att, q, k, v, pk, pv, g, T, S, P, H, KV, D);
}

/* The heads of kv head c, one after another (they share dk, dv, dpk, dpv of c). dA[T,P+S] and
 * qpk[P]: scratch; dg[T] accumulates this group's share. */
static void backward_group(int c, float *dq, float *dk, float *dv, float *dpk, float *dpv, float *dg,
                           const float *dout, const float *att, const float *q, const float *k,
                           const float *v, const float *pk, const float *pv, const float *g, int T,
                           int S, int P, int H, int KV, int D, float *dA, float *qpk) {
    float scale = 1.0f / sqrtf((float)D);
    int LA = P + S, HD = H * D, KD = KV * D, G = H / KV;
    int need_dz = dq || dk || dpk || dg;
    for (int h = c * G; h < (c + 1) * G; h++) {
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
 * T*(P+S) + P floats a thread (the score gradients of one head and q·pk of one row) and T a kv head;
 * aborts if that fails.
 */
void attention_backward(float *dq, float *dk, float *dv, float *dpk, float *dpv, float *dg,
                        const float *dout, const float *att, const float *q, const float *k,
                        const float *v, const float *pk, const float *pv, const float *g,
                        int T, int S, int P, int H, int KV, int D) {
    HLPT_ASSERT(T >= 1 && S >= T && P >= 0 && KV >= 1 && H % KV == 0 && (P == 0 || (pk && pv)));
    if (P == 0) dpk = dpv = NULL;
    /* kv heads run in parallel (each owns its slices of dk, dv, dpk, dpv), each thread with its own
     * scratch; each kv head keeps its share of dg, summed in head order at the end so that the
     * result does not depend on the thread count. */
    int nth = omp_get_max_threads();
    if ((size_t)T * S * H * D < PAR_MIN_WORK) nth = 1;
    nth = nth < KV ? nth : KV;
    size_t per = (size_t)T * (P + S) + (size_t)P + 1;
    float *scratch = malloc(sizeof(float) * (per * (size_t)nth + (dg ? (size_t)T * KV : 0)));
    HLPT_ASSERT(scratch);
    float *shares = scratch + per * (size_t)nth;
    if (dg) memset(shares, 0, sizeof(float) * (size_t)T * KV);
#pragma omp parallel for num_threads(nth) schedule(static) if (nth > 1)
    for (int c = 0; c < KV; c++) {
        float *mine = scratch + per * (size_t)omp_get_thread_num();
        backward_group(c, dq, dk, dv, dpk, dpv, dg ? shares + (size_t)c * T : NULL, dout, att, q, k, v, pk, pv, g,
                       T, S, P, H, KV, D, mine, mine + (size_t)T * (P + S));
    }
    if (dg)
        for (int c = 0; c < KV; c++)
            for (int t = 0; t < T; t++) dg[t] += shares[(size_t)c * T + t];
    free(scratch);
}
