/* rope: forward against the HF rotate_half formula in double (angle as HF's float product),
 * backward against finite differences and as the exact inverse of forward. */
#include "layers.h"

#include "../check_main.h"
#include "gradcheck.h"

enum { N = 4, NH = 3, D = 8 };
static float inv_freq[D / 2];
static const int pos[N] = {0, 3, 17, 1000};
static float *x, *xr, *dout;

static void init_freq(void) {
    for (int j = 0; j < D / 2; j++) inv_freq[j] = (float)(1.0 / pow(10000.0, 2.0 * j / D));
}

static double loss(void *ctx) {
    (void)ctx;
    for (int i = 0; i < N * NH * D; i++) xr[i] = x[i];
    rope_forward(xr, pos, inv_freq, N, NH, D);
    return gc_dot(xr, dout, N * NH * D);
}

START_TEST(test_forward) {
    gc_seed(5);
    init_freq();
    float *a = gc_new(N * NH * D, -1, 1), *b = malloc(sizeof(float) * N * NH * D);
    double ref[N * NH * D];
    for (int i = 0; i < N * NH * D; i++) b[i] = a[i];
    for (int n = 0; n < N; n++)
        for (int h = 0; h < NH; h++)
            for (int j = 0; j < D / 2; j++) {
                const float *v = a + (n * NH + h) * D;
                double ang = (float)pos[n] * inv_freq[j], c = cos(ang), s = sin(ang);
                ref[(n * NH + h) * D + j] = v[j] * c - v[j + D / 2] * s;
                ref[(n * NH + h) * D + j + D / 2] = v[j + D / 2] * c + v[j] * s;
            }
    rope_forward(b, pos, inv_freq, N, NH, D);
    double e = gc_maxerr(b, ref, N * NH * D);
    printf("rope forward max error %.3g (tolerance 1e-6)\n", e);
    ck_assert(e < 1e-6);
    /* The backward is the inverse rotation: it undoes the forward. */
    rope_backward(b, pos, inv_freq, N, NH, D);
    double back[N * NH * D];
    for (int i = 0; i < N * NH * D; i++) back[i] = a[i];
    double ei = gc_maxerr(b, back, N * NH * D);
    printf("rope backward(forward(x)) - x max %.3g (tolerance 1e-6)\n", ei);
    ck_assert(ei < 1e-6);
    free(a), free(b);
}
END_TEST

START_TEST(test_backward) {
    gc_seed(6);
    init_freq();
    x = gc_new(N * NH * D, -1, 1), xr = gc_new(N * NH * D, 0, 0), dout = gc_new(N * NH * D, -1, 1);
    /* In place: the gradient buffer holds dout and becomes dx (no accumulation for rope). */
    float *dx = malloc(sizeof(float) * N * NH * D);
    for (int i = 0; i < N * NH * D; i++) dx[i] = dout[i];
    rope_backward(dx, pos, inv_freq, N, NH, D);
    for (int i = 0; i < N * NH * D; i++) dx[i] += GC_BASE;
    printf("rope backward:\n");
    gc_check("x", x, dx, N * NH * D, 1, loss, NULL, 1e-3);
    free(x), free(xr), free(dout), free(dx);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("rope");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_forward);
    tcase_add_test(tc, test_backward);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
