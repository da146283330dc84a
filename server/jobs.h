/*
 * jobs.h - the fine-tuning job queue and its worker processes.
 *
 * Threads: everything here runs on the loop thread, which owns the store; HTTP threads reach it
 * through the loop's hand-off.
 */
#ifndef HLPTD_JOBS_H
#define HLPTD_JOBS_H

#include <stddef.h>
#include <uv.h>

#include "store.h"

typedef struct hlptd_jobs hlptd_jobs;

typedef struct {
    const char *exe;          /* the hlptd binary, spawned as `exe --worker` */
    const char *model_dir;    /* base model directory (workers read its tokenizer) */
    const char *model_name;   /* the base model's name, for adapter names */
    int model_fd;             /* sealed weight arena, given to workers as fd 3 */
    const char *data_dir;     /* workers open its blobs/ (blobs.h) */
    hlptd_blobs *blobs;       /* <data_dir>/blobs, borrowed: results files, workers' temporaries */
    const char *node_id;      /* this node's name in the store: the jobs it claims carry it (NULL: data_dir) */
    const char *url;          /* where this node answers, for its row in the store's nodes */
    int64_t lease_ms;         /* how long a claim holds a job past its last renewal (hlptd_jobs_beat) */
    uint64_t cache_max_bytes; /* a shared store's blobs folder is trimmed to this (0: never) */
    int max_workers;          /* concurrent running jobs */
    int threads;              /* BLAS threads per worker */
    /* Called after any change of a job (status, event, metric), e.g. to wake event streams. */
    void (*on_change)(void *ctx, const char *job_id);
    void *ctx;
} hlptd_jobs_opts;

/* The model id of a job's fine-tuned model, as OpenAI names them: "ft:<base>:<suffix>:<job id
 * without its prefix>" (suffix "hlpt" when the job has none), and with step >= 0 that of its
 * checkpoint at that step ("…:ckpt-step-<step>"). Any thread. */
void hlptd_jobs_model_name(const char *base, const hlptd_job *job, int64_t step, char *out, size_t cap);

/* Borrows loop and store for its life; copies opts' strings. */
int hlptd_jobs_new(uv_loop_t *loop, hlptd_store *st, const hlptd_jobs_opts *o, hlptd_jobs **out);
/* Kills nothing: call hlptd_jobs_drain first and wait for it. */
void hlptd_jobs_free(hlptd_jobs *j);

/* At start-up: every job this node held is given up, and those the last daemon on this node left
 * running go back to the queue, to resume from their last checkpoint (an event says so); other
 * nodes' jobs are theirs; the job directories older versions kept under <data_dir>/jobs are
 * removed. Then starts what fits. */
int hlptd_jobs_recover(hlptd_jobs *j, char *why, size_t len);
/* Starts jobs while workers are free (call after a job was created or resumed, and on every
 * heartbeat), each claimed for this node under a lease (hlptd_store_job_claim): a queued job, or
 * one whose node stopped renewing its lease, which resumes here from its last checkpoint. */
void hlptd_jobs_schedule(hlptd_jobs *j);

/* The heartbeat, every lease_ms / 3 (docs/design.md, "Many nodes"): writes this node's row, renews
 * the leases of its running jobs (and, now and then, trims a shared store's blobs folder to
 * cache_max_bytes), and acts on what the answer says: a job another node has claimed
 * meanwhile has its worker here killed at once (nothing it says afterwards is written); a job paused
 * or cancelled through another node is paused or cancelled here. (When no heartbeat has reached
 * the store for 2/3 of a lease, a watchdog thread kills every worker here before the leases run out,
 * so that no job ever runs twice: a shared store only.) Then starts what fits. */
void hlptd_jobs_beat(hlptd_jobs *j);
/* The last word at shutdown, once drained: the node's row says `stopped`. */
void hlptd_jobs_goodbye(hlptd_jobs *j);
/* The store says a job changed status (a notification "s <id> <status>", possibly of another node's
 * doing): a worker here follows a pause or a cancel, a resume turns a pause still under way into a
 * requeue, and a job queued or given up is a chance to claim. */
void hlptd_jobs_notified(hlptd_jobs *j, const char *id, const char *status);

/* Counts for /metrics, since start. */
typedef struct {
    long claims;        /* jobs claimed */
    long takeovers;     /* of which from a node whose lease had expired */
    long beats;         /* heartbeats that reached the store */
    long beats_failed;  /* heartbeats that did not */
    long leases_lost;   /* workers killed because another node claimed their job, or the store was away */
} hlptd_jobs_counts;
void hlptd_jobs_counts_get(const hlptd_jobs *j, hlptd_jobs_counts *out);

/* Lifecycle. Cancel and pause set the new status at once (cancelled, paused); a running worker is
 * killed, or checkpoints and stops, behind it. Cancel: queued, paused or running jobs; pause: queued
 * or running; resume: paused. Errors: HLPT_ERR_NOENT unknown job, HLPT_ERR_STATE when the job's
 * status does not allow it (why says which status), so acting twice is an error. */
int hlptd_jobs_cancel(hlptd_jobs *j, const char *id, char *why, size_t len);
int hlptd_jobs_pause(hlptd_jobs *j, const char *id, char *why, size_t len);
int hlptd_jobs_resume(hlptd_jobs *j, const char *id, char *why, size_t len);

/* The disk is full: every running job pauses at its next checkpoint, its events saying why; `resume`
 * continues it once there is space. */
void hlptd_jobs_pause_all_for_space(hlptd_jobs *j);

/* Shutdown: no new jobs start; running workers checkpoint and exit, their jobs go back to `queued`
 * (the next start resumes them). done(ctx) runs on the loop once no worker is left. */
void hlptd_jobs_drain(hlptd_jobs *j, void (*done)(void *ctx), void *ctx);

int hlptd_jobs_running(const hlptd_jobs *j);
/* 1-based position of a queued job in the queue, 0 when it is not queued. */
int hlptd_jobs_queue_position(hlptd_jobs *j, const char *id);

/* Live figures of a running job (0 when not running): the worker's last progress line. */
typedef struct {
    double train_loss, valid_loss, learning_rate, tokens_per_s, elapsed_s;
    int step, total_steps;
} hlptd_job_live;
int hlptd_jobs_live(const hlptd_jobs *j, const char *id, hlptd_job_live *out);
/* Calls fn for every running job with its live figures. */
void hlptd_jobs_each_live(const hlptd_jobs *j, void (*fn)(void *ctx, const char *id, const hlptd_job_live *live),
                          void *ctx);

/* Appends one CSV cell (v then sep; an empty cell for a value not measured) to *buf of *len bytes
 * and *cap capacity, NUL-terminated. HLPT_ERR_NOMEM (the buffer kept) when it cannot grow. */
int hlptd_csv_num(char **buf, size_t *len, size_t *cap, double v, const char *sep);

#endif
