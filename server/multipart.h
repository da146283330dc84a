/*
 * multipart.h - multipart/form-data bodies (file uploads as the OpenAI SDKs and browsers send them,
 * adapter imports), parsed as they arrive.
 *
 * A body is "--BOUNDARY" CRLF headers CRLF CRLF data CRLF "--BOUNDARY" ... "--BOUNDARY--"; a
 * preamble before the first boundary and an epilogue after the last are ignored, as are spaces and
 * tabs after a boundary. Of a part's headers only Content-Disposition's `name` (required) and
 * `filename` matter.
 *
 * The parser is a state machine fed pieces of any size, a boundary or a header block split across
 * pieces included: it reports each part as part_begin(name, filename), part_data(bytes) as many
 * times as the data arrives (never with 0 bytes), part_end(). Memory is bounded whatever the body's
 * size: a part's header block is held until it is complete (at most HLPTD_MULTIPART_HEADERS_MAX
 * bytes), data never. However a body is cut into pieces, the same parts, the same bytes and the same
 * outcome (the same error message) come out.
 *
 * Errors (HLPT_ERR_FORMAT, why starting "multipart body: "): the Content-Type is not
 * multipart/form-data or has no boundary (at hlptd_multipart_new), "boundary not found",
 * "malformed boundary line", "part headers do not end", "part headers are longer than N bytes",
 * "part without a name", "a NUL byte in a part's name or filename", "more than N parts", "part not
 * terminated by the boundary". An error is final: later calls return it again.
 *
 * Threads: any; one parser is used by one thread at a time.
 */
#ifndef HLPTD_MULTIPART_H
#define HLPTD_MULTIPART_H

#include <stddef.h>

#define HLPTD_MULTIPART_HEADERS_MAX 16384 /* bytes of one part's header block, its blank line included */
#define HLPTD_MULTIPART_PARTS_MAX 256     /* parts in one body */
#define HLPTD_MULTIPART_BOUNDARY_MAX 200  /* bytes of the boundary */

typedef struct hlptd_multipart hlptd_multipart;

/* What a parser reports, each on the thread that feeds it, with ctx as given to hlptd_multipart_new.
 * Every pointer is borrowed for the call. A callback returns HLPT_OK, or an error (why filled, up to
 * len bytes) that stops the parse: the feed or finish that made the call returns it. Any callback
 * may be NULL. */
typedef struct {
    int (*part_begin)(void *ctx, const char *name, const char *filename, char *why, size_t len);
    int (*part_data)(void *ctx, const char *data, size_t n, char *why, size_t len);
    int (*part_end)(void *ctx, char *why, size_t len);
} hlptd_multipart_cbs;

/* A parser for a body sent with Content-Type content_type (borrowed for the call). cbs is copied.
 * *out owned: hlptd_multipart_free. Errors: HLPT_ERR_FORMAT (not multipart/form-data, no boundary),
 * HLPT_ERR_NOMEM. */
int hlptd_multipart_new(const char *content_type, const hlptd_multipart_cbs *cbs, void *ctx, hlptd_multipart **out,
                       char *why, size_t len);
void hlptd_multipart_free(hlptd_multipart *m);
/* The next piece of the body, data[0..n) (borrowed). Bytes after the closing boundary are ignored.
 * Errors: as above, or a callback's. */
int hlptd_multipart_feed(hlptd_multipart *m, const char *data, size_t n, char *why, size_t len);
/* The body has ended: HLPT_OK when it closed with "--BOUNDARY--", else the error that says where it
 * stopped. */
int hlptd_multipart_finish(hlptd_multipart *m, char *why, size_t len);

/* ---- a whole body at once ---------------------------------------------------------------------- */

/* One part of a multipart/form-data body: name and filename owned (filename NULL for plain fields),
 * data borrowed from the body it was parsed from. */
typedef struct {
    char *name, *filename;
    const char *data;
    size_t n;
} hlptd_form_part;
/* Parses a whole multipart/form-data body (borrowed) under its Content-Type header value (borrowed)
 * into *parts (owned: hlptd_form_parts_free; NULL on failure): the streaming parser fed the body in
 * one piece. Errors: as above, HLPT_ERR_NOMEM. */
int hlptd_multipart_parse(const char *content_type, const char *body, size_t n, hlptd_form_part **parts,
                         size_t *nparts, char *why, size_t len);
void hlptd_form_parts_free(hlptd_form_part *parts, size_t n);

#endif
