/*
 * blobs.h - the daemon's artefacts as content-addressed files (docs/design.md, "Files").
 *
 * Every artefact hlptd keeps (an uploaded training file, a checkpoint, an adapter's config and
 * weights, a job's results file) is one file <data-dir>/blobs/sha256/<first 2 hex>/<64 hex>, named
 * by the SHA-256 of its bytes. A blob is written under <data-dir>/blobs/tmp/, hashed on the way,
 * fsynced, renamed into place and its directory fsynced; after that it never changes. So a reader
 * sees a whole blob or none, the same bytes written twice are one file, and what is read can be
 * checked against its name. The store (store.h) records which rows use which blob and their sizes;
 * the bytes never pass through the database.
 *
 * Threads and processes: any. The daemon and its workers write blobs side by side; every step is
 * made atomic by rename. Temporary files of writers that died are removed at the daemon's start
 * (hlptd_blobs_open with clean = 1), when no worker runs.
 */
#ifndef HLPTD_BLOBS_H
#define HLPTD_BLOBS_H

#include <stddef.h>
#include <stdint.h>

#include "hlpt/sha256.h"

typedef struct hlptd_blobs hlptd_blobs;
typedef struct hlptd_blob_writer hlptd_blob_writer;

/* Opens (making what is missing) <data_dir>/blobs with its sha256/ and tmp/ folders. clean = 1
 * removes what tmp/ holds (the daemon at start-up; a worker passes 0). *out owned:
 * hlptd_blobs_close. Errors: HLPT_ERR_IO (why names the folder), HLPT_ERR_NOMEM. */
int hlptd_blobs_open(const char *data_dir, int clean, hlptd_blobs **out, char *why, size_t len);
void hlptd_blobs_close(hlptd_blobs *b);
/* <data_dir>/blobs. */
const char *hlptd_blobs_dir(const hlptd_blobs *b);

/* The path of the blob named sha256 (whether or not it exists). HLPT_ERR_INVAL when sha256 is not
 * 64 lowercase hex digits (so no caller can name a path outside the folder), HLPT_ERR_RANGE when
 * cap is too small. */
int hlptd_blob_path(const hlptd_blobs *b, const char *sha256, char *out, size_t cap);

/* A blob written piece by piece (an upload as it arrives). Errors of write and commit:
 * HLPT_ERR_NOSPACE (disk or quota full), HLPT_ERR_IO. */
int hlptd_blob_begin(hlptd_blobs *b, hlptd_blob_writer **out, char *why, size_t len);
int hlptd_blob_write(hlptd_blob_writer *w, const void *buf, size_t n, char *why, size_t len);
/* Bytes written so far. */
uint64_t hlptd_blob_written(const hlptd_blob_writer *w);
/* Makes the bytes written a blob: fsync, rename into place, fsync of its folder. sha256 gets its
 * name, *bytes (may be NULL) its size. Frees w whatever the outcome; on failure nothing is left. */
int hlptd_blob_commit(hlptd_blob_writer *w, char sha256[HLPT_SHA256_HEX], uint64_t *bytes, char *why, size_t len);
/* Drops what was written and frees w. NULL is fine. */
void hlptd_blob_abort(hlptd_blob_writer *w);

/* A whole buffer as one blob (begin, write, commit). */
int hlptd_blob_put(hlptd_blobs *b, const void *buf, size_t n, char sha256[HLPT_SHA256_HEX], char *why, size_t len);
/* Reads the blob sha256 whole (*buf owned, NUL-terminated, *n bytes) and checks its bytes against
 * its name. Errors: HLPT_ERR_NOENT (no such blob), HLPT_ERR_RANGE (larger than max),
 * HLPT_ERR_FORMAT (the file is damaged: its bytes do not hash to its name), HLPT_ERR_IO. */
int hlptd_blob_read(hlptd_blobs *b, const char *sha256, size_t max, char **buf, size_t *n, char *why, size_t len);
/* The size of blob sha256, HLPT_ERR_NOENT when there is none. */
int hlptd_blob_size(hlptd_blobs *b, const char *sha256, uint64_t *bytes, char *why, size_t len);
/* Opens the blob sha256 for reading: *fd (owned: close it) and its size *bytes, for a reply that
 * sends the file as it is (http.h, hlptd_reply_file). Its bytes are not checked against its name.
 * Errors: HLPT_ERR_NOENT (no such blob), HLPT_ERR_INVAL (not a blob name), HLPT_ERR_IO. */
int hlptd_blob_open(hlptd_blobs *b, const char *sha256, int *fd, uint64_t *bytes, char *why, size_t len);
/* Calls fn(ctx, sha256) for every blob there is, in no order; stops at the first nonzero return,
 * which it returns. Names in the folder that are not blob names are skipped. HLPT_ERR_IO when the
 * folder cannot be read. */
int hlptd_blobs_each(hlptd_blobs *b, int (*fn)(void *ctx, const char *sha256), void *ctx, char *why, size_t len);
/* Removes the blob sha256 (its space returns to the file system at once). A missing blob is fine.
 * The caller makes sure no stored row names it any more. */
int hlptd_blob_remove(hlptd_blobs *b, const char *sha256, char *why, size_t len);

#endif
