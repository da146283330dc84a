/*
 * crossentropy.c - softmax cross-entropy over the vocabulary, loss and gradient in one pass per row
 * (the logits row is read twice: max and sum of exponentials, then the gradient written over it).
 * Stable: log-sum-exp around the row maximum; the sum is a double because V is tens of thousands.
 */
#include "layers.h"

#include <math.h>
#include <stddef.h>

#include "hlpt/err.h"

/* dlogits[N,V] (may == logits), logits[N,V], targets[N] in [0,V) or -100. */
double crossentropy_forward_backward(float *dlogits, const float *logits, const int *targets, int N,
                                     int V, float dscale, int *n_counted) {
    double total = 0.0;
    int counted = 0;
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *dx = dlogits ? dlogits + (size_t)n * V : NULL;
        int tgt = targets[n];
        if (tgt == -100) {
            if (dx)
                for (int i = 0; i < V; i++) dx[i] = 0.0f;
            continue;
        }
        HLPT_ASSERT(tgt >= 0 && tgt < V);
        float mx = x[0];
        for (int i = 1; i < V; i++) mx = x[i] > mx ? x[i] : mx;
        double se = 0.0;
        for (int i = 0; i < V; i++) se += expf(x[i] - mx);
        double lse = mx + log(se);
        total += lse - x[tgt];
        counted++;
        if (dx) {
            /* Read x[i] before dx[i] is written: they may be the same element. */
            float inv = (float)(1.0 / se);
            for (int i = 0; i < V; i++) dx[i] = expf(x[i] - mx) * inv * dscale;
            dx[tgt] -= dscale;
        }
    }
    if (n_counted) *n_counted = counted;
    return total;
}
