/*
 * fuzz_multipart - libFuzzer target: multipart/form-data bodies (file uploads, adapter imports)
 * through hlptd_multipart_parse and through the streaming parser it wraps. The input is a
 * Content-Type value, a NUL byte, then the body. Every part found must lie inside the body and have
 * a name without a NUL; the body fed in pieces (cut where the input's own bytes say) must give the
 * same parts, the same bytes and the same outcome, error message included, as the body in one piece.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/err.h"
#include "multipart.h"

static void check(int ok) {
    if (!ok) abort();
}

/* What the streaming parser reports, part by part, to compare with the whole-body parts. */
typedef struct {
    const hlptd_form_part *parts; /* the whole-body parse's, when it succeeded */
    size_t nparts;
    size_t part;   /* parts begun so far */
    size_t got;    /* bytes of the current part so far */
    int in_part;
} follow;

static int on_begin(void *ctx, const char *name, const char *filename, char *why, size_t len) {
    follow *f = ctx;
    check(!f->in_part && name);
    if (f->parts) {
        check(f->part < f->nparts && strcmp(name, f->parts[f->part].name) == 0);
        check(!filename == !f->parts[f->part].filename);
        check(!filename || strcmp(filename, f->parts[f->part].filename) == 0);
    }
    f->part++;
    f->in_part = 1;
    f->got = 0;
    return HLPT_OK;
}

static int on_data(void *ctx, const char *data, size_t n, char *why, size_t len) {
    follow *f = ctx;
    check(f->in_part && n > 0);
    if (f->parts) {
        const hlptd_form_part *p = &f->parts[f->part - 1];
        check(f->got + n <= p->n && memcmp(p->data + f->got, data, n) == 0);
    }
    f->got += n;
    return HLPT_OK;
}

static int on_end(void *ctx, char *why, size_t len) {
    follow *f = ctx;
    check(f->in_part);
    if (f->parts) check(f->got == f->parts[f->part - 1].n);
    f->in_part = 0;
    return HLPT_OK;
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
    hlptd_form_part *parts = NULL;
    size_t np = 0;
    char why[256], why2[256];
    int err = hlptd_multipart_parse(ct, b, n, &parts, &np, why, sizeof why);
    if (err == HLPT_OK) {
        for (size_t i = 0; i < np; i++) {
            check(parts[i].name != NULL);
            check(parts[i].data >= b && parts[i].data + parts[i].n <= b + n);
        }
    } else {
        check(parts == NULL && np == 0);
    }

    /* The same body in pieces of 1 to 64 bytes, their sizes drawn from a hash of the input. */
    follow f = {err == HLPT_OK ? parts : NULL, np, 0, 0, 0};
    hlptd_multipart_cbs cbs = {on_begin, on_data, on_end};
    hlptd_multipart *m;
    int err2 = hlptd_multipart_new(ct, &cbs, &f, &m, why2, sizeof why2);
    if (err2 == HLPT_OK) {
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 16777619u;
        for (size_t at = 0; at < n && !err2;) {
            h = h * 1103515245u + 12345u;
            size_t k = 1 + (h >> 16) % 64;
            if (k > n - at) k = n - at;
            char *piece = malloc(k);
            memcpy(piece, b + at, k);
            err2 = hlptd_multipart_feed(m, piece, k, why2, sizeof why2);
            free(piece);
            at += k;
        }
        if (!err2) err2 = hlptd_multipart_finish(m, why2, sizeof why2);
        hlptd_multipart_free(m);
    }
    check(err2 == err);
    if (err) check(strcmp(why, why2) == 0);
    else check(f.part == np && !f.in_part);
    hlptd_form_parts_free(parts, np);
    free(b);
    return 0;
}
