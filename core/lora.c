/*
 * lora.c - the gated LoRA branch added to a linear module's output (docs/method.md, "Gated LoRA"):
 *   out[n] += g_n * scale * B (A drop(inp[n])),   drop(u) = u * keep / (1 - p)
 * with A[R,I], B[O,R] and the rank R small (8 by default).
 *
 * The wide products (N x O x R and N x I x R) go through hlpt_gemm. Two things do not fit a plain
 * gemm and are handled around it:
 *  - the per-row gate g_n: the rank-space rows xa[n] (or their gradients) are scaled into a small
 *    stack buffer, LORA_TMP floats, a chunk of rows at a time, and the gemm runs per chunk;
 *  - the dropout mask: when keep is set, the A-side products (xa, dA, dinp) are plain loops over
 *    the mask instead of gemms, since a masked copy of inp would need an [N,I] buffer. Their cost
 *    is N*I*R, a small fraction of the module's own N*I*O.
 */
#include "layers.h"

#include "hlpt/blas.h"
#include "hlpt/err.h"
#include "vec.h"

/* Floats of each per-chunk stack buffer ([rows, R]). */
enum { LORA_TMP = 4096 };

static inline float keep_scale(const uint8_t *keep, float p) {
    return keep ? 1.0f / (1.0f - p) : 1.0f;
}

/* sum_i keep[i] ? u[i]*a[i] : 0, with vec_dot's independent partial sums. */
static float masked_dot(const float *restrict u, const uint8_t *restrict keep, const float *restrict a,
                        int n) {
    float acc[VEC_LANES] = {0};
    int i = 0;
    for (; i + VEC_LANES <= n; i += VEC_LANES)
        for (int j = 0; j < VEC_LANES; j++) acc[j] += keep[i + j] ? u[i + j] * a[i + j] : 0.0f;
    float s = 0.0f;
    for (int j = 0; j < VEC_LANES; j++) s += acc[j];
    for (; i < n; i++) s += keep[i] ? u[i] * a[i] : 0.0f;
    return s;
}

/* out[N,O] (accumulated), xa[N,R] (saved), inp[N,I], A[R,I], B[O,R], g[N] or NULL, keep[N,I] or NULL. */
void lora_forward(float *out, float *xa, const float *inp, const float *A, const float *B,
                  const float *g, float scale, const uint8_t *keep, float p, int N, int I, int O, int R) {
    HLPT_ASSERT(R >= 1 && R <= LORA_TMP);
    if (!keep) {
        hlpt_gemm(0, 1, N, R, I, 1.0f, inp, I, A, I, 0.0f, xa, R);
    } else {
        float ks = keep_scale(keep, p);
        for (int n = 0; n < N; n++) {
            const float *u = inp + (size_t)n * I;
            const uint8_t *m = keep + (size_t)n * I;
            for (int r = 0; r < R; r++) {
                const float *a = A + (size_t)r * I;
                xa[(size_t)n * R + r] = masked_dot(u, m, a, I) * ks;
            }
        }
    }
    /* out[n0:n0+m] += (g * scale * xa)[n0:n0+m] @ B^T, a chunk of rows at a time. */
    float gxa[LORA_TMP];
    int rows = LORA_TMP / R;
    for (int n0 = 0; n0 < N; n0 += rows) {
        int m = N - n0 < rows ? N - n0 : rows;
        for (int n = 0; n < m; n++) {
            float c = scale * (g ? g[n0 + n] : 1.0f);
            for (int r = 0; r < R; r++) gxa[n * R + r] = c * xa[(size_t)(n0 + n) * R + r];
        }
        hlpt_gemm(0, 1, m, O, R, 1.0f, gxa, R, B, R, 1.0f, out + (size_t)n0 * O, O);
    }
}

/*
 * Differentiates out[n] += g_n * scale * xa[n] @ B^T with xa[n] = drop(inp[n]) @ A^T:
 *   dB    += scale * dout^T @ (g * xa)
 *   dxa_n  = g_n * scale * dout_n @ B            dg_n += scale * xa_n · (dout_n @ B)
 *   dA    += dxa^T @ drop(inp)                   dinp += drop(dxa @ A)
 * dinp[N,I], dA[R,I], dB[O,R], dg[N], dout[N,O], xa[N,R] (the forward's), the rest as forward.
 */
void lora_backward(float *dinp, float *dA, float *dB, float *dg, const float *dout, const float *xa,
                   const float *inp, const float *A, const float *B, const float *g, float scale,
                   const uint8_t *keep, float p, int N, int I, int O, int R) {
    HLPT_ASSERT(R >= 1 && R <= LORA_TMP);
    float ks = keep_scale(keep, p);
    float tmp[LORA_TMP];
    int rows = LORA_TMP / R;
    for (int n0 = 0; n0 < N; n0 += rows) {
        int m = N - n0 < rows ? N - n0 : rows;
        const float *dy = dout + (size_t)n0 * O, *x = xa + (size_t)n0 * R;
        if (dB) {
            for (int n = 0; n < m; n++) {
                float c = scale * (g ? g[n0 + n] : 1.0f);
                for (int r = 0; r < R; r++) tmp[n * R + r] = c * x[n * R + r];
            }
            hlpt_gemm(1, 0, O, R, m, 1.0f, dy, O, tmp, R, 1.0f, dB, R);
        }
        if (!dA && !dinp && !dg) continue;
        /* tmp = dout @ B, then dg from it, then tmp becomes dxa. */
        hlpt_gemm(0, 0, m, R, O, 1.0f, dy, O, B, R, 0.0f, tmp, R);
        for (int n = 0; n < m; n++) {
            float *t = tmp + n * R;
            if (dg) dg[n0 + n] += scale * vec_dot(x + n * R, t, R);
            float c = scale * (g ? g[n0 + n] : 1.0f);
            for (int r = 0; r < R; r++) t[r] *= c;
        }
        const float *u = inp + (size_t)n0 * I;
        if (!keep) {
            if (dA) hlpt_gemm(1, 0, R, I, m, 1.0f, tmp, R, u, I, 1.0f, dA, I);
            if (dinp) hlpt_gemm(0, 0, m, I, R, 1.0f, tmp, R, A, I, 1.0f, dinp + (size_t)n0 * I, I);
            continue;
        }
        for (int n = 0; n < m; n++) {
            const uint8_t *mk = keep + (size_t)(n0 + n) * I;
            const float *un = u + (size_t)n * I;
            float *dx = dinp ? dinp + (size_t)(n0 + n) * I : NULL;
            for (int r = 0; r < R; r++) {
                float c = tmp[n * R + r] * ks;
                const float *a = A + (size_t)r * I;
                if (dA) {
                    float *da = dA + (size_t)r * I;
                    for (int i = 0; i < I; i++) da[i] += mk[i] ? c * un[i] : 0.0f;
                }
                if (dx)
                    for (int i = 0; i < I; i++) dx[i] += mk[i] ? c * a[i] : 0.0f;
            }
        }
    }
}
