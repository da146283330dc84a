/*
 * rope.c - rotary position embedding in HF's rotate_half convention: within each head of D, element
 * j < D/2 pairs with element j + D/2 and the pair turns by the angle pos * inv_freq[j]:
 *   x'[j] = x[j] cos - x[j+D/2] sin,   x'[j+D/2] = x[j+D/2] cos + x[j] sin.
 * The angle is a float product as in HF (float32 positions times float32 inv_freq). cos and sin are
 * computed once per token into a stack table and applied to all its heads.
 */
#include "layers.h"

#include <math.h>
#include <stddef.h>

#include "hlpt/err.h"

/* Half head dims the stack tables hold (head dims up to 1024). */
enum { ROPE_MAX_HALF = 512 };

/* dir = +1 rotates forward, -1 applies the inverse (transposed) rotation. */
static void rope_apply(float *x, const int *pos, const float *inv_freq, int N, int nh, int D, float dir) {
    int h2 = D / 2;
    HLPT_ASSERT(D % 2 == 0 && h2 <= ROPE_MAX_HALF);
#pragma omp parallel for schedule(static) if (N > 1 && (size_t)N * nh * D >= PAR_MIN_ELEMS)
    for (int n = 0; n < N; n++) {
        float cs[ROPE_MAX_HALF], sn[ROPE_MAX_HALF];
        for (int j = 0; j < h2; j++) {
            float a = (float)pos[n] * inv_freq[j];
            cs[j] = cosf(a);
            sn[j] = dir * sinf(a);
        }
        for (int h = 0; h < nh; h++) {
            float *x1 = x + ((size_t)n * nh + h) * D, *x2 = x1 + h2;
            for (int j = 0; j < h2; j++) {
                float a = x1[j], b = x2[j];
                x1[j] = a * cs[j] - b * sn[j];
                x2[j] = b * cs[j] + a * sn[j];
            }
        }
    }
}

/* x[N,nh,D] in place, pos[N], inv_freq[D/2]. */
void rope_forward(float *x, const int *pos, const float *inv_freq, int N, int nh, int D) {
    rope_apply(x, pos, inv_freq, N, nh, D, 1.0f);
}

/* Differentiates x' = R(pos) x: dx = R(pos)^T dx', the rotation by the opposite angle. */
void rope_backward(float *dx, const int *pos, const float *inv_freq, int N, int nh, int D) {
    rope_apply(dx, pos, inv_freq, N, nh, D, -1.0f);
}
