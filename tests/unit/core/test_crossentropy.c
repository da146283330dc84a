/* crossentropy: loss sum and count against double log-sum-exp (ignored rows, huge logits), dlogits
 * against finite differences of dscale * loss, written in place and zero on ignored rows. */
#include "layers.h"

#include "../check_main.h"
#include "gradcheck.h"

enum { N = 4, V = 13 };
static float *logits;
static const int targets[N] = {3, -100, 0, 12};
static const float DSCALE = 0.5f;

static double ref_loss(const float *x, const int *tg, int n, int v, int *counted) {
    double total = 0.0;
    *counted = 0;
    for (int r = 0; r < n; r++) {
        if (tg[r] == -100) continue;
        const float *row = x + (size_t)r * v;
        double mx = row[0], s = 0.0;
        for (int i = 1; i < v; i++) mx = fmax(mx, row[i]);
        for (int i = 0; i < v; i++) s += exp(row[i] - mx);
        total += mx + log(s) - row[tg[r]];
        (*counted)++;
    }
    return total;
}

static double loss(void *ctx) {
    (void)ctx;
    return DSCALE * crossentropy_forward_backward(NULL, logits, targets, N, V, 1.0f, NULL);
}

START_TEST(test_loss) {
    gc_seed(9);
    float *x = gc_new(N * V, -5, 5);
    for (int i = 0; i < V; i++) x[2 * V + i] += 2000.0f; /* row 2 would overflow a naive exp */
    int cnt = -1, rcnt = 0;
    double l = crossentropy_forward_backward(NULL, x, targets, N, V, 1.0f, &cnt);
    double r = ref_loss(x, targets, N, V, &rcnt);
    printf("crossentropy loss %.9g reference %.9g, error %.3g (tolerance 1e-4)\n", l, r, fabs(l - r));
    ck_assert(isfinite(l) && fabs(l - r) < 1e-4);
    ck_assert_int_eq(cnt, rcnt);
    ck_assert_int_eq(cnt, 3);
    free(x);
}
END_TEST

START_TEST(test_grad) {
    gc_seed(10);
    logits = gc_new(N * V, -3, 3);
    float *d = gc_new(N * V, 7, 8); /* garbage: the kernel writes, not accumulates */
    crossentropy_forward_backward(d, logits, targets, N, V, DSCALE, NULL);
    for (int i = 0; i < V; i++) ck_assert_float_eq(d[1 * V + i], 0.0f); /* ignored row */
    /* In place gives the same. */
    float *inplace = malloc(sizeof(float) * N * V);
    for (int i = 0; i < N * V; i++) inplace[i] = logits[i];
    crossentropy_forward_backward(inplace, inplace, targets, N, V, DSCALE, NULL);
    for (int i = 0; i < N * V; i++) ck_assert_float_eq(inplace[i], d[i]);
    for (int i = 0; i < N * V; i++) d[i] += GC_BASE;
    printf("crossentropy backward:\n");
    gc_check("logits", logits, d, N * V, 1, loss, NULL, 1e-3);
    free(logits), free(d), free(inplace);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("crossentropy");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_loss);
    tcase_add_test(tc, test_grad);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
