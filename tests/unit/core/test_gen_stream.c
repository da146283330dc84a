/*
 * Streaming text of a generation: the part hlpt_gen_text_ready() calls final never changes later,
 * so streamed deltas add up to exactly the final text. Tokens are forced through one-hot logits;
 * byte-fallback pieces are the hard case (HF decodes a run of them as one unit, so "f" from <0x66>
 * becomes U+FFFD once an invalid byte follows), and special tokens inside such a run harder still:
 * decoding skips them, so the bytes on either side join into one run.
 */
#include <stdlib.h>
#include <string.h>

#include "../check_main.h"
#include "hlpt/err.h"
#include "hlpt/generate.h"
#include "hlpt/tokenizer.h"

/* Whether s[n] is valid UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF). */
static int valid_utf8(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        size_t k = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!k || i + k > n) return 0;
        unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80, hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
        if (k > 1 && (u[i + 1] < lo || u[i + 1] > hi)) return 0;
        for (size_t j = 2; j < k; j++)
            if ((u[i + j] & 0xC0) != 0x80) return 0;
        i += k;
    }
    return 1;
}

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
        /* What a stream sends: each newly final part is a delta of its own (server/infer.c), and a
         * generation cancelled now would end with the rest of its text (api/generate.c). */
        ck_assert_msg(valid_utf8(text + n_sent, ready - n_sent), "step %d: the delta after %zu bytes is not UTF-8", i, n_sent);
        ck_assert_msg(valid_utf8(text + n_sent, len - n_sent), "step %d: the rest after %zu bytes is not UTF-8", i, n_sent);
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

START_TEST(test_special_tokens_inside_byte_runs) {
    /* With ignore_eos, </s> may come between byte pieces; decoding skips it and the bytes around it
     * form one run. "A" then </s> is not final: a lone continuation byte after it turns the run
     * <0x41><0x80> into two U+FFFD. */
    int eos = piece("</s>");
    int ids[] = {piece("<0x41>"), eos, piece("<0x80>"), piece("f")};
    size_t ready[4];
    char *text = stream(ids, 4, ready);
    ck_assert_str_eq(text, "\xEF\xBF\xBD\xEF\xBF\xBD" "f");
    for (int i = 0; i < 3; i++) ck_assert_uint_eq(ready[i], 0);
    free(text);

    /* The euro sign split by <s> and <unk>: whole once its last byte came, and still not final
     * while the run may grow. */
    int split[] = {piece("<0xE2>"), piece("<s>"), piece("<0x82>"), piece("<unk>"), piece("<0xAC>"), eos, piece("f")};
    size_t r2[7];
    text = stream(split, 7, r2);
    ck_assert_str_eq(text, "\xE2\x82\xAC" "f");
    for (int i = 0; i < 6; i++) ck_assert_uint_eq(r2[i], 0);
    free(text);

    /* Special tokens after ordinary text hold nothing back. */
    int plain[] = {piece("f"), eos, eos, piece("f")};
    size_t r3[4];
    text = stream(plain, 4, r3);
    ck_assert_str_eq(text, "ff");
    ck_assert_uint_eq(r3[1], 1);
    ck_assert_uint_eq(r3[2], 1);
    free(text);

    /* A generation that ends inside a character ends with U+FFFD, one per byte of the run, never
     * with half a character: "f", then two bytes of the euro sign. */
    int cut[] = {piece("f"), piece("<0xE2>"), eos, piece("<0x82>")};
    size_t r4[4];
    text = stream(cut, 4, r4);
    ck_assert_str_eq(text, "f\xEF\xBF\xBD\xEF\xBF\xBD");
    ck_assert_uint_eq(r4[2], 1);
    free(text);
}
END_TEST

START_TEST(test_random_sequences_with_special_tokens) {
    /* As above, with the special tokens a sampler may pick (</s> under ignore_eos, <s>, <unk>). */
    int V = hlpt_tokenizer_vocab_size(hlpt_model_tokenizer(model));
    unsigned seed = 777;
    for (int round = 0; round < 300; round++) {
        int ids[24];
        for (int i = 0; i < 24; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned r = (seed >> 8) % 1000;
            seed = seed * 1103515245u + 12345u;
            unsigned x = seed >> 8;
            ids[i] = r < 200 ? (int)(x % 3) : r < 700 ? piece("<0x00>") + (int)(x % 256) : 3 + (int)(x % (unsigned)(V - 3));
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
    tcase_add_test(tc, test_special_tokens_inside_byte_runs);
    tcase_add_test(tc, test_random_sequences_with_special_tokens);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
