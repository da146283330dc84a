/*
 * client.h - hlpt's HTTP client of hlptd (libcurl): JSON requests, multipart uploads, server-sent
 * event streams, and printing the daemon's errors as the daemon words them.
 *
 * The daemon's address comes from --url, else HLPT_URL, else http://127.0.0.1:8080; the API key
 * from HLPT_API_KEY.
 */
#ifndef HLPT_CLIENT_H
#define HLPT_CLIENT_H

#include <stddef.h>

struct cJSON;

typedef struct {
    long status;        /* HTTP status, 0 when the daemon could not be reached */
    char *body;         /* NUL-terminated, owned */
    size_t len;
} client_resp;

void client_set_url(const char *url);   /* NULL keeps the default */
const char *client_url(void);

/* method + path (e.g. "/v1/files"); body may be NULL. Returns 0 when a response arrived. */
int client_request(const char *method, const char *path, const char *body, client_resp *r);
/* Multipart POST: a file field named `field` from path, plus name=value pairs (NULL-terminated
 * list of pairs). */
int client_upload(const char *path_url, const char *field, const char *file, const char *const *pairs,
                  client_resp *r);
/* POST body and call on_event(data, ctx) for each SSE "data:" payload until the stream ends or
 * on_event returns non-zero. */
int client_stream(const char *path, const char *body, int (*on_event)(const char *data, void *ctx),
                  void *ctx, client_resp *r);
/* GET path into a file. */
int client_download(const char *path, const char *file, client_resp *r);
void client_resp_free(client_resp *r);

/* Parses a successful JSON answer (returns owned cJSON), or prints the daemon's error message and
 * returns NULL. */
struct cJSON *client_json(const client_resp *r);
/* The common case: request, print errors, return parsed JSON or NULL. */
struct cJSON *client_call(const char *method, const char *path, const char *body);

#endif
