/*
 * store.h - hlptd's SQLite store: files, jobs, job events, metrics, checkpoints, adapters.
 *
 * Threading: a store handle has exactly one owner thread. In hlptd that is the libuv loop thread
 * (server/loop.c), which is the database's only writer; HTTP threads never call these functions,
 * they hand a request to the loop (server/http.h, hlpt_req_defer). Worker processes report over
 * their pipes and the loop writes what they report. Tests may use a store from their own thread.
 *
 * The database is in WAL mode with foreign keys on and a busy timeout. At open, the migrations
 * compiled into the binary from migrations/NNNN_name.sql (tools/gen-migrations.sh) are applied in
 * order, one transaction each, and PRAGMA user_version records the last one applied. All SQL is in
 * store.c, as prepared statements with bound parameters.
 *
 * Rows come back as plain structs with owned strings (free with the matching _free); times are
 * Unix seconds; JSON columns are compact JSON text (NULL when absent). Lists page in insertion
 * order, newest first as the OpenAI API lists (files, jobs, adapters, a job's events and
 * checkpoints); `after` is the id of the last row of the previous page. Event streams and metrics
 * read oldest first, by seq and step.
 *
 * Errors: HLPT_ERR_NOENT (no such row; why names the id), HLPT_ERR_EXISTS (unique name taken),
 * HLPT_ERR_STATE (a row still referenced, e.g. a file used by a job), HLPT_ERR_INVAL (bad argument),
 * HLPT_ERR_DB (SQLite failed; why has its message), HLPT_ERR_NOSPACE (the disk is full: SQLITE_FULL),
 * HLPT_ERR_NOMEM.
 */
#ifndef HLPTD_STORE_H
#define HLPTD_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct hlpt_store hlpt_store;

/* Public ids: a prefix and 24 base62 characters from getrandom(2), e.g. "file-3kT…". */
#define HLPT_ID_RANDOM_CHARS 24
#define HLPT_ID_MAX 40 /* bytes including the NUL, for every prefix below */
#define HLPT_ID_FILE "file-"
#define HLPT_ID_JOB "ftjob-"
#define HLPT_ID_EVENT "ftevent-"
#define HLPT_ID_CHECKPOINT "ftckpt-"
#define HLPT_ID_ADAPTER "ad-"

/* Writes prefix + 24 random base62 characters into out[HLPT_ID_MAX]. Any thread. */
int hlpt_id_new(char out[HLPT_ID_MAX], const char *prefix);

/* One embedded migration; the table is generated from migrations/ at build time. */
typedef struct {
    int version;      /* NNNN of the file name; the table holds 1..count in order */
    const char *name; /* "0001_init" */
    const char *sql;  /* the file's text */
} hlpt_migration;
extern const hlpt_migration hlpt_migrations[];
extern const int hlpt_migrations_count;

/* Opens (creating if needed) the database at path (borrows) and migrates it to the newest version.
 * A database newer than this binary is refused (HLPT_ERR_UNSUPPORTED). *out is owned: close it
 * with hlpt_store_close; NULL on failure. */
int hlpt_store_open(hlpt_store **out, const char *path, char *why, size_t len);
/* The same, migrating only up to `version` (0 = empty schema); for tests of the migrations. */
int hlpt_store_open_at(hlpt_store **out, const char *path, int version, char *why, size_t len);
void hlpt_store_close(hlpt_store *st);
/* Checks an existing database file (borrows path) with PRAGMA quick_check before anything opens it
 * for writing: HLPT_OK when it is sound or does not exist yet; HLPT_ERR_DB when it is damaged, why
 * saying what SQLite found and how to recover (docs/faults.md). Any thread. */
int hlpt_store_check(const char *path, char *why, size_t len);
/* Calls fn(ctx) on the store's thread when SQLite finds the disk full; when fn returns 1 (it made
 * room), the statement is tried once more. hlptd frees its space reserve there (docs/faults.md). */
void hlpt_store_on_full(hlpt_store *st, int (*fn)(void *ctx), void *ctx);
/* 1 once SQLite has reported the database corrupt to this handle (SQLITE_CORRUPT, SQLITE_NOTADB).
 * Any thread may read it. */
int hlpt_store_damaged(const hlpt_store *st);
/* PRAGMA user_version: the last migration applied. */
int hlpt_store_version(hlpt_store *st);

/* ---- files ---------------------------------------------------------------------------------- */

typedef struct {
    char id[HLPT_ID_MAX];
    char *filename;
    char *purpose;       /* "fine-tune" */
    int64_t bytes;       /* size of the content */
    int64_t created_at;
    char *status;        /* "processed", "error", "uploaded" */
    int64_t lines;       /* examples in the file */
    char *stats;         /* dataset statistics JSON, or NULL */
    char *error;         /* or NULL */
} hlpt_file;
void hlpt_file_free(hlpt_file *f);
void hlpt_file_list_free(hlpt_file **v, size_t n);

/* Inserts a file row holding content[0..n) (borrows all inputs; `stats` may be NULL). Writes the
 * new row to *out (owned) when out is not NULL. */
int hlpt_store_file_insert(hlpt_store *st, const char *filename, const char *purpose, const char *status,
                           const void *content, size_t n, int64_t lines, const char *stats,
                           hlpt_file **out, char *why, size_t len);
int hlpt_store_file_get(hlpt_store *st, const char *id, hlpt_file **out, char *why, size_t len);
/* Up to `limit` files newest first, starting after file `after` (NULL = from the newest).
 * *out is an owned array of owned rows (hlpt_file_list_free); *has_more says whether more follow. */
int hlpt_store_file_list(hlpt_store *st, const char *after, int limit, hlpt_file ***out, size_t *n,
                         int *has_more, char *why, size_t len);
/* The content: *buf is owned (free()), *n its size. */
int hlpt_store_file_content(hlpt_store *st, const char *id, void **buf, size_t *n, char *why, size_t len);
/* HLPT_ERR_STATE while a queued, running or paused job names the file. A file that only finished
 * jobs name loses its bytes and is marked deleted (the jobs keep naming it); any other is removed.
 * A deleted file is HLPT_ERR_NOENT to every file function. */
int hlpt_store_file_delete(hlpt_store *st, const char *id, char *why, size_t len);

/* ---- jobs ----------------------------------------------------------------------------------- */

typedef struct {
    char id[HLPT_ID_MAX];
    char *status;            /* validating_files | queued | running | paused | succeeded | failed | cancelled */
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
} hlpt_job;
void hlpt_job_free(hlpt_job *j);
void hlpt_job_list_free(hlpt_job **v, size_t n);

/* What a new job is made of (all borrowed). */
typedef struct {
    const char *status;          /* usually "validating_files" or "queued" */
    const char *model;
    const char *training_file;
    const char *validation_file; /* or NULL */
    const char *method;          /* JSON */
    const char *hyperparameters; /* JSON */
    int64_t seed;
    const char *suffix;          /* or NULL */
    const char *metadata;        /* JSON object or NULL */
    const char *integrations;    /* JSON array or NULL */
} hlpt_job_new;

/* Inserts a job at the end of the queue. HLPT_ERR_NOENT when a file id does not exist. */
int hlpt_store_job_insert(hlpt_store *st, const hlpt_job_new *in, hlpt_job **out, char *why, size_t len);
int hlpt_store_job_get(hlpt_store *st, const char *id, hlpt_job **out, char *why, size_t len);
int hlpt_store_job_list(hlpt_store *st, const char *after, int limit, hlpt_job ***out, size_t *n, int *has_more,
                        char *why, size_t len);
/* Sets the status; "running" stamps started_at (first time only), the three final states stamp
 * finished_at. error (JSON, borrows) replaces the stored error when not NULL. */
int hlpt_store_job_set_status(hlpt_store *st, const char *id, const char *status, const char *error, char *why,
                              size_t len);
int hlpt_store_job_set_progress(hlpt_store *st, const char *id, int64_t step, int64_t total_steps, double epoch,
                                double tokens_per_s, char *why, size_t len);
int hlpt_store_job_set_fine_tuned_model(hlpt_store *st, const char *id, const char *name, char *why, size_t len);
/* What a finished job produced: the tokens it trained on, and its results file (NULL keeps it). */
int hlpt_store_job_set_results(hlpt_store *st, const char *id, int64_t trained_tokens, const char *result_file,
                               char *why, size_t len);
/* The queued job with the smallest queue_order: *out owned, or NULL with HLPT_OK when none. */
int hlpt_store_job_next_queued(hlpt_store *st, hlpt_job **out, char *why, size_t len);
/* Ids of jobs in a given status (e.g. "running" at start-up, to resume them). */
int hlpt_store_job_ids_with_status(hlpt_store *st, const char *status, char ***ids, size_t *n, char *why,
                                   size_t len);
void hlpt_store_ids_free(char **ids, size_t n);
/* Deletes a job with its events, metrics and checkpoints; adapters keep existing (job_id NULL). */
int hlpt_store_job_delete(hlpt_store *st, const char *id, char *why, size_t len);

/* ---- job events ----------------------------------------------------------------------------- */

typedef struct {
    int64_t seq;       /* increasing; stream consumers resume after it */
    char id[HLPT_ID_MAX];
    char job_id[HLPT_ID_MAX];
    int64_t created_at;
    char *level;       /* "info", "warn", "error" */
    char *message;
    char *data;        /* JSON or NULL */
} hlpt_event;
void hlpt_event_free(hlpt_event *e);
void hlpt_event_list_free(hlpt_event **v, size_t n);

/* Appends an event (borrows all; data may be NULL); *out owned when out is not NULL. */
int hlpt_store_event_add(hlpt_store *st, const char *job_id, const char *level, const char *message,
                         const char *data, hlpt_event **out, char *why, size_t len);
/* Events of a job with seq > since_seq, oldest first, at most limit (event streams). */
int hlpt_store_event_list(hlpt_store *st, const char *job_id, int64_t since_seq, int limit, hlpt_event ***out,
                          size_t *n, int *has_more, char *why, size_t len);

/* A page of a job's events, newest first, starting after event `after` (NULL = the newest);
 * HLPT_ERR_NOENT when `after` is no event of that job. */
int hlpt_store_event_page(hlpt_store *st, const char *job_id, const char *after, int limit, hlpt_event ***out,
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
} hlpt_metric;

/* A job restarts from its checkpoint at `step`: the metrics and step events ("progress" data) of
 * later steps, which the new run will report again, are dropped so that none appears twice. */
int hlpt_store_job_rewind(hlpt_store *st, const char *job_id, int64_t step, char *why, size_t len);
/* Inserts or replaces the job's row for m->step (a resumed job repeats steps after its checkpoint). */
int hlpt_store_metric_put(hlpt_store *st, const char *job_id, const hlpt_metric *m, char *why, size_t len);
/* Rows with step > since_step in step order, at most limit; *out owned (free()). */
int hlpt_store_metric_list(hlpt_store *st, const char *job_id, int64_t since_step, int limit, hlpt_metric **out,
                           size_t *n, char *why, size_t len);

/* ---- checkpoints ---------------------------------------------------------------------------- */

typedef struct {
    char id[HLPT_ID_MAX];
    char job_id[HLPT_ID_MAX];
    int64_t step;
    char *metrics;      /* JSON or NULL */
    int64_t bytes;      /* size of the state blob */
    int64_t created_at;
} hlpt_checkpoint;
void hlpt_checkpoint_free(hlpt_checkpoint *c);
void hlpt_checkpoint_list_free(hlpt_checkpoint **v, size_t n);

int hlpt_store_checkpoint_insert(hlpt_store *st, const char *job_id, int64_t step, const char *metrics,
                                 const void *state, size_t n, hlpt_checkpoint **out, char *why, size_t len);
/* A job's checkpoints in step order (without their state). */
int hlpt_store_checkpoint_list(hlpt_store *st, const char *job_id, hlpt_checkpoint ***out, size_t *n, char *why,
                               size_t len);
/* A page of a job's checkpoints, newest first, after checkpoint `after` (NULL = the newest). */
int hlpt_store_checkpoint_page(hlpt_store *st, const char *job_id, const char *after, int limit,
                               hlpt_checkpoint ***out, size_t *n, int *has_more, char *why, size_t len);
/* The (newest) checkpoint of a job at a step; HLPT_ERR_NOENT when there is none. */
int hlpt_store_checkpoint_at_step(hlpt_store *st, const char *job_id, int64_t step, hlpt_checkpoint **out, char *why,
                                  size_t len);
/* The newest checkpoint of a job, or *out NULL with HLPT_OK when it has none. */
int hlpt_store_checkpoint_latest(hlpt_store *st, const char *job_id, hlpt_checkpoint **out, char *why, size_t len);
/* The state blob: *buf owned (free()). */
int hlpt_store_checkpoint_state(hlpt_store *st, const char *id, void **buf, size_t *n, char *why, size_t len);
int hlpt_store_checkpoint_delete(hlpt_store *st, const char *id, char *why, size_t len);

/* ---- adapters ------------------------------------------------------------------------------- */

typedef struct {
    char id[HLPT_ID_MAX];
    char *name;          /* unique; what `model` names in generation requests */
    char *config;        /* adapter_config.json */
    int64_t bytes;       /* size of the weights */
    char *base_hash;     /* or NULL */
    char *job_id;        /* or NULL */
    char *checkpoint_id; /* or NULL */
    int64_t created_at;
} hlpt_adapter_rec;
void hlpt_adapter_rec_free(hlpt_adapter_rec *a);
void hlpt_adapter_rec_list_free(hlpt_adapter_rec **v, size_t n);

/* What a new adapter is made of (all borrowed). */
typedef struct {
    const char *name;
    const char *config;        /* JSON */
    const void *weights;       /* safetensors bytes */
    size_t weights_bytes;
    const char *base_hash;     /* or NULL */
    const char *job_id;        /* or NULL */
    const char *checkpoint_id; /* or NULL */
} hlpt_adapter_rec_new;

/* HLPT_ERR_EXISTS when the name is taken. */
int hlpt_store_adapter_insert(hlpt_store *st, const hlpt_adapter_rec_new *in, hlpt_adapter_rec **out, char *why, size_t len);
/* By id ("ad-…") or by name. */
int hlpt_store_adapter_get(hlpt_store *st, const char *id_or_name, hlpt_adapter_rec **out, char *why, size_t len);
int hlpt_store_adapter_list(hlpt_store *st, const char *after, int limit, hlpt_adapter_rec ***out, size_t *n,
                            int *has_more, char *why, size_t len);
/* The safetensors bytes: *buf owned (free()). */
int hlpt_store_adapter_weights(hlpt_store *st, const char *id, void **buf, size_t *n, char *why, size_t len);
int hlpt_store_adapter_delete(hlpt_store *st, const char *id, char *why, size_t len);

#endif
