/*
 * web.c - the dashboard: GET / serves web/index.html and GET /ui/{name} the other files of web/,
 * all compiled in (api/web.h). The page is plain HTML, CSS and JavaScript that talks to the daemon
 * only through the REST API of docs/rest.md, so it holds no data: its routes are public, and with
 * API keys on, the page asks for a key and sends it on every call it makes.
 *
 * Caching: each file carries a strong ETag (a hash of its bytes, made at build time) and
 * `Cache-Control: no-cache`, so a browser revalidates on every load and gets 304 until the daemon is
 * rebuilt with different files. Unknown names under /ui/ are 404 in the API's error shape.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "hlpt/err.h"
#include "web.h"

static const struct {
    const char *ext, *type;
} content_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".json", "application/json"},
    {".txt", "text/plain; charset=utf-8"},
};

const char *hlptd_web_content_type(const char *name) {
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof content_types / sizeof content_types[0]; i++)
        if (!strcmp(dot, content_types[i].ext)) return content_types[i].type;
    return "application/octet-stream";
}

const hlptd_web_file *hlptd_web_find(const char *name) {
    for (int i = 0; i < hlptd_web_nfiles; i++)
        if (!strcmp(hlptd_web_files[i].name, name)) return &hlptd_web_files[i];
    return NULL;
}

/* If-None-Match holds "*" or a list of entity tags, weak ones (W/"…") included: a weak comparison
 * is what RFC 9110 §13.1.2 asks of it. */
static int etag_listed(const char *header, const char *etag) {
    if (!header) return 0;
    if (!strcmp(header, "*")) return 1;
    size_t n = strlen(etag);
    for (const char *p = strstr(header, etag); p; p = strstr(p + 1, etag)) {
        char after = p[n];
        if (after == 0 || after == ',' || after == ' ' || after == '\t') return 1;
    }
    return 0;
}

static void serve(hlptd_req *r, const char *name) {
    const hlptd_web_file *f = hlptd_web_find(name);
    if (!f) {
        hlptd_reply_http_err(r, 404, "invalid_request_error", "unknown_url", NULL, "no dashboard file %s", name);
        return;
    }
    const char *type = hlptd_web_content_type(f->name);
    if (hlptd_reply_header(r, "ETag", f->etag) || hlptd_reply_header(r, "Cache-Control", "no-cache") ||
        hlptd_reply_header(r, "X-Content-Type-Options", "nosniff")) {
        hlptd_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    if (etag_listed(hlptd_req_header(r, "If-None-Match"), f->etag)) {
        hlptd_reply_bytes(r, 304, type, NULL, 0);
        return;
    }
    char *buf = malloc(f->size ? f->size : 1);
    if (!buf) {
        hlptd_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    memcpy(buf, f->data, f->size);
    hlptd_reply_bytes(r, 200, type, buf, f->size);
}

void hlptd_api_web_index(hlptd_req *r) { serve(r, "index.html"); }

void hlptd_api_web_file(hlptd_req *r) { serve(r, hlptd_req_param(r, "name")); }
