/* JSONL datasets: every format renders as the published templates say; every error names its
 * line (and field or byte). */
#include "hlpt/dataset.h"

#include <stdio.h>
#include <stdlib.h>
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

/* ---- the same validation, piece by piece ------------------------------------------------------------ */

typedef struct {
    int err;
    char why[512];
    hlpt_dataset_stats st;
} verdict;

/* Validates file[0..n) cut at cuts[0..ncuts) (ascending offsets). */
static verdict validate_cut(const char *file, size_t n, const size_t *cuts, size_t ncuts, const hlpt_dataset_opts *o) {
    verdict v = {0};
    hlpt_dataset_validator *dv;
    ck_assert_int_eq(hlpt_dataset_validator_new(o, &dv), HLPT_OK);
    size_t at = 0;
    int early = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        int err = hlpt_dataset_validator_feed(dv, file + at, to - at, v.why, sizeof v.why);
        if (err && !early) early = err;
        at = to;
    }
    char first[512];
    snprintf(first, sizeof first, "%s", v.why);
    v.err = hlpt_dataset_validator_finish(dv, &v.st, v.why, sizeof v.why);
    /* An error found while feeding is the verdict, word for word. */
    if (early) {
        ck_assert_int_eq(v.err, early);
        ck_assert_str_eq(v.why, first);
    }
    hlpt_dataset_validator_free(dv);
    return v;
}

static void assert_same_verdict(const verdict *w, const verdict *p, const char *what, size_t i, size_t j) {
    ck_assert_msg(w->err == p->err, "%s cut at %zu,%zu: %d, whole: %d", what, i, j, p->err, w->err);
    if (w->err) {
        ck_assert_msg(strcmp(w->why, p->why) == 0, "%s cut at %zu,%zu: `%s`, whole: `%s`", what, i, j, p->why, w->why);
        return;
    }
    ck_assert_msg(w->st.format == p->st.format && w->st.examples == p->st.examples && w->st.lines == p->st.lines &&
                      w->st.prompt_chars == p->st.prompt_chars && w->st.completion_chars == p->st.completion_chars &&
                      w->st.max_example_chars == p->st.max_example_chars && w->st.tokens == p->st.tokens &&
                      w->st.max_example_tokens == p->st.max_example_tokens,
                  "%s cut at %zu,%zu: other statistics", what, i, j);
}

static verdict whole_verdict(const char *file, size_t n, const hlpt_dataset_opts *o) {
    verdict w = {0};
    w.err = hlpt_dataset_validate_ex(file, n, o, &w.st, w.why, sizeof w.why);
    return w;
}

/* Every cut into two pieces (and three, for short files), and byte by byte. */
static verdict split_everywhere(const char *file, size_t n, const hlpt_dataset_opts *o, const char *what) {
    verdict w = whole_verdict(file, n, o);
    for (size_t i = 0; i <= n; i++) {
        for (size_t j = n < 200 ? i : n; j <= n; j++) {
            size_t cuts[2] = {i, j};
            verdict p = validate_cut(file, n, cuts, 2, o);
            assert_same_verdict(&w, &p, what, i, j);
        }
    }
    size_t *every = malloc((n + 1) * sizeof *every);
    for (size_t i = 0; i < n; i++) every[i] = i;
    verdict p = validate_cut(file, n, every, n, o);
    assert_same_verdict(&w, &p, what, 1, 1);
    free(every);
    return w;
}

START_TEST(test_streamed_bad_files) {
    static const struct {
        const char *file;
        const char *msg;
    } cases[] = {
        {"{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"prompt\":\"a\"}\n", "line 2: field `completion` missing"},
        {"{\"prompt\":\"a\",\"completion\":\"b\"}\n\n{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"prompt\": x}\n",
         "line 4: invalid JSON at byte 12"},
        {"{\"prompt\":\"a\",\"completion\":\"b\"}\r\n{\"prompt\":\"a\",\"completion\":\"b\"} x", "line 2: invalid JSON at byte 33"},
        {"{\"text\":\"a\"}\n{\"prompt\":\"a\",\"completion\":\"b\"}\n", "line 2: format prompt_completion differs from text of line 1"},
        {"{\"text\":\"a\"}\n\n\n{\"text\":\"caf\xc3\"}", "line 4: invalid UTF-8 at byte 13"},
        {"\n\n{\"text\":\"a\"}\n{\"messages\":[1]}\n{\"text\":\"b\"}\n", "line 4: field `messages[0]` must be an object"},
        {"", "file is empty"},
        {"\n  \n\r\n", "file has no examples"},
        {"{\"text\":\"a\"}\n[", "line 2: invalid JSON at byte 2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        verdict w = split_everywhere(cases[i].file, strlen(cases[i].file), NULL, cases[i].file);
        ck_assert_int_eq(w.err, HLPT_ERR_FORMAT);
        ck_assert_msg(strncmp(w.why, cases[i].msg, strlen(cases[i].msg)) == 0, "case %zu: `%s`, want `%s`", i, w.why,
                      cases[i].msg);
    }
    static const char nul[] = "{\"text\":\"a\"}\n{\"text\":\"a\0b\"}\n";
    verdict w = split_everywhere(nul, sizeof nul - 1, NULL, "NUL");
    ck_assert_str_eq(w.why, "line 2: NUL byte at byte 11");
    /* An unknown chat template fails at the first line, however it is cut. */
    hlpt_dataset_opts o = {.chat_template = "nope"};
    w = split_everywhere("\n{\"text\":\"a\"}\n", 14, &o, "template");
    ck_assert_int_eq(w.err, HLPT_ERR_INVAL);
}
END_TEST

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s", path);
    fseek(f, 0, SEEK_END);
    long k = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)k + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)k, f), (size_t)k);
    fclose(f);
    *n = (size_t)k;
    return buf;
}

/* The repository's datasets (the fuzzer's seeds, good or not, and the training sets): small ones cut everywhere, large ones in random pieces and at every
 * offset around a few line ends; with a token counter, whose totals must match too. */
START_TEST(test_streamed_datasets) {
    static const char *const small[] = {"tests/fuzz/seeds/fuzz_dataset/plain.jsonl", "tests/fuzz/seeds/fuzz_dataset/chat.jsonl"};
    int calls = 0;
    hlpt_dataset_opts o = {.count_tokens = count_words, .count_ctx = &calls};
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) {
        size_t n;
        char *buf = read_all(small[i], &n);
        split_everywhere(buf, n, &o, small[i]);
        free(buf);
    }
    static const char *const large[] = {"data/math/train.jsonl", "data/wordnet/train.jsonl", "data/math/valid.jsonl"};
    unsigned seed = 7;
    for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) {
        size_t n;
        char *buf = read_all(large[i], &n);
        verdict w = whole_verdict(buf, n, &o);
        ck_assert_msg(w.err == HLPT_OK, "%s: %s", large[i], w.why);
        ck_assert_uint_gt(w.st.examples, 100);
        for (int round = 0; round < 4; round++) {
            size_t *cuts = malloc(n * sizeof *cuts), nc = 0;
            for (size_t at = 0;;) {
                at += 1 + (size_t)rand_r(&seed) % (round == 0 ? 7 : round == 1 ? 300 : 70000);
                if (at >= n) break;
                cuts[nc++] = at;
            }
            verdict p = validate_cut(buf, n, cuts, nc, &o);
            assert_same_verdict(&w, &p, large[i], (size_t)round, nc);
            free(cuts);
        }
        const char *third = memchr(buf + n / 3, '\n', n - n / 3);
        for (size_t at = (size_t)(third - buf) - 40; at < (size_t)(third - buf) + 40; at++) {
            verdict p = validate_cut(buf, n, &at, 1, &o);
            assert_same_verdict(&w, &p, large[i], at, at);
        }
        free(buf);
    }
}
END_TEST

/* A line longer than the limit is an error naming it, whether it comes whole or in pieces. */
START_TEST(test_line_too_long) {
    size_t big = HLPT_DATASET_LINE_MAX + 10, n = 0;
    char *file = malloc(big + 64);
    n += (size_t)sprintf(file, "{\"text\":\"a\"}\n");
    memset(file + n, 'x', big);
    n += big;
    file[n++] = '\n';
    verdict w = whole_verdict(file, n, NULL);
    ck_assert_int_eq(w.err, HLPT_ERR_FORMAT);
    ck_assert_str_eq(w.why, "line 2: longer than 16777216 bytes");
    size_t cuts[3] = {5, 1 << 20, 9 << 20};
    verdict p = validate_cut(file, n, cuts, 3, NULL);
    assert_same_verdict(&w, &p, "long line", 0, 0);
    /* At the limit, it is merely bad JSON. */
    n = 13 + HLPT_DATASET_LINE_MAX;
    p = validate_cut(file, n, cuts, 3, NULL);
    ck_assert_str_eq(p.why, "line 2: invalid JSON at byte 1");
    free(file);
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
    tcase_add_test(tc, test_streamed_bad_files);
    tcase_add_test(tc, test_streamed_datasets);
    tcase_add_test(tc, test_line_too_long);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
