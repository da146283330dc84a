/*
 * The engine (include/hlpt/engine.h): BF16 rounding, the packed layout (store, row lookup), and
 * both product directions at every dispatch (own kernel up to HLPT_ENGINE_SMALL_M rows, oneDNN
 * above) against a double-precision sum over the same BF16-rounded operands, with shapes that leave
 * partial tiles on every side.
 */
#include "hlpt/engine.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../check_main.h"
#include "hlpt/blas.h"
#include "hlpt/err.h"

static float widen(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t round1(float f) {
    uint16_t h;
    hlpt_bf16_from_f32(&h, &f, 1);
    return h;
}

static uint64_t rng = 88172645463325252ULL;
static float uniform(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * 0x1.0p-53) * 2.0f - 1.0f;
}

static int have_bf16(void) {
    char why[128];
    if (hlpt_engine_check(HLPT_BASE_BF16, why, sizeof why) == HLPT_OK) return 1;
    printf("BF16 not available here (%s): BF16 checks not run\n", why);
    return 0;
}

START_TEST(test_rounding) {
    /* Round to nearest, ties to even; NaN stays NaN; the vector and scalar paths agree. */
    ck_assert_uint_eq(round1(1.0f), 0x3f80);
    uint32_t u = 0x3f808000; /* exactly halfway between 0x3f80 and 0x3f81: to even (0x3f80) */
    float f;
    memcpy(&f, &u, 4);
    ck_assert_uint_eq(round1(f), 0x3f80);
    u = 0x3f818000; /* halfway between 0x3f81 and 0x3f82: to even (0x3f82) */
    memcpy(&f, &u, 4);
    ck_assert_uint_eq(round1(f), 0x3f82);
    u = 0x3f808001; /* just above halfway: up */
    memcpy(&f, &u, 4);
    ck_assert_uint_eq(round1(f), 0x3f81);
    ck_assert(isnan(widen(round1(NAN))));
    ck_assert(isinf(widen(round1(INFINITY))));
    float many[40];
    uint16_t h[40];
    for (int i = 0; i < 40; i++) many[i] = uniform() * 1000.0f;
    hlpt_bf16_from_f32(h, many, 40);
    for (int i = 0; i < 40; i++) {
        ck_assert_uint_eq(h[i], round1(many[i]));
        ck_assert(fabsf(widen(h[i]) - many[i]) <= fabsf(many[i]) * 0x1.0p-8f);
    }
}
END_TEST

/* A BF16 weight W[O,I] from random values, stored packed (or row-major), with its rounded copy. */
typedef struct {
    hlpt_weight w;
    void *data;
    float *rounded; /* [O,I] the values the engine multiplies by */
} test_weight;

static test_weight make_weight(int O, int I, int packed) {
    test_weight t;
    float *src = malloc(sizeof(float) * (size_t)O * I);
    t.rounded = malloc(sizeof(float) * (size_t)O * I);
    for (size_t i = 0; i < (size_t)O * I; i++) {
        src[i] = uniform();
        t.rounded[i] = widen(round1(src[i]));
    }
    t.w = (hlpt_weight){.O = O, .I = I, .dtype = HLPT_BASE_BF16, .packed = packed};
    size_t bytes = hlpt_weight_bytes(HLPT_BASE_BF16, packed, O, I);
    ck_assert_uint_eq(bytes % 64, 0);
    t.data = aligned_alloc(64, bytes);
    memset(t.data, 0xff, bytes); /* store must write its padding too */
    hlpt_weight_store(&t.w, t.data, src);
    t.w.data = t.data;
    free(src);
    return t;
}

static void free_weight(test_weight *t) {
    free(t->data);
    free(t->rounded);
}

START_TEST(test_weight_rows) {
    if (!have_bf16()) return;
    for (int packed = 0; packed <= 1; packed++) {
        test_weight t = make_weight(100, 70, packed);
        float row[70];
        for (int o = 0; o < 100; o += 33) {
            hlpt_weight_row(&t.w, o, row);
            ck_assert_mem_eq(row, t.rounded + (size_t)o * 70, sizeof row);
        }
        free_weight(&t);
    }
}
END_TEST

/* Rows of the products: both sides of the kernel/oneDNN threshold and partial tiles. */
/* 57 runs oneDNN at 64 rows through its scratch, 64 straight into the output. */
static const int rows_cases[] = {1, 3, 12, 13, HLPT_ENGINE_SMALL_M, HLPT_ENGINE_SMALL_M + 1, 57, 64};
#define N_ROWS_CASES 8
/* (O, I): outputs and inputs, multiples of the tiles and not; the last is large enough for oneDNN
 * (smaller matrices run the kernel at every row count). */
static const int shapes[][2] = {{64, 64}, {100, 70}, {176, 64}, {1024, 96}, {33, 200}, {1030, 520}};

/* The worst error relative to the sum of |terms| of the same output, so rounding of the F32 sum is
 * all that may differ. */
static double check_product(const float *got, const double *want, const double *mag, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]) / (mag[i] + 1e-30);
        worst = e > worst ? e : worst;
    }
    return worst;
}

/* Loop index N_ROWS_CASES and up: without oneDNN (HLPT_NO_ONEDNN), so the kernel runs every size
 * and the backward repacks by hand. Check forks each test, so the setting stays in that test. */
static void choose_backend(int i) {
    if (i >= N_ROWS_CASES) setenv("HLPT_NO_ONEDNN", "1", 1);
}

START_TEST(test_linear_forward) {
    if (!have_bf16()) return;
    choose_backend(_i);
    int M = rows_cases[_i % N_ROWS_CASES];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int O = shapes[s][0], I = shapes[s][1];
    test_weight t = make_weight(O, I, 1);
        float *x = malloc(sizeof(float) * (size_t)M * I), *out = malloc(sizeof(float) * (size_t)M * O);
        double *want = malloc(sizeof(double) * (size_t)M * O), *mag = malloc(sizeof(double) * (size_t)M * O);
        for (size_t i = 0; i < (size_t)M * I; i++) x[i] = uniform();
        for (int acc = 0; acc <= 1; acc++) {
            for (int m = 0; m < M; m++)
                for (int o = 0; o < O; o++) {
                    double sum = acc ? 0.5 : 0, a = acc ? 0.5 : 0;
                    for (int i = 0; i < I; i++) {
                        double term = (double)widen(round1(x[(size_t)m * I + i])) * t.rounded[(size_t)o * I + i];
                        sum += term;
                        a += fabs(term);
                    }
                    want[(size_t)m * O + o] = sum;
                    mag[(size_t)m * O + o] = a;
                    out[(size_t)m * O + o] = acc ? 0.5f : NAN; /* overwritten when not accumulating */
                }
            hlpt_engine *e;
            ck_assert_int_eq(hlpt_engine_new(&e), HLPT_OK);
            ck_assert_int_eq(hlpt_engine_reserve(e, M, I, 0), HLPT_OK);
            hlpt_linear(e, out, x, &t.w, M, acc);
            double err = check_product(out, want, mag, (size_t)M * O);
            printf("%s forward M=%d O=%d I=%d acc=%d: worst error %.2e of the |terms| sum (tol 1e-5)\n",
                   _i >= N_ROWS_CASES ? "kernel only" : "dispatch", M, O, I, acc, err);
            ck_assert_msg(err <= 1e-5, "forward M=%d O=%d I=%d: %.3e", M, O, I, err);
            hlpt_engine_free(e);
        }
        free(x), free(out), free(want), free(mag);
        free_weight(&t);
    }
}
END_TEST

/* dx[M,I] += dy[M,O] . W against the double reference over the same rounded operands. */
static void check_backward(int M, int O, int I, const char *backend) {
    test_weight t = make_weight(O, I, 1);
    float *dy = malloc(sizeof(float) * (size_t)M * O), *dx = malloc(sizeof(float) * (size_t)M * I);
    double *want = malloc(sizeof(double) * (size_t)M * I), *mag = malloc(sizeof(double) * (size_t)M * I);
    for (size_t i = 0; i < (size_t)M * O; i++) dy[i] = uniform();
    for (int m = 0; m < M; m++)
        for (int i = 0; i < I; i++) {
            double sum = 0.25, a = 0.25;
            for (int o = 0; o < O; o++) {
                double term = (double)widen(round1(dy[(size_t)m * O + o])) * t.rounded[(size_t)o * I + i];
                sum += term;
                a += fabs(term);
            }
            want[(size_t)m * I + i] = sum;
            mag[(size_t)m * I + i] = a;
            dx[(size_t)m * I + i] = 0.25f; /* backward accumulates */
        }
    hlpt_engine *e;
    ck_assert_int_eq(hlpt_engine_new(&e), HLPT_OK);
    ck_assert_int_eq(hlpt_engine_reserve(e, M, O, hlpt_engine_backward_scratch(&t.w)), HLPT_OK);
    hlpt_linear_backward(e, dx, dy, &t.w, M);
    double err = check_product(dx, want, mag, (size_t)M * I);
    printf("%s backward M=%d O=%d I=%d: worst error %.2e of the |terms| sum (tol 1e-5)\n", backend, M, O, I, err);
    ck_assert_msg(err <= 1e-5, "backward M=%d O=%d I=%d: %.3e", M, O, I, err);
    hlpt_engine_free(e);
    free(dy), free(dx), free(want), free(mag);
    free_weight(&t);
}

START_TEST(test_linear_backward) {
    if (!have_bf16()) return;
    choose_backend(_i);
    int M = rows_cases[_i % N_ROWS_CASES];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        check_backward(M, shapes[s][0], shapes[s][1], _i >= N_ROWS_CASES ? "kernel only" : "dispatch");
}
END_TEST

/* A matrix over the backward's slice (about 8 M elements): W is repacked and multiplied a slice of
 * output tiles at a time (1984 + 116 outputs here), by the kernel (3 rows) and by oneDNN (20). */
START_TEST(test_linear_backward_sliced) {
    if (!have_bf16()) return;
    if (_i == 2) choose_backend(N_ROWS_CASES);
    hlpt_weight w = {.O = 2100, .I = 4100, .dtype = HLPT_BASE_BF16, .packed = 1};
    ck_assert_uint_le(hlpt_engine_backward_scratch(&w), (size_t)8 << 20);  /* not the whole 2112 x 4160 */
    check_backward(_i == 0 ? 3 : 20, 2100, 4100, _i == 2 ? "kernel only" : "dispatch");
}
END_TEST

START_TEST(test_dtype_names) {
    hlpt_base_dtype dt;
    ck_assert_int_eq(hlpt_base_dtype_parse("bf16", &dt), HLPT_OK);
    ck_assert_int_eq(dt, HLPT_BASE_BF16);
    ck_assert_int_eq(hlpt_base_dtype_parse("F32", &dt), HLPT_OK);
    ck_assert_int_eq(dt, HLPT_BASE_F32);
    ck_assert_int_eq(hlpt_base_dtype_parse("auto", &dt), HLPT_OK);
    ck_assert_int_eq(dt, HLPT_BASE_AUTO);
    ck_assert_int_eq(hlpt_base_dtype_parse("fp8", &dt), HLPT_ERR_INVAL);
    ck_assert_int_eq(hlpt_base_dtype_parse(NULL, &dt), HLPT_ERR_INVAL);
    ck_assert_int_ne(hlpt_base_dtype_resolve(HLPT_BASE_AUTO), HLPT_BASE_AUTO);
    ck_assert_str_eq(hlpt_base_dtype_name(HLPT_BASE_BF16), "bf16");
    /* F32 storage is row-major float32, 64-byte rounded. */
    ck_assert_uint_eq(hlpt_weight_bytes(HLPT_BASE_F32, 0, 3, 5), 64);
    /* Packed BF16: both sides padded to the tiles (32 inputs, 64 outputs). */
    ck_assert_uint_eq(hlpt_weight_bytes(HLPT_BASE_BF16, 1, 65, 33), 128 * 64 * 2);
}
END_TEST

/* The thread policy (include/hlpt/engine.h): under an F32 base OpenBLAS has the threads and OpenMP
 * one; once a BF16 base is in the process, the other way round, for good. */
START_TEST(test_thread_policy) {
    hlpt_engine_note_base(HLPT_BASE_F32);
    hlpt_engine_set_threads(2);
    ck_assert_int_eq(omp_get_max_threads(), 1);
    ck_assert_int_eq(hlpt_blas_threads(), 2);
    hlpt_engine_note_base(HLPT_BASE_BF16);
    ck_assert_int_eq(omp_get_max_threads(), 2);
    ck_assert_int_eq(hlpt_blas_threads(), 1);
    hlpt_engine_note_base(HLPT_BASE_F32); /* an F32 base opened later changes nothing */
    hlpt_engine_set_threads(3);
    ck_assert_int_eq(omp_get_max_threads(), 3);
    ck_assert_int_eq(hlpt_blas_threads(), 1);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("engine");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_rounding);
    tcase_add_test(tc, test_dtype_names);
    tcase_add_test(tc, test_weight_rows);
    tcase_add_test(tc, test_thread_policy);
    tcase_add_loop_test(tc, test_linear_forward, 0, 2 * N_ROWS_CASES);
    tcase_add_loop_test(tc, test_linear_backward, 0, 2 * N_ROWS_CASES);
    tcase_add_loop_test(tc, test_linear_backward_sliced, 0, 3);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
