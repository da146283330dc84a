/*
 * attention: forward (out and the whole att, masked zeros included) against a double-precision
 * reference, by query (short calls) and by head (T >= 256); P = 0 with g = NULL is plain causal
 * attention; a T-query call equals T one-query calls over the growing key set (the KV-cache
 * property); backward for q, k, v, pk, pv and g against finite differences with a gated prefix and
 * GQA (H=4, KV=2), and without a prefix.
 */
#include "layers.h"

#include <omp.h>
#include <string.h>

#include "../check_main.h"
#include "gradcheck.h"

typedef struct {
    int T, S, P, H, KV, D;
    float *q, *k, *v, *pk, *pv, *g, *out, *att, *dout;
} att_case;

static att_case make_case(int T, int S, int P, int H, int KV, int D, int gated) {
    att_case c = {.T = T, .S = S, .P = P, .H = H, .KV = KV, .D = D};
    c.q = gc_new((size_t)T * H * D, -1, 1);
    c.k = gc_new((size_t)S * KV * D, -1, 1), c.v = gc_new((size_t)S * KV * D, -1, 1);
    c.pk = P ? gc_new((size_t)P * KV * D, -1, 1) : NULL;
    c.pv = P ? gc_new((size_t)P * KV * D, -1, 1) : NULL;
    c.g = gated ? gc_new(T, 0.2f, 1.0f) : NULL;
    c.out = gc_new((size_t)T * H * D, 0, 0), c.att = gc_new((size_t)H * T * (P + S), 9, 9);
    c.dout = gc_new((size_t)T * H * D, -1, 1);
    return c;
}

static void free_case(att_case *c) {
    free(c->q), free(c->k), free(c->v), free(c->pk), free(c->pv), free(c->g), free(c->out);
    free(c->att), free(c->dout);
}

static void forward(att_case *c) {
    attention_forward(c->out, c->att, c->q, c->k, c->v, c->pk, c->pv, c->g, c->T, c->S, c->P, c->H,
                      c->KV, c->D);
}

/* Slot j of kv head kv as the softmax sees it: prefix slots first, then the keys (or values). */
static const float *slot(const float *prefix, const float *keys, int j, int P, int KV, int kv, int D) {
    return j < P ? prefix + ((size_t)j * KV + kv) * D : keys + ((size_t)(j - P) * KV + kv) * D;
}

/* The definition, in double, one (head, query) at a time. */
static void reference(const att_case *c, double *out, double *att) {
    int T = c->T, S = c->S, P = c->P, H = c->H, KV = c->KV, D = c->D, LA = P + S;
    for (int h = 0; h < H; h++) {
        int kv = h / (H / KV);
        for (int t = 0; t < T; t++) {
            int n = S - T + t + 1;
            double g = c->g ? c->g[t] : 1.0, z[LA], mx = -INFINITY, sum = 0.0;
            const float *qt = c->q + ((size_t)t * H + h) * D;
            for (int j = 0; j < P + n; j++) {
                z[j] = gc_dot(qt, slot(c->pk, c->k, j, P, KV, kv, D), D) / sqrt((double)D) * (j < P ? g : 1.0);
                mx = fmax(mx, z[j]);
            }
            for (int j = 0; j < P + n; j++) sum += (z[j] = exp(z[j] - mx));
            double *a = att + ((size_t)h * T + t) * LA, *o = out + ((size_t)t * H + h) * D;
            for (int j = 0; j < LA; j++) a[j] = j < P + n ? z[j] / sum : 0.0;
            for (int d = 0; d < D; d++) {
                double acc = 0.0;
                for (int j = 0; j < P + n; j++)
                    acc += a[j] * slot(c->pv, c->v, j, P, KV, kv, D)[d] * (j < P ? g : 1.0);
                o[d] = acc;
            }
        }
    }
}

static void check_forward(int T, int S, int P, int H, int KV, int D, int gated) {
    att_case c = make_case(T, S, P, H, KV, D, gated);
    size_t no = (size_t)T * H * D, na = (size_t)H * T * (P + S);
    double *ro = malloc(sizeof(double) * no), *ra = malloc(sizeof(double) * na);
    reference(&c, ro, ra);
    forward(&c);
    double eo = gc_maxerr(c.out, ro, no), ea = gc_maxerr(c.att, ra, na);
    for (int h = 0; h < H; h++) /* masked keys are exactly zero */
        for (int t = 0; t < T; t++)
            for (int s = S - T + t + 1; s < S; s++)
                ck_assert_float_eq(c.att[((size_t)h * T + t) * (P + S) + P + s], 0.0f);
    printf("attention forward T=%d S=%d P=%d H=%d KV=%d D=%d gate=%d: out max error %.3g, att %.3g "
           "(tolerance 1e-5)\n", T, S, P, H, KV, D, gated, eo, ea);
    ck_assert(eo < 1e-5 && ea < 1e-5);
    free(ro), free(ra);
    free_case(&c);
}

START_TEST(test_forward) {
    gc_seed(21);
    check_forward(3, 5, 2, 4, 2, 8, 1);     /* by query, past keys, gated prefix, GQA */
    check_forward(1, 9, 3, 4, 1, 8, 1);     /* decoding, all heads on one kv head */
    check_forward(6, 6, 0, 4, 4, 8, 0);     /* plain causal attention (P = 0, g = NULL) */
    check_forward(5, 7, 2, 2, 2, 16, 0);    /* ungated prefix */
    check_forward(260, 263, 3, 4, 2, 8, 1); /* by head */
    check_forward(256, 256, 0, 2, 1, 4, 0); /* by head, plain causal */
}
END_TEST

/* The full call against T single-query calls, query t seeing keys 0..S-T+t (a KV cache). */
static void check_incremental(int T, int S, int P, int gated) {
    enum { H = 4, KV = 2, D = 8 };
    att_case c = make_case(T, S, P, H, KV, D, gated);
    forward(&c);
    float out1[H * D], *att1 = malloc(sizeof(float) * H * (P + S));
    double eo = 0.0, ea = 0.0;
    for (int t = 0; t < T; t++) {
        int n = S - T + t + 1;
        attention_forward(out1, att1, c.q + (size_t)t * H * D, c.k, c.v, c.pk, c.pv, c.g ? c.g + t : NULL,
                          1, n, P, H, KV, D);
        for (int i = 0; i < H * D; i++) eo = fmax(eo, fabs(out1[i] - c.out[(size_t)t * H * D + i]));
        for (int h = 0; h < H; h++)
            for (int j = 0; j < P + n; j++)
                ea = fmax(ea, fabs(att1[h * (P + n) + j] - c.att[((size_t)h * T + t) * (P + S) + j]));
    }
    printf("attention T=%d S=%d P=%d as %d one-query calls: out max diff %.3g, att %.3g (tolerance 1e-5)\n",
           T, S, P, T, eo, ea);
    ck_assert(eo < 1e-5 && ea < 1e-5);
    free(att1);
    free_case(&c);
}

START_TEST(test_incremental) {
    gc_seed(22);
    check_incremental(7, 7, 2, 1);
    check_incremental(5, 9, 0, 0);
    check_incremental(300, 300, 3, 1); /* the prompt by head, the steps by query */
}
END_TEST

static double loss(void *ctx) {
    att_case *c = ctx;
    forward(c);
    return gc_dot(c->out, c->dout, (size_t)c->T * c->H * c->D);
}

static void check_backward(int T, int S, int P, int H, int KV, int D, int gated, size_t step) {
    att_case c = make_case(T, S, P, H, KV, D, gated);
    size_t nq = (size_t)T * H * D, nk = (size_t)S * KV * D, np = (size_t)P * KV * D;
    float *dq = gc_fill(nq, GC_BASE), *dk = gc_fill(nk, GC_BASE), *dv = gc_fill(nk, GC_BASE);
    float *dpk = gc_fill(np, GC_BASE), *dpv = gc_fill(np, GC_BASE), *dg = gc_fill(T, GC_BASE);
    forward(&c);
    attention_backward(dq, dk, dv, P ? dpk : NULL, P ? dpv : NULL, gated ? dg : NULL, c.dout, c.att, c.q,
                       c.k, c.v, c.pk, c.pv, c.g, T, S, P, H, KV, D);
    printf("attention backward T=%d S=%d P=%d H=%d KV=%d D=%d gate=%d:\n", T, S, P, H, KV, D, gated);
    gc_check("q", c.q, dq, nq, step, loss, &c, 2e-3);
    gc_check("k", c.k, dk, nk, step, loss, &c, 2e-3);
    gc_check("v", c.v, dv, nk, step, loss, &c, 2e-3);
    if (P) {
        gc_check("pk", c.pk, dpk, np, 1, loss, &c, 2e-3);
        gc_check("pv", c.pv, dpv, np, 1, loss, &c, 2e-3);
    }
    if (gated) gc_check("g", c.g, dg, T, 1, loss, &c, 2e-3);
    /* Only dq asked for: the same dq (att again from unperturbed inputs). */
    float *dq2 = gc_fill(nq, GC_BASE);
    forward(&c);
    attention_backward(dq2, NULL, NULL, NULL, NULL, NULL, c.dout, c.att, c.q, c.k, c.v, c.pk, c.pv, c.g,
                       T, S, P, H, KV, D);
    for (size_t i = 0; i < nq; i++) ck_assert_float_eq(dq2[i], dq[i]);
    free(dq), free(dk), free(dv), free(dpk), free(dpv), free(dg), free(dq2);
    free_case(&c);
}

START_TEST(test_backward_prefix_gqa) {
    gc_seed(23);
    check_backward(3, 5, 2, 4, 2, 4, 1, 1);
}
END_TEST

START_TEST(test_backward_plain) {
    gc_seed(24);
    check_backward(4, 4, 0, 2, 2, 4, 0, 1);
}
END_TEST

START_TEST(test_backward_long) {
    gc_seed(25);
    /* A prompt long enough for the by-head forward; a sample of q, k, v. */
    check_backward(257, 259, 2, 4, 2, 4, 1, 11);
}
END_TEST

/* The head- and query-parallel loops give the same bits on 1 and 2 threads (large enough to run in
 * parallel: T x S x H x D over a million), forward both ways (by query, by head) and backward with a
 * gated prefix. */
static void run_threads(int threads, int T, int S, float **res, size_t *n) {
    gc_seed(31);
    att_case c = make_case(T, S, 4, 8, 2, 64, 1);
    omp_set_num_threads(threads);
    attention_forward(c.out, c.att, c.q, c.k, c.v, c.pk, c.pv, c.g, T, S, 4, 8, 2, 64);
    size_t nq = (size_t)T * 8 * 64, nk = (size_t)S * 2 * 64, np = 4 * 2 * 64;
    *n = nq + nq + nk + nk + np + np + (size_t)T;
    float *r = calloc(*n, sizeof(float));
    memcpy(r, c.out, sizeof(float) * nq);
    float *dq = r + nq, *dk = dq + nq, *dv = dk + nk, *dpk = dv + nk, *dpv = dpk + np, *dg = dpv + np;
    attention_backward(dq, dk, dv, dpk, dpv, dg, c.dout, c.att, c.q, c.k, c.v, c.pk, c.pv, c.g, T, S, 4, 8, 2, 64);
    *res = r;
    free_case(&c);
}

START_TEST(test_threads_same_bits) {
    int T = _i == 0 ? 40 : 300, S = _i == 0 ? 500 : 300; /* by query (decoding a long context), by head */
    float *one, *two;
    size_t n1, n2;
    run_threads(1, T, S, &one, &n1);
    run_threads(2, T, S, &two, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert_msg(memcmp(one, two, sizeof(float) * n1) == 0, "T=%d S=%d: 1 and 2 threads differ", T, S);
    free(one), free(two);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("attention");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_forward);
    tcase_add_test(tc, test_incremental);
    tcase_add_test(tc, test_backward_prefix_gqa);
    tcase_add_test(tc, test_backward_plain);
    tcase_add_test(tc, test_backward_long);
    tcase_add_loop_test(tc, test_threads_same_bits, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
