/*
 * The dashboard's static files (api/web.c) behind the daemon's real route table: GET / is
 * web/index.html, /ui/<name> the other files with their Content-Type, a strong ETag and
 * `Cache-Control: no-cache`, 304 on a matching If-None-Match, 404 in the API's error shape for other
 * names; with API keys on, the page needs no key while the API still does. Talks HTTP/1.0 over a
 * socket. No request here reaches a handler that needs the daemon.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../check_main.h"
#include "api.h"
#include "hlpt/err.h"
#include "web.h"

static hlptd_http *server;

static void wake(void *ctx) { (void)ctx; }

static void start(const char *key) {
    char why[256];
    hlptd_http_opts o = {.host = "127.0.0.1", .port = 0, .threads = 2, .max_body_bytes = 1024, .routes = hlptd_api_routes,
                        .nroutes = hlptd_api_nroutes, .wake = wake};
    ck_assert_int_eq(hlptd_http_start(&server, &o, why, sizeof why), HLPT_OK);
    if (key) {
        char path[] = "/tmp/hlpt-web-keys-XXXXXX";
        int fd = mkstemp(path);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, key, strlen(key)), (ssize_t)strlen(key));
        close(fd);
        ck_assert_int_eq(hlptd_http_load_api_keys(server, path, why, sizeof why), HLPT_OK);
        unlink(path);
    }
}

static void stop(void) {
    for (int i = 0; i < 200 && hlptd_http_drain_step(server) > 0; i++) usleep(10000);
    hlptd_http_stop(server);
    server = NULL;
}

typedef struct {
    int status;
    char head[4096]; /* the header lines */
    char *body;      /* owned */
    size_t body_n;
} reply;

/* One request with extra header lines (each ending in \r\n, or NULL). */
static void request(const char *method, const char *path, const char *headers, reply *out) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)hlptd_http_port(server))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[1024];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\n%s\r\n", method, path, headers ? headers : "");
    ck_assert_int_eq(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 20, got = 0;
    char *buf = malloc(cap + 1);
    for (ssize_t k; got < cap && (k = read(fd, buf + got, cap - got)) > 0;) got += (size_t)k;
    close(fd);
    buf[got] = 0;
    memset(out, 0, sizeof *out);
    sscanf(buf, "HTTP/1.%*d %d", &out->status);
    char *end = strstr(buf, "\r\n\r\n");
    ck_assert_ptr_nonnull(end);
    snprintf(out->head, sizeof out->head, "%.*s", (int)(end - buf), buf);
    out->body_n = got - (size_t)(end + 4 - buf);
    out->body = malloc(out->body_n + 1);
    memcpy(out->body, end + 4, out->body_n + 1);
    free(buf);
}

/* A header's value in r (case-insensitive name), copied to out; 0 when absent. */
static int header(const reply *r, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *l = p + 2;
        if (!strncasecmp(l, name, nl) && l[nl] == ':') {
            l += nl + 1;
            while (*l == ' ') l++;
            const char *e = strstr(l, "\r\n");
            snprintf(out, cap, "%.*s", (int)(e ? (size_t)(e - l) : strlen(l)), l);
            return 1;
        }
    }
    return 0;
}

START_TEST(test_content_types) {
    ck_assert_str_eq(hlptd_web_content_type("index.html"), "text/html; charset=utf-8");
    ck_assert_str_eq(hlptd_web_content_type("app.js"), "text/javascript; charset=utf-8");
    ck_assert_str_eq(hlptd_web_content_type("style.css"), "text/css; charset=utf-8");
    ck_assert_str_eq(hlptd_web_content_type("shot.png"), "image/png");
    ck_assert_str_eq(hlptd_web_content_type("a.tar.gz"), "application/octet-stream");
    ck_assert_str_eq(hlptd_web_content_type("Makefile"), "application/octet-stream");
    /* The table holds web/'s files, each with a quoted ETag and a NUL after its bytes. */
    ck_assert_ptr_nonnull(hlptd_web_find("index.html"));
    ck_assert_ptr_nonnull(hlptd_web_find("app.js"));
    ck_assert_ptr_null(hlptd_web_find("nope.js"));
    for (int i = 0; i < hlptd_web_nfiles; i++) {
        const hlptd_web_file *f = &hlptd_web_files[i];
        ck_assert_msg(f->size > 0 && f->data[f->size] == 0, "%s", f->name);
        ck_assert_msg(f->etag[0] == '"' && f->etag[strlen(f->etag) - 1] == '"' && strlen(f->etag) > 10, "%s", f->etag);
        for (int k = 0; k < i; k++) ck_assert_str_ne(hlptd_web_files[k].etag, f->etag);
    }
}
END_TEST

START_TEST(test_serving) {
    start(NULL);
    reply r;
    char v[256];
    const hlptd_web_file *index = hlptd_web_find("index.html");
    request("GET", "/", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(header(&r, "Content-Type", v, sizeof v));
    ck_assert_str_eq(v, "text/html; charset=utf-8");
    ck_assert(header(&r, "ETag", v, sizeof v));
    ck_assert_str_eq(v, index->etag);
    ck_assert(header(&r, "Cache-Control", v, sizeof v));
    ck_assert_str_eq(v, "no-cache");
    ck_assert_uint_eq(r.body_n, index->size);
    ck_assert(!memcmp(r.body, index->data, index->size));
    free(r.body);

    const hlptd_web_file *js = hlptd_web_find("app.js");
    request("GET", "/ui/app.js", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(header(&r, "Content-Type", v, sizeof v));
    ck_assert_str_eq(v, "text/javascript; charset=utf-8");
    ck_assert_uint_eq(r.body_n, js->size);
    free(r.body);

    /* Revalidation: the current tag (alone, in a list, weak, or *) is 304 with no body; an old one
     * gets the file. */
    char h[512];
    const char *forms[] = {"%s", "\"old\", %s", "W/%s", "*"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char tag[256];
        snprintf(tag, sizeof tag, forms[i], js->etag);
        snprintf(h, sizeof h, "If-None-Match: %s\r\n", tag);
        request("GET", "/ui/app.js", h, &r);
        ck_assert_msg(r.status == 304, "%s: %d", tag, r.status);
        ck_assert_uint_eq(r.body_n, 0);
        ck_assert(header(&r, "ETag", v, sizeof v));
        free(r.body);
    }
    request("GET", "/ui/app.js", "If-None-Match: \"0123456789\"\r\n", &r);
    ck_assert_int_eq(r.status, 200);
    free(r.body);
    /* A tag that merely starts with the file's is another tag. */
    snprintf(h, sizeof h, "If-None-Match: %.*sx\"\r\n", (int)strlen(js->etag) - 1, js->etag);
    request("GET", "/ui/app.js", h, &r);
    ck_assert_int_eq(r.status, 200);
    free(r.body);

    request("GET", "/ui/nope.js", NULL, &r);
    ck_assert_int_eq(r.status, 404);
    ck_assert_ptr_nonnull(strstr(r.body, "\"code\":\"unknown_url\""));
    free(r.body);
    request("GET", "/ui/", NULL, &r);
    ck_assert_int_eq(r.status, 404);
    free(r.body);
    request("GET", "/ui/a/b.js", NULL, &r);
    ck_assert_int_eq(r.status, 404);
    free(r.body);
    request("POST", "/", NULL, &r);
    ck_assert_int_eq(r.status, 405);
    free(r.body);
    stop();
}
END_TEST

START_TEST(test_public_with_keys) {
    start("sk-web\n");
    reply r;
    request("GET", "/", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    free(r.body);
    request("GET", "/ui/style.css", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    free(r.body);
    /* The page is public; the API behind it is not, and GET / shadows none of it. */
    request("GET", "/v1/files", NULL, &r);
    ck_assert_int_eq(r.status, 401);
    free(r.body);
    request("GET", "/v1/models", NULL, &r);
    ck_assert_int_eq(r.status, 401);
    free(r.body);
    request("GET", "/v1/nothing", NULL, &r);
    ck_assert_int_eq(r.status, 404);
    free(r.body);
    stop();
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("web");
    TCase *tc = tcase_create("web");
    tcase_add_test(tc, test_content_types);
    tcase_add_test(tc, test_serving);
    tcase_add_test(tc, test_public_with_keys);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
