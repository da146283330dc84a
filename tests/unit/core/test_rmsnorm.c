/* rmsnorm: forward (also in place) and rstd against double math, backward against finite
 * differences. */
#include "layers.h"

#include "../check_main.h"
#include "gradcheck.h"

enum { N = 4, C = 9 };
static const float EPS = 1e-5f;
static float *inp, *w, *dout, *out;

static double loss(void *ctx) {
    (void)ctx;
    rmsnorm_forward(out, NULL, inp, w, N, C, EPS);
    return gc_dot(out, dout, (size_t)N * C);
}

START_TEST(test_forward) {
    gc_seed(3);
    int n = 6, c = 333;
    float *x = gc_new((size_t)n * c, -3, 3), *wt = gc_new(c, 0.5f, 1.5f), *y = gc_new((size_t)n * c, 0, 0);
    float *rstd = gc_new(n, 0, 0);
    double *ref = malloc(sizeof(double) * n * c), *rref = malloc(sizeof(double) * n);
    for (int r = 0; r < n; r++) {
        double ss = gc_dot(x + r * c, x + r * c, c);
        rref[r] = 1.0 / sqrt(ss / c + EPS);
        for (int j = 0; j < c; j++) ref[r * c + j] = x[r * c + j] * rref[r] * wt[j];
    }
    rmsnorm_forward(y, rstd, x, wt, n, c, EPS);
    double e = gc_maxerr(y, ref, (size_t)n * c), er = gc_maxerr(rstd, rref, n);
    rmsnorm_forward(x, NULL, x, wt, n, c, EPS); /* in place */
    double ei = gc_maxerr(x, ref, (size_t)n * c);
    printf("rmsnorm forward max error %.3g, rstd %.3g, in place %.3g (tolerance 1e-5)\n", e, er, ei);
    ck_assert(e < 1e-5 && er < 1e-5 && ei < 1e-5);
    free(x), free(wt), free(y), free(rstd), free(ref), free(rref);
}
END_TEST

START_TEST(test_backward) {
    gc_seed(4);
    inp = gc_new(N * C, -1, 1), w = gc_new(C, 0.5f, 1.5f), dout = gc_new(N * C, -1, 1);
    out = gc_new(N * C, 0, 0);
    float *rstd = gc_new(N, 0, 0), *dinp = gc_fill(N * C, GC_BASE), *dw = gc_fill(C, GC_BASE);
    rmsnorm_forward(out, rstd, inp, w, N, C, EPS);
    rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
    printf("rmsnorm backward:\n");
    gc_check("inp", inp, dinp, N * C, 1, loss, NULL, 2e-3);
    gc_check("w", w, dw, C, 1, loss, NULL, 2e-3);
    free(inp), free(w), free(dout), free(out), free(rstd), free(dinp), free(dw);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("rmsnorm");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_forward);
    tcase_add_test(tc, test_backward);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
