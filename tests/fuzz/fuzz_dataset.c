/*
 * fuzz_dataset - libFuzzer target: any byte string through hlpt_dataset_validate, the check every
 * uploaded training file (POST /v1/files) passes before it is stored, and through the streaming
 * validator an upload feeds as it arrives. An accepted file must count consistently; the file fed
 * in pieces (cut where the input's own bytes say) must get the same verdict, the same message (its
 * line number) and the same statistics as the file in one piece.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/dataset.h"
#include "hlpt/err.h"

static void check(int ok) {
    if (!ok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hlpt_dataset_stats st, st2;
    char why[256], why2[256];
    int err = hlpt_dataset_validate((const char *)data, size, &st, why, sizeof why);
    if (err == HLPT_OK) check(st.examples > 0 && st.examples <= st.lines);

    hlpt_dataset_validator *v;
    if (hlpt_dataset_validator_new(NULL, &v) != HLPT_OK) return 0;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 16777619u;
    int err2 = HLPT_OK;
    for (size_t at = 0; at < size && !err2;) {
        h = h * 1103515245u + 12345u;
        size_t k = 1 + (h >> 16) % 48;
        if (k > size - at) k = size - at;
        /* A copy of exactly k bytes, so that ASan sees any read past the piece. */
        char *piece = malloc(k);
        memcpy(piece, data + at, k);
        err2 = hlpt_dataset_validator_feed(v, piece, k, why2, sizeof why2);
        free(piece);
        at += k;
    }
    int fin = hlpt_dataset_validator_finish(v, &st2, why2, sizeof why2);
    check(!err2 || fin == err2);
    hlpt_dataset_validator_free(v);
    check(fin == err);
    if (err) {
        check(strcmp(why, why2) == 0);
    } else {
        check(st.format == st2.format && st.examples == st2.examples && st.lines == st2.lines &&
              st.prompt_chars == st2.prompt_chars && st.completion_chars == st2.completion_chars &&
              st.max_example_chars == st2.max_example_chars && st.tokens == st2.tokens);
    }
    return 0;
}
