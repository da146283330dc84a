/*
 * fuzz_multipart - libFuzzer target: multipart/form-data bodies (file uploads, adapter imports)
 * through hlpt_multipart_parse. The input is a Content-Type value, a NUL byte, then the body. Every
 * part found must lie inside the body and have a name without a NUL.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/err.h"
#include "http.h"

static void check(int ok) {
    if (!ok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul) return 0;
    const char *ct = (const char *)data, *body = (const char *)nul + 1;
    size_t n = size - (size_t)(nul - data) - 1;
    /* A copy of exactly n bytes, so that ASan sees any read past the body. */
    char *b = malloc(n ? n : 1);
    if (!b) return 0;
    memcpy(b, body, n);
    hlpt_form_part *parts = NULL;
    size_t np = 0;
    char why[256];
    if (hlpt_multipart_parse(ct, b, n, &parts, &np, why, sizeof why) == HLPT_OK) {
        for (size_t i = 0; i < np; i++) {
            check(parts[i].name != NULL);
            check(parts[i].data >= b && parts[i].data + parts[i].n <= b + n);
        }
    } else {
        check(parts == NULL && np == 0);
    }
    hlpt_form_parts_free(parts, np);
    free(b);
    return 0;
}
