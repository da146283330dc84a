/*
 * store_pg.c - the store's PostgreSQL backend (store_backend.h), over libpq.
 *
 * One connection per store handle, opened from a libpq URL (postgres://… or postgresql://…; every
 * libpq parameter may follow in its query string). Statements are not prepared on the server, as
 * the SQLite backend keeps no statement cache: each runs as one PQexecParams call, store.c's `?N`
 * spelled `$N`, its parameters typed (bigint, double precision, text; a NULL left for the server to
 * infer from where it stands), and its whole result held until the statement is finalized. Values
 * travel as text: integers in decimal, doubles with 17 significant digits, which round-trip
 * exactly; what comes back is read with strtoll and strtod.
 *
 * Round trips: a statement outside a transaction is one; a write inside one travels with its
 * savepoint and the savepoint's release as one pipeline (libpq's pipeline mode: the three sent, one
 * Sync, the results read); a batch (BEGIN, its statements, COMMIT) is one pipeline too. The count is
 * kept for /metrics and the tests.
 *
 * Notifications: listen subscribes the connection to channel hlpt_jobs (migration pg/0008's
 * triggers send on it), and again after a reconnect; the loop watches the socket and reads what
 * arrived, besides what libpq read in while running statements.
 *
 * Where PostgreSQL differs from SQLite under the same SQL: a failed statement inside a transaction
 * aborts the transaction (the store rolls back on any failure inside one anyway); `seq` is an
 * identity column, whose numbers a rolled-back insert may skip; the JSON lookup of json_field is
 * two functions of the schema (migrations/pg/0005_init.sql), since a cast of text that is not JSON
 * raises an error.
 *
 * Errors come from the SQLSTATE: 23505 (unique) is HLPT_ERR_EXISTS, 23503 (foreign key)
 * HLPT_ERR_STATE, 53100 (disk full) HLPT_ERR_NOSPACE, and XX001/XX002 (data or index corrupted) mark
 * the store damaged; the rest is HLPT_ERR_DB with the server's message. A connection that broke
 * (the server restarted) is opened again before the next statement outside a transaction; the
 * statement the connection failed under is not sent again (the server may have applied it).
 * Messages name the server by its host, port, database and user, never with the URL's password.
 *
 * Migrations: the SQL of migrations/pg/NNNN_name.sql (hlptd_pg_migrations, store.h), numbered as
 * SQLite's: a new database starts at the current schema in one migration (0005_init), and each
 * later change is one migration in both folders, of one number. The version is the one row of
 * hlpt_schema. Each migration runs in one transaction under an advisory lock, the version read
 * again inside it, so that several hlptd starting at once on one database migrate it once.
 */
#include <libpq-fe.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hlpt/err.h"
#include "store.h"
#include "store_backend.h"

/* The parameters' type OIDs (PostgreSQL's catalog, pg_type.dat: int8, text, float8), fixed since
 * the first releases. */
enum { OID_INT8 = 20, OID_TEXT = 25, OID_FLOAT8 = 701 };

/* The advisory lock migrations hold: "hlpt" in ASCII. */
#define MIGRATION_LOCK "SELECT pg_advisory_xact_lock(1751937140)"

struct hlptd_db {
    PGconn *conn;
    int in_tx;          /* between begin and commit or rollback */
    char where[256];    /* the database for messages (describe) */
    char secret[2][256]; /* the URL's password, as written and as decoded: kept out of messages */
    atomic_int damaged; /* the server reported corrupted data */
    atomic_llong trips; /* round trips to the server: each statement sent alone, each pipeline */
    int listening;      /* LISTEN hlpt_jobs was asked for: asked again after a reconnect */
};

struct hlptd_db_stmt {
    hlptd_db *db;
    char *sql;            /* with $N */
    int nargs;
    Oid *types;           /* [nargs] */
    char **values;        /* [nargs] owned text, NULL for SQL NULL */
    PGresult *res;        /* NULL until the first step */
    int row;              /* the current row */
    int64_t changes;
};

/* ---- messages --------------------------------------------------------------------------------- */

/* Replaces every occurrence of the URL's password in s with asterisks (at most 4: never longer). */
static void redact(const hlptd_db *db, char *s) {
    for (int k = 0; k < 2; k++) {
        const char *pw = db->secret[k];
        size_t n = strlen(pw), r = n < 4 ? n : 4;
        if (!n) continue;
        for (char *p = s, *hit; (hit = strstr(p, pw)); p = hit + r) {
            memset(hit, '*', r);
            memmove(hit + r, hit + n, strlen(hit + n) + 1);
        }
    }
}

/* libpq's message text on one line (its lines joined by spaces, tabs dropped), without the
 * password. */
static void message(const hlptd_db *db, const char *msg, char *out, size_t cap) {
    size_t n = 0;
    for (const char *p = msg && *msg ? msg : "unknown error"; *p && n + 1 < cap; p++)
        if (*p == '\t') continue;
        else out[n++] = *p == '\n' ? ' ' : *p;
    while (n && out[n - 1] == ' ') n--;
    out[n] = 0;
    redact(db, out);
}

/* The status of a failed result (NULL: libpq's own failure, e.g. a lost connection). */
static int fail(hlptd_db *db, const PGresult *res, const char *what, char *why, size_t len) {
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char msg[512];
    message(db, primary ? primary : PQerrorMessage(db->conn), msg, sizeof msg);
    int err = HLPT_ERR_DB;
    if (state) {
        if (!strcmp(state, "23505")) err = HLPT_ERR_EXISTS;
        else if (!strcmp(state, "23503")) err = HLPT_ERR_STATE;
        else if (!strcmp(state, "53100")) err = HLPT_ERR_NOSPACE;
        else if (!strcmp(state, "XX001") || !strcmp(state, "XX002")) atomic_store(&db->damaged, 1);
    }
    return hlpt_why(why, len, err, "%s: %s", what, msg);
}

/* Runs SQL without parameters (one statement or several); *out (may be NULL) gets the result of
 * the last one, to PQclear. */
static int exec(hlptd_db *db, const char *sql, const char *what, PGresult **out, char *why, size_t len) {
    if (out) *out = NULL;
    atomic_fetch_add(&db->trips, 1);
    PGresult *res = PQexec(db->conn, sql);
    ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        int err = fail(db, res, what, why, len);
        PQclear(res);
        return err;
    }
    if (out) *out = res;
    else PQclear(res);
    return HLPT_OK;
}

/* ---- the URL ---------------------------------------------------------------------------------- */

/* The value of keyword `key` among libpq's parsed options, or NULL. */
static const char *option(const PQconninfoOption *o, const char *key) {
    for (; o && o->keyword; o++)
        if (!strcmp(o->keyword, key)) return o->val && *o->val ? o->val : NULL;
    return NULL;
}

/* The password as the URL writes it: between the first ':' and the '@' of its user part. */
static void raw_password(const char *where, char *out, size_t cap) {
    out[0] = 0;
    const char *s = strstr(where, "://");
    if (!s) return;
    s += 3;
    const char *end = s + strcspn(s, "/?#"), *at = NULL;
    for (const char *p = s; p < end; p++)
        if (*p == '@') at = p;
    const char *colon = at ? memchr(s, ':', (size_t)(at - s)) : NULL;
    if (colon) snprintf(out, cap, "%.*s", (int)(at - colon - 1), colon + 1);
}

static void pg_describe(const char *where, char *out, size_t cap) {
    char *err = NULL;
    PQconninfoOption *o = PQconninfoParse(where, &err);
    PQfreemem(err);
    if (!o) {
        snprintf(out, cap, "PostgreSQL (a URL libpq cannot read)");
        return;
    }
    const char *host = option(o, "host"), *addr = option(o, "hostaddr"), *port = option(o, "port"),
               *db = option(o, "dbname"), *user = option(o, "user");
    /* host may be a list (host=a,b); it is named as written. */
    snprintf(out, cap, "PostgreSQL database %s on %s%s%s%s%s", db ? db : "(the user's)",
             host ? host : addr ? addr : "the local socket", port ? " port " : "", port ? port : "",
             user ? " as user " : "", user ? user : "");
    PQconninfoFree(o);
}

/* ---- statements ------------------------------------------------------------------------------- */

/* `?N` outside quotes becomes `$N`: the same length. store.c's SQL has no `?` inside a string
 * literal or a quoted name, nor a bare `?`. */
static void rewrite(char *sql) {
    char quote = 0;
    for (char *p = sql; *p; p++) {
        if (quote) {
            HLPT_ASSERT(*p != '?');
            if (*p == quote) quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == '?') {
            HLPT_ASSERT(p[1] >= '1' && p[1] <= '9');
            *p = '$';
        }
    }
}

static void pg_finalize(hlptd_db_stmt *s) {
    if (!s) return;
    PQclear(s->res);
    for (int i = 0; s->values && i < s->nargs; i++) free(s->values[i]);
    free(s->values);
    free(s->types);
    free(s->sql);
    free(s);
}

/* A broken connection (the server restarted) is opened again, but only between transactions: a
 * transaction's statements never continue on a new connection. A connection that listened listens
 * again (what was notified while it was away is lost: the heartbeat reads the states it needs). */
static void reconnect(hlptd_db *db) {
    if (db->in_tx || PQstatus(db->conn) != CONNECTION_BAD) return;
    PQreset(db->conn);
    if (PQstatus(db->conn) == CONNECTION_OK && db->listening) exec(db, "LISTEN hlpt_jobs", "listen", NULL, NULL, 0);
}

/* One piece of a pipeline: SQL without parameters, or a prepared statement (s), whose result it
 * keeps. */
typedef struct {
    const char *sql;
    hlptd_db_stmt *s;
} piece;

/* Sends the pieces as one pipeline ending in one Sync, a single round trip, and reads their
 * results: a statement's result is kept in its s->res. The server runs them in order; after the
 * first that fails it skips the rest (libpq reports them aborted), and that failure is the answer. */
static int pipeline(hlptd_db *db, const piece *p, int n, char *why, size_t len) {
    PGconn *c = db->conn;
    if (!PQenterPipelineMode(c)) return fail(db, NULL, "pipeline", why, len);
    atomic_fetch_add(&db->trips, 1);
    int sent = 0, err = HLPT_OK;
    for (; sent < n; sent++) {
        const hlptd_db_stmt *s = p[sent].s;
        if (!(s ? PQsendQueryParams(c, s->sql, s->nargs, s->types, (const char *const *)s->values, NULL, NULL, 0)
                : PQsendQueryParams(c, p[sent].sql, 0, NULL, NULL, NULL, NULL, 0)))
            break;
    }
    /* Synced even after a failed send: the server flushes the results of what it got. */
    if (!PQpipelineSync(c) || sent < n) err = fail(db, NULL, "pipeline", why, len);
    for (int i = 0; i < sent; i++) {
        PGresult *r;
        while ((r = PQgetResult(c))) {
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_FATAL_ERROR && !err) err = fail(db, r, "step", why, len);
            if (p[i].s && !p[i].s->res && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)) p[i].s->res = r;
            else PQclear(r);
        }
    }
    /* The Sync's own result, then nothing is pending and the connection leaves pipeline mode. */
    PGresult *r;
    while ((r = PQgetResult(c)) && PQresultStatus(r) != PGRES_PIPELINE_SYNC) PQclear(r);
    PQclear(r);
    PQexitPipelineMode(c);
    return err;
}

/* A statement's result is there: positions it on its first row, or records its changes. */
static int first_row(hlptd_db_stmt *s) {
    if (PQresultStatus(s->res) == PGRES_TUPLES_OK) {
        s->row = 0;
        s->changes = 0;
        return PQntuples(s->res) > 0 ? 1 : 0;
    }
    s->changes = strtoll(PQcmdTuples(s->res), NULL, 10);
    return 0;
}

static int pg_prepare(hlptd_db *db, const char *sql, const hlptd_db_val *args, int nargs, hlptd_db_stmt **out,
                      char *why, size_t len) {
    *out = NULL;
    hlptd_db_stmt *s = calloc(1, sizeof *s);
    if (!s) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    s->db = db;
    s->nargs = nargs;
    s->sql = strdup(sql);
    s->types = calloc((size_t)nargs + 1, sizeof *s->types);
    s->values = calloc((size_t)nargs + 1, sizeof *s->values);
    if (!s->sql || !s->types || !s->values) goto oom;
    rewrite(s->sql);
    for (int i = 0; i < nargs; i++) {
        const hlptd_db_val *v = &args[i];
        char num[32];
        if (v->type == HLPTD_DB_NULL || (v->type == HLPTD_DB_TEXT && !v->s)) continue; /* type 0: inferred */
        if (v->type == HLPTD_DB_INT) snprintf(num, sizeof num, "%" PRId64, v->i);
        else if (v->type == HLPTD_DB_REAL) snprintf(num, sizeof num, "%.17g", v->r);
        s->types[i] = v->type == HLPTD_DB_INT ? OID_INT8 : v->type == HLPTD_DB_REAL ? OID_FLOAT8 : OID_TEXT;
        if (!(s->values[i] = strdup(v->type == HLPTD_DB_TEXT ? v->s : num))) goto oom;
    }
    s->row = -1;
    *out = s;
    return HLPT_OK;
oom:
    pg_finalize(s);
    return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
}

static int pg_step(hlptd_db_stmt *s, char *why, size_t len) {
    if (s->res) {
        s->row++;
        return s->row < PQntuples(s->res) ? 1 : 0;
    }
    reconnect(s->db);
    /* PostgreSQL aborts the whole transaction at a failed statement, SQLite only the statement: a
     * write inside a transaction runs under a savepoint, so that its failure (a name taken, a row
     * gone) leaves the transaction to the caller, as on SQLite. The savepoint, the statement and
     * its release travel in one pipeline. */
    if (s->db->in_tx && strncasecmp(s->sql, "SELECT", 6) != 0) {
        const piece p[] = {{"SAVEPOINT hlptd_stmt", NULL}, {NULL, s}, {"RELEASE SAVEPOINT hlptd_stmt", NULL}};
        int err = pipeline(s->db, p, 3, why, len);
        if (err) {
            PQclear(s->res);
            s->res = NULL;
            exec(s->db, "ROLLBACK TO SAVEPOINT hlptd_stmt", "step", NULL, NULL, 0);
            return err;
        }
        return first_row(s);
    }
    atomic_fetch_add(&s->db->trips, 1);
    s->res = PQexecParams(s->db->conn, s->sql, s->nargs, s->types, (const char *const *)s->values, NULL, NULL, 0);
    ExecStatusType st = s->res ? PQresultStatus(s->res) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return first_row(s);
    int err = fail(s->db, s->res, "step", why, len);
    PQclear(s->res);
    s->res = NULL;
    return err;
}

/* BEGIN, the statements and COMMIT in one pipeline. A failure leaves the transaction aborted on the
 * server until its ROLLBACK. A lazy one does not wait for its WAL flush: besides the flush itself,
 * that keeps the flush out of the database-wide lock under which a transaction that notifies
 * commits (docs/cluster.md, "Where it breaks first"). */
static int pg_batch(hlptd_db *db, hlptd_db_stmt **v, int n, int lazy, char *why, size_t len) {
    HLPT_ASSERT(!db->in_tx);
    reconnect(db);
    piece p[19];
    if (n < 1 || n > 16) return hlpt_why(why, len, HLPT_ERR_INVAL, "a batch holds 1 to 16 statements, not %d", n);
    int k = 0;
    p[k++] = (piece){"BEGIN", NULL};
    if (lazy) p[k++] = (piece){"SET LOCAL synchronous_commit TO off", NULL};
    for (int i = 0; i < n; i++) p[k++] = (piece){NULL, v[i]};
    p[k++] = (piece){"COMMIT", NULL};
    int err = pipeline(db, p, k, why, len);
    for (int i = 0; i < n; i++) {
        if (!v[i]->res) continue;
        first_row(v[i]);
        PQclear(v[i]->res); /* rows are not kept */
        v[i]->res = NULL;
    }
    if (err && PQstatus(db->conn) == CONNECTION_OK && PQtransactionStatus(db->conn) != PQTRANS_IDLE)
        exec(db, "ROLLBACK", "batch", NULL, NULL, 0);
    return err;
}

static int64_t pg_round_trips(const hlptd_db *db) { return atomic_load(&((hlptd_db *)db)->trips); }

static int pg_listen(hlptd_db *db, char *why, size_t len) {
    reconnect(db);
    int err = exec(db, "LISTEN hlpt_jobs", "listen", NULL, why, len);
    if (!err) db->listening = 1;
    return err;
}

static int pg_socket(hlptd_db *db) { return PQstatus(db->conn) == CONNECTION_OK ? PQsocket(db->conn) : -1; }

static int pg_notifications(hlptd_db *db, int read, void (*fn)(void *ctx, const char *payload), void *ctx) {
    if (read) PQconsumeInput(db->conn); /* a broken connection is found by the next statement */
    int n = 0;
    PGnotify *note;
    while ((note = PQnotifies(db->conn))) {
        fn(ctx, note->extra);
        PQfreemem(note);
        n++;
    }
    return n;
}

static void pg_reset(hlptd_db_stmt *s) {
    PQclear(s->res);
    s->res = NULL;
    s->row = -1;
}

static void pg_column(hlptd_db_stmt *s, int i, hlptd_db_type want, hlptd_db_val *out) {
    *out = (hlptd_db_val){.type = HLPTD_DB_NULL};
    if (!s->res || s->row < 0 || s->row >= PQntuples(s->res) || i >= PQnfields(s->res) ||
        PQgetisnull(s->res, s->row, i))
        return;
    const char *v = PQgetvalue(s->res, s->row, i);
    out->type = want;
    if (want == HLPTD_DB_INT) out->i = strtoll(v, NULL, 10);
    else if (want == HLPTD_DB_REAL) out->r = strtod(v, NULL);
    else if (want == HLPTD_DB_TEXT) out->s = v;
    else out->type = HLPTD_DB_NULL;
}

static int64_t pg_changes(hlptd_db_stmt *s) { return s->changes; }

static void pg_json_field(char *out, size_t cap, const char *column, const char *key, hlptd_db_type type) {
    /* key is an SQL name of store.c's, never user input: it goes into a literal as it is. */
    HLPT_ASSERT(strspn(key, "abcdefghijklmnopqrstuvwxyz_0123456789") == strlen(key));
    snprintf(out, cap, "%s(%s, '%s')", type == HLPTD_DB_TEXT ? "hlpt_json_text" : "hlpt_json_number", column, key);
}

/* ---- transactions ----------------------------------------------------------------------------- */

static int pg_begin(hlptd_db *db, char *why, size_t len) {
    reconnect(db);
    int err = exec(db, "BEGIN", "begin", NULL, why, len);
    if (!err) db->in_tx = 1;
    return err;
}

static void pg_rollback(hlptd_db *db) {
    db->in_tx = 0;
    if (PQstatus(db->conn) == CONNECTION_OK && PQtransactionStatus(db->conn) != PQTRANS_IDLE) {
        atomic_fetch_add(&db->trips, 1);
        PQclear(PQexec(db->conn, "ROLLBACK"));
    }
}

static int pg_commit(hlptd_db *db, char *why, size_t len) {
    PGresult *res;
    int err = exec(db, "COMMIT", "commit", &res, why, len);
    /* COMMIT of a transaction that an error aborted answers ROLLBACK, without an error. */
    if (!err && strcmp(PQcmdStatus(res), "COMMIT"))
        err = hlpt_why(why, len, HLPT_ERR_DB, "commit: the transaction was rolled back after an earlier error");
    PQclear(res);
    db->in_tx = 0;
    return err;
}

/* ---- migrations ------------------------------------------------------------------------------- */

/* The schema's version in *v, inside a transaction that holds the migration lock; hlpt_schema is
 * made (version 0) in a database that has none. */
static int locked_version(hlptd_db *db, int *v, char *why, size_t len) {
    PGresult *res;
    int err = exec(db, MIGRATION_LOCK, "migration lock", NULL, why, len);
    if (!err)
        err = exec(db,
                   "CREATE TABLE IF NOT EXISTS hlpt_schema (version INTEGER NOT NULL);"
                   "INSERT INTO hlpt_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM hlpt_schema);"
                   "SELECT max(version) FROM hlpt_schema",
                   "hlpt_schema", &res, why, len);
    if (err) return err;
    *v = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) ? atoi(PQgetvalue(res, 0, 0)) : -1;
    PQclear(res);
    return *v < 0 ? hlpt_why(why, len, HLPT_ERR_DB, "hlpt_schema holds no version") : HLPT_OK;
}

/* The versions of migrations/pg follow each other, and the last is SQLite's last: both backends
 * stand at one schema version. */
static int table_sound(char *why, size_t len) {
    const hlptd_migration *m = hlptd_pg_migrations;
    int n = hlptd_pg_migrations_count;
    for (int i = 1; i < n; i++)
        if (m[i].version != m[i - 1].version + 1)
            return hlpt_why(why, len, HLPT_ERR_INTERNAL, "PostgreSQL migration %s: expected number %04d (gap or duplicate)",
                            m[i].name, m[i - 1].version + 1);
    if (n < 1 || m[n - 1].version != hlptd_migrations_count)
        return hlpt_why(why, len, HLPT_ERR_INTERNAL, "the PostgreSQL schema ends at version %d, SQLite's at %d",
                        n ? m[n - 1].version : 0, hlptd_migrations_count);
    return HLPT_OK;
}

static int migrate(hlptd_db *db, int target, char *why, size_t len) {
    const hlptd_migration *m = hlptd_pg_migrations;
    int n = hlptd_pg_migrations_count, head = m[n - 1].version, cur, err;
    for (int i = -1; i < n; i++) {
        /* i = -1 only reads the version (and makes hlpt_schema): a newer database is refused before
         * anything else. */
        if (i >= 0 && m[i].version > target) break;
        if ((err = exec(db, "BEGIN", "migration", NULL, why, len))) return err;
        err = locked_version(db, &cur, why, len);
        if (!err && cur > head)
            err = hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "database schema version %d is newer than this hlptd knows (%d)",
                           cur, head);
        int apply = !err && i >= 0 && cur < m[i].version;
        if (apply && cur != m[i].version - 1 && !(i == 0 && cur == 0))
            err = hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "database schema version %d: PostgreSQL stores start at %d",
                           cur, m[0].version);
        if (!err && apply) {
            char sql[64];
            snprintf(sql, sizeof sql, "UPDATE hlpt_schema SET version = %d", m[i].version);
            if (!(err = exec(db, m[i].sql, m[i].name, NULL, why, len))) err = exec(db, sql, m[i].name, NULL, why, len);
        }
        if (!err) err = exec(db, "COMMIT", "migration", NULL, why, len);
        if (err) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s", why ? why : "");
            PQclear(PQexec(db->conn, "ROLLBACK"));
            return i >= 0 ? hlpt_why(why, len, err, "migration %s: %s", m[i].name, sub) : err;
        }
    }
    return HLPT_OK;
}

static int pg_version(hlptd_db *db) {
    reconnect(db);
    atomic_fetch_add(&db->trips, 1);
    PGresult *res = PQexec(db->conn, "SELECT max(version) FROM hlpt_schema");
    int v = res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)
                ? atoi(PQgetvalue(res, 0, 0))
                : -1;
    PQclear(res);
    return v;
}

/* ---- open, check, close ----------------------------------------------------------------------- */

/* Server notices (e.g. "relation hlpt_schema already exists, skipping") are not the daemon's log. */
static void quiet(void *arg, const char *msg) { (void)arg, (void)msg; }

static void pg_close(hlptd_db *db) {
    if (!db) return;
    PQfinish(db->conn);
    free(db);
}

/* Checks that libpq can read the URL; why never holds its password. */
static int parse(hlptd_db *db, const char *where, char *why, size_t len) {
    char *perr = NULL;
    PQconninfoOption *o = PQconninfoParse(where, &perr);
    raw_password(where, db->secret[0], sizeof db->secret[0]);
    if (o && option(o, "password")) snprintf(db->secret[1], sizeof db->secret[1], "%s", option(o, "password"));
    PQconninfoFree(o);
    if (o) return HLPT_OK;
    char msg[512];
    message(db, perr, msg, sizeof msg);
    PQfreemem(perr);
    return hlpt_why(why, len, HLPT_ERR_INVAL, "the store's PostgreSQL URL cannot be read: %s", msg);
}

static int pg_open(const char *where, int version, hlptd_blobs *blobs, hlptd_db **out, char *why, size_t len) {
    (void)blobs; /* no PostgreSQL schema held bytes to move out */
    *out = NULL;
    int err = table_sound(why, len);
    if (err) return err;
    int head = hlptd_pg_migrations[hlptd_pg_migrations_count - 1].version;
    if (version < 0) version = head;
    if (version > head) return hlpt_why(why, len, HLPT_ERR_INVAL, "no schema version %d", version);
    if (version > 0 && version < hlptd_pg_migrations[0].version)
        return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "PostgreSQL stores start at schema version %d, not %d",
                        hlptd_pg_migrations[0].version, version);
    hlptd_db *db = calloc(1, sizeof *db);
    if (!db) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    pg_describe(where, db->where, sizeof db->where);
    if ((err = parse(db, where, why, len))) goto fail;
    /* The URL's own settings win over these defaults: libpq reads the expanded dbname last. The
     * store's text is UTF-8 (ids, names, JSON), whatever the database's encoding. */
    /* A node fences itself when the store has not answered for 2/3 of a lease, which only works
     * when a call to a database that has gone fails within seconds (docs/cluster.md): over TCP,
     * connecting, an unacknowledged send and a silent connection are each bounded to about 4 s.
     * (A Unix socket ignores these.) */
    const char *const keys[] = {"connect_timeout", "tcp_user_timeout", "keepalives", "keepalives_idle",
                                "keepalives_interval", "keepalives_count", "fallback_application_name",
                                "client_encoding", "dbname", NULL};
    const char *const vals[] = {"4", "4000", "1", "2", "1", "2", "hlptd", "UTF8", where, NULL};
    db->conn = PQconnectdbParams(keys, vals, 1);
    if (!db->conn) {
        err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (PQstatus(db->conn) != CONNECTION_OK) {
        char msg[512];
        message(db, PQerrorMessage(db->conn), msg, sizeof msg);
        err = hlpt_why(why, len, HLPT_ERR_DB, "cannot connect to the store, %s: %s", db->where, msg);
        goto fail;
    }
    PQsetNoticeProcessor(db->conn, quiet, NULL);
    /* Doubles come back with every digit they have (servers before 12 round them by default). */
    if ((err = exec(db, "SET extra_float_digits = 3", db->where, NULL, why, len))) goto fail;
    if ((err = migrate(db, version, why, len))) {
        char sub[512];
        snprintf(sub, sizeof sub, "%s", why ? why : "");
        hlpt_why(why, len, err, "%s: %s", db->where, sub);
        goto fail;
    }
    *out = db;
    return HLPT_OK;
fail:
    pg_close(db);
    return err;
}

static int pg_damaged(const hlptd_db *db) { return db && atomic_load(&db->damaged); }

/* Nothing lies on this machine to check before opening; the URL is read, so that a bad one fails
 * the start with its reason. */
static int pg_check(const char *where, char *why, size_t len) {
    hlptd_db db = {0};
    return parse(&db, where, why, len);
}

const hlptd_store_backend hlptd_store_pg = {
    .name = "postgres",
    .lock_skip = " FOR UPDATE SKIP LOCKED",
    .shared = 1,
    /* clock_timestamp(): the time now, not the transaction's start. */
    .now_ms = "CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT)",
    .check = pg_check,
    .describe = pg_describe,
    .open = pg_open,
    .close = pg_close,
    .version = pg_version,
    .damaged = pg_damaged,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .prepare = pg_prepare,
    .step = pg_step,
    .reset = pg_reset,
    .column = pg_column,
    .changes = pg_changes,
    .finalize = pg_finalize,
    .batch = pg_batch,
    .round_trips = pg_round_trips,
    .listen = pg_listen,
    .socket = pg_socket,
    .notifications = pg_notifications,
    .json_field = pg_json_field,
};
