/*
 * files.c - /v1/files: upload (multipart/form-data as the OpenAI SDKs send it, or a raw body with
 * ?filename=&purpose=), list, show, content, delete.
 *
 * An upload is validated as a JSONL dataset on the MHD thread (pure parsing, no shared state);
 * only a valid file is handed to the loop, which stores it, so a bad upload stores nothing. The
 * file object is OpenAI's (id, object, bytes, created_at, filename, purpose, status) plus `stats`
 * (format, examples, characters; tokens once a tokenizer is wired in).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "app.h"
#include "hlpt/dataset.h"
#include "hlpt/err.h"

#define FILES_LIST_DEFAULT 100
#define FILES_LIST_MAX 10000
#define FILENAME_MAX_BYTES 255

/* What an upload hands to the loop; pointers borrow from the request, which outlives the work. */
typedef struct {
    const char *filename;
    char purpose[32];
    const char *data;
    size_t n;
    size_t examples;
    char *stats; /* owned JSON */
} upload;

static void upload_free(void *p) {
    upload *u = p;
    if (!u) return;
    free(u->stats);
    free(u);
}

typedef struct {
    int limit;
    const char *after; /* borrows the request's query */
} page;

static cJSON *file_json(const hlpt_file *f) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", f->id);
    cJSON_AddStringToObject(o, "object", "file");
    cJSON_AddNumberToObject(o, "bytes", (double)f->bytes);
    cJSON_AddNumberToObject(o, "created_at", (double)f->created_at);
    cJSON_AddStringToObject(o, "filename", f->filename);
    cJSON_AddStringToObject(o, "purpose", f->purpose);
    cJSON_AddStringToObject(o, "status", f->status);
    if (f->error) cJSON_AddStringToObject(o, "status_details", f->error);
    else cJSON_AddNullToObject(o, "status_details");
    cJSON *stats = f->stats ? cJSON_ParseWithOpts(f->stats, NULL, 1) : NULL;
    if (stats) cJSON_AddItemToObject(o, "stats", stats);
    return o;
}

static char *stats_json(const hlpt_dataset_stats *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", hlpt_dataset_format_name(s->format));
    cJSON_AddNumberToObject(o, "examples", (double)s->examples);
    cJSON_AddNumberToObject(o, "lines", (double)s->lines);
    cJSON_AddNumberToObject(o, "prompt_chars", (double)s->prompt_chars);
    cJSON_AddNumberToObject(o, "completion_chars", (double)s->completion_chars);
    cJSON_AddNumberToObject(o, "max_example_chars", (double)s->max_example_chars);
    if (s->tokens >= 0) {
        cJSON_AddNumberToObject(o, "tokens", (double)s->tokens);
        cJSON_AddNumberToObject(o, "max_example_tokens", (double)s->max_example_tokens);
    }
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return txt;
}

/* Fills u from a multipart body; replies 400 and returns nonzero on failure. */
static int from_multipart(hlpt_req *r, upload *u) {
    char why[256];
    const char *purpose;
    size_t pn;
    int err = hlpt_req_form(r, "file", &u->data, &u->n, &u->filename, why, sizeof why);
    if (err) {
        hlpt_reply_err(r, err == HLPT_ERR_NOENT ? HLPT_ERR_INVAL : err, "file", "%s", why);
        return 1;
    }
    if (!u->filename) {
        hlpt_reply_err(r, HLPT_ERR_INVAL, "file", "the `file` part has no filename");
        return 1;
    }
    if ((err = hlpt_req_form(r, "purpose", &purpose, &pn, NULL, why, sizeof why))) {
        hlpt_reply_err(r, err == HLPT_ERR_NOENT ? HLPT_ERR_INVAL : err, "purpose", "%s", why);
        return 1;
    }
    if (memchr(purpose, 0, pn)) {
        hlpt_reply_err(r, HLPT_ERR_INVAL, "purpose", "`purpose` must not contain a NUL byte");
        return 1;
    }
    if (pn >= sizeof u->purpose) pn = sizeof u->purpose - 1; /* checked against the list below */
    memcpy(u->purpose, purpose, pn);
    u->purpose[pn] = 0;
    return 0;
}

/* Fills u from a raw body with ?filename=&purpose= (purpose defaults to fine-tune). */
static int from_raw(hlpt_req *r, upload *u) {
    u->filename = hlpt_req_query(r, "filename");
    if (!u->filename) {
        hlpt_reply_err(r, HLPT_ERR_INVAL, "filename",
                       "a raw upload needs ?filename= (or send multipart/form-data with a `file` part)");
        return 1;
    }
    const char *p = hlpt_req_query(r, "purpose");
    snprintf(u->purpose, sizeof u->purpose, "%s", p ? p : "fine-tune");
    u->data = hlpt_req_body(r, &u->n);
    return 0;
}

static void create_work(void *app, hlpt_req *r) {
    upload *u = hlpt_req_data(r);
    hlpt_file *f = NULL;
    char why[512], sha[HLPT_SHA256_HEX] = "";
    /* The content becomes a blob; the row names it. Not stored, the blob goes (unless another file
     * has the same bytes). */
    int err = hlptd_blob_put(hlptd_blob_store(app), u->data, u->n, sha, why, sizeof why);
    if (!err)
        err = hlpt_store_file_insert(hlptd_store(app), u->filename, u->purpose, "processed", sha, (int64_t)u->n,
                                     (int64_t)u->examples, u->stats, &f, why, sizeof why);
    if (err && sha[0]) hlpt_store_blob_release(hlptd_store(app), sha, NULL, 0);
    if (err) {
        hlpt_reply_err(r, err, NULL, "%s", why);
        return;
    }
    hlpt_reply_json(r, 200, file_json(f));
    hlpt_file_free(f);
}

void hlpt_api_files_create(hlpt_req *r) {
    upload *u = calloc(1, sizeof *u);
    if (!u) {
        hlpt_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    hlpt_req_set_data(r, u, upload_free);
    const char *ct = hlpt_req_header(r, "Content-Type");
    int multipart = ct && strncasecmp(ct, "multipart/form-data", 19) == 0;
    if (multipart ? from_multipart(r, u) : from_raw(r, u)) return;
    if (strcmp(u->purpose, "fine-tune") != 0) {
        hlpt_reply_err(r, HLPT_ERR_UNSUPPORTED, "purpose", "purpose `%s` is not supported (use fine-tune)", u->purpose);
        return;
    }
    size_t flen = strlen(u->filename), bad;
    const char *fparam = multipart ? "file" : "filename";
    if (flen == 0 || flen > FILENAME_MAX_BYTES || !hlpt_utf8_valid(u->filename, flen, &bad)) {
        hlpt_reply_err(r, HLPT_ERR_INVAL, fparam, "filename must be 1 to %d bytes of UTF-8", FILENAME_MAX_BYTES);
        return;
    }
    for (size_t i = 0; i < flen; i++) {
        if ((unsigned char)u->filename[i] < 0x20 || u->filename[i] == 0x7f) {
            hlpt_reply_err(r, HLPT_ERR_INVAL, fparam, "filename must not contain control characters");
            return;
        }
    }
    hlpt_dataset_stats st;
    char why[512];
    int err = hlpt_dataset_validate(u->data, u->n, &st, why, sizeof why);
    if (err) {
        hlpt_reply_err(r, err, "file", "invalid training file: %s", why);
        return;
    }
    u->examples = st.examples;
    if (!(u->stats = stats_json(&st))) {
        hlpt_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    hlpt_req_defer(r, create_work);
}

static void list_work(void *app, hlpt_req *r) {
    page *pg = hlpt_req_data(r);
    hlpt_file **v;
    size_t n;
    int more;
    char why[512];
    int err = hlpt_store_file_list(hlptd_store(app), pg->after, pg->limit, &v, &n, &more, why, sizeof why);
    if (err) {
        hlpt_reply_err(r, err, err == HLPT_ERR_NOENT ? "after" : NULL, "%s", why);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(data, file_json(v[i]));
    if (n) {
        cJSON_AddStringToObject(o, "first_id", v[0]->id);
        cJSON_AddStringToObject(o, "last_id", v[n - 1]->id);
    }
    cJSON_AddBoolToObject(o, "has_more", more);
    hlpt_file_list_free(v, n);
    hlpt_reply_json(r, 200, o);
}

void hlpt_api_files_list(hlpt_req *r) {
    page *pg = calloc(1, sizeof *pg);
    if (!pg) {
        hlpt_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    hlpt_req_set_data(r, pg, free);
    if (hlpt_api_page_args(r, FILES_LIST_DEFAULT, FILES_LIST_MAX, &pg->limit, &pg->after)) return;
    hlpt_req_defer(r, list_work);
}

static void get_work(void *app, hlpt_req *r) {
    hlpt_file *f;
    char why[512];
    int err = hlpt_store_file_get(hlptd_store(app), hlpt_req_param(r, "id"), &f, why, sizeof why);
    if (err) {
        hlpt_reply_err(r, err, "id", "%s", why);
        return;
    }
    hlpt_reply_json(r, 200, file_json(f));
    hlpt_file_free(f);
}

void hlpt_api_files_get(hlpt_req *r) { hlpt_req_defer(r, get_work); }

static void content_work(void *app, hlpt_req *r) {
    hlpt_file *f = NULL;
    char why[512];
    int fd = -1;
    uint64_t n = 0;
    int err = hlpt_store_file_get(hlptd_store(app), hlpt_req_param(r, "id"), &f, why, sizeof why);
    if (err) {
        hlpt_reply_err(r, err, "id", "%s", why);
        return;
    }
    /* A row names only a blob that is there: a missing one is the server's fault, not a 404. */
    if ((err = hlptd_blob_open(hlptd_blob_store(app), f->sha256, &fd, &n, why, sizeof why)))
        hlpt_reply_err(r, err == HLPT_ERR_NOENT ? HLPT_ERR_IO : err, NULL, "file %s: %s", f->id, why);
    else
        hlpt_reply_file(r, 200, "application/octet-stream", fd, n);
    hlpt_file_free(f);
}

void hlpt_api_files_content(hlpt_req *r) { hlpt_req_defer(r, content_work); }

static void delete_work(void *app, hlpt_req *r) {
    const char *id = hlpt_req_param(r, "id");
    char why[512];
    int err = hlpt_store_file_delete(hlptd_store(app), id, why, sizeof why);
    if (err) {
        hlpt_reply_err(r, err, "id", "%s", why);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "file");
    cJSON_AddBoolToObject(o, "deleted", 1);
    hlpt_reply_json(r, 200, o);
}

void hlpt_api_files_delete(hlpt_req *r) { hlpt_req_defer(r, delete_work); }
