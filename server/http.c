/*
 * http.c - see http.h.
 *
 * Thread mode: MHD's internal thread pool (MHD_USE_POLL_INTERNAL_THREAD + THREAD_POOL_SIZE) rather
 * than thread-per-connection, because (1) MHD_suspend_connection, which every hand-off to the loop
 * and every idle event stream relies on, is not available in thread-per-connection mode, and (2)
 * event streams and long generations stay open for minutes; a pool serves any number of them with
 * a fixed number of threads, where thread-per-connection would park one thread (and its stack) per
 * open stream. Handlers never block, so a small pool is enough. poll(2), not epoll: libmicrohttpd
 * 0.9.75 watches sockets edge-triggered under epoll, and a client that closes while the tail of
 * its body is still queued on the socket is then not seen to have gone until the connection times
 * out (300 s), holding an upload's temporary file all that while; poll is level-triggered.
 *
 * A request moves through states: BODY (upload arriving) → HANDLER (route handler running on the
 * MHD thread) → DEFER (handler asked for the loop) → QUEUED (connection suspended, on the loop's
 * queue) → REPLIED (reply set; connection resumed) → SENT. A streamed body (HLPTD_ROUTE_STREAM_BODY)
 * takes HANDLER first, when the headers are in, then BODY while its pieces go to the handler's
 * piece function, then HANDLER again for its done function. A reply set before the body is read
 * (an error found in the headers) is sent once the body has been read and dropped, so that a
 * client that sends its whole body before it reads gets to see it; a client that asked for
 * `Expect: 100-continue` gets it at once. The connection is suspended by the MHD
 * thread itself after the handler returned, and resumed by the loop only after the work ran, so a
 * resume can never precede its suspend. Requests that were suspended or streamed are counted in
 * `inflight` until MHD reports them complete; shutdown waits for that count to reach zero.
 *
 * A kept request (hlptd_req_keep, from a handler or a work function) has a keeper on another thread
 * that replies and calls hlptd_req_finish whenever it is done, perhaps before the thread that kept
 * it has let go. `held` and `finished`, under h->mu, settle who resumes: the keeper, when the
 * holder had let go (the connection was suspended by then); else the holder, as it lets go.
 *
 * Locks: h->mu guards the queue, the closing flag, the API keys and the list of streams; each
 * stream has its own mutex. Order: h->mu before a stream's mutex, and both before MHD's internal
 * locks (taken by suspend/resume).
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "hlpt/dataset.h"
#include "hlpt/err.h"
#include "log.h"

/* ---- the status table ------------------------------------------------------------------------- */

typedef struct {
    int status;
    const char *type;
    const char *code;
} http_status;

#define ERR_ROW(name, st, type, code) [-HLPT_ERR_##name] = {st, type, code}
static const http_status err_table[] = {
    ERR_ROW(OK, 200, NULL, NULL),
    ERR_ROW(NOMEM, 500, "server_error", "out_of_memory"),
    ERR_ROW(INVAL, 400, "invalid_request_error", "invalid_value"),
    ERR_ROW(IO, 500, "server_error", "io_error"),
    ERR_ROW(NOENT, 404, "invalid_request_error", "not_found"),
    ERR_ROW(FORMAT, 400, "invalid_request_error", "invalid_format"),
    ERR_ROW(UNSUPPORTED, 400, "invalid_request_error", "unsupported"),
    ERR_ROW(MISMATCH, 422, "invalid_request_error", "base_model_mismatch"),
    ERR_ROW(RANGE, 400, "invalid_request_error", "out_of_range"),
    ERR_ROW(STATE, 409, "invalid_request_error", "wrong_state"),
    ERR_ROW(EXISTS, 409, "invalid_request_error", "already_exists"),
    ERR_ROW(BUSY, 429, "rate_limit_error", "busy"),
    ERR_ROW(CANCELLED, 409, "invalid_request_error", "cancelled"),
    ERR_ROW(DB, 500, "server_error", "database_error"),
    ERR_ROW(INTERNAL, 500, "server_error", "internal_error"),
    ERR_ROW(NOSPACE, 507, "server_error", "insufficient_storage"),
};
_Static_assert(sizeof err_table / sizeof err_table[0] == HLPT_ERR_COUNT__, "one HTTP row per hlpt status");

int hlptd_http_status_of(int err, const char **type, const char **code) {
    const http_status *s = err <= 0 && -err < HLPT_ERR_COUNT__ ? &err_table[-err] : NULL;
    if (!s || !s->status) s = &err_table[-HLPT_ERR_INTERNAL];
    if (type) *type = s->type;
    if (code) *code = s->code;
    return s->status;
}

/* ---- types ------------------------------------------------------------------------------------ */

typedef struct {
    char *k, *v;
} kv;

typedef struct {
    kv *v;
    size_t n, cap;
} kv_list;

enum { ST_BODY, ST_HANDLER, ST_DEFER, ST_QUEUED, ST_REPLIED, ST_SENT };

#define MAX_PARAMS 4
/* Query arguments one request may carry; more get 414 (see on_uri). */
#define MAX_QUERY_ARGS 256

struct hlptd_req {
    hlptd_http *h;
    struct MHD_Connection *conn;
    char *method, *path;
    kv_list headers, query;
    kv params[MAX_PARAMS];
    size_t nparams;
    char *body;
    size_t body_n, body_cap;
    int too_large;
    int too_many_args; /* the query was cut off before MHD parsed it (on_uri) */
    int body_err;   /* HLPT_ERR_NOMEM or HLPT_ERR_NOSPACE: the body was dropped */
    int streamed;            /* route is HLPTD_ROUTE_STREAM_BODY: the body goes to piece */
    uint64_t body_seen;      /* bytes of a streamed body so far */
    hlptd_piece_fn piece;     /* NULL: the rest of a streamed body is dropped */
    hlptd_handler_fn done;    /* runs once a streamed body is complete */
    cJSON *json;
    hlptd_form_part *parts;
    size_t nparts;
    int form_err; /* 0 = not parsed yet, 1 = parsed, <0 = hlpt_err */
    char form_why[200];
    void *data;
    void (*data_free)(void *);
    hlptd_work_fn work;
    int state;
    int counted; /* in h->inflight */
    /* the reply */
    int status;
    char *ctype;
    char *resp;
    size_t resp_n;
    int resp_fd;       /* hlptd_reply_file's: the body is this file, or -1 */
    uint64_t resp_fd_n;
    char allow[64];
    int www_auth;
    kv_list resp_headers; /* hlptd_reply_header's */
    hlptd_sse *sse;  /* r's reference, until handed to the MHD response */
    int streaming;
    int kept;       /* its handler or work handed it to a keeper, which calls hlptd_req_finish */
    int held;       /* under h->mu: kept, and the thread that kept it has not let go yet */
    int finished;   /* under h->mu: the keeper called hlptd_req_finish */
    hlptd_req *next; /* in the loop's queue */
};

struct hlptd_sse {
    hlptd_http *h;
    pthread_mutex_t mu;
    int refs;
    struct MHD_Connection *conn;
    char *buf;
    size_t n, off, cap;
    int closed, gone, suspended;
    int finite;            /* ends by itself: the drain does not close it */
    hlptd_sse *prev, *next; /* in h->streams, under h->mu */
};

struct hlptd_http {
    struct MHD_Daemon *d;
    int listen_fd;
    int quiesced;
    int port;
    hlptd_http_opts o;
    pthread_mutex_t mu;
    hlptd_req *qhead, *qtail;
    int closing;
    char **keys;
    size_t nkeys;
    hlptd_sse *streams;
    atomic_int inflight;
};

/* ---- small helpers ---------------------------------------------------------------------------- */

static int kv_add(kv_list *l, const char *k, const char *v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        kv *nv = realloc(l->v, cap * sizeof *nv);
        if (!nv) return HLPT_ERR_NOMEM;
        l->v = nv, l->cap = cap;
    }
    char *kk = strdup(k), *vv = strdup(v ? v : "");
    if (!kk || !vv) {
        free(kk);
        free(vv);
        return HLPT_ERR_NOMEM;
    }
    l->v[l->n++] = (kv){kk, vv};
    return HLPT_OK;
}

static void kv_free(kv_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i].k), free(l->v[i].v);
    free(l->v);
}

static const char *kv_get(const kv_list *l, const char *k, int nocase) {
    for (size_t i = 0; i < l->n; i++)
        if ((nocase ? strcasecmp : strcmp)(l->v[i].k, k) == 0) return l->v[i].v;
    return NULL;
}

static void sse_unlink_and_unref(hlptd_sse *s);

static void req_free(hlptd_req *r) {
    if (!r) return;
    free(r->method);
    free(r->path);
    kv_free(&r->headers);
    kv_free(&r->query);
    for (size_t i = 0; i < r->nparams; i++) free(r->params[i].k), free(r->params[i].v);
    free(r->body);
    cJSON_Delete(r->json);
    hlptd_form_parts_free(r->parts, r->nparts);
    if (r->data_free) r->data_free(r->data);
    free(r->ctype);
    free(r->resp);
    if (r->resp_fd >= 0) close(r->resp_fd);
    kv_free(&r->resp_headers);
    if (r->sse) sse_unlink_and_unref(r->sse);
    free(r);
}

static enum MHD_Result collect_kv(void *cls, enum MHD_ValueKind kind, const char *k, const char *v) {
    return kv_add(cls, k, v) ? MHD_NO : MHD_YES;
}

static hlptd_req *req_new(hlptd_http *h, struct MHD_Connection *conn, const char *url, const char *method) {
    hlptd_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->h = h;
    r->conn = conn;
    r->resp_fd = -1;
    r->method = strdup(method);
    r->path = strdup(url);
    r->body = malloc(1);
    if (!r->method || !r->path || !r->body) goto fail;
    r->body[0] = 0;
    r->body_cap = 1;
    /* Headers and query arguments are copied now: later the request may be handled by a thread
     * that must not touch the MHD connection. */
    size_t nh = (size_t)MHD_get_connection_values(conn, MHD_HEADER_KIND, NULL, NULL);
    size_t nq = (size_t)MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, NULL, NULL);
    if ((size_t)MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_kv, &r->headers) != nh ||
        (size_t)MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_kv, &r->query) != nq)
        goto fail;
    return r;
fail:
    req_free(r);
    return NULL;
}

/* ---- replies ---------------------------------------------------------------------------------- */

static void set_reply(hlptd_req *r, int status, const char *ctype, char *buf, size_t n) {
    free(r->ctype);
    free(r->resp);
    if (r->resp_fd >= 0) close(r->resp_fd);
    r->resp_fd = -1;
    r->status = status;
    r->ctype = strdup(ctype);
    r->resp = buf;
    r->resp_n = n;
    r->streaming = 0;
    r->state = ST_REPLIED;
}

void hlptd_reply_bytes(hlptd_req *r, int status, const char *content_type, void *buf, size_t n) {
    set_reply(r, status, content_type, buf, buf ? n : 0);
}

void hlptd_reply_file(hlptd_req *r, int status, const char *content_type, int fd, uint64_t size) {
    set_reply(r, status, content_type, NULL, 0);
    r->resp_fd = fd;
    r->resp_fd_n = size;
}

int hlptd_reply_header(hlptd_req *r, const char *name, const char *value) {
    return kv_add(&r->resp_headers, name, value);
}

void hlptd_reply_json(hlptd_req *r, int status, cJSON *body) {
    char *s = body ? cJSON_PrintUnformatted(body) : strdup("{}");
    cJSON_Delete(body);
    if (!s) {
        /* Out of memory while rendering: a fixed body needs no allocation but the copy. */
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                                  "\"param\":null,\"code\":\"out_of_memory\"}}";
        s = strdup(oom);
        status = 500;
    }
    set_reply(r, status, "application/json", s, s ? strlen(s) : 0);
}

static void vreply_error(hlptd_req *r, int status, const char *type, const char *code, const char *param,
                         const char *fmt, va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* Messages are often built from user input (file names, JSON): keep the JSON valid. */
    size_t bad;
    if (!hlpt_utf8_valid(msg, strlen(msg), &bad)) msg[bad] = 0;
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    if (e) {
        cJSON_AddStringToObject(e, "message", msg);
        cJSON_AddStringToObject(e, "type", type);
        if (param) cJSON_AddStringToObject(e, "param", param);
        else cJSON_AddNullToObject(e, "param");
        if (code) cJSON_AddStringToObject(e, "code", code);
        else cJSON_AddNullToObject(e, "code");
    }
    hlptd_log(status >= 500 ? HLPTD_LOG_WARN : HLPTD_LOG_DEBUG, "%s %s -> %d %s", r->method, r->path, status, msg);
    hlptd_reply_json(r, status, o);
}

void hlptd_reply_http_err(hlptd_req *r, int status, const char *type, const char *code, const char *param,
                         const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreply_error(r, status, type, code, param, fmt, ap);
    va_end(ap);
}

void hlptd_reply_err(hlptd_req *r, int err, const char *param, const char *fmt, ...) {
    const char *type, *code;
    int status = hlptd_http_status_of(err, &type, &code);
    va_list ap;
    va_start(ap, fmt);
    vreply_error(r, status, type, code, param, fmt, ap);
    va_end(ap);
}

/* ---- request accessors ------------------------------------------------------------------------ */

const char *hlptd_req_path(const hlptd_req *r) { return r->path; }
const char *hlptd_req_query(const hlptd_req *r, const char *name) { return kv_get(&r->query, name, 0); }
const char *hlptd_req_query_at(const hlptd_req *r, size_t i, const char **value) {
    if (i >= r->query.n) return NULL;
    if (value) *value = r->query.v[i].v;
    return r->query.v[i].k;
}
const char *hlptd_req_header(const hlptd_req *r, const char *name) { return kv_get(&r->headers, name, 1); }
void *hlptd_req_app(const hlptd_req *r) { return r->h->o.app; }
void *hlptd_req_data(const hlptd_req *r) { return r->data; }

const char *hlptd_req_param(const hlptd_req *r, const char *name) {
    for (size_t i = 0; i < r->nparams; i++)
        if (strcmp(r->params[i].k, name) == 0) return r->params[i].v;
    return NULL;
}

const char *hlptd_req_body(const hlptd_req *r, size_t *n) {
    if (n) *n = r->body_n;
    return r->body;
}

void hlptd_req_set_data(hlptd_req *r, void *data, void (*free_fn)(void *)) {
    if (r->data_free) r->data_free(r->data);
    r->data = data;
    r->data_free = free_fn;
}

cJSON *hlptd_req_json(hlptd_req *r) {
    if (r->json) return r->json;
    if (r->body_n == 0) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, NULL, "request body is empty; expected a JSON object");
        return NULL;
    }
    size_t bad;
    if (!hlpt_utf8_valid(r->body, r->body_n, &bad)) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, NULL, "request body: invalid UTF-8 at byte %zu", bad + 1);
        return NULL;
    }
    const char *end = NULL;
    r->json = cJSON_ParseWithOpts(r->body, &end, 1);
    if (!r->json) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, NULL, "request body: invalid JSON at byte %zu",
                       (size_t)((end ? end : r->body) - r->body) + 1);
        return NULL;
    }
    if (!cJSON_IsObject(r->json)) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, NULL, "request body must be a JSON object");
        return NULL;
    }
    return r->json;
}

/* ---- multipart/form-data (multipart.h) ----------------------------------------------------------- */

static void form_parse(hlptd_req *r) {
    int err = hlptd_multipart_parse(hlptd_req_header(r, "Content-Type"), r->body, r->body_n, &r->parts, &r->nparts,
                                   r->form_why, sizeof r->form_why);
    r->form_err = err ? err : 1;
}

int hlptd_req_form(hlptd_req *r, const char *name, const char **data, size_t *n, const char **filename, char *why,
                  size_t len) {
    *data = NULL;
    *n = 0;
    if (filename) *filename = NULL;
    if (r->form_err == 0) form_parse(r);
    if (r->form_err < 0) return hlpt_why(why, len, r->form_err, "%s", r->form_why);
    for (size_t i = 0; i < r->nparts; i++) {
        if (strcmp(r->parts[i].name, name) == 0) {
            *data = r->parts[i].data;
            *n = r->parts[i].n;
            if (filename) *filename = r->parts[i].filename;
            return HLPT_OK;
        }
    }
    return hlpt_why(why, len, HLPT_ERR_NOENT, "form field `%s` missing", name);
}

/* ---- event streams ------------------------------------------------------------------------------ */

static void sse_unref_locked_out(hlptd_sse *s) {
    pthread_mutex_lock(&s->mu);
    int last = --s->refs == 0;
    pthread_mutex_unlock(&s->mu);
    if (last) {
        pthread_mutex_destroy(&s->mu);
        free(s->buf);
        free(s);
    }
}

void hlptd_sse_unref(hlptd_sse *s) {
    if (s) sse_unref_locked_out(s);
}

/* Drops the reference held by the request/response side, which also owns list membership. */
static void sse_unlink_and_unref(hlptd_sse *s) {
    hlptd_http *h = s->h;
    pthread_mutex_lock(&h->mu);
    if (s->prev) s->prev->next = s->next;
    else if (h->streams == s) h->streams = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
    pthread_mutex_lock(&s->mu);
    s->gone = 1;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&h->mu);
    sse_unref_locked_out(s);
}

static hlptd_sse *req_stream(hlptd_req *r, int finite) {
    hlptd_sse *s = calloc(1, sizeof *s);
    if (!s || pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        hlptd_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
        return NULL;
    }
    s->h = r->h;
    s->refs = 2; /* the caller's and the request's */
    s->finite = finite; /* before the drain can see it in the list */
    s->conn = r->conn;
    if (r->sse) sse_unlink_and_unref(r->sse);
    r->sse = s;
    pthread_mutex_lock(&r->h->mu);
    s->next = r->h->streams;
    if (s->next) s->next->prev = s;
    r->h->streams = s;
    pthread_mutex_unlock(&r->h->mu);
    set_reply(r, 200, "text/event-stream", NULL, 0);
    r->streaming = 1;
    return s;
}

hlptd_sse *hlptd_req_stream(hlptd_req *r) { return req_stream(r, 0); }
hlptd_sse *hlptd_req_stream_finite(hlptd_req *r) { return req_stream(r, 1); }

static int sse_append(hlptd_sse *s, const char *t, size_t k) {
    if (s->n + k > s->cap) {
        size_t cap = s->cap ? s->cap : 1024;
        while (cap < s->n + k) cap *= 2;
        char *nb = realloc(s->buf, cap);
        if (!nb) return HLPT_ERR_NOMEM;
        s->buf = nb, s->cap = cap;
    }
    memcpy(s->buf + s->n, t, k);
    s->n += k;
    return HLPT_OK;
}

static void sse_wake_locked(hlptd_sse *s) {
    if (s->suspended) {
        s->suspended = 0;
        MHD_resume_connection(s->conn);
    }
}

int hlptd_sse_send(hlptd_sse *s, const char *event, const char *data) {
    pthread_mutex_lock(&s->mu);
    int err = HLPT_OK;
    size_t n0 = s->n;
    if (s->gone || s->closed) {
        err = HLPT_ERR_CANCELLED;
        goto out;
    }
    if (event && ((err = sse_append(s, "event: ", 7)) || (err = sse_append(s, event, strlen(event))) ||
                  (err = sse_append(s, "\n", 1))))
        goto out;
    /* Each line of data is its own "data:" line; the client joins them with newlines. */
    for (const char *p = data ? data : "";;) {
        const char *nl = strchr(p, '\n');
        size_t k = nl ? (size_t)(nl - p) : strlen(p);
        if ((err = sse_append(s, "data: ", 6)) || (err = sse_append(s, p, k)) || (err = sse_append(s, "\n", 1)))
            goto out;
        if (!nl) break;
        p = nl + 1;
    }
    if ((err = sse_append(s, "\n", 1))) goto out;
    sse_wake_locked(s);
out:
    if (err) s->n = n0;
    pthread_mutex_unlock(&s->mu);
    return err;
}

void hlptd_sse_close(hlptd_sse *s) {
    pthread_mutex_lock(&s->mu);
    s->closed = 1;
    if (!s->gone) sse_wake_locked(s);
    pthread_mutex_unlock(&s->mu);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    hlptd_sse *s = cls;
    ssize_t got;
    pthread_mutex_lock(&s->mu);
    if (s->off < s->n) {
        size_t k = s->n - s->off < max ? s->n - s->off : max;
        memcpy(buf, s->buf + s->off, k);
        s->off += k;
        if (s->off == s->n) s->off = s->n = 0;
        got = (ssize_t)k;
    } else if (s->closed) {
        got = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        /* Nothing to send: sleep until hlptd_sse_send or _close resumes us (under this mutex, so
         * the resume cannot come before the suspend). */
        s->suspended = 1;
        MHD_suspend_connection(s->conn);
        got = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return got;
}

static void sse_response_free(void *cls) { sse_unlink_and_unref(cls); }

/* ---- sending ------------------------------------------------------------------------------------ */

static enum MHD_Result send_reply(hlptd_req *r) {
    struct MHD_Response *resp;
    if (r->streaming && r->sse) {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, r->sse, sse_response_free);
        if (resp) {
            r->sse = NULL; /* the response holds the reference now */
            MHD_add_response_header(resp, "Cache-Control", "no-cache");
        }
    } else if (r->resp_fd >= 0) {
        /* MHD reads the file as it sends (sendfile where it can) and closes it with the response. */
        resp = MHD_create_response_from_fd64(r->resp_fd_n, r->resp_fd);
        if (resp) r->resp_fd = -1;
    } else {
        resp = MHD_create_response_from_buffer(r->resp_n, r->resp, MHD_RESPMEM_MUST_FREE);
        if (resp) r->resp = NULL;
    }
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", r->ctype ? r->ctype : "application/octet-stream");
    if (r->allow[0]) MHD_add_response_header(resp, "Allow", r->allow);
    if (r->www_auth) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    for (size_t i = 0; i < r->resp_headers.n; i++)
        MHD_add_response_header(resp, r->resp_headers.v[i].k, r->resp_headers.v[i].v);
    pthread_mutex_lock(&r->h->mu);
    int closing = r->h->closing;
    pthread_mutex_unlock(&r->h->mu);
    if (closing) MHD_add_response_header(resp, "Connection", "close");
    if (r->streaming && !r->counted) {
        r->counted = 1;
        atomic_fetch_add(&r->h->inflight, 1);
    }
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    r->state = ST_SENT;
    return ret;
}

/* ---- routing and authentication ----------------------------------------------------------------- */

/* Matches path against pattern, capturing {name} segments into r->params. */
static int route_match(hlptd_req *r, const char *pattern, const char *path) {
    size_t np = 0;
    kv params[MAX_PARAMS];
    const char *p = pattern, *s = path;
    int ok = 1;
    while (*p && *s) {
        if (*p != '/' || *s != '/') {
            ok = 0;
            break;
        }
        p++, s++;
        const char *pe = strchr(p, '/'), *se = strchr(s, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p), sl = se ? (size_t)(se - s) : strlen(s);
        if (pl > 2 && p[0] == '{' && p[pl - 1] == '}') {
            if (sl == 0 || np == MAX_PARAMS) {
                ok = 0;
                break;
            }
            params[np].k = strndup(p + 1, pl - 2);
            params[np].v = strndup(s, sl);
            np++;
        } else if (pl != sl || memcmp(p, s, pl) != 0) {
            ok = 0;
            break;
        }
        p += pl, s += sl;
    }
    /* One trailing slash is forgiven: "/v1/files/" is "/v1/files". */
    if (ok && (*p || (*s && strcmp(s, "/") != 0))) ok = 0;
    for (size_t i = 0; i < np; i++)
        if (!params[i].k || !params[i].v) ok = 0;
    if (!ok) {
        for (size_t i = 0; i < np; i++) free(params[i].k), free(params[i].v);
        return 0;
    }
    for (size_t i = 0; i < r->nparams; i++) free(r->params[i].k), free(r->params[i].v);
    memcpy(r->params, params, np * sizeof *params);
    r->nparams = np;
    return 1;
}

/* Compares in time that depends only on the key's length, not on where the bytes differ. */
static int key_equal(const char *given, size_t gn, const char *key) {
    size_t kn = strlen(key);
    unsigned char d = gn != kn;
    for (size_t i = 0; i < kn; i++) d |= (unsigned char)(key[i] ^ (i < gn ? given[i] : 0));
    return d == 0;
}

static int authorized(hlptd_req *r) {
    hlptd_http *h = r->h;
    int ok = 0;
    pthread_mutex_lock(&h->mu);
    if (h->nkeys == 0) {
        ok = 1;
    } else {
        const char *a = hlptd_req_header(r, "Authorization");
        if (a && strncasecmp(a, "Bearer ", 7) == 0) {
            a += 7;
            while (*a == ' ') a++;
            size_t n = strlen(a);
            while (n && a[n - 1] == ' ') n--;
            for (size_t i = 0; i < h->nkeys; i++) ok |= key_equal(a, n, h->keys[i]);
        }
    }
    pthread_mutex_unlock(&h->mu);
    return ok;
}

/* The route for r's method and path, or NULL; r->allow lists the methods the path has. */
static const hlptd_route *find_route(hlptd_req *r) {
    hlptd_http *h = r->h;
    const hlptd_route *route = NULL;
    size_t an = 0;
    r->allow[0] = 0;
    for (size_t i = 0; i < h->o.nroutes && !route; i++) {
        const hlptd_route *rt = &h->o.routes[i];
        if (!route_match(r, rt->pattern, r->path)) continue;
        if (strcmp(rt->method, r->method) == 0) {
            route = rt;
        } else if (!strstr(r->allow, rt->method)) {
            an += (size_t)snprintf(r->allow + an, an < sizeof r->allow ? sizeof r->allow - an : 0, "%s%s",
                                   an ? ", " : "", rt->method);
            if (an >= sizeof r->allow) an = sizeof r->allow - 1;
        }
    }
    return route;
}

static size_t body_limit(const hlptd_req *r) {
    const hlptd_http *h = r->h;
    return r->streamed && h->o.max_upload_bytes ? h->o.max_upload_bytes : h->o.max_body_bytes;
}

static void reply_too_large(hlptd_req *r) {
    hlptd_reply_http_err(r, 413, "invalid_request_error", "request_too_large", NULL,
                        "request body is larger than the limit of %zu bytes (%s)", body_limit(r),
                        r->streamed ? "--max-upload-bytes" : "--max-body-bytes");
}

/* Runs the route's handler after the checks that come before it: for a buffered body once it is
 * complete, for a streamed one when the headers are in. */
static void dispatch(hlptd_req *r) {
    r->state = ST_HANDLER;
    if (r->too_many_args) {
        hlptd_reply_http_err(r, 414, "invalid_request_error", "too_many_query_arguments", NULL,
                            "the query string has more than %d arguments", MAX_QUERY_ARGS);
        return;
    }
    if (r->body_err == HLPT_ERR_NOSPACE) {
        hlptd_reply_err(r, HLPT_ERR_NOSPACE, NULL, "the request body (%s bytes) does not fit in the free disk space",
                       hlptd_req_header(r, "Content-Length"));
        return;
    }
    if (r->body_err) {
        hlptd_reply_err(r, r->body_err, NULL, "out of memory while reading the request body");
        return;
    }
    if (r->too_large) {
        reply_too_large(r);
        return;
    }
    const hlptd_route *route = find_route(r);
    if (!route && !r->allow[0]) {
        hlptd_reply_http_err(r, 404, "invalid_request_error", "unknown_url", NULL, "unknown URL: %s %s", r->method,
                            r->path);
        return;
    }
    if (!route) {
        hlptd_reply_http_err(r, 405, "invalid_request_error", "method_not_allowed", NULL,
                            "method %s is not allowed on %s (allowed: %s)", r->method, r->path, r->allow);
        return;
    }
    if (!(route->flags & HLPTD_ROUTE_PUBLIC) && !authorized(r)) {
        r->www_auth = 1;
        hlptd_reply_http_err(r, 401, "invalid_request_error", "invalid_api_key", NULL,
                            "missing or incorrect API key (send `Authorization: Bearer KEY`)");
        return;
    }
    route->handler(r);
    /* A kept request may be its keeper's already: its state is not this thread's to read. */
    if (!r->kept && r->state == ST_HANDLER) {
        hlptd_error("handler for %s %s gave no reply", route->method, route->pattern);
        hlptd_reply_err(r, HLPT_ERR_INTERNAL, NULL, "internal error: no reply");
    }
}

void hlptd_req_read_body(hlptd_req *r, hlptd_piece_fn piece, hlptd_handler_fn done) {
    if (!r->streamed) {
        /* The body is all here already. */
        if (r->body_n) piece(r, r->body, r->body_n);
        done(r);
        return;
    }
    r->piece = piece;
    r->done = done;
    r->state = ST_BODY;
}

/* The next piece of a streamed body. Past the limit the handler's data goes at once (an upload's
 * temporary file with it), and the rest is dropped. */
static void body_piece(hlptd_req *r, const char *data, size_t n) {
    r->body_seen += n;
    if (r->state != ST_BODY || r->too_large) return;
    if (r->body_seen > body_limit(r)) {
        r->too_large = 1;
        r->piece = NULL;
        hlptd_req_set_data(r, NULL, NULL);
        return;
    }
    if (r->piece && r->piece(r, data, n) != HLPT_OK) r->piece = NULL;
}

/* A streamed body is complete. */
static void body_done(hlptd_req *r) {
    r->state = ST_HANDLER;
    if (r->too_large) {
        reply_too_large(r);
        return;
    }
    r->done(r);
    /* A kept request may be its keeper's already: its state is not this thread's to read. */
    if (!r->kept && r->state == ST_HANDLER) {
        hlptd_error("%s %s: the body's done function gave no reply", r->method, r->path);
        hlptd_reply_err(r, HLPT_ERR_INTERNAL, NULL, "internal error: no reply");
    }
}

void hlptd_req_defer(hlptd_req *r, hlptd_work_fn work) {
    r->work = work;
    r->state = ST_DEFER;
}

/* Suspends the connection and queues r to the loop; called by the MHD thread after the handler
 * returned, so nothing on this thread touches r afterwards. */
static enum MHD_Result hand_off(hlptd_req *r) {
    hlptd_http *h = r->h;
    pthread_mutex_lock(&h->mu);
    if (h->closing) {
        pthread_mutex_unlock(&h->mu);
        hlptd_reply_http_err(r, 503, "server_error", "shutting_down", NULL, "hlptd is shutting down");
        return send_reply(r);
    }
    r->state = ST_QUEUED;
    r->counted = 1;
    atomic_fetch_add(&h->inflight, 1);
    MHD_suspend_connection(r->conn);
    if (h->qtail) h->qtail->next = r;
    else h->qhead = r;
    h->qtail = r;
    pthread_mutex_unlock(&h->mu);
    if (h->o.wake) h->o.wake(h->o.wake_ctx);
    return MHD_YES;
}

void hlptd_req_keep(hlptd_req *r) {
    hlptd_http *h = r->h;
    r->kept = 1;
    /* Kept by its handler, r was not handed off: it counts as in flight from here. */
    if (!r->counted) {
        r->counted = 1;
        atomic_fetch_add(&h->inflight, 1);
    }
    pthread_mutex_lock(&h->mu);
    r->held = 1;
    pthread_mutex_unlock(&h->mu);
}

void hlptd_req_finish(hlptd_req *r) {
    hlptd_http *h = r->h;
    if (r->state != ST_REPLIED) hlptd_reply_err(r, HLPT_ERR_INTERNAL, NULL, "internal error: finished without a reply");
    pthread_mutex_lock(&h->mu);
    int held = r->held;
    r->finished = 1;
    pthread_mutex_unlock(&h->mu);
    /* Held: the holder sends the reply as it lets go (let_go, run_deferred). */
    if (!held) MHD_resume_connection(r->conn);
}

/* The MHD thread lets go of a request its handler kept: it suspends the connection until the
 * keeper finishes, or sends the reply at once when the keeper has finished already. */
static enum MHD_Result let_go(hlptd_req *r) {
    hlptd_http *h = r->h;
    pthread_mutex_lock(&h->mu);
    int finished = r->finished;
    if (!finished) {
        r->held = 0;
        MHD_suspend_connection(r->conn);
    }
    pthread_mutex_unlock(&h->mu);
    return finished ? send_reply(r) : MHD_YES;
}

void hlptd_http_run_deferred(hlptd_http *h) {
    pthread_mutex_lock(&h->mu);
    hlptd_req *r = h->qhead;
    h->qhead = h->qtail = NULL;
    pthread_mutex_unlock(&h->mu);
    while (r) {
        hlptd_req *next = r->next;
        r->next = NULL;
        r->work(h->o.app, r);
        /* A kept request is its keeper's until hlptd_req_finish, unless that came already; any
         * other has its reply now. */
        int resume = 1;
        if (r->kept) {
            pthread_mutex_lock(&h->mu);
            resume = r->finished;
            r->held = 0;
            pthread_mutex_unlock(&h->mu);
        } else if (r->state != ST_REPLIED) {
            hlptd_reply_err(r, HLPT_ERR_INTERNAL, NULL, "internal error: no reply");
        }
        if (resume) MHD_resume_connection(r->conn);
        r = next;
    }
}

/* ---- MHD callbacks ------------------------------------------------------------------------------ */

static void body_append(hlptd_req *r, const char *data, size_t n) {
    if (r->too_large || r->body_err) return;
    if (r->body_n + n > r->h->o.max_body_bytes) {
        /* Keep reading (and dropping) the body so that the client, which may send it all before
         * reading anything, gets to see the 413. */
        r->too_large = 1;
        free(r->body);
        r->body = calloc(1, 1);
        r->body_n = 0;
        r->body_cap = 1;
        return;
    }
    if (r->body_n + n + 1 > r->body_cap) {
        size_t cap = r->body_cap;
        while (cap < r->body_n + n + 1) cap = cap < 4096 ? 4096 : 2 * cap;
        char *nb = realloc(r->body, cap);
        if (!nb) {
            /* Not the client's fault: a 500 saying so, not a 413. The rest of the body is dropped. */
            r->body_err = HLPT_ERR_NOMEM;
            free(r->body);
            r->body = calloc(1, 1);
            r->body_n = 0;
            r->body_cap = 1;
            return;
        }
        r->body = nb, r->body_cap = cap;
    }
    memcpy(r->body + r->body_n, data, n);
    r->body_n += n;
    r->body[r->body_n] = 0;
}

/* The largest body the disk that stores bodies can take; "unlimited" when unknown. A body is stored
 * at most once: a streamed one (an upload) as a blob written as it arrives, a buffered one as what
 * it carries (an imported adapter's weights become a blob; the bytes never go through the
 * database). A margin stays for the daemon's own records (the size of its reserve,
 * docs/faults.md, and as much again). */
static unsigned long long free_space(const hlptd_http *h) {
    struct statvfs sv;
    if (!h->o.space_dir || statvfs(h->o.space_dir, &sv) != 0) return ULLONG_MAX;
    unsigned long long avail = (unsigned long long)sv.f_bavail * sv.f_frsize, margin = 8ull << 20;
    return avail > margin ? avail - margin : 0;
}

/* libmicrohttpd 0.9.75 keeps each query argument in the connection's memory pool (32 kB) and, when
 * the pool runs out (about 470 arguments), neither answers nor closes: the client hangs until the
 * connection times out. The URI reaches this callback before MHD splits it, so a query of more than
 * MAX_QUERY_ARGS arguments is cut off here, in MHD's own buffer (writable: MHD writes NULs into it
 * next), and the request gets 414 in on_access. */
static char too_many_args_mark;

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
    char *q = strchr(uri, '?');
    if (!q) return NULL;
    size_t n = 1;
    for (const char *p = q; *p; p++) n += *p == '&';
    if (n <= MAX_QUERY_ARGS) return NULL;
    q[1] = 0;
    return &too_many_args_mark;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    hlptd_http *h = cls;
    hlptd_req *r = *con_cls;
    if (!r || r == (void *)&too_many_args_mark) {
        int cut = r != NULL;
        if (!(r = req_new(h, conn, url, method))) return MHD_NO;
        *con_cls = r;
        r->too_many_args = cut;
        const hlptd_route *route = find_route(r);
        r->streamed = route && (route->flags & HLPTD_ROUTE_STREAM_BODY);
        /* A client that waits for "100 Continue" can be told at once that its body is too big. */
        const char *cl = hlptd_req_header(r, "Content-Length"), *ex = hlptd_req_header(r, "Expect");
        unsigned long long announced = cl ? strtoull(cl, NULL, 10) : 0;
        if (announced > body_limit(r)) r->too_large = 1;
        else if (announced > free_space(h)) r->body_err = HLPT_ERR_NOSPACE;
        int waits = ex && strcasecmp(ex, "100-continue") == 0;
        if (r->streamed) {
            dispatch(r);
            if (r->state == ST_REPLIED && waits) return send_reply(r);
        } else if (waits && (r->too_large || r->body_err)) {
            dispatch(r);
            return send_reply(r);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (r->streamed) body_piece(r, upload, *upload_size);
        else body_append(r, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->state == ST_BODY) {
        if (r->streamed) body_done(r);
        else dispatch(r);
        if (r->kept) return let_go(r);
    }
    if (r->state == ST_DEFER) return hand_off(r);
    if (r->state == ST_REPLIED) return send_reply(r);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    hlptd_req *r = *con_cls;
    if (!r || r == (void *)&too_many_args_mark) return;
    if (r->counted) atomic_fetch_sub(&r->h->inflight, 1);
    req_free(r);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = 0;
    hlptd_debug("libmicrohttpd: %s", msg);
}

/* ---- start, keys, drain, stop -------------------------------------------------------------------- */

static int bind_listen(hlptd_http *h, const char *host, int port, int *family, char *why, size_t len) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &ai);
    if (rc) return hlpt_why(why, len, HLPT_ERR_IO, "listen %s:%d: %s", host, port, gai_strerror(rc));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, err = HLPT_OK;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
        err = hlpt_why(why, len, HLPT_ERR_IO, "listen %s:%d: %s", host, port, strerror(errno));
        goto out;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        err = hlpt_why(why, len, HLPT_ERR_IO, "getsockname: %s", strerror(errno));
        goto out;
    }
    h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    *family = ai->ai_family;
    h->listen_fd = fd;
    fd = -1;
out:
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    return err;
}

int hlptd_http_start(hlptd_http **out, const hlptd_http_opts *o, char *why, size_t len) {
    *out = NULL;
    if (!o->host || o->threads < 1 || !o->max_body_bytes || !o->routes)
        return hlpt_why(why, len, HLPT_ERR_INVAL, "http: host, threads, max_body_bytes and routes are required");
    hlptd_http *h = calloc(1, sizeof *h);
    if (!h) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    h->o = *o;
    h->o.host = NULL;
    h->o.space_dir = o->space_dir ? strdup(o->space_dir) : NULL;
    h->listen_fd = -1;
    atomic_init(&h->inflight, 0);
    pthread_mutex_init(&h->mu, NULL);
    int family = AF_INET, err;
    if ((err = bind_listen(h, o->host, o->port, &family, why, len))) goto fail;
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (family == AF_INET6) flags |= MHD_USE_IPv6;
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_access, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
                            MHD_OPTION_LISTEN_SOCKET, h->listen_fd,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o->threads, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
                            h, MHD_OPTION_URI_LOG_CALLBACK, on_uri, h, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300, MHD_OPTION_END);
    if (!h->d) {
        err = hlpt_why(why, len, HLPT_ERR_INTERNAL, "libmicrohttpd did not start on %s:%d", o->host, o->port);
        goto fail;
    }
    *out = h;
    return HLPT_OK;
fail:
    hlptd_http_stop(h);
    return err;
}

int hlptd_http_port(const hlptd_http *h) { return h->port; }

int hlptd_http_load_api_keys(hlptd_http *h, const char *path, char *why, size_t len) {
    FILE *f = fopen(path, "r");
    if (!f) return hlpt_why(why, len, HLPT_ERR_IO, "api key file %s: %s", path, strerror(errno));
    char **keys = NULL, *line = NULL;
    size_t n = 0, cap = 0, lineno = 0;
    ssize_t got;
    int err = HLPT_OK;
    /* getline reads a line whole, however long: a fixed buffer would split a long line into two
     * keys, and its tail alone would let a client in. */
    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        char *s = line, *e = line + got;
        if (memchr(line, 0, (size_t)got)) {
            err = hlpt_why(why, len, HLPT_ERR_INVAL, "api key file %s, line %zu: a NUL byte", path, lineno);
            goto out;
        }
        while (*s == ' ' || *s == '\t') s++;
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
        if (!*s || *s == '#') continue;
        char **nk = realloc(keys, (n + 1) * sizeof *nk);
        if (!nk || !(nk[n] = strdup(s))) {
            keys = nk ? nk : keys;
            err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
            goto out;
        }
        keys = nk;
        n++;
    }
    if (n == 0) {
        err = hlpt_why(why, len, HLPT_ERR_INVAL, "api key file %s holds no keys", path);
        goto out;
    }
    pthread_mutex_lock(&h->mu);
    char **old = h->keys;
    size_t oldn = h->nkeys;
    h->keys = keys;
    h->nkeys = n;
    pthread_mutex_unlock(&h->mu);
    keys = old;
    n = oldn;
out:
    fclose(f);
    free(line);
    for (size_t i = 0; i < n; i++) free(keys[i]);
    free(keys);
    return err;
}

int hlptd_http_drain_step(hlptd_http *h) {
    if (!h->quiesced && h->d) {
        /* Stop accepting; the listening socket is closed in hlptd_http_stop, after MHD stopped. */
        MHD_quiesce_daemon(h->d);
        h->quiesced = 1;
    }
    pthread_mutex_lock(&h->mu);
    h->closing = 1;
    pthread_mutex_unlock(&h->mu);
    hlptd_http_run_deferred(h);
    pthread_mutex_lock(&h->mu);
    for (hlptd_sse *s = h->streams; s; s = s->next) {
        pthread_mutex_lock(&s->mu);
        int finite = s->finite;
        pthread_mutex_unlock(&s->mu);
        if (!finite) hlptd_sse_close(s);
    }
    pthread_mutex_unlock(&h->mu);
    return atomic_load(&h->inflight);
}

void hlptd_http_stop(hlptd_http *h) {
    if (!h) return;
    if (h->d) {
        MHD_stop_daemon(h->d);
        /* MHD closes the listening socket itself unless it was quiesced, which hands it back. */
        if (!h->quiesced) h->listen_fd = -1;
    }
    if (h->listen_fd >= 0) close(h->listen_fd);
    for (size_t i = 0; i < h->nkeys; i++) free(h->keys[i]);
    free(h->keys);
    free((char *)h->o.space_dir);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
