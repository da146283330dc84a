/*
 * fuzz_safetensors - libFuzzer target: any byte string through hlpt_st_open_mem. A file that opens
 * must have every tensor readable (converted when convertible, found by name) and must survive a
 * round trip through the writer unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/err.h"
#include "hlpt/safetensors.h"

static void check(int ok) {
    if (!ok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hlpt_st *st = NULL, *back = NULL;
    hlpt_st_writer *w = NULL;
    void *buf = NULL;
    size_t n = 0;
    char why[256];
    if (hlpt_st_open_mem(data, size, &st, why, sizeof why) != HLPT_OK) {
        check(st == NULL);
        return 0;
    }
    check(hlpt_st_writer_new(&w) == HLPT_OK);
    const char *fmt = hlpt_st_metadata(st, "format");
    if (fmt) check(hlpt_st_writer_metadata(w, "format", fmt) == HLPT_OK);
    for (int i = 0; i < hlpt_st_count(st); i++) {
        const hlpt_st_tensor *t = hlpt_st_at(st, i);
        check(hlpt_st_find(st, t->name) == t);
        check((const uint8_t *)t->data >= data && t->nbytes <= size &&
              (const uint8_t *)t->data - data <= (ptrdiff_t)(size - t->nbytes));
        /* Touch every byte, so a wrong range shows up under ASan. */
        volatile uint8_t x = 0;
        for (size_t k = 0; k < t->nbytes; k++) x ^= ((const uint8_t *)t->data)[k];
        if (hlpt_dtype_to_f32_ok(t->dtype) && t->numel) {
            float *f = malloc((size_t)t->numel * sizeof *f);
            check(f != NULL);
            check(hlpt_st_get_f32(st, t->name, t->ndim, t->shape, f, why, sizeof why) == HLPT_OK);
            free(f);
        }
        check(hlpt_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data) == HLPT_OK);
    }
    check(hlpt_st_writer_to_mem(w, &buf, &n, why, sizeof why) == HLPT_OK);
    check(hlpt_st_open_mem(buf, n, &back, why, sizeof why) == HLPT_OK);
    check(hlpt_st_count(back) == hlpt_st_count(st));
    for (int i = 0; i < hlpt_st_count(st); i++) {
        const hlpt_st_tensor *a = hlpt_st_at(st, i), *b = hlpt_st_find(back, a->name);
        check(b && b->dtype == a->dtype && b->ndim == a->ndim && b->nbytes == a->nbytes &&
              memcmp(b->shape, a->shape, sizeof a->shape) == 0 &&
              (a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0));
    }
    hlpt_st_close(back);
    free(buf);
    hlpt_st_writer_free(w);
    hlpt_st_close(st);
    return 0;
}
