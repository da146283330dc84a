/*
 * store_backend.h - what a database gives the store (store.c): connections, transactions and
 * prepared statements with bound parameters, as one table of functions. Only store.c and the
 * backends include this header; the rest of hlptd sees store.h.
 *
 * store.c writes its SQL once for every backend: the common subset of SQLite and PostgreSQL, with
 * numbered parameters `?1`, `?2`, … (a backend whose driver spells them otherwise rewrites them in
 * prepare) and the one JSON lookup it needs taken from the backend (json_field). Integers are
 * 64-bit, reals doubles, booleans only the results of comparisons, `LIMIT` a bound parameter (no
 * negative "no limit": INT64_MAX). The schema and its migrations are the backend's own, applied by
 * its open, with the same tables, columns, constraints and version numbers in each. The backends are
 * SQLite (store_sqlite.c; `where` is a file) and PostgreSQL (store_pg.c; `where` is a libpq URL).
 *
 * Threading: a connection and its statements belong to the store's owner thread.
 */
#ifndef HLPTD_STORE_BACKEND_H
#define HLPTD_STORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "blobs.h"

typedef struct hlptd_db hlptd_db;           /* a backend's connection */
typedef struct hlptd_db_stmt hlptd_db_stmt; /* a prepared statement with its parameters bound */

typedef enum { HLPTD_DB_NULL, HLPTD_DB_INT, HLPTD_DB_REAL, HLPTD_DB_TEXT } hlptd_db_type;

/* A parameter or a column value. */
typedef struct {
    hlptd_db_type type;
    int64_t i;     /* HLPTD_DB_INT */
    double r;      /* HLPTD_DB_REAL */
    const char *s; /* HLPTD_DB_TEXT: borrowed (a column's: valid until the next step) */
} hlptd_db_val;

typedef struct {
    const char *name; /* "sqlite", "postgres" */
    /* Appended to a SELECT that picks a row for this connection to claim (the queue's next job):
     * " FOR UPDATE SKIP LOCKED" where several connections claim at once, so that each picks a row
     * no other is claiming; "" where one writer makes the claim atomic anyway. */
    const char *lock_skip;
    /* 1: several nodes may share the database, each with its own blobs folder; every blob a row
     * names is copied into the database too (tables blobs and blob_chunks), and a node fetches
     * what its folder lacks from there (hlptd_store_blob_local). 0: the folder is the only copy. */
    int shared;
    /* An SQL expression for the database's clock in milliseconds since 1970 (an integer): leases
     * are timed by it, never by a node's own clock. */
    const char *now_ms;
    /* Checks a database before anything writes to it (see hlptd_store_check). */
    int (*check)(const char *where, char *why, size_t len);
    /* Writes into out[cap] how messages name the database at `where`, without a password. */
    void (*describe)(const char *where, char *out, size_t cap);
    /* Opens the database at `where` and applies its migrations up to `version` (-1: all), moving
     * bytes the old schema held into blobs where a migration asks for it. */
    int (*open)(const char *where, int version, hlptd_blobs *blobs, hlptd_db **out, char *why, size_t len);
    void (*close)(hlptd_db *db);
    int (*version)(hlptd_db *db);
    /* 1 once the database has reported itself corrupt. Any thread. */
    int (*damaged)(const hlptd_db *db);

    int (*begin)(hlptd_db *db, char *why, size_t len);
    int (*commit)(hlptd_db *db, char *why, size_t len);
    void (*rollback)(hlptd_db *db);

    /* Prepares sql with args[0..nargs) bound to ?1..?nargs (text copied). */
    int (*prepare)(hlptd_db *db, const char *sql, const hlptd_db_val *args, int nargs, hlptd_db_stmt **out, char *why,
                   size_t len);
    /* 1: a row is there; 0: done; else an error: HLPT_ERR_EXISTS (a unique key taken), HLPT_ERR_STATE
     * (a foreign key: a row refers to one that is not there, or one still referred to went),
     * HLPT_ERR_NOSPACE (the disk is full), HLPT_ERR_DB. */
    int (*step)(hlptd_db_stmt *s, char *why, size_t len);
    /* Back to before the first step, parameters kept (for a retry). */
    void (*reset)(hlptd_db_stmt *s);
    /* Column i of the current row, as `want` (converted), or HLPTD_DB_NULL. */
    void (*column)(hlptd_db_stmt *s, int i, hlptd_db_type want, hlptd_db_val *out);
    /* Rows the statement's last step changed. */
    int64_t (*changes)(hlptd_db_stmt *s);
    void (*finalize)(hlptd_db_stmt *s);

    /* Runs v[0..n), prepared and not yet stepped, as one transaction outside any other, in order:
     * all apply or none does, and the first failure is the answer. Where the driver can, they
     * travel to the database as one round trip (PostgreSQL: one pipeline, one Sync). Each one's
     * changes() can be read afterwards; rows they return are not kept. lazy = 1: the commit may
     * return before it is on disk (PostgreSQL: synchronous_commit off for this transaction), for
     * writes that a crash of the database may lose because they are made again anyway. */
    int (*batch)(hlptd_db *db, hlptd_db_stmt **v, int n, int lazy, char *why, size_t len);
    /* Requests and answers exchanged with the database server so far (0 for an in-process
     * database). Any thread. */
    int64_t (*round_trips)(const hlptd_db *db);

    /* Notifications (a shared database; NULL where there are none): listen subscribes the
     * connection to channel hlpt_jobs (again by itself after a reconnect); socket is the descriptor
     * to watch for their arrival (-1 when there is none now; it may change after a reconnect);
     * notifications reads what arrived (from the socket when `read`, else only what statements
     * already brought in) and calls fn with each payload, returning how many. */
    int (*listen)(hlptd_db *db, char *why, size_t len);
    int (*socket)(hlptd_db *db);
    int (*notifications)(hlptd_db *db, int read, void (*fn)(void *ctx, const char *payload), void *ctx);

    /* Writes into out[cap] an SQL expression for the value under `key` in the JSON text of
     * `column` (both SQL names, not user input), NULL where the text is not JSON or has no such
     * key; it compares with a literal or a bound parameter of type `type` (HLPTD_DB_TEXT, or
     * HLPTD_DB_INT or HLPTD_DB_REAL for a JSON number). */
    void (*json_field)(char *out, size_t cap, const char *column, const char *key, hlptd_db_type type);
} hlptd_store_backend;

extern const hlptd_store_backend hlptd_store_sqlite;
extern const hlptd_store_backend hlptd_store_pg;

#endif
