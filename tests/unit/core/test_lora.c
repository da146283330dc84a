/*
 * lora: forward (and the saved xa) against double math without gate, with gate, with gate and a
 * dropout mask, and with a rank large enough that the per-chunk row loop runs several chunks;
 * backward for inp, A, B and g against finite differences in the same cases.
 */
#include "layers.h"

#include <string.h>

#include "../check_main.h"
#include "gradcheck.h"

typedef struct {
    int N, I, O, R;
    float scale, p;
    float *inp, *A, *B, *g, *dout, *out0, *out, *xa;
    uint8_t *keep;
} lora_case;

static lora_case make_case(int N, int I, int O, int R, int gated, int masked) {
    lora_case c = {.N = N, .I = I, .O = O, .R = R, .scale = 2.0f, .p = masked ? 0.25f : 0.0f};
    c.inp = gc_new((size_t)N * I, -1, 1), c.A = gc_new((size_t)R * I, -1, 1);
    c.B = gc_new((size_t)O * R, -1, 1), c.dout = gc_new((size_t)N * O, -1, 1);
    c.out0 = gc_new((size_t)N * O, -1, 1), c.out = gc_new((size_t)N * O, 0, 0);
    c.xa = gc_new((size_t)N * R, 0, 0);
    c.g = gated ? gc_new(N, 0.2f, 1.0f) : NULL;
    if (masked) {
        c.keep = malloc((size_t)N * I);
        for (size_t i = 0; i < (size_t)N * I; i++) c.keep[i] = gc_rand() > -0.5f; /* keep 3 in 4 */
    }
    return c;
}

static void free_case(lora_case *c) {
    free(c->inp), free(c->A), free(c->B), free(c->dout), free(c->out0), free(c->out), free(c->xa);
    free(c->g), free(c->keep);
}

static void run_forward(lora_case *c) {
    memcpy(c->out, c->out0, sizeof(float) * c->N * c->O);
    lora_forward(c->out, c->xa, c->inp, c->A, c->B, c->g, c->scale, c->keep, c->p, c->N, c->I, c->O, c->R);
}

static double loss(void *ctx) {
    lora_case *c = ctx;
    run_forward(c);
    return gc_dot(c->out, c->dout, (size_t)c->N * c->O);
}

static void check_forward(lora_case *c) {
    int N = c->N, I = c->I, O = c->O, R = c->R;
    double *xa = malloc(sizeof(double) * N * R), *out = malloc(sizeof(double) * N * O);
    for (int n = 0; n < N; n++) {
        for (int r = 0; r < R; r++) {
            double acc = 0.0;
            for (int i = 0; i < I; i++) {
                double u = c->inp[n * I + i];
                if (c->keep) u = c->keep[n * I + i] ? u / (1.0 - c->p) : 0.0;
                acc += u * c->A[r * I + i];
            }
            xa[n * R + r] = acc;
        }
        for (int o = 0; o < O; o++) {
            double acc = 0.0;
            for (int r = 0; r < R; r++) acc += xa[n * R + r] * c->B[o * R + r];
            out[n * O + o] = c->out0[n * O + o] + (c->g ? c->g[n] : 1.0) * c->scale * acc;
        }
    }
    run_forward(c);
    double ex = gc_maxerr(c->xa, xa, (size_t)N * R), eo = gc_maxerr(c->out, out, (size_t)N * O);
    double tol = 1e-5 * sqrt((double)I * R);
    printf("lora forward N=%d I=%d O=%d R=%d gate=%d mask=%d: xa max error %.3g, out %.3g (tolerance %.2g)\n",
           N, I, O, R, c->g != NULL, c->keep != NULL, ex, eo, tol);
    ck_assert(ex < tol && eo < tol);
    free(xa), free(out);
}

static void check_backward(lora_case *c, size_t step) {
    int N = c->N, I = c->I, O = c->O, R = c->R;
    float *dinp = gc_fill((size_t)N * I, GC_BASE), *dA = gc_fill((size_t)R * I, GC_BASE);
    float *dB = gc_fill((size_t)O * R, GC_BASE), *dg = gc_fill(N, GC_BASE);
    run_forward(c);
    lora_backward(dinp, dA, dB, c->g ? dg : NULL, c->dout, c->xa, c->inp, c->A, c->B, c->g, c->scale,
                  c->keep, c->p, N, I, O, R);
    printf("lora backward N=%d I=%d O=%d R=%d gate=%d mask=%d:\n", N, I, O, R, c->g != NULL, c->keep != NULL);
    gc_check("inp", c->inp, dinp, (size_t)N * I, step, loss, c, 2e-3);
    gc_check("A", c->A, dA, (size_t)R * I, step, loss, c, 2e-3);
    gc_check("B", c->B, dB, (size_t)O * R, step, loss, c, 2e-3);
    if (c->g) gc_check("g", c->g, dg, N, 1, loss, c, 2e-3);
    free(dinp), free(dA), free(dB), free(dg);
}

START_TEST(test_forward) {
    gc_seed(16);
    static const int cases[][6] = {
        /* N, I, O, R, gated, masked */
        {6, 13, 9, 4, 0, 0}, {6, 13, 9, 4, 1, 0}, {6, 13, 9, 4, 1, 1}, {6, 13, 9, 4, 0, 1},
        {13, 5, 6, 700, 1, 0}, {13, 5, 6, 700, 1, 1}, /* 5 rows a chunk: three chunks */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int *q = cases[k];
        lora_case c = make_case(q[0], q[1], q[2], q[3], q[4], q[5]);
        check_forward(&c);
        free_case(&c);
    }
}
END_TEST

START_TEST(test_backward) {
    gc_seed(17);
    static const int cases[][6] = {{5, 7, 6, 3, 0, 0}, {5, 7, 6, 3, 1, 0}, {5, 7, 6, 3, 1, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int *q = cases[k];
        lora_case c = make_case(q[0], q[1], q[2], q[3], q[4], q[5]);
        check_backward(&c, 1);
        free_case(&c);
    }
}
END_TEST

START_TEST(test_backward_chunked) {
    gc_seed(18);
    /* R = 1500: 2 rows a chunk, so N = 5 runs three chunks; a sample of the elements is checked. */
    for (int masked = 0; masked < 2; masked++) {
        lora_case c = make_case(5, 3, 2, 1500, 1, masked);
        check_backward(&c, 37);
        free_case(&c);
    }
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("lora");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_forward);
    tcase_add_test(tc, test_backward);
    tcase_add_test(tc, test_backward_chunked);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
