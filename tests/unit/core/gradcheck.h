/*
 * gradcheck.h - helpers shared by the kernel suites: a seeded random source, and a central finite
 * difference check of a backward against its forward.
 *
 * A backward is checked through a scalar loss L = sum(dout * out) with a fixed random dout: the
 * kernel's gradient of an input must match (L(x + e) - L(x - e)) / (2e) element by element. The
 * forward runs in float, so L is summed in double and e is large enough (1e-2) that float rounding
 * of L stays well below the tolerance; e is the step actually taken after rounding x +- e to float.
 */
#ifndef HLPT_TEST_GRADCHECK_H
#define HLPT_TEST_GRADCHECK_H

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t gc_rng = 0x2545f4914f6cdd1dull;

static inline void gc_seed(uint64_t s) { gc_rng = s * 0x9e3779b97f4a7c15ull + 1; }

/* Uniform in [-1, 1). */
static inline float gc_rand(void) {
    gc_rng ^= gc_rng << 13, gc_rng ^= gc_rng >> 7, gc_rng ^= gc_rng << 17;
    return (float)((gc_rng >> 40) * (2.0 / 16777216.0) - 1.0);
}

/* A new buffer of n floats, uniform in [lo, hi). */
static inline float *gc_new(size_t n, float lo, float hi) {
    float *x = malloc(sizeof(float) * (n ? n : 1));
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * 0.5f * (gc_rand() + 1.0f);
    return x;
}

static inline float *gc_fill(size_t n, float v) {
    float *x = malloc(sizeof(float) * (n ? n : 1));
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < n; i++) x[i] = v;
    return x;
}

static inline double gc_dot(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* max_i |a_i - b_i| for a float buffer against a double reference. */
static inline double gc_maxerr(const float *a, const double *b, size_t n) {
    double e = 0.0;
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - b[i]));
    return e;
}

/* The value every gradient buffer starts at, so the checks also see that backward accumulates. */
#define GC_BASE 0.25f

/*
 * Checks grad[n] (started at GC_BASE, then accumulated into by the backward) against central
 * differences of loss() over x[n], every `step`-th element. Prints and asserts
 * max |fd - grad| / max(max |fd|, 1e-3) < tol.
 */
static inline void gc_check(const char *what, float *x, const float *grad, size_t n, size_t step,
                            double (*loss)(void *), void *ctx, double tol) {
    const float eps = 1e-2f;
    double maxerr = 0.0, maxfd = 0.0;
    for (size_t i = 0; i < n; i += step) {
        float x0 = x[i], xp = x0 + eps, xm = x0 - eps;
        x[i] = xp;
        double lp = loss(ctx);
        x[i] = xm;
        double lm = loss(ctx);
        x[i] = x0;
        double fd = (lp - lm) / ((double)xp - xm);
        maxerr = fmax(maxerr, fabs(fd - ((double)grad[i] - GC_BASE)));
        maxfd = fmax(maxfd, fabs(fd));
    }
    double rel = maxerr / fmax(maxfd, 1e-3);
    printf("  d%-12s max |fd - grad| %.3g, relative %.3g (tolerance %.0e)\n", what, maxerr, rel, tol);
    ck_assert_msg(rel < tol, "gradient of %s: relative error %.3g >= %.0e", what, rel, tol);
}

#endif
