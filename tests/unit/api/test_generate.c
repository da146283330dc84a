/*
 * The generation handlers' pure parts: every field of a (chat) completions body is validated with
 * the offending field named; chat prompts render exactly as the training data's prompts do; the
 * prompt is tokenized with BOS first and checked against the model's context.
 */
#include <string.h>

#include "../check_main.h"
#include "hlpt/dataset.h"
#include "hlpt/err.h"
#include "hlpt/tokenizer.h"
#include "serving.h"

static char why[512];
static const char *param;

static int parse(const char *body, int chat, hlptd_api_gen_request *q) {
    cJSON *j = cJSON_ParseWithOpts(body, NULL, 1);
    ck_assert_msg(j, "test body is not JSON: %s", body);
    int err = hlptd_api_gen_request_parse(j, chat, q, &param, why, sizeof why);
    /* param may point into the body: copy it before the body goes. */
    static char pbuf[128];
    if (param) {
        snprintf(pbuf, sizeof pbuf, "%s", param);
        param = pbuf;
    }
    cJSON_Delete(j);
    return err;
}

START_TEST(test_defaults) {
    hlptd_api_gen_request q;
    ck_assert_int_eq(parse("{\"model\":\"base\",\"prompt\":\"Hello\"}", 0, &q), HLPT_OK);
    ck_assert_str_eq(q.model, "base");
    ck_assert_str_eq(q.prompt, "Hello");
    ck_assert_int_eq(q.params.max_tokens, 16);
    ck_assert_float_eq(q.params.temperature, 1.0f);
    ck_assert_float_eq(q.params.top_p, 1.0f);
    ck_assert_int_eq(q.params.top_k, 0);
    ck_assert_int_eq(q.params.n_stop, 0);
    ck_assert_int_eq(q.n, 1);
    ck_assert_int_eq(q.stream, 0);
    ck_assert_int_eq(q.logprobs, 0);
    ck_assert_int_eq(q.params.logprobs, 0);
    ck_assert_str_eq(q.max_tokens_key, "max_tokens");
    hlptd_api_gen_request_free(&q);

    ck_assert_int_eq(parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}", 1, &q), HLPT_OK);
    ck_assert_int_eq(q.params.max_tokens, 256);
    ck_assert_int_eq(q.chat, 1);
    hlptd_api_gen_request_free(&q);

    /* No seed: each request draws its own (two draws agreeing by chance: 2^-64). */
    hlptd_api_gen_request q2;
    ck_assert_int_eq(parse("{\"model\":\"base\",\"prompt\":\"a\"}", 0, &q), HLPT_OK);
    ck_assert_int_eq(parse("{\"model\":\"base\",\"prompt\":\"a\"}", 0, &q2), HLPT_OK);
    ck_assert(q.params.seed != q2.params.seed);
    hlptd_api_gen_request_free(&q);
    hlptd_api_gen_request_free(&q2);
}
END_TEST

START_TEST(test_every_field) {
    hlptd_api_gen_request q;
    ck_assert_int_eq(parse("{\"model\":\"ft:x\",\"prompt\":[\"Hi\"],\"max_tokens\":7,\"temperature\":0.5,"
                           "\"top_p\":0.9,\"top_k\":40,\"stop\":[\"\\n\",\"END\"],\"seed\":-3,\"n\":3,"
                           "\"logprobs\":2,\"ignore_eos\":true,\"user\":\"u\",\"presence_penalty\":0,"
                           "\"echo\":false,\"best_of\":1,\"logit_bias\":{}}",
                           0, &q),
                     HLPT_OK);
    ck_assert_str_eq(q.prompt, "Hi");
    ck_assert_int_eq(q.params.max_tokens, 7);
    ck_assert_float_eq(q.params.temperature, 0.5f);
    ck_assert_float_eq_tol(q.params.top_p, 0.9f, 1e-7f);
    ck_assert_int_eq(q.params.top_k, 40);
    ck_assert_int_eq(q.params.n_stop, 2);
    ck_assert_str_eq(q.params.stop[0], "\n");
    ck_assert_str_eq(q.params.stop[1], "END");
    ck_assert(q.params.seed == (uint64_t)(int64_t)-3);
    ck_assert_int_eq(q.n, 3);
    ck_assert_int_eq(q.logprobs, 1);
    ck_assert_int_eq(q.top_logprobs, 2);
    ck_assert_int_eq(q.params.logprobs, 1);
    ck_assert_int_eq(q.params.top_logprobs, 2);
    ck_assert_int_eq(q.params.ignore_eos, 1);
    hlptd_api_gen_request_free(&q);

    /* Completions' logprobs 0 still asks for the chosen tokens' logprobs. */
    ck_assert_int_eq(parse("{\"model\":\"b\",\"prompt\":\"x\",\"logprobs\":0}", 0, &q), HLPT_OK);
    ck_assert_int_eq(q.logprobs, 1);
    ck_assert_int_eq(q.top_logprobs, 0);
    hlptd_api_gen_request_free(&q);

    ck_assert_int_eq(parse("{\"model\":\"b\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,"
                           "\"top_logprobs\":5,\"max_completion_tokens\":3,\"stop\":\"##\",\"stream\":false}",
                           1, &q),
                     HLPT_OK);
    ck_assert_int_eq(q.logprobs, 1);
    ck_assert_int_eq(q.top_logprobs, 5);
    ck_assert_int_eq(q.params.max_tokens, 3);
    ck_assert_str_eq(q.max_tokens_key, "max_completion_tokens");
    ck_assert_int_eq(q.params.n_stop, 1);
    ck_assert_str_eq(q.params.stop[0], "##");
    hlptd_api_gen_request_free(&q);

    ck_assert_int_eq(parse("{\"model\":\"b\",\"prompt\":\"x\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
                           0, &q),
                     HLPT_OK);
    ck_assert_int_eq(q.stream, 1);
    ck_assert_int_eq(q.include_usage, 1);
    hlptd_api_gen_request_free(&q);
}
END_TEST

/* Each bad body names its field; the status says whether it is wrong or just not implemented. */
static const struct {
    int chat;
    const char *body;
    int err;
    const char *param; /* NULL: none */
} bad_bodies[] = {
    {0, "[1]", HLPT_ERR_INVAL, NULL},
    {0, "{\"prompt\":\"x\"}", HLPT_ERR_INVAL, "model"},
    {0, "{\"model\":7,\"prompt\":\"x\"}", HLPT_ERR_INVAL, "model"},
    {0, "{\"model\":\"\",\"prompt\":\"x\"}", HLPT_ERR_INVAL, "model"},
    {0, "{\"model\":\"b\"}", HLPT_ERR_INVAL, "prompt"},
    {0, "{\"model\":\"b\",\"prompt\":5}", HLPT_ERR_INVAL, "prompt"},
    {0, "{\"model\":\"b\",\"prompt\":[\"a\",5]}", HLPT_ERR_INVAL, "prompt"},
    {0, "{\"model\":\"b\",\"prompt\":[]}", HLPT_ERR_INVAL, "prompt"},
    {0, "{\"model\":\"b\",\"prompt\":[1,-2]}", HLPT_ERR_INVAL, "prompt"},
    {0, "{\"model\":\"b\",\"prompt\":[[1],[2.5]]}", HLPT_ERR_INVAL, "prompt"},
    {0, "{\"model\":\"b\",\"prompt\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"],\"n\":8}", HLPT_ERR_INVAL, "n"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"max_tokens\":-1}", HLPT_ERR_INVAL, "max_tokens"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"max_tokens\":0}", HLPT_ERR_INVAL, "max_tokens"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"max_tokens\":\"5\"}", HLPT_ERR_INVAL, "max_tokens"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"max_tokens\":2.5}", HLPT_ERR_INVAL, "max_tokens"},
    {1, "{\"model\":\"b\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_completion_tokens\":0}", HLPT_ERR_INVAL,
     "max_completion_tokens"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"temperature\":2.5}", HLPT_ERR_INVAL, "temperature"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"temperature\":-0.1}", HLPT_ERR_INVAL, "temperature"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"temperature\":\"hot\"}", HLPT_ERR_INVAL, "temperature"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"top_p\":0}", HLPT_ERR_INVAL, "top_p"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"top_p\":1.01}", HLPT_ERR_INVAL, "top_p"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"top_k\":-1}", HLPT_ERR_INVAL, "top_k"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"top_k\":1.5}", HLPT_ERR_INVAL, "top_k"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"n\":0}", HLPT_ERR_INVAL, "n"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"n\":9}", HLPT_ERR_INVAL, "n"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"seed\":1.5}", HLPT_ERR_INVAL, "seed"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"seed\":\"1\"}", HLPT_ERR_INVAL, "seed"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"stop\":5}", HLPT_ERR_INVAL, "stop"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"stop\":\"\"}", HLPT_ERR_INVAL, "stop"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"stop\":[\"a\",3]}", HLPT_ERR_INVAL, "stop"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}", HLPT_ERR_INVAL,
     "stop"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"logprobs\":21}", HLPT_ERR_INVAL, "logprobs"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"logprobs\":true}", HLPT_ERR_INVAL, "logprobs"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"top_logprobs\":2}", HLPT_ERR_INVAL, "top_logprobs"},
    {1, "{\"model\":\"b\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":3}", HLPT_ERR_INVAL, "logprobs"},
    {1, "{\"model\":\"b\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":3}", HLPT_ERR_INVAL,
     "top_logprobs"},
    {1, "{\"model\":\"b\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,\"top_logprobs\":21}",
     HLPT_ERR_INVAL, "top_logprobs"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"stream\":\"yes\"}", HLPT_ERR_INVAL, "stream"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"stream\":true,\"logprobs\":1}", HLPT_ERR_UNSUPPORTED, "logprobs"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"stream_options\":{\"include_usage\":true}}", HLPT_ERR_INVAL, "stream_options"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"stream\":true,\"stream_options\":{\"include_usage\":1}}", HLPT_ERR_INVAL,
     "stream_options"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"echo\":true}", HLPT_ERR_UNSUPPORTED, "echo"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"echo\":1}", HLPT_ERR_INVAL, "echo"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"best_of\":2}", HLPT_ERR_UNSUPPORTED, "best_of"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"presence_penalty\":0.5}", HLPT_ERR_UNSUPPORTED, "presence_penalty"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"frequency_penalty\":3}", HLPT_ERR_INVAL, "frequency_penalty"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"logit_bias\":{\"5\":1}}", HLPT_ERR_UNSUPPORTED, "logit_bias"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"suffix\":\"end\"}", HLPT_ERR_UNSUPPORTED, "suffix"},
    {0, "{\"model\":\"b\",\"prompt\":\"x\",\"temprature\":0}", HLPT_ERR_INVAL, "temprature"},
    {0, "{\"model\":\"b\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", HLPT_ERR_INVAL, "messages"},
    {1, "{\"model\":\"b\"}", HLPT_ERR_INVAL, "messages"},
    {1, "{\"model\":\"b\",\"messages\":[]}", HLPT_ERR_INVAL, "messages"},
    {1, "{\"model\":\"b\",\"messages\":{\"role\":\"user\"}}", HLPT_ERR_INVAL, "messages"},
    {1, "{\"model\":\"b\",\"messages\":[\"hi\"]}", HLPT_ERR_INVAL, "messages"},
    {1, "{\"model\":\"b\",\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", HLPT_ERR_INVAL, "messages"},
    {1, "{\"model\":\"b\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", HLPT_ERR_INVAL, "messages"},
    {1, "{\"model\":\"b\",\"messages\":[{\"role\":\"user\"}]}", HLPT_ERR_INVAL, "messages"},
    {1, "{\"model\":\"b\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"system\",\"content\":\"s\"}]}",
     HLPT_ERR_INVAL, "messages"},
    {1, "{\"model\":\"b\",\"prompt\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", HLPT_ERR_INVAL, "prompt"},
    {1, "{\"model\":\"b\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"echo\":false}", HLPT_ERR_INVAL, "echo"},
};

START_TEST(test_bad_bodies) {
    for (size_t i = 0; i < sizeof bad_bodies / sizeof *bad_bodies; i++) {
        hlptd_api_gen_request q;
        why[0] = 0;
        int err = parse(bad_bodies[i].body, bad_bodies[i].chat, &q);
        ck_assert_msg(err == bad_bodies[i].err, "%s: got %s (%s), wanted %s", bad_bodies[i].body, hlpt_err_name(err), why,
                      hlpt_err_name(bad_bodies[i].err));
        if (bad_bodies[i].param) {
            ck_assert_msg(param && !strcmp(param, bad_bodies[i].param), "%s: param %s, wanted %s", bad_bodies[i].body,
                          param ? param : "(null)", bad_bodies[i].param);
            /* The message speaks of the field too. */
            ck_assert_msg(strstr(why, bad_bodies[i].param) || !strcmp(bad_bodies[i].param, "messages"),
                          "%s: message `%s` does not name %s", bad_bodies[i].body, why, bad_bodies[i].param);
        } else {
            ck_assert_msg(!param, "%s: param %s, wanted none", bad_bodies[i].body, param);
        }
        ck_assert(why[0]);
        hlptd_api_gen_request_free(&q);
    }
}
END_TEST

/* A chat's prompt is the prompt of the training line that has the same messages plus a reply. */
START_TEST(test_chat_prompt_matches_training) {
    static const char *const convs[] = {
        "[{\"role\":\"user\",\"content\":\"Hi\"}]",
        "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi\"}]",
        "[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"a\"},"
        "{\"role\":\"assistant\",\"content\":\"b\"},{\"role\":\"user\",\"content\":\"c %s\"}]",
    };
    static const char *const templates[] = {"chatml", "llama2"};
    for (size_t i = 0; i < sizeof convs / sizeof *convs; i++) {
        char line[1024], body[1024];
        snprintf(line, sizeof line, "{\"messages\":%.*s,{\"role\":\"assistant\",\"content\":\"R\"}]}",
                 (int)strlen(convs[i]) - 1, convs[i]);
        cJSON *msgs = cJSON_Parse(convs[i]);
        int n = cJSON_GetArraySize(msgs);
        hlpt_chat_msg v[8];
        for (int k = 0; k < n; k++) {
            cJSON *m = cJSON_GetArrayItem(msgs, k);
            v[k].role = cJSON_GetObjectItem(m, "role")->valuestring;
            v[k].content = cJSON_GetObjectItem(m, "content")->valuestring;
        }
        for (size_t t = 0; t < 2; t++) {
            hlpt_example ex;
            char *prompt = NULL;
            ck_assert_int_eq(hlpt_dataset_parse_line(line, strlen(line), 1, templates[t], &ex, why, sizeof why), HLPT_OK);
            ck_assert_int_eq(hlpt_chat_prompt(v, n, templates[t], &prompt, why, sizeof why), HLPT_OK);
            ck_assert_str_eq(prompt, ex.prompt);
            free(prompt);
            hlpt_example_free(&ex);
        }
        /* The handler renders with the default template, as training does by default. */
        snprintf(body, sizeof body, "{\"model\":\"b\",\"messages\":%s}", convs[i]);
        hlptd_api_gen_request q;
        hlpt_example ex;
        ck_assert_int_eq(parse(body, 1, &q), HLPT_OK);
        ck_assert_int_eq(hlpt_dataset_parse_line(line, strlen(line), 1, NULL, &ex, why, sizeof why), HLPT_OK);
        ck_assert_str_eq(q.prompt, ex.prompt);
        hlpt_example_free(&ex);
        hlptd_api_gen_request_free(&q);
        cJSON_Delete(msgs);
    }
    /* Written out from the ChatML convention. */
    hlpt_chat_msg v[] = {{"system", "Be brief."}, {"user", "Hi"}};
    char *prompt;
    ck_assert_int_eq(hlpt_chat_prompt(v, 2, "chatml", &prompt, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(prompt, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                             "<|im_start|>assistant\n");
    free(prompt);
    ck_assert_int_eq(hlpt_chat_prompt(v, 2, "vicuna", &prompt, why, sizeof why), HLPT_ERR_INVAL);
    ck_assert_ptr_null(prompt);
    hlpt_chat_msg late[] = {{"user", "Hi"}, {"system", "S"}};
    ck_assert_int_eq(hlpt_chat_prompt(late, 2, NULL, &prompt, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(why, "messages[1]"));
    ck_assert_int_eq(hlpt_chat_prompt(v, 0, NULL, &prompt, why, sizeof why), HLPT_ERR_FORMAT);
}
END_TEST

START_TEST(test_tokenize) {
    char dir[512];
    hlpt_model *m = NULL;
    ck_assert_int_eq(hlpt_model_open(fixture_path(dir, sizeof dir, "llama2-mha-f32"), HLPT_BASE_F32, &m, why, sizeof why), HLPT_OK);
    const hlpt_config *cfg = hlpt_model_config(m);
    ck_assert_int_ge(cfg->bos_id, 0);
    hlptd_api_gen_request q;
    ck_assert_int_eq(parse("{\"model\":\"b\",\"prompt\":\"Hello world <s>\",\"max_tokens\":4}", 0, &q), HLPT_OK);
    int *ids = NULL, n = 0, *ref = NULL, nref = 0;
    ck_assert_int_eq(hlptd_api_gen_tokenize(m, &q, &ids, &n, &param, why, sizeof why), HLPT_OK);
    /* BOS, then the text as user text: "<s>" in it stays plain pieces. */
    ck_assert_int_eq(hlpt_tokenizer_encode(hlpt_model_tokenizer(m), "Hello world <s>", 15, 0, &ref, &nref, why, sizeof why),
                     HLPT_OK);
    ck_assert_int_eq(n, nref + 1);
    ck_assert_int_eq(ids[0], cfg->bos_id);
    for (int i = 0; i < nref; i++) ck_assert_int_eq(ids[i + 1], ref[i]);
    for (int i = 1; i < n; i++) ck_assert_int_ne(ids[i], cfg->bos_id);
    free(ids);
    free(ref);

    /* Exactly the context fits; one more token does not, and max_tokens is to blame. */
    q.params.max_tokens = cfg->max_pos - n;
    ck_assert_int_eq(hlptd_api_gen_tokenize(m, &q, &ids, &n, &param, why, sizeof why), HLPT_OK);
    free(ids);
    q.params.max_tokens++;
    ck_assert_int_eq(hlptd_api_gen_tokenize(m, &q, &ids, &n, &param, why, sizeof why), HLPT_ERR_INVAL);
    ck_assert_ptr_null(ids);
    ck_assert_str_eq(param, "max_tokens");
    hlptd_api_gen_request_free(&q);

    /* A prompt longer than the context is the prompt's fault. */
    size_t len = (size_t)cfg->max_pos * 8;
    char *body = malloc(len + 64);
    int k = snprintf(body, len + 64, "{\"model\":\"b\",\"prompt\":\"");
    for (size_t i = 0; i < len / 2; i++) body[k++] = i % 2 ? ' ' : 'a' + (char)(i % 23);
    strcpy(body + k, "\",\"max_tokens\":1}");
    ck_assert_int_eq(parse(body, 0, &q), HLPT_OK);
    ck_assert_int_eq(hlptd_api_gen_tokenize(m, &q, &ids, &n, &param, why, sizeof why), HLPT_ERR_INVAL);
    ck_assert_str_eq(param, "prompt");
    ck_assert_ptr_nonnull(strstr(why, "context"));
    hlptd_api_gen_request_free(&q);
    free(body);

    /* A batch: strings and token ids, one prompt each; ids are taken as given (no BOS). */
    ck_assert_int_eq(parse("{\"model\":\"b\",\"prompt\":[\"Hello\",[5,6,7]],\"n\":2}", 0, &q), HLPT_OK);
    ck_assert_int_eq(q.n_prompts, 2);
    ck_assert_str_eq(q.prompt, "Hello");
    ck_assert_int_eq(hlptd_api_gen_tokenize_at(m, &q, 1, &ids, &n, &param, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(ids[0], 5);
    ck_assert_int_eq(ids[2], 7);
    free(ids);
    ck_assert_int_eq(hlptd_api_gen_tokenize_at(m, &q, 0, &ids, &n, &param, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(ids[0], cfg->bos_id);
    free(ids);
    hlptd_api_gen_request_free(&q);
    ck_assert_int_eq(parse("{\"model\":\"b\",\"prompt\":[1,2]}", 0, &q), HLPT_OK);
    ck_assert_int_eq(q.n_prompts, 1);
    ck_assert_ptr_null(q.prompt);
    hlptd_api_gen_request_free(&q);
    ck_assert_int_eq(parse("{\"model\":\"b\",\"prompt\":[[1],[1000000]]}", 0, &q), HLPT_OK);
    ck_assert_int_eq(hlptd_api_gen_tokenize_at(m, &q, 1, &ids, &n, &param, why, sizeof why), HLPT_ERR_INVAL);
    ck_assert_str_eq(param, "prompt");
    ck_assert_ptr_nonnull(strstr(why, "vocabulary"));
    hlptd_api_gen_request_free(&q);

    /* Invalid UTF-8 in the prompt is the prompt's fault too. */
    ck_assert_int_eq(parse("{\"model\":\"b\",\"prompt\":\"ok\"}", 0, &q), HLPT_OK);
    q.prompt[1] = (char)0xC3;
    ck_assert_int_eq(hlptd_api_gen_tokenize(m, &q, &ids, &n, &param, why, sizeof why), HLPT_ERR_INVAL);
    ck_assert_str_eq(param, "prompt");
    hlptd_api_gen_request_free(&q);
    hlpt_model_close(m);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("api_generate");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_every_field);
    tcase_add_test(tc, test_bad_bodies);
    tcase_add_test(tc, test_chat_prompt_matches_training);
    tcase_add_test(tc, test_tokenize);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
