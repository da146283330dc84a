/*
 * Streaming text of a generation: the part hlpt_gen_text_ready() calls final never changes later,
 * so streamed deltas add up to exactly the final text. Tokens are forced through one-hot logits;
 * byte-fallback pieces are the hard case (HF decodes a run of them as one unit, so "f" from <0x66>
 * becomes U+FFFD once an invalid byte follows).
 */
#include <stdlib.h>
#include <string.h>

#include "../check_main.h"
#include "hlpt/err.h"
#include "hlpt/generate.h"
#include "hlpt/tokenizer.h"

static hlpt_model *model;
static char why[512];

static void setup(void) {
    char dir[512];
    ck_assert_int_eq(hlpt_model_open(fixture_path(dir, sizeof dir, "llama2-mha-f32"), HLPT_BASE_F32, &model, why, sizeof why), HLPT_OK);
}

static void teardown(void) { hlpt_model_close(model); }

/* Feeds ids one by one; checks after every step that what was final stays a prefix of the text,
 * and returns the streamed text (owned). */
static char *stream(const int *ids, int n, size_t *ready_after) {
    int V = hlpt_model_config(model)->vocab, prompt[1] = {hlpt_model_config(model)->bos_id};
    hlpt_gen_params p;
    hlpt_gen_params_defaults(&p);
    p.max_tokens = n;
    p.temperature = 0;
    p.ignore_eos = 1;
    hlpt_gen *g = NULL;
    ck_assert_int_eq(hlpt_gen_new(model, NULL, prompt, 1, &p, &g, why, sizeof why), HLPT_OK);
    float *logits = calloc((size_t)V, sizeof *logits);
    char *sent = calloc(1, 1);
    size_t n_sent = 0;
    for (int i = 0; i < n; i++) {
        memset(logits, 0, sizeof(float) * (size_t)V);
        logits[ids[i]] = 10;
        int done = hlpt_gen_accept(g, logits);
        ck_assert_int_eq(done, i == n - 1);
        size_t len, ready = hlpt_gen_text_ready(g);
        const char *text = hlpt_gen_text(g, &len);
        ck_assert_uint_le(ready, len);
        ck_assert_msg(ready >= n_sent && !memcmp(text, sent, n_sent), "step %d: streamed text `%s` is no longer a prefix of `%s`",
                      i, sent, text);
        sent = realloc(sent, ready + 1);
        memcpy(sent, text, ready);
        sent[ready] = 0;
        n_sent = ready;
        if (ready_after) ready_after[i] = ready;
    }
    size_t len;
    const char *text = hlpt_gen_text(g, &len);
    ck_assert_uint_eq(n_sent, len);
    ck_assert_mem_eq(sent, text, len);
    free(logits);
    hlpt_gen_free(g);
    return sent;
}

static int piece(const char *s) {
    int id = hlpt_tokenizer_token_id(hlpt_model_tokenizer(model), s);
    ck_assert_msg(id >= 0, "no piece %s in the fixture's vocabulary", s);
    return id;
}

START_TEST(test_byte_run_is_not_final) {
    /* f, then the three bytes of U+20AC, then an ordinary piece. */
    int ids[] = {piece("<0x66>"), piece("<0xE2>"), piece("<0x82>"), piece("<0xAC>"), piece("f")};
    size_t ready[5];
    char *text = stream(ids, 5, ready);
    ck_assert_str_eq(text, "f\xE2\x82\xAC" "f");
    /* Nothing of a growing byte run is final, not even "f" or the whole euro sign. */
    for (int i = 0; i < 4; i++) ck_assert_uint_eq(ready[i], 0);
    free(text);

    /* f then a lone continuation byte: the run decodes to two U+FFFD, and "f" was never streamed. */
    int bad[] = {piece("<0x66>"), piece("<0x82>"), piece("f"), piece("f")};
    text = stream(bad, 4, ready);
    ck_assert_str_eq(text, "\xEF\xBF\xBD\xEF\xBF\xBD" "ff");
    ck_assert_uint_eq(ready[0], 0);
    free(text);
}
END_TEST

START_TEST(test_random_sequences_stream_exactly) {
    /* Byte pieces mixed with ordinary ones: whatever the order, the stream never takes text back. */
    int V = hlpt_tokenizer_vocab_size(hlpt_model_tokenizer(model));
    const int eos = hlpt_model_config(model)->n_eos ? hlpt_model_config(model)->eos_ids[0] : -1;
    unsigned seed = 12345;
    for (int round = 0; round < 200; round++) {
        int ids[24];
        for (int i = 0; i < 24; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned r = (seed >> 8) % 1000;
            /* Half byte pieces (<0x00>..<0xFF> are consecutive ids in SentencePiece vocabularies). */
            int id;
            do {
                seed = seed * 1103515245u + 12345u;
                id = r < 500 ? piece("<0x00>") + (int)((seed >> 8) % 256) : 3 + (int)((seed >> 8) % (unsigned)(V - 3));
            } while (id == eos || hlpt_tokenizer_is_special(hlpt_model_tokenizer(model), id));
            ids[i] = id;
        }
        free(stream(ids, 24, NULL));
    }
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("gen_stream");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_byte_run_is_not_final);
    tcase_add_test(tc, test_random_sequences_stream_exactly);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
