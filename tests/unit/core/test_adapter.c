/*
 * Adapters against the references (tests/fixtures: HLPT with causal and sequence gates, PEFT's own
 * LoRA): logits, loss and every gradient; KV-cache decoding with adapters; layer plans; loading
 * errors; save/load round trip.
 */
#include "hlpt/adapter.h"

#include <cJSON.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../check_main.h"
#include "../ref_util.h"
#include "hlpt/err.h"
#include "hlpt/model.h"

static const char *const adapters[] = {"hlpt-causal", "hlpt-sequence", "peft-lora-qv"};

START_TEST(test_fixture_logits_loss_grads) {
    const char *name = adapters[_i];
    hlpt_model *m = fixture_model("llama2-mha-f32");
    hlpt_adapter *a = fixture_adapter(m, name);
    char path[512], rel[128], why[256] = "";
    snprintf(rel, sizeof rel, "%s/ref.safetensors", name);
    hlpt_st *ref;
    ck_assert_int_eq(hlpt_st_open(fixture_path(path, sizeof path, rel), &ref, why, sizeof why), 0);
    int n, nl, V = hlpt_model_config(m)->vocab;
    int *ids = ref_i32(ref, "input_ids", &n);
    int *labels = ref_i32(ref, "labels", &nl);
    float *want = ref_f32(ref, "logits", NULL);
    float *want_loss = ref_f32(ref, "loss", NULL);

    /* Logits through the inference path. */
    hlpt_runner *r;
    hlpt_seq *s;
    ck_assert_int_eq(hlpt_runner_new(m, &r), 0);
    ck_assert_int_eq(hlpt_seq_new(m, a, n, &s), 0);
    const float *lg;
    const int *tp = ids;
    ck_assert_msg(hlpt_model_step(r, &s, &tp, &n, 1, 1, &lg, why, sizeof why) == 0, "%s", why);
    char what[160];
    snprintf(what, sizeof what, "%s logits", name);
    CHECK_REL(what, lg, want, (size_t)n * V, 1e-4);

    /* Loss and gradients through the training path (mean over targets, dropout off). */
    float *grads = calloc(a->n_params, sizeof(float));
    hlpt_train_opts o = {.train = 0};
    hlpt_loss loss;
    ck_assert_int_eq(hlpt_model_train_step(r, a, ids, labels, &n, 1, &o, NULL, 0, &loss, why, sizeof why), 0);
    int targets = loss.n_targets;
    ck_assert_int_gt(targets, 0);
    ck_assert_int_eq(hlpt_model_train_step(r, a, ids, labels, &n, 1, &o, grads, 1.0f / targets, &loss, why, sizeof why), 0);
    double mean = loss.loss_sum / targets;
    printf("%-60s %.6f vs %.6f\n", "loss", mean, want_loss[0]);
    ck_assert_msg(fabs(mean - want_loss[0]) <= 1e-4, "loss %.6f vs reference %.6f", mean, want_loss[0]);
    for (int i = 0; i < a->n_tensors; i++) {
        const hlpt_adapter_tensor *t = &a->tensors[i];
        char key[200];
        snprintf(key, sizeof key, "grad.%s", t->name);
        int64_t numel;
        float *g = ref_f32(ref, key, &numel);
        ck_assert_int_eq((size_t)numel, t->numel);
        snprintf(what, sizeof what, "%s d%s", name, t->name + strlen("base_model.model.model."));
        CHECK_REL(what, grads + t->offset, g, t->numel, 1e-4);
        free(g);
    }
    free(grads);
    free(ids);
    free(labels);
    free(want);
    free(want_loss);
    hlpt_seq_free(s);
    hlpt_runner_free(r);
    hlpt_st_close(ref);
    hlpt_adapter_free(a);
    hlpt_model_close(m);
}
END_TEST

/* Token-by-token decoding with an adapter equals a full pass (causal and none gates are exact
 * under the cache; the prefix is cached once). */
START_TEST(test_adapter_kv_cache_exact) {
    hlpt_model *m = fixture_model("llama2-mha-f32");
    hlpt_adapter *a = fixture_adapter(m, _i == 0 ? "hlpt-causal" : "peft-lora-qv");
    int V = hlpt_model_config(m)->vocab, ids[12];
    for (int i = 0; i < 12; i++) ids[i] = 1 + (i * 53) % (V - 1);
    hlpt_runner *r;
    hlpt_seq *full, *inc;
    ck_assert_int_eq(hlpt_runner_new(m, &r), 0);
    ck_assert_int_eq(hlpt_seq_new(m, a, 12, &full), 0);
    ck_assert_int_eq(hlpt_seq_new(m, a, 12, &inc), 0);
    const float *lg;
    char why[256];
    int n = 12;
    const int *tp = ids;
    ck_assert_int_eq(hlpt_model_step(r, &full, &tp, &n, 1, 1, &lg, why, sizeof why), 0);
    float *want = malloc(sizeof(float) * 12 * V);
    memcpy(want, lg, sizeof(float) * 12 * V);
    double worst = 0;
    for (int t = 0; t < 12; t++) {
        int one = 1;
        tp = ids + t;
        ck_assert_int_eq(hlpt_model_step(r, &inc, &tp, &one, 1, 0, &lg, why, sizeof why), 0);
        double e = rel_err(lg, want + (size_t)t * V, (size_t)V);
        worst = e > worst ? e : worst;
    }
    printf("%s: token-by-token vs full pass, worst rel err %.2e (tol 1e-5)\n", a->cfg.gate == HLPT_GATE_CAUSAL ? "causal" : "none", worst);
    ck_assert(worst <= 1e-5);
    free(want);
    hlpt_seq_free(full);
    hlpt_seq_free(inc);
    hlpt_runner_free(r);
    hlpt_adapter_free(a);
    hlpt_model_close(m);
}
END_TEST

/* A batch mixing the base, a LoRA and a hybrid adapter gives each sequence its own logits. */
START_TEST(test_mixed_adapter_batch) {
    hlpt_model *m = fixture_model("llama2-mha-f32");
    hlpt_adapter *h = fixture_adapter(m, "hlpt-causal"), *l = fixture_adapter(m, "peft-lora-qv");
    int V = hlpt_model_config(m)->vocab;
    int ids[3][6] = {{1, 10, 20, 30, 40, 50}, {1, 60, 70, 80, 90, 99}, {1, 5, 6, 7, 8, 9}};
    const hlpt_adapter *which[3] = {h, NULL, l};
    hlpt_runner *r;
    ck_assert_int_eq(hlpt_runner_new(m, &r), 0);
    float want[3][1024];
    const float *lg;
    char why[256];
    hlpt_seq *s[3];
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(hlpt_seq_new(m, which[i], 8, &s[i]), 0);
        int n = 6;
        const int *tp = ids[i];
        ck_assert_int_eq(hlpt_model_step(r, &s[i], &tp, &n, 1, 0, &lg, why, sizeof why), 0);
        memcpy(want[i], lg, sizeof(float) * V);
        hlpt_seq_reset(s[i]);
    }
    const int *toks[3] = {ids[0], ids[1], ids[2]};
    int ns[3] = {6, 6, 6};
    ck_assert_int_eq(hlpt_model_step(r, s, toks, ns, 3, 0, &lg, why, sizeof why), 0);
    for (int i = 0; i < 3; i++) CHECK_REL(i == 0 ? "hybrid in mixed batch" : i == 1 ? "base in mixed batch" : "lora in mixed batch",
                                          lg + (size_t)i * V, want[i], (size_t)V, 1e-5);
    for (int i = 0; i < 3; i++) hlpt_seq_free(s[i]);
    hlpt_runner_free(r);
    hlpt_adapter_free(h);
    hlpt_adapter_free(l);
    hlpt_model_close(m);
}
END_TEST

START_TEST(test_layer_plans) {
    hlpt_adapter_config c;
    hlpt_adapter_config_defaults(&c, HLPT_METHOD_HLPT, 32);
    for (int i = 0; i < 32; i++) {
        ck_assert_int_eq(c.lora_layer[i], i < 24);
        ck_assert_int_eq(c.prefix_layer[i], i >= 24);
    }
    ck_assert_int_eq(c.targets, 1u << HLPT_MOD_DOWN);
    ck_assert_int_eq(c.gate, HLPT_GATE_CAUSAL);
    ck_assert_int_eq(c.r, 8);
    hlpt_adapter_config_defaults(&c, HLPT_METHOD_H2LPT, 32);
    for (int i = 0; i < 32; i++) {
        ck_assert_int_eq(c.lora_layer[i], i < 8);
        ck_assert_int_eq(c.prefix_layer[i], i >= 24);
    }
    hlpt_adapter_config_defaults(&c, HLPT_METHOD_LORA, 8);
    ck_assert_int_eq(c.targets, (1u << HLPT_MOD_Q) | (1u << HLPT_MOD_V));
    ck_assert_int_eq(c.gate, HLPT_GATE_NONE);
    /* ratio and explicit lists */
    char why[256] = "";
    cJSON *j = cJSON_Parse("{\"ratio\":0.5,\"target_modules\":[\"q_proj\",\"up_proj\"],\"gate\":\"sequence\"}");
    hlpt_adapter_config_defaults(&c, HLPT_METHOD_HLPT, 8);
    ck_assert_int_eq(hlpt_adapter_config_apply(&c, j, 8, 0, why, sizeof why), 0);
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(c.lora_layer[i], i < 4);
        ck_assert_int_eq(c.prefix_layer[i], i >= 4);
    }
    ck_assert_int_eq(c.gate, HLPT_GATE_SEQUENCE);
    cJSON_Delete(j);
    const char *bad[] = {"{\"r\":0}", "{\"r\":\"8\"}", "{\"lora_layers\":[0,8]}", "{\"target_modules\":[\"wq\"]}",
                         "{\"gate\":\"maybe\"}", "{\"lora_dropout\":1}", "{\"colour\":1}",
                         "{\"lora_layers\":[],\"prefix_layers\":[]}", "{\"num_virtual_tokens\":0}"};
    const char *field[] = {"r",      "r",           "lora_layers", "target_modules",    "gate",
                           "lora_dropout", "colour", "layer plan", "num_virtual_tokens"};
    /* Other tools write num_virtual_tokens 0 for a plan without prefix layers. */
    j = cJSON_Parse("{\"method\":\"lora\",\"num_virtual_tokens\":0,\"prefix_layers\":[]}");
    hlpt_adapter_config_defaults(&c, HLPT_METHOD_LORA, 8);
    ck_assert_msg(hlpt_adapter_config_apply(&c, j, 8, 1, why, sizeof why) == 0, "%s", why);
    ck_assert_int_eq(c.n_virtual, 0);
    cJSON_Delete(j);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        j = cJSON_Parse(bad[i]);
        hlpt_adapter_config_defaults(&c, HLPT_METHOD_HLPT, 8);
        ck_assert_int_ne(hlpt_adapter_config_apply(&c, j, 8, 0, why, sizeof why), 0);
        ck_assert_msg(strstr(why, field[i]), "error for %s should name %s: %s", bad[i], field[i], why);
        cJSON_Delete(j);
    }
}
END_TEST

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    ck_assert(a && b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    fclose(a);
    fclose(b);
}

START_TEST(test_load_errors) {
    hlpt_model *m = fixture_model("llama2-mha-f32");
    char tmp[] = "/tmp/hlpt-adapter-XXXXXX", path[600], src[512], why[256];
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    fixture_path(src, sizeof src, "hlpt-causal/adapter_model.safetensors");
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", tmp);
    copy_file(src, path);
    struct {
        const char *config, *expect;
        int err;
    } cases[] = {
        /* the weights have r=4: r=8 does not fit */
        {"{\"peft_type\":\"HLPT\",\"method\":\"hlpt\",\"r\":8,\"lora_alpha\":8,\"target_modules\":[\"down_proj\"],"
         "\"lora_layers\":[0,1,2,3,4,5],\"prefix_layers\":[6,7],\"num_virtual_tokens\":4,\"gate\":\"causal\"}",
         "lora_A", HLPT_ERR_MISMATCH},
        {"{\"peft_type\":\"HLPT\",\"method\":\"hlpt\",\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"down_proj\"],"
         "\"lora_layers\":[0,1,2,3,4,5,9],\"prefix_layers\":[6,7],\"num_virtual_tokens\":4,\"gate\":\"causal\"}",
         "lora_layers", HLPT_ERR_RANGE},
        {"{\"peft_type\":\"HLPT\",\"method\":\"hlpt\",\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"down_proj\"],"
         "\"lora_layers\":[0,1,2,3,4],\"prefix_layers\":[6,7],\"num_virtual_tokens\":4,\"gate\":\"causal\"}",
         "layers.5", HLPT_ERR_MISMATCH},
        {"{\"peft_type\":\"HLPT\",\"method\":\"hlpt\",\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"down_proj\"],"
         "\"lora_layers\":[0,1,2,3,4,5],\"prefix_layers\":[6,7],\"num_virtual_tokens\":4,\"gate\":\"causal\","
         "\"base_hash\":\"0123456789abcdef\"}",
         "base", HLPT_ERR_MISMATCH},
        {"{\"peft_type\":\"IA3\"}", "IA3", HLPT_ERR_UNSUPPORTED},
        {"not json", "JSON", HLPT_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(path, sizeof path, "%s/adapter_config.json", tmp);
        write_text(path, cases[i].config);
        hlpt_adapter *a = (hlpt_adapter *)1;
        why[0] = 0;
        int err = hlpt_adapter_load(tmp, hlpt_model_config(m), hlpt_model_hash(m), &a, why, sizeof why);
        ck_assert_msg(err == cases[i].err, "case %zu: got %s (%s)", i, hlpt_err_name(err), why);
        ck_assert_ptr_null(a);
        ck_assert_msg(strstr(why, cases[i].expect), "case %zu: '%s' should mention %s", i, why, cases[i].expect);
    }
    /* Truncated weights. */
    snprintf(path, sizeof path, "%s/adapter_config.json", tmp);
    fixture_path(src, sizeof src, "hlpt-causal/adapter_config.json");
    copy_file(src, path);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", tmp);
    ck_assert_int_eq(truncate(path, 100), 0);
    hlpt_adapter *a = NULL;
    ck_assert_int_ne(hlpt_adapter_load(tmp, hlpt_model_config(m), NULL, &a, why, sizeof why), 0);
    ck_assert_ptr_null(a);
    unlink(path);
    snprintf(path, sizeof path, "%s/adapter_config.json", tmp);
    unlink(path);
    rmdir(tmp);
    hlpt_model_close(m);
}
END_TEST

START_TEST(test_save_load_round_trip) {
    hlpt_model *m = fixture_model("llama2-mha-f32");
    hlpt_adapter_config c;
    hlpt_adapter_config_defaults(&c, HLPT_METHOD_H2LPT, 8);
    c.r = 3;
    c.n_virtual = 5;
    c.targets |= 1u << HLPT_MOD_Q;
    snprintf(c.base_hash, sizeof c.base_hash, "%s", hlpt_model_hash(m));
    hlpt_adapter *a, *b;
    char why[256], tmp[] = "/tmp/hlpt-save-XXXXXX";
    ck_assert_int_eq(hlpt_adapter_new(hlpt_model_config(m), &c, &a, why, sizeof why), 0);
    hlpt_adapter_init(a, 7);
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    ck_assert_msg(hlpt_adapter_save(a, tmp, "{\"note\":\"x\"}", why, sizeof why) == 0, "%s", why);
    ck_assert_msg(hlpt_adapter_load(tmp, hlpt_model_config(m), hlpt_model_hash(m), &b, why, sizeof why) == 0, "%s", why);
    ck_assert_int_eq(a->n_params, b->n_params);
    ck_assert_int_eq(memcmp(a->params, b->params, a->n_params * sizeof(float)), 0);
    ck_assert_int_eq(b->cfg.r, 3);
    ck_assert_int_eq(b->cfg.method, HLPT_METHOD_H2LPT);
    ck_assert_int_eq(b->lowest_layer, 0);
    ck_assert_ptr_nonnull(b->lora[1][HLPT_MOD_Q]);
    ck_assert_ptr_null(b->lora[2][HLPT_MOD_Q]);
    ck_assert_ptr_nonnull(b->prefix[7]);
    /* B starts at zero: the adapter's LoRA part is the identity; gates are small. */
    const hlpt_adapter_tensor *tb = hlpt_adapter_find(a, "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
    ck_assert_ptr_nonnull(tb);
    for (size_t i = 0; i < tb->numel; i++) ck_assert(a->params[tb->offset + i] == 0.0f);
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_config.json", tmp);
    unlink(path);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", tmp);
    unlink(path);
    rmdir(tmp);
    hlpt_adapter_free(a);
    hlpt_adapter_free(b);
    hlpt_model_close(m);
}
END_TEST

/* A plain LoRA adapter exported in PEFT's config form loads back as the same adapter; hybrids have
 * no PEFT form. */
START_TEST(test_peft_export_round_trip) {
    hlpt_model *m = fixture_model("llama2-mha-f32");
    hlpt_adapter *a = fixture_adapter(m, "peft-lora-qv");
    char *peft = hlpt_adapter_config_peft_json(&a->cfg, 8);
    ck_assert_ptr_nonnull(peft);
    ck_assert_ptr_nonnull(strstr(peft, "\"LORA\""));
    void *w;
    size_t n;
    char why[256];
    ck_assert_int_eq(hlpt_adapter_to_safetensors(a, a->params, NULL, &w, &n, why, sizeof why), 0);
    hlpt_adapter *b;
    ck_assert_msg(hlpt_adapter_load_mem(peft, strlen(peft), w, n, hlpt_model_config(m), NULL, &b, why, sizeof why) == 0,
                  "%s", why);
    ck_assert_int_eq(b->n_params, a->n_params);
    ck_assert_int_eq(memcmp(a->params, b->params, a->n_params * sizeof(float)), 0);
    ck_assert_int_eq(b->cfg.targets, a->cfg.targets);
    hlpt_adapter *h = fixture_adapter(m, "hlpt-causal");
    ck_assert_ptr_null(hlpt_adapter_config_peft_json(&h->cfg, 8));
    free(peft);
    free(w);
    hlpt_adapter_free(a);
    hlpt_adapter_free(b);
    hlpt_adapter_free(h);
    hlpt_model_close(m);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("adapter");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_fixture_logits_loss_grads, 0, 3);
    tcase_add_loop_test(tc, test_adapter_kv_cache_exact, 0, 2);
    tcase_add_test(tc, test_mixed_adapter_batch);
    tcase_add_test(tc, test_layer_plans);
    tcase_add_test(tc, test_load_errors);
    tcase_add_test(tc, test_save_load_round_trip);
    tcase_add_test(tc, test_peft_export_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
