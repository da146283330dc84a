/*
 * ref_util.h - tests/fixtures in tests: opening the fixture models and adapters, reading reference
 * tensors as float or int arrays, and the relative L2 error the numeric checks print against their
 * tolerance.
 */
#ifndef HLPT_REF_UTIL_H
#define HLPT_REF_UTIL_H

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "hlpt/model.h"
#include "hlpt/safetensors.h"

/* A fixture base model (e.g. "llama2-mha-f32") with its matrices as dtype, opened or the test
 * fails. */
static inline hlpt_model *fixture_model_as(const char *name, hlpt_base_dtype dtype) {
    char dir[512], why[256] = "";
    hlpt_model *m = NULL;
    fixture_path(dir, sizeof dir, name);
    int err = hlpt_model_open(dir, dtype, &m, why, sizeof why);
    ck_assert_msg(err == 0, "%s: %s", name, why);
    return m;
}

/* The same on the exact F32 path. */
static inline hlpt_model *fixture_model(const char *name) { return fixture_model_as(name, HLPT_BASE_F32); }

/* A fixture adapter (e.g. "hlpt-causal") for base m, loaded or the test fails. */
static inline hlpt_adapter *fixture_adapter(const hlpt_model *m, const char *name) {
    char dir[512], why[256] = "";
    hlpt_adapter *a = NULL;
    fixture_path(dir, sizeof dir, name);
    int err = hlpt_adapter_load(dir, hlpt_model_config(m), hlpt_model_hash(m), &a, why, sizeof why);
    ck_assert_msg(err == 0, "%s: %s", name, why);
    return a;
}

/* Every token's logits [n, V] of ids[n] through m (and adapter a, or NULL) in one fresh sequence,
 * returned owned; fails the test on an error. */
static inline float *model_logits(const hlpt_model *m, const hlpt_adapter *a, const int *ids, int n) {
    hlpt_runner *r;
    hlpt_seq *s;
    const float *lg;
    char why[256] = "";
    size_t cells = (size_t)n * hlpt_model_config(m)->vocab;
    ck_assert_int_eq(hlpt_runner_new(m, &r), 0);
    ck_assert_int_eq(hlpt_seq_new(m, a, n, &s), 0);
    ck_assert_msg(hlpt_model_step(r, &s, &ids, &n, 1, 1, &lg, why, sizeof why) == 0, "%s", why);
    float *out = malloc(sizeof(float) * cells);
    memcpy(out, lg, sizeof(float) * cells);
    hlpt_seq_free(s);
    hlpt_runner_free(r);
    return out;
}

/* The tensor as floats (returns owned); fails the test when absent. */
static inline float *ref_f32(const hlpt_st *st, const char *name, int64_t *numel) {
    const hlpt_st_tensor *t = hlpt_st_find(st, name);
    ck_assert_msg(t != NULL, "reference tensor %s missing", name);
    float *v = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    char why[256] = "";
    ck_assert_msg(hlpt_st_to_f32(t, v, why, sizeof why) == 0, "%s: %s", name, why);
    if (numel) *numel = t->numel;
    return v;
}

/* An I32 tensor as ints (returns owned). */
static inline int *ref_i32(const hlpt_st *st, const char *name, int *n) {
    const hlpt_st_tensor *t = hlpt_st_find(st, name);
    ck_assert_msg(t != NULL && t->dtype == HLPT_DTYPE_I32, "reference tensor %s missing or not I32", name);
    int *v = malloc(sizeof(int) * (size_t)(t->numel ? t->numel : 1));
    memcpy(v, t->data, sizeof(int) * (size_t)t->numel);
    *n = (int)t->numel;
    return v;
}

/* ||got - want|| / ||want|| */
static inline double rel_err(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Prints the error against its tolerance and fails the test when it is over. */
#define CHECK_REL(what, got, want, n, tol)                                               \
    do {                                                                                 \
        double e__ = rel_err((got), (want), (n));                                         \
        printf("%-60s rel err %.2e (tol %.0e)\n", (what), e__, (double)(tol));            \
        ck_assert_msg(e__ <= (tol), "%s: relative error %.3e > %.0e", (what), e__, (double)(tol)); \
    } while (0)

#endif
