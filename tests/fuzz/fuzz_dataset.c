/*
 * fuzz_dataset - libFuzzer target: any byte string through hlpt_dataset_validate, the check every
 * uploaded training file (POST /v1/files) passes before it is stored. An accepted file must count
 * consistently.
 */
#include <stdint.h>
#include <stdlib.h>

#include "hlpt/dataset.h"
#include "hlpt/err.h"

static void check(int ok) {
    if (!ok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hlpt_dataset_stats st;
    char why[256];
    if (hlpt_dataset_validate((const char *)data, size, &st, why, sizeof why) != HLPT_OK) return 0;
    check(st.examples > 0 && st.examples <= st.lines);
    return 0;
}
