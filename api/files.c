/*
 * files.c - /v1/files: upload (multipart/form-data as the OpenAI SDKs send it, or a raw body with
 * ?filename=&purpose=), list, show, content, delete.
 *
 * An upload streams (HLPTD_ROUTE_STREAM_BODY): its bytes are never held whole. On the MHD thread, as
 * they arrive, the training file's bytes (the `file` part of a form, or the raw body) go both to a
 * blob writer (blobs.h: a temporary file, hashed on the way) and to the JSONL validator
 * (hlpt_dataset_validator); the small `purpose` field is collected. Once the body is complete the
 * checks are made in the order a reply has always named them (the form, its fields, the purpose,
 * the filename, then the file's first bad line); a bad upload drops its temporary file and stores
 * nothing, a good one is sealed (fsynced, kept under blobs/tmp/) and handed to the loop, whose
 * insert of the row puts the blob into place (store.h). An upload that never reaches the loop (the
 * daemon drains, the client goes) drops its sealed temporary when the request ends.
 * Memory per upload: the validator's longest line and the parsers' small buffers.
 *
 * The file object is OpenAI's (id, object, bytes, created_at, filename, purpose, status) plus
 * `stats` (format, examples, characters; tokens once a tokenizer is wired in).
 */
#include <stdint.h>
#include <stdio.h>
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

/* One upload, from its headers to its row. */
typedef struct {
    /* what the loop records */
    char *filename;                /* owned */
    char purpose[32];
    char sha256[HLPT_SHA256_HEX];  /* the sealed blob */
    uint64_t bytes;
    char tmp[HLPTD_BLOB_TMP_MAX];  /* its sealed temporary; "" once the loop took it */
    hlptd_blobs *blobs;            /* borrowed: where tmp lies */
    size_t examples;
    char *stats;                   /* owned JSON */
    /* while the body arrives */
    int multipart;
    hlptd_multipart *form;          /* the form's parser (multipart only) */
    hlpt_dataset_validator *check;
    hlptd_blob_writer *blob;       /* NULL once aborted */
    int form_err;                  /* the form is malformed (form_why) */
    char form_why[256];
    int write_err;                 /* the file could not be written (write_why) */
    char write_why[512];
    int check_err;                 /* the file's verdict (check_why): the first bad line */
    char check_why[512];
    int seen_file, seen_purpose;   /* the first part of each name counts, as hlptd_req_form reads */
    int in_file, in_purpose;       /* the part being read */
    int file_named;                /* the `file` part has a filename */
    int purpose_nul;
    size_t purpose_n;
} upload;

static void upload_free(void *p) {
    upload *u = p;
    if (!u) return;
    hlptd_blob_abort(u->blob);
    if (u->tmp[0]) hlptd_blob_discard(u->blobs, u->tmp);
    hlpt_dataset_validator_free(u->check);
    hlptd_multipart_free(u->form);
    free(u->filename);
    free(u->stats);
    free(u);
}

typedef struct {
    int limit;
    const char *after; /* borrows the request's query */
} page;

static cJSON *file_json(const hlptd_file *f) {
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

/* ---- the training file's bytes, as they arrive ------------------------------------------------------ */

/* To the validator and the blob. Once the validator has its verdict against the file, nothing more
 * is written (the temporary file goes at once); a failed write does not stop the validation, whose
 * verdict a reply names first. */
static void file_bytes(upload *u, const char *p, size_t n) {
    if (u->check_err) return;
    if ((u->check_err = hlpt_dataset_validator_feed(u->check, p, n, u->check_why, sizeof u->check_why))) {
        hlptd_blob_abort(u->blob);
        u->blob = NULL;
        return;
    }
    if (u->blob && (u->write_err = hlptd_blob_write(u->blob, p, n, u->write_why, sizeof u->write_why))) {
        hlptd_blob_abort(u->blob);
        u->blob = NULL;
    }
}

static int form_begin(void *ctx, const char *name, const char *filename, char *why, size_t len) {
    upload *u = ctx;
    if (!u->seen_file && strcmp(name, "file") == 0) {
        u->seen_file = u->in_file = 1;
        u->file_named = filename != NULL;
        if (filename && !(u->filename = strdup(filename))) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    } else if (!u->seen_purpose && strcmp(name, "purpose") == 0) {
        u->seen_purpose = u->in_purpose = 1;
    }
    return HLPT_OK;
}

static int form_data(void *ctx, const char *data, size_t n, char *why, size_t len) {
    upload *u = ctx;
    if (u->in_file) {
        file_bytes(u, data, n);
    } else if (u->in_purpose) {
        /* Kept up to what the purpose check needs; longer is not a purpose we know either. */
        u->purpose_nul |= memchr(data, 0, n) != NULL;
        size_t k = sizeof u->purpose - 1 - u->purpose_n;
        if (k > n) k = n;
        memcpy(u->purpose + u->purpose_n, data, k);
        u->purpose_n += k;
        u->purpose[u->purpose_n] = 0;
    }
    return HLPT_OK;
}

static int form_end(void *ctx, char *why, size_t len) {
    upload *u = ctx;
    u->in_file = u->in_purpose = 0;
    return HLPT_OK;
}

static int create_piece(hlptd_req *r, const char *data, size_t n) {
    upload *u = hlptd_req_data(r);
    if (!u->multipart) {
        file_bytes(u, data, n);
        /* A raw body holds nothing but the file: past its verdict the rest is not needed. */
        return u->check_err;
    }
    if (u->form_err) return u->form_err;
    u->form_err = hlptd_multipart_feed(u->form, data, n, u->form_why, sizeof u->form_why);
    return u->form_err;
}

/* ---- the checks, the blob, the row -------------------------------------------------------------------- */

/* Replies 400 and returns nonzero when filename is not a name a file may have. */
static int bad_filename(hlptd_req *r, const char *filename, const char *param) {
    size_t flen = strlen(filename), bad;
    if (flen == 0 || flen > FILENAME_MAX_BYTES || !hlpt_utf8_valid(filename, flen, &bad)) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, param, "filename must be 1 to %d bytes of UTF-8", FILENAME_MAX_BYTES);
        return 1;
    }
    for (size_t i = 0; i < flen; i++) {
        if ((unsigned char)filename[i] < 0x20 || filename[i] == 0x7f) {
            hlptd_reply_err(r, HLPT_ERR_INVAL, param, "filename must not contain control characters");
            return 1;
        }
    }
    return 0;
}

/* The form's fields, once the body is complete; replies 400 and returns nonzero when one is
 * missing or wrong. */
static int form_fields(hlptd_req *r, upload *u) {
    if (!u->form_err) u->form_err = hlptd_multipart_finish(u->form, u->form_why, sizeof u->form_why);
    if (u->form_err) {
        hlptd_reply_err(r, u->form_err, "file", "%s", u->form_why);
        return 1;
    }
    if (!u->seen_file) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "file", "form field `file` missing");
        return 1;
    }
    if (!u->file_named) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "file", "the `file` part has no filename");
        return 1;
    }
    if (!u->seen_purpose) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "purpose", "form field `purpose` missing");
        return 1;
    }
    if (u->purpose_nul) {
        hlptd_reply_err(r, HLPT_ERR_INVAL, "purpose", "`purpose` must not contain a NUL byte");
        return 1;
    }
    if (strcmp(u->purpose, "fine-tune") != 0) {
        hlptd_reply_err(r, HLPT_ERR_UNSUPPORTED, "purpose", "purpose `%s` is not supported (use fine-tune)", u->purpose);
        return 1;
    }
    return bad_filename(r, u->filename, "file");
}

/* The row names the upload's blob, which the insert puts into place from its sealed temporary (or,
 * should the row not be stored, removes). */
static void create_work(void *app, hlptd_req *r) {
    upload *u = hlptd_req_data(r);
    hlptd_file *f;
    char why[512];
    int err = hlptd_store_file_insert(hlptd_store_of(app), u->filename, u->purpose, "processed", u->sha256,
                                     (int64_t)u->bytes, u->tmp, (int64_t)u->examples, u->stats, &f, why, sizeof why);
    /* The insert took the temporary, whatever the outcome. */
    u->tmp[0] = 0;
    if (err) {
        hlptd_reply_err(r, err, NULL, "%s", why);
        return;
    }
    hlptd_reply_json(r, 200, file_json(f));
    hlptd_file_free(f);
}

/* The body is complete (MHD thread): the verdict, then the blob is sealed and the loop records it. */
static void create_done(hlptd_req *r) {
    upload *u = hlptd_req_data(r);
    if (u->multipart && form_fields(r, u)) return;
    hlpt_dataset_stats st;
    if (!u->check_err) u->check_err = hlpt_dataset_validator_finish(u->check, &st, u->check_why, sizeof u->check_why);
    if (u->check_err) {
        hlptd_reply_err(r, u->check_err, "file", "invalid training file: %s", u->check_why);
        return;
    }
    if (u->write_err) {
        hlptd_reply_err(r, u->write_err, NULL, "the upload could not be written to the disk: %s", u->write_why);
        return;
    }
    char why[512];
    hlptd_blob_writer *w = u->blob;
    u->blob = NULL;
    int err = hlptd_blob_seal(w, u->sha256, &u->bytes, u->tmp, sizeof u->tmp, why, sizeof why);
    if (err) {
        hlptd_reply_err(r, err, NULL, "the upload could not be written to the disk: %s", why);
        return;
    }
    u->examples = st.examples;
    if (!(u->stats = stats_json(&st))) {
        hlptd_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    hlptd_req_defer(r, create_work);
}

/* The headers are in: what can be checked before the body is (a raw upload's query), then the body
 * is read. */
void hlptd_api_files_create(hlptd_req *r) {
    upload *u = calloc(1, sizeof *u);
    if (!u) {
        hlptd_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    u->blobs = hlptd_blob_store(hlptd_req_app(r));
    hlptd_req_set_data(r, u, upload_free);
    const char *ct = hlptd_req_header(r, "Content-Type");
    u->multipart = ct && strncasecmp(ct, "multipart/form-data", 19) == 0;
    char why[512];
    int err;
    if (u->multipart) {
        hlptd_multipart_cbs cbs = {form_begin, form_data, form_end};
        if ((err = hlptd_multipart_new(ct, &cbs, u, &u->form, why, sizeof why))) {
            hlptd_reply_err(r, err, "file", "%s", why);
            return;
        }
    } else {
        const char *filename = hlptd_req_query(r, "filename"), *p = hlptd_req_query(r, "purpose");
        if (!filename) {
            hlptd_reply_err(r, HLPT_ERR_INVAL, "filename",
                           "a raw upload needs ?filename= (or send multipart/form-data with a `file` part)");
            return;
        }
        snprintf(u->purpose, sizeof u->purpose, "%s", p ? p : "fine-tune");
        if (strcmp(u->purpose, "fine-tune") != 0) {
            hlptd_reply_err(r, HLPT_ERR_UNSUPPORTED, "purpose", "purpose `%s` is not supported (use fine-tune)",
                           u->purpose);
            return;
        }
        if (bad_filename(r, filename, "filename")) return;
        if (!(u->filename = strdup(filename))) {
            hlptd_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
            return;
        }
    }
    if (hlpt_dataset_validator_new(NULL, &u->check)) {
        hlptd_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    /* A file that cannot even be begun is reported after the validation, as a failed write is. */
    u->write_err = hlptd_blob_begin(hlptd_blob_store(hlptd_req_app(r)), &u->blob, u->write_why, sizeof u->write_why);
    hlptd_req_read_body(r, create_piece, create_done);
}

static void list_work(void *app, hlptd_req *r) {
    page *pg = hlptd_req_data(r);
    hlptd_file **v;
    size_t n;
    int more;
    char why[512];
    int err = hlptd_store_file_list(hlptd_store_of(app), pg->after, pg->limit, &v, &n, &more, why, sizeof why);
    if (err) {
        hlptd_reply_err(r, err, err == HLPT_ERR_NOENT ? "after" : NULL, "%s", why);
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
    hlptd_file_list_free(v, n);
    hlptd_reply_json(r, 200, o);
}

void hlptd_api_files_list(hlptd_req *r) {
    page *pg = calloc(1, sizeof *pg);
    if (!pg) {
        hlptd_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    hlptd_req_set_data(r, pg, free);
    if (hlptd_api_page_args(r, FILES_LIST_DEFAULT, FILES_LIST_MAX, &pg->limit, &pg->after)) return;
    hlptd_req_defer(r, list_work);
}

static void get_work(void *app, hlptd_req *r) {
    hlptd_file *f;
    char why[512];
    int err = hlptd_store_file_get(hlptd_store_of(app), hlptd_req_param(r, "id"), &f, why, sizeof why);
    if (err) {
        hlptd_reply_err(r, err, "id", "%s", why);
        return;
    }
    hlptd_reply_json(r, 200, file_json(f));
    hlptd_file_free(f);
}

void hlptd_api_files_get(hlptd_req *r) { hlptd_req_defer(r, get_work); }

static void content_work(void *app, hlptd_req *r) {
    hlptd_file *f = NULL;
    char why[512];
    int fd = -1;
    uint64_t n = 0;
    int err = hlptd_store_file_get(hlptd_store_of(app), hlptd_req_param(r, "id"), &f, why, sizeof why);
    if (err) {
        hlptd_reply_err(r, err, "id", "%s", why);
        return;
    }
    /* A row names only a blob that is there: a missing one is the server's fault, not a 404. */
    if ((err = hlptd_store_blob_local(hlptd_store_of(app), f->sha256, 0, why, sizeof why)) ||
        (err = hlptd_blob_open(hlptd_blob_store(app), f->sha256, &fd, &n, why, sizeof why)))
        hlptd_reply_err(r, err == HLPT_ERR_NOENT ? HLPT_ERR_IO : err, NULL, "file %s: %s", f->id, why);
    else
        hlptd_reply_file(r, 200, "application/octet-stream", fd, n);
    hlptd_file_free(f);
}

void hlptd_api_files_content(hlptd_req *r) { hlptd_req_defer(r, content_work); }

static void delete_work(void *app, hlptd_req *r) {
    const char *id = hlptd_req_param(r, "id");
    char why[512];
    int err = hlptd_store_file_delete(hlptd_store_of(app), id, why, sizeof why);
    if (err) {
        hlptd_reply_err(r, err, "id", "%s", why);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "file");
    cJSON_AddBoolToObject(o, "deleted", 1);
    hlptd_reply_json(r, 200, o);
}

void hlptd_api_files_delete(hlptd_req *r) { hlptd_req_defer(r, delete_work); }
