/*
 * blobs.h - the daemon's artefacts as content-addressed files (docs/design.md, "The store").
 *
 * Every artefact hlptd keeps (an uploaded training file, a checkpoint, an adapter's config and
 * weights, a job's results file) is one file <data-dir>/blobs/sha256/<first 2 hex>/<64 hex>, named
 * by the SHA-256 of its bytes. A blob is written under <data-dir>/blobs/tmp/, hashed on the way,
 * fsynced, renamed into place and its folder fsynced; after that it never changes. So a reader
 * sees a whole blob or none, the same bytes written twice are one file, and what is read can be
 * checked against its name. The store (store.h) records which rows use which blob and their sizes;
 * the bytes pass through the database only where several nodes share it (a PostgreSQL store keeps
 * a copy of each blob, and the folder is a cache: docs/design.md, "Many nodes").
 *
 * Threads and processes. Anyone writes: an HTTP thread an upload, a worker process its checkpoints
 * and adapter, the loop what it makes itself. But a blob is put into place only by the store's
 * thread (the loop), in the same step as the insert of the row that names it: the store removes a
 * blob once no row names it, so a blob in place that no row names yet could go under a writer's
 * feet. A writer therefore seals what it wrote (hlptd_blob_seal, hlptd_blob_put_sealed: fsynced,
 * kept under tmp/) and hands the temporary's name over with the blob's name and size; the insert
 * adopts it (store.h; hlptd_blob_adopt). A temporary's name is "<pid>-<n>": the writer's process
 * and a counter. What a dead writer left in tmp/ goes at the daemon's start (hlptd_blobs_open with
 * clean = 1, when no worker runs) and, for a worker, when the loop has seen it exit
 * (hlptd_blobs_discard_pid). hlptd_blob_commit and hlptd_blob_put put a blob into place at once:
 * for the store's thread only, in the step that names it (the migration that moves old bytes out).
 */
#ifndef HLPTD_BLOBS_H
#define HLPTD_BLOBS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hlpt/sha256.h"

typedef struct hlptd_blobs hlptd_blobs;
typedef struct hlptd_blob_writer hlptd_blob_writer;

/* Opens (making what is missing) <data_dir>/blobs with its sha256/ and tmp/ folders. clean = 1
 * removes what tmp/ holds (the daemon at start-up; a worker passes 0). *out owned:
 * hlptd_blobs_close. Errors: HLPT_ERR_IO (why names the folder), HLPT_ERR_NOMEM. */
int hlptd_blobs_open(const char *data_dir, int clean, hlptd_blobs **out, char *why, size_t len);
void hlptd_blobs_close(hlptd_blobs *b);

/* The path of the blob named sha256 (whether or not it exists). HLPT_ERR_INVAL when sha256 is not
 * 64 lowercase hex digits (so no caller can name a path outside the folder), HLPT_ERR_RANGE when
 * cap is too small. */
int hlptd_blob_path(const hlptd_blobs *b, const char *sha256, char *out, size_t cap);

/* The longest temporary's name, with its NUL. */
#define HLPTD_BLOB_TMP_MAX 48

/* A blob written piece by piece (an upload as it arrives): a new temporary under tmp/, owned by the
 * writer (*out, freed by hlptd_blob_seal, _commit or _abort). Any thread. Errors of begin, write,
 * seal and commit: HLPT_ERR_NOSPACE (disk or quota full), HLPT_ERR_IO. */
int hlptd_blob_begin(hlptd_blobs *b, hlptd_blob_writer **out, char *why, size_t len);
int hlptd_blob_write(hlptd_blob_writer *w, const void *buf, size_t n, char *why, size_t len);
/* Seals the bytes written: fsync and close, the file kept under tmp/ for the store's thread to
 * adopt with the row that names it. sha256 gets the blob's name, *bytes (may be NULL) its size,
 * tmp_name (cap bytes; HLPTD_BLOB_TMP_MAX is enough) the temporary's name. The sealed temporary is
 * the caller's to hand over, or to drop with hlptd_blob_discard. Frees w whatever the outcome; on
 * failure nothing is left. Any thread. */
int hlptd_blob_seal(hlptd_blob_writer *w, char sha256[HLPT_SHA256_HEX], uint64_t *bytes, char *tmp_name, size_t cap,
                    char *why, size_t len);
/* Makes the bytes written a blob in place at once: fsync, rename, fsync of its folder (and of
 * sha256/ when the folder is new). sha256 gets its name, *bytes (may be NULL) its size. Frees w
 * whatever the outcome; on failure nothing is left. The store's thread only, in the step that
 * stores the row naming it; every other writer seals. */
int hlptd_blob_commit(hlptd_blob_writer *w, char sha256[HLPT_SHA256_HEX], uint64_t *bytes, char *why, size_t len);
/* Drops what was written and frees w. NULL is fine. */
void hlptd_blob_abort(hlptd_blob_writer *w);

/* A whole buffer as one sealed temporary (begin, write, seal); see hlptd_blob_seal. Any thread,
 * any process (a worker's checkpoints and adapter). */
int hlptd_blob_put_sealed(hlptd_blobs *b, const void *buf, size_t n, char sha256[HLPT_SHA256_HEX], char *tmp_name,
                          size_t cap, char *why, size_t len);
/* A whole buffer as one blob in place (begin, write, commit); the store's thread only, as
 * hlptd_blob_commit. */
int hlptd_blob_put(hlptd_blobs *b, const void *buf, size_t n, char sha256[HLPT_SHA256_HEX], char *why, size_t len);

/* Puts the sealed temporary tmp_name (borrowed; a name hlptd_blob_seal gave, nothing else is
 * taken) into place as the blob sha256: rename, fsync of its folder, and of sha256/ when the
 * folder is new. A blob already there has the same bytes and is replaced by them. The temporary is
 * gone afterwards whatever the outcome: in place, or removed. The store's thread only, in the step
 * that inserts the row naming the blob (store.h: the inserts take the temporary's name and call
 * this). Errors: HLPT_ERR_INVAL (tmp_name is not a temporary's name, sha256 not a blob name),
 * HLPT_ERR_NOENT (no such temporary), HLPT_ERR_NOSPACE, HLPT_ERR_IO. */
int hlptd_blob_adopt(hlptd_blobs *b, const char *tmp_name, const char *sha256, char *why, size_t len);
/* Removes the sealed temporary tmp_name (borrowed), one never adopted: an upload refused before
 * its row, a worker's line dropped. Not a temporary's name (NULL included), or no such file:
 * nothing happens. Any thread. */
void hlptd_blob_discard(hlptd_blobs *b, const char *tmp_name);
/* Removes every temporary of process pid: what a worker that exited wrote and did not hand over,
 * or was cut off writing (killed, crashed). Loop thread, once the process is gone and every line it
 * wrote has been read. */
void hlptd_blobs_discard_pid(hlptd_blobs *b, pid_t pid);

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

/* Marks the blob as just used (its modification time, which trimming orders by). Nothing when it
 * is not there. */
void hlptd_blob_touch(hlptd_blobs *b, const char *sha256);
/* A cache's trim (a folder whose every blob the database holds too: docs/design.md, "Many nodes";
 * never a store of one node's): removes the least recently used blobs until the folder holds at
 * most max_bytes, sparing every blob used in the last min_age_s seconds (a worker about to open
 * its data, a generation about to read an adapter), so that the folder may stay above max_bytes.
 * *removed and *freed (may be NULL) get what went. */
int hlptd_blobs_trim(hlptd_blobs *b, uint64_t max_bytes, int64_t min_age_s, size_t *removed, uint64_t *freed, char *why,
                     size_t len);

#endif
