/*
 * client.c - see client.h. One easy handle per request keeps the code plain; the command line
 * makes few requests.
 */
#include "client.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *base_url;

void client_set_url(const char *url) { base_url = url; }

const char *client_url(void) {
    if (base_url) return base_url;
    const char *e = getenv("HLPT_URL");
    return e && *e ? e : "http://127.0.0.1:8080";
}

typedef struct {
    client_resp *r;
    int (*on_event)(const char *data, void *ctx);
    void *ctx;
    size_t scanned;      /* SSE: bytes of body already split into events */
    int stop;
    FILE *file;
} sink;

/* Appends to the body; for streams, hands out each complete "data:" event. */
static size_t on_data(char *p, size_t size, size_t n, void *arg) {
    sink *s = arg;
    size_t k = size * n;
    if (s->file) return fwrite(p, 1, k, s->file);
    char *body = realloc(s->r->body, s->r->len + k + 1);
    if (!body) return 0;
    memcpy(body + s->r->len, p, k);
    s->r->body = body;
    s->r->len += k;
    body[s->r->len] = 0;
    if (!s->on_event || s->r->status >= 400) return k;
    for (;;) {
        char *start = s->r->body + s->scanned, *end = strstr(start, "\n\n");
        if (!end) break;
        *end = 0;
        for (char *line = start; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            if (!strncmp(line, "data:", 5) && !s->stop) {
                const char *d = line + 5 + (line[5] == ' ');
                if (s->on_event(d, s->ctx)) s->stop = 1;
            }
            line = nl ? nl + 1 : NULL;
        }
        s->scanned = (size_t)(end + 2 - s->r->body);
    }
    return s->stop ? 0 : k;
}

static int perform(CURL *c, const char *path, struct curl_slist *h, sink *s) {
    char url[4096];
    snprintf(url, sizeof url, "%s%s", client_url(), path);
    const char *key = getenv("HLPT_API_KEY");
    char auth[1024];
    if (key && *key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &s->r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK && !(s->stop && rc == CURLE_WRITE_ERROR)) {
        fprintf(stderr, "hlpt: cannot reach hlptd at %s: %s\n", client_url(), curl_easy_strerror(rc));
        s->r->status = 0;
        return -1;
    }
    return 0;
}

int client_request(const char *method, const char *path, const char *body, client_resp *r) {
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    if (!c) return -1;
    struct curl_slist *h = NULL;
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    sink s = {.r = r};
    return perform(c, path, h, &s);
}

int client_stream(const char *path, const char *body, int (*on_event)(const char *data, void *ctx),
                  void *ctx, client_resp *r) {
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    if (!c) return -1;
    struct curl_slist *h = curl_slist_append(NULL, "Accept: text/event-stream");
    if (body) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    sink s = {.r = r, .on_event = on_event, .ctx = ctx};
    return perform(c, path, h, &s);
}

int client_upload(const char *path_url, const char *field, const char *file, const char *const *pairs,
                  client_resp *r) {
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    if (!c) return -1;
    curl_mime *mime = curl_mime_init(c);
    for (int i = 0; pairs && pairs[i]; i += 2) {
        curl_mimepart *p = curl_mime_addpart(mime);
        curl_mime_name(p, pairs[i]);
        curl_mime_data(p, pairs[i + 1], CURL_ZERO_TERMINATED);
    }
    curl_mimepart *p = curl_mime_addpart(mime);
    curl_mime_name(p, field);
    if (curl_mime_filedata(p, file) != CURLE_OK) {
        fprintf(stderr, "hlpt: %s: cannot read\n", file);
        curl_mime_free(mime);
        curl_easy_cleanup(c);
        return -1;
    }
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    sink s = {.r = r};
    int rc = perform(c, path_url, NULL, &s);
    curl_mime_free(mime);
    return rc;
}

int client_download(const char *path, const char *file, client_resp *r) {
    memset(r, 0, sizeof *r);
    FILE *f = fopen(file, "wb");
    if (!f) {
        fprintf(stderr, "hlpt: %s: cannot write\n", file);
        return -1;
    }
    CURL *c = curl_easy_init();
    sink s = {.r = r, .file = f};
    int rc = c ? perform(c, path, NULL, &s) : -1;
    fclose(f);
    return rc;
}

void client_resp_free(client_resp *r) {
    free(r->body);
    memset(r, 0, sizeof *r);
}

cJSON *client_json(const client_resp *r) {
    if (r->status == 0) return NULL;
    cJSON *j = r->body ? cJSON_ParseWithLength(r->body, r->len) : NULL;
    if (r->status >= 400) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "param");
        if (cJSON_IsString(m) && cJSON_IsString(p))
            fprintf(stderr, "hlpt: %s [param: %s] (HTTP %ld)\n", m->valuestring, p->valuestring, r->status);
        else if (cJSON_IsString(m))
            fprintf(stderr, "hlpt: %s (HTTP %ld)\n", m->valuestring, r->status);
        else
            fprintf(stderr, "hlpt: HTTP %ld: %.300s\n", r->status, r->body ? r->body : "");
        cJSON_Delete(j);
        return NULL;
    }
    if (!j) fprintf(stderr, "hlpt: the daemon's answer is not JSON\n");
    return j;
}

cJSON *client_call(const char *method, const char *path, const char *body) {
    client_resp r;
    if (client_request(method, path, body, &r) != 0) {
        client_resp_free(&r);
        return NULL;
    }
    cJSON *j = client_json(&r);
    client_resp_free(&r);
    return j;
}
