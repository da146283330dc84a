/*
 * multipart.c - see multipart.h.
 *
 * Design: the body is read as a stream of states: PREAMBLE (looking for the first delimiter), then
 * for each part AFTER (what follows a delimiter: "--", transport padding, CRLF), HEADERS (the header
 * block, held in a buffer until its blank line), DATA (looking for the next delimiter). The
 * delimiter is CRLF "--" BOUNDARY; the first one may also open the body without its CRLF, which is
 * the same as searching a body that starts with a virtual CRLF, so the preamble starts with those
 * two bytes already matched.
 *
 * Looking for the delimiter across pieces: whatever of the end of a piece could still be the start
 * of a delimiter (the longest suffix that is a prefix of it, shorter than it) is held back; the rest
 * is surely data and goes out at once. With the next piece, the held bytes and the first bytes of
 * the piece are searched together: a delimiter that starts in the held bytes lies wholly in them.
 * So the first delimiter is found where a search of the whole body would find it, and data is
 * never held longer than the delimiter.
 */
#include "multipart.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hlpt/err.h"

#define DELIM_MAX (HLPTD_MULTIPART_BOUNDARY_MAX + 5) /* CRLF "--" boundary NUL */

enum { S_PREAMBLE, S_AFTER, S_DASH, S_PAD, S_CR, S_HEADERS, S_DATA, S_DONE };

struct hlptd_multipart {
    hlptd_multipart_cbs cb;
    void *ctx;
    char delim[DELIM_MAX]; /* CRLF "--" boundary */
    size_t dl;
    int state;
    char hold[DELIM_MAX];  /* a proper prefix of delim that ended the last piece */
    size_t nhold;
    char *hdr;             /* the current part's header block so far */
    size_t nhdr;
    size_t nparts;
    int err;               /* final once set */
    char msg[256];         /* its why */
};

/* Reads the parameter `key` of a header value like `form-data; name="file"; filename="a.jsonl"`
 * into an owned string (NULL when absent). A value with a NUL byte would be read short (`demo\0x`
 * as `demo`): it sets *bad and is NULL. */
static char *header_param(const char *s, const char *e, const char *key, int *bad) {
    size_t kl = strlen(key);
    while (s < e) {
        while (s < e && (*s == ';' || *s == ' ' || *s == '\t')) s++;
        const char *k = s;
        while (s < e && *s != '=' && *s != ';') s++;
        size_t klen = (size_t)(s - k);
        while (klen && (k[klen - 1] == ' ' || k[klen - 1] == '\t')) klen--;
        if (s >= e || *s != '=') continue;
        s++;
        while (s < e && (*s == ' ' || *s == '\t')) s++;
        char *val = malloc((size_t)(e - s) + 1);
        if (!val) return NULL;
        size_t vn = 0;
        if (s < e && *s == '"') {
            for (s++; s < e && *s != '"'; s++) {
                if (*s == '\\' && s + 1 < e) s++;
                val[vn++] = *s;
            }
            if (s < e) s++;
        } else {
            while (s < e && *s != ';' && *s != ' ' && *s != '\t') val[vn++] = *s++;
        }
        val[vn] = 0;
        if (klen == kl && strncasecmp(k, key, kl) == 0) {
            if (strlen(val) == vn) return val;
            free(val);
            *bad = 1;
            return NULL;
        }
        free(val);
    }
    return NULL;
}

/* Makes err m's final outcome; msg is printf-formatted after "multipart body: " (NULL: m->msg
 * already holds a callback's why). */
static int fail(hlptd_multipart *m, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(hlptd_multipart *m, int err, const char *fmt, ...) {
    if (fmt) {
        int k = snprintf(m->msg, sizeof m->msg, "multipart body: ");
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m->msg + k, sizeof m->msg - (size_t)k, fmt, ap);
        va_end(ap);
    }
    m->err = err;
    return err;
}

static int again(const hlptd_multipart *m, char *why, size_t len) {
    return hlpt_why(why, len, m->err, "%s", m->msg);
}

int hlptd_multipart_new(const char *ct, const hlptd_multipart_cbs *cbs, void *ctx, hlptd_multipart **out, char *why,
                       size_t len) {
    *out = NULL;
    if (!ct || strncasecmp(ct, "multipart/form-data", 19) != 0)
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "multipart body: Content-Type is not multipart/form-data");
    const char *b = strcasestr(ct, "boundary=");
    int bad = 0;
    char *boundary = b ? header_param(b, b + strlen(b), "boundary", &bad) : NULL;
    if (!boundary || !*boundary || strlen(boundary) > HLPTD_MULTIPART_BOUNDARY_MAX) {
        free(boundary);
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "multipart body: no boundary in Content-Type");
    }
    hlptd_multipart *m = calloc(1, sizeof *m);
    if (!m || !(m->hdr = malloc(HLPTD_MULTIPART_HEADERS_MAX))) {
        free(boundary);
        free(m);
        return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    }
    if (cbs) m->cb = *cbs;
    m->ctx = ctx;
    m->dl = (size_t)snprintf(m->delim, sizeof m->delim, "\r\n--%s", boundary);
    free(boundary);
    m->state = S_PREAMBLE;
    memcpy(m->hold, "\r\n", 2);
    m->nhold = 2;
    *out = m;
    return HLPT_OK;
}

void hlptd_multipart_free(hlptd_multipart *m) {
    if (!m) return;
    free(m->hdr);
    free(m);
}

/* ---- the delimiter -------------------------------------------------------------------------------- */

/* Bytes that are surely not a delimiter: the current part's data (dropped in the preamble). */
static int emit(hlptd_multipart *m, const char *p, size_t n) {
    if (m->state != S_DATA || !n || !m->cb.part_data) return HLPT_OK;
    int err = m->cb.part_data(m->ctx, p, n, m->msg, sizeof m->msg);
    return err ? fail(m, err, NULL) : HLPT_OK;
}

/* The longest suffix of p[0..n) that is a proper prefix of the delimiter. */
static size_t tail_match(const hlptd_multipart *m, const char *p, size_t n) {
    for (size_t k = n < m->dl - 1 ? n : m->dl - 1; k > 0; k--)
        if (p[n - k] == '\r' && memcmp(p + n - k, m->delim, k) == 0) return k;
    return 0;
}

/* Looks for the delimiter in p[0..n), continuing what was held. Returns the bytes of p consumed:
 * just past the delimiter when it ends in p (*found = 1), else all of them. */
static size_t scan(hlptd_multipart *m, const char *p, size_t n, int *found) {
    *found = 0;
    if (m->nhold) {
        char tmp[2 * DELIM_MAX];
        size_t held = m->nhold, take = n < m->dl - 1 ? n : m->dl - 1, tn = held + take;
        memcpy(tmp, m->hold, held);
        memcpy(tmp + held, p, take);
        const char *d = memmem(tmp, tn, m->delim, m->dl);
        if (d) {
            m->nhold = 0;
            if (emit(m, tmp, (size_t)(d - tmp))) return 0;
            *found = 1;
            return (size_t)(d - tmp) + m->dl - held;
        }
        if (take == n) {
            size_t k = tail_match(m, tmp, tn);
            if (emit(m, tmp, tn - k)) return 0;
            memmove(m->hold, tmp + tn - k, k);
            m->nhold = k;
            return n;
        }
        /* A delimiter that started in the held bytes would have ended in tmp: they are data. */
        m->nhold = 0;
        if (emit(m, m->hold, held)) return 0;
    }
    const char *d = memmem(p, n, m->delim, m->dl);
    if (d) {
        if (emit(m, p, (size_t)(d - p))) return 0;
        *found = 1;
        return (size_t)(d - p) + m->dl;
    }
    size_t k = tail_match(m, p, n);
    if (emit(m, p, n - k)) return 0;
    memcpy(m->hold, p + n - k, k);
    m->nhold = k;
    return n;
}

/* ---- a part's headers ------------------------------------------------------------------------------ */

/* The header block hdr[0..he) is complete (its blank line follows): the part begins. */
static int part_headers(hlptd_multipart *m, size_t he) {
    const char *h = m->hdr, *hend = m->hdr + he;
    char *name = NULL, *filename = NULL;
    int bad = 0;
    for (const char *l = h; l < hend;) {
        const char *le = memmem(l, (size_t)(hend + 2 - l), "\r\n", 2);
        if (!le) le = hend;
        if ((size_t)(le - l) > 20 && strncasecmp(l, "Content-Disposition:", 20) == 0) {
            free(name);
            free(filename);
            name = header_param(l + 20, le, "name", &bad);
            filename = header_param(l + 20, le, "filename", &bad);
        }
        l = le + 2;
    }
    int err = HLPT_OK;
    if (bad) err = fail(m, HLPT_ERR_FORMAT, "a NUL byte in a part's name or filename");
    else if (!name) err = fail(m, HLPT_ERR_FORMAT, "part without a name");
    else if (++m->nparts > HLPTD_MULTIPART_PARTS_MAX) err = fail(m, HLPT_ERR_FORMAT, "more than %d parts", HLPTD_MULTIPART_PARTS_MAX);
    else if (m->cb.part_begin && (err = m->cb.part_begin(m->ctx, name, filename, m->msg, sizeof m->msg)))
        fail(m, err, NULL);
    free(name);
    free(filename);
    return err;
}

/* Takes bytes of the header block from p[0..n); returns how many it consumed. */
static size_t headers(hlptd_multipart *m, const char *p, size_t n) {
    size_t old = m->nhdr, take = HLPTD_MULTIPART_HEADERS_MAX - old;
    if (take > n) take = n;
    memcpy(m->hdr + old, p, take);
    m->nhdr += take;
    size_t from = old > 3 ? old - 3 : 0;
    const char *he = memmem(m->hdr + from, m->nhdr - from, "\r\n\r\n", 4);
    if (he) {
        size_t at = (size_t)(he - m->hdr);
        if (part_headers(m, at)) return 0;
        m->state = S_DATA;
        m->nhold = 0;
        return at + 4 - old;
    }
    if (m->nhdr == HLPTD_MULTIPART_HEADERS_MAX)
        fail(m, HLPT_ERR_FORMAT, "part headers are longer than %d bytes", HLPTD_MULTIPART_HEADERS_MAX);
    return take;
}

/* ---- feeding ----------------------------------------------------------------------------------------- */

int hlptd_multipart_feed(hlptd_multipart *m, const char *data, size_t n, char *why, size_t len) {
    while (n && !m->err && m->state != S_DONE) {
        size_t used = 1;
        char c = *data;
        switch (m->state) {
        case S_PREAMBLE:
        case S_DATA: {
            int found;
            used = scan(m, data, n, &found);
            if (found && m->state == S_DATA && m->cb.part_end) {
                int err = m->cb.part_end(m->ctx, m->msg, sizeof m->msg);
                if (err) fail(m, err, NULL);
            }
            if (found) m->state = S_AFTER;
            break;
        }
        case S_AFTER:
            if (c == '-') m->state = S_DASH;
            else if (c == ' ' || c == '\t') m->state = S_PAD;
            else if (c == '\r') m->state = S_CR;
            else fail(m, HLPT_ERR_FORMAT, "malformed boundary line");
            break;
        case S_DASH:
            if (c == '-') m->state = S_DONE;
            else fail(m, HLPT_ERR_FORMAT, "malformed boundary line");
            break;
        case S_PAD:
            if (c == '\r') m->state = S_CR;
            else if (c != ' ' && c != '\t') fail(m, HLPT_ERR_FORMAT, "malformed boundary line");
            break;
        case S_CR:
            if (c != '\n') {
                fail(m, HLPT_ERR_FORMAT, "malformed boundary line");
                break;
            }
            m->state = S_HEADERS;
            m->nhdr = 0;
            break;
        case S_HEADERS:
            used = headers(m, data, n);
            break;
        }
        data += used;
        n -= used;
    }
    return m->err ? again(m, why, len) : HLPT_OK;
}

int hlptd_multipart_finish(hlptd_multipart *m, char *why, size_t len) {
    if (m->err) return again(m, why, len);
    switch (m->state) {
    case S_DONE: return HLPT_OK;
    case S_PREAMBLE: fail(m, HLPT_ERR_FORMAT, "boundary not found"); break;
    case S_HEADERS:
        /* A part with no headers at all starts with its blank line; it has no name either. */
        if (m->nhdr >= 2 && m->hdr[0] == '\r' && m->hdr[1] == '\n') fail(m, HLPT_ERR_FORMAT, "part without a name");
        else fail(m, HLPT_ERR_FORMAT, "part headers do not end");
        break;
    case S_DATA: fail(m, HLPT_ERR_FORMAT, "part not terminated by the boundary"); break;
    default: fail(m, HLPT_ERR_FORMAT, "malformed boundary line"); break;
    }
    return again(m, why, len);
}

/* ---- a whole body ----------------------------------------------------------------------------------- */

typedef struct {
    const char *body;
    size_t n;
    hlptd_form_part *parts;
    size_t nparts;
} whole;

static int whole_begin(void *ctx, const char *name, const char *filename, char *why, size_t len) {
    whole *w = ctx;
    hlptd_form_part *np = realloc(w->parts, (w->nparts + 1) * sizeof *np);
    if (!np) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    w->parts = np;
    hlptd_form_part *p = &np[w->nparts];
    /* An empty part's data is an empty piece of the body. */
    *p = (hlptd_form_part){strdup(name), filename ? strdup(filename) : NULL, w->body, 0};
    w->nparts++;
    if (!p->name || (filename && !p->filename)) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    return HLPT_OK;
}

/* Fed in one piece, a part's data comes in one call, pointing into the body. */
static int whole_data(void *ctx, const char *data, size_t n, char *why, size_t len) {
    whole *w = ctx;
    hlptd_form_part *p = &w->parts[w->nparts - 1];
    if (data < w->body || data + n > w->body + w->n || (p->n && data != p->data + p->n))
        return hlpt_why(why, len, HLPT_ERR_INTERNAL, "multipart body: data outside the body");
    if (!p->n) p->data = data;
    p->n += n;
    return HLPT_OK;
}

void hlptd_form_parts_free(hlptd_form_part *parts, size_t n) {
    for (size_t i = 0; i < n; i++) free(parts[i].name), free(parts[i].filename);
    free(parts);
}

int hlptd_multipart_parse(const char *ct, const char *body, size_t n, hlptd_form_part **out, size_t *nout, char *why,
                         size_t len) {
    *out = NULL;
    *nout = 0;
    whole w = {body, n, NULL, 0};
    hlptd_multipart_cbs cbs = {whole_begin, whole_data, NULL};
    hlptd_multipart *m;
    int err = hlptd_multipart_new(ct, &cbs, &w, &m, why, len);
    if (err) return err;
    if (!(err = hlptd_multipart_feed(m, body, n, why, len))) err = hlptd_multipart_finish(m, why, len);
    hlptd_multipart_free(m);
    if (err) {
        hlptd_form_parts_free(w.parts, w.nparts);
        return err;
    }
    *out = w.parts;
    *nout = w.nparts;
    return HLPT_OK;
}
