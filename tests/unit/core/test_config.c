/*
 * config: both fixture configs (transformers-5 keys), old-style keys, real model shapes
 * (TinyLlama, SmolLM, Mistral), generation_config.json merging, and one error per rejected case.
 */
#include "hlpt/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "hlpt/err.h"

#include "../check_main.h"

START_TEST(test_fixture_llama2) {
    char p[512], why[256];
    hlpt_config c;
    ck_assert_int_eq(hlpt_config_load(fixture_path(p, sizeof p, "llama2-mha-f32"), &c, why, sizeof why),
                     HLPT_OK);
    ck_assert_str_eq(c.model_type, "llama");
    ck_assert_int_eq(c.n_layers, 8);
    ck_assert_int_eq(c.hidden, 64);
    ck_assert_int_eq(c.n_heads, 4);
    ck_assert_int_eq(c.n_kv_heads, 4);
    ck_assert_int_eq(c.head_dim, 16);
    ck_assert_int_eq(c.ffn, 176);
    ck_assert_int_eq(c.vocab, 1024);
    ck_assert_int_eq(c.max_pos, 512);
    ck_assert_float_eq(c.rope_theta, 10000.0f);
    ck_assert_float_eq(c.rms_eps, 1e-6f);
    ck_assert_int_eq(c.tie_embeddings, 0);
    ck_assert_int_eq(c.bos_id, 1);
    ck_assert_int_eq(c.n_eos, 1);
    ck_assert_int_eq(c.eos_ids[0], 2);
    ck_assert_int_eq(c.pad_id, -1);
    ck_assert_str_eq(c.dtype, "float32");
}
END_TEST

START_TEST(test_fixture_llama3) {
    char p[512], why[256];
    hlpt_config c;
    /* The file itself this time (the directory form is tested above). */
    ck_assert_int_eq(hlpt_config_load(fixture_path(p, sizeof p, "llama3-gqa-tied-bf16/config.json"), &c,
                                      why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c.n_layers, 8);
    ck_assert_int_eq(c.hidden, 96);
    ck_assert_int_eq(c.n_heads, 6);
    ck_assert_int_eq(c.n_kv_heads, 2);
    ck_assert_int_eq(c.head_dim, 16);
    ck_assert_int_eq(c.ffn, 256);
    ck_assert_int_eq(c.vocab, 1200);
    ck_assert_int_eq(c.max_pos, 1024);
    ck_assert_float_eq(c.rope_theta, 500000.0f);
    ck_assert_float_eq(c.rms_eps, 1e-5f);
    ck_assert_int_eq(c.tie_embeddings, 1);
    ck_assert_int_eq(c.bos_id, 0);
    ck_assert_int_eq(c.n_eos, 1);
    ck_assert_int_eq(c.eos_ids[0], 1);
    ck_assert_str_eq(c.dtype, "bfloat16");
    ck_assert_int_eq(hlpt_config_load("/nonexistent/config.json", &c, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_nonnull(strstr(why, "/nonexistent/config.json"));
}
END_TEST

static int parse(const char *json, hlpt_config *c, char *why, size_t len) {
    return hlpt_config_parse(json, strlen(json), c, why, len);
}

/* TinyLlama-1.1B-Chat-v1.0's config.json as published: old keys, no head_dim. */
static const char tinyllama[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, \"bos_token_id\": 1,"
    " \"eos_token_id\": 2, \"hidden_act\": \"silu\", \"hidden_size\": 2048, \"initializer_range\": 0.02,"
    " \"intermediate_size\": 5632, \"max_position_embeddings\": 2048, \"model_type\": \"llama\","
    " \"num_attention_heads\": 32, \"num_hidden_layers\": 22, \"num_key_value_heads\": 4,"
    " \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05, \"rope_scaling\": null, \"rope_theta\": 10000.0,"
    " \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.35.0\","
    " \"use_cache\": true, \"vocab_size\": 32000}";

START_TEST(test_old_keys) {
    hlpt_config c;
    char why[256];
    ck_assert_int_eq(parse(tinyllama, &c, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c.n_layers, 22);
    ck_assert_int_eq(c.hidden, 2048);
    ck_assert_int_eq(c.n_heads, 32);
    ck_assert_int_eq(c.n_kv_heads, 4);
    ck_assert_int_eq(c.head_dim, 64); /* 2048 / 32 */
    ck_assert_int_eq(c.ffn, 5632);
    ck_assert_int_eq(c.vocab, 32000);
    ck_assert_float_eq(c.rope_theta, 10000.0f);
    ck_assert_float_eq(c.rms_eps, 1e-5f);
    ck_assert_str_eq(c.dtype, "bfloat16");

    /* Minimal: only the required dimensions; everything else takes transformers' defaults. */
    const char *min = "{\"model_type\":\"llama\",\"num_hidden_layers\":2,\"hidden_size\":64,"
                      "\"num_attention_heads\":8,\"intermediate_size\":100,\"vocab_size\":50,"
                      "\"rope_theta\":500000,\"torch_dtype\":\"float16\",\"head_dim\":null,"
                      "\"eos_token_id\":[3,4,3,-1],\"pad_token_id\":-1}";
    ck_assert_int_eq(parse(min, &c, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c.n_kv_heads, 8);
    ck_assert_int_eq(c.head_dim, 8);
    ck_assert_int_eq(c.max_pos, 2048);
    ck_assert_float_eq(c.rope_theta, 500000.0f);
    ck_assert_float_eq(c.rms_eps, 1e-6f);
    ck_assert_int_eq(c.tie_embeddings, 0);
    ck_assert_int_eq(c.bos_id, -1);
    ck_assert_int_eq(c.pad_id, -1);
    ck_assert_int_eq(c.n_eos, 2);
    ck_assert_int_eq(c.eos_ids[0], 3);
    ck_assert_int_eq(c.eos_ids[1], 4);
    ck_assert_str_eq(c.dtype, "float16");
    ck_assert_str_eq(c.model_type, "llama");

    /* SmolLM-135M: tied embeddings, 9 heads over 3 kv heads, head_dim 576/9 = 64. */
    const char *smol = "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","
                       "\"hidden_size\":576,\"intermediate_size\":1536,\"num_attention_heads\":9,"
                       "\"num_hidden_layers\":30,\"num_key_value_heads\":3,\"vocab_size\":49152,"
                       "\"max_position_embeddings\":2048,\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,"
                       "\"tie_word_embeddings\":true,\"bos_token_id\":0,\"eos_token_id\":0,"
                       "\"rope_scaling\":null,\"torch_dtype\":\"bfloat16\"}";
    ck_assert_int_eq(parse(smol, &c, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert_int_eq(c.tie_embeddings, 1);
    ck_assert_int_eq(c.eos_ids[0], 0);

    /* Mistral-7B-v0.3: sliding_window null, the architecture alone names the family. */
    const char *mistral = "{\"architectures\":[\"MistralForCausalLM\"],\"hidden_size\":4096,"
                          "\"intermediate_size\":14336,\"num_attention_heads\":32,\"num_hidden_layers\":32,"
                          "\"num_key_value_heads\":8,\"vocab_size\":32768,\"max_position_embeddings\":32768,"
                          "\"rope_theta\":1000000.0,\"sliding_window\":null,\"head_dim\":128,"
                          "\"bos_token_id\":1,\"eos_token_id\":2,\"torch_dtype\":\"bfloat16\"}";
    ck_assert_int_eq(parse(mistral, &c, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(c.model_type, "mistral");
    ck_assert_float_eq(c.rope_theta, 1000000.0f);
    ck_assert_int_eq(c.head_dim, 128);
}
END_TEST

/* tinyllama with key set to the JSON text value (NULL: key removed); the result must fail with err
 * and a why containing want. */
static void expect_bad(const char *key, const char *value, int err, const char *want) {
    cJSON *root = cJSON_Parse(tinyllama);
    if (value) {
        cJSON *v = cJSON_Parse(value);
        ck_assert_msg(v != NULL, "test value %s is not JSON", value);
        if (cJSON_GetObjectItem(root, key)) cJSON_ReplaceItemInObject(root, key, v);
        else cJSON_AddItemToObject(root, key, v);
    } else {
        cJSON_DeleteItemFromObject(root, key);
    }
    char *text = cJSON_PrintUnformatted(root);
    hlpt_config c;
    char why[256] = "";
    int rc = parse(text, &c, why, sizeof why);
    ck_assert_msg(rc == err, "%s=%s: expected %s, got %s (%s)", key, value ? value : "(removed)",
                  hlpt_err_name(err), hlpt_err_name(rc), why);
    ck_assert_msg(strstr(why, want) != NULL, "%s=%s: why '%s' lacks '%s'", key, value, why, want);
    ck_assert_int_eq(c.hidden, 0); /* zeroed on failure */
    free(text);
    cJSON_Delete(root);
}

START_TEST(test_rejected) {
    expect_bad("architectures", "[\"Qwen2ForCausalLM\"]", HLPT_ERR_UNSUPPORTED, "Qwen2ForCausalLM");
    expect_bad("architectures", "\"LlamaForCausalLM\"", HLPT_ERR_FORMAT, "architectures: expected");
    expect_bad("model_type", "\"gpt2\"", HLPT_ERR_UNSUPPORTED, "model_type: 'gpt2'");
    expect_bad("hidden_act", "\"gelu\"", HLPT_ERR_UNSUPPORTED, "hidden_act: 'gelu'");
    expect_bad("attention_bias", "true", HLPT_ERR_UNSUPPORTED, "attention_bias");
    expect_bad("mlp_bias", "true", HLPT_ERR_UNSUPPORTED, "mlp_bias");
    expect_bad("mlp_bias", "1", HLPT_ERR_FORMAT, "mlp_bias: expected a boolean");
    expect_bad("rope_scaling",
               "{\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
               "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"}",
               HLPT_ERR_UNSUPPORTED, "rope_scaling: rope_type 'llama3'");
    expect_bad("rope_scaling", "{\"type\":\"linear\",\"factor\":2.0}", HLPT_ERR_UNSUPPORTED, "'linear'");
    expect_bad("rope_scaling", "{\"factor\":2.0}", HLPT_ERR_UNSUPPORTED, "rope_scaling");
    expect_bad("rope_scaling", "2", HLPT_ERR_FORMAT, "rope_scaling: expected an object");
    expect_bad("rope_parameters", "{\"rope_theta\":10000.0,\"rope_type\":\"yarn\"}", HLPT_ERR_UNSUPPORTED,
               "rope_parameters: rope_type 'yarn'");
    expect_bad("rope_parameters", "{\"rope_theta\":\"big\"}", HLPT_ERR_FORMAT,
               "rope_parameters.rope_theta: expected a number");
    expect_bad("rope_theta", "-1", HLPT_ERR_RANGE, "rope_theta");
    expect_bad("quantization_config", "{\"bits\":4}", HLPT_ERR_UNSUPPORTED, "quantization_config");
    expect_bad("sliding_window", "1024", HLPT_ERR_UNSUPPORTED, "sliding_window: 1024");
    expect_bad("num_key_value_heads", "5", HLPT_ERR_MISMATCH, "num_key_value_heads 5");
    expect_bad("num_attention_heads", "28", HLPT_ERR_MISMATCH, "hidden_size 2048 is not divisible");
    expect_bad("hidden_size", "0", HLPT_ERR_RANGE, "hidden_size: 0 is not positive");
    expect_bad("intermediate_size", "-4", HLPT_ERR_RANGE, "intermediate_size: -4");
    expect_bad("num_hidden_layers", "\"8\"", HLPT_ERR_FORMAT, "num_hidden_layers: expected an integer");
    expect_bad("num_hidden_layers", "8.5", HLPT_ERR_FORMAT, "num_hidden_layers: expected an integer");
    expect_bad("num_hidden_layers", "true", HLPT_ERR_FORMAT, "num_hidden_layers: expected an integer");
    expect_bad("num_hidden_layers", "1e300", HLPT_ERR_FORMAT, "num_hidden_layers: expected an integer");
    expect_bad("num_hidden_layers", "100000", HLPT_ERR_RANGE, "num_hidden_layers: 100000 is absurd");
    expect_bad("hidden_size", "4294967296", HLPT_ERR_FORMAT, "hidden_size: expected an integer");
    expect_bad("hidden_size", NULL, HLPT_ERR_FORMAT, "hidden_size: missing");
    /* 2^24 * 2048 = 2^35 elements in the embedding. */
    expect_bad("vocab_size", "16777216", HLPT_ERR_RANGE, "vocab_size * hidden_size");
    expect_bad("rms_norm_eps", "\"1e-5\"", HLPT_ERR_FORMAT, "rms_norm_eps: expected a number");
    expect_bad("rms_norm_eps", "0", HLPT_ERR_RANGE, "rms_norm_eps");
    expect_bad("tie_word_embeddings", "\"yes\"", HLPT_ERR_FORMAT, "tie_word_embeddings");
    expect_bad("torch_dtype", "\"int8\"", HLPT_ERR_UNSUPPORTED, "torch_dtype: 'int8'");
    expect_bad("dtype", "7", HLPT_ERR_FORMAT, "dtype: expected a string");
    expect_bad("bos_token_id", "[1]", HLPT_ERR_FORMAT, "bos_token_id: expected an integer");
    expect_bad("bos_token_id", "32000", HLPT_ERR_RANGE, "bos_token_id: 32000");
    expect_bad("pad_token_id", "40000", HLPT_ERR_RANGE, "pad_token_id: 40000");
    expect_bad("eos_token_id", "[1,2,3,4,5,6,7,8,9]", HLPT_ERR_RANGE, "eos_token_id: more than 8");
    expect_bad("eos_token_id", "[1,\"2\"]", HLPT_ERR_FORMAT, "eos_token_id: expected");
    expect_bad("eos_token_id", "[2, 32001]", HLPT_ERR_RANGE, "eos_token_id: 32001");
}
END_TEST

START_TEST(test_rejected_misc) {
    hlpt_config c;
    char why[256];
    ck_assert_int_eq(parse("{\"model_type\": ", &c, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(why, "not valid JSON"));
    ck_assert_int_eq(parse("[1]", &c, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(why, "not a JSON object"));
    ck_assert_int_eq(parse("{} x", &c, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_int_eq(hlpt_config_parse("{}\0{}", 5, &c, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(why, "NUL"));
    ck_assert_int_eq(parse("{\"num_hidden_layers\": 2}", &c, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(why, "model_type: missing"));
    /* Not NUL-terminated: only n bytes are read. */
    const char *s = tinyllama;
    ck_assert_int_eq(hlpt_config_parse(s, strlen(s) - 1, &c, why, sizeof why), HLPT_ERR_FORMAT);
    /* All parameters together: each matrix below 2^34 elements, the model above 2^40. */
    const char *big = "{\"model_type\":\"llama\",\"num_hidden_layers\":4096,\"hidden_size\":65536,"
                      "\"num_attention_heads\":512,\"intermediate_size\":131072,\"vocab_size\":1000}";
    ck_assert_int_eq(parse(big, &c, why, sizeof why), HLPT_ERR_RANGE);
    ck_assert_ptr_nonnull(strstr(why, "parameters is absurd"));
}
END_TEST

/* generation_config.json's eos ids are merged after config.json's, without duplicates; errors in
 * it name that file. */
START_TEST(test_generation_config) {
    char dir[64] = "/tmp/hlpt-cfg-XXXXXX", p[128], why[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    fputs(tinyllama, f);
    fclose(f);
    hlpt_config c;
    ck_assert_int_eq(hlpt_config_load(dir, &c, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c.n_eos, 1);
    snprintf(p, sizeof p, "%s/generation_config.json", dir);
    f = fopen(p, "w");
    fputs("{\"bos_token_id\": 1, \"eos_token_id\": [2, 128001, 7], \"do_sample\": true}", f);
    fclose(f);
    ck_assert_int_eq(hlpt_config_load(dir, &c, why, sizeof why), HLPT_ERR_RANGE);
    ck_assert_ptr_nonnull(strstr(why, "generation_config.json"));
    ck_assert_ptr_nonnull(strstr(why, "128001"));
    f = fopen(p, "w");
    fputs("{\"eos_token_id\": [2, 31999, 7]}", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/config.json", dir);
    ck_assert_int_eq(hlpt_config_load(p, &c, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c.n_eos, 3);
    ck_assert_int_eq(c.eos_ids[0], 2);
    ck_assert_int_eq(c.eos_ids[1], 31999);
    ck_assert_int_eq(c.eos_ids[2], 7);
    snprintf(p, sizeof p, "%s/generation_config.json", dir);
    f = fopen(p, "w");
    fputs("{\"eos_token_id\": \"</s>\"}", f);
    fclose(f);
    ck_assert_int_eq(hlpt_config_load(dir, &c, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(why, "generation_config.json: eos_token_id"));
    /* A bad config.json names itself. */
    snprintf(p, sizeof p, "%s/config.json", dir);
    f = fopen(p, "w");
    fputs("{\"model_type\": \"llama\", \"hidden_size\": \"64\"}", f);
    fclose(f);
    ck_assert_int_eq(hlpt_config_load(dir, &c, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(why, "config.json: "));
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_fixture_llama2);
    tcase_add_test(tc, test_fixture_llama3);
    tcase_add_test(tc, test_old_keys);
    tcase_add_test(tc, test_rejected);
    tcase_add_test(tc, test_rejected_misc);
    tcase_add_test(tc, test_generation_config);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
