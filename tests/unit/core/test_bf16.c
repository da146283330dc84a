/*
 * The base in BF16 (include/hlpt/engine.h) against the F32 references of tests/fixtures, with the
 * tolerances PyTorch's own BF16 autocast meets on the same fixtures: logits within 2e-2 relative L2
 * and 3e-2 max-abs error over the largest |logit|; the first 8 greedy tokens identical (up to a
 * tie in HF's own logits, below); adapter gradients with cosine similarity >= 0.998 to the F32
 * references for every LoRA and prefix tensor (gate vectors: below) and >= 0.999 on average. Also:
 * the base hash does not depend on the dtype, and a BF16 arena in shared memory serves the same
 * logits as a private one.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../check_main.h"
#include "../ref_util.h"
#include "hlpt/engine.h"
#include "hlpt/err.h"
#include "hlpt/model.h"

static const char *const bases[] = {"llama2-mha-f32", "llama3-gqa-tied-bf16"};
static const char *const adapters[] = {"hlpt-causal", "hlpt-sequence", "peft-lora-qv"};

static int have_bf16(void) {
    char why[128];
    if (hlpt_engine_check(HLPT_BASE_BF16, why, sizeof why) == HLPT_OK) return 1;
    printf("BF16 not available here (%s): BF16 checks not run\n", why);
    return 0;
}

static hlpt_st *open_ref(const char *dir) {
    char path[512], rel[256], why[256] = "";
    hlpt_st *st = NULL;
    snprintf(rel, sizeof rel, "%s/ref.safetensors", dir);
    ck_assert_msg(hlpt_st_open(fixture_path(path, sizeof path, rel), &st, why, sizeof why) == 0, "%s", why);
    return st;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* The F32 model's logits over the prompt and the first k greedy tokens of HF: [n + k - 1, V],
 * returns owned. */
static float *greedy_f32_logits(const char *name, const int *ids, int n, const int *greedy, int k) {
    hlpt_model *m = fixture_model(name);
    int *all = malloc(sizeof(int) * (size_t)(n + k - 1));
    memcpy(all, ids, sizeof(int) * (size_t)n);
    memcpy(all + n, greedy, sizeof(int) * (size_t)(k - 1));
    float *out = model_logits(m, NULL, all, n + k - 1);
    hlpt_model_close(m);
    free(all);
    return out;
}

START_TEST(test_logits_and_greedy) {
    if (!have_bf16()) return;
    const char *name = bases[_i];
    hlpt_model *m = fixture_model_as(name, HLPT_BASE_BF16);
    ck_assert_int_eq(hlpt_model_dtype(m), HLPT_BASE_BF16);
    hlpt_st *ref = open_ref(name);
    hlpt_runner *r;
    ck_assert_int_eq(hlpt_runner_new(m, &r), 0);
    int V = hlpt_model_config(m)->vocab;
    for (int c = 0; c < 3; c++) {
        char key[64], why[256] = "";
        int n, ng;
        snprintf(key, sizeof key, "case%d.input_ids", c);
        int *ids = ref_i32(ref, key, &n);
        snprintf(key, sizeof key, "case%d.logits", c);
        float *want = ref_f32(ref, key, NULL);
        snprintf(key, sizeof key, "case%d.greedy", c);
        int *greedy = ref_i32(ref, key, &ng);
        hlpt_seq *s;
        ck_assert_int_eq(hlpt_seq_new(m, NULL, n + 8, &s), 0);
        const float *got;
        const int *tp = ids;
        ck_assert_msg(hlpt_model_step(r, &s, &tp, &n, 1, 1, &got, why, sizeof why) == 0, "%s", why);
        double l2 = rel_err(got, want, (size_t)n * V), maxerr = 0, maxref = 0;
        for (size_t i = 0; i < (size_t)n * V; i++) {
            maxerr = fmax(maxerr, fabs((double)got[i] - want[i]));
            maxref = fmax(maxref, fabs((double)want[i]));
        }
        printf("%s case %d bf16 logits: rel L2 %.2e (tol 2e-2), max-abs/max|logit| %.2e (tol 3e-2)\n", name, c, l2,
               maxerr / maxref);
        ck_assert_msg(l2 <= 2e-2, "%s case %d: rel L2 %.3e", name, c, l2);
        ck_assert_msg(maxerr / maxref <= 3e-2, "%s case %d: max-abs %.3e", name, c, maxerr / maxref);
        /* Greedy decoding through the BF16 KV cache, one token a step. A step where HF's own two best
         * logits lie closer than the logits' tolerance is a tie that any BF16 arithmetic may break
         * either way (llama3-gqa-tied-bf16 case 0 has one at step 7: a gap of 0.005 on logits of 2.1):
         * the comparison stops there, after at least strict_tokens identical ones. */
        int tok = argmax(got + (size_t)(n - 1) * V, V), same = 0;
        float *f32_logits = NULL;
        for (int k = 0; k < 8; k++) {
            if (tok != greedy[k]) {
                f32_logits = f32_logits ? f32_logits : greedy_f32_logits(name, ids, n, greedy, 8);
                const float *row = f32_logits + (size_t)(n - 1 + k) * V;
                double gap = row[greedy[k]] - row[tok];
                printf("%s case %d: step %d differs (%d vs HF %d), HF's gap %.4f of max |logit| %.2f\n", name, c, k,
                       tok, greedy[k], gap, maxref);
                ck_assert_msg(gap <= 3e-2 * maxref && k >= 4,
                              "%s case %d: greedy token %d is %d, HF says %d (gap %.4f)", name, c, k, tok, greedy[k], gap);
                break;
            }
            same++;
            if (k == 7) break;
            const int *one = &tok;
            int n1 = 1;
            ck_assert_int_eq(hlpt_model_step(r, &s, &one, &n1, 1, 0, &got, why, sizeof why), 0);
            tok = argmax(got, V);
        }
        ck_assert_msg(same == 8 || strcmp(name, "llama2-mha-f32") != 0, "llama2-mha-f32 keeps all 8 tokens");
        free(f32_logits);
        printf("%s case %d: %d greedy tokens identical\n", name, c, same);
        hlpt_seq_free(s);
        free(ids), free(want), free(greedy);
    }
    hlpt_runner_free(r);
    hlpt_st_close(ref);
    hlpt_model_close(m);
}
END_TEST

static double cosine(const float *a, const float *b, size_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / (sqrt(aa * bb) + 1e-300);
}

START_TEST(test_adapter_gradients) {
    if (!have_bf16()) return;
    const char *name = adapters[_i];
    hlpt_model *m = fixture_model_as("llama2-mha-f32", HLPT_BASE_BF16);
    hlpt_adapter *a = fixture_adapter(m, name); /* the hash is the F32 one: it loads */
    hlpt_st *ref = open_ref(name);
    char why[256] = "";
    int n, nl;
    int *ids = ref_i32(ref, "input_ids", &n);
    int *labels = ref_i32(ref, "labels", &nl);
    float *want_loss = ref_f32(ref, "loss", NULL);
    hlpt_runner *r;
    ck_assert_int_eq(hlpt_runner_new(m, &r), 0);
    float *grads = calloc(a->n_params, sizeof(float));
    hlpt_train_opts o = {.train = 0};
    hlpt_loss loss;
    ck_assert_int_eq(hlpt_model_train_step(r, a, ids, labels, &n, 1, &o, NULL, 0, &loss, why, sizeof why), 0);
    int targets = loss.n_targets;
    ck_assert_int_eq(hlpt_model_train_step(r, a, ids, labels, &n, 1, &o, grads, 1.0f / targets, &loss, why, sizeof why), 0);
    double mean_loss = loss.loss_sum / targets;
    printf("%s bf16 loss %.5f vs F32 reference %.5f\n", name, mean_loss, want_loss[0]);
    ck_assert(fabs(mean_loss - want_loss[0]) <= 2e-2 * fabs(want_loss[0]));
    /* Gate vectors of the causal mode are the one place where rounding the F32 fixture's weights to
     * BF16 (not the BF16 arithmetic: with activations carried exactly, as a hi/lo split shows, layer
     * 2's gate still lands at 0.9965) moves the exact gradient by more than 0.998: the causal gate's
     * gradient sums many small terms of both signs. They are held to 0.995; every LoRA and prefix
     * tensor to 0.998. */
    double worst = 1, worst_gate = 1, sum = 0;
    for (int i = 0; i < a->n_tensors; i++) {
        const hlpt_adapter_tensor *t = &a->tensors[i];
        char key[200];
        snprintf(key, sizeof key, "grad.%s", t->name);
        int64_t numel;
        float *g = ref_f32(ref, key, &numel);
        double cs = cosine(grads + t->offset, g, t->numel);
        if (getenv("HLPT_TEST_VERBOSE")) printf("  %s cosine %.5f\n", t->name, cs);
        if (strstr(t->name, "gate.weight")) worst_gate = fmin(worst_gate, cs);
        else worst = fmin(worst, cs);
        sum += cs;
        free(g);
    }
    double mean = sum / a->n_tensors;
    printf("%s bf16 gradients: %d tensors, cosine to F32 min %.5f (tol 0.998), gates min %.5f (tol 0.995), mean "
           "%.5f (tol 0.999)\n", name, a->n_tensors, worst, worst_gate, mean);
    ck_assert_msg(worst >= 0.998 && worst_gate >= 0.995 && mean >= 0.999, "%s: cosine min %.5f gates %.5f mean %.5f",
                  name, worst, worst_gate, mean);
    free(grads), free(ids), free(labels), free(want_loss);
    hlpt_runner_free(r);
    hlpt_st_close(ref);
    hlpt_adapter_free(a);
    hlpt_model_close(m);
}
END_TEST

START_TEST(test_hash_and_shared_arena) {
    if (!have_bf16()) return;
    const char *name = bases[_i];
    char dir[512], why[256] = "";
    fixture_path(dir, sizeof dir, name);
    hlpt_model *f32 = fixture_model_as(name, HLPT_BASE_F32), *priv = fixture_model_as(name, HLPT_BASE_BF16);
    ck_assert_str_eq(hlpt_model_hash(f32), hlpt_model_hash(priv));
    /* BF16 halves the matrices (packing pads the tiny fixtures' tiles, so compare loosely). */
    ck_assert_uint_lt(hlpt_model_matrix_bytes(priv), hlpt_model_matrix_bytes(f32));
    hlpt_model *owner, *att;
    ck_assert_msg(hlpt_model_open_shared(dir, HLPT_BASE_BF16, &owner, why, sizeof why) == 0, "%s", why);
    ck_assert_msg(hlpt_model_attach(dir, hlpt_model_fd(owner), &att, why, sizeof why) == 0, "%s", why);
    ck_assert_int_eq(hlpt_model_dtype(att), HLPT_BASE_BF16);
    ck_assert_str_eq(hlpt_model_hash(att), hlpt_model_hash(f32));
    int V = hlpt_model_config(priv)->vocab, ids[9] = {1, 5, 9, 13, 17, 21, 25, 29, 33}, n = 9;
    float *out[2] = {model_logits(priv, NULL, ids, n), model_logits(att, NULL, ids, n)};
    ck_assert_mem_eq(out[0], out[1], sizeof(float) * (size_t)n * V);
    free(out[0]), free(out[1]);
    hlpt_model_close(att);
    hlpt_model_close(owner);
    hlpt_model_close(priv);
    hlpt_model_close(f32);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("bf16");
    TCase *tc = tcase_create("bf16");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_logits_and_greedy, 0, 2);
    tcase_add_loop_test(tc, test_adapter_gradients, 0, 3);
    tcase_add_loop_test(tc, test_hash_and_shared_arena, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
