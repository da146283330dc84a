/* The HTTP layer with a stand-in loop thread: routing and params, JSON bodies, the hand-off to
 * the loop (work runs on the loop thread, the reply comes back on the right connection), requests
 * a handler keeps for a thread of its own (answered without the loop), event streams pushed from
 * the loop, and drain refusing new hand-offs. Talks HTTP/1.0 over a socket. */
#include "http.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "../check_main.h"
#include "hlpt/err.h"

/* ---- a stand-in for the loop thread ------------------------------------------------------------ */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int woken, quit;
static hlptd_http *server;
static pthread_t loop_thread;
static hlptd_sse *stream; /* handed over by stream_work */
static atomic_int wrong_thread;
static atomic_int wakes; /* the loop was woken */

static void wake(void *ctx) {
    atomic_fetch_add(&wakes, 1);
    pthread_mutex_lock(&mu);
    woken = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static void *loop_main(void *arg) {
    pthread_mutex_lock(&mu);
    while (!quit) {
        while (!woken && !quit) pthread_cond_wait(&cv, &mu);
        woken = 0;
        pthread_mutex_unlock(&mu);
        hlptd_http_run_deferred(server);
        pthread_mutex_lock(&mu);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

/* ---- routes ---------------------------------------------------------------------------------------- */

static void echo(hlptd_req *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", hlptd_req_param(r, "id"));
    const char *q = hlptd_req_query(r, "q");
    cJSON_AddStringToObject(o, "q", q ? q : "(none)");
    hlptd_reply_json(r, 200, o);
}

static void post_json(hlptd_req *r) {
    cJSON *j = hlptd_req_json(r);
    if (!j) return;
    hlptd_reply_json(r, 201, cJSON_Duplicate(j, 1));
}

static void deferred_work(void *app, hlptd_req *r) {
    if (!pthread_equal(pthread_self(), loop_thread)) atomic_fetch_add(&wrong_thread, 1);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "app", app);
    cJSON_AddStringToObject(o, "n", hlptd_req_param(r, "n"));
    hlptd_reply_json(r, 200, o);
}

static void deferred(hlptd_req *r) { hlptd_req_defer(r, deferred_work); }

/* GET /stream: an open-ended stream (a job's events); ?finite: one that ends by itself (a
 * generation's). */
static void stream_work(void *app, hlptd_req *r) {
    hlptd_sse *s = hlptd_req_query(r, "finite") ? hlptd_req_stream_finite(r) : hlptd_req_stream(r);
    hlptd_sse_send(s, "hello", "first");
    __atomic_store_n(&stream, s, __ATOMIC_RELEASE);
}

static void streaming(hlptd_req *r) { hlptd_req_defer(r, stream_work); }

/* A streamed upload: counts and checksums its pieces as they come; ?reject answers before the
 * body, ?defer answers from the loop after it. */
typedef struct {
    size_t n, pieces;
    unsigned sum;
} upload_state;
static atomic_int uploads_freed, uploads_done;

static void upload_state_free(void *p) {
    free(p);
    atomic_fetch_add(&uploads_freed, 1);
}

static int upload_piece(hlptd_req *r, const char *data, size_t n) {
    upload_state *u = hlptd_req_data(r);
    u->n += n;
    u->pieces++;
    for (size_t i = 0; i < n; i++) u->sum = u->sum * 31 + (unsigned char)data[i];
    return HLPT_OK;
}

static void upload_reply(hlptd_req *r) {
    upload_state *u = hlptd_req_data(r);
    size_t body_n;
    hlptd_req_body(r, &body_n);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", (double)u->n);
    cJSON_AddNumberToObject(o, "pieces", (double)u->pieces);
    cJSON_AddNumberToObject(o, "sum", (double)u->sum);
    cJSON_AddNumberToObject(o, "held", (double)body_n);
    hlptd_reply_json(r, 200, o);
}

static void upload_work(void *app, hlptd_req *r) { upload_reply(r); }

static void upload_done(hlptd_req *r) {
    atomic_fetch_add(&uploads_done, 1);
    if (hlptd_req_query(r, "defer")) hlptd_req_defer(r, upload_work);
    else upload_reply(r);
}

static void upload_begin(hlptd_req *r) {
    if (hlptd_req_query(r, "reject")) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "reject", "refused before the body");
        return;
    }
    upload_state *u = calloc(1, sizeof *u);
    hlptd_req_set_data(r, u, upload_state_free);
    hlptd_req_read_body(r, upload_piece, upload_done);
}

/* A keeper thread: answers a request its handler kept, after a while, as the inference thread does
 * (a reply, or an event stream of two events). */
static void *keeper_main(void *arg) {
    hlptd_req *r = arg;
    const char *how = hlptd_req_param(r, "how");
    usleep(20000);
    if (!strcmp(how, "stream")) {
        hlptd_sse *s = hlptd_req_stream(r);
        hlptd_req_finish(r);
        hlptd_sse_send(s, NULL, "one");
        usleep(20000);
        hlptd_sse_send(s, NULL, "two");
        hlptd_sse_close(s);
        hlptd_sse_unref(s);
        return NULL;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kept", how);
    hlptd_reply_json(r, 200, o);
    hlptd_req_finish(r);
    return NULL;
}

/* GET /kept/now: finished before the handler returns; /kept/later and /kept/stream: by a keeper
 * thread after it returned. */
static void kept(hlptd_req *r) {
    hlptd_req_keep(r);
    if (!strcmp(hlptd_req_param(r, "how"), "now")) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kept", "now");
        hlptd_reply_json(r, 200, o);
        hlptd_req_finish(r);
        return;
    }
    pthread_t t;
    pthread_create(&t, NULL, keeper_main, r);
    pthread_detach(t);
}

static const hlptd_route routes[] = {
    {"GET", "/echo/{id}", echo, 0},
    {"POST", "/json", post_json, 0},
    {"GET", "/deferred/{n}", deferred, 0},
    {"GET", "/stream", streaming, 0},
    {"POST", "/upload", upload_begin, HLPTD_ROUTE_STREAM_BODY},
    {"POST", "/upload-buffered", upload_begin, 0},
    {"GET", "/kept/{how}", kept, 0},
};

#define UPLOAD_LIMIT (1 << 20)

/* The server with o's limits and space_dir (the rest as every test has them). */
static void start_with(hlptd_http_opts o) {
    char why[256];
    o.host = "127.0.0.1";
    o.threads = 2;
    o.routes = routes;
    o.nroutes = sizeof routes / sizeof routes[0];
    o.app = "the-app";
    o.wake = wake;
    ck_assert_int_eq(hlptd_http_start(&server, &o, why, sizeof why), HLPT_OK);
    quit = 0;
    pthread_create(&loop_thread, NULL, loop_main, NULL);
}

static void start(void) { start_with((hlptd_http_opts){.max_body_bytes = 1024, .max_upload_bytes = UPLOAD_LIMIT}); }

static void stop(void) {
    pthread_mutex_lock(&mu);
    quit = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(loop_thread, NULL);
    for (int i = 0; i < 200 && hlptd_http_drain_step(server) > 0; i++) usleep(10000);
    hlptd_http_stop(server);
    server = NULL;
}

/* ---- a tiny HTTP/1.0 client -------------------------------------------------------------------------- */

static int connect_server(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)hlptd_http_port(server))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void send_all(int fd, const char *s, size_t n) {
    while (n) {
        ssize_t k = write(fd, s, n);
        ck_assert_int_gt(k, 0);
        s += k, n -= (size_t)k;
    }
}

/* Reads until `until` appears (or EOF when NULL) into buf. */
static size_t read_until(int fd, char *buf, size_t cap, const char *until) {
    size_t n = 0;
    buf[0] = 0;
    while (n + 1 < cap && !(until && strstr(buf, until))) {
        ssize_t k = read(fd, buf + n, cap - 1 - n);
        if (k <= 0) break;
        n += (size_t)k;
        buf[n] = 0;
    }
    return n;
}

/* One request; returns the status, the body in body[]. */
static int request(const char *method, const char *path, const char *body, char *out, size_t cap) {
    int fd = connect_server();
    char head[512];
    size_t bl = body ? strlen(body) : 0;
    snprintf(head, sizeof head, "%s %s HTTP/1.0\r\nContent-Length: %zu\r\n\r\n", method, path, bl);
    send_all(fd, head, strlen(head));
    if (bl) send_all(fd, body, bl);
    char *buf = malloc(1 << 16); /* clients run on several threads */
    read_until(fd, buf, 1 << 16, NULL);
    close(fd);
    int status = 0;
    sscanf(buf, "HTTP/1.%*d %d", &status);
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(out, cap, "%s", b ? b + 4 : "");
    free(buf);
    return status;
}

/* ---- tests ------------------------------------------------------------------------------------------- */

START_TEST(test_routes_and_errors) {
    start();
    char body[4096];
    ck_assert_int_eq(request("GET", "/echo/abc?q=a%20b", NULL, body, sizeof body), 200);
    ck_assert_str_eq(body, "{\"id\":\"abc\",\"q\":\"a b\"}");
    ck_assert_int_eq(request("GET", "/echo/", NULL, body, sizeof body), 404);
    ck_assert_ptr_nonnull(strstr(body, "\"code\":\"unknown_url\""));
    ck_assert_int_eq(request("DELETE", "/echo/x", NULL, body, sizeof body), 405);
    ck_assert_int_eq(request("POST", "/json", "{\"a\":[1,2]}", body, sizeof body), 201);
    ck_assert_str_eq(body, "{\"a\":[1,2]}");
    ck_assert_int_eq(request("POST", "/json", "{\"a\":", body, sizeof body), 400);
    ck_assert_ptr_nonnull(strstr(body, "invalid JSON at byte 6"));
    ck_assert_int_eq(request("POST", "/json", "", body, sizeof body), 400);
    ck_assert_ptr_nonnull(strstr(body, "empty"));
    ck_assert_int_eq(request("POST", "/json", "[1]", body, sizeof body), 400);
    char big[2048];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    ck_assert_int_eq(request("POST", "/json", big, body, sizeof body), 413);
    ck_assert_ptr_nonnull(strstr(body, "1024"));
    stop();
}
END_TEST

START_TEST(test_status_table) {
    const char *type, *code;
    ck_assert_int_eq(hlptd_http_status_of(HLPT_ERR_NOENT, &type, &code), 404);
    ck_assert_str_eq(code, "not_found");
    ck_assert_int_eq(hlptd_http_status_of(HLPT_ERR_STATE, &type, &code), 409);
    ck_assert_int_eq(hlptd_http_status_of(HLPT_ERR_MISMATCH, &type, &code), 422);
    ck_assert_int_eq(hlptd_http_status_of(HLPT_ERR_BUSY, &type, &code), 429);
    ck_assert_int_eq(hlptd_http_status_of(HLPT_ERR_DB, &type, &code), 500);
    ck_assert_str_eq(type, "server_error");
    ck_assert_int_eq(hlptd_http_status_of(-999, &type, &code), 500);
    for (int e = 1; e < HLPT_ERR_COUNT__; e++) ck_assert_int_ge(hlptd_http_status_of(-e, NULL, NULL), 400);
}
END_TEST

/* Several clients at once; every reply is its own request's and every work ran on the loop. */
static void *client(void *arg) {
    long k = (long)arg;
    for (int i = 0; i < 20; i++) {
        char path[64], body[256], want[128];
        snprintf(path, sizeof path, "/deferred/%ld-%d", k, i);
        snprintf(want, sizeof want, "{\"app\":\"the-app\",\"n\":\"%ld-%d\"}", k, i);
        if (request("GET", path, NULL, body, sizeof body) != 200 || strcmp(body, want) != 0) return (void *)1;
    }
    return NULL;
}

START_TEST(test_hand_off) {
    start();
    atomic_store(&wrong_thread, 0);
    pthread_t t[6];
    for (long k = 0; k < 6; k++) pthread_create(&t[k], NULL, client, (void *)k);
    for (int k = 0; k < 6; k++) {
        void *ret;
        pthread_join(t[k], &ret);
        ck_assert_ptr_null(ret);
    }
    ck_assert_int_eq(atomic_load(&wrong_thread), 0);
    stop();
}
END_TEST

/* Kept requests are answered on their connections by the keeper, whenever it finishes, with no
 * work for the loop: it is never woken. */
static void *kept_client(void *arg) {
    long k = (long)arg;
    for (int i = 0; i < 10; i++) {
        const char *how = (i + k) % 2 ? "now" : "later";
        char path[64], body[256], want[128];
        snprintf(path, sizeof path, "/kept/%s", how);
        snprintf(want, sizeof want, "{\"kept\":\"%s\"}", how);
        if (request("GET", path, NULL, body, sizeof body) != 200 || strcmp(body, want) != 0) return (void *)1;
    }
    return NULL;
}

START_TEST(test_kept_by_handler) {
    start();
    atomic_store(&wakes, 0);
    pthread_t t[4];
    for (long k = 0; k < 4; k++) pthread_create(&t[k], NULL, kept_client, (void *)k);
    for (int k = 0; k < 4; k++) {
        void *ret;
        pthread_join(t[k], &ret);
        ck_assert_ptr_null(ret);
    }
    char body[4096];
    ck_assert_int_eq(request("GET", "/kept/stream", NULL, body, sizeof body), 200);
    ck_assert_str_eq(body, "data: one\n\ndata: two\n\n");
    ck_assert_int_eq(atomic_load(&wakes), 0);
    stop();
}
END_TEST

START_TEST(test_event_stream) {
    start();
    __atomic_store_n(&stream, NULL, __ATOMIC_RELEASE);
    int fd = connect_server();
    const char *req = "GET /stream HTTP/1.0\r\n\r\n";
    send_all(fd, req, strlen(req));
    static char buf[8192];
    read_until(fd, buf, sizeof buf, "data: first\n\n");
    ck_assert_ptr_nonnull(strstr(buf, "200"));
    ck_assert_ptr_nonnull(strstr(buf, "text/event-stream"));
    ck_assert_ptr_nonnull(strstr(buf, "event: hello\ndata: first\n\n"));
    hlptd_sse *s;
    while (!(s = __atomic_load_n(&stream, __ATOMIC_ACQUIRE))) usleep(1000);
    /* The connection is idle (suspended) now; a push from another thread wakes it. */
    usleep(50000);
    ck_assert_int_eq(hlptd_sse_send(s, NULL, "line one\nline two"), HLPT_OK);
    read_until(fd, buf, sizeof buf, "line two\n\n");
    ck_assert_str_eq(buf, "data: line one\ndata: line two\n\n");
    ck_assert_int_eq(hlptd_sse_send(s, "metrics", "{\"step\":1}"), HLPT_OK);
    hlptd_sse_close(s);
    read_until(fd, buf, sizeof buf, NULL);
    ck_assert_str_eq(buf, "event: metrics\ndata: {\"step\":1}\n\n");
    close(fd);
    ck_assert_int_eq(hlptd_sse_send(s, NULL, "late"), HLPT_ERR_CANCELLED);
    hlptd_sse_unref(s);
    stop();
}
END_TEST

/* Drain ends open streams; afterwards hand-offs are refused with 503 and nothing stays in flight. */
START_TEST(test_drain) {
    start();
    __atomic_store_n(&stream, NULL, __ATOMIC_RELEASE);
    int fd = connect_server();
    const char *req = "GET /stream HTTP/1.0\r\n\r\n";
    send_all(fd, req, strlen(req));
    static char buf[8192];
    read_until(fd, buf, sizeof buf, "data: first\n\n");
    hlptd_sse *s;
    while (!(s = __atomic_load_n(&stream, __ATOMIC_ACQUIRE))) usleep(1000);
    int left = hlptd_http_drain_step(server);
    for (int i = 0; i < 200 && left > 0; i++) usleep(10000), left = hlptd_http_drain_step(server);
    ck_assert_int_eq(left, 0);
    read_until(fd, buf, sizeof buf, NULL); /* the stream ended: EOF */
    close(fd);
    ck_assert_int_eq(hlptd_sse_send(s, NULL, "x"), HLPT_ERR_CANCELLED);
    hlptd_sse_unref(s);
    stop();
}
END_TEST

/* A finite stream (a generation's) is not ended by the drain: it runs to its own close. */
START_TEST(test_drain_lets_finite_streams_finish) {
    start();
    __atomic_store_n(&stream, NULL, __ATOMIC_RELEASE);
    int fd = connect_server();
    const char *req = "GET /stream?finite HTTP/1.0\r\n\r\n";
    send_all(fd, req, strlen(req));
    static char buf[8192];
    read_until(fd, buf, sizeof buf, "data: first\n\n");
    hlptd_sse *s;
    while (!(s = __atomic_load_n(&stream, __ATOMIC_ACQUIRE))) usleep(1000);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_gt(hlptd_http_drain_step(server), 0);
        usleep(10000);
    }
    ck_assert_int_eq(hlptd_sse_send(s, NULL, "last words"), HLPT_OK);
    ck_assert_int_eq(hlptd_sse_send(s, NULL, "[DONE]"), HLPT_OK);
    hlptd_sse_close(s);
    read_until(fd, buf, sizeof buf, NULL);
    ck_assert_str_eq(buf, "data: last words\n\ndata: [DONE]\n\n");
    int left = hlptd_http_drain_step(server);
    for (int i = 0; i < 200 && left > 0; i++) usleep(10000), left = hlptd_http_drain_step(server);
    ck_assert_int_eq(left, 0);
    close(fd);
    hlptd_sse_unref(s);
    stop();
}
END_TEST

/* Multipart names and filenames with a NUL byte are refused, not read short. */
START_TEST(test_multipart_nul) {
    static const char ct[] = "multipart/form-data; boundary=b";
    static const char good[] = "--b\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\ndemo\r\n--b--\r\n";
    static const char bad_name[] = "--b\r\nContent-Disposition: form-data; name=\"na\0me\"\r\n\r\ndemo\r\n--b--\r\n";
    static const char bad_file[] =
        "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\0.jsonl\"\r\n\r\nx\r\n--b--\r\n";
    hlptd_form_part *parts;
    size_t n;
    char why[256];
    ck_assert_int_eq(hlptd_multipart_parse(ct, good, sizeof good - 1, &parts, &n, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(parts[0].name, "name");
    ck_assert_int_eq(parts[0].n, 4);
    hlptd_form_parts_free(parts, n);
    ck_assert_int_eq(hlptd_multipart_parse(ct, bad_name, sizeof bad_name - 1, &parts, &n, why, sizeof why),
                     HLPT_ERR_FORMAT);
    ck_assert_ptr_null(parts);
    ck_assert_ptr_nonnull(strstr(why, "NUL"));
    ck_assert_int_eq(hlptd_multipart_parse(ct, bad_file, sizeof bad_file - 1, &parts, &n, why, sizeof why),
                     HLPT_ERR_FORMAT);
}
END_TEST

/* An API key longer than any line buffer is one key: its tail is not a key of its own. */
START_TEST(test_api_key_long_line) {
    start();
    char path[] = "/tmp/hlpt-keys-XXXXXX";
    int kfd = mkstemp(path);
    ck_assert_int_ge(kfd, 0);
    static char key[3001];
    memset(key, 'k', 3000);
    memcpy(key + 2990, "0123456789", 10);
    FILE *f = fdopen(kfd, "w");
    fprintf(f, "# keys\n%s\n", key);
    fclose(f);
    char why[256];
    ck_assert_int_eq(hlptd_http_load_api_keys(server, path, why, sizeof why), HLPT_OK);
    unlink(path);
    static char head[4096], buf[8192];
    const char *given[] = {key + 3000 - 1023, key + 2990, key};
    int want[] = {401, 401, 200};
    for (int i = 0; i < 3; i++) {
        int fd = connect_server();
        snprintf(head, sizeof head, "GET /echo/1 HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n", given[i]);
        send_all(fd, head, strlen(head));
        read_until(fd, buf, sizeof buf, NULL);
        close(fd);
        int status = 0;
        sscanf(buf, "HTTP/1.%*d %d", &status);
        ck_assert_int_eq(status, want[i]);
    }
    stop();
}
END_TEST

/* A query of more arguments than the HTTP layer takes gets 414 at once (libmicrohttpd alone would
 * run out of its connection memory and leave the client hanging). */
START_TEST(test_many_query_arguments) {
    start();
    static char req[65536], out[8192];
    size_t n = (size_t)snprintf(req, sizeof req, "GET /echo/1?q=x");
    for (int i = 0; i < 2000; i++) n += (size_t)snprintf(req + n, sizeof req - n, "&a%d=%d", i, i);
    n += (size_t)snprintf(req + n, sizeof req - n, " HTTP/1.0\r\n\r\n");
    int fd = connect_server();
    send_all(fd, req, n);
    read_until(fd, out, sizeof out, NULL);
    close(fd);
    int status = 0;
    sscanf(out, "HTTP/1.%*d %d", &status);
    ck_assert_int_eq(status, 414);
    ck_assert_ptr_nonnull(strstr(out, "too_many_query_arguments"));
    ck_assert_int_eq(request("GET", "/echo/1?q=fine", NULL, out, sizeof out), 200);
    stop();
}
END_TEST

/* ---- streamed bodies ------------------------------------------------------------------------------- */

static unsigned checksum(const char *p, size_t n) {
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++) sum = sum * 31 + (unsigned char)p[i];
    return sum;
}

static char *pattern(size_t n) {
    char *p = malloc(n);
    for (size_t i = 0; i < n; i++) p[i] = (char)(i * 7 + i / 251);
    return p;
}

static int status_of(const char *reply) {
    int status = 0;
    sscanf(reply, "HTTP/1.%*d %d", &status);
    return status;
}

/* Sends body in chunked transfer coding, pieces of k bytes, and the last chunk when end is set. */
static void send_chunked(int fd, const char *body, size_t n, size_t k, int end) {
    char line[32];
    for (size_t at = 0; at < n; at += k) {
        size_t m = n - at < k ? n - at : k;
        snprintf(line, sizeof line, "%zx\r\n", m);
        send_all(fd, line, strlen(line));
        send_all(fd, body + at, m);
        send_all(fd, "\r\n", 2);
    }
    if (end) send_all(fd, "0\r\n\r\n", 5);
}

/* The body reaches the handler piece by piece, none of it held, with Content-Length or chunked,
 * past max_body_bytes (1 kB here) and up to max_upload_bytes. */
START_TEST(test_streamed_body) {
    start();
    size_t n = 300000;
    char *body = pattern(n), head[256];
    static char out[8192];
    int fd = connect_server();
    snprintf(head, sizeof head, "POST /upload HTTP/1.0\r\nContent-Length: %zu\r\n\r\n", n);
    send_all(fd, head, strlen(head));
    send_all(fd, body, n);
    read_until(fd, out, sizeof out, NULL);
    close(fd);
    ck_assert_int_eq(status_of(out), 200);
    cJSON *j = cJSON_Parse(strstr(out, "\r\n\r\n") + 4);
    ck_assert_int_eq((int)cJSON_GetObjectItem(j, "n")->valuedouble, (int)n);
    ck_assert_uint_eq((unsigned)cJSON_GetObjectItem(j, "sum")->valuedouble, checksum(body, n));
    ck_assert_int_gt((int)cJSON_GetObjectItem(j, "pieces")->valuedouble, 1);
    ck_assert_int_eq((int)cJSON_GetObjectItem(j, "held")->valuedouble, 0);
    cJSON_Delete(j);

    /* Chunked, answered from the loop. */
    fd = connect_server();
    const char *h11 = "POST /upload?defer=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    send_all(fd, h11, strlen(h11));
    send_chunked(fd, body, n, 7000, 1);
    read_until(fd, out, sizeof out, NULL);
    close(fd);
    ck_assert_int_eq(status_of(out), 200);
    j = cJSON_Parse(strstr(out, "\r\n\r\n") + 4);
    ck_assert_int_eq((int)cJSON_GetObjectItem(j, "n")->valuedouble, (int)n);
    ck_assert_uint_eq((unsigned)cJSON_GetObjectItem(j, "sum")->valuedouble, checksum(body, n));
    cJSON_Delete(j);

    /* The same handler on a buffered route gets the whole body in one piece; the limit there is
     * max_body_bytes. */
    char small[600];
    memset(small, 'a', sizeof small - 1);
    small[sizeof small - 1] = 0;
    ck_assert_int_eq(request("POST", "/upload-buffered", small, out, sizeof out), 200);
    ck_assert_ptr_nonnull(strstr(out, "\"pieces\":1,"));
    ck_assert_ptr_nonnull(strstr(out, "\"held\":599"));
    ck_assert_int_eq(request("POST", "/upload-buffered", "", out, sizeof out), 200);
    ck_assert_ptr_nonnull(strstr(out, "\"n\":0,\"pieces\":0"));
    free(body);
    stop();
}
END_TEST

/* Past max_upload_bytes: 413 before the body when it is announced (at once to a client that waits
 * for 100 Continue), else as soon as it is crossed, the handler's data freed then and the rest
 * dropped. */
START_TEST(test_streamed_limits) {
    start();
    static char out[8192];
    char head[256];
    int fd = connect_server();
    snprintf(head, sizeof head, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n",
             UPLOAD_LIMIT + 1);
    send_all(fd, head, strlen(head));
    read_until(fd, out, sizeof out, "}}");
    close(fd);
    ck_assert_int_eq(status_of(out), 413);
    ck_assert_ptr_nonnull(strstr(out, "larger than the limit of 1048576 bytes (--max-upload-bytes)"));
    ck_assert_int_eq(atomic_load(&uploads_freed), 0); /* the handler never ran */

    size_t n = UPLOAD_LIMIT + 100000;
    char *body = pattern(n);
    fd = connect_server();
    const char *h11 = "POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    send_all(fd, h11, strlen(h11));
    send_chunked(fd, body, n, 50000, 0);
    for (int i = 0; i < 500 && atomic_load(&uploads_freed) == 0; i++) usleep(10000);
    ck_assert_int_eq(atomic_load(&uploads_freed), 1); /* before the body's end */
    send_all(fd, "0\r\n\r\n", 5);
    read_until(fd, out, sizeof out, NULL);
    close(fd);
    ck_assert_int_eq(status_of(out), 413);
    ck_assert_int_eq(atomic_load(&uploads_freed), 1);
    ck_assert_int_eq(atomic_load(&uploads_done), 0);
    /* Exactly the limit is fine. */
    fd = connect_server();
    send_all(fd, h11, strlen(h11));
    send_chunked(fd, body, UPLOAD_LIMIT, 65536, 1);
    read_until(fd, out, sizeof out, NULL);
    close(fd);
    ck_assert_int_eq(status_of(out), 200);
    /* A buffered route keeps its own, smaller limit. */
    memset(body, 'x', 2000);
    body[2000] = 0;
    ck_assert_int_eq(request("POST", "/json", body, out, sizeof out), 413);
    ck_assert_ptr_nonnull(strstr(out, "(--max-body-bytes)"));
    free(body);
    stop();
}
END_TEST

/* A client that goes away mid-body: the handler's data is freed, done never runs. An answer given
 * before the body comes after it, and done does not run either. */
START_TEST(test_streamed_abort_and_early_reply) {
    start();
    int fd = connect_server();
    const char *head = "POST /upload HTTP/1.0\r\nContent-Length: 500000\r\n\r\n";
    send_all(fd, head, strlen(head));
    char *body = pattern(500000);
    send_all(fd, body, 200000);
    for (int i = 0; i < 100 && atomic_load(&uploads_done) == 0 && atomic_load(&uploads_freed) == 0; i++) usleep(2000);
    ck_assert_int_eq(atomic_load(&uploads_freed), 0);
    close(fd);
    for (int i = 0; i < 500 && atomic_load(&uploads_freed) == 0; i++) usleep(10000);
    ck_assert_int_eq(atomic_load(&uploads_freed), 1);
    ck_assert_int_eq(atomic_load(&uploads_done), 0);

    static char out[8192];
    fd = connect_server();
    head = "POST /upload?reject=1 HTTP/1.0\r\nContent-Length: 500000\r\n\r\n";
    send_all(fd, head, strlen(head));
    send_all(fd, body, 500000);
    read_until(fd, out, sizeof out, NULL);
    close(fd);
    ck_assert_int_eq(status_of(out), 400);
    ck_assert_ptr_nonnull(strstr(out, "refused before the body"));
    ck_assert_int_eq(atomic_load(&uploads_done), 0);
    free(body);
    stop();
}
END_TEST

/* The first status line a client waiting for 100 Continue gets after announcing a body of n bytes
 * to path. */
static int announce(const char *path, unsigned long long n) {
    char head[256], out[4096];
    int fd = connect_server();
    snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %llu\r\nExpect: 100-continue\r\n\r\n",
             path, n);
    send_all(fd, head, strlen(head));
    read_until(fd, out, sizeof out, "\r\n\r\n");
    close(fd);
    return status_of(out);
}

/* A body announced larger than the free space where bodies are stored gets 507 before it is read.
 * A buffered body counts once, as a streamed one does (no body is stored twice), so one announced at
 * two thirds of the free space is read. */
START_TEST(test_free_space_counts_a_body_once) {
    char dir[] = "/tmp/hlpt-http-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    struct statvfs sv;
    ck_assert_int_eq(statvfs(dir, &sv), 0);
    unsigned long long avail = (unsigned long long)sv.f_bavail * sv.f_frsize, margin = 8ull << 20;
    if (avail < margin + (64ull << 20)) {
        rmdir(dir);
        return; /* too little room to tell the two apart */
    }
    start_with((hlptd_http_opts){.max_body_bytes = (size_t)1 << 60, .max_upload_bytes = (size_t)1 << 60,
                                 .space_dir = dir});
    unsigned long long room = avail - margin;
    ck_assert_int_eq(announce("/json", room / 3 * 2), 100);
    ck_assert_int_eq(announce("/upload", room / 3 * 2), 100);
    ck_assert_int_eq(announce("/json", avail + avail / 4), 507);
    ck_assert_int_eq(announce("/upload", avail + avail / 4), 507);
    stop();
    rmdir(dir);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("http");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_routes_and_errors);
    tcase_add_test(tc, test_status_table);
    tcase_add_test(tc, test_hand_off);
    tcase_add_test(tc, test_kept_by_handler);
    tcase_add_test(tc, test_event_stream);
    tcase_add_test(tc, test_drain);
    tcase_add_test(tc, test_drain_lets_finite_streams_finish);
    tcase_add_test(tc, test_multipart_nul);
    tcase_add_test(tc, test_api_key_long_line);
    tcase_add_test(tc, test_many_query_arguments);
    tcase_add_test(tc, test_streamed_body);
    tcase_add_test(tc, test_streamed_limits);
    tcase_add_test(tc, test_streamed_abort_and_early_reply);
    tcase_add_test(tc, test_free_space_counts_a_body_once);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
