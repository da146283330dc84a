/*
 * store.c - see store.h: the store's interface and its row types, over a backend
 * (store_backend.h: SQLite, store_sqlite.c, or PostgreSQL, store_pg.c).
 *
 * DESIGN
 * Each row type is described once, as a table of its columns: the SQL name, the kind of value
 * (text, JSON text, an inline string such as an id or a hash, an integer, a real, a job state),
 * where it lives in the row's struct, and whether an insert writes it and whether it names a blob.
 * From that table alone come the column list of every SELECT, the reading of a row into its
 * struct, the freeing of one, every INSERT, and the question whether any row still names a blob.
 * What is left per type is what differs: the conditions and order of its queries.
 *
 * Blobs: a delete notes the blobs of the rows it removes. At the commit of the transaction it ran
 * in (its own, or the caller's), the noted blobs that no row names any more are removed: decided
 * inside the transaction, removed after the commit, so a rolled-back delete never leaves a row
 * without its blob, and a crash in between leaves only an unnamed blob, which the next start's
 * sweep removes. An insert given a sealed temporary adopts it (blobs.h) right before its row goes
 * in, and notes it: a rollback, or a commit without the row, removes it again unless a row names
 * the same bytes. Blobs come into place only on the store's thread, in the step that names them
 * (this way, or the migration's), so "no row names it" always means "no row will": a delete cannot
 * take a blob from under a writer whose row is on its way.
 */
#include "store.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "hlpt/err.h"
#include "store_backend.h"

typedef struct {
    char sha256[HLPT_SHA256_HEX];
    int adopted; /* put into place in this transaction, for a row it inserts */
    int unnamed; /* decided at the commit: no row names it, it goes */
} noted_blob;

struct hlptd_store {
    const hlptd_store_backend *be;
    hlptd_db *db;
    hlptd_blobs *blobs;                 /* borrowed */
    int in_tx;                          /* a transaction is open */
    noted_blob *noted;                  /* blobs this transaction removed rows of, or adopted */
    size_t nnoted, cap;
    int (*on_full)(void *ctx);
    void *on_full_ctx;
};

void hlptd_store_on_full(hlptd_store *st, int (*fn)(void *ctx), void *ctx) {
    st->on_full = fn;
    st->on_full_ctx = ctx;
}

static int64_t now(void) { return (int64_t)time(NULL); }

/* ---- ids ------------------------------------------------------------------------------------ */

int hlptd_id_new(char out[HLPTD_ID_MAX], const char *prefix) {
    static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    size_t p = strlen(prefix);
    HLPT_ASSERT(p + HLPTD_ID_RANDOM_CHARS < HLPTD_ID_MAX);
    memcpy(out, prefix, p);
    size_t filled = 0;
    while (filled < HLPTD_ID_RANDOM_CHARS) {
        unsigned char r[64];
        ssize_t got = getrandom(r, sizeof r, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return HLPT_ERR_IO;
        }
        /* Rejection sampling keeps the characters uniform: 248 = 4 * 62. */
        for (ssize_t i = 0; i < got && filled < HLPTD_ID_RANDOM_CHARS; i++)
            if (r[i] < 248) out[p + filled++] = b62[r[i] % 62];
    }
    out[p + filled] = 0;
    return HLPT_OK;
}

/* ---- row types ------------------------------------------------------------------------------ */

typedef enum {
    K_TEXT,  /* char *, owned; NULL is SQL NULL */
    K_JSON,  /* char *, owned JSON text; NULL is SQL NULL */
    K_CHARS, /* char[cap] inline (ids, hashes); "" is SQL NULL */
    K_INT,   /* int64_t; SQL NULL reads 0 (or -1 with NULL_NEG) */
    K_REAL,  /* double; NAN is SQL NULL */
    K_STATE, /* hlptd_job_state, stored as its name */
} col_kind;

enum {
    INS = 1,      /* an insert writes it (else the column's default, e.g. NULL or seq) */
    BLOB = 2,     /* K_CHARS naming a blob by its SHA-256 */
    NULL_NEG = 4, /* K_INT: -1 is SQL NULL */
};

typedef struct {
    const char *name; /* the SQL column */
    col_kind kind;
    size_t off;       /* offsetof in the row struct */
    size_t cap;       /* sizeof the field (K_CHARS: the array) */
    unsigned flags;
} col;

typedef struct {
    const char *table; /* SQL table */
    const char *what;  /* for messages: "no <what> `id`" */
    size_t size;       /* sizeof the row struct */
    const col *cols;
    size_t ncols;
} row_type;

#define COL(T, f, k, fl) {#f, k, offsetof(T, f), sizeof(((T *)0)->f), fl}
#define ROW_TYPE(T, table, what, cols) {table, what, sizeof(T), cols, sizeof cols / sizeof cols[0]}

static const col file_cols[] = {
    COL(hlptd_file, id, K_CHARS, INS),          COL(hlptd_file, filename, K_TEXT, INS),
    COL(hlptd_file, purpose, K_TEXT, INS),      COL(hlptd_file, bytes, K_INT, INS),
    COL(hlptd_file, created_at, K_INT, INS),    COL(hlptd_file, status, K_TEXT, INS),
    COL(hlptd_file, lines, K_INT, INS),         COL(hlptd_file, stats, K_JSON, INS),
    COL(hlptd_file, error, K_TEXT, INS),        COL(hlptd_file, sha256, K_CHARS, INS | BLOB),
};
static const row_type file_t = ROW_TYPE(hlptd_file, "files", "file", file_cols);

static const col job_cols[] = {
    COL(hlptd_job, id, K_CHARS, INS),
    COL(hlptd_job, status, K_STATE, INS),
    COL(hlptd_job, model, K_TEXT, INS),
    COL(hlptd_job, training_file, K_TEXT, INS),
    COL(hlptd_job, validation_file, K_TEXT, INS),
    COL(hlptd_job, method, K_JSON, INS),
    COL(hlptd_job, hyperparameters, K_JSON, INS),
    COL(hlptd_job, seed, K_INT, INS),
    COL(hlptd_job, suffix, K_TEXT, INS),
    COL(hlptd_job, created_at, K_INT, INS),
    COL(hlptd_job, started_at, K_INT, 0),
    COL(hlptd_job, finished_at, K_INT, 0),
    COL(hlptd_job, error, K_JSON, 0),
    COL(hlptd_job, fine_tuned_model, K_TEXT, 0),
    COL(hlptd_job, step, K_INT, 0),
    COL(hlptd_job, total_steps, K_INT, 0),
    COL(hlptd_job, epoch, K_REAL, 0),
    COL(hlptd_job, tokens_per_s, K_REAL, 0),
    COL(hlptd_job, queue_order, K_INT, INS),
    COL(hlptd_job, metadata, K_JSON, INS),
    COL(hlptd_job, integrations, K_JSON, INS),
    COL(hlptd_job, trained_tokens, K_INT, NULL_NEG),
    COL(hlptd_job, result_file, K_TEXT, 0),
    COL(hlptd_job, node, K_TEXT, 0),
    COL(hlptd_job, lease_epoch, K_INT, 0),
    COL(hlptd_job, lease_until, K_INT, 0),
};
static const row_type job_t = ROW_TYPE(hlptd_job, "jobs", "fine-tuning job", job_cols);

static const col event_cols[] = {
    COL(hlptd_job_event, seq, K_INT, 0),          COL(hlptd_job_event, id, K_CHARS, INS),
    COL(hlptd_job_event, job_id, K_CHARS, INS),   COL(hlptd_job_event, created_at, K_INT, INS),
    COL(hlptd_job_event, level, K_TEXT, INS),     COL(hlptd_job_event, message, K_TEXT, INS),
    COL(hlptd_job_event, data, K_JSON, INS),
};
static const row_type event_t = ROW_TYPE(hlptd_job_event, "job_events", "event", event_cols);

/* A metric row's job is the query's, not the struct's: metric_put writes job_id itself. */
static const col metric_cols[] = {
    COL(hlptd_metric, step, K_INT, INS),       COL(hlptd_metric, train_loss, K_REAL, INS),
    COL(hlptd_metric, valid_loss, K_REAL, INS), COL(hlptd_metric, valid_acc, K_REAL, INS),
    COL(hlptd_metric, lr, K_REAL, INS),         COL(hlptd_metric, tokens_per_s, K_REAL, INS),
    COL(hlptd_metric, created_at, K_INT, INS),
};
static const row_type metric_t = ROW_TYPE(hlptd_metric, "metrics", "metric", metric_cols);

static const col checkpoint_cols[] = {
    COL(hlptd_checkpoint, id, K_CHARS, INS),     COL(hlptd_checkpoint, job_id, K_CHARS, INS),
    COL(hlptd_checkpoint, step, K_INT, INS),     COL(hlptd_checkpoint, metrics, K_JSON, INS),
    COL(hlptd_checkpoint, bytes, K_INT, INS),    COL(hlptd_checkpoint, sha256, K_CHARS, INS | BLOB),
    COL(hlptd_checkpoint, created_at, K_INT, INS),
};
static const row_type checkpoint_t = ROW_TYPE(hlptd_checkpoint, "checkpoints", "checkpoint", checkpoint_cols);

static const col adapter_cols[] = {
    COL(hlptd_adapter_rec, id, K_CHARS, INS),          COL(hlptd_adapter_rec, name, K_TEXT, INS),
    COL(hlptd_adapter_rec, config, K_JSON, INS),       COL(hlptd_adapter_rec, bytes, K_INT, INS),
    COL(hlptd_adapter_rec, sha256, K_CHARS, INS | BLOB), COL(hlptd_adapter_rec, base_hash, K_TEXT, INS),
    COL(hlptd_adapter_rec, job_id, K_TEXT, INS),       COL(hlptd_adapter_rec, checkpoint_id, K_TEXT, INS),
    COL(hlptd_adapter_rec, created_at, K_INT, INS),
};
static const row_type adapter_t = ROW_TYPE(hlptd_adapter_rec, "adapters", "adapter", adapter_cols);

/* A job's lease: a view of jobs' columns (hlptd_lease). */
static const col lease_cols[] = {
    COL(hlptd_lease, id, K_CHARS, 0),          COL(hlptd_lease, node, K_TEXT, 0),
    COL(hlptd_lease, lease_epoch, K_INT, 0),   COL(hlptd_lease, lease_until, K_INT, 0),
    COL(hlptd_lease, status, K_STATE, 0),
};
static const row_type lease_t = ROW_TYPE(hlptd_lease, "jobs", "lease", lease_cols);

static const col node_cols[] = {
    COL(hlptd_node, id, K_TEXT, 0),         COL(hlptd_node, url, K_TEXT, 0),
    COL(hlptd_node, pid, K_INT, 0),         COL(hlptd_node, workers, K_INT, 0),
    COL(hlptd_node, running, K_INT, 0),     COL(hlptd_node, state, K_TEXT, 0),
    COL(hlptd_node, lease_ms, K_INT, 0),    COL(hlptd_node, started_at, K_INT, 0),
    COL(hlptd_node, heartbeat_at, K_INT, 0),
};
static const row_type node_t = ROW_TYPE(hlptd_node, "nodes", "node", node_cols);

static const row_type *const row_types[] = {&file_t, &job_t, &event_t, &metric_t, &checkpoint_t, &adapter_t};

static void *field(const void *row, const col *c) { return (char *)row + c->off; }

static void row_free(const row_type *t, void *row) {
    if (!row) return;
    for (size_t i = 0; i < t->ncols; i++)
        if (t->cols[i].kind == K_TEXT || t->cols[i].kind == K_JSON) free(*(char **)field(row, &t->cols[i]));
    free(row);
}

static void rows_free(const row_type *t, void **v, size_t n) {
    for (size_t i = 0; v && i < n; i++) row_free(t, v[i]);
    free(v);
}

static hlptd_db_val v_text(const char *s) {
    return s ? (hlptd_db_val){.type = HLPTD_DB_TEXT, .s = s} : (hlptd_db_val){.type = HLPTD_DB_NULL};
}
static hlptd_db_val v_int(int64_t i) { return (hlptd_db_val){.type = HLPTD_DB_INT, .i = i}; }
static hlptd_db_val v_real(double r) {
    return isnan(r) ? (hlptd_db_val){.type = HLPTD_DB_NULL} : (hlptd_db_val){.type = HLPTD_DB_REAL, .r = r};
}

/* A statement's parameters, ?1.. in order: ARGS(v_text(id), v_int(step)) is the array and its
 * length. */
#define ARGS(...) (const hlptd_db_val[]){__VA_ARGS__}, (int)(sizeof((hlptd_db_val[]){__VA_ARGS__}) / sizeof(hlptd_db_val))

/* Column c of a row as a parameter. */
static hlptd_db_val col_val(const col *c, const void *row) {
    const void *f = field(row, c);
    switch (c->kind) {
    case K_TEXT:
    case K_JSON: return v_text(*(char *const *)f);
    case K_CHARS: return v_text(*(const char *)f ? f : NULL);
    case K_INT: {
        int64_t i = *(const int64_t *)f;
        return (c->flags & NULL_NEG) && i == -1 ? v_text(NULL) : v_int(i);
    }
    case K_REAL: return v_real(*(const double *)f);
    case K_STATE: return v_text(hlptd_job_state_name(*(const hlptd_job_state *)f));
    }
    return v_text(NULL);
}

/* Reads the current row of s, whose columns are t's in order, into the struct at dst. Returns -1
 * when a string could not be copied (the strings that were stay in dst, for row_free). */
static int row_fill(const hlptd_store *st, const row_type *t, hlptd_db_stmt *s, void *dst) {
    int oom = 0;
    for (size_t i = 0; i < t->ncols; i++) {
        const col *c = &t->cols[i];
        void *f = field(dst, c);
        hlptd_db_val v;
        switch (c->kind) {
        case K_TEXT:
        case K_JSON:
            st->be->column(s, (int)i, HLPTD_DB_TEXT, &v);
            *(char **)f = v.type == HLPTD_DB_NULL ? NULL : strdup(v.s);
            oom |= v.type != HLPTD_DB_NULL && !*(char **)f;
            break;
        case K_CHARS:
            st->be->column(s, (int)i, HLPTD_DB_TEXT, &v);
            snprintf(f, c->cap, "%s", v.type == HLPTD_DB_NULL ? "" : v.s);
            break;
        case K_INT:
            st->be->column(s, (int)i, HLPTD_DB_INT, &v);
            *(int64_t *)f = v.type != HLPTD_DB_NULL ? v.i : (c->flags & NULL_NEG) ? -1 : 0;
            break;
        case K_REAL:
            st->be->column(s, (int)i, HLPTD_DB_REAL, &v);
            *(double *)f = v.type == HLPTD_DB_NULL ? NAN : v.r;
            break;
        case K_STATE: {
            st->be->column(s, (int)i, HLPTD_DB_TEXT, &v);
            int k = hlptd_job_state_from_name(v.type == HLPTD_DB_NULL ? NULL : v.s);
            /* Only this file writes the column: a name it does not know was not written by hlptd,
             * and a job in it cannot run. */
            *(hlptd_job_state *)f = k < 0 ? HLPTD_JOB_FAILED : (hlptd_job_state)k;
            break;
        }
        }
    }
    return oom ? -1 : 0;
}

static void *row_read(const hlptd_store *st, const row_type *t, hlptd_db_stmt *s) {
    void *row = calloc(1, t->size);
    if (row && row_fill(st, t, s, row)) {
        row_free(t, row);
        row = NULL;
    }
    return row;
}

/* "c1, c2, …": t's columns in order. */
static void col_list(const row_type *t, char *out, size_t cap) {
    size_t n = 0;
    out[0] = 0;
    for (size_t i = 0; i < t->ncols && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? ", " : "", t->cols[i].name);
    HLPT_ASSERT(n < cap);
}

/* ---- statements ----------------------------------------------------------------------------- */

/* Runs a statement that returns no rows; *changes (may be NULL) gets the rows it changed. Outside
 * a transaction, a full disk that the on_full hook made room on is tried once more (inside one,
 * in_transaction retries the whole transaction). */
static int run(hlptd_store *st, const char *sql, const hlptd_db_val *a, int n, int64_t *changes, char *why, size_t len) {
    hlptd_db_stmt *s;
    int err = st->be->prepare(st->db, sql, a, n, &s, why, len);
    if (err) return err;
    int rc = st->be->step(s, why, len);
    if (rc == HLPT_ERR_NOSPACE && !st->in_tx && st->on_full && st->on_full(st->on_full_ctx)) {
        st->be->reset(s);
        rc = st->be->step(s, why, len);
    }
    if (rc >= 0 && changes) *changes = st->be->changes(s);
    st->be->finalize(s);
    return rc < 0 ? rc : HLPT_OK;
}

/* The rows of sql, whose columns are t's in order, as an owned array of owned rows. At most `limit`
 * (-1: all) are kept; a row beyond them only sets *has_more (may be NULL). */
static int query_rows(hlptd_store *st, const row_type *t, const char *sql, const hlptd_db_val *a, int n, int limit,
                      void ***out, size_t *cnt, int *has_more, char *why, size_t len) {
    *out = NULL;
    *cnt = 0;
    if (has_more) *has_more = 0;
    hlptd_db_stmt *s;
    int err = st->be->prepare(st->db, sql, a, n, &s, why, len), rc;
    if (err) return err;
    void **v = NULL;
    size_t k = 0, cap = 0;
    while ((rc = st->be->step(s, why, len)) == 1) {
        if (limit >= 0 && k == (size_t)limit) {
            if (has_more) *has_more = 1;
            break;
        }
        if (k == cap) {
            void **nv = realloc(v, (cap = cap ? 2 * cap : 16) * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        if (!(v[k] = row_read(st, t, s))) break;
        k++;
    }
    st->be->finalize(s);
    if (rc == 1 && !(limit >= 0 && k == (size_t)limit)) rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    if (rc < 0) {
        rows_free(t, v, k);
        return rc;
    }
    *out = v;
    *cnt = k;
    return HLPT_OK;
}

/* The rows of "SELECT <t's columns> FROM <t's table> <tail>" (query_rows). */
static int select_rows(hlptd_store *st, const row_type *t, const char *tail, const hlptd_db_val *a, int n, int limit,
                       void ***out, size_t *cnt, int *has_more, char *why, size_t len) {
    char cols[1024], sql[2048];
    col_list(t, cols, sizeof cols);
    snprintf(sql, sizeof sql, "SELECT %s FROM %s %s", cols, t->table, tail);
    return query_rows(st, t, sql, a, n, limit, out, cnt, has_more, why, len);
}

/* The one row `tail` selects: HLPT_ERR_NOENT "no <what> `<id>`" when there is none. */
static int select_one(hlptd_store *st, const row_type *t, const char *tail, const hlptd_db_val *a, int n,
                      const char *what, const char *id, void **out, char *why, size_t len) {
    void **v;
    size_t k;
    *out = NULL;
    int err = select_rows(st, t, tail, a, n, 1, &v, &k, NULL, why, len);
    if (err) return err;
    if (k) *out = v[0];
    free(v);
    return k ? HLPT_OK : hlpt_why(why, len, HLPT_ERR_NOENT, "no %s `%s`", what ? what : t->what, id);
}

/* The first row's first k integer columns; *found says whether there was a row. */
static int select_ints(hlptd_store *st, const char *sql, const hlptd_db_val *a, int n, int64_t *v, int k, int *found,
                       char *why, size_t len) {
    hlptd_db_stmt *s;
    *found = 0;
    int err = st->be->prepare(st->db, sql, a, n, &s, why, len);
    if (err) return err;
    int rc = st->be->step(s, why, len);
    for (int i = 0; rc == 1 && i < k; i++) {
        hlptd_db_val x;
        st->be->column(s, i, HLPTD_DB_INT, &x);
        v[i] = x.type == HLPTD_DB_NULL ? 0 : x.i;
    }
    *found = rc == 1;
    st->be->finalize(s);
    return rc < 0 ? rc : HLPT_OK;
}

/* The first text column of every row (NULLs skipped) as an owned array of owned strings. */
static int select_texts(hlptd_store *st, const char *sql, const hlptd_db_val *a, int n, char ***out, size_t *cnt,
                        char *why, size_t len) {
    hlptd_db_stmt *s;
    *out = NULL;
    *cnt = 0;
    int err = st->be->prepare(st->db, sql, a, n, &s, why, len), rc;
    if (err) return err;
    char **v = NULL;
    size_t k = 0, cap = 0;
    while ((rc = st->be->step(s, why, len)) == 1) {
        hlptd_db_val x;
        st->be->column(s, 0, HLPTD_DB_TEXT, &x);
        if (x.type == HLPTD_DB_NULL) continue;
        if (k == cap) {
            char **nv = realloc(v, (cap = cap ? 2 * cap : 16) * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        if (!(v[k] = strdup(x.s))) break;
        k++;
    }
    st->be->finalize(s);
    if (rc == 1) rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    if (rc < 0) {
        hlptd_store_ids_free(v, k);
        return rc;
    }
    *out = v;
    *cnt = k;
    return HLPT_OK;
}

void hlptd_store_ids_free(char **ids, size_t n) {
    for (size_t i = 0; ids && i < n; i++) free(ids[i]);
    free(ids);
}

/* INSERT of t's INS columns from the struct at row (whose strings it only reads). */
static int row_insert(hlptd_store *st, const row_type *t, const void *row, char *why, size_t len) {
    hlptd_db_val a[32];
    char names[1024], marks[256], sql[1400];
    size_t nn = 0, nm = 0;
    int n = 0;
    for (size_t i = 0; i < t->ncols; i++) {
        const col *c = &t->cols[i];
        if (!(c->flags & INS)) continue;
        HLPT_ASSERT(n < (int)(sizeof a / sizeof a[0]));
        a[n++] = col_val(c, row);
        nn += (size_t)snprintf(names + nn, sizeof names - nn, "%s%s", n > 1 ? ", " : "", c->name);
        nm += (size_t)snprintf(marks + nm, sizeof marks - nm, "%s?%d", n > 1 ? ", " : "", n);
    }
    HLPT_ASSERT(nn < sizeof names && nm < sizeof marks);
    snprintf(sql, sizeof sql, "INSERT INTO %s (%s) VALUES (%s)", t->table, names, marks);
    return run(st, sql, a, n, NULL, why, len);
}

/* A newest-first page of t's rows in insertion order, starting after the row `after` (NULL: from
 * the newest). Rows of one job when scope is not NULL (job_id = scope); rows where `cond` holds
 * when it is not NULL. */
static int page(hlptd_store *st, const row_type *t, const char *scope, const char *cond, const char *after, int limit,
                void ***out, size_t *n, int *has_more, char *why, size_t len) {
    *out = NULL;
    *n = 0;
    if (limit < 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "limit must not be negative");
    int64_t bound = INT64_MAX;
    char sql[512];
    int err;
    if (after) {
        int found;
        snprintf(sql, sizeof sql, "SELECT seq FROM %s WHERE id = ?1%s", t->table, scope ? " AND job_id = ?2" : "");
        const hlptd_db_val a[] = {v_text(after), v_text(scope)};
        if ((err = select_ints(st, sql, a, scope ? 2 : 1, &bound, 1, &found, why, len))) return err;
        if (!found && scope)
            return hlpt_why(why, len, HLPT_ERR_NOENT, "no %s `%s` in job `%s` (after)", t->what, after, scope);
        if (!found) return hlpt_why(why, len, HLPT_ERR_NOENT, "no %s `%s` (after)", t->what, after);
    }
    snprintf(sql, sizeof sql, "WHERE seq < ?1%s%s%s%s ORDER BY seq DESC LIMIT ?2", scope ? " AND job_id = ?3" : "",
             cond ? " AND (" : "", cond ? cond : "", cond ? ")" : "");
    const hlptd_db_val a[] = {v_int(bound), v_int((int64_t)limit + 1), v_text(scope)};
    return select_rows(st, t, sql, a, scope ? 3 : 2, limit, out, n, has_more, why, len);
}

/* ---- transactions and blobs ----------------------------------------------------------------- */

/* 1 in *named when a row of any type names the blob sha256. */
static int blob_named(hlptd_store *st, const char *sha256, int *named, char *why, size_t len) {
    char sql[1024];
    size_t n = 0;
    for (size_t i = 0; i < sizeof row_types / sizeof row_types[0]; i++)
        for (size_t k = 0; k < row_types[i]->ncols; k++)
            if (row_types[i]->cols[k].flags & BLOB)
                n += (size_t)snprintf(sql + n, sizeof sql - n, "%sSELECT 1 FROM %s WHERE %s = ?1",
                                      n ? " UNION ALL " : "", row_types[i]->table, row_types[i]->cols[k].name);
    HLPT_ASSERT(n < sizeof sql - 16);
    snprintf(sql + n, sizeof sql - n, " LIMIT 1");
    int64_t one;
    return select_ints(st, sql, ARGS(v_text(sha256)), &one, 1, named, why, len);
}

/* Notes a blob for the transaction's end: removed after the commit unless a row names it then;
 * an adopted one (put into place in this transaction) also after a rollback unless a row names it
 * then. */
static int note_blob(hlptd_store *st, const char *sha256, int adopted, char *why, size_t len) {
    if (!hlpt_sha256_hex_valid(sha256)) return HLPT_OK;
    if (st->nnoted == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 8;
        void *nv = realloc(st->noted, cap * sizeof *st->noted);
        if (!nv) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
        st->noted = nv;
        st->cap = cap;
    }
    noted_blob *nb = &st->noted[st->nnoted++];
    snprintf(nb->sha256, sizeof nb->sha256, "%s", sha256);
    nb->adopted = adopted;
    nb->unnamed = 0;
    return HLPT_OK;
}

/* Notes the blobs that the rows of t selected by `where` name (before they are removed). */
static int note_blobs_of(hlptd_store *st, const row_type *t, const char *where, const hlptd_db_val *a, int n, char *why,
                         size_t len) {
    for (size_t k = 0; k < t->ncols; k++) {
        if (!(t->cols[k].flags & BLOB)) continue;
        char sql[256], **v;
        size_t cnt;
        snprintf(sql, sizeof sql, "SELECT %s FROM %s %s", t->cols[k].name, t->table, where);
        int err = select_texts(st, sql, a, n, &v, &cnt, why, len);
        for (size_t i = 0; !err && i < cnt; i++) err = note_blob(st, v[i], 0, why, len);
        hlptd_store_ids_free(v, cnt);
        if (err) return err;
    }
    return HLPT_OK;
}

/* Removes the blob sha256 unless a row names it; outside a transaction. A blob that cannot be
 * checked or removed now stays, and the next start's sweep removes it. */
static void release_unnamed(hlptd_store *st, const char *sha256) {
    int named = 1;
    if (blob_named(st, sha256, &named, NULL, 0) == HLPT_OK && !named) hlptd_blob_remove(st->blobs, sha256, NULL, 0);
}

int hlptd_store_begin(hlptd_store *st, char *why, size_t len) {
    if (st->in_tx) return hlpt_why(why, len, HLPT_ERR_STATE, "a transaction is open already");
    int err = st->be->begin(st->db, why, len);
    if (!err) st->in_tx = 1;
    st->nnoted = 0;
    return err;
}

/* Nothing is applied; the blobs adopted in the transaction that no row names now go. */
void hlptd_store_rollback(hlptd_store *st) {
    if (!st->in_tx) return;
    st->be->rollback(st->db);
    st->in_tx = 0;
    for (size_t i = 0; i < st->nnoted; i++)
        if (st->noted[i].adopted) release_unnamed(st, st->noted[i].sha256);
    st->nnoted = 0;
}

int hlptd_store_commit(hlptd_store *st, char *why, size_t len) {
    if (!st->in_tx) return hlpt_why(why, len, HLPT_ERR_STATE, "no transaction is open");
    /* Which noted blobs no row names is decided inside the transaction; they go after it. */
    int err = HLPT_OK;
    for (size_t i = 0; !err && i < st->nnoted; i++) {
        int named = 0, twice = 0;
        for (size_t j = 0; !twice && j < i; j++) twice = !strcmp(st->noted[j].sha256, st->noted[i].sha256);
        if (!twice && !(err = blob_named(st, st->noted[i].sha256, &named, why, len))) st->noted[i].unnamed = !named;
        /* The database's copy goes with the last row that names it, in the same transaction. */
        if (!err && !twice && !named && st->be->shared)
            err = run(st, "DELETE FROM blobs WHERE sha256 = ?1", ARGS(v_text(st->noted[i].sha256)), NULL, why, len);
    }
    if (!err) err = st->be->commit(st->db, why, len);
    if (err) {
        hlptd_store_rollback(st);
        return err;
    }
    st->in_tx = 0;
    /* A blob that cannot be removed now is unnamed, and the next start's sweep removes it. */
    for (size_t i = 0; i < st->nnoted; i++)
        if (st->noted[i].unnamed) hlptd_blob_remove(st->blobs, st->noted[i].sha256, NULL, 0);
    st->nnoted = 0;
    return HLPT_OK;
}

typedef int (*tx_fn)(hlptd_store *st, void *ctx, char *why, size_t len);

/* Runs fn in a transaction: the caller's when one is open (a failure is then the caller's to roll
 * back), else one of its own, which a full disk that on_full made room on runs once more. */
static int in_transaction(hlptd_store *st, tx_fn fn, void *ctx, char *why, size_t len) {
    if (st->in_tx) return fn(st, ctx, why, len);
    for (int attempt = 0;; attempt++) {
        int err = hlptd_store_begin(st, why, len);
        if (!err && (err = fn(st, ctx, why, len))) hlptd_store_rollback(st);
        else if (!err) err = hlptd_store_commit(st, why, len);
        if (err == HLPT_ERR_NOSPACE && attempt == 0 && st->on_full && st->on_full(st->on_full_ctx)) continue;
        return err;
    }
}

/* Runs fn, which inserts a row naming the blob sha256, in a transaction (in_transaction). With
 * tmp, the blob is first put into place from that sealed temporary, and belongs to the insert:
 * when the row is not stored (fn fails, or the caller's transaction rolls back), it goes again
 * unless another row names the same bytes. Adoption and insert happen in one call on the store's
 * thread, so no delete can run between them and find the blob unnamed. */
static int insert_naming(hlptd_store *st, const char *tmp, const char *sha256, tx_fn fn, void *ctx, char *why,
                         size_t len) {
    if (!tmp) return in_transaction(st, fn, ctx, why, len);
    int err;
    if (st->in_tx) {
        /* Noted first, so that the caller's rollback, or its commit without the row, removes it. */
        if ((err = note_blob(st, sha256, 1, why, len))) {
            hlptd_blob_discard(st->blobs, tmp);
            return err;
        }
        if ((err = hlptd_blob_adopt(st->blobs, tmp, sha256, why, len))) return err;
        return fn(st, ctx, why, len);
    }
    err = hlptd_blob_adopt(st->blobs, tmp, sha256, why, len);
    if (!err) err = in_transaction(st, fn, ctx, why, len);
    if (err && hlpt_sha256_hex_valid(sha256)) release_unnamed(st, sha256);
    return err;
}

typedef struct {
    hlptd_store *st;
    size_t removed;
    int err;
    char *why;
    size_t len;
} sweep_ctx;

static int sweep_one(void *ctx, const char *sha256) {
    sweep_ctx *c = ctx;
    int named = 0;
    if ((c->err = blob_named(c->st, sha256, &named, c->why, c->len))) return 1;
    if (!named && hlptd_blob_remove(c->st->blobs, sha256, NULL, 0) == HLPT_OK) c->removed++;
    return 0;
}

int hlptd_store_blob_sweep(hlptd_store *st, size_t *removed, char *why, size_t len) {
    sweep_ctx c = {.st = st, .why = why, .len = len};
    int rc = hlptd_blobs_each(st->blobs, sweep_one, &c, why, len);
    if (removed) *removed = c.removed;
    return c.err ? c.err : rc < 0 ? rc : HLPT_OK;
}

/* ---- blobs in the database (a shared store) ------------------------------------------------- */

#define CHUNK_BYTES ((size_t)1 << 20)

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* out holds 4 * ceil(n / 3) + 1 bytes. */
static void b64_encode(const unsigned char *in, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o] = 0;
}

/* Decodes text into out (at most 3/4 of its length; line breaks skipped); -1 on a character that
 * is not base64. */
static long b64_decode(const char *in, unsigned char *out) {
    signed char val[256];
    memset(val, -1, sizeof val);
    for (int i = 0; i < 64; i++) val[(unsigned char)b64[i]] = (signed char)i;
    uint32_t v = 0;
    int bits = 0;
    long o = 0;
    for (; *in && *in != '='; in++) {
        if (*in == '\n' || *in == '\r') continue;
        int x = val[(unsigned char)*in];
        if (x < 0) return -1;
        v = v << 6 | (uint32_t)x;
        if ((bits += 6) >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(v >> bits);
        }
    }
    return o;
}

/* Copies the blob sha256 (in place here, of `bytes` bytes) into the database unless it is there:
 * in the transaction of the row that names it. Of two nodes copying the same blob at once, the
 * second waits for the first's commit and then finds it there. */
static int share_blob(hlptd_store *st, const char *sha256, uint64_t bytes, char *why, size_t len) {
    int64_t one;
    int found, fd = -1;
    int err = select_ints(st, "SELECT 1 FROM blobs WHERE sha256 = ?1", ARGS(v_text(sha256)), &one, 1, &found, why, len);
    if (err || found) return err;
    uint64_t size;
    if ((err = hlptd_blob_open(st->blobs, sha256, &fd, &size, why, len))) return err;
    int64_t chunks = (int64_t)((bytes + CHUNK_BYTES - 1) / CHUNK_BYTES), changes = 0;
    unsigned char *buf = malloc(CHUNK_BYTES);
    char *text = malloc(4 * (CHUNK_BYTES / 3 + 1) + 1);
    if (!buf || !text) {
        err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
        goto out;
    }
    err = run(st, "INSERT INTO blobs (sha256, bytes, chunks, created_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
              ARGS(v_text(sha256), v_int((int64_t)bytes), v_int(chunks), v_int(now())), &changes, why, len);
    for (int64_t c = 0; !err && changes && c < chunks; c++) {
        size_t want = c + 1 < chunks ? CHUNK_BYTES : (size_t)(bytes - (uint64_t)c * CHUNK_BYTES), got = 0;
        while (got < want) {
            ssize_t k = pread(fd, buf + got, want - got, (off_t)((uint64_t)c * CHUNK_BYTES + got));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) {
                err = hlpt_why(why, len, HLPT_ERR_IO, "reading blob %s: %s", sha256, k < 0 ? strerror(errno) : "cut short");
                goto out;
            }
            got += (size_t)k;
        }
        b64_encode(buf, want, text);
        err = run(st, "INSERT INTO blob_chunks (sha256, n, data) VALUES (?1, ?2, ?3)",
                  ARGS(v_text(sha256), v_int(c), v_text(text)), NULL, why, len);
    }
out:
    free(buf);
    free(text);
    close(fd);
    return err;
}

/* Writes the database's copy of blob sha256 into the blobs folder. */
static int fetch_blob(hlptd_store *st, const char *sha256, char *why, size_t len) {
    int64_t v[2];
    int found;
    int err = select_ints(st, "SELECT bytes, chunks FROM blobs WHERE sha256 = ?1", ARGS(v_text(sha256)), v, 2, &found,
                          why, len);
    if (err) return err;
    if (!found) return hlpt_why(why, len, HLPT_ERR_NOENT, "no blob %s is stored, here or in the database", sha256);
    hlptd_db_stmt *s = NULL;
    hlptd_blob_writer *w = NULL;
    unsigned char *buf = malloc(CHUNK_BYTES + 4);
    int64_t n = 0;
    int rc;
    if (!buf) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    if ((err = st->be->prepare(st->db, "SELECT n, data FROM blob_chunks WHERE sha256 = ?1 ORDER BY n",
                               ARGS(v_text(sha256)), &s, why, len)))
        goto out;
    if ((err = hlptd_blob_begin(st->blobs, &w, why, len))) goto out;
    while ((rc = st->be->step(s, why, len)) == 1) {
        hlptd_db_val c, d;
        st->be->column(s, 0, HLPTD_DB_INT, &c);
        st->be->column(s, 1, HLPTD_DB_TEXT, &d);
        long k = d.type == HLPTD_DB_TEXT && strlen(d.s) <= 4 * (CHUNK_BYTES / 3 + 1) ? b64_decode(d.s, buf) : -1;
        if (c.type != HLPTD_DB_INT || c.i != n || k < 0) {
            err = hlpt_why(why, len, HLPT_ERR_FORMAT, "the database's copy of blob %s is damaged (chunk %lld)", sha256,
                           (long long)n);
            goto out;
        }
        if ((err = hlptd_blob_write(w, buf, (size_t)k, why, len))) goto out;
        n++;
    }
    if (rc < 0) {
        err = rc;
        goto out;
    }
    char got[HLPT_SHA256_HEX], tmp[HLPTD_BLOB_TMP_MAX];
    uint64_t bytes = 0;
    err = hlptd_blob_seal(w, got, &bytes, tmp, sizeof tmp, why, len);
    w = NULL;
    if (err) goto out;
    if (n != v[1] || bytes != (uint64_t)v[0] || strcmp(got, sha256)) {
        hlptd_blob_discard(st->blobs, tmp);
        err = hlpt_why(why, len, HLPT_ERR_FORMAT,
                       "the database's copy of blob %s is damaged: %lld bytes in %lld chunks hash to %s", sha256,
                       (long long)bytes, (long long)n, got);
        goto out;
    }
    err = hlptd_blob_adopt(st->blobs, tmp, sha256, why, len);
out:
    hlptd_blob_abort(w);
    if (s) st->be->finalize(s);
    free(buf);
    return err;
}

/* This process's fetches of blobs from the database (every store handle's), for /metrics. */
static atomic_long fetches, fetched_bytes, fetch_us;

void hlptd_store_blob_fetch_counts(long *n, long *bytes, double *seconds) {
    *n = atomic_load(&fetches);
    *bytes = atomic_load(&fetched_bytes);
    *seconds = (double)atomic_load(&fetch_us) / 1e6;
}

int hlptd_store_blob_local(hlptd_store *st, const char *sha256, int refetch, char *why, size_t len) {
    if (!sha256 || !hlpt_sha256_hex_valid(sha256))
        return hlpt_why(why, len, HLPT_ERR_INVAL, "`%s` is not a blob name (a SHA-256 in hex)", sha256 ? sha256 : "(null)");
    if (refetch && !st->be->shared)
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "blob %s is damaged, and this store keeps no other copy", sha256);
    uint64_t have;
    int err = refetch ? HLPT_ERR_NOENT : hlptd_blob_size(st->blobs, sha256, &have, why, len);
    /* A hit in a cache folder is a use, which its trimming spares (hlptd_blobs_trim). */
    if (!err && st->be->shared) hlptd_blob_touch(st->blobs, sha256);
    if (err != HLPT_ERR_NOENT || !st->be->shared) return err;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if ((err = fetch_blob(st, sha256, why, len))) return err;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    atomic_fetch_add(&fetches, 1);
    if (hlptd_blob_size(st->blobs, sha256, &have, NULL, 0) == HLPT_OK) atomic_fetch_add(&fetched_bytes, (long)have);
    atomic_fetch_add(&fetch_us, (long)((t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000));
    return HLPT_OK;
}

/* A row may name only a blob that is there, of the size it says. */
static int need_blob(hlptd_store *st, const char *sha256, int64_t bytes, char *why, size_t len) {
    if (!sha256 || !hlpt_sha256_hex_valid(sha256))
        return hlpt_why(why, len, HLPT_ERR_INVAL, "`%s` is not a blob name (a SHA-256 in hex)", sha256 ? sha256 : "(null)");
    uint64_t have = 0;
    int err = hlptd_blob_size(st->blobs, sha256, &have, why, len);
    /* Another node's blob (an adapter made from a checkpoint it wrote) comes from the database. */
    if (err == HLPT_ERR_NOENT && st->be->shared && !(err = hlptd_store_blob_local(st, sha256, 0, why, len)))
        err = hlptd_blob_size(st->blobs, sha256, &have, why, len);
    if (err == HLPT_ERR_NOENT) return hlpt_why(why, len, HLPT_ERR_NOENT, "no blob %s is stored", sha256);
    if (err) return err;
    if (bytes < 0 || have != (uint64_t)bytes)
        return hlpt_why(why, len, HLPT_ERR_INVAL, "blob %s holds %llu bytes, not %lld", sha256, (unsigned long long)have,
                        (long long)bytes);
    return st->be->shared ? share_blob(st, sha256, have, why, len) : HLPT_OK;
}

/* ---- open and close ------------------------------------------------------------------------- */

int hlptd_store_is_pg(const char *where) {
    return !strncmp(where, "postgres://", strlen("postgres://")) ||
           !strncmp(where, "postgresql://", strlen("postgresql://"));
}

static const hlptd_store_backend *backend_of(const char *where) {
    return hlptd_store_is_pg(where) ? &hlptd_store_pg : &hlptd_store_sqlite;
}

void hlptd_store_describe(const char *where, char *out, size_t cap) { backend_of(where)->describe(where, out, cap); }

int hlptd_store_open_at(hlptd_store **out, const char *where, int version, hlptd_blobs *blobs, char *why, size_t len) {
    *out = NULL;
    if (!blobs) return hlpt_why(why, len, HLPT_ERR_INVAL, "the store needs its blob folder");
    if (version < 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "no schema version %d", version);
    hlptd_store *st = calloc(1, sizeof *st);
    if (!st) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    st->be = backend_of(where);
    st->blobs = blobs;
    int err = st->be->open(where, version, blobs, &st->db, why, len);
    if (err) {
        free(st);
        return err;
    }
    *out = st;
    return HLPT_OK;
}

int hlptd_store_open(hlptd_store **out, const char *where, hlptd_blobs *blobs, char *why, size_t len) {
    return hlptd_store_open_at(out, where, hlptd_migrations_count, blobs, why, len);
}

void hlptd_store_close(hlptd_store *st) {
    if (!st) return;
    hlptd_store_rollback(st);
    st->be->close(st->db);
    free(st->noted);
    free(st);
}

int hlptd_store_check(const char *where, char *why, size_t len) { return backend_of(where)->check(where, why, len); }

int hlptd_store_damaged(const hlptd_store *st) { return st && st->be->damaged(st->db); }

int hlptd_store_version(hlptd_store *st) { return st->be->version(st->db); }

/* ---- files ---------------------------------------------------------------------------------- */

void hlptd_file_free(hlptd_file *f) { row_free(&file_t, f); }
void hlptd_file_list_free(hlptd_file **v, size_t n) { rows_free(&file_t, (void **)v, n); }

typedef struct {
    hlptd_file f; /* the row; its strings borrowed, row_insert only reads them */
    hlptd_file **out;
} file_insert_args;

static int file_insert_tx(hlptd_store *st, void *ctx, char *why, size_t len) {
    file_insert_args *a = ctx;
    /* A retry (in_transaction) reads the row again. */
    if (a->out) {
        hlptd_file_free(*a->out);
        *a->out = NULL;
    }
    int err = need_blob(st, a->f.sha256, a->f.bytes, why, len);
    if (!err) err = row_insert(st, &file_t, &a->f, why, len);
    if (!err && a->out) err = hlptd_store_file_get(st, a->f.id, a->out, why, len);
    return err;
}

int hlptd_store_file_insert(hlptd_store *st, const char *filename, const char *purpose, const char *status,
                           const char *sha256, int64_t bytes, const char *tmp, int64_t lines, const char *stats,
                           hlptd_file **out, char *why, size_t len) {
    if (out) *out = NULL;
    file_insert_args a = {.f = {.filename = (char *)filename, .purpose = (char *)purpose, .bytes = bytes,
                               .created_at = now(), .status = (char *)status, .lines = lines, .stats = (char *)stats},
                         .out = out};
    snprintf(a.f.sha256, sizeof a.f.sha256, "%s", sha256 ? sha256 : "");
    if (hlptd_id_new(a.f.id, HLPTD_ID_FILE)) {
        hlptd_blob_discard(st->blobs, tmp);
        return hlpt_why(why, len, HLPT_ERR_IO, "getrandom failed");
    }
    int err = insert_naming(st, tmp, sha256, file_insert_tx, &a, why, len);
    if (err && out) {
        hlptd_file_free(*out);
        *out = NULL;
    }
    return err;
}

int hlptd_store_file_get(hlptd_store *st, const char *id, hlptd_file **out, char *why, size_t len) {
    return select_one(st, &file_t, "WHERE id = ?1 AND deleted_at IS NULL", ARGS(v_text(id)), NULL, id, (void **)out,
                      why, len);
}

int hlptd_store_file_list(hlptd_store *st, const char *after, int limit, hlptd_file ***out, size_t *n, int *has_more,
                         char *why, size_t len) {
    return page(st, &file_t, NULL, "deleted_at IS NULL", after, limit, (void ***)out, n, has_more, why, len);
}

static int file_delete_tx(hlptd_store *st, void *ctx, char *why, size_t len) {
    const char *id = ctx;
    /* How many jobs name the file, and how many of them are not final (and need its bytes). */
    int64_t users[2] = {0, 0};
    int found, err = select_ints(st,
                                 "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status IN (?2, ?3, ?4) THEN 0 ELSE 1 END), 0)"
                                 " FROM jobs WHERE training_file = ?1 OR validation_file = ?1",
                                 ARGS(v_text(id), v_text(hlptd_job_state_name(HLPTD_JOB_SUCCEEDED)),
                                      v_text(hlptd_job_state_name(HLPTD_JOB_FAILED)),
                                      v_text(hlptd_job_state_name(HLPTD_JOB_CANCELLED))),
                                 users, 2, &found, why, len);
    if (err) return err;
    if (users[1])
        return hlpt_why(why, len, HLPT_ERR_STATE, "file `%s` is used by a queued, running or paused fine-tuning job", id);
    if ((err = note_blobs_of(st, &file_t, "WHERE id = ?1 AND deleted_at IS NULL", ARGS(v_text(id)), why, len)))
        return err;
    /* Finished jobs keep naming the file: the row stays, without its blob, marked deleted. */
    int64_t changes = 0;
    if (users[0])
        err = run(st, "UPDATE files SET sha256 = NULL, deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
                  ARGS(v_text(id), v_int(now())), &changes, why, len);
    else
        err = run(st, "DELETE FROM files WHERE id = ?1 AND deleted_at IS NULL", ARGS(v_text(id)), &changes, why, len);
    if (err == HLPT_ERR_STATE) return hlpt_why(why, len, HLPT_ERR_STATE, "file `%s` is used by a fine-tuning job", id);
    if (!err && changes == 0) err = hlpt_why(why, len, HLPT_ERR_NOENT, "no file `%s`", id);
    return err;
}

int hlptd_store_file_delete(hlptd_store *st, const char *id, char *why, size_t len) {
    return in_transaction(st, file_delete_tx, (void *)id, why, len);
}

/* ---- jobs ----------------------------------------------------------------------------------- */

void hlptd_job_free(hlptd_job *j) { row_free(&job_t, j); }
void hlptd_job_list_free(hlptd_job **v, size_t n) { rows_free(&job_t, (void **)v, n); }

static int file_exists(hlptd_store *st, const char *id, const char *param, char *why, size_t len) {
    hlptd_file *f;
    int err = hlptd_store_file_get(st, id, &f, why, len);
    hlptd_file_free(f);
    if (err == HLPT_ERR_NOENT) return hlpt_why(why, len, HLPT_ERR_NOENT, "%s: no file `%s`", param, id);
    return err;
}

static int job_insert_tx(hlptd_store *st, void *ctx, char *why, size_t len) {
    hlptd_job *j = ctx;
    int err, found;
    if ((err = file_exists(st, j->training_file, "training_file", why, len))) return err;
    if (j->validation_file && (err = file_exists(st, j->validation_file, "validation_file", why, len))) return err;
    /* At the end of the queue. */
    if ((err = select_ints(st, "SELECT COALESCE(MAX(queue_order), 0) + 1 FROM jobs", NULL, 0, &j->queue_order, 1,
                           &found, why, len)))
        return err;
    return row_insert(st, &job_t, j, why, len);
}

int hlptd_store_job_insert(hlptd_store *st, const hlptd_job_fields *in, hlptd_job **out, char *why, size_t len) {
    if (out) *out = NULL;
    if ((unsigned)in->status >= HLPTD_JOB_STATE_COUNT || !in->model || !in->training_file || !in->method ||
        !in->hyperparameters)
        return hlpt_why(why, len, HLPT_ERR_INVAL, "job: status, model, training_file, method and hyperparameters are required");
    /* The row's strings are borrowed: row_insert only reads them. */
    hlptd_job j = {.status = in->status, .model = (char *)in->model, .training_file = (char *)in->training_file,
                  .validation_file = (char *)in->validation_file, .method = (char *)in->method,
                  .hyperparameters = (char *)in->hyperparameters, .seed = in->seed, .suffix = (char *)in->suffix,
                  .created_at = now(), .metadata = (char *)in->metadata, .integrations = (char *)in->integrations};
    if (hlptd_id_new(j.id, HLPTD_ID_JOB)) return hlpt_why(why, len, HLPT_ERR_IO, "getrandom failed");
    int err = in_transaction(st, job_insert_tx, &j, why, len);
    if (err) return err;
    return out ? hlptd_store_job_get(st, j.id, out, why, len) : HLPT_OK;
}

int hlptd_store_job_get(hlptd_store *st, const char *id, hlptd_job **out, char *why, size_t len) {
    return select_one(st, &job_t, "WHERE id = ?1", ARGS(v_text(id)), NULL, id, (void **)out, why, len);
}

int hlptd_store_job_list(hlptd_store *st, const char *after, int limit, hlptd_job ***out, size_t *n, int *has_more,
                        char *why, size_t len) {
    return page(st, &job_t, NULL, NULL, after, limit, (void ***)out, n, has_more, why, len);
}

/* Runs an UPDATE of one job (?1 = id) and turns "no row changed" into NOENT. */
static int job_update(hlptd_store *st, const char *sql, const hlptd_db_val *a, int n, const char *id, char *why,
                      size_t len) {
    int64_t changes = 0;
    int err = run(st, sql, a, n, &changes, why, len);
    if (!err && changes == 0) err = hlpt_why(why, len, HLPT_ERR_NOENT, "no fine-tuning job `%s`", id);
    return err;
}

typedef struct {
    const char *id, *error;
    const hlptd_hold *hold; /* the holder the job must have, or NULL */
    hlptd_job_state to;
} status_args;

/* "job X is held by node N (claim E) now" when h is not the job's holder. */
static int not_held(const hlptd_job *j, const hlptd_hold *h, char *why, size_t len) {
    if (j->node && !strcmp(j->node, h->node) && j->lease_epoch == h->epoch) return HLPT_OK;
    return hlpt_why(why, len, HLPT_ERR_STATE, "job %s is held by node %s (claim %lld), not by %s (claim %lld)", j->id,
                    j->node ? j->node : "(none)", (long long)j->lease_epoch, h->node, (long long)h->epoch);
}

static int set_status_tx(hlptd_store *st, void *ctx, char *why, size_t len) {
    const status_args *a = ctx;
    hlptd_job *j = NULL;
    int err = hlptd_store_job_get(st, a->id, &j, why, len);
    if (err) return err;
    hlptd_job_state from = j->status;
    if (a->hold) err = not_held(j, a->hold, why, len);
    hlptd_job_free(j);
    if (err) return err;
    if (from != a->to && !hlptd_job_state_can(from, a->to))
        return hlpt_why(why, len, HLPT_ERR_STATE, "job %s is %s and cannot become %s", a->id, hlptd_job_state_name(from),
                        hlptd_job_state_name(a->to));
    /* Compare-and-set: the write applies only to the state (and holder) just read; another node's
     * connection may have moved the job in between. The holder's move out of running gives the
     * lease up. */
    char sql[768];
    snprintf(sql, sizeof sql,
             "UPDATE jobs SET status = ?2, error = COALESCE(?3, error),"
             " started_at = CASE WHEN ?5 = 1 AND started_at IS NULL THEN ?4 ELSE started_at END,"
             " finished_at = CASE WHEN ?6 = 1 AND ?2 <> ?7 THEN ?4 ELSE finished_at END%s"
             " WHERE id = ?1 AND status = ?7%s",
             a->hold && a->to != HLPTD_JOB_RUNNING ? ", lease_until = NULL" : "",
             a->hold ? " AND node = ?8 AND lease_epoch = ?9" : "");
    int64_t changes = 0;
    hlptd_db_val args[] = {v_text(a->id), v_text(hlptd_job_state_name(a->to)), v_text(a->error), v_int(now()),
                           v_int(a->to == HLPTD_JOB_RUNNING), v_int(hlptd_job_state_final(a->to)),
                           v_text(hlptd_job_state_name(from)), v_text(a->hold ? a->hold->node : NULL),
                           v_int(a->hold ? a->hold->epoch : 0)};
    if (from == a->to && !a->error && !a->hold) return HLPT_OK;
    err = run(st, sql, args, a->hold ? 9 : 7, &changes, why, len);
    if (!err && changes == 0)
        err = hlpt_why(why, len, HLPT_ERR_STATE, "job %s changed while it was becoming %s", a->id,
                       hlptd_job_state_name(a->to));
    return err;
}

int hlptd_store_job_set_status(hlptd_store *st, const char *id, hlptd_job_state status, const char *error, char *why,
                              size_t len) {
    if ((unsigned)status >= HLPTD_JOB_STATE_COUNT) return hlpt_why(why, len, HLPT_ERR_INVAL, "no job state %d", (int)status);
    status_args a = {.id = id, .error = error, .to = status};
    return in_transaction(st, set_status_tx, &a, why, len);
}

int hlptd_store_job_set_status_owned(hlptd_store *st, const char *id, const hlptd_hold *h, hlptd_job_state status,
                                    const char *error, char *why, size_t len) {
    if ((unsigned)status >= HLPTD_JOB_STATE_COUNT) return hlpt_why(why, len, HLPT_ERR_INVAL, "no job state %d", (int)status);
    if (!h || !h->node) return hlpt_why(why, len, HLPT_ERR_INVAL, "no node");
    status_args a = {.id = id, .error = error, .hold = h, .to = status};
    return in_transaction(st, set_status_tx, &a, why, len);
}

/* The SQL of a lease running lease_ms (the parameter ?n) from the database's time now; a lease
 * given up stays given up. */
static void lease_expr(const hlptd_store *st, int n, char *out, size_t cap) {
    snprintf(out, cap, "CASE WHEN lease_until IS NULL THEN NULL ELSE %s + ?%d END", st->be->now_ms, n);
}

int hlptd_store_job_hold(hlptd_store *st, const char *id, const hlptd_hold *h, int64_t lease_ms, char *why, size_t len) {
    char lease[256], sql[512];
    lease_expr(st, 4, lease, sizeof lease);
    snprintf(sql, sizeof sql, "UPDATE jobs SET lease_until = %s WHERE id = ?1 AND node = ?2 AND lease_epoch = ?3", lease);
    int64_t changes = 0;
    int err = run(st, sql, ARGS(v_text(id), v_text(h->node), v_int(h->epoch), v_int(lease_ms)), &changes, why, len);
    if (err || changes) return err;
    hlptd_job *j = NULL;
    if (!(err = hlptd_store_job_get(st, id, &j, why, len))) err = not_held(j, h, why, len);
    hlptd_job_free(j);
    return err ? err : hlpt_why(why, len, HLPT_ERR_STATE, "job %s is not held by %s", id, h->node);
}

int hlptd_store_job_report(hlptd_store *st, const char *id, const hlptd_hold *h, const hlptd_metric *m,
                          int64_t total_steps, double epoch, const char *level, const char *message, const char *data,
                          char *why, size_t len) {
    char ev[HLPTD_ID_MAX], progress[768];
    if (hlptd_id_new(ev, HLPTD_ID_EVENT)) return hlpt_why(why, len, HLPT_ERR_IO, "getrandom failed");
    /* Each statement writes only while h holds the job, so that a job another node claimed
     * meanwhile gets nothing; the first says whether it did. The lease is the heartbeat's to renew:
     * a step's update touches no indexed column (jobs_leased), so PostgreSQL updates the row in
     * place. Casts give the parameters of INSERT … SELECT their types where a NULL leaves them
     * open. */
    snprintf(progress, sizeof progress,
             "UPDATE jobs SET step = ?4, total_steps = ?5, epoch = ?6, tokens_per_s = ?7"
             " WHERE id = ?1 AND node = ?2 AND lease_epoch = ?3");
    static const char held[] = " WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND node = ?2 AND lease_epoch = ?3)";
    static const char metric[] =
        "INSERT INTO metrics (job_id, step, train_loss, valid_loss, valid_acc, lr, tokens_per_s, created_at)"
        " SELECT ?1, CAST(?4 AS BIGINT), CAST(?5 AS DOUBLE PRECISION), CAST(?6 AS DOUBLE PRECISION),"
        " CAST(?7 AS DOUBLE PRECISION), CAST(?8 AS DOUBLE PRECISION), CAST(?9 AS DOUBLE PRECISION), CAST(?10 AS BIGINT)"
        "%s ON CONFLICT (job_id, step) DO UPDATE SET"
        " train_loss = excluded.train_loss, valid_loss = excluded.valid_loss, valid_acc = excluded.valid_acc,"
        " lr = excluded.lr, tokens_per_s = excluded.tokens_per_s, created_at = excluded.created_at";
    static const char event[] = "INSERT INTO job_events (id, job_id, created_at, level, message, data)"
                                " SELECT ?4, ?1, CAST(?5 AS BIGINT), ?6, ?7, CAST(?8 AS TEXT)%s";
    char msql[1024], esql[512];
    snprintf(msql, sizeof msql, metric, held);
    snprintf(esql, sizeof esql, event, held);
    const hlptd_db_val pa[] = {v_text(id), v_text(h->node), v_int(h->epoch), v_int(m->step), v_int(total_steps),
                               v_real(isnan(epoch) ? 0 : epoch), v_real(isnan(m->tokens_per_s) ? 0 : m->tokens_per_s)};
    const hlptd_db_val ma[] = {v_text(id), v_text(h->node), v_int(h->epoch), v_int(m->step), v_real(m->train_loss),
                               v_real(m->valid_loss), v_real(m->valid_acc), v_real(m->lr), v_real(m->tokens_per_s),
                               v_int(now())};
    const hlptd_db_val ea[] = {v_text(id), v_text(h->node), v_int(h->epoch), v_text(ev), v_int(now()), v_text(level),
                               v_text(message), v_text(data)};
    const char *sql[] = {progress, msql, esql};
    const hlptd_db_val *args[] = {pa, ma, ea};
    const int nargs[] = {7, 10, 8};
    hlptd_db_stmt *v[3] = {0};
    int err = HLPT_OK;
    for (int i = 0; i < 3 && !err; i++) err = st->be->prepare(st->db, sql[i], args[i], nargs[i], &v[i], why, len);
    /* Lazy: a report a crash of the database loses is made again when the job resumes from its
     * checkpoint (its metric row is replaced, its event rewound). */
    if (!err) err = st->be->batch(st->db, v, 3, 1, why, len);
    int64_t held_it = err ? 0 : st->be->changes(v[0]);
    for (int i = 0; i < 3; i++) st->be->finalize(v[i]);
    if (err) return err;
    if (held_it) return HLPT_OK;
    hlptd_job *j = NULL;
    if (!(err = hlptd_store_job_get(st, id, &j, why, len))) err = not_held(j, h, why, len);
    hlptd_job_free(j);
    return err ? err : hlpt_why(why, len, HLPT_ERR_STATE, "job %s is not held by %s", id, h->node);
}

void hlptd_lease_list_free(hlptd_lease **v, size_t n) { rows_free(&lease_t, (void **)v, n); }
void hlptd_node_list_free(hlptd_node **v, size_t n) { rows_free(&node_t, (void **)v, n); }

int hlptd_store_node_beat(hlptd_store *st, const hlptd_node_fields *n, hlptd_lease ***held, size_t *nheld, char *why,
                          size_t len) {
    *held = NULL;
    *nheld = 0;
    char sql[1024], lease[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO nodes (id, url, pid, workers, running, state, lease_ms, started_at, heartbeat_at)"
             " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, %s) ON CONFLICT (id) DO UPDATE SET url = excluded.url,"
             " pid = excluded.pid, workers = excluded.workers, running = excluded.running, state = excluded.state,"
             " lease_ms = excluded.lease_ms, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at",
             st->be->now_ms);
    int err = run(st, sql,
                  ARGS(v_text(n->id), v_text(n->url), v_int(n->pid), v_int(n->workers), v_int(n->running),
                       v_text(n->state), v_int(n->lease_ms), v_int(n->started_at)),
                  NULL, why, len);
    if (err) return err;
    char cols[256];
    col_list(&lease_t, cols, sizeof cols);
    lease_expr(st, 2, lease, sizeof lease);
    snprintf(sql, sizeof sql, "UPDATE jobs SET lease_until = %s WHERE node = ?1 AND lease_until IS NOT NULL RETURNING %s",
             lease, cols);
    return query_rows(st, &lease_t, sql, ARGS(v_text(n->id), v_int(n->lease_ms)), -1, (void ***)held, nheld, NULL, why,
                      len);
}

int hlptd_store_node_list(hlptd_store *st, hlptd_node ***nodes, size_t *n, hlptd_lease ***leases, size_t *nleases,
                          int64_t *now_ms, char *why, size_t len) {
    *nodes = NULL;
    *leases = NULL;
    *n = *nleases = 0;
    char sql[256];
    int found = 0;
    snprintf(sql, sizeof sql, "SELECT %s", st->be->now_ms);
    int err = select_ints(st, sql, NULL, 0, now_ms, 1, &found, why, len);
    if (!err)
        err = select_rows(st, &node_t, "WHERE heartbeat_at >= ?1 ORDER BY id", ARGS(v_int(*now_ms - 86400000)), -1,
                          (void ***)nodes, n, NULL, why, len);
    if (!err)
        err = select_rows(st, &lease_t, "WHERE lease_until IS NOT NULL ORDER BY node, queue_order", NULL, 0, -1,
                          (void ***)leases, nleases, NULL, why, len);
    if (err) {
        hlptd_node_list_free(*nodes, *n);
        *nodes = NULL;
        *n = 0;
    }
    return err;
}

int hlptd_store_node_prune(hlptd_store *st, int64_t max_age_ms, char *why, size_t len) {
    char sql[256];
    snprintf(sql, sizeof sql, "DELETE FROM nodes WHERE heartbeat_at < %s - ?1", st->be->now_ms);
    return run(st, sql, ARGS(v_int(max_age_ms)), NULL, why, len);
}

typedef struct {
    const char *node;
    char ***ids;
    size_t *n;
} release_args;

static int release_tx(hlptd_store *st, void *ctx, char *why, size_t len) {
    release_args *a = ctx;
    const hlptd_db_val args[] = {v_text(a->node), v_text(hlptd_job_state_name(HLPTD_JOB_RUNNING)),
                                 v_text(hlptd_job_state_name(HLPTD_JOB_QUEUED))};
    int err = select_texts(st, "SELECT id FROM jobs WHERE status = ?2 AND (node = ?1 OR node IS NULL) ORDER BY queue_order",
                           args, 2, a->ids, a->n, why, len);
    if (!err)
        err = run(st,
                  "UPDATE jobs SET status = CASE WHEN status = ?2 THEN ?3 ELSE status END, lease_until = NULL"
                  " WHERE (node = ?1 AND (lease_until IS NOT NULL OR status = ?2)) OR (node IS NULL AND status = ?2)",
                  args, 3, NULL, why, len);
    return err;
}

int hlptd_store_node_release(hlptd_store *st, const char *node, char ***ids, size_t *n, char *why, size_t len) {
    *ids = NULL;
    *n = 0;
    release_args a = {.node = node, .ids = ids, .n = n};
    int err = in_transaction(st, release_tx, &a, why, len);
    if (err) {
        hlptd_store_ids_free(*ids, *n);
        *ids = NULL;
        *n = 0;
    }
    return err;
}

int hlptd_store_listen(hlptd_store *st, char *why, size_t len) {
    if (!st->be->listen) return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "the %s store sends no notifications", st->be->name);
    return st->be->listen(st->db, why, len);
}

int hlptd_store_socket(hlptd_store *st) { return st->be->socket ? st->be->socket(st->db) : -1; }

int hlptd_store_notifications(hlptd_store *st, int read, void (*fn)(void *ctx, const char *payload), void *ctx) {
    return st->be->notifications ? st->be->notifications(st->db, read, fn, ctx) : 0;
}

int hlptd_store_shared(const hlptd_store *st) { return st->be->shared; }

int64_t hlptd_store_round_trips(const hlptd_store *st) { return st->be->round_trips(st->db); }

int hlptd_store_job_set_progress(hlptd_store *st, const char *id, int64_t step, int64_t total_steps, double epoch,
                                double tokens_per_s, char *why, size_t len) {
    return job_update(st, "UPDATE jobs SET step = ?2, total_steps = ?3, epoch = ?4, tokens_per_s = ?5 WHERE id = ?1",
                      ARGS(v_text(id), v_int(step), v_int(total_steps), v_real(epoch), v_real(tokens_per_s)), id, why,
                      len);
}

int hlptd_store_job_set_fine_tuned_model(hlptd_store *st, const char *id, const char *name, char *why, size_t len) {
    return job_update(st, "UPDATE jobs SET fine_tuned_model = ?2 WHERE id = ?1", ARGS(v_text(id), v_text(name)), id,
                      why, len);
}

int hlptd_store_job_set_results(hlptd_store *st, const char *id, int64_t trained_tokens, const char *result_file,
                               char *why, size_t len) {
    return job_update(st, "UPDATE jobs SET trained_tokens = ?2, result_file = COALESCE(?3, result_file) WHERE id = ?1",
                      ARGS(v_text(id), v_int(trained_tokens), v_text(result_file)), id, why, len);
}

int hlptd_store_job_next_queued(hlptd_store *st, hlptd_job **out, char *why, size_t len) {
    int err = select_one(st, &job_t, "WHERE status = ?1 ORDER BY queue_order LIMIT 1",
                         ARGS(v_text(hlptd_job_state_name(HLPTD_JOB_QUEUED))), "queued job", "", (void **)out, why, len);
    return err == HLPT_ERR_NOENT ? HLPT_OK : err;
}

typedef struct {
    const char *node;
    int64_t lease_ms;
    hlptd_job **out;
    char **lost_by;
} claim_args;

static int claim_tx(hlptd_store *st, void *ctx, char *why, size_t len) {
    claim_args *a = ctx;
    char sql[1024], lease[128];
    /* The pick locks its row and skips rows that another node's claim has locked (PostgreSQL); the
     * update is a compare-and-set on what the pick read. A queued job still held (resumed while its
     * worker still stops) waits for its node to give it up. */
    snprintf(sql, sizeof sql,
             "WHERE (status = ?1 AND (lease_until IS NULL OR lease_until < %s))"
             " OR (status = ?2 AND lease_until < %s) ORDER BY queue_order LIMIT 1%s",
             st->be->now_ms, st->be->now_ms, st->be->lock_skip);
    hlptd_job *j = NULL;
    int err = select_one(st, &job_t, sql,
                         ARGS(v_text(hlptd_job_state_name(HLPTD_JOB_QUEUED)),
                              v_text(hlptd_job_state_name(HLPTD_JOB_RUNNING))),
                         "claimable job", "", (void **)&j, why, len);
    if (err == HLPT_ERR_NOENT) return HLPT_OK;
    if (err) return err;
    snprintf(lease, sizeof lease, "%s + ?5", st->be->now_ms);
    snprintf(sql, sizeof sql,
             "UPDATE jobs SET status = ?1, node = ?2, lease_epoch = lease_epoch + 1, lease_until = %s,"
             " started_at = COALESCE(started_at, ?3) WHERE id = ?4 AND status = ?6 AND lease_epoch = ?7",
             lease);
    int64_t changes = 0;
    err = run(st, sql,
              ARGS(v_text(hlptd_job_state_name(HLPTD_JOB_RUNNING)), v_text(a->node), v_int(now()), v_text(j->id),
                   v_int(a->lease_ms), v_text(hlptd_job_state_name(j->status)), v_int(j->lease_epoch)),
              &changes, why, len);
    if (!err && changes && a->lost_by && j->status == HLPTD_JOB_RUNNING)
        *a->lost_by = strdup(j->node ? j->node : "(none)");
    if (!err && changes) err = hlptd_store_job_get(st, j->id, a->out, why, len);
    hlptd_job_free(j);
    return err;
}

int hlptd_store_job_claim(hlptd_store *st, const char *node, int64_t lease_ms, hlptd_job **out, char **lost_by,
                          char *why, size_t len) {
    *out = NULL;
    if (lost_by) *lost_by = NULL;
    if (!node || !*node) return hlpt_why(why, len, HLPT_ERR_INVAL, "no node");
    if (lease_ms < 1) return hlpt_why(why, len, HLPT_ERR_INVAL, "a lease must last at least 1 ms, not %lld", (long long)lease_ms);
    claim_args a = {.node = node, .lease_ms = lease_ms, .out = out, .lost_by = lost_by};
    int err = in_transaction(st, claim_tx, &a, why, len);
    if (err) {
        hlptd_job_free(*out);
        *out = NULL;
        if (lost_by) {
            free(*lost_by);
            *lost_by = NULL;
        }
    }
    return err;
}

int hlptd_store_job_ids_with_status(hlptd_store *st, hlptd_job_state status, char ***ids, size_t *n, char *why,
                                   size_t len) {
    return select_texts(st, "SELECT id FROM jobs WHERE status = ?1 ORDER BY queue_order",
                        ARGS(v_text(hlptd_job_state_name(status))), ids, n, why, len);
}

static int job_delete_tx(hlptd_store *st, void *ctx, char *why, size_t len) {
    const char *id = ctx;
    /* Its checkpoints go with it (ON DELETE CASCADE), and their blobs unless named elsewhere. */
    int err = note_blobs_of(st, &checkpoint_t, "WHERE job_id = ?1", ARGS(v_text(id)), why, len);
    if (!err) err = job_update(st, "DELETE FROM jobs WHERE id = ?1", ARGS(v_text(id)), id, why, len);
    return err;
}

int hlptd_store_job_delete(hlptd_store *st, const char *id, char *why, size_t len) {
    return in_transaction(st, job_delete_tx, (void *)id, why, len);
}

/* ---- job events ----------------------------------------------------------------------------- */

void hlptd_job_event_free(hlptd_job_event *e) { row_free(&event_t, e); }
void hlptd_job_event_list_free(hlptd_job_event **v, size_t n) { rows_free(&event_t, (void **)v, n); }

int hlptd_store_event_add(hlptd_store *st, const char *job_id, const char *level, const char *message,
                         const char *data, hlptd_job_event **out, char *why, size_t len) {
    if (out) *out = NULL;
    hlptd_job_event e = {.created_at = now(), .level = (char *)level, .message = (char *)message, .data = (char *)data};
    snprintf(e.job_id, sizeof e.job_id, "%s", job_id);
    if (hlptd_id_new(e.id, HLPTD_ID_EVENT)) return hlpt_why(why, len, HLPT_ERR_IO, "getrandom failed");
    int err = row_insert(st, &event_t, &e, why, len);
    if (err == HLPT_ERR_STATE) return hlpt_why(why, len, HLPT_ERR_NOENT, "no fine-tuning job `%s`", job_id);
    if (err || !out) return err;
    return select_one(st, &event_t, "WHERE id = ?1", ARGS(v_text(e.id)), NULL, e.id, (void **)out, why, len);
}

int hlptd_store_event_list(hlptd_store *st, const char *job_id, int64_t since_seq, int limit, hlptd_job_event ***out,
                          size_t *n, int *has_more, char *why, size_t len) {
    *out = NULL;
    *n = 0;
    if (limit < 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "limit must not be negative");
    return select_rows(st, &event_t, "WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                       ARGS(v_text(job_id), v_int(since_seq), v_int((int64_t)limit + 1)), limit, (void ***)out, n,
                       has_more, why, len);
}

int hlptd_store_event_page(hlptd_store *st, const char *job_id, const char *after, int limit, hlptd_job_event ***out,
                          size_t *n, int *has_more, char *why, size_t len) {
    return page(st, &event_t, job_id, NULL, after, limit, (void ***)out, n, has_more, why, len);
}

/* ---- metrics -------------------------------------------------------------------------------- */

int hlptd_store_job_rewind(hlptd_store *st, const char *job_id, int64_t step, char *why, size_t len) {
    char type[160], at[160], sql[512];
    st->be->json_field(type, sizeof type, "data", "type", HLPTD_DB_TEXT);
    st->be->json_field(at, sizeof at, "data", "step", HLPTD_DB_INT);
    snprintf(sql, sizeof sql, "DELETE FROM job_events WHERE job_id = ?1 AND %s = 'progress' AND %s > ?2", type, at);
    int err = run(st, "DELETE FROM metrics WHERE job_id = ?1 AND step > ?2", ARGS(v_text(job_id), v_int(step)), NULL,
                  why, len);
    return err ? err : run(st, sql, ARGS(v_text(job_id), v_int(step)), NULL, why, len);
}

int hlptd_store_metric_put(hlptd_store *st, const char *job_id, const hlptd_metric *m, char *why, size_t len) {
    hlptd_metric row = *m;
    row.created_at = now();
    /* A resumed job repeats the steps after its checkpoint: the step's row is replaced. */
    hlptd_db_val a[1 + sizeof metric_cols / sizeof metric_cols[0]] = {v_text(job_id)};
    for (size_t i = 0; i < metric_t.ncols; i++) a[i + 1] = col_val(&metric_t.cols[i], &row);
    int err = run(st,
                  "INSERT INTO metrics (job_id, step, train_loss, valid_loss, valid_acc, lr, tokens_per_s, created_at)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (job_id, step) DO UPDATE SET"
                  " train_loss = excluded.train_loss, valid_loss = excluded.valid_loss, valid_acc = excluded.valid_acc,"
                  " lr = excluded.lr, tokens_per_s = excluded.tokens_per_s, created_at = excluded.created_at",
                  a, (int)(sizeof a / sizeof a[0]), NULL, why, len);
    if (err == HLPT_ERR_STATE) return hlpt_why(why, len, HLPT_ERR_NOENT, "no fine-tuning job `%s`", job_id);
    return err;
}

int hlptd_store_metric_list(hlptd_store *st, const char *job_id, int64_t since_step, int limit, hlptd_metric **out,
                           size_t *n, char *why, size_t len) {
    char cols[256], sql[512];
    *out = NULL;
    *n = 0;
    col_list(&metric_t, cols, sizeof cols);
    snprintf(sql, sizeof sql, "SELECT %s FROM metrics WHERE job_id = ?1 AND step > ?2 ORDER BY step LIMIT ?3", cols);
    hlptd_db_stmt *s;
    int err = st->be->prepare(st->db, sql, ARGS(v_text(job_id), v_int(since_step), v_int(limit < 0 ? INT64_MAX : limit)),
                              &s, why, len), rc;
    if (err) return err;
    /* Metrics hold no strings: one array of rows, not an array of pointers. */
    hlptd_metric *v = NULL;
    size_t k = 0, cap = 0;
    while ((rc = st->be->step(s, why, len)) == 1) {
        if (k == cap) {
            hlptd_metric *nv = realloc(v, (cap = cap ? 2 * cap : 64) * sizeof *v);
            if (!nv) {
                rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
                break;
            }
            v = nv;
        }
        row_fill(st, &metric_t, s, &v[k++]);
    }
    st->be->finalize(s);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = k;
    return HLPT_OK;
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

void hlptd_checkpoint_free(hlptd_checkpoint *c) { row_free(&checkpoint_t, c); }
void hlptd_checkpoint_list_free(hlptd_checkpoint **v, size_t n) { rows_free(&checkpoint_t, (void **)v, n); }

typedef struct {
    hlptd_checkpoint c; /* the row; metrics borrowed */
    hlptd_checkpoint **out;
} checkpoint_insert_args;

static int checkpoint_insert_tx(hlptd_store *st, void *ctx, char *why, size_t len) {
    checkpoint_insert_args *a = ctx;
    if (a->out) {
        hlptd_checkpoint_free(*a->out);
        *a->out = NULL;
    }
    int err = need_blob(st, a->c.sha256, a->c.bytes, why, len);
    if (!err && (err = row_insert(st, &checkpoint_t, &a->c, why, len)) == HLPT_ERR_STATE)
        err = hlpt_why(why, len, HLPT_ERR_NOENT, "no fine-tuning job `%s`", a->c.job_id);
    if (!err && a->out) err = hlptd_store_checkpoint_get(st, a->c.id, a->out, why, len);
    return err;
}

int hlptd_store_checkpoint_insert(hlptd_store *st, const char *job_id, int64_t step, const char *metrics,
                                 const char *sha256, int64_t bytes, const char *tmp, hlptd_checkpoint **out, char *why,
                                 size_t len) {
    if (out) *out = NULL;
    checkpoint_insert_args a = {.c = {.step = step, .metrics = (char *)metrics, .bytes = bytes, .created_at = now()},
                               .out = out};
    snprintf(a.c.job_id, sizeof a.c.job_id, "%s", job_id ? job_id : "");
    snprintf(a.c.sha256, sizeof a.c.sha256, "%s", sha256 ? sha256 : "");
    if (hlptd_id_new(a.c.id, HLPTD_ID_CHECKPOINT)) {
        hlptd_blob_discard(st->blobs, tmp);
        return hlpt_why(why, len, HLPT_ERR_IO, "getrandom failed");
    }
    int err = insert_naming(st, tmp, sha256, checkpoint_insert_tx, &a, why, len);
    if (err && out) {
        hlptd_checkpoint_free(*out);
        *out = NULL;
    }
    return err;
}

int hlptd_store_checkpoint_list(hlptd_store *st, const char *job_id, hlptd_checkpoint ***out, size_t *n, char *why,
                               size_t len) {
    return select_rows(st, &checkpoint_t, "WHERE job_id = ?1 ORDER BY step, seq", ARGS(v_text(job_id)), -1,
                       (void ***)out, n, NULL, why, len);
}

int hlptd_store_checkpoint_page(hlptd_store *st, const char *job_id, const char *after, int limit,
                               hlptd_checkpoint ***out, size_t *n, int *has_more, char *why, size_t len) {
    return page(st, &checkpoint_t, job_id, NULL, after, limit, (void ***)out, n, has_more, why, len);
}

int hlptd_store_checkpoint_get(hlptd_store *st, const char *id, hlptd_checkpoint **out, char *why, size_t len) {
    return select_one(st, &checkpoint_t, "WHERE id = ?1", ARGS(v_text(id)), NULL, id, (void **)out, why, len);
}

int hlptd_store_checkpoint_at_step(hlptd_store *st, const char *job_id, int64_t step, hlptd_checkpoint **out, char *why,
                                  size_t len) {
    return select_one(st, &checkpoint_t, "WHERE job_id = ?1 AND step = ?2 ORDER BY seq DESC LIMIT 1",
                      ARGS(v_text(job_id), v_int(step)), "checkpoint of job", job_id, (void **)out, why, len);
}

int hlptd_store_checkpoint_latest(hlptd_store *st, const char *job_id, hlptd_checkpoint **out, char *why, size_t len) {
    int err = select_one(st, &checkpoint_t, "WHERE job_id = ?1 ORDER BY step DESC, seq DESC LIMIT 1",
                         ARGS(v_text(job_id)), "checkpoint of job", job_id, (void **)out, why, len);
    return err == HLPT_ERR_NOENT ? HLPT_OK : err;
}

typedef struct {
    const row_type *t;
    const char *id;
} delete_args;

/* Deletes the row `id` of a type whose rows name blobs, noting its blobs. */
static int delete_tx(hlptd_store *st, void *ctx, char *why, size_t len) {
    const delete_args *a = ctx;
    char sql[128];
    int64_t changes = 0;
    int err = note_blobs_of(st, a->t, "WHERE id = ?1", ARGS(v_text(a->id)), why, len);
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE id = ?1", a->t->table);
    if (!err) err = run(st, sql, ARGS(v_text(a->id)), &changes, why, len);
    if (!err && changes == 0) err = hlpt_why(why, len, HLPT_ERR_NOENT, "no %s `%s`", a->t->what, a->id);
    return err;
}

int hlptd_store_checkpoint_delete(hlptd_store *st, const char *id, char *why, size_t len) {
    delete_args a = {&checkpoint_t, id};
    return in_transaction(st, delete_tx, &a, why, len);
}

/* ---- adapters ------------------------------------------------------------------------------- */

void hlptd_adapter_rec_free(hlptd_adapter_rec *a) { row_free(&adapter_t, a); }
void hlptd_adapter_rec_list_free(hlptd_adapter_rec **v, size_t n) { rows_free(&adapter_t, (void **)v, n); }

typedef struct {
    const hlptd_adapter_fields *in;
    hlptd_adapter_rec **out;
} adapter_insert_args;

static int adapter_insert_tx(hlptd_store *st, void *ctx, char *why, size_t len) {
    const hlptd_adapter_fields *in = ((adapter_insert_args *)ctx)->in;
    hlptd_adapter_rec **out = ((adapter_insert_args *)ctx)->out;
    if (out) {
        hlptd_adapter_rec_free(*out);
        *out = NULL;
    }
    if (!in->name || !*in->name || !in->config)
        return hlpt_why(why, len, HLPT_ERR_INVAL, "adapter: name and config are required");
    int err = need_blob(st, in->sha256, in->bytes, why, len);
    if (err) return err;
    /* The row's strings are borrowed: row_insert only reads them. */
    hlptd_adapter_rec a = {.name = (char *)in->name, .config = (char *)in->config, .bytes = in->bytes,
                          .base_hash = (char *)in->base_hash, .job_id = (char *)in->job_id,
                          .checkpoint_id = (char *)in->checkpoint_id, .created_at = now()};
    snprintf(a.sha256, sizeof a.sha256, "%s", in->sha256);
    if (hlptd_id_new(a.id, HLPTD_ID_ADAPTER)) return hlpt_why(why, len, HLPT_ERR_IO, "getrandom failed");
    err = row_insert(st, &adapter_t, &a, why, len);
    if (err == HLPT_ERR_EXISTS) return hlpt_why(why, len, HLPT_ERR_EXISTS, "an adapter named `%s` exists", in->name);
    if (err == HLPT_ERR_STATE)
        return hlpt_why(why, len, HLPT_ERR_NOENT, "adapter `%s`: no such job or checkpoint", in->name);
    if (err) return err;
    return out ? hlptd_store_adapter_get(st, a.id, out, why, len) : HLPT_OK;
}

int hlptd_store_adapter_insert(hlptd_store *st, const hlptd_adapter_fields *in, hlptd_adapter_rec **out, char *why,
                              size_t len) {
    if (out) *out = NULL;
    adapter_insert_args a = {in, out};
    int err = insert_naming(st, in->tmp, in->sha256, adapter_insert_tx, &a, why, len);
    if (err && out) {
        hlptd_adapter_rec_free(*out);
        *out = NULL;
    }
    return err;
}

int hlptd_store_adapter_get(hlptd_store *st, const char *id_or_name, hlptd_adapter_rec **out, char *why, size_t len) {
    return select_one(st, &adapter_t, "WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC LIMIT 1",
                      ARGS(v_text(id_or_name)), NULL, id_or_name, (void **)out, why, len);
}

int hlptd_store_adapter_list(hlptd_store *st, const char *after, int limit, hlptd_adapter_rec ***out, size_t *n,
                            int *has_more, char *why, size_t len) {
    return page(st, &adapter_t, NULL, NULL, after, limit, (void ***)out, n, has_more, why, len);
}

int hlptd_store_adapter_delete(hlptd_store *st, const char *id, char *why, size_t len) {
    delete_args a = {&adapter_t, id};
    return in_transaction(st, delete_tx, &a, why, len);
}
