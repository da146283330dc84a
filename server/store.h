/*
 * store.h - hlptd's store: the metadata of files, jobs, job events, metrics, checkpoints and
 * adapters (docs/design.md, "The store").
 *
 * The store keeps ids, names, states, hashes, sizes, metrics and events; the bytes of artefacts
 * (uploads, checkpoints, adapter weights, results files) are blobs (blobs.h), and a row names its
 * blob by SHA-256. A row never names a blob that is not there: every insert checks the blob's size
 * against the row's. A blob that no row names any more once a delete commits is removed then, and
 * hlptd_store_blob_sweep removes those that a crash left unnamed.
 *
 * A blob comes into place with the row that names it: a writer (an HTTP thread, a worker process)
 * seals what it wrote under blobs/tmp/ (blobs.h) and hands the temporary's name over; the insert
 * that stores the row takes it (`tmp`), puts the blob into place and inserts the row in one call on
 * the store's thread, and when the row is not stored (the insert fails, its transaction rolls back)
 * the blob goes again unless another row names the same bytes. So no delete can find a blob
 * unnamed that a row is about to name. An insert given no `tmp` names a blob already in place.
 *
 * One interface, two backends beneath it: store.c describes each row type once (a table of its
 * columns) and builds every read, list, page, insert and free from that table; the database
 * itself is reached through a small table of functions (store_backend.h). Where the store is
 * picks the backend: a file is SQLite (store_sqlite.c: WAL mode, foreign keys on, a busy timeout,
 * and the schema's migrations), the default at <data-dir>/hlpt.db; a URL postgres://… or
 * postgresql://… is PostgreSQL (store_pg.c, over libpq: the same tables and version numbers, its
 * own migrations). The blobs stay files in the data directory either way; on PostgreSQL, which
 * several nodes may share, the database keeps a copy of each too and the folder is a cache
 * (hlptd_store_blob_local; docs/design.md, "Many nodes").
 *
 * Threading: a store handle has exactly one owner thread. In hlptd that is the libuv loop thread
 * (server/loop.c), which is the database's only writer; HTTP threads never call these functions,
 * they hand a request to the loop (server/http.h, hlptd_req_defer). Worker processes report over
 * their pipes and the loop writes what they report. Tests may use a store from their own thread.
 *
 * Migrations: compiled into the binary from migrations/NNNN_name.sql (SQLite) and
 * migrations/pg/NNNN_name.sql (PostgreSQL) by tools/gen-migrations.sh, applied in order at open,
 * one transaction each; the schema's version is the last one applied. Both end at the same
 * number. Where a migration needs more than SQL (moving the bytes a database of version 4 or older
 * holds out into blobs), the SQLite backend runs a C step in the same transaction; a PostgreSQL
 * store starts at version 5, the first without bytes in the database.
 *
 * Rows come back as plain structs with owned strings (free with the matching _free); times are
 * Unix seconds; JSON columns are compact JSON text (NULL when absent). Lists page in insertion
 * order, newest first as the OpenAI API lists (files, jobs, adapters, a job's events and
 * checkpoints); `after` is the id of the last row of the previous page. Event streams and metrics
 * read oldest first, by seq and step.
 *
 * Errors: HLPT_ERR_NOENT (no such row, or no such blob; why names it), HLPT_ERR_EXISTS (unique
 * name taken), HLPT_ERR_STATE (a row still referenced, e.g. a file used by a job; a job state that
 * cannot follow the current one), HLPT_ERR_INVAL (bad argument), HLPT_ERR_DB (the database failed;
 * why has its message), HLPT_ERR_NOSPACE (the disk is full), HLPT_ERR_NOMEM.
 */
#ifndef HLPTD_STORE_H
#define HLPTD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "blobs.h"
#include "hlpt/sha256.h"
#include "job_state.h"

typedef struct hlptd_store hlptd_store;

/* Public ids: a prefix and 24 base62 characters from getrandom(2), e.g. "file-3kT…". */
#define HLPTD_ID_RANDOM_CHARS 24
#define HLPTD_ID_MAX 40 /* bytes including the NUL, for every prefix below */
#define HLPTD_ID_FILE "file-"
#define HLPTD_ID_JOB "ftjob-"
#define HLPTD_ID_EVENT "ftevent-"
#define HLPTD_ID_CHECKPOINT "ftckpt-"
#define HLPTD_ID_ADAPTER "ad-"

/* Writes prefix + 24 random base62 characters into out[HLPTD_ID_MAX]. Any thread. */
int hlptd_id_new(char out[HLPTD_ID_MAX], const char *prefix);

/* One embedded migration; the tables are generated from migrations/ (SQLite's) and migrations/pg/
 * (PostgreSQL's) at build time. */
typedef struct {
    int version;      /* NNNN of the file name; SQLite's table holds 1..count in order, PostgreSQL's
                         from its first version to SQLite's last */
    const char *name; /* "0001_init" */
    const char *sql;  /* the file's text */
} hlptd_migration;
extern const hlptd_migration hlptd_migrations[];
extern const int hlptd_migrations_count;
extern const hlptd_migration hlptd_pg_migrations[];
extern const int hlptd_pg_migrations_count;

/* 1 when `where` names a PostgreSQL store (starts with postgres:// or postgresql://). */
int hlptd_store_is_pg(const char *where);
/* Writes into out[cap] how messages name the store at `where` (borrows): the file, or the
 * PostgreSQL server's host, port, database and user; never a password. Any thread. */
void hlptd_store_describe(const char *where, char *out, size_t cap);

/* Opens the store at `where` (borrows): a database file (SQLite, created if needed) or a libpq URL
 * postgres://… or postgresql://… (PostgreSQL; the database must exist, its tables are made), and
 * migrates it to the newest version. blobs (borrowed; must outlive the store) is where the rows'
 * blobs live: inserts check them, deletes remove those no row names any more, and a migration
 * moves bytes out into it. A database newer than this binary is refused (HLPT_ERR_UNSUPPORTED); a
 * URL libpq cannot read is HLPT_ERR_INVAL, a server that cannot be reached HLPT_ERR_DB, why naming
 * its host (hlptd_store_describe). *out is owned: close it with hlptd_store_close; NULL on failure. */
int hlptd_store_open(hlptd_store **out, const char *where, hlptd_blobs *blobs, char *why, size_t len);
/* The same, migrating only up to `version` (0 = empty schema); for tests of the migrations. A
 * PostgreSQL store has no version between 0 and its first (HLPT_ERR_UNSUPPORTED). */
int hlptd_store_open_at(hlptd_store **out, const char *where, int version, hlptd_blobs *blobs, char *why,
                       size_t len);
/* A transaction left open is rolled back. NULL is fine. */
void hlptd_store_close(hlptd_store *st);
/* Checks the store at `where` (borrows) before anything opens it for writing. A database file: with
 * PRAGMA quick_check, HLPT_OK when it is sound or does not exist yet; HLPT_ERR_DB when it is
 * damaged, why saying what SQLite found and how to recover (docs/faults.md). A URL: HLPT_ERR_INVAL
 * when libpq cannot read it. Any thread. */
int hlptd_store_check(const char *where, char *why, size_t len);
/* Calls fn(ctx) on the store's thread when the database finds the disk full; when fn returns 1
 * (it made room), the statement, or the whole transaction, is tried once more. hlptd frees its
 * space reserve there (docs/faults.md). */
void hlptd_store_on_full(hlptd_store *st, int (*fn)(void *ctx), void *ctx);
/* 1 once the database has reported itself corrupt to this handle. Any thread may read it. */
int hlptd_store_damaged(const hlptd_store *st);
/* The schema version: the last migration applied. */
int hlptd_store_version(hlptd_store *st);

/* ---- transactions ---------------------------------------------------------------------------- */

/* Every store call between begin and commit is applied together or not at all; a call that fails
 * inside leaves the transaction for the caller to roll back. Blobs that the transaction's deletes
 * left unnamed, and blobs its inserts adopted that no row names, are removed after the commit. No
 * nesting: begin inside a transaction is HLPT_ERR_STATE. Calls outside a transaction are each a
 * transaction of their own. */
int hlptd_store_begin(hlptd_store *st, char *why, size_t len);
int hlptd_store_commit(hlptd_store *st, char *why, size_t len);
/* Nothing is applied; the blobs the transaction's inserts adopted (`tmp`) go again unless a row
 * names them. Fine outside a transaction (does nothing). */
void hlptd_store_rollback(hlptd_store *st);

/* ---- blobs ----------------------------------------------------------------------------------- */

/* Removes every blob no row names (put into place, then the daemon died before the commit that
 * named it). hlptd calls it at start-up, before any worker or request. *removed (may be NULL) gets
 * how many went. */
int hlptd_store_blob_sweep(hlptd_store *st, size_t *removed, char *why, size_t len);

/* Makes sure the blob sha256 is in this node's blobs folder. Where several nodes share the store
 * (PostgreSQL; docs/design.md, "Many nodes") the folder is a cache: a blob it lacks is fetched from
 * the database's copy into blobs/tmp, checked against its name and size, and put into place.
 * refetch = 1: the folder's copy was found damaged (its bytes do not hash to its name); it is
 * replaced by the database's. On SQLite the folder is the only copy: HLPT_ERR_NOENT when it lacks
 * the blob, HLPT_ERR_FORMAT for a damaged one. Errors: HLPT_ERR_INVAL (not a blob name),
 * HLPT_ERR_NOENT (neither here nor in the database), HLPT_ERR_FORMAT (the database's copy does not
 * match its name), HLPT_ERR_NOSPACE, HLPT_ERR_IO, HLPT_ERR_DB. The store's thread: the loop, or the
 * inference thread through its own connection (resolver.h). */
int hlptd_store_blob_local(hlptd_store *st, const char *sha256, int refetch, char *why, size_t len);

/* What this process has fetched from the database into its blobs folder since it started, over
 * every store handle: blobs, bytes, and seconds spent (the cache misses of a shared store). Any
 * thread. */
void hlptd_store_blob_fetch_counts(long *n, long *bytes, double *seconds);

/* ---- files ---------------------------------------------------------------------------------- */

typedef struct {
    char id[HLPTD_ID_MAX];
    char *filename;
    char *purpose;       /* "fine-tune", "fine-tune-results" */
    int64_t bytes;       /* size of the content */
    int64_t created_at;
    char *status;        /* "processed", "error", "uploaded" */
    int64_t lines;       /* examples in the file */
    char *stats;         /* dataset statistics JSON, or NULL */
    char *error;         /* or NULL */
    char sha256[HLPT_SHA256_HEX]; /* the content's blob */
} hlptd_file;
void hlptd_file_free(hlptd_file *f);
void hlptd_file_list_free(hlptd_file **v, size_t n);

/* Inserts a file row whose content is the blob sha256 of `bytes` bytes (borrows all inputs; `stats`
 * may be NULL). tmp: the sealed temporary (blobs.h) that becomes the blob, adopted with the row and
 * gone whatever the outcome (in place, or removed); NULL when the blob is in place already.
 * HLPT_ERR_NOENT when there is no such blob, HLPT_ERR_INVAL when it is not of that size. Writes the
 * new row to *out (owned) when out is not NULL. */
int hlptd_store_file_insert(hlptd_store *st, const char *filename, const char *purpose, const char *status,
                           const char *sha256, int64_t bytes, const char *tmp, int64_t lines, const char *stats,
                           hlptd_file **out, char *why, size_t len);
int hlptd_store_file_get(hlptd_store *st, const char *id, hlptd_file **out, char *why, size_t len);
/* Up to `limit` files newest first, starting after file `after` (NULL = from the newest).
 * *out is an owned array of owned rows (hlptd_file_list_free); *has_more says whether more follow. */
int hlptd_store_file_list(hlptd_store *st, const char *after, int limit, hlptd_file ***out, size_t *n,
                         int *has_more, char *why, size_t len);
/* HLPT_ERR_STATE while a job that is not final names the file. A file that only finished jobs name
 * loses its blob and is marked deleted (the jobs keep naming it); any other is removed. A deleted
 * file is HLPT_ERR_NOENT to every file function. Its blob goes unless another row names it. */
int hlptd_store_file_delete(hlptd_store *st, const char *id, char *why, size_t len);

/* ---- jobs ----------------------------------------------------------------------------------- */

typedef struct {
    char id[HLPTD_ID_MAX];
    hlptd_job_state status;
    char *model;
    char *training_file;     /* file id */
    char *validation_file;   /* file id or NULL */
    char *method;            /* JSON */
    char *hyperparameters;   /* JSON */
    int64_t seed;
    char *suffix;            /* or NULL */
    int64_t created_at;
    int64_t started_at;      /* 0 = not yet */
    int64_t finished_at;     /* 0 = not yet */
    char *error;             /* JSON or NULL */
    char *fine_tuned_model;  /* adapter name or NULL */
    int64_t step;            /* progress */
    int64_t total_steps;
    double epoch;
    double tokens_per_s;
    int64_t queue_order;     /* smaller runs first */
    char *metadata;          /* JSON object or NULL */
    char *integrations;      /* JSON array or NULL */
    int64_t trained_tokens;  /* -1 = not yet */
    char *result_file;       /* file id of the results CSV, or NULL */
    char *node;              /* the node that runs it or last ran it (hlptd_store_job_claim), or NULL */
    int64_t lease_epoch;     /* the number of its latest claim: the fencing token of that claim's writes */
    int64_t lease_until;     /* ms on the database's clock until which `node` holds it; 0 = no node does */
} hlptd_job;
void hlptd_job_free(hlptd_job *j);
void hlptd_job_list_free(hlptd_job **v, size_t n);

/* What a new job is made of (all borrowed). */
typedef struct {
    hlptd_job_state status;      /* usually queued */
    const char *model;
    const char *training_file;
    const char *validation_file; /* or NULL */
    const char *method;          /* JSON */
    const char *hyperparameters; /* JSON */
    int64_t seed;
    const char *suffix;          /* or NULL */
    const char *metadata;        /* JSON object or NULL */
    const char *integrations;    /* JSON array or NULL */
} hlptd_job_fields;

/* Inserts a job at the end of the queue. HLPT_ERR_NOENT when a file id does not exist. */
int hlptd_store_job_insert(hlptd_store *st, const hlptd_job_fields *in, hlptd_job **out, char *why, size_t len);
int hlptd_store_job_get(hlptd_store *st, const char *id, hlptd_job **out, char *why, size_t len);
int hlptd_store_job_list(hlptd_store *st, const char *after, int limit, hlptd_job ***out, size_t *n, int *has_more,
                        char *why, size_t len);
/* Moves the job to `status` when hlptd_job_state_can allows it (HLPT_ERR_STATE, why naming both
 * states, when it does not); setting the state it is in changes nothing but the error. running
 * stamps started_at (first time only), the three final states stamp finished_at. error (JSON,
 * borrows) replaces the stored error when not NULL. The job's lease is left as it is: a job paused
 * or cancelled while it runs stays held by its node until the worker there has stopped. */
int hlptd_store_job_set_status(hlptd_store *st, const char *id, hlptd_job_state status, const char *error, char *why,
                              size_t len);

/* ---- leases (docs/design.md, "Many nodes") ---------------------------------------------------- */

/* A node's hold on a job: the node and the epoch of its claim. Every write that follows from a
 * worker's line carries it, and changes nothing once another claim has taken the job. */
typedef struct {
    const char *node;
    int64_t epoch;
} hlptd_hold;

/* The same as hlptd_store_job_set_status for the node that holds the job (its worker finished,
 * stopped or died): HLPT_ERR_STATE, and nothing changes, when h no longer holds it. Any status but
 * running gives the lease up. Either call is a compare-and-set: when another connection changed
 * the job's status between the read and the write, nothing changes and the answer is
 * HLPT_ERR_STATE. */
int hlptd_store_job_set_status_owned(hlptd_store *st, const char *id, const hlptd_hold *h, hlptd_job_state status,
                                    const char *error, char *why, size_t len);
/* Renews h's lease on the job for lease_ms more; inside a transaction it also locks the job's row
 * until the commit, so that no claim can take it while the transaction's writes go in.
 * HLPT_ERR_STATE (naming the job's holder) when h no longer holds it. */
int hlptd_store_job_hold(hlptd_store *st, const char *id, const hlptd_hold *h, int64_t lease_ms, char *why, size_t len);
/* A job's lease, as a heartbeat renews it or GET /v1/nodes lists it. */
typedef struct {
    char id[HLPTD_ID_MAX];
    char *node;
    int64_t lease_epoch;
    int64_t lease_until;       /* ms, the database's clock */
    hlptd_job_state status;
} hlptd_lease;
void hlptd_lease_list_free(hlptd_lease **v, size_t n);

/* A node as its heartbeat writes it (all borrowed) and as the nodes table holds it. */
typedef struct {
    const char *id;
    const char *url;     /* where it answers */
    int64_t pid;
    int64_t workers;     /* at most this many jobs at once */
    int64_t running;
    const char *state;   /* "up", "draining", "stopped" */
    int64_t lease_ms;
    int64_t started_at;  /* Unix seconds */
} hlptd_node_fields;
typedef struct {
    char *id, *url, *state;
    int64_t pid, workers, running, lease_ms, started_at;
    int64_t heartbeat_at; /* ms, the database's clock */
} hlptd_node;
void hlptd_node_list_free(hlptd_node **v, size_t n);

/* A node's heartbeat: writes its row (heartbeat_at the database's time now) and renews, for
 * lease_ms, every lease it holds. *held (owned) gets those leases: a job the node runs that is not
 * among them was taken by another node's claim. */
int hlptd_store_node_beat(hlptd_store *st, const hlptd_node_fields *n, hlptd_lease ***held, size_t *nheld, char *why,
                          size_t len);
/* Every node whose heartbeat is less than a day old, by id, and every lease held (by node, then
 * queue order); *now_ms the database's clock. Reads only. */
int hlptd_store_node_list(hlptd_store *st, hlptd_node ***nodes, size_t *n, hlptd_lease ***leases, size_t *nleases,
                          int64_t *now_ms, char *why, size_t len);
/* Removes the rows of nodes whose last heartbeat is older than max_age_ms. */
int hlptd_store_node_prune(hlptd_store *st, int64_t max_age_ms, char *why, size_t len);
/* At a node's start: every job it held goes free (its lease given up); those it ran, and running
 * jobs that name no node (claimed before jobs named theirs), go back to the queue to resume from
 * their last checkpoint; their ids, in queue order, in *ids. */
int hlptd_store_node_release(hlptd_store *st, const char *node, char ***ids, size_t *n, char *why, size_t len);

/* ---- notifications (a shared store) ------------------------------------------------------------ */

/* Starts listening to the store's notifications (docs/design.md, "Many nodes"): "e <job id>" when a
 * job has a new event, "s <job id> <status>" when a job is inserted, changes status or is given up.
 * HLPT_ERR_UNSUPPORTED where the store has none (SQLite: one node, which knows of its own changes). */
int hlptd_store_listen(hlptd_store *st, char *why, size_t len);
/* The descriptor to watch for notifications (-1 without one; it may change when the store
 * reconnects). */
int hlptd_store_socket(hlptd_store *st);
/* Calls fn with each notification that has arrived (read = 1: reading the socket first); returns
 * how many. */
int hlptd_store_notifications(hlptd_store *st, int read, void (*fn)(void *ctx, const char *payload), void *ctx);
/* 1 when several nodes may share the store (PostgreSQL), 0 for a store of one node (SQLite). */
int hlptd_store_shared(const hlptd_store *st);
/* Requests and answers exchanged with the database server so far (0 for SQLite). Any thread. */
int64_t hlptd_store_round_trips(const hlptd_store *st);

int hlptd_store_job_set_progress(hlptd_store *st, const char *id, int64_t step, int64_t total_steps, double epoch,
                                double tokens_per_s, char *why, size_t len);
int hlptd_store_job_set_fine_tuned_model(hlptd_store *st, const char *id, const char *name, char *why, size_t len);
/* What a finished job produced: the tokens it trained on, and its results file (NULL keeps it). */
int hlptd_store_job_set_results(hlptd_store *st, const char *id, int64_t trained_tokens, const char *result_file,
                               char *why, size_t len);
/* The queued job with the smallest queue_order: *out owned, or NULL with HLPT_OK when none. */
int hlptd_store_job_next_queued(hlptd_store *st, hlptd_job **out, char *why, size_t len);
/* Claims a job for `node` (borrows): the queued job with the smallest queue_order that no other
 * node holds, or a running job whose lease has expired (its node died, or lost the database), the
 * smaller queue_order first. Moves it to running (stamping started_at the first time), names the
 * node, adds one to its lease_epoch and holds it for lease_ms, in one transaction, so that of
 * several nodes on one store exactly one claims each job. *out owned, or NULL with HLPT_OK when
 * there is nothing to claim. *lost_by (may be NULL; owned) names the node whose expired lease was
 * taken over, NULL for a queued job. */
int hlptd_store_job_claim(hlptd_store *st, const char *node, int64_t lease_ms, hlptd_job **out, char **lost_by,
                          char *why, size_t len);
/* Ids of jobs in a given status (e.g. running at start-up, to resume them), in queue order. */
int hlptd_store_job_ids_with_status(hlptd_store *st, hlptd_job_state status, char ***ids, size_t *n, char *why,
                                   size_t len);
void hlptd_store_ids_free(char **ids, size_t n);
/* Deletes a job with its events, metrics and checkpoints (their blobs go unless another row names
 * them); adapters keep existing (job_id NULL). */
int hlptd_store_job_delete(hlptd_store *st, const char *id, char *why, size_t len);

/* ---- job events ----------------------------------------------------------------------------- */

typedef struct {
    int64_t seq;       /* increasing; stream consumers resume after it */
    char id[HLPTD_ID_MAX];
    char job_id[HLPTD_ID_MAX];
    int64_t created_at;
    char *level;       /* "info", "warn", "error" */
    char *message;
    char *data;        /* JSON or NULL */
} hlptd_job_event;
void hlptd_job_event_free(hlptd_job_event *e);
void hlptd_job_event_list_free(hlptd_job_event **v, size_t n);

/* Appends an event (borrows all; data may be NULL); *out owned when out is not NULL. */
int hlptd_store_event_add(hlptd_store *st, const char *job_id, const char *level, const char *message,
                         const char *data, hlptd_job_event **out, char *why, size_t len);
/* Events of a job with seq > since_seq, oldest first, at most limit (event streams). */
int hlptd_store_event_list(hlptd_store *st, const char *job_id, int64_t since_seq, int limit, hlptd_job_event ***out,
                          size_t *n, int *has_more, char *why, size_t len);

/* A page of a job's events, newest first, starting after event `after` (NULL = the newest);
 * HLPT_ERR_NOENT when `after` is no event of that job. */
int hlptd_store_event_page(hlptd_store *st, const char *job_id, const char *after, int limit, hlptd_job_event ***out,
                          size_t *n, int *has_more, char *why, size_t len);

/* ---- metrics -------------------------------------------------------------------------------- */

/* NAN marks a value not measured at that step (stored as NULL). */
typedef struct {
    int64_t step;
    double train_loss;
    double valid_loss;
    double valid_acc;
    double lr;
    double tokens_per_s;
    int64_t created_at; /* set by the store on insert */
} hlptd_metric;

/* A job restarts from its checkpoint at `step`: the metrics and step events ("progress" data) of
 * later steps, which the new run will report again, are dropped so that none appears twice. */
int hlptd_store_job_rewind(hlptd_store *st, const char *job_id, int64_t step, char *why, size_t len);
/* Inserts or replaces the job's row for m->step (a resumed job repeats steps after its checkpoint). */
int hlptd_store_metric_put(hlptd_store *st, const char *job_id, const hlptd_metric *m, char *why, size_t len);
/* A worker's progress report, written together, and only while h holds the job: its metric row
 * (replacing a repeated step's), the job's progress (step, total steps, epoch, tokens per second)
 * and one event (level, message, data JSON or NULL). On a shared store this is one round trip, whose
 * commit does not wait for the disk (a report lost to a crash of the database is made again when
 * the job resumes from its checkpoint). HLPT_ERR_STATE, nothing written, when h no longer holds it. */
int hlptd_store_job_report(hlptd_store *st, const char *id, const hlptd_hold *h, const hlptd_metric *m,
                          int64_t total_steps, double epoch, const char *level, const char *message, const char *data,
                          char *why, size_t len);

/* Rows with step > since_step in step order, at most limit; *out owned (free()). */
int hlptd_store_metric_list(hlptd_store *st, const char *job_id, int64_t since_step, int limit, hlptd_metric **out,
                           size_t *n, char *why, size_t len);

/* ---- checkpoints ---------------------------------------------------------------------------- */

typedef struct {
    char id[HLPTD_ID_MAX];
    char job_id[HLPTD_ID_MAX];
    int64_t step;
    char *metrics;      /* JSON or NULL */
    int64_t bytes;      /* size of the state blob */
    char sha256[HLPT_SHA256_HEX]; /* the state: adapter, optimizer, data order, RNG */
    int64_t created_at;
} hlptd_checkpoint;
void hlptd_checkpoint_free(hlptd_checkpoint *c);
void hlptd_checkpoint_list_free(hlptd_checkpoint **v, size_t n);

/* A checkpoint whose state is the blob sha256 of `bytes` bytes; tmp as hlptd_store_file_insert
 * (a worker's sealed checkpoint). HLPT_ERR_NOENT when there is no such job or blob, HLPT_ERR_INVAL
 * when the blob is not of that size. */
int hlptd_store_checkpoint_insert(hlptd_store *st, const char *job_id, int64_t step, const char *metrics,
                                 const char *sha256, int64_t bytes, const char *tmp, hlptd_checkpoint **out, char *why,
                                 size_t len);
/* A job's checkpoints in step order. */
int hlptd_store_checkpoint_list(hlptd_store *st, const char *job_id, hlptd_checkpoint ***out, size_t *n, char *why,
                               size_t len);
/* A page of a job's checkpoints, newest first, after checkpoint `after` (NULL = the newest). */
int hlptd_store_checkpoint_page(hlptd_store *st, const char *job_id, const char *after, int limit,
                               hlptd_checkpoint ***out, size_t *n, int *has_more, char *why, size_t len);
/* A checkpoint by id; HLPT_ERR_NOENT when there is none. */
int hlptd_store_checkpoint_get(hlptd_store *st, const char *id, hlptd_checkpoint **out, char *why, size_t len);
/* The (newest) checkpoint of a job at a step; HLPT_ERR_NOENT when there is none. */
int hlptd_store_checkpoint_at_step(hlptd_store *st, const char *job_id, int64_t step, hlptd_checkpoint **out, char *why,
                                  size_t len);
/* The newest checkpoint of a job, or *out NULL with HLPT_OK when it has none. */
int hlptd_store_checkpoint_latest(hlptd_store *st, const char *job_id, hlptd_checkpoint **out, char *why, size_t len);
/* Its blob goes unless another row names it. */
int hlptd_store_checkpoint_delete(hlptd_store *st, const char *id, char *why, size_t len);

/* ---- adapters ------------------------------------------------------------------------------- */

typedef struct {
    char id[HLPTD_ID_MAX];
    char *name;          /* unique; what `model` names in generation requests */
    char *config;        /* adapter_config.json */
    int64_t bytes;       /* size of the weights */
    char sha256[HLPT_SHA256_HEX]; /* the weights' blob: adapter_model.safetensors */
    char *base_hash;     /* or NULL */
    char *job_id;        /* or NULL */
    char *checkpoint_id; /* or NULL */
    int64_t created_at;
} hlptd_adapter_rec;
void hlptd_adapter_rec_free(hlptd_adapter_rec *a);
void hlptd_adapter_rec_list_free(hlptd_adapter_rec **v, size_t n);

/* What a new adapter is made of (all borrowed). */
typedef struct {
    const char *name;
    const char *config;        /* JSON */
    const char *sha256;        /* the blob of adapter_model.safetensors */
    int64_t bytes;             /* its size */
    const char *tmp;           /* its sealed temporary, adopted with the row (hlptd_store_file_insert), or NULL */
    const char *base_hash;     /* or NULL */
    const char *job_id;        /* or NULL */
    const char *checkpoint_id; /* or NULL */
} hlptd_adapter_fields;

/* HLPT_ERR_EXISTS when the name is taken; HLPT_ERR_NOENT when the job, checkpoint or blob is not
 * there, HLPT_ERR_INVAL when the blob is not of `bytes` bytes. */
int hlptd_store_adapter_insert(hlptd_store *st, const hlptd_adapter_fields *in, hlptd_adapter_rec **out, char *why, size_t len);
/* By id ("ad-…") or by name. */
int hlptd_store_adapter_get(hlptd_store *st, const char *id_or_name, hlptd_adapter_rec **out, char *why, size_t len);
int hlptd_store_adapter_list(hlptd_store *st, const char *after, int limit, hlptd_adapter_rec ***out, size_t *n,
                            int *has_more, char *why, size_t len);
/* Its blob goes unless another row names it. */
int hlptd_store_adapter_delete(hlptd_store *st, const char *id, char *why, size_t len);

#endif
