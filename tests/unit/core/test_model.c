/*
 * The base model against HF transformers (tests/fixtures): logits of every case of both fixture
 * models, greedy continuations, KV-cache decoding against full recomputation, batching of unequal
 * sequences, and the sealed shared-memory arena.
 */
#include "hlpt/model.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../check_main.h"
#include "../ref_util.h"
#include "hlpt/err.h"
#include "hlpt/generate.h"

static const char *const bases[] = {"llama2-mha-f32", "llama3-gqa-tied-bf16"};

static hlpt_st *open_ref(const char *name) {
    char path[512], why[256] = "";
    hlpt_st *st = NULL;
    char rel[256];
    snprintf(rel, sizeof rel, "%s/ref.safetensors", name);
    fixture_path(path, sizeof path, rel);
    ck_assert_msg(hlpt_st_open(path, &st, why, sizeof why) == 0, "%s: %s", path, why);
    return st;
}

START_TEST(test_logits_match_transformers) {
    const char *name = bases[_i];
    hlpt_model *m = fixture_model(name);
    hlpt_st *ref = open_ref(name);
    hlpt_runner *r;
    ck_assert_int_eq(hlpt_runner_new(m, &r), 0);
    int V = hlpt_model_config(m)->vocab;
    for (int c = 0; c < 3; c++) {
        char key[64], what[128], why[256] = "";
        int n;
        snprintf(key, sizeof key, "case%d.input_ids", c);
        int *ids = ref_i32(ref, key, &n);
        snprintf(key, sizeof key, "case%d.logits", c);
        float *want = ref_f32(ref, key, NULL);
        hlpt_seq *s;
        ck_assert_int_eq(hlpt_seq_new(m, NULL, n, &s), 0);
        const float *got;
        const int *tp = ids;
        ck_assert_msg(hlpt_model_step(r, &s, &tp, &n, 1, 1, &got, why, sizeof why) == 0, "%s", why);
        snprintf(what, sizeof what, "%s case %d logits", name, c);
        CHECK_REL(what, got, want, (size_t)n * V, 1e-4);
        hlpt_seq_free(s);
        free(ids);
        free(want);
    }
    hlpt_runner_free(r);
    hlpt_st_close(ref);
    hlpt_model_close(m);
}
END_TEST

START_TEST(test_greedy_matches_transformers) {
    const char *name = bases[_i];
    hlpt_model *m = fixture_model(name);
    hlpt_st *ref = open_ref(name);
    hlpt_runner *r;
    ck_assert_int_eq(hlpt_runner_new(m, &r), 0);
    for (int c = 0; c < 3; c++) {
        char key[64], why[256] = "";
        int n, ng;
        snprintf(key, sizeof key, "case%d.input_ids", c);
        int *ids = ref_i32(ref, key, &n);
        snprintf(key, sizeof key, "case%d.greedy", c);
        int *want = ref_i32(ref, key, &ng);
        hlpt_gen_params p;
        hlpt_gen_params_defaults(&p);
        p.temperature = 0;
        p.max_tokens = ng;
        p.ignore_eos = 1;
        hlpt_gen *g;
        ck_assert_msg(hlpt_gen_new(m, NULL, ids, n, &p, &g, why, sizeof why) == 0, "%s", why);
        ck_assert_msg(hlpt_generate(r, &g, 1, why, sizeof why) == 0, "%s", why);
        int nt;
        const hlpt_gen_token *toks = hlpt_gen_tokens(g, &nt);
        ck_assert_int_eq(nt, ng);
        for (int i = 0; i < ng; i++)
            ck_assert_msg(toks[i].id == want[i], "%s case %d: token %d is %d, transformers gives %d", name, c, i,
                          toks[i].id, want[i]);
        printf("%s case %d: %d greedy tokens identical\n", name, c, ng);
        hlpt_gen_free(g);
        free(ids);
        free(want);
    }
    hlpt_runner_free(r);
    hlpt_st_close(ref);
    hlpt_model_close(m);
}
END_TEST

/* Feeding a sequence in pieces through the KV cache gives the logits of one full pass. */
START_TEST(test_kv_cache_equals_recompute) {
    hlpt_model *m = fixture_model(bases[_i]);
    int V = hlpt_model_config(m)->vocab;
    int ids[20];
    for (int i = 0; i < 20; i++) ids[i] = 3 + (i * 37) % (V - 3);
    hlpt_runner *r;
    ck_assert_int_eq(hlpt_runner_new(m, &r), 0);
    hlpt_seq *full, *inc;
    ck_assert_int_eq(hlpt_seq_new(m, NULL, 20, &full), 0);
    ck_assert_int_eq(hlpt_seq_new(m, NULL, 20, &inc), 0);
    const float *lg;
    char why[256];
    int n = 20;
    const int *tp = ids;
    ck_assert_int_eq(hlpt_model_step(r, &full, &tp, &n, 1, 1, &lg, why, sizeof why), 0);
    float *want = malloc(sizeof(float) * 20 * V);
    memcpy(want, lg, sizeof(float) * 20 * V);
    /* pieces of 7, 1, 1, 11 tokens */
    int pieces[] = {7, 1, 1, 11}, at = 0;
    for (int k = 0; k < 4; k++) {
        tp = ids + at;
        ck_assert_int_eq(hlpt_model_step(r, &inc, &tp, &pieces[k], 1, 1, &lg, why, sizeof why), 0);
        char what[96];
        snprintf(what, sizeof what, "%s cached piece %d vs full pass", bases[_i], k);
        CHECK_REL(what, lg, want + (size_t)at * V, (size_t)pieces[k] * V, 1e-5);
        at += pieces[k];
    }
    ck_assert_int_eq(hlpt_seq_len(inc), 20);
    /* One more token than the capacity is an error, not an overflow. */
    int one = 5;
    tp = &one;
    ck_assert_int_eq(hlpt_model_step(r, &inc, &tp, &(int){1}, 1, 0, &lg, why, sizeof why), HLPT_ERR_RANGE);
    free(want);
    hlpt_seq_free(full);
    hlpt_seq_free(inc);
    hlpt_runner_free(r);
    hlpt_model_close(m);
}
END_TEST

/* Two sequences of different lengths in one step get the logits each gets alone. */
START_TEST(test_batch_equals_alone) {
    hlpt_model *m = fixture_model(bases[0]);
    int V = hlpt_model_config(m)->vocab;
    int a[9] = {1, 50, 60, 70, 80, 90, 100, 110, 120}, b[4] = {1, 400, 500, 600};
    hlpt_runner *r;
    ck_assert_int_eq(hlpt_runner_new(m, &r), 0);
    hlpt_seq *sa, *sb;
    ck_assert_int_eq(hlpt_seq_new(m, NULL, 16, &sa), 0);
    ck_assert_int_eq(hlpt_seq_new(m, NULL, 16, &sb), 0);
    const float *lg;
    char why[256];
    float want[2][1024];
    int na = 9, nb = 4;
    const int *pa = a, *pb = b;
    ck_assert_int_eq(hlpt_model_step(r, &sa, &pa, &na, 1, 0, &lg, why, sizeof why), 0);
    memcpy(want[0], lg, sizeof(float) * V);
    ck_assert_int_eq(hlpt_model_step(r, &sb, &pb, &nb, 1, 0, &lg, why, sizeof why), 0);
    memcpy(want[1], lg, sizeof(float) * V);
    hlpt_seq_reset(sa);
    hlpt_seq_reset(sb);
    hlpt_seq *both[2] = {sa, sb};
    const int *toks[2] = {a, b};
    int ns[2] = {9, 4};
    ck_assert_int_eq(hlpt_model_step(r, both, toks, ns, 2, 0, &lg, why, sizeof why), 0);
    CHECK_REL("batched sequence 0 vs alone", lg, want[0], (size_t)V, 1e-5);
    CHECK_REL("batched sequence 1 vs alone", lg + V, want[1], (size_t)V, 1e-5);
    hlpt_seq_free(sa);
    hlpt_seq_free(sb);
    hlpt_runner_free(r);
    hlpt_model_close(m);
}
END_TEST

/* The shared arena: sealed, attachable by fd, identical results, and writes refused by the kernel. */
START_TEST(test_shared_arena_sealed) {
    char dir[512], why[256] = "";
    fixture_path(dir, sizeof dir, bases[1]);
    hlpt_model *owner, *worker, *priv;
    ck_assert_msg(hlpt_model_open_shared(dir, HLPT_BASE_F32, &owner, why, sizeof why) == 0, "%s", why);
    ck_assert_msg(hlpt_model_open(dir, HLPT_BASE_F32, &priv, why, sizeof why) == 0, "%s", why);
    int fd = hlpt_model_fd(owner);
    ck_assert_int_ge(fd, 0);
    ck_assert_msg(hlpt_model_attach(dir, fd, &worker, why, sizeof why) == 0, "%s", why);
    ck_assert_str_eq(hlpt_model_hash(worker), hlpt_model_hash(priv));
    /* The kernel refuses a writable shared mapping and a write through the fd. */
    void *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert_msg(w == MAP_FAILED && errno == EPERM, "a writable mapping of the sealed arena was allowed");
    char byte = 0;
    ck_assert_int_lt(pwrite(fd, &byte, 1, 4096), 0);
    ck_assert_int_ne(ftruncate(fd, 0), 0);
    /* Not an arena: a plain memfd. */
    int other = memfd_create("x", MFD_CLOEXEC);
    hlpt_model *bad = NULL;
    ck_assert_int_eq(hlpt_model_attach(dir, other, &bad, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_null(bad);
    close(other);

    int ids[6] = {0, 5, 9, 200, 300, 7}, n = 6;
    const int *tp = ids;
    const float *lg;
    int V = hlpt_model_config(priv)->vocab;
    hlpt_runner *r1, *r2;
    hlpt_seq *s1, *s2;
    ck_assert_int_eq(hlpt_runner_new(priv, &r1), 0);
    ck_assert_int_eq(hlpt_runner_new(worker, &r2), 0);
    ck_assert_int_eq(hlpt_seq_new(priv, NULL, 8, &s1), 0);
    ck_assert_int_eq(hlpt_seq_new(worker, NULL, 8, &s2), 0);
    float want[1200];
    ck_assert_int_eq(hlpt_model_step(r1, &s1, &tp, &n, 1, 0, &lg, why, sizeof why), 0);
    memcpy(want, lg, sizeof(float) * V);
    ck_assert_int_eq(hlpt_model_step(r2, &s2, &tp, &n, 1, 0, &lg, why, sizeof why), 0);
    ck_assert_int_eq(memcmp(want, lg, sizeof(float) * V), 0);
    hlpt_seq_free(s1);
    hlpt_seq_free(s2);
    hlpt_runner_free(r1);
    hlpt_runner_free(r2);
    hlpt_model_close(worker);
    hlpt_model_close(priv);
    hlpt_model_close(owner);
}
END_TEST

START_TEST(test_open_errors) {
    char why[256] = "";
    hlpt_model *m = (hlpt_model *)1;
    ck_assert_int_ne(hlpt_model_open("/nonexistent/model", HLPT_BASE_F32, &m, why, sizeof why), 0);
    ck_assert_ptr_null(m);
    ck_assert_msg(strlen(why) > 0, "an error names its cause");
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_logits_match_transformers, 0, 2);
    tcase_add_loop_test(tc, test_greedy_matches_transformers, 0, 2);
    tcase_add_loop_test(tc, test_kv_cache_equals_recompute, 0, 2);
    tcase_add_test(tc, test_batch_equals_alone);
    tcase_add_test(tc, test_shared_arena_sealed);
    tcase_add_test(tc, test_open_errors);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
