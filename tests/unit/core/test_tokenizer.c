/* The tokenizer against HF tokenizers' own output (tokenizer_cases.json, ref.json of both fixture
 * models), hand-checked BPE on tiny vocabularies, variants of the fixture files (Metaspace form,
 * added-token flags, merges as pairs), bad files, invalid input, streaming and threads. */
#include "hlpt/tokenizer.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "hlpt/err.h"

#include "../check_main.h"

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)sz + 1);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(fread(p, 1, (size_t)sz, f), (size_t)sz);
    p[sz] = 0;
    fclose(f);
    if (n) *n = (size_t)sz;
    return p;
}

static cJSON *read_json(const char *rel) {
    char path[512];
    char *s = read_all(fixture_path(path, sizeof path, rel), NULL);
    cJSON *j = cJSON_Parse(s);
    free(s);
    ck_assert_msg(j != NULL, "%s: bad JSON", rel);
    return j;
}

static hlpt_tokenizer *load(const char *model) {
    char path[512], rel[256], why[256] = "";
    snprintf(rel, sizeof rel, "%s/tokenizer.json", model);
    hlpt_tokenizer *t = NULL;
    int rc = hlpt_tokenizer_load(fixture_path(path, sizeof path, rel), &t, why, sizeof why);
    ck_assert_msg(rc == HLPT_OK, "load %s: %s", model, why);
    return t;
}

/* Parses a JSON document (an edited fixture) into a tokenizer. */
static int parse_json(const cJSON *j, hlpt_tokenizer **t, char *why, size_t len) {
    char *s = cJSON_PrintUnformatted(j);
    ck_assert_ptr_nonnull(s);
    int rc = hlpt_tokenizer_parse(s, strlen(s), t, why, len);
    free(s);
    return rc;
}

static void encode_ok(const hlpt_tokenizer *t, const char *text, int special, int **ids, int *n) {
    char why[256] = "";
    int rc = hlpt_tokenizer_encode(t, text, strlen(text), special, ids, n, why, sizeof why);
    ck_assert_msg(rc == HLPT_OK, "encode \"%s\": %s", text, why);
}

static char *decode_ok(const hlpt_tokenizer *t, const int *ids, int n, int skip) {
    char why[256] = "", *text = NULL;
    size_t len = 0;
    int rc = hlpt_tokenizer_decode(t, ids, n, skip, &text, &len, why, sizeof why);
    ck_assert_msg(rc == HLPT_OK, "decode: %s", why);
    ck_assert_uint_eq(strlen(text), len);
    return text;
}

static void assert_ids(const int *got, int n_got, const cJSON *want, const char *text) {
    int n = cJSON_GetArraySize(want);
    int same = n == n_got;
    for (int i = 0; same && i < n; i++) same = got[i] == cJSON_GetArrayItem(want, i)->valueint;
    if (!same) {
        char *w = cJSON_PrintUnformatted(want);
        fprintf(stderr, "text \"%s\"\n  want %s\n  got  [", text, w);
        for (int i = 0; i < n_got; i++) fprintf(stderr, "%s%d", i ? "," : "", got[i]);
        fprintf(stderr, "]\n");
        free(w);
    }
    ck_assert_msg(same, "ids differ for \"%.60s\" (%d vs %d ids)", text, n_got, n);
}

/* Every case: ids, token strings, and the decoded text, with parse_special on as HF did. */
static void check_cases(const char *model) {
    char rel[256];
    snprintf(rel, sizeof rel, "%s/tokenizer_cases.json", model);
    cJSON *cases = read_json(rel);
    hlpt_tokenizer *t = load(model);
    int k = 0;
    for (const cJSON *c = cases->child; c; c = c->next, k++) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(c, "ids"), *tokens = cJSON_GetObjectItem(c, "tokens");
        int *ids = NULL, n = 0;
        encode_ok(t, text, 1, &ids, &n);
        assert_ids(ids, n, want, text);
        for (int i = 0; i < n; i++)
            ck_assert_str_eq(hlpt_tokenizer_piece(t, ids[i]), cJSON_GetArrayItem(tokens, i)->valuestring);
        char *dec = decode_ok(t, ids, n, 0);
        ck_assert_msg(strcmp(dec, cJSON_GetObjectItem(c, "decoded")->valuestring) == 0,
                      "case %d decodes to \"%s\"", k, dec);
        free(dec);
        free(ids);
    }
    ck_assert_int_ge(k, 50);
    hlpt_tokenizer_free(t);
    cJSON_Delete(cases);
}

START_TEST(test_cases_llama2) { check_cases("llama2-mha-f32"); }
END_TEST

START_TEST(test_cases_llama3) { check_cases("llama3-gqa-tied-bf16"); }
END_TEST

/* ref.json: input_ids = [bos] + encode(prompt), bos from config.json. */
static void check_ref(const char *model) {
    char rel[256];
    snprintf(rel, sizeof rel, "%s/ref.json", model);
    cJSON *ref = read_json(rel);
    snprintf(rel, sizeof rel, "%s/config.json", model);
    cJSON *cfg = read_json(rel);
    int bos = cJSON_GetObjectItem(cfg, "bos_token_id")->valueint;
    hlpt_tokenizer *t = load(model);
    ck_assert_int_eq(hlpt_tokenizer_default_bos(t), bos);
    int k = 0;
    for (const cJSON *c = cJSON_GetObjectItem(ref, "cases")->child; c; c = c->next, k++) {
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(c, "input_ids");
        int *ids = NULL, n = 0;
        encode_ok(t, prompt, 0, &ids, &n);
        int *all = malloc(sizeof(int) * (size_t)(n + 1));
        all[0] = bos;
        if (n) memcpy(all + 1, ids, sizeof(int) * (size_t)n);
        assert_ids(all, n + 1, want, prompt);
        free(all);
        free(ids);
    }
    ck_assert_int_eq(k, 3);
    hlpt_tokenizer_free(t);
    cJSON_Delete(ref);
    cJSON_Delete(cfg);
}

START_TEST(test_ref_llama2) { check_ref("llama2-mha-f32"); }
END_TEST

START_TEST(test_ref_llama3) { check_ref("llama3-gqa-tied-bf16"); }
END_TEST

/* User text "<s>" stays text by default: no special id, and the text comes back unchanged. */
START_TEST(test_special_text_not_parsed) {
    hlpt_tokenizer *t = load("llama2-mha-f32");
    const char *text = "<s> not special </s>";
    int *ids = NULL, n = 0;
    encode_ok(t, text, 0, &ids, &n);
    ck_assert_int_gt(n, 4);
    for (int i = 0; i < n; i++) ck_assert_msg(!hlpt_tokenizer_is_special(t, ids[i]), "id %d is special", ids[i]);
    /* The SentencePiece kind: "<s>" at the start is "▁<" "s" ">" or finer, never id 1. */
    ck_assert_int_ne(ids[0], 1);
    char *dec = decode_ok(t, ids, n, 0);
    ck_assert_str_eq(dec, text);
    free(dec);
    free(ids);
    /* With parse_special the special ids appear. */
    encode_ok(t, text, 1, &ids, &n);
    ck_assert_int_eq(ids[0], 1);
    ck_assert_int_eq(ids[n - 1], 2);
    free(ids);
    hlpt_tokenizer_free(t);
}
END_TEST

/* skip_special and the HF decodings of a BOS-led sequence. */
START_TEST(test_skip_special) {
    hlpt_tokenizer *t = load("llama2-mha-f32");
    int *ids = NULL, n = 0;
    encode_ok(t, "Hello world", 0, &ids, &n);
    int *all = malloc(sizeof(int) * (size_t)(n + 2));
    all[0] = 1;
    memcpy(all + 1, ids, sizeof(int) * (size_t)n);
    all[n + 1] = 2;
    char *a = decode_ok(t, all, n + 2, 0), *b = decode_ok(t, all, n + 2, 1);
    ck_assert_str_eq(a, "<s> Hello world</s>");
    ck_assert_str_eq(b, "Hello world");
    free(a);
    free(b);
    free(all);
    free(ids);
    hlpt_tokenizer_free(t);

    t = load("llama3-gqa-tied-bf16");
    encode_ok(t, "Hello world", 0, &ids, &n);
    all = malloc(sizeof(int) * (size_t)(n + 1));
    all[0] = 0;
    memcpy(all + 1, ids, sizeof(int) * (size_t)n);
    a = decode_ok(t, all, n + 1, 0);
    b = decode_ok(t, all, n + 1, 1);
    ck_assert_str_eq(a, "<|begin_of_text|>Hello world");
    ck_assert_str_eq(b, "Hello world");
    free(a);
    free(b);
    free(all);
    free(ids);
    hlpt_tokenizer_free(t);
}
END_TEST

/* Incomplete byte sequences decode to U+FFFD as HF does: ByteFallback one per byte piece, ByteLevel
 * one per maximal invalid subpart (Rust's from_utf8_lossy). */
START_TEST(test_decode_invalid_bytes) {
    hlpt_tokenizer *t = load("llama2-mha-f32");
    int e4 = hlpt_tokenizer_token_id(t, "<0xE4>"), b8 = hlpt_tokenizer_token_id(t, "<0xB8>"),
        ad = hlpt_tokenizer_token_id(t, "<0xAD>"), a = hlpt_tokenizer_token_id(t, "a");
    ck_assert_int_eq(e4, 3 + 0xE4);
    int seq1[] = {a, e4, b8};
    char *s = decode_ok(t, seq1, 3, 0);
    ck_assert_str_eq(s, "a\xEF\xBF\xBD\xEF\xBF\xBD");
    ck_assert_uint_eq(hlpt_tokenizer_stream_safe_len(s, strlen(s)), 1);
    free(s);
    int seq2[] = {a, e4, b8, ad};
    s = decode_ok(t, seq2, 4, 0);
    ck_assert_str_eq(s, "a\xE4\xB8\xAD");  /* 中 */
    ck_assert_uint_eq(hlpt_tokenizer_stream_safe_len(s, strlen(s)), strlen(s));
    free(s);
    hlpt_tokenizer_free(t);

    t = load("llama3-gqa-tied-bf16");
    /* Byte-level characters: 0xE4 is "ä", 0xB8 is "¸". */
    int x = hlpt_tokenizer_token_id(t, "x"), ae = hlpt_tokenizer_token_id(t, "\xC3\xA4"),
        ce = hlpt_tokenizer_token_id(t, "\xC2\xB8");
    ck_assert_int_ge(ae, 0);
    ck_assert_int_ge(ce, 0);
    int seq3[] = {ae, ce, x};
    s = decode_ok(t, seq3, 3, 0);
    ck_assert_str_eq(s, "\xEF\xBF\xBDx");
    free(s);
    hlpt_tokenizer_free(t);
}
END_TEST

START_TEST(test_stream_safe_len) {
    ck_assert_uint_eq(hlpt_tokenizer_stream_safe_len("abc", 3), 3);
    ck_assert_uint_eq(hlpt_tokenizer_stream_safe_len("ab\xE4\xB8", 4), 2);
    ck_assert_uint_eq(hlpt_tokenizer_stream_safe_len("ab\xE4", 3), 2);
    ck_assert_uint_eq(hlpt_tokenizer_stream_safe_len("ab\xE4\xB8\xAD", 5), 5);
    ck_assert_uint_eq(hlpt_tokenizer_stream_safe_len("ab\xF0\x9F\xA4", 5), 2);
    ck_assert_uint_eq(hlpt_tokenizer_stream_safe_len("a\xEF\xBF\xBD" "b", 5), 5);
    ck_assert_uint_eq(hlpt_tokenizer_stream_safe_len("a\xEF\xBF\xBD\xEF\xBF\xBD", 7), 1);
    ck_assert_uint_eq(hlpt_tokenizer_stream_safe_len("", 0), 0);

}
END_TEST

/* Streaming: the pieces emitted one id at a time add up to the full decode, and nothing emitted is an
 * incomplete character, for byte-fallback runs (where a decoded character turns back into U+FFFD
 * while the next one's bytes arrive) as well as byte-level pieces. */
START_TEST(test_decode_stream) {
    const char *models[] = {"llama2-mha-f32", "llama3-gqa-tied-bf16"};
    const char *texts[] = {
        "emoji \xF0\x9F\xA4\x96 and \xE4\xB8\xAD\xE6\x96\x87\xE5\xAD\x97 ok",
        "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA9 caf\xC3\xA9 na\xC3\xAFve",
        "Hello world, plain text.",
    };
    for (int m = 0; m < 2; m++) {
        hlpt_tokenizer *t = load(models[m]);
        for (int k = 0; k < 3; k++) {
            int *ids = NULL, n = 0;
            encode_ok(t, texts[k], 0, &ids, &n);
            char *full = decode_ok(t, ids, n, 0);
            char out[512] = "";
            size_t used = 0;
            hlpt_tokenizer_stream st = {0, 0};
            for (int i = 1; i <= n; i++) {
                char *piece = NULL, why[256] = "";
                size_t len = 0;
                ck_assert_msg(hlpt_tokenizer_decode_stream(t, &st, ids, i, 0, i == n, &piece, &len, why, sizeof why) == HLPT_OK, "%s", why);
                ck_assert_uint_eq(hlpt_tokenizer_stream_safe_len(piece, len), len);
                ck_assert_uint_lt(used + len, sizeof out);
                memcpy(out + used, piece, len + 1);
                used += len;
                free(piece);
            }
            ck_assert_str_eq(out, full);
            ck_assert_str_eq(out, texts[k]);
            free(full);
            free(ids);
        }
        hlpt_tokenizer_free(t);
    }
    /* A prompt then generated ids: starting the window one id back keeps the leading space. */
    hlpt_tokenizer *t = load("llama2-mha-f32");
    int *ids = NULL, n = 0;
    encode_ok(t, "Hello world", 0, &ids, &n);  /* "▁H" "ell" "o" "▁wor" "ld" */
    hlpt_tokenizer_stream st = {2, 3};
    char *a = NULL, *b = NULL;
    size_t la, lb;
    ck_assert_int_eq(hlpt_tokenizer_decode_stream(t, &st, ids, 4, 0, 0, &a, &la, NULL, 0), HLPT_OK);
    ck_assert_int_eq(hlpt_tokenizer_decode_stream(t, &st, ids, 5, 0, 1, &b, &lb, NULL, 0), HLPT_OK);
    ck_assert_str_eq(a, " wor");
    ck_assert_str_eq(b, "ld");
    free(a);
    free(b);
    st = (hlpt_tokenizer_stream){3, 2};
    ck_assert_int_eq(hlpt_tokenizer_decode_stream(t, &st, ids, 5, 0, 0, &a, &la, NULL, 0), HLPT_ERR_INVAL);
    ck_assert_ptr_null(a);
    free(ids);
    hlpt_tokenizer_free(t);
}
END_TEST

START_TEST(test_lookups) {
    hlpt_tokenizer *t = load("llama2-mha-f32");
    ck_assert_int_eq(hlpt_tokenizer_vocab_size(t), 1024);
    ck_assert_int_eq(hlpt_tokenizer_get_kind(t), HLPT_TOKENIZER_SENTENCEPIECE);
    ck_assert_int_eq(hlpt_tokenizer_token_id(t, "<s>"), 1);
    ck_assert_int_eq(hlpt_tokenizer_token_id(t, "<0x0A>"), 13);
    ck_assert_int_eq(hlpt_tokenizer_token_id(t, "no such piece"), -1);
    ck_assert_int_eq(hlpt_tokenizer_token_id(t, ""), -1);
    ck_assert_str_eq(hlpt_tokenizer_piece(t, 1023), "way");
    ck_assert_ptr_null(hlpt_tokenizer_piece(t, 1024));
    ck_assert_ptr_null(hlpt_tokenizer_piece(t, -1));
    ck_assert_int_eq(hlpt_tokenizer_is_special(t, 2), 1);
    ck_assert_int_eq(hlpt_tokenizer_is_special(t, 3), 0);
    ck_assert_int_eq(hlpt_tokenizer_is_special(t, 5000), 0);
    hlpt_tokenizer_free(t);
    t = load("llama3-gqa-tied-bf16");
    ck_assert_int_eq(hlpt_tokenizer_vocab_size(t), 1200);
    ck_assert_int_eq(hlpt_tokenizer_get_kind(t), HLPT_TOKENIZER_BYTE_LEVEL);
    ck_assert_int_eq(hlpt_tokenizer_token_id(t, "<|end_of_text|>"), 1);
    ck_assert_int_eq(hlpt_tokenizer_default_bos(t), 0);
    hlpt_tokenizer_free(t);

    /* A directory loads its tokenizer.json. */
    char path[512], why[256];
    ck_assert_int_eq(hlpt_tokenizer_load(fixture_path(path, sizeof path, "llama2-mha-f32"), &t, why, sizeof why), HLPT_OK);
    hlpt_tokenizer_free(t);
    ck_assert_int_eq(hlpt_tokenizer_load(fixture_path(path, sizeof path, "no-such-dir"), &t, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_null(t);
    hlpt_tokenizer_free(NULL);
}
END_TEST

START_TEST(test_decode_range) {
    hlpt_tokenizer *t = load("llama3-gqa-tied-bf16");
    char why[256] = "", *text = (char *)1;
    size_t n = 7;
    int ids[] = {5, 1200};
    ck_assert_int_eq(hlpt_tokenizer_decode(t, ids, 2, 0, &text, &n, why, sizeof why), HLPT_ERR_RANGE);
    ck_assert_ptr_null(text);
    ck_assert_ptr_nonnull(strstr(why, "1200"));
    int neg[] = {-3};
    ck_assert_int_eq(hlpt_tokenizer_decode(t, neg, 1, 0, &text, &n, why, sizeof why), HLPT_ERR_RANGE);
    ck_assert_ptr_nonnull(strstr(why, "-3"));
    /* Nothing decodes to the empty string. */
    ck_assert_int_eq(hlpt_tokenizer_decode(t, NULL, 0, 0, &text, &n, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(text, "");
    free(text);
    hlpt_tokenizer_free(t);
}
END_TEST

START_TEST(test_invalid_utf8) {
    const char *models[] = {"llama2-mha-f32", "llama3-gqa-tied-bf16"};
    struct { const char *s; size_t n, off; } bad[] = {
        {"ab\xC3(", 4, 2},           /* truncated 2-byte sequence */
        {"\x80", 1, 0},              /* lone continuation */
        {"xyz\xE4\xB8", 5, 3},       /* truncated at the end */
        {"ok \xED\xA0\x80", 6, 3},   /* UTF-16 surrogate */
        {"\xC0\xAF", 2, 0},          /* overlong */
        {"a\xF4\x90\x80\x80", 5, 1}, /* above U+10FFFF */
    };
    for (int m = 0; m < 2; m++) {
        hlpt_tokenizer *t = load(models[m]);
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            char why[256] = "", want[64];
            int *ids = (int *)1, n = 5;
            ck_assert_int_eq(hlpt_tokenizer_encode(t, bad[i].s, bad[i].n, 0, &ids, &n, why, sizeof why), HLPT_ERR_INVAL);
            ck_assert_ptr_null(ids);
            ck_assert_int_eq(n, 0);
            snprintf(want, sizeof want, "offset %zu", bad[i].off);
            ck_assert_msg(strstr(why, want) != NULL, "case %zu: \"%s\" lacks \"%s\"", i, why, want);
        }
        hlpt_tokenizer_free(t);
    }
}
END_TEST

/* Long runs of one letter: one pre-token of 100k symbols must not take quadratic time. */
START_TEST(test_long_word_fast) {
    const char *models[] = {"llama2-mha-f32", "llama3-gqa-tied-bf16"};
    size_t n = 100000;
    char *text = malloc(n + 1);
    for (size_t i = 0; i < n; i++) text[i] = i % 7 == 6 ? 'e' : 'x';
    text[n] = 0;
    for (int m = 0; m < 2; m++) {
        hlpt_tokenizer *t = load(models[m]);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int *ids = NULL, k = 0;
        encode_ok(t, text, 0, &ids, &k);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double s = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        printf("%s: %zu letters -> %d ids in %.3f s\n", models[m], n, k, s);
        ck_assert_msg(s < 2.0, "%.3f s", s);
        char *dec = decode_ok(t, ids, k, 0);
        ck_assert_str_eq(dec, text);
        free(dec);
        free(ids);
        hlpt_tokenizer_free(t);
    }
    free(text);
}
END_TEST

/* BPE by hand on tiny vocabularies: the lowest-ranked pair merges first, both merge forms agree. */
START_TEST(test_bpe_by_hand) {
    static const char *docs[] = {
        /* (b,c) outranks (a,b): bc, then a+bc. */
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"bc\":4,\"abc\":5},"
        "\"merges\":[\"b c\",\"a b\",\"a bc\"]}}",
        /* The same as pairs. */
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"bc\":4,\"abc\":5},"
        "\"merges\":[[\"b\",\"c\"],[\"a\",\"b\"],[\"a\",\"bc\"]]}}",
        /* (a,b) first; there is no ab+c merge, so "ab" "c". */
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"bc\":4,\"abc\":5},"
        "\"merges\":[\"a b\",\"b c\",\"a bc\"]}}",
    };
    int want[][2] = {{5, -1}, {5, -1}, {3, 2}};
    for (int d = 0; d < 3; d++) {
        hlpt_tokenizer *t = NULL;
        char why[256] = "";
        ck_assert_msg(hlpt_tokenizer_parse(docs[d], strlen(docs[d]), &t, why, sizeof why) == HLPT_OK, "%s", why);
        int *ids = NULL, n = 0;
        encode_ok(t, "abc", 0, &ids, &n);
        ck_assert_int_eq(n, want[d][1] < 0 ? 1 : 2);
        ck_assert_int_eq(ids[0], want[d][0]);
        if (n == 2) ck_assert_int_eq(ids[1], want[d][1]);
        free(ids);
        /* "aaaa" with merges a a (rank 0) and aa aa: leftmost pairs first -> aa aa -> aaaa. */
        hlpt_tokenizer_free(t);
    }
    const char *doc = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"aa\":1,\"aaaa\":2},"
                      "\"merges\":[\"a a\",\"aa aa\"]}}";
    hlpt_tokenizer *t = NULL;
    ck_assert_int_eq(hlpt_tokenizer_parse(doc, strlen(doc), &t, NULL, 0), HLPT_OK);
    int *ids = NULL, n = 0;
    encode_ok(t, "aaaaaaa", 0, &ids, &n);  /* aaaa aa a */
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(ids[0], 2);
    ck_assert_int_eq(ids[1], 1);
    ck_assert_int_eq(ids[2], 0);
    free(ids);
    /* No decoder: pieces joined by spaces, as HF. */
    int seq[] = {2, 0};
    char *s = decode_ok(t, seq, 2, 0);
    ck_assert_str_eq(s, "aaaa a");
    free(s);
    /* An unknown character with no unk_token and no byte fallback is dropped before merging, as in HF. */
    encode_ok(t, "aza", 0, &ids, &n);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(ids[0], 1);
    free(ids);
    hlpt_tokenizer_free(t);
}
END_TEST

/* The newer LLaMA-2 form (pre_tokenizer Metaspace, prepend_scheme "first", no normalizer) encodes like
 * the legacy form except for text that starts with a space (Metaspace does not add a second "▁"). */
START_TEST(test_metaspace_form) {
    cJSON *j = read_json("llama2-mha-f32/tokenizer.json");
    cJSON_ReplaceItemInObject(j, "normalizer", cJSON_CreateNull());
    cJSON *ms = cJSON_CreateObject();
    cJSON_AddStringToObject(ms, "type", "Metaspace");
    cJSON_AddStringToObject(ms, "replacement", "\xE2\x96\x81");
    cJSON_AddStringToObject(ms, "prepend_scheme", "first");
    cJSON_AddFalseToObject(ms, "split");
    cJSON_ReplaceItemInObject(j, "pre_tokenizer", ms);
    hlpt_tokenizer *t = NULL, *legacy = load("llama2-mha-f32");
    char why[256] = "";
    ck_assert_msg(parse_json(j, &t, why, sizeof why) == HLPT_OK, "%s", why);
    cJSON *cases = read_json("llama2-mha-f32/tokenizer_cases.json");
    int compared = 0;
    for (const cJSON *c = cases->child; c; c = c->next) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        if (text[0] == ' ' || strstr(text, "<s>")) continue;
        int *a = NULL, *b = NULL, na = 0, nb = 0;
        encode_ok(t, text, 0, &a, &na);
        encode_ok(legacy, text, 0, &b, &nb);
        ck_assert_int_eq(na, nb);
        ck_assert(na == 0 || memcmp(a, b, sizeof(int) * (size_t)na) == 0);
        free(a);
        free(b);
        compared++;
    }
    ck_assert_int_gt(compared, 40);
    /* " Hello world": one "▁" in front, not two. */
    int *a = NULL, *b = NULL, na = 0, nb = 0;
    encode_ok(t, " Hello world", 0, &a, &na);
    encode_ok(legacy, "Hello world", 0, &b, &nb);
    ck_assert_int_eq(na, nb);
    ck_assert_int_eq(memcmp(a, b, sizeof(int) * (size_t)na), 0);
    free(a);
    free(b);
    /* "first": a segment after an added token gets no "▁". */
    encode_ok(t, "<s>Hello", 1, &a, &na);
    ck_assert_int_eq(a[0], 1);
    ck_assert_str_ne(hlpt_tokenizer_piece(t, a[1]), "\xE2\x96\x81");
    ck_assert_ptr_null(strstr(hlpt_tokenizer_piece(t, a[1]), "\xE2\x96\x81"));
    free(a);
    cJSON_Delete(cases);
    cJSON_Delete(j);
    hlpt_tokenizer_free(t);
    hlpt_tokenizer_free(legacy);
}
END_TEST

static cJSON *added_token(int id, const char *content, int special, int lstrip, int rstrip, int single) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", id);
    cJSON_AddStringToObject(a, "content", content);
    cJSON_AddBoolToObject(a, "single_word", single);
    cJSON_AddBoolToObject(a, "lstrip", lstrip);
    cJSON_AddBoolToObject(a, "rstrip", rstrip);
    cJSON_AddFalseToObject(a, "normalized");
    cJSON_AddBoolToObject(a, "special", special);
    return a;
}

/* Concatenation of the encodings of the parts (the definition of splitting at added tokens). */
static void expect_concat(const hlpt_tokenizer *t, const char *text, int special, const char *p1, int mid, const char *p2) {
    int *got = NULL, ng = 0, *a = NULL, na = 0, *b = NULL, nb = 0;
    encode_ok(t, text, special, &got, &ng);
    encode_ok(t, p1, 0, &a, &na);
    encode_ok(t, p2, 0, &b, &nb);
    ck_assert_msg(ng == na + 1 + nb, "\"%s\": %d ids, want %d + 1 + %d", text, ng, na, nb);
    ck_assert(na == 0 || memcmp(got, a, sizeof(int) * (size_t)na) == 0);
    ck_assert_int_eq(got[na], mid);
    ck_assert(nb == 0 || memcmp(got + na + 1, b, sizeof(int) * (size_t)nb) == 0);
    free(got);
    free(a);
    free(b);
}

START_TEST(test_added_token_flags) {
    cJSON *j = read_json("llama3-gqa-tied-bf16/tokenizer.json");
    cJSON *added = cJSON_GetObjectItem(j, "added_tokens");
    cJSON_AddItemToArray(added, added_token(1200, "<mask>", 0, 1, 0, 0));
    cJSON_AddItemToArray(added, added_token(1201, "<sep>", 0, 0, 1, 0));
    cJSON_AddItemToArray(added, added_token(1202, "cat", 0, 0, 0, 1));
    cJSON_AddItemToArray(added, added_token(1203, "<|eot|>", 1, 0, 0, 0));
    cJSON_AddItemToArray(added, added_token(1204, "<|eot|>x", 1, 0, 0, 0));
    hlpt_tokenizer *t = NULL;
    char why[256] = "";
    ck_assert_msg(parse_json(j, &t, why, sizeof why) == HLPT_OK, "%s", why);
    ck_assert_int_eq(hlpt_tokenizer_vocab_size(t), 1205);
    ck_assert_str_eq(hlpt_tokenizer_piece(t, 1201), "<sep>");
    expect_concat(t, "a  <mask> b", 0, "a", 1200, " b");        /* lstrip eats the spaces before */
    expect_concat(t, "a <sep>  b", 0, "a ", 1201, "b");         /* rstrip eats the spaces after */
    expect_concat(t, "a cat b", 0, "a ", 1202, " b");           /* a whole word */
    int *ids = NULL, n = 0;
    encode_ok(t, "concatenate", 0, &ids, &n);                   /* not inside a word */
    for (int i = 0; i < n; i++) ck_assert_int_ne(ids[i], 1202);
    free(ids);
    expect_concat(t, "hi<|eot|>x!", 1, "hi", 1204, "!");        /* longest match */
    expect_concat(t, "hi<|eot|>y", 1, "hi", 1203, "y");
    encode_ok(t, "hi<|eot|>y", 0, &ids, &n);                    /* special: only when asked */
    for (int i = 0; i < n; i++) ck_assert_int_lt(ids[i], 1200);
    char *s = decode_ok(t, ids, n, 0);
    ck_assert_str_eq(s, "hi<|eot|>y");
    free(s);
    free(ids);
    hlpt_tokenizer_free(t);
    cJSON_Delete(j);
}
END_TEST

/* Other byte-level forms load and round-trip: GPT-2 (ByteLevel with its own regex), SmolLM (Digits). */
START_TEST(test_byte_level_forms) {
    const char *pre[] = {
        "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}",
        "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},"
        "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}]}",
    };
    const char *text = "Numbers 1234567 and 3.14159, -42!  \n\tcaf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\xA4\x96";
    for (int k = 0; k < 2; k++) {
        cJSON *j = read_json("llama3-gqa-tied-bf16/tokenizer.json");
        cJSON_ReplaceItemInObject(j, "pre_tokenizer", cJSON_Parse(pre[k]));
        cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "model"), "ignore_merges", cJSON_CreateFalse());
        hlpt_tokenizer *t = NULL;
        char why[256] = "";
        ck_assert_msg(parse_json(j, &t, why, sizeof why) == HLPT_OK, "%s", why);
        int *ids = NULL, n = 0;
        encode_ok(t, text, 0, &ids, &n);
        char *s = decode_ok(t, ids, n, 0);
        ck_assert_str_eq(s, text);
        free(s);
        if (k == 1) {
            /* Individual digits: "1234567" is seven single-digit pieces. */
            int one = hlpt_tokenizer_token_id(t, "1");
            int i = 0;
            while (i < n && ids[i] != one) i++;
            ck_assert_int_lt(i + 6, n);
            for (int d = 0; d < 7; d++) ck_assert_int_eq(ids[i + d], one + d);
        }
        free(ids);
        hlpt_tokenizer_free(t);
        cJSON_Delete(j);
    }
}
END_TEST

/* Bad files: a clear error naming the problem, no tokenizer, no leak. */
START_TEST(test_bad_files) {
    struct { const char *json; int err; const char *says; } bad[] = {
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, ", HLPT_ERR_FORMAT, "broken JSON"},
        {"", HLPT_ERR_FORMAT, "broken JSON"},
        {"[1, 2]", HLPT_ERR_FORMAT, "expected an object"},
        {"{}", HLPT_ERR_FORMAT, "model"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", HLPT_ERR_UNSUPPORTED, "Unigram"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", HLPT_ERR_UNSUPPORTED, "WordPiece"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a c\"]}}", HLPT_ERR_FORMAT, "\"c\" is not in the vocab"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", HLPT_ERR_FORMAT, "merged piece \"ab\""},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"ab\"]}}", HLPT_ERR_FORMAT, "merges[0]"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[7]}}", HLPT_ERR_FORMAT, "merges[0]"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":\"a b\"}}", HLPT_ERR_FORMAT, "model.merges"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"}}}", HLPT_ERR_FORMAT, "vocab[\"a\"]"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5}}}", HLPT_ERR_FORMAT, "not an integer"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e300}}}", HLPT_ERR_FORMAT, "outside"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}}", HLPT_ERR_FORMAT, "outside"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0}}}", HLPT_ERR_FORMAT, "id 0"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":[\"a\"]}}", HLPT_ERR_FORMAT, "model.vocab"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"byte_fallback\":\"yes\"}}", HLPT_ERR_FORMAT, "byte_fallback"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"unk_token\":\"<unk>\"}}", HLPT_ERR_FORMAT, "unk_token"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"added_tokens\":{}}", HLPT_ERR_FORMAT, "added_tokens"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"added_tokens\":[{\"id\":\"x\",\"content\":\"<s>\"}]}", HLPT_ERR_FORMAT, "added_tokens[0].id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"added_tokens\":[{\"id\":1}]}", HLPT_ERR_FORMAT, "content"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"normalizer\":{\"type\":\"Lowercase\"}}", HLPT_ERR_UNSUPPORTED, "normalizer \"Lowercase\""},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"pre_tokenizer\":{\"type\":\"Whitespace\"}}", HLPT_ERR_UNSUPPORTED, "Whitespace"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"decoder\":{\"type\":\"WordPiece\"}}", HLPT_ERR_UNSUPPORTED, "decoder \"WordPiece\""},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Fuse\"},{\"type\":\"CTC\"}]}}", HLPT_ERR_UNSUPPORTED, "decoder.decoders[1]"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},\"behavior\":\"Isolated\"}}", HLPT_ERR_FORMAT, "regex does not compile"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":\"Sideways\"}}", HLPT_ERR_UNSUPPORTED, "Sideways"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" +\"},\"content\":\"x\"}}", HLPT_ERR_UNSUPPORTED, "Regex"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"normalizer\":{\"type\":\"Prepend\"}}", HLPT_ERR_FORMAT, "prepend"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"normalizer\":7}", HLPT_ERR_FORMAT, "normalizer"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"continuing_subword_prefix\":\"##\"}}", HLPT_ERR_UNSUPPORTED, "continuing_subword_prefix"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"decoder\":{\"type\":\"Strip\",\"content\":\" \",\"start\":-1,\"stop\":0}}", HLPT_ERR_FORMAT, "decoder.start"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hlpt_tokenizer *t = (hlpt_tokenizer *)1;
        char why[256] = "";
        int rc = hlpt_tokenizer_parse(bad[i].json, strlen(bad[i].json), &t, why, sizeof why);
        ck_assert_msg(rc == bad[i].err, "case %zu: %s (%s), want %s", i, hlpt_err_name(rc), why, hlpt_err_name(bad[i].err));
        ck_assert_ptr_null(t);
        ck_assert_msg(strstr(why, bad[i].says) != NULL, "case %zu: \"%s\" lacks \"%s\"", i, why, bad[i].says);
    }
    /* A file's error names the file. */
    char path[512], why[512] = "";
    hlpt_tokenizer *t = NULL;
    ck_assert_int_eq(hlpt_tokenizer_load(fixture_path(path, sizeof path, "llama2-mha-f32/config.json"), &t, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(why, "config.json"));
}
END_TEST

/* Truncations of a real file: each an error or (never) a crash. */
START_TEST(test_truncated_file) {
    char path[512];
    size_t n = 0;
    char *s = read_all(fixture_path(path, sizeof path, "llama3-gqa-tied-bf16/tokenizer.json"), &n);
    for (size_t cut = 0; cut < n; cut += n / 97 + 1) {
        hlpt_tokenizer *t = NULL;
        char why[256];
        ck_assert_int_eq(hlpt_tokenizer_parse(s, cut, &t, why, sizeof why), HLPT_ERR_FORMAT);
        ck_assert_ptr_null(t);
    }
    free(s);
}
END_TEST

struct thread_arg { const hlpt_tokenizer *t; const cJSON *cases; int ok; };

static void *encode_all(void *p) {
    struct thread_arg *a = p;
    a->ok = 1;
    for (int r = 0; r < 20; r++)
        for (const cJSON *c = a->cases->child; c; c = c->next) {
            const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
            const cJSON *want = cJSON_GetObjectItem(c, "ids");
            int *ids = NULL, n = 0;
            if (hlpt_tokenizer_encode(a->t, text, strlen(text), 1, &ids, &n, NULL, 0) != HLPT_OK ||
                n != cJSON_GetArraySize(want))
                a->ok = 0;
            for (int i = 0; a->ok && i < n; i++)
                if (ids[i] != cJSON_GetArrayItem(want, i)->valueint) a->ok = 0;
            free(ids);
        }
    return NULL;
}

START_TEST(test_threads) {
    hlpt_tokenizer *t = load("llama3-gqa-tied-bf16");
    cJSON *cases = read_json("llama3-gqa-tied-bf16/tokenizer_cases.json");
    pthread_t th[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){t, cases, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, encode_all, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert(args[i].ok);
    }
    cJSON_Delete(cases);
    hlpt_tokenizer_free(t);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_cases_llama2);
    tcase_add_test(tc, test_cases_llama3);
    tcase_add_test(tc, test_ref_llama2);
    tcase_add_test(tc, test_ref_llama3);
    tcase_add_test(tc, test_special_text_not_parsed);
    tcase_add_test(tc, test_skip_special);
    tcase_add_test(tc, test_decode_invalid_bytes);
    tcase_add_test(tc, test_stream_safe_len);
    tcase_add_test(tc, test_decode_stream);
    tcase_add_test(tc, test_lookups);
    tcase_add_test(tc, test_decode_range);
    tcase_add_test(tc, test_invalid_utf8);
    tcase_add_test(tc, test_long_word_fast);
    tcase_add_test(tc, test_bpe_by_hand);
    tcase_add_test(tc, test_metaspace_form);
    tcase_add_test(tc, test_added_token_flags);
    tcase_add_test(tc, test_byte_level_forms);
    tcase_add_test(tc, test_bad_files);
    tcase_add_test(tc, test_truncated_file);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
