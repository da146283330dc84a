/* multipart/form-data parsed as it arrives: the same parts, bytes and errors whatever the pieces
 * (every split of sample bodies, byte by byte), the whole-body wrapper, limits, callbacks that stop
 * the parse. */
#include "multipart.h"

#include <stdlib.h>
#include <string.h>

#include "../check_main.h"
#include "hlpt/err.h"

/* ---- a record of what a parser reported ------------------------------------------------------------ */

typedef struct {
    char *s;
    size_t n, cap;
    int stop_at_begin; /* part_begin of this part number (1-based) fails */
    int parts;
} rec;

static void rec_add(rec *r, const char *p, size_t n) {
    if (r->n + n + 1 > r->cap) {
        r->cap = (r->n + n + 1) * 2;
        r->s = realloc(r->s, r->cap);
        ck_assert_ptr_nonnull(r->s);
    }
    memcpy(r->s + r->n, p, n);
    r->n += n;
    r->s[r->n] = 0;
}

static int on_begin(void *ctx, const char *name, const char *filename, char *why, size_t len) {
    rec *r = ctx;
    if (++r->parts == r->stop_at_begin) return hlpt_why(why, len, HLPT_ERR_RANGE, "no part %d here", r->parts);
    rec_add(r, "<", 1);
    rec_add(r, name, strlen(name));
    rec_add(r, "|", 1);
    rec_add(r, filename ? filename : "(none)", strlen(filename ? filename : "(none)"));
    rec_add(r, ">", 1);
    return HLPT_OK;
}

static int on_data(void *ctx, const char *data, size_t n, char *why, size_t len) {
    ck_assert_uint_gt(n, 0);
    rec_add(ctx, data, n);
    return HLPT_OK;
}

static int on_end(void *ctx, char *why, size_t len) {
    rec_add(ctx, "</>", 3);
    return HLPT_OK;
}

static const hlptd_multipart_cbs cbs = {on_begin, on_data, on_end};

typedef struct {
    int err;
    char why[256];
    rec r;
} outcome;

/* Feeds body[0..n) cut at cuts[0..ncuts) (ascending offsets) and finishes. */
static outcome parse_cut(const char *ct, const char *body, size_t n, const size_t *cuts, size_t ncuts, int stop_at) {
    outcome o = {0};
    o.r.stop_at_begin = stop_at;
    rec_add(&o.r, "", 0);
    hlptd_multipart *m;
    o.err = hlptd_multipart_new(ct, &cbs, &o.r, &m, o.why, sizeof o.why);
    if (o.err) return o;
    size_t at = 0;
    for (size_t i = 0; i <= ncuts && !o.err; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        o.err = hlptd_multipart_feed(m, body + at, to - at, o.why, sizeof o.why);
        at = to;
    }
    if (!o.err) {
        o.err = hlptd_multipart_finish(m, o.why, sizeof o.why);
    } else {
        /* An error is final: finishing says it again. */
        char again[256];
        ck_assert_int_eq(hlptd_multipart_finish(m, again, sizeof again), o.err);
        ck_assert_str_eq(again, o.why);
    }
    hlptd_multipart_free(m);
    return o;
}

static void assert_same(const outcome *a, const outcome *b, const char *what, size_t i, size_t j) {
    ck_assert_msg(a->err == b->err && strcmp(a->why, b->why) == 0, "%s cut at %zu,%zu: %d `%s`, whole: %d `%s`", what,
                  i, j, b->err, b->why, a->err, a->why);
    ck_assert_msg(a->r.n == b->r.n && memcmp(a->r.s, b->r.s, a->r.n) == 0, "%s cut at %zu,%zu: other parts", what, i,
                  j);
}

/* Every split into two and three pieces, and byte by byte, against the body in one piece. */
static outcome split_everywhere(const char *ct, const char *body, size_t n, const char *what) {
    outcome whole = parse_cut(ct, body, n, NULL, 0, 0);
    for (size_t i = 0; i <= n; i++) {
        for (size_t j = i; j <= n; j++) {
            size_t cuts[2] = {i, j};
            outcome o = parse_cut(ct, body, n, cuts, 2, 0);
            assert_same(&whole, &o, what, i, j);
            free(o.r.s);
        }
    }
    size_t *every = malloc((n + 1) * sizeof *every);
    for (size_t i = 0; i < n; i++) every[i] = i;
    outcome o = parse_cut(ct, body, n, every, n, 0);
    assert_same(&whole, &o, what, 1, 1);
    free(o.r.s);
    free(every);
    return whole;
}

/* ---- bodies ------------------------------------------------------------------------------------------ */

static const char CT[] = "multipart/form-data; boundary=XyZ";

#define FILE_DATA "{\"text\": \"a\"}\r\n-XyZ\r\n--XyY\r\r\n\r\n--Xy\0z\r\n\r\n"

/* A preamble, transport padding, data that holds near-delimiters and a NUL, a field with no
 * filename, an empty part, an epilogue. */
static const char SAMPLE[] =
    "preamble --XyZ without its CRLF\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"purpose\"\r\n\r\n"
    "fine-tune\r\n"
    "--XyZ \t\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"a b.jsonl\"\r\n"
    "Content-Type: application/octet-stream\r\n\r\n"
    FILE_DATA
    "\r\n--XyZ\r\n"
    "content-disposition: form-data; name=empty\r\n\r\n"
    "\r\n--XyZ--\r\nepilogue\r\n--XyZ\r\n";

static const char SAMPLE_RECORD[] =
    "<purpose|(none)>fine-tune</>"
    "<file|a b.jsonl>" FILE_DATA "</>"
    "<empty|(none)></>";

START_TEST(test_split_everywhere) {
    outcome o = split_everywhere(CT, SAMPLE, sizeof SAMPLE - 1, "sample");
    ck_assert_int_eq(o.err, HLPT_OK);
    ck_assert_uint_eq(o.r.n, sizeof SAMPLE_RECORD - 1);
    ck_assert_mem_eq(o.r.s, SAMPLE_RECORD, o.r.n);
    free(o.r.s);
    /* The first boundary may open the body; a boundary as long as allowed. */
    char ct[300], body[1024], b[HLPTD_MULTIPART_BOUNDARY_MAX + 1];
    memset(b, 'q', sizeof b - 1);
    b[sizeof b - 1] = 0;
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=\"%s\"", b);
    int n = snprintf(body, sizeof body, "--%s\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n--%.150s\r\n--%s--", b,
                     b, b);
    o = split_everywhere(ct, body, (size_t)n, "long boundary");
    ck_assert_int_eq(o.err, HLPT_OK);
    char want[300];
    int wn = snprintf(want, sizeof want, "<a|(none)>\r\n--%.150s</>", b);
    ck_assert_uint_eq(o.r.n, (size_t)wn);
    ck_assert_mem_eq(o.r.s, want, o.r.n);
    free(o.r.s);
}
END_TEST

/* Each malformed body fails with the same message however it is cut. */
START_TEST(test_errors_split_everywhere) {
    static const struct {
        const char *body;
        const char *msg;
    } cases[] = {
        {"no boundary here\r\n--XyY\r\n", "multipart body: boundary not found"},
        {"--XyZ", "multipart body: malformed boundary line"},
        {"--XyZ-", "multipart body: malformed boundary line"},
        {"--XyZ-x", "multipart body: malformed boundary line"},
        {"--XyZ \r", "multipart body: malformed boundary line"},
        {"--XyZ x\r\n", "multipart body: malformed boundary line"},
        {"--XyZ\r\nContent-Disposition: form-data; name=a\r\n", "multipart body: part headers do not end"},
        {"--XyZ\r\n\r\ndata\r\n--XyZ--", "multipart body: part without a name"},
        {"--XyZ\r\nContent-Type: text/plain\r\n\r\ndata\r\n--XyZ--", "multipart body: part without a name"},
        {"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\ndata\r\n--XyZ", "multipart body: malformed boundary line"},
        {"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\ndata\r\n--Xy", "multipart body: part not terminated by the boundary"},
        {"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\ndata--XyZ--", "multipart body: part not terminated by the boundary"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        outcome o = split_everywhere(CT, cases[i].body, strlen(cases[i].body), cases[i].body);
        ck_assert_int_eq(o.err, HLPT_ERR_FORMAT);
        ck_assert_msg(strcmp(o.why, cases[i].msg) == 0, "case %zu: `%s`, want `%s`", i, o.why, cases[i].msg);
        free(o.r.s);
    }
    /* NUL bytes in a name or a filename: refused, as a name read short would be another name. */
    static const char nul_name[] = "--XyZ\r\nContent-Disposition: form-data; name=\"na\0me\"\r\n\r\nx\r\n--XyZ--";
    static const char nul_file[] = "--XyZ\r\nContent-Disposition: form-data; name=f; filename=\"a\0.jsonl\"\r\n\r\nx\r\n--XyZ--";
    outcome o = split_everywhere(CT, nul_name, sizeof nul_name - 1, "NUL name");
    ck_assert_str_eq(o.why, "multipart body: a NUL byte in a part's name or filename");
    ck_assert_uint_eq(o.r.n, 0);
    free(o.r.s);
    o = split_everywhere(CT, nul_file, sizeof nul_file - 1, "NUL filename");
    ck_assert_str_eq(o.why, "multipart body: a NUL byte in a part's name or filename");
    free(o.r.s);
    /* The Content-Type is checked first. */
    hlptd_multipart *m;
    char why[256];
    ck_assert_int_eq(hlptd_multipart_new("text/plain", &cbs, NULL, &m, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_str_eq(why, "multipart body: Content-Type is not multipart/form-data");
    ck_assert_ptr_null(m);
    ck_assert_int_eq(hlptd_multipart_new("multipart/form-data", &cbs, NULL, &m, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_str_eq(why, "multipart body: no boundary in Content-Type");
    ck_assert_int_eq(hlptd_multipart_new("multipart/form-data; boundary=", &cbs, NULL, &m, why, sizeof why), HLPT_ERR_FORMAT);
}
END_TEST

START_TEST(test_limits) {
    /* A header block one byte over the limit, arriving in pieces. */
    size_t hn = HLPTD_MULTIPART_HEADERS_MAX + 64;
    char *body = malloc(hn + 64);
    int k = snprintf(body, hn, "--XyZ\r\nContent-Disposition: form-data; name=a\r\nX-Pad: ");
    memset(body + k, 'p', hn - (size_t)k);
    size_t cuts[3] = {100, 5000, HLPTD_MULTIPART_HEADERS_MAX};
    outcome o = parse_cut(CT, body, hn, cuts, 3, 0);
    ck_assert_int_eq(o.err, HLPT_ERR_FORMAT);
    ck_assert_str_eq(o.why, "multipart body: part headers are longer than 16384 bytes");
    free(o.r.s);
    /* One just under it is fine. */
    size_t fill = HLPTD_MULTIPART_HEADERS_MAX - (size_t)k - 4;
    memset(body + k, 'p', fill);
    memcpy(body + k + fill, "\r\n\r\nx\r\n--XyZ--", 14);
    o = parse_cut(CT, body, (size_t)k + fill + 14, cuts, 3, 0);
    ck_assert_int_eq(o.err, HLPT_OK);
    free(o.r.s);
    free(body);
    /* One part too many. */
    static const char part[] = "\r\n--XyZ\r\nContent-Disposition: form-data; name=p\r\n\r\nv";
    size_t pn = sizeof part - 1, n = 0;
    body = malloc(pn * (HLPTD_MULTIPART_PARTS_MAX + 1) + 16);
    for (int i = 0; i <= HLPTD_MULTIPART_PARTS_MAX; i++, n += pn) memcpy(body + n, part, pn);
    memcpy(body + n, "\r\n--XyZ--", 9);
    o = parse_cut(CT, body, n + 9, NULL, 0, 0);
    ck_assert_str_eq(o.why, "multipart body: more than 256 parts");
    free(o.r.s);
    o = parse_cut(CT, body + pn, n + 9 - pn, NULL, 0, 0);
    ck_assert_int_eq(o.err, HLPT_OK);
    free(o.r.s);
    free(body);
}
END_TEST

START_TEST(test_callback_stops) {
    size_t cuts[1] = {200};
    outcome o = parse_cut(CT, SAMPLE, sizeof SAMPLE - 1, cuts, 1, 2);
    ck_assert_int_eq(o.err, HLPT_ERR_RANGE);
    ck_assert_str_eq(o.why, "no part 2 here");
    ck_assert_str_eq(o.r.s, "<purpose|(none)>fine-tune</>");
    free(o.r.s);
}
END_TEST

/* The whole-body wrapper: parts point into the body; an empty part is an empty piece of it. */
START_TEST(test_whole_body) {
    hlptd_form_part *parts;
    size_t n;
    char why[256];
    ck_assert_int_eq(hlptd_multipart_parse(CT, SAMPLE, sizeof SAMPLE - 1, &parts, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(parts[0].name, "purpose");
    ck_assert_ptr_null(parts[0].filename);
    ck_assert_uint_eq(parts[0].n, 9);
    ck_assert_mem_eq(parts[0].data, "fine-tune", 9);
    ck_assert_ptr_eq(parts[0].data, strstr(SAMPLE, "fine-tune"));
    ck_assert_str_eq(parts[1].name, "file");
    ck_assert_str_eq(parts[1].filename, "a b.jsonl");
    ck_assert_uint_eq(parts[1].n, sizeof FILE_DATA - 1);
    ck_assert_mem_eq(parts[1].data, FILE_DATA, parts[1].n);
    ck_assert_str_eq(parts[2].name, "empty");
    ck_assert_uint_eq(parts[2].n, 0);
    ck_assert(parts[2].data >= SAMPLE && parts[2].data <= SAMPLE + sizeof SAMPLE - 1);
    hlptd_form_parts_free(parts, n);
    ck_assert_int_eq(hlptd_multipart_parse(CT, "--XyZ\r\n", 7, &parts, &n, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_null(parts);
    ck_assert_uint_eq(n, 0);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("multipart");
    TCase *tc = tcase_create("multipart");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_split_everywhere);
    tcase_add_test(tc, test_errors_split_everywhere);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_callback_stops);
    tcase_add_test(tc, test_whole_body);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
