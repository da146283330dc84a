/*
 * store.c - see store.h. Every function prepares its statement, binds, steps, converts rows into
 * the structs of store.h and finalizes; statements are not cached (the store handles a few requests
 * a second, and an uncached statement cannot go stale across migrations). Each table has one
 * row-to-struct converter next to the column list it reads, so a column is added in two adjacent
 * places.
 */
#include "store.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "hlpt/err.h"

struct hlpt_store {
    sqlite3 *db;
    atomic_int damaged; /* SQLite reported corruption */
    int (*on_full)(void *ctx);
    void *on_full_ctx;
};

void hlpt_store_on_full(hlpt_store *st, int (*fn)(void *ctx), void *ctx) {
    st->on_full = fn;
    st->on_full_ctx = ctx;
}

/* ---- ids ------------------------------------------------------------------------------------ */

int hlpt_id_new(char out[HLPT_ID_MAX], const char *prefix) {
    static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    size_t p = strlen(prefix);
    HLPT_ASSERT(p + HLPT_ID_RANDOM_CHARS < HLPT_ID_MAX);
    memcpy(out, prefix, p);
    size_t filled = 0;
    while (filled < HLPT_ID_RANDOM_CHARS) {
        unsigned char r[64];
        ssize_t got = getrandom(r, sizeof r, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return HLPT_ERR_IO;
        }
        /* Rejection sampling keeps the characters uniform: 248 = 4 * 62. */
        for (ssize_t i = 0; i < got && filled < HLPT_ID_RANDOM_CHARS; i++)
            if (r[i] < 248) out[p + filled++] = b62[r[i] % 62];
    }
    out[p + filled] = 0;
    return HLPT_OK;
}

/* ---- helpers -------------------------------------------------------------------------------- */

/* SQLITE_FULL is the disk's, not the database's fault: HLPT_ERR_NOSPACE (507) says so. A damaged
 * database is remembered, so that /health stops saying ok over it. */
static int db_fail(hlpt_store *st, const char *what, char *why, size_t len) {
    int rc = sqlite3_extended_errcode(st->db) & 0xff;
    if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) atomic_store(&st->damaged, 1);
    return hlpt_why(why, len, rc == SQLITE_FULL ? HLPT_ERR_NOSPACE : HLPT_ERR_DB, "%s: %s", what,
                    sqlite3_errmsg(st->db));
}

static int prep(hlpt_store *st, const char *sql, sqlite3_stmt **s, char *why, size_t len) {
    if (sqlite3_prepare_v2(st->db, sql, -1, s, NULL) != SQLITE_OK) {
        *s = NULL;
        return db_fail(st, "prepare", why, len);
    }
    return HLPT_OK;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v) {
    if (v) sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(s, i);
}

static void bind_real(sqlite3_stmt *s, int i, double v) {
    if (isnan(v)) sqlite3_bind_null(s, i);
    else sqlite3_bind_double(s, i, v);
}

/* An owned copy of a text column; NULL for SQL NULL. Sets *oom on allocation failure. */
static char *col_str(sqlite3_stmt *s, int i, int *oom) {
    const unsigned char *t = sqlite3_column_text(s, i);
    if (!t) return NULL;
    char *d = strdup((const char *)t);
    if (!d) *oom = 1;
    return d;
}

static void col_id(sqlite3_stmt *s, int i, char out[HLPT_ID_MAX]) {
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(out, HLPT_ID_MAX, "%s", t ? (const char *)t : "");
}

static double col_real(sqlite3_stmt *s, int i) {
    return sqlite3_column_type(s, i) == SQLITE_NULL ? NAN : sqlite3_column_double(s, i);
}

static int64_t now(void) { return (int64_t)time(NULL); }

/* Steps a statement that changes rows and finalizes it; *changes gets the row count. */
static int exec_stmt(hlpt_store *st, sqlite3_stmt *s, int *changes, const char *what, char *why, size_t len) {
    int rc = sqlite3_step(s);
    /* A full disk: once room is made (hlpt_store_on_full), the write is tried again. */
    if ((rc & 0xff) == SQLITE_FULL && st->on_full && st->on_full(st->on_full_ctx)) {
        sqlite3_reset(s);
        rc = sqlite3_step(s);
    }
    int err = HLPT_OK;
    if (rc != SQLITE_DONE) err = db_fail(st, what, why, len);
    else if (changes) *changes = sqlite3_changes(st->db);
    sqlite3_finalize(s);
    return err;
}

/* Reads a blob column of the one row `s` selects into an owned buffer. */
static int read_blob(hlpt_store *st, sqlite3_stmt *s, const char *what, const char *id, void **buf, size_t *n,
                     char *why, size_t len) {
    *buf = NULL;
    *n = 0;
    int rc = sqlite3_step(s), err = HLPT_OK;
    if (rc == SQLITE_DONE) {
        err = hlpt_why(why, len, HLPT_ERR_NOENT, "no %s `%s`", what, id);
    } else if (rc != SQLITE_ROW) {
        err = db_fail(st, what, why, len);
    } else {
        size_t sz = (size_t)sqlite3_column_bytes(s, 0);
        const void *p = sqlite3_column_blob(s, 0);
        /* One spare byte: text consumers get a NUL-terminated buffer for free. */
        if (!(*buf = malloc(sz + 1))) err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
        else {
            if (sz) memcpy(*buf, p, sz);
            ((char *)*buf)[sz] = 0;
            *n = sz;
        }
    }
    sqlite3_finalize(s);
    return err;
}

/* Collects the rows of `s` through conv (NULL = out of memory) into an owned array. At most `limit`
 * rows are kept; a row beyond them only sets *has_more. */
typedef void *(*row_fn)(sqlite3_stmt *s);
typedef void (*row_free_fn)(void *row);

static int collect(hlpt_store *st, sqlite3_stmt *s, int limit, row_fn conv, row_free_fn rfree, void ***out,
                   size_t *n, int *has_more, char *why, size_t len) {
    void **v = NULL;
    size_t cnt = 0, cap = 0;
    int err = HLPT_OK, rc;
    if (has_more) *has_more = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (limit >= 0 && cnt == (size_t)limit) {
            if (has_more) *has_more = 1;
            break;
        }
        if (cnt == cap) {
            cap = cap ? 2 * cap : 16;
            void **nv = realloc(v, cap * sizeof *v);
            if (!nv) goto oom;
            v = nv;
        }
        if (!(v[cnt] = conv(s))) goto oom;
        cnt++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        err = db_fail(st, "list", why, len);
        goto fail;
    }
    sqlite3_finalize(s);
    *out = v;
    *n = cnt;
    return HLPT_OK;
oom:
    err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
fail:
    for (size_t i = 0; i < cnt; i++) rfree(v[i]);
    free(v);
    sqlite3_finalize(s);
    *out = NULL;
    *n = 0;
    return err;
}

/* Fetches the one row `s` selects through conv. */
static int fetch_one(hlpt_store *st, sqlite3_stmt *s, row_fn conv, void **out, const char *what, const char *id,
                     char *why, size_t len) {
    *out = NULL;
    int rc = sqlite3_step(s), err = HLPT_OK;
    if (rc == SQLITE_ROW) {
        if (!(*out = conv(s))) err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    } else if (rc == SQLITE_DONE) {
        err = hlpt_why(why, len, HLPT_ERR_NOENT, "no %s `%s`", what, id);
    } else {
        err = db_fail(st, what, why, len);
    }
    sqlite3_finalize(s);
    return err;
}

/* The seq of row `id` in a paged table, for ?after=. seq_sql selects seq by id. */
static int seq_of(hlpt_store *st, const char *seq_sql, const char *what, const char *id, int64_t *seq, char *why,
                  size_t len) {
    sqlite3_stmt *s;
    int err = prep(st, seq_sql, &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) *seq = sqlite3_column_int64(s, 0);
    else if (rc == SQLITE_DONE) err = hlpt_why(why, len, HLPT_ERR_NOENT, "no %s `%s` (after)", what, id);
    else err = db_fail(st, what, why, len);
    sqlite3_finalize(s);
    return err;
}

/* A newest-first page: list_sql takes ?1 = seq bound (exclusive) and ?2 = limit + 1. */
static int list_page(hlpt_store *st, const char *seq_sql, const char *list_sql, const char *what,
                     const char *after, int limit, row_fn conv, row_free_fn rfree, void ***out, size_t *n,
                     int *has_more, char *why, size_t len) {
    *out = NULL;
    *n = 0;
    if (limit < 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "limit must not be negative");
    int64_t bound = INT64_MAX;
    int err;
    if (after && (err = seq_of(st, seq_sql, what, after, &bound, why, len))) return err;
    sqlite3_stmt *s;
    if ((err = prep(st, list_sql, &s, why, len))) return err;
    sqlite3_bind_int64(s, 1, bound);
    sqlite3_bind_int64(s, 2, (int64_t)limit + 1);
    return collect(st, s, limit, conv, rfree, out, n, has_more, why, len);
}

/* ---- open and migrate ----------------------------------------------------------------------- */

static int user_version(hlpt_store *st) {
    sqlite3_stmt *s;
    int v = -1;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

int hlpt_store_version(hlpt_store *st) { return user_version(st); }

static int migrate(hlpt_store *st, int target, char *why, size_t len) {
    for (int i = 0; i < hlpt_migrations_count; i++)
        if (hlpt_migrations[i].version != i + 1)
            return hlpt_why(why, len, HLPT_ERR_INTERNAL, "migration %s: expected number %04d (gap or duplicate)",
                            hlpt_migrations[i].name, i + 1);
    int cur = user_version(st);
    if (cur < 0) return db_fail(st, "read user_version", why, len);
    if (cur > hlpt_migrations_count)
        return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED,
                        "database schema version %d is newer than this hlptd knows (%d)", cur, hlpt_migrations_count);
    for (int v = cur + 1; v <= target; v++) {
        const hlpt_migration *m = &hlpt_migrations[v - 1];
        char *msg = NULL, sql[64];
        /* user_version is part of the database header and so part of the transaction. PRAGMA takes
         * no bound parameters; v is our own integer. */
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d; COMMIT;", v);
        if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(st->db, m->sql, NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
            int err = hlpt_why(why, len, HLPT_ERR_DB, "migration %s: %s", m->name, msg ? msg : "failed");
            sqlite3_free(msg);
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
            return err;
        }
    }
    return HLPT_OK;
}

int hlpt_store_open_at(hlpt_store **out, const char *path, int version, char *why, size_t len) {
    *out = NULL;
    if (version < 0 || version > hlpt_migrations_count)
        return hlpt_why(why, len, HLPT_ERR_INVAL, "no schema version %d", version);
    hlpt_store *st = calloc(1, sizeof *st);
    if (!st) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    int err;
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        err = hlpt_why(why, len, HLPT_ERR_DB, "open %s: %s", path, st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, 5000);
    char *msg = NULL;
    /* WAL: readers (hlpt tools, backups) never block the writer. synchronous=NORMAL is durable across
     * process crashes in WAL mode and loses at most the last commits on power loss. */
    if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
                     NULL, NULL, &msg) != SQLITE_OK) {
        err = hlpt_why(why, len, HLPT_ERR_DB, "open %s: %s", path, msg ? msg : "pragma failed");
        sqlite3_free(msg);
        goto fail;
    }
    if ((err = migrate(st, version, why, len))) goto fail;
    *out = st;
    return HLPT_OK;
fail:
    hlpt_store_close(st);
    return err;
}

int hlpt_store_open(hlpt_store **out, const char *path, char *why, size_t len) {
    return hlpt_store_open_at(out, path, hlpt_migrations_count, why, len);
}

int hlpt_store_damaged(const hlpt_store *st) { return st && atomic_load(&st->damaged); }

int hlpt_store_check(const char *path, char *why, size_t len) {
    sqlite3 *db = NULL;
    /* No CREATE: a data directory without a database yet is sound. */
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_CANTOPEN) {
        sqlite3_close(db);
        return HLPT_OK;
    }
    char found[512] = "";
    sqlite3_stmt *s = NULL;
    if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &s, NULL);
    /* quick_check answers one row "ok", or rows that each name a problem. */
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW) break;
        const char *t = (const char *)sqlite3_column_text(s, 0);
        if (t && strcmp(t, "ok") && !found[0]) snprintf(found, sizeof found, "%s", t);
    }
    if (rc != SQLITE_DONE && !found[0]) snprintf(found, sizeof found, "%s", db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_finalize(s);
    sqlite3_close(db);
    if (!found[0]) return HLPT_OK;
    return hlpt_why(why, len, HLPT_ERR_DB,
                    "database %s is damaged (%s); hlptd does not serve over a damaged store. Keep a copy of the data "
                    "directory, then recover with `sqlite3 %s .recover | sqlite3 recovered.db` and put recovered.db "
                    "in its place (removing the old -wal and -shm files), or move the database aside to start empty "
                    "(docs/faults.md)",
                    path, found, path);
}

void hlpt_store_close(hlpt_store *st) {
    if (!st) return;
    sqlite3_close(st->db);
    free(st);
}

/* ---- files ---------------------------------------------------------------------------------- */

#define FILE_COLS "id, filename, purpose, bytes, created_at, status, lines, stats, error"

void hlpt_file_free(hlpt_file *f) {
    if (!f) return;
    free(f->filename);
    free(f->purpose);
    free(f->status);
    free(f->stats);
    free(f->error);
    free(f);
}

static void file_free_v(void *p) { hlpt_file_free(p); }

void hlpt_file_list_free(hlpt_file **v, size_t n) {
    for (size_t i = 0; v && i < n; i++) hlpt_file_free(v[i]);
    free(v);
}

static void *file_row(sqlite3_stmt *s) {
    hlpt_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    int oom = 0;
    col_id(s, 0, f->id);
    f->filename = col_str(s, 1, &oom);
    f->purpose = col_str(s, 2, &oom);
    f->bytes = sqlite3_column_int64(s, 3);
    f->created_at = sqlite3_column_int64(s, 4);
    f->status = col_str(s, 5, &oom);
    f->lines = sqlite3_column_int64(s, 6);
    f->stats = col_str(s, 7, &oom);
    f->error = col_str(s, 8, &oom);
    if (oom) {
        hlpt_file_free(f);
        return NULL;
    }
    return f;
}

int hlpt_store_file_insert(hlpt_store *st, const char *filename, const char *purpose, const char *status,
                           const void *content, size_t n, int64_t lines, const char *stats, hlpt_file **out,
                           char *why, size_t len) {
    if (out) *out = NULL;
    char id[HLPT_ID_MAX];
    if (hlpt_id_new(id, HLPT_ID_FILE)) return hlpt_why(why, len, HLPT_ERR_IO, "getrandom failed");
    sqlite3_stmt *s;
    int err = prep(st,
                   "INSERT INTO files (id, filename, purpose, bytes, created_at, status, content, lines, stats)"
                   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                   &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    bind_text(s, 2, filename);
    bind_text(s, 3, purpose);
    sqlite3_bind_int64(s, 4, (int64_t)n);
    sqlite3_bind_int64(s, 5, now());
    bind_text(s, 6, status);
    /* A zero-length blob must still be non-NULL to satisfy the table's CHECK. */
    sqlite3_bind_blob64(s, 7, content ? content : "", (sqlite3_uint64)n, SQLITE_STATIC);
    sqlite3_bind_int64(s, 8, lines);
    bind_text(s, 9, stats);
    if ((err = exec_stmt(st, s, NULL, "insert file", why, len))) return err;
    return out ? hlpt_store_file_get(st, id, out, why, len) : HLPT_OK;
}

int hlpt_store_file_get(hlpt_store *st, const char *id, hlpt_file **out, char *why, size_t len) {
    sqlite3_stmt *s;
    *out = NULL;
    int err = prep(st, "SELECT " FILE_COLS " FROM files WHERE id = ?1 AND deleted_at IS NULL", &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    return fetch_one(st, s, file_row, (void **)out, "file", id, why, len);
}

int hlpt_store_file_list(hlpt_store *st, const char *after, int limit, hlpt_file ***out, size_t *n, int *has_more,
                         char *why, size_t len) {
    return list_page(st, "SELECT seq FROM files WHERE id = ?1",
                     "SELECT " FILE_COLS " FROM files WHERE seq < ?1 AND deleted_at IS NULL ORDER BY seq DESC LIMIT ?2", "file", after, limit,
                     file_row, file_free_v, (void ***)out, n, has_more, why, len);
}

int hlpt_store_file_content(hlpt_store *st, const char *id, void **buf, size_t *n, char *why, size_t len) {
    sqlite3_stmt *s;
    *buf = NULL;
    int err = prep(st, "SELECT content FROM files WHERE id = ?1 AND deleted_at IS NULL", &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    return read_blob(st, s, "file", id, buf, n, why, len);
}

/* How many jobs name the file, and how many of them still need its bytes. */
static int file_users(hlpt_store *st, const char *id, int64_t *all, int64_t *live, char *why, size_t len) {
    sqlite3_stmt *s;
    int err = prep(st,
                   "SELECT COUNT(*), COALESCE(SUM(status IN ('validating_files', 'queued', 'running', 'paused')), 0)"
                   " FROM jobs WHERE training_file = ?1 OR validation_file = ?1",
                   &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    if (sqlite3_step(s) == SQLITE_ROW) {
        *all = sqlite3_column_int64(s, 0);
        *live = sqlite3_column_int64(s, 1);
    } else {
        err = db_fail(st, "file users", why, len);
    }
    sqlite3_finalize(s);
    return err;
}

int hlpt_store_file_delete(hlpt_store *st, const char *id, char *why, size_t len) {
    int64_t all = 0, live = 0;
    int err = file_users(st, id, &all, &live, why, len), changes = 0;
    if (err) return err;
    if (live) return hlpt_why(why, len, HLPT_ERR_STATE, "file `%s` is used by a queued, running or paused fine-tuning job", id);
    /* Finished jobs keep naming the file: the row stays, without its bytes, marked deleted. */
    sqlite3_stmt *s;
    err = prep(st,
               all ? "UPDATE files SET content = x'', path = NULL, deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL"
                   : "DELETE FROM files WHERE id = ?1 AND deleted_at IS NULL",
               &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    if (all) sqlite3_bind_int64(s, 2, now());
    err = exec_stmt(st, s, &changes, "delete file", why, len);
    if (err && sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_FOREIGNKEY)
        return hlpt_why(why, len, HLPT_ERR_STATE, "file `%s` is used by a fine-tuning job", id);
    if (!err && changes == 0) err = hlpt_why(why, len, HLPT_ERR_NOENT, "no file `%s`", id);
    return err;
}

/* ---- jobs ----------------------------------------------------------------------------------- */

#define JOB_COLS                                                                                    \
    "id, status, model, training_file, validation_file, method, hyperparameters, seed, suffix, "    \
    "created_at, started_at, finished_at, error, fine_tuned_model, step, total_steps, epoch, "      \
    "tokens_per_s, queue_order, metadata, integrations, trained_tokens, result_file"

void hlpt_job_free(hlpt_job *j) {
    if (!j) return;
    free(j->status);
    free(j->model);
    free(j->training_file);
    free(j->validation_file);
    free(j->method);
    free(j->hyperparameters);
    free(j->suffix);
    free(j->error);
    free(j->fine_tuned_model);
    free(j->metadata);
    free(j->integrations);
    free(j->result_file);
    free(j);
}

static void job_free_v(void *p) { hlpt_job_free(p); }

void hlpt_job_list_free(hlpt_job **v, size_t n) {
    for (size_t i = 0; v && i < n; i++) hlpt_job_free(v[i]);
    free(v);
}

static void *job_row(sqlite3_stmt *s) {
    hlpt_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    int oom = 0;
    col_id(s, 0, j->id);
    j->status = col_str(s, 1, &oom);
    j->model = col_str(s, 2, &oom);
    j->training_file = col_str(s, 3, &oom);
    j->validation_file = col_str(s, 4, &oom);
    j->method = col_str(s, 5, &oom);
    j->hyperparameters = col_str(s, 6, &oom);
    j->seed = sqlite3_column_int64(s, 7);
    j->suffix = col_str(s, 8, &oom);
    j->created_at = sqlite3_column_int64(s, 9);
    j->started_at = sqlite3_column_int64(s, 10);
    j->finished_at = sqlite3_column_int64(s, 11);
    j->error = col_str(s, 12, &oom);
    j->fine_tuned_model = col_str(s, 13, &oom);
    j->step = sqlite3_column_int64(s, 14);
    j->total_steps = sqlite3_column_int64(s, 15);
    j->epoch = sqlite3_column_double(s, 16);
    j->tokens_per_s = sqlite3_column_double(s, 17);
    j->queue_order = sqlite3_column_int64(s, 18);
    j->metadata = col_str(s, 19, &oom);
    j->integrations = col_str(s, 20, &oom);
    j->trained_tokens = sqlite3_column_type(s, 21) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 21);
    j->result_file = col_str(s, 22, &oom);
    if (oom) {
        hlpt_job_free(j);
        return NULL;
    }
    return j;
}

static int file_exists(hlpt_store *st, const char *id, const char *param, char *why, size_t len) {
    hlpt_file *f;
    int err = hlpt_store_file_get(st, id, &f, why, len);
    hlpt_file_free(f);
    if (err == HLPT_ERR_NOENT) return hlpt_why(why, len, HLPT_ERR_NOENT, "%s: no file `%s`", param, id);
    return err;
}

int hlpt_store_job_insert(hlpt_store *st, const hlpt_job_new *in, hlpt_job **out, char *why, size_t len) {
    if (out) *out = NULL;
    if (!in->status || !in->model || !in->training_file || !in->method || !in->hyperparameters)
        return hlpt_why(why, len, HLPT_ERR_INVAL, "job: status, model, training_file, method and hyperparameters are required");
    int err;
    if ((err = file_exists(st, in->training_file, "training_file", why, len))) return err;
    if (in->validation_file && (err = file_exists(st, in->validation_file, "validation_file", why, len))) return err;
    char id[HLPT_ID_MAX];
    if (hlpt_id_new(id, HLPT_ID_JOB)) return hlpt_why(why, len, HLPT_ERR_IO, "getrandom failed");
    sqlite3_stmt *s;
    err = prep(st,
               "INSERT INTO jobs (id, status, model, training_file, validation_file, method, hyperparameters, seed,"
               " suffix, created_at, metadata, integrations, queue_order)"
               " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
               " (SELECT COALESCE(MAX(queue_order), 0) + 1 FROM jobs))",
               &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    bind_text(s, 2, in->status);
    bind_text(s, 3, in->model);
    bind_text(s, 4, in->training_file);
    bind_text(s, 5, in->validation_file);
    bind_text(s, 6, in->method);
    bind_text(s, 7, in->hyperparameters);
    sqlite3_bind_int64(s, 8, in->seed);
    bind_text(s, 9, in->suffix);
    sqlite3_bind_int64(s, 10, now());
    bind_text(s, 11, in->metadata);
    bind_text(s, 12, in->integrations);
    if ((err = exec_stmt(st, s, NULL, "insert job", why, len))) return err;
    return out ? hlpt_store_job_get(st, id, out, why, len) : HLPT_OK;
}

int hlpt_store_job_get(hlpt_store *st, const char *id, hlpt_job **out, char *why, size_t len) {
    sqlite3_stmt *s;
    *out = NULL;
    int err = prep(st, "SELECT " JOB_COLS " FROM jobs WHERE id = ?1", &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    return fetch_one(st, s, job_row, (void **)out, "fine-tuning job", id, why, len);
}

int hlpt_store_job_list(hlpt_store *st, const char *after, int limit, hlpt_job ***out, size_t *n, int *has_more,
                        char *why, size_t len) {
    return list_page(st, "SELECT seq FROM jobs WHERE id = ?1",
                     "SELECT " JOB_COLS " FROM jobs WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2", "fine-tuning job",
                     after, limit, job_row, job_free_v, (void ***)out, n, has_more, why, len);
}

/* Runs an UPDATE on one job (?1 = id) and turns "no row changed" into NOENT. */
static int job_update(hlpt_store *st, sqlite3_stmt *s, const char *id, char *why, size_t len) {
    int changes = 0, err = exec_stmt(st, s, &changes, "update job", why, len);
    if (!err && changes == 0) err = hlpt_why(why, len, HLPT_ERR_NOENT, "no fine-tuning job `%s`", id);
    return err;
}

int hlpt_store_job_set_status(hlpt_store *st, const char *id, const char *status, const char *error, char *why,
                              size_t len) {
    static const char *const final[] = {"succeeded", "failed", "cancelled"};
    int is_final = 0;
    for (size_t i = 0; i < sizeof final / sizeof final[0]; i++) is_final |= strcmp(status, final[i]) == 0;
    sqlite3_stmt *s;
    int err = prep(st,
                   "UPDATE jobs SET status = ?2, error = COALESCE(?3, error),"
                   " started_at = CASE WHEN ?2 = 'running' AND started_at IS NULL THEN ?4 ELSE started_at END,"
                   " finished_at = CASE WHEN ?5 THEN ?4 ELSE finished_at END"
                   " WHERE id = ?1",
                   &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    bind_text(s, 2, status);
    bind_text(s, 3, error);
    sqlite3_bind_int64(s, 4, now());
    sqlite3_bind_int(s, 5, is_final);
    return job_update(st, s, id, why, len);
}

int hlpt_store_job_set_progress(hlpt_store *st, const char *id, int64_t step, int64_t total_steps, double epoch,
                                double tokens_per_s, char *why, size_t len) {
    sqlite3_stmt *s;
    int err = prep(st, "UPDATE jobs SET step = ?2, total_steps = ?3, epoch = ?4, tokens_per_s = ?5 WHERE id = ?1", &s,
                   why, len);
    if (err) return err;
    bind_text(s, 1, id);
    sqlite3_bind_int64(s, 2, step);
    sqlite3_bind_int64(s, 3, total_steps);
    sqlite3_bind_double(s, 4, epoch);
    sqlite3_bind_double(s, 5, tokens_per_s);
    return job_update(st, s, id, why, len);
}

int hlpt_store_job_set_fine_tuned_model(hlpt_store *st, const char *id, const char *name, char *why, size_t len) {
    sqlite3_stmt *s;
    int err = prep(st, "UPDATE jobs SET fine_tuned_model = ?2 WHERE id = ?1", &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    bind_text(s, 2, name);
    return job_update(st, s, id, why, len);
}

int hlpt_store_job_set_results(hlpt_store *st, const char *id, int64_t trained_tokens, const char *result_file,
                               char *why, size_t len) {
    sqlite3_stmt *s;
    int err = prep(st, "UPDATE jobs SET trained_tokens = ?2, result_file = COALESCE(?3, result_file) WHERE id = ?1", &s,
                   why, len);
    if (err) return err;
    bind_text(s, 1, id);
    sqlite3_bind_int64(s, 2, trained_tokens);
    bind_text(s, 3, result_file);
    return job_update(st, s, id, why, len);
}

int hlpt_store_job_next_queued(hlpt_store *st, hlpt_job **out, char *why, size_t len) {
    sqlite3_stmt *s;
    *out = NULL;
    int err = prep(st, "SELECT " JOB_COLS " FROM jobs WHERE status = 'queued' ORDER BY queue_order LIMIT 1", &s, why,
                   len);
    if (err) return err;
    err = fetch_one(st, s, job_row, (void **)out, "queued job", "", why, len);
    return err == HLPT_ERR_NOENT ? HLPT_OK : err;
}

static void *id_row(sqlite3_stmt *s) {
    const unsigned char *t = sqlite3_column_text(s, 0);
    return strdup(t ? (const char *)t : "");
}

int hlpt_store_job_ids_with_status(hlpt_store *st, const char *status, char ***ids, size_t *n, char *why,
                                   size_t len) {
    sqlite3_stmt *s;
    *ids = NULL;
    *n = 0;
    int err = prep(st, "SELECT id FROM jobs WHERE status = ?1 ORDER BY queue_order", &s, why, len);
    if (err) return err;
    bind_text(s, 1, status);
    return collect(st, s, -1, id_row, free, (void ***)ids, n, NULL, why, len);
}

void hlpt_store_ids_free(char **ids, size_t n) {
    for (size_t i = 0; ids && i < n; i++) free(ids[i]);
    free(ids);
}

int hlpt_store_job_delete(hlpt_store *st, const char *id, char *why, size_t len) {
    sqlite3_stmt *s;
    int err = prep(st, "DELETE FROM jobs WHERE id = ?1", &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    return job_update(st, s, id, why, len);
}

/* ---- job events ----------------------------------------------------------------------------- */

#define EVENT_COLS "seq, id, job_id, created_at, level, message, data"

void hlpt_event_free(hlpt_event *e) {
    if (!e) return;
    free(e->level);
    free(e->message);
    free(e->data);
    free(e);
}

static void event_free_v(void *p) { hlpt_event_free(p); }

void hlpt_event_list_free(hlpt_event **v, size_t n) {
    for (size_t i = 0; v && i < n; i++) hlpt_event_free(v[i]);
    free(v);
}

static void *event_row(sqlite3_stmt *s) {
    hlpt_event *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    int oom = 0;
    e->seq = sqlite3_column_int64(s, 0);
    col_id(s, 1, e->id);
    col_id(s, 2, e->job_id);
    e->created_at = sqlite3_column_int64(s, 3);
    e->level = col_str(s, 4, &oom);
    e->message = col_str(s, 5, &oom);
    e->data = col_str(s, 6, &oom);
    if (oom) {
        hlpt_event_free(e);
        return NULL;
    }
    return e;
}

int hlpt_store_event_add(hlpt_store *st, const char *job_id, const char *level, const char *message,
                         const char *data, hlpt_event **out, char *why, size_t len) {
    if (out) *out = NULL;
    char id[HLPT_ID_MAX];
    if (hlpt_id_new(id, HLPT_ID_EVENT)) return hlpt_why(why, len, HLPT_ERR_IO, "getrandom failed");
    sqlite3_stmt *s;
    int err = prep(st, "INSERT INTO job_events (id, job_id, created_at, level, message, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                   &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    bind_text(s, 2, job_id);
    sqlite3_bind_int64(s, 3, now());
    bind_text(s, 4, level);
    bind_text(s, 5, message);
    bind_text(s, 6, data);
    err = exec_stmt(st, s, NULL, "insert event", why, len);
    if (err && sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_FOREIGNKEY)
        return hlpt_why(why, len, HLPT_ERR_NOENT, "no fine-tuning job `%s`", job_id);
    if (err || !out) return err;
    if ((err = prep(st, "SELECT " EVENT_COLS " FROM job_events WHERE id = ?1", &s, why, len))) return err;
    bind_text(s, 1, id);
    return fetch_one(st, s, event_row, (void **)out, "event", id, why, len);
}

int hlpt_store_event_list(hlpt_store *st, const char *job_id, int64_t since_seq, int limit, hlpt_event ***out,
                          size_t *n, int *has_more, char *why, size_t len) {
    sqlite3_stmt *s;
    *out = NULL;
    *n = 0;
    if (limit < 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "limit must not be negative");
    int err = prep(st, "SELECT " EVENT_COLS " FROM job_events WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3", &s,
                   why, len);
    if (err) return err;
    bind_text(s, 1, job_id);
    sqlite3_bind_int64(s, 2, since_seq);
    sqlite3_bind_int64(s, 3, (int64_t)limit + 1);
    return collect(st, s, limit, event_row, event_free_v, (void ***)out, n, has_more, why, len);
}

/* A newest-first page of one job's rows: seq_sql selects the seq of ?1 within job ?2, list_sql takes
 * ?1 = job, ?2 = seq bound (exclusive), ?3 = limit + 1. */
static int job_page(hlpt_store *st, const char *seq_sql, const char *list_sql, const char *what, const char *job_id,
                    const char *after, int limit, row_fn conv, row_free_fn rfree, void ***out, size_t *n,
                    int *has_more, char *why, size_t len) {
    *out = NULL;
    *n = 0;
    if (limit < 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "limit must not be negative");
    int64_t bound = INT64_MAX;
    sqlite3_stmt *s;
    int err;
    if (after) {
        if ((err = prep(st, seq_sql, &s, why, len))) return err;
        bind_text(s, 1, after);
        bind_text(s, 2, job_id);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) bound = sqlite3_column_int64(s, 0);
        else if (rc == SQLITE_DONE) err = hlpt_why(why, len, HLPT_ERR_NOENT, "no %s `%s` in job `%s` (after)", what, after, job_id);
        else err = db_fail(st, what, why, len);
        sqlite3_finalize(s);
        if (err) return err;
    }
    if ((err = prep(st, list_sql, &s, why, len))) return err;
    bind_text(s, 1, job_id);
    sqlite3_bind_int64(s, 2, bound);
    sqlite3_bind_int64(s, 3, (int64_t)limit + 1);
    return collect(st, s, limit, conv, rfree, out, n, has_more, why, len);
}

int hlpt_store_event_page(hlpt_store *st, const char *job_id, const char *after, int limit, hlpt_event ***out,
                          size_t *n, int *has_more, char *why, size_t len) {
    return job_page(st, "SELECT seq FROM job_events WHERE id = ?1 AND job_id = ?2",
                    "SELECT " EVENT_COLS " FROM job_events WHERE job_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
                    "event", job_id, after, limit, event_row, event_free_v, (void ***)out, n, has_more, why, len);
}

/* ---- metrics -------------------------------------------------------------------------------- */

int hlpt_store_job_rewind(hlpt_store *st, const char *job_id, int64_t step, char *why, size_t len) {
    static const char *const sql[] = {
        "DELETE FROM metrics WHERE job_id = ?1 AND step > ?2",
        "DELETE FROM job_events WHERE job_id = ?1 AND json_valid(data) AND json_extract(data, '$.type') = 'progress'"
        " AND json_extract(data, '$.step') > ?2",
    };
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        sqlite3_stmt *s;
        int err = prep(st, sql[i], &s, why, len);
        if (err) return err;
        bind_text(s, 1, job_id);
        sqlite3_bind_int64(s, 2, step);
        if ((err = exec_stmt(st, s, NULL, "rewind job", why, len))) return err;
    }
    return HLPT_OK;
}

int hlpt_store_metric_put(hlpt_store *st, const char *job_id, const hlpt_metric *m, char *why, size_t len) {
    sqlite3_stmt *s;
    int err = prep(st,
                   "INSERT OR REPLACE INTO metrics (job_id, step, train_loss, valid_loss, valid_acc, lr, tokens_per_s,"
                   " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                   &s, why, len);
    if (err) return err;
    bind_text(s, 1, job_id);
    sqlite3_bind_int64(s, 2, m->step);
    bind_real(s, 3, m->train_loss);
    bind_real(s, 4, m->valid_loss);
    bind_real(s, 5, m->valid_acc);
    bind_real(s, 6, m->lr);
    bind_real(s, 7, m->tokens_per_s);
    sqlite3_bind_int64(s, 8, now());
    err = exec_stmt(st, s, NULL, "insert metric", why, len);
    if (err && sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_FOREIGNKEY)
        return hlpt_why(why, len, HLPT_ERR_NOENT, "no fine-tuning job `%s`", job_id);
    return err;
}

int hlpt_store_metric_list(hlpt_store *st, const char *job_id, int64_t since_step, int limit, hlpt_metric **out,
                           size_t *n, char *why, size_t len) {
    sqlite3_stmt *s;
    *out = NULL;
    *n = 0;
    int err = prep(st,
                   "SELECT step, train_loss, valid_loss, valid_acc, lr, tokens_per_s, created_at FROM metrics"
                   " WHERE job_id = ?1 AND step > ?2 ORDER BY step LIMIT ?3",
                   &s, why, len);
    if (err) return err;
    bind_text(s, 1, job_id);
    sqlite3_bind_int64(s, 2, since_step);
    sqlite3_bind_int64(s, 3, limit < 0 ? -1 : limit);
    hlpt_metric *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? 2 * cap : 64;
            hlpt_metric *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
                goto out;
            }
            v = nv;
        }
        v[cnt++] = (hlpt_metric){sqlite3_column_int64(s, 0), col_real(s, 1), col_real(s, 2), col_real(s, 3),
                                 col_real(s, 4), col_real(s, 5), sqlite3_column_int64(s, 6)};
    }
    if (rc != SQLITE_DONE) err = db_fail(st, "list metrics", why, len);
out:
    sqlite3_finalize(s);
    if (err) {
        free(v);
        return err;
    }
    *out = v;
    *n = cnt;
    return HLPT_OK;
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

#define CKPT_COLS "id, job_id, step, metrics, length(state), created_at"

void hlpt_checkpoint_free(hlpt_checkpoint *c) {
    if (!c) return;
    free(c->metrics);
    free(c);
}

static void checkpoint_free_v(void *p) { hlpt_checkpoint_free(p); }

void hlpt_checkpoint_list_free(hlpt_checkpoint **v, size_t n) {
    for (size_t i = 0; v && i < n; i++) hlpt_checkpoint_free(v[i]);
    free(v);
}

static void *ckpt_row(sqlite3_stmt *s) {
    hlpt_checkpoint *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    int oom = 0;
    col_id(s, 0, c->id);
    col_id(s, 1, c->job_id);
    c->step = sqlite3_column_int64(s, 2);
    c->metrics = col_str(s, 3, &oom);
    c->bytes = sqlite3_column_int64(s, 4);
    c->created_at = sqlite3_column_int64(s, 5);
    if (oom) {
        hlpt_checkpoint_free(c);
        return NULL;
    }
    return c;
}

int hlpt_store_checkpoint_insert(hlpt_store *st, const char *job_id, int64_t step, const char *metrics,
                                 const void *state, size_t n, hlpt_checkpoint **out, char *why, size_t len) {
    if (out) *out = NULL;
    char id[HLPT_ID_MAX];
    if (hlpt_id_new(id, HLPT_ID_CHECKPOINT)) return hlpt_why(why, len, HLPT_ERR_IO, "getrandom failed");
    sqlite3_stmt *s;
    int err = prep(st, "INSERT INTO checkpoints (id, job_id, step, metrics, state, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                   &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    bind_text(s, 2, job_id);
    sqlite3_bind_int64(s, 3, step);
    bind_text(s, 4, metrics);
    sqlite3_bind_blob64(s, 5, state ? state : "", (sqlite3_uint64)n, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, now());
    err = exec_stmt(st, s, NULL, "insert checkpoint", why, len);
    if (err && sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_FOREIGNKEY)
        return hlpt_why(why, len, HLPT_ERR_NOENT, "no fine-tuning job `%s`", job_id);
    if (err || !out) return err;
    if ((err = prep(st, "SELECT " CKPT_COLS " FROM checkpoints WHERE id = ?1", &s, why, len))) return err;
    bind_text(s, 1, id);
    return fetch_one(st, s, ckpt_row, (void **)out, "checkpoint", id, why, len);
}

int hlpt_store_checkpoint_list(hlpt_store *st, const char *job_id, hlpt_checkpoint ***out, size_t *n, char *why,
                               size_t len) {
    sqlite3_stmt *s;
    *out = NULL;
    *n = 0;
    int err = prep(st, "SELECT " CKPT_COLS " FROM checkpoints WHERE job_id = ?1 ORDER BY step, seq", &s, why, len);
    if (err) return err;
    bind_text(s, 1, job_id);
    return collect(st, s, -1, ckpt_row, checkpoint_free_v, (void ***)out, n, NULL, why, len);
}

int hlpt_store_checkpoint_page(hlpt_store *st, const char *job_id, const char *after, int limit,
                               hlpt_checkpoint ***out, size_t *n, int *has_more, char *why, size_t len) {
    return job_page(st, "SELECT seq FROM checkpoints WHERE id = ?1 AND job_id = ?2",
                    "SELECT " CKPT_COLS " FROM checkpoints WHERE job_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
                    "checkpoint", job_id, after, limit, ckpt_row, checkpoint_free_v, (void ***)out, n, has_more, why,
                    len);
}

int hlpt_store_checkpoint_at_step(hlpt_store *st, const char *job_id, int64_t step, hlpt_checkpoint **out, char *why,
                                  size_t len) {
    sqlite3_stmt *s;
    *out = NULL;
    int err = prep(st, "SELECT " CKPT_COLS " FROM checkpoints WHERE job_id = ?1 AND step = ?2 ORDER BY seq DESC LIMIT 1",
                   &s, why, len);
    if (err) return err;
    bind_text(s, 1, job_id);
    sqlite3_bind_int64(s, 2, step);
    return fetch_one(st, s, ckpt_row, (void **)out, "checkpoint of job", job_id, why, len);
}

int hlpt_store_checkpoint_latest(hlpt_store *st, const char *job_id, hlpt_checkpoint **out, char *why, size_t len) {
    sqlite3_stmt *s;
    *out = NULL;
    int err = prep(st, "SELECT " CKPT_COLS " FROM checkpoints WHERE job_id = ?1 ORDER BY step DESC, seq DESC LIMIT 1",
                   &s, why, len);
    if (err) return err;
    bind_text(s, 1, job_id);
    err = fetch_one(st, s, ckpt_row, (void **)out, "checkpoint of job", job_id, why, len);
    return err == HLPT_ERR_NOENT ? HLPT_OK : err;
}

int hlpt_store_checkpoint_state(hlpt_store *st, const char *id, void **buf, size_t *n, char *why, size_t len) {
    sqlite3_stmt *s;
    *buf = NULL;
    int err = prep(st, "SELECT state FROM checkpoints WHERE id = ?1", &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    return read_blob(st, s, "checkpoint", id, buf, n, why, len);
}

int hlpt_store_checkpoint_delete(hlpt_store *st, const char *id, char *why, size_t len) {
    sqlite3_stmt *s;
    int err = prep(st, "DELETE FROM checkpoints WHERE id = ?1", &s, why, len), changes = 0;
    if (err) return err;
    bind_text(s, 1, id);
    err = exec_stmt(st, s, &changes, "delete checkpoint", why, len);
    if (!err && changes == 0) err = hlpt_why(why, len, HLPT_ERR_NOENT, "no checkpoint `%s`", id);
    return err;
}

/* ---- adapters ------------------------------------------------------------------------------- */

#define ADAPTER_COLS "id, name, config, bytes, base_hash, job_id, checkpoint_id, created_at"

void hlpt_adapter_rec_free(hlpt_adapter_rec *a) {
    if (!a) return;
    free(a->name);
    free(a->config);
    free(a->base_hash);
    free(a->job_id);
    free(a->checkpoint_id);
    free(a);
}

static void adapter_free_v(void *p) { hlpt_adapter_rec_free(p); }

void hlpt_adapter_rec_list_free(hlpt_adapter_rec **v, size_t n) {
    for (size_t i = 0; v && i < n; i++) hlpt_adapter_rec_free(v[i]);
    free(v);
}

static void *adapter_row(sqlite3_stmt *s) {
    hlpt_adapter_rec *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    int oom = 0;
    col_id(s, 0, a->id);
    a->name = col_str(s, 1, &oom);
    a->config = col_str(s, 2, &oom);
    a->bytes = sqlite3_column_int64(s, 3);
    a->base_hash = col_str(s, 4, &oom);
    a->job_id = col_str(s, 5, &oom);
    a->checkpoint_id = col_str(s, 6, &oom);
    a->created_at = sqlite3_column_int64(s, 7);
    if (oom) {
        hlpt_adapter_rec_free(a);
        return NULL;
    }
    return a;
}

int hlpt_store_adapter_insert(hlpt_store *st, const hlpt_adapter_rec_new *in, hlpt_adapter_rec **out, char *why, size_t len) {
    if (out) *out = NULL;
    if (!in->name || !*in->name || !in->config)
        return hlpt_why(why, len, HLPT_ERR_INVAL, "adapter: name and config are required");
    char id[HLPT_ID_MAX];
    if (hlpt_id_new(id, HLPT_ID_ADAPTER)) return hlpt_why(why, len, HLPT_ERR_IO, "getrandom failed");
    sqlite3_stmt *s;
    int err = prep(st,
                   "INSERT INTO adapters (id, name, config, weights, base_hash, job_id, checkpoint_id, created_at, bytes)"
                   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                   &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    bind_text(s, 2, in->name);
    bind_text(s, 3, in->config);
    sqlite3_bind_blob64(s, 4, in->weights ? in->weights : "", (sqlite3_uint64)in->weights_bytes, SQLITE_STATIC);
    bind_text(s, 5, in->base_hash);
    bind_text(s, 6, in->job_id);
    bind_text(s, 7, in->checkpoint_id);
    sqlite3_bind_int64(s, 8, now());
    sqlite3_bind_int64(s, 9, (int64_t)in->weights_bytes);
    err = exec_stmt(st, s, NULL, "insert adapter", why, len);
    if (err) {
        int x = sqlite3_extended_errcode(st->db);
        if (x == SQLITE_CONSTRAINT_UNIQUE)
            return hlpt_why(why, len, HLPT_ERR_EXISTS, "an adapter named `%s` exists", in->name);
        if (x == SQLITE_CONSTRAINT_FOREIGNKEY)
            return hlpt_why(why, len, HLPT_ERR_NOENT, "adapter `%s`: no such job or checkpoint", in->name);
        return err;
    }
    return out ? hlpt_store_adapter_get(st, id, out, why, len) : HLPT_OK;
}

int hlpt_store_adapter_get(hlpt_store *st, const char *id_or_name, hlpt_adapter_rec **out, char *why, size_t len) {
    sqlite3_stmt *s;
    *out = NULL;
    int err = prep(st, "SELECT " ADAPTER_COLS " FROM adapters WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC LIMIT 1", &s, why, len);
    if (err) return err;
    bind_text(s, 1, id_or_name);
    return fetch_one(st, s, adapter_row, (void **)out, "adapter", id_or_name, why, len);
}

int hlpt_store_adapter_list(hlpt_store *st, const char *after, int limit, hlpt_adapter_rec ***out, size_t *n,
                            int *has_more, char *why, size_t len) {
    return list_page(st, "SELECT seq FROM adapters WHERE id = ?1",
                     "SELECT " ADAPTER_COLS " FROM adapters WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2", "adapter",
                     after, limit, adapter_row, adapter_free_v, (void ***)out, n, has_more, why, len);
}

int hlpt_store_adapter_weights(hlpt_store *st, const char *id, void **buf, size_t *n, char *why, size_t len) {
    sqlite3_stmt *s;
    *buf = NULL;
    int err = prep(st, "SELECT weights FROM adapters WHERE id = ?1", &s, why, len);
    if (err) return err;
    bind_text(s, 1, id);
    return read_blob(st, s, "adapter", id, buf, n, why, len);
}

int hlpt_store_adapter_delete(hlpt_store *st, const char *id, char *why, size_t len) {
    sqlite3_stmt *s;
    int err = prep(st, "DELETE FROM adapters WHERE id = ?1", &s, why, len), changes = 0;
    if (err) return err;
    bind_text(s, 1, id);
    err = exec_stmt(st, s, &changes, "delete adapter", why, len);
    if (!err && changes == 0) err = hlpt_why(why, len, HLPT_ERR_NOENT, "no adapter `%s`", id);
    return err;
}
