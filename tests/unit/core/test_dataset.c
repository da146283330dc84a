/* JSONL datasets: every format renders as the published templates say; every error names its
 * line (and field or byte). */
#include "hlpt/dataset.h"

#include <string.h>

#include "../check_main.h"
#include "hlpt/err.h"

static char why[512];

static int parse(const char *line, const char *tpl, hlpt_example *ex) {
    return hlpt_dataset_parse_line(line, strlen(line), 1, tpl, ex, why, sizeof why);
}

START_TEST(test_prompt_completion) {
    hlpt_example ex;
    ck_assert_int_eq(parse("{\"prompt\": \"2+2=\", \"completion\": \" 4\", \"weight\": 1}", NULL, &ex), HLPT_OK);
    ck_assert_int_eq(ex.format, HLPT_DATASET_PROMPT_COMPLETION);
    ck_assert_str_eq(ex.prompt, "2+2=");
    ck_assert_str_eq(ex.completion, " 4");
    hlpt_example_free(&ex);
}
END_TEST

START_TEST(test_alpaca) {
    hlpt_example ex;
    ck_assert_int_eq(parse("{\"instruction\": \"Say hi.\", \"input\": \"\", \"output\": \"Hi!\"}", NULL, &ex), HLPT_OK);
    ck_assert_int_eq(ex.format, HLPT_DATASET_ALPACA);
    ck_assert_str_eq(ex.prompt, "Below is an instruction that describes a task. Write a response that appropriately "
                                "completes the request.\n\n### Instruction:\nSay hi.\n\n### Response:\n");
    ck_assert_str_eq(ex.completion, "Hi!");
    hlpt_example_free(&ex);
    /* No "input" key at all is the same as an empty one. */
    ck_assert_int_eq(parse("{\"instruction\": \"Say hi.\", \"output\": \"Hi!\"}", NULL, &ex), HLPT_OK);
    ck_assert_ptr_nonnull(strstr(ex.prompt, "### Instruction:\nSay hi.\n\n### Response:\n"));
    hlpt_example_free(&ex);
    ck_assert_int_eq(parse("{\"instruction\": \"Add 100%.\", \"input\": \"5 %s\", \"output\": \"10\"}", NULL, &ex), HLPT_OK);
    ck_assert_str_eq(ex.prompt, "Below is an instruction that describes a task, paired with an input that provides "
                                "further context. Write a response that appropriately completes the request.\n\n"
                                "### Instruction:\nAdd 100%.\n\n### Input:\n5 %s\n\n### Response:\n");
    ck_assert_str_eq(ex.completion, "10");
    hlpt_example_free(&ex);
}
END_TEST

START_TEST(test_messages_chatml) {
    hlpt_example ex;
    const char *line = "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
                       " {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello\"},"
                       " {\"role\": \"user\", \"content\": \"Bye\"}, {\"role\": \"assistant\", \"content\": \"Ciao\"}]}";
    ck_assert_int_eq(parse(line, "chatml", &ex), HLPT_OK);
    ck_assert_int_eq(ex.format, HLPT_DATASET_MESSAGES);
    ck_assert_str_eq(ex.prompt, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                                "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
                                "<|im_start|>assistant\n");
    ck_assert_str_eq(ex.completion, "Ciao<|im_end|>");
    hlpt_example_free(&ex);
    /* chatml is the default template. */
    ck_assert_int_eq(parse(line, NULL, &ex), HLPT_OK);
    ck_assert_str_eq(ex.completion, "Ciao<|im_end|>");
    hlpt_example_free(&ex);
}
END_TEST

/* OpenAI's other text shapes: content parts, developer, an assistant's tool calls and tool results,
 * rendered as Qwen2.5's template renders tools. */
START_TEST(test_messages_openai_shapes) {
    hlpt_example ex;
    const char *line =
        "{\"messages\": [{\"role\": \"developer\", \"content\": [{\"type\": \"text\", \"text\": \"Be \"},"
        " {\"type\": \"text\", \"text\": \"brief.\"}]}, {\"role\": \"user\", \"content\": \"Weather?\"},"
        " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\","
        " \"function\": {\"name\": \"get\", \"arguments\": \"{\\\"city\\\": \\\"Oslo\\\"}\"}}]},"
        " {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"5C\"},"
        " {\"role\": \"assistant\", \"content\": [{\"type\": \"text\", \"text\": \"Cold.\"}]}]}";
    ck_assert_int_eq(parse(line, "chatml", &ex), HLPT_OK);
    ck_assert_str_eq(ex.prompt, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWeather?<|im_end|>\n"
                                "<|im_start|>assistant\n<tool_call>\n{\"name\":\"get\",\"arguments\":{\"city\":\"Oslo\"}}\n"
                                "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n5C\n</tool_response><|im_end|>\n"
                                "<|im_start|>assistant\n");
    ck_assert_str_eq(ex.completion, "Cold.<|im_end|>");
    hlpt_example_free(&ex);
}
END_TEST

START_TEST(test_messages_llama2) {
    hlpt_example ex;
    const char *line = "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
                       " {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello\"},"
                       " {\"role\": \"user\", \"content\": \"Bye\"}, {\"role\": \"assistant\", \"content\": \"Ciao\"}]}";
    ck_assert_int_eq(parse(line, "llama2", &ex), HLPT_OK);
    /* Meta's format without the <s>/</s> text (those are token ids added by the tokenizer). */
    ck_assert_str_eq(ex.prompt, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello [INST] Bye [/INST] ");
    ck_assert_str_eq(ex.completion, "Ciao");
    hlpt_example_free(&ex);
    ck_assert_int_eq(parse(line, "vicuna", &ex), HLPT_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(why, "vicuna"));
    ck_assert(hlpt_chat_template_known("llama2"));
    ck_assert(!hlpt_chat_template_known("vicuna"));
}
END_TEST

START_TEST(test_text) {
    hlpt_example ex;
    ck_assert_int_eq(parse("{\"text\": \"Once upon a time\"}\r", NULL, &ex), HLPT_OK);
    ck_assert_int_eq(ex.format, HLPT_DATASET_TEXT);
    ck_assert_str_eq(ex.prompt, "");
    ck_assert_str_eq(ex.completion, "Once upon a time");
    hlpt_example_free(&ex);
}
END_TEST

/* One bad line among good ones: the message names the line and what is wrong. */
START_TEST(test_line_errors) {
    static const struct {
        const char *file;
        const char *msg;
    } cases[] = {
        {"{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"prompt\":\"a\"}\n", "line 2: field `completion` missing"},
        {"{\"prompt\":\"a\",\"completion\":\"b\"}\n\n{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"prompt\": x}\n",
         "line 4: invalid JSON at byte 12"},
        {"{\"prompt\":1,\"completion\":\"b\"}\n", "line 1: field `prompt` must be a string"},
        {"{\"prompt\":\"a\",\"completion\":\"\"}\n", "line 1: field `completion` is empty"},
        {"{\"prompt\":\"a\",\"completion\":\"b\"} x\n", "line 1: invalid JSON at byte 33"},
        {"[1,2]\n", "line 1: expected a JSON object"},
        {"{\"foo\":1}\n", "line 1: no known example format"},
        {"{\"instruction\":\"a\",\"output\":\"b\"}\n{\"instruction\":\"a\"}\n", "line 2: field `output` missing"},
        {"{\"instruction\":\"a\",\"input\":3,\"output\":\"b\"}\n", "line 1: field `input` must be a string"},
        {"{\"messages\":[]}\n", "line 1: field `messages` must be a non-empty array"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}\n", "line 1: field `messages`: the last message must be the assistant's"},
        {"{\"messages\":[{\"role\":\"bot\",\"content\":\"a\"}]}\n", "line 1: field `messages[0].role` must be one of system, developer, user, assistant, tool"},
        {"{\"messages\":[{\"role\":\"user\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n", "line 1: field `messages[0].content` missing"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":7}]}\n",
         "line 1: field `messages[1].content` must be a string or an array of text parts"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]},{\"role\":\"assistant\",\"content\":\"b\"}]}\n",
         "line 1: field `messages[0].content[0].type` `image_url` is not supported"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"tool_calls\":[]},{\"role\":\"assistant\",\"content\":\"b\"}]}\n",
         "line 1: field `messages[0].tool_calls` belong to assistant messages"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"function\":{}}]}]}\n",
         "line 1: field `messages[1].tool_calls[0].function.name` must be a string"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n",
         "line 1: field `messages[1]`: a system message must come first"},
        {"{\"messages\":[1]}\n", "line 1: field `messages[0]` must be an object"},
        {"{\"text\":\"a\"}\n{\"prompt\":\"a\",\"completion\":\"b\"}\n", "line 2: format prompt_completion differs from text of line 1"},
        {"{\"text\":\"a\"}\n{\"text\":\"caf\xc3\"}\n", "line 2: invalid UTF-8 at byte 13"},
        {"{\"text\":\"\xed\xa0\x80\"}\n", "line 1: invalid UTF-8 at byte 10"},  /* a surrogate */
        {"{\"text\":\"\xc0\xaf\"}\n", "line 1: invalid UTF-8 at byte 10"},      /* an overlong '/' */
        {"", "file is empty"},
        {"\n  \n\n", "file has no examples"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hlpt_dataset_stats st;
        why[0] = 0;
        ck_assert_int_eq(hlpt_dataset_validate(cases[i].file, strlen(cases[i].file), &st, why, sizeof why),
                         HLPT_ERR_FORMAT);
        ck_assert_msg(strncmp(why, cases[i].msg, strlen(cases[i].msg)) == 0, "case %zu: got `%s`, want `%s`", i, why,
                      cases[i].msg);
    }
    /* A NUL byte inside a line. */
    static const char nul[] = "{\"text\":\"a\"}\n{\"text\":\"a\0b\"}\n";
    ck_assert_int_eq(hlpt_dataset_validate(nul, sizeof nul - 1, NULL, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_str_eq(why, "line 2: NUL byte at byte 11");
}
END_TEST

static int count_words(void *ctx, const char *text, size_t n, size_t *tokens) {
    (*(int *)ctx)++;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) w += text[i] != ' ' && (i == 0 || text[i - 1] == ' ');
    *tokens = w;
    return HLPT_OK;
}

START_TEST(test_stats) {
    const char *file = "{\"prompt\":\"h\xc3\xa9llo there\",\"completion\":\" w\xc3\xb6rld\"}\r\n\n"
                       "{\"prompt\":\"a\",\"completion\":\"b c d\"}";
    hlpt_dataset_stats st;
    ck_assert_int_eq(hlpt_dataset_validate(file, strlen(file), &st, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(st.format, HLPT_DATASET_PROMPT_COMPLETION);
    ck_assert_uint_eq(st.examples, 2);
    ck_assert_uint_eq(st.lines, 3);
    ck_assert_uint_eq(st.prompt_chars, 11 + 1);     /* "héllo there" is 11 characters */
    ck_assert_uint_eq(st.completion_chars, 6 + 5);  /* " wörld", "b c d" */
    ck_assert_uint_eq(st.max_example_chars, 17);
    ck_assert_int_eq(st.tokens, -1);
    int calls = 0;
    hlpt_dataset_opts o = {.count_tokens = count_words, .count_ctx = &calls};
    ck_assert_int_eq(hlpt_dataset_validate_ex(file, strlen(file), &o, &st, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(calls, 4);
    ck_assert_int_eq(st.tokens, 2 + 1 + 1 + 3);
    ck_assert_int_eq(st.max_example_tokens, 4);
    ck_assert_str_eq(hlpt_dataset_format_name(HLPT_DATASET_ALPACA), "alpaca");
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("dataset");
    TCase *tc = tcase_create("dataset");
    tcase_add_test(tc, test_prompt_completion);
    tcase_add_test(tc, test_alpaca);
    tcase_add_test(tc, test_messages_chatml);
    tcase_add_test(tc, test_messages_openai_shapes);
    tcase_add_test(tc, test_messages_llama2);
    tcase_add_test(tc, test_text);
    tcase_add_test(tc, test_line_errors);
    tcase_add_test(tc, test_stats);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
