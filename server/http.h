/*
 * http.h - hlptd's HTTP layer over libmicrohttpd: routing, bodies, API keys, JSON and error
 * replies, hand-off of requests to the loop thread, and server-sent event streams.
 *
 * Threads and ownership of one request (hlptd_req):
 *
 *   MHD thread   accumulates the body (413 past the limit, 507 past the free disk space, 500 when
 *                memory runs out), matches the route (404/405), checks the
 *                API key (401), then calls the route's handler. The handler either replies at once
 *                (hlptd_reply_*), or calls hlptd_req_defer(r, work) and returns (http.c then suspends
 *                the connection and queues r to the loop; wake callback = uv_async_send), or calls
 *                hlptd_req_keep(r) and hands r to a keeper on another thread (e.g. the inference
 *                thread), which replies and calls hlptd_req_finish(r) later; http.c then suspends the
 *                connection until it does.
 *                A route flagged HLPTD_ROUTE_STREAM_BODY (uploads) is not accumulated: its handler
 *                runs as soon as the headers are in (after the same checks; 413 and 507 from the
 *                announced Content-Length against max_upload_bytes and the free space) and takes
 *                the body piece by piece as it arrives (hlptd_req_read_body), on the same thread;
 *                memory stays flat whatever the body's size.
 *   loop thread  hlptd_http_run_deferred() calls work(app, r) for every queued request. If work
 *                replied, the connection is resumed and MHD sends the reply. A work function, too,
 *                may keep r for a keeper instead.
 *   keeper       replies and calls hlptd_req_finish(r), which resumes the connection from its own
 *                thread: no other thread takes part.
 *
 * So at every moment exactly one thread owns r: the handler's MHD thread, then perhaps the loop,
 * then perhaps a keeper, then MHD again. No request ever blocks an MHD thread.
 *
 * Event streams (`?stream=true`): a handler or work function calls hlptd_req_stream(r) and keeps
 * the returned hlptd_sse; the reply becomes `text/event-stream` and the owner pushes events with
 * hlptd_sse_send() from any thread until hlptd_sse_close(). The connection sleeps (suspended) while
 * there is nothing to send.
 *
 * Error replies have OpenAI's shape {"error":{"message","type","param","code"}}; one table in
 * http.c maps every hlpt_err status to an HTTP status, type and code.
 */
#ifndef HLPTD_HTTP_H
#define HLPTD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "multipart.h"

typedef struct hlptd_http hlptd_http;
typedef struct hlptd_req hlptd_req;
typedef struct hlptd_sse hlptd_sse;

/* Runs on an MHD thread; owns r until it returns. */
typedef void (*hlptd_handler_fn)(hlptd_req *r);
/* Runs on the loop thread with the application context given at start (hlptd's `hlptd *`). */
typedef void (*hlptd_work_fn)(void *app, hlptd_req *r);

enum {
    HLPTD_ROUTE_PUBLIC = 1,      /* no API key needed (health checks) */
    HLPTD_ROUTE_STREAM_BODY = 2, /* the body is not held: the handler reads it as it arrives */
};

/* One line of the route table. pattern: "/v1/files/{id}/content"; a `{name}` segment matches any
 * one non-empty segment and is read back with hlptd_req_param(r, "name"). */
typedef struct {
    const char *method; /* "GET", "POST", "DELETE", ... */
    const char *pattern;
    hlptd_handler_fn handler;
    unsigned flags; /* HLPTD_ROUTE_* */
} hlptd_route;

typedef struct {
    const char *host;          /* numeric address or name to bind; borrowed for the call */
    int port;                  /* 0 = any free port (hlptd_http_port tells which) */
    int threads;               /* MHD thread pool size */
    size_t max_body_bytes;     /* larger bodies get 413 */
    size_t max_upload_bytes;   /* the same for HLPTD_ROUTE_STREAM_BODY routes; 0 = max_body_bytes */
    const char *space_dir;     /* where bodies end up stored (copied; may be NULL): a body announced
                                  larger than its free space gets 507 before it is read */
    const hlptd_route *routes;  /* borrowed; must outlive the server */
    size_t nroutes;
    void *app;                 /* handed to work functions and hlptd_req_app */
    void (*wake)(void *ctx);   /* called from MHD threads after a request was queued */
    void *wake_ctx;
} hlptd_http_opts;

/* Binds and starts serving. *out owned: hlptd_http_stop. Errors: HLPT_ERR_IO (bind/listen failed,
 * why names the address), HLPT_ERR_INVAL, HLPT_ERR_NOMEM, HLPT_ERR_INTERNAL (MHD refused). */
int hlptd_http_start(hlptd_http **out, const hlptd_http_opts *o, char *why, size_t len);
/* Stops MHD and frees the server. Call after hlptd_http_drain_step() returned 0, so that no
 * connection is suspended. Loop thread. NULL is fine. */
void hlptd_http_stop(hlptd_http *h);
/* The bound TCP port. */
int hlptd_http_port(const hlptd_http *h);

/* Loads API keys from a file (borrows path): one key a line, `#` comments and blank lines skipped.
 * Replaces the current keys atomically (safe while serving: SIGHUP reload). A file with no keys is
 * an error (HLPT_ERR_INVAL), as it would lock every client out. With no keys loaded, every request
 * is accepted. */
int hlptd_http_load_api_keys(hlptd_http *h, const char *path, char *why, size_t len);

/* Loop thread: runs the work of every request queued so far, in arrival order. */
void hlptd_http_run_deferred(hlptd_http *h);

/* Loop thread, at shutdown, called repeatedly (e.g. from a timer): the first call stops accepting
 * connections; each call refuses new hand-offs with 503, runs queued work and ends every event
 * stream but the finite ones (hlptd_req_stream_finite), which end by themselves. Returns the number of requests still in flight (suspended or streaming); 0 means
 * hlptd_http_stop is safe. */
int hlptd_http_drain_step(hlptd_http *h);

/* ---- requests (the owning thread only) --------------------------------------------------------- */

const char *hlptd_req_path(const hlptd_req *r);
/* A `{name}` segment of the route's pattern, or NULL. Valid until the request ends. */
const char *hlptd_req_param(const hlptd_req *r, const char *name);
/* A decoded query argument, "" for `?flag` without value, NULL when absent. */
const char *hlptd_req_query(const hlptd_req *r, const char *name);
/* The i-th query argument's name (and decoded value through *value), in the order given; NULL
 * past the last. For arguments named by pattern, e.g. OpenAI's `metadata[key]=value`. */
const char *hlptd_req_query_at(const hlptd_req *r, size_t i, const char **value);
/* A request header (case-insensitive name), or NULL. */
const char *hlptd_req_header(const hlptd_req *r, const char *name);
/* The body, NUL-terminated (the NUL is not counted in *n). Never NULL; empty for a
 * HLPTD_ROUTE_STREAM_BODY route, whose body goes to hlptd_req_read_body's piece function instead. */
const char *hlptd_req_body(const hlptd_req *r, size_t *n);
/* The body parsed as JSON (owned by r). On a missing or malformed body, replies 400 (naming the
 * byte) and returns NULL: the handler then just returns. */
cJSON *hlptd_req_json(hlptd_req *r);
/* One field of a multipart/form-data body: data points into the body (valid until the request
 * ends), filename is NULL for plain fields. HLPT_ERR_NOENT when the field is absent,
 * HLPT_ERR_FORMAT (why says why) when the body is not well-formed multipart. */
int hlptd_req_form(hlptd_req *r, const char *name, const char **data, size_t *n, const char **filename, char *why,
                  size_t len);
/* The app pointer of hlptd_http_opts. */
void *hlptd_req_app(const hlptd_req *r);
/* Attaches handler data that travels with r to its work function; r frees it with free_fn (may
 * be NULL) when the request ends. Takes data. */
void hlptd_req_set_data(hlptd_req *r, void *data, void (*free_fn)(void *));
void *hlptd_req_data(const hlptd_req *r);

/* Runs on the MHD thread for each piece of a streamed body as it arrives, in order (data borrowed
 * for the call, n > 0). HLPT_OK asks for more; any other value drops the rest of the body unread
 * by the handler (the done function still runs). */
typedef int (*hlptd_piece_fn)(hlptd_req *r, const char *data, size_t n);
/* Called by the handler of a HLPTD_ROUTE_STREAM_BODY route, as its last action, instead of
 * replying: piece(r, ...) then gets the body as it arrives, and done(r) runs once it is complete,
 * and acts as a handler does (replies, defers or keeps). Such a handler, which runs before the
 * body, replies, defers or reads the body, but never keeps r. What the handler keeps for them goes in
 * hlptd_req_set_data; it is freed when the request ends, so a client that goes away mid-body (done
 * never runs) leaves nothing behind. Past max_upload_bytes (a body without Content-Length) the
 * handler data is freed at once, the rest of the body is dropped and the reply is 413; done does
 * not run. Called from the handler of any other route, whose body is complete, piece gets it in
 * one call and done runs at once. */
void hlptd_req_read_body(hlptd_req *r, hlptd_piece_fn piece, hlptd_handler_fn done);

/* Hands r to the loop thread: work(app, r) runs there. Call from a handler as its last action. */
void hlptd_req_defer(hlptd_req *r, hlptd_work_fn work);
/* Called by a handler or a work function that hands r to another thread (a keeper) instead of
 * replying, before the hand-over: r then stays suspended until the keeper replies and calls
 * hlptd_req_finish. The caller touches r no more, and returns. The owning thread (MHD or loop). */
void hlptd_req_keep(hlptd_req *r);
/* Completes a kept request (it has a reply by now, perhaps an event stream): the connection is
 * resumed, by this call or, when the thread that kept r has not returned yet, as it returns. Any
 * thread, once, after which r is not the caller's any more. */
void hlptd_req_finish(hlptd_req *r);

/* ---- replies (the owning thread; the last one set wins) --------------------------------------- */

/* Takes body (may be NULL = "{}"). */
void hlptd_reply_json(hlptd_req *r, int status, cJSON *body);
/* Takes buf (malloc'ed; NULL with n 0 is an empty body). */
void hlptd_reply_bytes(hlptd_req *r, int status, const char *content_type, void *buf, size_t n);
/* The body is the first `size` bytes of an open file (a blob), sent from the file as the client
 * reads, never held in memory whole. Takes fd (closed once sent, or when another reply replaces
 * this one). */
void hlptd_reply_file(hlptd_req *r, int status, const char *content_type, int fd, uint64_t size);
/* Adds a header to the reply, whichever reply r ends with (e.g. ETag, Cache-Control); copies name
 * and value. HLPT_ERR_NOMEM. */
int hlptd_reply_header(hlptd_req *r, const char *name, const char *value);
/* An error reply for an hlpt status via the status table; param names the offending field (or
 * NULL); the message is printf-formatted. */
void hlptd_reply_err(hlptd_req *r, int err, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An error reply with explicit HTTP status, type and code (for 401, 405, 413, 503, ...). */
void hlptd_reply_http_err(hlptd_req *r, int status, const char *type, const char *code, const char *param,
                         const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The HTTP status, error type and code an hlpt status maps to. */
int hlptd_http_status_of(int err, const char **type, const char **code);

/* ---- event streams ----------------------------------------------------------------------------- */

/* Makes r's reply an event stream (200, text/event-stream). Returns a reference owned by the
 * caller (hlptd_sse_unref when done sending), or NULL when out of memory (r then has a 500). */
hlptd_sse *hlptd_req_stream(hlptd_req *r);
/* The same for a stream that ends by itself (a generation's): the shutdown drain lets it run to
 * its end instead of closing it, as it closes open-ended streams (a job's events). Finite from
 * the start, so a drain that runs meanwhile, on another thread, cannot end it. */
hlptd_sse *hlptd_req_stream_finite(hlptd_req *r);
/* Queues one event ("event: <event>\ndata: <data>\n\n"; event may be NULL; data's newlines become
 * separate data lines). Any thread. HLPT_ERR_CANCELLED once the client is gone or the stream was
 * closed; HLPT_ERR_NOMEM. */
int hlptd_sse_send(hlptd_sse *s, const char *event, const char *data);
/* Ends the stream after what is queued has been sent. Any thread; idempotent. */
void hlptd_sse_close(hlptd_sse *s);
void hlptd_sse_unref(hlptd_sse *s);

#endif
