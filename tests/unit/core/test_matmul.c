/* matmul: forward against a double loop (both overwrite and accumulate), backward against finite
 * differences; a NULL gradient is skipped. */
#include "layers.h"

#include "../check_main.h"
#include "gradcheck.h"

enum { N = 5, I = 7, O = 3 };
static float *inp, *w, *dout, *out;

static double loss(void *ctx) {
    (void)ctx;
    matmul_forward(out, inp, w, N, I, O, 0);
    return gc_dot(out, dout, (size_t)N * O);
}

START_TEST(test_forward) {
    gc_seed(1);
    int n = 33, i = 65, o = 17; /* odd sizes through the gemm */
    float *x = gc_new((size_t)n * i, -1, 1), *wt = gc_new((size_t)o * i, -1, 1);
    float *y = gc_new((size_t)n * o, -1, 1), *y0 = malloc(sizeof(float) * n * o);
    double *ref = malloc(sizeof(double) * n * o);
    for (int a = 0; a < n * o; a++) y0[a] = y[a];
    for (int acc = 0; acc < 2; acc++) {
        for (int r = 0; r < n; r++)
            for (int c = 0; c < o; c++)
                ref[r * o + c] = gc_dot(x + r * i, wt + c * i, i) + (acc ? y0[r * o + c] : 0.0);
        matmul_forward(y, x, wt, n, i, o, acc);
        double e = gc_maxerr(y, ref, (size_t)n * o);
        printf("matmul forward (accumulate=%d) max error %.3g (tolerance 1e-5)\n", acc, e);
        ck_assert(e < 1e-5);
        for (int a = 0; a < n * o; a++) y[a] = y0[a];
    }
    free(x), free(wt), free(y), free(y0), free(ref);
}
END_TEST

START_TEST(test_backward) {
    gc_seed(2);
    inp = gc_new(N * I, -1, 1), w = gc_new(O * I, -1, 1), dout = gc_new(N * O, -1, 1);
    out = gc_new(N * O, 0, 0);
    float *dinp = gc_fill(N * I, GC_BASE), *dw = gc_fill(O * I, GC_BASE);
    matmul_backward(dinp, dw, dout, inp, w, N, I, O);
    printf("matmul backward:\n");
    gc_check("inp", inp, dinp, N * I, 1, loss, NULL, 1e-3);
    gc_check("w", w, dw, O * I, 1, loss, NULL, 1e-3);
    /* Frozen weight: dw NULL still gives the same dinp. */
    float *dinp2 = gc_fill(N * I, GC_BASE);
    matmul_backward(dinp2, NULL, dout, inp, w, N, I, O);
    for (int a = 0; a < N * I; a++) ck_assert_float_eq(dinp2[a], dinp[a]);
    free(inp), free(w), free(dout), free(out), free(dinp), free(dw), free(dinp2);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("matmul");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_forward);
    tcase_add_test(tc, test_backward);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
