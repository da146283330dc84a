/* swiglu: forward against double math, backward against finite differences. */
#include "layers.h"

#include "../check_main.h"
#include "gradcheck.h"

enum { N = 3, F = 11 };
static float *gate, *up, *dout, *out;

static double loss(void *ctx) {
    (void)ctx;
    swiglu_forward(out, gate, up, N, F);
    return gc_dot(out, dout, N * F);
}

START_TEST(test_forward) {
    gc_seed(7);
    float *g = gc_new(N * F, -6, 6), *u = gc_new(N * F, -2, 2), *y = gc_new(N * F, 0, 0);
    double ref[N * F];
    for (int i = 0; i < N * F; i++) ref[i] = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
    swiglu_forward(y, g, u, N, F);
    double e = gc_maxerr(y, ref, N * F);
    printf("swiglu forward max error %.3g (tolerance 1e-5)\n", e);
    ck_assert(e < 1e-5);
    free(g), free(u), free(y);
}
END_TEST

START_TEST(test_backward) {
    gc_seed(8);
    gate = gc_new(N * F, -4, 4), up = gc_new(N * F, -2, 2), dout = gc_new(N * F, -1, 1);
    out = gc_new(N * F, 0, 0);
    float *dg = gc_fill(N * F, GC_BASE), *du = gc_fill(N * F, GC_BASE);
    swiglu_backward(dg, du, dout, gate, up, N, F);
    printf("swiglu backward:\n");
    gc_check("gate", gate, dg, N * F, 1, loss, NULL, 2e-3);
    gc_check("up", up, du, N * F, 1, loss, NULL, 1e-3);
    free(gate), free(up), free(dout), free(out), free(dg), free(du);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("swiglu");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_forward);
    tcase_add_test(tc, test_backward);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
