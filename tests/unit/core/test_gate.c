/* gate: the three modes against double math; causal continuation across calls (carried sum and
 * count) gives bit-identical g; backward of causal and sequence against finite differences. */
#include "layers.h"

#include "hlpt/adapter.h"

#include "../check_main.h"
#include "gradcheck.h"

enum { T = 7, I = 19 };
static float *inp, *w, *dg, g[T], s[T];
static int mode;

static double loss(void *ctx) {
    (void)ctx;
    gate_forward(g, s, inp, w, T, I, mode, NULL, NULL);
    return gc_dot(g, dg, T);
}

START_TEST(test_forward) {
    gc_seed(11);
    float *x = gc_new(T * I, -1, 1), *wt = gc_new(I, -1, 1);
    double sr[T], gr[T];
    for (int t = 0; t < T; t++) sr[t] = 1.0 / (1.0 + exp(-gc_dot(x + t * I, wt, I)));
    static const int modes[] = {HLPT_GATE_NONE, HLPT_GATE_SEQUENCE, HLPT_GATE_CAUSAL};
    for (int m = 0; m < 3; m++) {
        double run = 0.0, all = 0.0;
        for (int t = 0; t < T; t++) all += sr[t];
        for (int t = 0; t < T; t++) {
            run += sr[t];
            gr[t] = modes[m] == HLPT_GATE_NONE ? 1.0 : modes[m] == HLPT_GATE_SEQUENCE ? all / T : run / (t + 1);
        }
        gate_forward(g, s, x, wt, T, I, modes[m], NULL, NULL);
        double es = gc_maxerr(s, sr, T), eg = gc_maxerr(g, gr, T);
        printf("gate forward mode %d: s max error %.3g, g %.3g (tolerance 1e-6)\n", modes[m], es, eg);
        ck_assert(es < 1e-6 && eg < 1e-6);
    }
    free(x), free(wt);
}
END_TEST

START_TEST(test_causal_continuation) {
    gc_seed(12);
    float *x = gc_new(T * I, -1, 1), *wt = gc_new(I, -1, 1);
    float g1[T], s1[T], g2[T], s2[T];
    double sum1 = 0.0, sum2 = 0.0;
    int cnt1 = 0, cnt2 = 0;
    gate_forward(g1, s1, x, wt, T, I, HLPT_GATE_CAUSAL, &sum1, &cnt1);
    /* The same tokens as a prompt of 3, then one at a time (KV-cache decoding). */
    gate_forward(g2, s2, x, wt, 3, I, HLPT_GATE_CAUSAL, &sum2, &cnt2);
    for (int t = 3; t < T; t++)
        gate_forward(g2 + t, s2 + t, x + t * I, wt, 1, I, HLPT_GATE_CAUSAL, &sum2, &cnt2);
    for (int t = 0; t < T; t++) {
        ck_assert_float_eq(g1[t], g2[t]);
        ck_assert_float_eq(s1[t], s2[t]);
    }
    ck_assert(sum1 == sum2);
    ck_assert_int_eq(cnt1, T);
    ck_assert_int_eq(cnt2, T);
    free(x), free(wt);
}
END_TEST

static void check_backward(int m) {
    mode = m;
    inp = gc_new(T * I, -1, 1), w = gc_new(I, -1, 1), dg = gc_new(T, -1, 1);
    float *dinp = gc_fill(T * I, GC_BASE), *dw = gc_fill(I, GC_BASE);
    gate_forward(g, s, inp, w, T, I, mode, NULL, NULL);
    gate_backward(dinp, dw, dg, s, inp, w, T, I, mode);
    printf("gate backward, mode %d:\n", m);
    gc_check("inp", inp, dinp, T * I, 1, loss, NULL, 1e-3);
    gc_check("w", w, dw, I, 1, loss, NULL, 1e-3);
    free(inp), free(w), free(dg), free(dinp), free(dw);
}

START_TEST(test_backward_causal) {
    gc_seed(13);
    check_backward(HLPT_GATE_CAUSAL);
}
END_TEST

START_TEST(test_backward_sequence) {
    gc_seed(14);
    check_backward(HLPT_GATE_SEQUENCE);
}
END_TEST

START_TEST(test_backward_none) {
    gc_seed(15);
    float *x = gc_new(T * I, -1, 1), *wt = gc_new(I, -1, 1), *d = gc_new(T, -1, 1);
    float *dinp = gc_fill(T * I, GC_BASE), *dw = gc_fill(I, GC_BASE);
    gate_forward(g, s, x, wt, T, I, HLPT_GATE_NONE, NULL, NULL);
    gate_backward(dinp, dw, d, s, x, wt, T, I, HLPT_GATE_NONE); /* g = 1 has no gradient */
    for (int i = 0; i < T * I; i++) ck_assert_float_eq(dinp[i], GC_BASE);
    for (int i = 0; i < I; i++) ck_assert_float_eq(dw[i], GC_BASE);
    free(x), free(wt), free(d), free(dinp), free(dw);
}
END_TEST

static Suite *suite(void) {
    Suite *su = suite_create("gate");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_forward);
    tcase_add_test(tc, test_causal_continuation);
    tcase_add_test(tc, test_backward_causal);
    tcase_add_test(tc, test_backward_sequence);
    tcase_add_test(tc, test_backward_none);
    suite_add_tcase(su, tc);
    return su;
}

HLPT_CHECK_MAIN()
