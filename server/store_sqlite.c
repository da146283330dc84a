/*
 * store_sqlite.c - the store's SQLite backend (store_backend.h).
 *
 * One connection in WAL mode (readers never block the writer; synchronous=NORMAL is durable across
 * process crashes and loses at most the last commits on power loss), foreign keys on, a busy
 * timeout. Statements are not cached: the store handles a few requests a second, and an uncached
 * statement cannot go stale across migrations.
 *
 * Migrations: the SQL of migrations/NNNN_name.sql (hlptd_migrations, store.h), one transaction each
 * with PRAGMA user_version (part of the database header, so part of the transaction) set to its
 * number. They run with foreign keys off, as SQLite requires for rebuilding a table that others
 * refer to, and PRAGMA foreign_key_check before each commit. A migration may have a C step that
 * runs in its transaction before its SQL (the table `steps`): 0005 drops the BLOB columns of
 * schema 4 and older, and its step first writes their bytes out as blobs. A database that had
 * bytes moved out is VACUUMed once, so that its file shrinks.
 */
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/err.h"
#include "store.h"
#include "store_backend.h"

struct hlptd_db {
    sqlite3 *db;
    atomic_int damaged; /* SQLite reported corruption */
};

struct hlptd_db_stmt {
    hlptd_db *db;
    sqlite3_stmt *s;
    int64_t changes;
};

/* A unique or foreign key, a full disk and a damaged file each have their own status; the rest is
 * HLPT_ERR_DB with SQLite's message. A damaged database is remembered, so that /health stops saying
 * ok over it. */
static int fail(hlptd_db *db, const char *what, char *why, size_t len) {
    int x = sqlite3_extended_errcode(db->db), rc = x & 0xff, err = HLPT_ERR_DB;
    if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) atomic_store(&db->damaged, 1);
    if (x == SQLITE_CONSTRAINT_UNIQUE || x == SQLITE_CONSTRAINT_PRIMARYKEY) err = HLPT_ERR_EXISTS;
    else if (x == SQLITE_CONSTRAINT_FOREIGNKEY) err = HLPT_ERR_STATE;
    else if (rc == SQLITE_FULL) err = HLPT_ERR_NOSPACE;
    return hlpt_why(why, len, err, "%s: %s", what, sqlite3_errmsg(db->db));
}

static int exec(hlptd_db *db, const char *sql, const char *what, char *why, size_t len) {
    char *msg = NULL;
    if (sqlite3_exec(db->db, sql, NULL, NULL, &msg) == SQLITE_OK) return HLPT_OK;
    int err = fail(db, what, why, len);
    if (msg) hlpt_why(why, len, err, "%s: %s", what, msg);
    sqlite3_free(msg);
    return err;
}

/* ---- statements ------------------------------------------------------------------------------- */

static int sq_prepare(hlptd_db *db, const char *sql, const hlptd_db_val *args, int nargs, hlptd_db_stmt **out,
                      char *why, size_t len) {
    *out = NULL;
    hlptd_db_stmt *st = calloc(1, sizeof *st);
    if (!st) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    st->db = db;
    if (sqlite3_prepare_v2(db->db, sql, -1, &st->s, NULL) != SQLITE_OK) {
        free(st);
        return fail(db, "prepare", why, len);
    }
    for (int i = 0; i < nargs; i++) {
        const hlptd_db_val *v = &args[i];
        int rc = v->type == HLPTD_DB_INT    ? sqlite3_bind_int64(st->s, i + 1, v->i)
                 : v->type == HLPTD_DB_REAL ? sqlite3_bind_double(st->s, i + 1, v->r)
                 : v->type == HLPTD_DB_TEXT ? sqlite3_bind_text(st->s, i + 1, v->s, -1, SQLITE_TRANSIENT)
                                           : sqlite3_bind_null(st->s, i + 1);
        if (rc != SQLITE_OK) {
            int err = fail(db, "bind", why, len);
            sqlite3_finalize(st->s);
            free(st);
            return err;
        }
    }
    *out = st;
    return HLPT_OK;
}

static int sq_step(hlptd_db_stmt *st, char *why, size_t len) {
    int rc = sqlite3_step(st->s);
    if (rc == SQLITE_ROW) return 1;
    if (rc == SQLITE_DONE) {
        st->changes = sqlite3_changes(st->db->db);
        return 0;
    }
    return fail(st->db, "step", why, len);
}

static void sq_reset(hlptd_db_stmt *st) { sqlite3_reset(st->s); }

static void sq_column(hlptd_db_stmt *st, int i, hlptd_db_type want, hlptd_db_val *out) {
    *out = (hlptd_db_val){.type = HLPTD_DB_NULL};
    if (sqlite3_column_type(st->s, i) == SQLITE_NULL) return;
    out->type = want;
    if (want == HLPTD_DB_INT) out->i = sqlite3_column_int64(st->s, i);
    else if (want == HLPTD_DB_REAL) out->r = sqlite3_column_double(st->s, i);
    else if (want == HLPTD_DB_TEXT) out->s = (const char *)sqlite3_column_text(st->s, i);
    if (want == HLPTD_DB_TEXT && !out->s) out->type = HLPTD_DB_NULL;
}

static int64_t sq_changes(hlptd_db_stmt *st) { return st->changes; }

static void sq_finalize(hlptd_db_stmt *st) {
    if (!st) return;
    sqlite3_finalize(st->s);
    free(st);
}

static void sq_json_field(char *out, size_t cap, const char *column, const char *key, hlptd_db_type type) {
    (void)type; /* json_extract gives a number as a number, text as text */
    /* json_extract raises an error on text that is not JSON: such a row simply has no field. */
    snprintf(out, cap, "(CASE WHEN json_valid(%s) THEN json_extract(%s, '$.%s') END)", column, column, key);
}

/* ---- transactions ----------------------------------------------------------------------------- */

/* IMMEDIATE: the write lock is taken at once, so a transaction never fails half-way for a lock. */
static int sq_begin(hlptd_db *db, char *why, size_t len) { return exec(db, "BEGIN IMMEDIATE", "begin", why, len); }
static int sq_commit(hlptd_db *db, char *why, size_t len) { return exec(db, "COMMIT", "commit", why, len); }
static void sq_rollback(hlptd_db *db) {
    if (!sqlite3_get_autocommit(db->db)) sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
}

/* One transaction, the statements in turn: the database is in this process, so there is no round
 * trip to save. */
static int sq_batch(hlptd_db *db, hlptd_db_stmt **v, int n, int lazy, char *why, size_t len) {
    (void)lazy; /* WAL with synchronous=NORMAL already syncs only at checkpoints */
    int err = sq_begin(db, why, len);
    for (int i = 0; !err && i < n; i++) {
        int rc;
        while ((rc = sq_step(v[i], why, len)) == 1) {}
        if (rc < 0) err = rc;
    }
    if (!err) err = sq_commit(db, why, len);
    if (err) sq_rollback(db);
    return err;
}

static int64_t sq_round_trips(const hlptd_db *db) {
    (void)db;
    return 0;
}

/* ---- migrations ------------------------------------------------------------------------------- */

static int user_version(hlptd_db *db) {
    sqlite3_stmt *s;
    int v = -1;
    if (sqlite3_prepare_v2(db->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

static int sq_version(hlptd_db *db) { return user_version(db); }

/* Writes the BLOB column `col` of every row of `table` that `where` selects out as a blob and
 * records it (UPDATE ... SET sha256, plus the size when size_col is not NULL). One row at a time,
 * so only one row's bytes are in memory; a row that has its sha256 no longer matches `where`. */
static int move_column(hlptd_db *db, hlptd_blobs *blobs, const char *table, const char *col, const char *where,
                       const char *size_col, int *moved, char *why, size_t len) {
    char sel[512], upd[512];
    snprintf(sel, sizeof sel, "SELECT id, %s FROM %s WHERE %s LIMIT 1", col, table, where);
    snprintf(upd, sizeof upd, "UPDATE %s SET sha256 = ?2%s%s%s WHERE id = ?1", table, size_col ? ", " : "",
             size_col ? size_col : "", size_col ? " = ?3" : "");
    for (;;) {
        sqlite3_stmt *s = NULL, *u = NULL;
        if (sqlite3_prepare_v2(db->db, sel, -1, &s, NULL) != SQLITE_OK) return fail(db, "migration: move bytes", why, len);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_DONE) {
            sqlite3_finalize(s);
            return HLPT_OK;
        }
        if (rc != SQLITE_ROW) {
            int err = fail(db, "migration: move bytes", why, len);
            sqlite3_finalize(s);
            return err;
        }
        if (!blobs) {
            sqlite3_finalize(s);
            return hlpt_why(why, len, HLPT_ERR_INVAL, "migration: %s holds bytes to move out, and no blob folder was given",
                            table);
        }
        char sha[HLPT_SHA256_HEX];
        int n = sqlite3_column_bytes(s, 1);
        const void *p = sqlite3_column_blob(s, 1);
        int err = hlptd_blob_put(blobs, p ? p : "", (size_t)n, sha, why, len);
        if (!err && sqlite3_prepare_v2(db->db, upd, -1, &u, NULL) != SQLITE_OK) err = fail(db, "migration", why, len);
        if (!err) {
            sqlite3_bind_value(u, 1, sqlite3_column_value(s, 0));
            sqlite3_bind_text(u, 2, sha, -1, SQLITE_TRANSIENT);
            if (size_col) sqlite3_bind_int64(u, 3, n);
            if (sqlite3_step(u) != SQLITE_DONE) err = fail(db, "migration: record a blob", why, len);
        }
        sqlite3_finalize(u);
        sqlite3_finalize(s);
        if (err) return err;
        *moved = 1;
    }
}

/* Before 0005: uploads, checkpoint states and adapter weights go out to blobs. A file deleted under
 * schema 3 kept no bytes and gets no blob. */
static int step_blobs_out(hlptd_db *db, hlptd_blobs *blobs, int *moved, char *why, size_t len) {
    int err = move_column(db, blobs, "files", "content", "sha256 IS NULL AND content IS NOT NULL AND deleted_at IS NULL",
                          NULL, moved, why, len);
    if (!err) err = move_column(db, blobs, "checkpoints", "state", "sha256 IS NULL", "bytes", moved, why, len);
    if (!err) err = move_column(db, blobs, "adapters", "weights", "sha256 IS NULL", "bytes", moved, why, len);
    return err;
}

/* The C steps of migrations, each run in its migration's transaction before its SQL. */
static const struct {
    int version;
    int (*run)(hlptd_db *db, hlptd_blobs *blobs, int *moved, char *why, size_t len);
} steps[] = {
    {5, step_blobs_out},
};

static int foreign_keys_ok(hlptd_db *db, const char *name, char *why, size_t len) {
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->db, "PRAGMA foreign_key_check", -1, &s, NULL) != SQLITE_OK)
        return fail(db, "foreign_key_check", why, len);
    int rc = sqlite3_step(s), err = HLPT_OK;
    if (rc == SQLITE_ROW)
        err = hlpt_why(why, len, HLPT_ERR_DB, "migration %s: a row of %s refers to a missing row of %s", name,
                       (const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 2));
    else if (rc != SQLITE_DONE)
        err = fail(db, "foreign_key_check", why, len);
    sqlite3_finalize(s);
    return err;
}

static int migrate(hlptd_db *db, int target, hlptd_blobs *blobs, char *why, size_t len) {
    for (int i = 0; i < hlptd_migrations_count; i++)
        if (hlptd_migrations[i].version != i + 1)
            return hlpt_why(why, len, HLPT_ERR_INTERNAL, "migration %s: expected number %04d (gap or duplicate)",
                            hlptd_migrations[i].name, i + 1);
    int cur = user_version(db), moved = 0;
    if (cur < 0) return fail(db, "read user_version", why, len);
    if (cur > hlptd_migrations_count)
        return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED,
                        "database schema version %d is newer than this hlptd knows (%d)", cur, hlptd_migrations_count);
    for (int v = cur + 1; v <= target; v++) {
        const hlptd_migration *m = &hlptd_migrations[v - 1];
        char sql[64];
        /* PRAGMA takes no bound parameters; v is our own integer. */
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v);
        /* foreign_keys cannot change inside a transaction. */
        int err = exec(db, "PRAGMA foreign_keys=OFF", "migration", why, len);
        if (!err) err = exec(db, "BEGIN IMMEDIATE", "migration", why, len);
        for (size_t i = 0; !err && i < sizeof steps / sizeof steps[0]; i++)
            if (steps[i].version == v) err = steps[i].run(db, blobs, &moved, why, len);
        if (!err) err = exec(db, m->sql, m->name, why, len);
        if (!err) err = foreign_keys_ok(db, m->name, why, len);
        if (!err) err = exec(db, sql, m->name, why, len);
        if (!err) err = exec(db, "COMMIT", m->name, why, len);
        if (err) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s", why ? why : "");
            sq_rollback(db);
            sqlite3_exec(db->db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
            return hlpt_why(why, len, err, "migration %s: %s", m->name, sub);
        }
        if ((err = exec(db, "PRAGMA foreign_keys=ON", "migration", why, len))) return err;
    }
    /* The bytes that left the database leave free pages behind; VACUUM gives them back to the file
     * system. It needs room for a copy of what is left, so on a full disk it fails, and the store
     * works without it. */
    if (moved) sqlite3_exec(db->db, "VACUUM", NULL, NULL, NULL);
    return HLPT_OK;
}

/* ---- open, check, close ----------------------------------------------------------------------- */

static void sq_close(hlptd_db *db) {
    if (!db) return;
    sqlite3_close(db->db);
    free(db);
}

static int sq_open(const char *path, int version, hlptd_blobs *blobs, hlptd_db **out, char *why, size_t len) {
    *out = NULL;
    if (version < 0) version = hlptd_migrations_count;
    if (version > hlptd_migrations_count) return hlpt_why(why, len, HLPT_ERR_INVAL, "no schema version %d", version);
    hlptd_db *db = calloc(1, sizeof *db);
    if (!db) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    int err;
    if (sqlite3_open_v2(path, &db->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        err = hlpt_why(why, len, HLPT_ERR_DB, "open %s: %s", path, db->db ? sqlite3_errmsg(db->db) : "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(db->db, 1);
    sqlite3_busy_timeout(db->db, 5000);
    if ((err = exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", path, why, len)))
        goto fail;
    if ((err = migrate(db, version, blobs, why, len))) goto fail;
    *out = db;
    return HLPT_OK;
fail:
    sq_close(db);
    return err;
}

static void sq_describe(const char *path, char *out, size_t cap) { snprintf(out, cap, "database %s", path); }

static int sq_damaged(const hlptd_db *db) { return db && atomic_load(&db->damaged); }

static int sq_check(const char *path, char *why, size_t len) {
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

const hlptd_store_backend hlptd_store_sqlite = {
    .name = "sqlite",
    .lock_skip = "",
    /* julianday('now') is the statement's time, to the millisecond. */
    .now_ms = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    .check = sq_check,
    .describe = sq_describe,
    .open = sq_open,
    .close = sq_close,
    .version = sq_version,
    .damaged = sq_damaged,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .prepare = sq_prepare,
    .step = sq_step,
    .reset = sq_reset,
    .column = sq_column,
    .changes = sq_changes,
    .finalize = sq_finalize,
    .batch = sq_batch,
    .round_trips = sq_round_trips,
    .json_field = sq_json_field,
};
