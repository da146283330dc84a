/*
 * fuzz_tokenizer.c - libFuzzer target for core/tokenizer.c.
 *
 * The first input byte picks what the rest is (low two bits):
 *   0: a tokenizer.json to parse; when it loads, a fixed text and the input itself are encoded and
 *      the ids decoded again;
 *   1, 2: text to encode with the LLaMA-2 / LLaMA-3 fixture tokenizer (loaded once); valid UTF-8 must
 *      decode back to exactly the input (both kinds are lossless but for a literal "▁", which the
 *      LLaMA-2 kind decodes as a space), bit 2 of the byte turns on
 *      parse_special (then only decoding is checked for validity);
 *   3: little-endian 16-bit ids to decode (and stream-decode) with both fixture tokenizers; the text
 *      must be valid UTF-8.
 * Runs from the repository root (make test-fuzz), where tests/fixtures is.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/err.h"
#include "hlpt/tokenizer.h"

static hlpt_tokenizer *fixtures[2];

static void load_fixtures(void) {
    static const char *paths[2] = {"tests/fixtures/llama2-mha-f32/tokenizer.json",
                                   "tests/fixtures/llama3-gqa-tied-bf16/tokenizer.json"};
    for (int i = 0; i < 2; i++) {
        if (fixtures[i]) continue;
        char why[256];
        if (hlpt_tokenizer_load(paths[i], &fixtures[i], why, sizeof why) != HLPT_OK) {
            fprintf(stderr, "fuzz_tokenizer: %s (run from the repository root)\n", why);
            abort();
        }
    }
}

static int valid_utf8(const char *s, size_t n) {
    /* Valid iff the tokenizer accepts it as input. */
    int *ids = NULL, k = 0;
    int rc = hlpt_tokenizer_encode(fixtures[1], s, n, 0, &ids, &k, NULL, 0);
    free(ids);
    return rc == HLPT_OK;
}

static void roundtrip(const hlpt_tokenizer *t, const char *text, size_t n, int special) {
    int *ids = NULL, k = 0;
    char why[256];
    int rc = hlpt_tokenizer_encode(t, text, n, special, &ids, &k, why, sizeof why);
    if (rc != HLPT_OK) {
        if (rc != HLPT_ERR_INVAL) { fprintf(stderr, "encode: %s\n", why); abort(); }
        return;
    }
    char *out = NULL;
    size_t m = 0;
    if (hlpt_tokenizer_decode(t, ids, k, 0, &out, &m, why, sizeof why) != HLPT_OK) {
        fprintf(stderr, "decode of encoded ids: %s\n", why);
        abort();
    }
    /* The SentencePiece kind decodes a literal "▁" in the text as a space, as HF does. */
    char *want = malloc(n + 1);
    size_t wn = 0;
    if (!want) abort();
    for (size_t i = 0; i < n; i++) {
        if (t == fixtures[0] && i + 3 <= n && memcmp(text + i, "\xE2\x96\x81", 3) == 0) {
            want[wn++] = ' ';
            i += 2;
        } else {
            want[wn++] = text[i];
        }
    }
    if (!special && (m != wn || memcmp(out, want, wn) != 0)) {
        fprintf(stderr, "round trip differs: %zu bytes in, %zu out\n", n, m);
        abort();
    }
    if (!valid_utf8(out, m)) abort();
    free(want);
    free(out);
    free(ids);
}

static void decode_ids(const hlpt_tokenizer *t, const uint8_t *data, size_t size, int skip) {
    int n = (int)(size / 2);
    int *ids = malloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!ids) return;
    int vs = hlpt_tokenizer_vocab_size(t);
    for (int i = 0; i < n; i++) ids[i] = (data[2 * i] | data[2 * i + 1] << 8) % (vs + 2) - 1;  /* a few out of range */
    char *out = NULL;
    size_t m = 0;
    int rc = hlpt_tokenizer_decode(t, ids, n, skip, &out, &m, NULL, 0);
    if (rc == HLPT_OK && !valid_utf8(out, m)) abort();
    free(out);
    hlpt_tokenizer_stream st = {0, 0};
    for (int i = 1; i <= n && i <= 64; i++) {
        char *piece = NULL;
        size_t pl = 0;
        if (hlpt_tokenizer_decode_stream(t, &st, ids, i, skip, i == n, &piece, &pl, NULL, 0) != HLPT_OK) break;
        if (!valid_utf8(piece, pl) && hlpt_tokenizer_stream_safe_len(piece, pl) == pl) abort();
        free(piece);
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load_fixtures();
    if (size < 1) return 0;
    int mode = data[0] & 3, special = (data[0] >> 2) & 1;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    if (mode == 0) {
        hlpt_tokenizer *t = NULL;
        char why[256];
        if (hlpt_tokenizer_parse(rest, n, &t, why, sizeof why) != HLPT_OK) {
            if (t) abort();
            return 0;
        }
        static const char sample[] = "Hello world <s> 123 \xE4\xB8\xAD\xF0\x9F\xA4\x96  \n\tx";
        int *ids = NULL, k = 0;
        for (int pass = 0; pass < 2; pass++) {
            const char *s = pass ? rest : sample;
            size_t sn = pass ? (n > 4096 ? 4096 : n) : sizeof sample - 1;
            if (hlpt_tokenizer_encode(t, s, sn, pass, &ids, &k, NULL, 0) == HLPT_OK) {
                char *out = NULL;
                size_t m = 0;
                if (hlpt_tokenizer_decode(t, ids, k, 0, &out, &m, why, sizeof why) != HLPT_OK) {
                    fprintf(stderr, "decode of encoded ids: %s\n", why);
                    abort();
                }
                free(out);
                free(ids);
            }
        }
        hlpt_tokenizer_free(t);
    } else if (mode == 1 || mode == 2) {
        roundtrip(fixtures[mode - 1], rest, n, special);
    } else {
        decode_ids(fixtures[0], data + 1, n, special);
        decode_ids(fixtures[1], data + 1, n, special);
    }
    return 0;
}
