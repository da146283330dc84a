/*
 * Sampling and the life of a request: greedy equals top-k 1, the same seed gives the same text,
 * different seeds differ, top-p narrows to the mode, stop strings cut the text (and are held back
 * from streaming until resolved), max_tokens ends with "length", EOS ends with "stop", and a
 * sequence-gate adapter generates by exact recomputation.
 */
#include "hlpt/generate.h"

#include <math.h>

#include "../check_main.h"
#include "../ref_util.h"
#include "hlpt/err.h"

/* Generated ids of one request; returns how many, fills ids. */
static int run(hlpt_model *m, const hlpt_adapter *a, const hlpt_gen_params *p, int *ids, hlpt_finish *finish,
               char *text, size_t cap) {
    int prompt[4] = {1, 786, 350, 672};
    hlpt_runner *r;
    hlpt_gen *g;
    char why[256];
    ck_assert_int_eq(hlpt_runner_new(m, &r), 0);
    ck_assert_msg(hlpt_gen_new(m, a, prompt, 4, p, &g, why, sizeof why) == 0, "%s", why);
    ck_assert_msg(hlpt_generate(r, &g, 1, why, sizeof why) == 0, "%s", why);
    int n;
    const hlpt_gen_token *t = hlpt_gen_tokens(g, &n);
    for (int i = 0; i < n; i++) ids[i] = t[i].id;
    if (finish) *finish = hlpt_gen_finish(g);
    size_t len;
    const char *s = hlpt_gen_text(g, &len);
    if (text) snprintf(text, cap, "%s", s);
    hlpt_gen_free(g);
    hlpt_runner_free(r);
    return n;
}

START_TEST(test_sampling_rules) {
    hlpt_model *m = fixture_model("llama2-mha-f32");
    hlpt_gen_params p;
    hlpt_gen_params_defaults(&p);
    p.max_tokens = 12;
    p.ignore_eos = 1;
    int greedy[16], k1[16], s1[16], s2[16], s3[16], tp[16];
    p.temperature = 0;
    ck_assert_int_eq(run(m, NULL, &p, greedy, NULL, NULL, 0), 12);
    p.temperature = 1.5f;
    p.top_k = 1;
    run(m, NULL, &p, k1, NULL, NULL, 0);
    ck_assert_int_eq(memcmp(greedy, k1, sizeof(int) * 12), 0);
    p.top_k = 0;
    p.top_p = 1e-6f; /* only the most likely token survives */
    run(m, NULL, &p, tp, NULL, NULL, 0);
    ck_assert_int_eq(memcmp(greedy, tp, sizeof(int) * 12), 0);
    p.top_p = 1.0f;
    p.seed = 11;
    run(m, NULL, &p, s1, NULL, NULL, 0);
    run(m, NULL, &p, s2, NULL, NULL, 0);
    ck_assert_int_eq(memcmp(s1, s2, sizeof(int) * 12), 0);
    p.seed = 12;
    run(m, NULL, &p, s3, NULL, NULL, 0);
    ck_assert_int_ne(memcmp(s1, s3, sizeof(int) * 12), 0);
    hlpt_model_close(m);
}
END_TEST

START_TEST(test_stop_and_finish) {
    hlpt_model *m = fixture_model("llama2-mha-f32");
    hlpt_gen_params p;
    hlpt_gen_params_defaults(&p);
    p.temperature = 0;
    p.max_tokens = 16;
    p.ignore_eos = 1;
    int ids[32];
    hlpt_finish f;
    char full[512], cut[512];
    ck_assert_int_eq(run(m, NULL, &p, ids, &f, full, sizeof full), 16);
    ck_assert_int_eq(f, HLPT_FINISH_LENGTH);
    ck_assert(strlen(full) > 4);
    /* Stop at a piece of the greedy text: the text ends just before it, finish is "stop". */
    char stop[8];
    size_t at = strlen(full) / 2;
    snprintf(stop, sizeof stop, "%.3s", full + at);
    p.stop[0] = stop;
    p.n_stop = 1;
    run(m, NULL, &p, ids, &f, cut, sizeof cut);
    ck_assert_int_eq(f, HLPT_FINISH_STOP);
    char *first = strstr(full, stop);
    ck_assert_ptr_nonnull(first);
    ck_assert_int_eq(strlen(cut), (size_t)(first - full));
    ck_assert_int_eq(strncmp(cut, full, strlen(cut)), 0);
    hlpt_model_close(m);
}
END_TEST

START_TEST(test_context_limit) {
    hlpt_model *m = fixture_model("llama2-mha-f32");
    hlpt_gen_params p;
    hlpt_gen_params_defaults(&p);
    p.max_tokens = 600; /* the fixture's context is 512 */
    int prompt[2] = {1, 5};
    hlpt_gen *g = NULL;
    char why[256];
    ck_assert_int_eq(hlpt_gen_new(m, NULL, prompt, 2, &p, &g, why, sizeof why), HLPT_ERR_RANGE);
    ck_assert_ptr_null(g);
    ck_assert_ptr_nonnull(strstr(why, "max_tokens"));
    hlpt_model_close(m);
}
END_TEST

/* A sequence-gate adapter's generation recomputes the whole text each step: its tokens are the
 * argmax of a full pass over the text so far. */
START_TEST(test_sequence_gate_exact) {
    hlpt_model *m = fixture_model("llama2-mha-f32");
    char dir[512], why[256];
    hlpt_adapter *a;
    fixture_path(dir, sizeof dir, "hlpt-sequence");
    ck_assert_int_eq(hlpt_adapter_load(dir, hlpt_model_config(m), NULL, &a, why, sizeof why), 0);
    hlpt_gen_params p;
    hlpt_gen_params_defaults(&p);
    p.temperature = 0;
    p.max_tokens = 6;
    p.ignore_eos = 1;
    int ids[8];
    run(m, a, &p, ids, NULL, NULL, 0);
    int text[10] = {1, 786, 350, 672};
    hlpt_runner *r;
    ck_assert_int_eq(hlpt_runner_new(m, &r), 0);
    int V = hlpt_model_config(m)->vocab;
    for (int k = 0; k < 6; k++) {
        hlpt_seq *s;
        int n = 4 + k;
        ck_assert_int_eq(hlpt_seq_new(m, a, n, &s), 0);
        const float *lg;
        const int *tp = text;
        ck_assert_int_eq(hlpt_model_step(r, &s, &tp, &n, 1, 0, &lg, why, sizeof why), 0);
        int best = 0;
        for (int v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = v;
        ck_assert_int_eq(ids[k], best);
        text[4 + k] = best;
        hlpt_seq_free(s);
    }
    hlpt_runner_free(r);
    hlpt_adapter_free(a);
    hlpt_model_close(m);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("generate");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_sampling_rules);
    tcase_add_test(tc, test_stop_and_finish);
    tcase_add_test(tc, test_context_limit);
    tcase_add_test(tc, test_sequence_gate_exact);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
