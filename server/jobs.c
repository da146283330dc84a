/*
 * jobs.c - the job queue and worker supervision (loop thread).
 *
 * DESIGN
 * A job is a row in the store; its state is the truth, and moves only as job_state.h allows.
 * hlptd_jobs_schedule() takes queued jobs in queue order while fewer than max_workers run and
 * spawns `hlptd --worker` through libuv with the sealed weight arena as fd 3, the job spec on stdin
 * (the blobs of its dataset files and of the checkpoint to resume from, by path: the worker reads
 * them where they are) and its stdout as a pipe of JSON lines (worker.c). Every line is committed
 * to the store before anything reports it: metrics (one row per step, replaced if a resumed run
 * repeats a step), checkpoints (the worker sealed the blob under blobs/tmp/; the insert of the row
 * puts it into place by its name and size, never reading it), events, and at the end the adapter,
 * in one transaction with the job's success. A line that is dropped discards the sealed temporary
 * it names, and once a worker is gone and its lines are read, whatever else it left in blobs/tmp/
 * (cut off mid-write by a kill or a crash) goes too. The job's final status is decided once both
 * the process has exited and its pipe is drained, from what it said and what was asked of it
 * (cancel, pause, drain). What keeps the user's work wins: a worker that dies without a word
 * (killed, out of memory, a crash) is restarted from the job's last checkpoint up to
 * MAX_WORKER_RESTARTS times, then the job pauses with the reason; a worker that dies while asked to
 * stop still stops (paused or queued, from the same checkpoint); a worker that finds the disk full
 * pauses its job, and every other running one, until space returns and the user resumes them. Only
 * a job that cannot train (its data, its settings) fails.
 *
 * Nodes sharing a store (docs/design.md, "Many nodes"): a worker runs under its claim's hold (node
 * and lease epoch). Every write of its lines carries the hold, and a refused one means another node
 * has claimed the job: the worker is killed and the rest of what it says dropped (WANT_LOST). The
 * heartbeat (hlptd_jobs_beat) renews the holds and follows what other nodes asked of the job (pause,
 * cancel, resume); a watchdog thread kills every worker when no heartbeat has reached the store for
 * 2/3 of a lease, whether the store's calls fail or never return, and the loop then treats their
 * jobs as lost.
 */
#include "jobs.h"

#include <cJSON.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hlpt/err.h"

/* How many times a job whose worker died without a word is restarted on its own, per daemon life
 * (and per resume), before it pauses for the user to look. */
#define MAX_WORKER_RESTARTS 3

enum { SAID_NOTHING, SAID_DONE, SAID_STOPPED, SAID_ERROR };
/* What was asked of a running worker. Cancel and pause set the job's status at once; the worker
 * catches up behind it. WANT_REQUEUE: paused, then resumed before the worker had stopped. */
enum { WANT_NONE, WANT_PAUSE, WANT_CANCEL, WANT_DRAIN, WANT_REQUEUE };
/* WANT_LOST: another node claimed the job (or the store was away too long to be sure it did not):
 * the worker is killed, and nothing it says is written. */
enum { WANT_LOST = WANT_REQUEUE + 1 };

typedef struct worker {
    hlptd_jobs *jobs;
    char job_id[HLPTD_ID_MAX];
    hlptd_hold hold;         /* this node and the claim's epoch: every write of its lines carries it */
    uv_process_t proc;
    uv_pipe_t in, out;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    char *spec;
    char *buf;               /* partial line */
    size_t len;
    int exited, eof, handles_open;
    int64_t exit_status;
    int term_signal;
    int said, want;
    int finished;            /* worker_finish has decided the job's state */
    int started;             /* said "started": its stop-signal handlers are in place */
    int pending_signal;      /* a stop signal asked for before that, sent once it has started */
    char error[512];
    char error_code[32];     /* the error line's code: "no_space" when the disk is full */
    hlptd_job_live live;
    int64_t tokens_seen;     /* the last progress line's: the job's trained_tokens at the end */
    struct worker *next;
} worker;

/* A job's count of automatic restarts after worker deaths. */
typedef struct restart_count {
    char job_id[HLPTD_ID_MAX];
    int n;
    struct restart_count *next;
} restart_count;

struct hlptd_jobs {
    uv_loop_t *loop;
    hlptd_store *st;
    hlptd_jobs_opts o;
    char *exe, *model_dir, *model_name, *data_dir, *node_id;
    worker *workers;
    restart_count *restarts;
    int running;
    int draining;
    void (*drained)(void *ctx);
    void *drained_ctx;
    char *url;
    int64_t started_at;      /* Unix seconds, for the node's row */
    hlptd_jobs_counts counts; /* counts.beats also paces the pruning of node rows and the cache trim */
    /* The fence's watchdog (a shared store only): a thread that kills every worker when no heartbeat
     * has reached the store for 2/3 of a lease, even while the loop itself waits on a store call
     * that does not return. */
    pthread_t watchdog;
    int watching;
    pthread_mutex_t mu;      /* guards pids, npids, fenced, nfenced, stop */
    pthread_cond_t cv;
    pid_t pids[256];         /* the live workers */
    pid_t fenced[256];       /* those it killed, until the loop reaps them */
    int npids, nfenced, stop;
    atomic_llong beat_ok_ms; /* CLOCK_MONOTONIC ms of the last heartbeat that reached the store */
};

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The watchdog ticks every lease/6 and counts the ticks in a row that saw no new heartbeat; at 4
 * (2/3 of a lease) it kills the workers. Ticks, not the time since the heartbeat: a process that
 * was frozen whole (SIGSTOP, a paused machine) had its watchdog frozen too, and on waking its loop
 * renews the leases, or finds them taken, at once; only a loop that stays stuck while the watchdog
 * runs is fenced from here. */
#define WATCH_TICKS 4

static void *watch(void *arg) {
    hlptd_jobs *j = arg;
    int64_t every = j->o.lease_ms / 6 > 0 ? j->o.lease_ms / 6 : 1, seen = atomic_load(&j->beat_ok_ms);
    int stale = 0;
    pthread_mutex_lock(&j->mu);
    while (!j->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += every / 1000;
        until.tv_nsec += (every % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
        while (!j->stop && pthread_cond_timedwait(&j->cv, &j->mu, &until) != ETIMEDOUT) {}
        if (j->stop) break;
        int64_t last = atomic_load(&j->beat_ok_ms);
        stale = last == seen ? stale + 1 : 0;
        seen = last;
        if (stale < WATCH_TICKS || !j->npids) continue;
        fprintf(stderr, "hlptd: the store has not answered a heartbeat for %lld ms: stopping %d worker(s) before "
                        "their leases can run out\n", (long long)(mono_ms() - last), j->npids);
        /* Each pid once; the loop, reaping it, treats its job as lost (watch_pid). */
        for (int i = 0; i < j->npids; i++)
            if (kill(j->pids[i], SIGKILL) == 0 && j->nfenced < (int)(sizeof j->fenced / sizeof j->fenced[0]))
                j->fenced[j->nfenced++] = j->pids[i];
        j->npids = 0;
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* The watchdog's list of live workers: a worker is added when spawned and removed when reaped;
 * the removal returns 1 when the watchdog killed it. */
static int watch_pid(hlptd_jobs *j, pid_t pid, int add) {
    int fenced = 0;
    if (!j->watching) return 0;
    pthread_mutex_lock(&j->mu);
    if (add && j->npids < (int)(sizeof j->pids / sizeof j->pids[0])) j->pids[j->npids++] = pid;
    for (int i = 0; !add && i < j->npids; i++)
        if (j->pids[i] == pid) j->pids[i] = j->pids[--j->npids];
    for (int i = 0; !add && i < j->nfenced; i++)
        if (j->fenced[i] == pid) j->fenced[i] = j->fenced[--j->nfenced], fenced = 1;
    pthread_mutex_unlock(&j->mu);
    return fenced;
}

static void changed(hlptd_jobs *j, const char *id) {
    if (j->o.on_change) j->o.on_change(j->o.ctx, id);
}

static void event(hlptd_jobs *j, const char *id, const char *level, const char *data, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void event(hlptd_jobs *j, const char *id, const char *level, const char *data, const char *fmt, ...) {
    char msg[1024], why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (hlptd_store_event_add(j->st, id, level, msg, data, NULL, why, sizeof why))
        fprintf(stderr, "hlptd: job %s: storing an event failed: %s\n", id, why);
    changed(j, id);
}

/* Status with an optional error {"code","message"}; with a hold, only while the job is held by it
 * (hlptd_store_job_set_status_owned, which gives the lease up; a refusal goes to the log). */
static void set_status_held(hlptd_jobs *j, const char *id, const hlptd_hold *hold, hlptd_job_state status,
                            const char *code, const char *message) {
    char why[256];
    char *err = NULL;
    if (message) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "code", code ? code : "error");
        cJSON_AddStringToObject(e, "message", message);
        cJSON_AddNullToObject(e, "param");
        err = cJSON_PrintUnformatted(e);
        cJSON_Delete(e);
    }
    if (hold ? hlptd_store_job_set_status_owned(j->st, id, hold, status, err, why, sizeof why)
             : hlptd_store_job_set_status(j->st, id, status, err, why, sizeof why))
        fprintf(stderr, "hlptd: job %s: setting status %s failed: %s\n", id, hlptd_job_state_name(status), why);
    free(err);
    changed(j, id);
}

static void set_status(hlptd_jobs *j, const char *id, hlptd_job_state status, const char *code, const char *message) {
    set_status_held(j, id, NULL, status, code, message);
}

/* The worker's job has been claimed by another node, or the store was away for so long that it may
 * have been: it is killed, and what it still says is dropped. */
static void lose(worker *w, const char *why) {
    if (w->want == WANT_LOST || w->finished) return;
    fprintf(stderr, "hlptd: job %s: stopping its worker here: %s\n", w->job_id, why);
    w->want = WANT_LOST;
    w->jobs->counts.leases_lost++;
    if (!w->exited) uv_process_kill(&w->proc, SIGKILL);
}

/* Opens a transaction that holds the worker's job (hlptd_store_job_hold): 0 when it is open, else
 * the job is lost (lose) or the store failed, and nothing is open. */
static int begin_held(worker *w, char *why, size_t len) {
    hlptd_jobs *j = w->jobs;
    int err = hlptd_store_begin(j->st, why, len);
    if (!err && (err = hlptd_store_job_hold(j->st, w->job_id, &w->hold, j->o.lease_ms, why, len))) {
        hlptd_store_rollback(j->st);
        if (err == HLPT_ERR_STATE) lose(w, why);
    }
    return err;
}

/* An event of the worker's job, written while the job is held (a stale worker's is not). */
static void held_event(worker *w, const char *level, const char *data, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void held_event(worker *w, const char *level, const char *data, const char *fmt, ...) {
    hlptd_jobs *j = w->jobs;
    char msg[1024], why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (begin_held(w, why, sizeof why)) return;
    if (hlptd_store_event_add(j->st, w->job_id, level, msg, data, NULL, why, sizeof why) ||
        hlptd_store_commit(j->st, why, sizeof why)) {
        hlptd_store_rollback(j->st);
        fprintf(stderr, "hlptd: job %s: storing an event failed: %s\n", w->job_id, why);
    }
    changed(j, w->job_id);
}

/* The job's restart count after adding `add` (0 reads it; -1 resets it). */
static int restarts(hlptd_jobs *j, const char *id, int add) {
    restart_count *c = j->restarts;
    while (c && strcmp(c->job_id, id)) c = c->next;
    if (!c) {
        if (add <= 0 || !(c = calloc(1, sizeof *c))) return 0;
        snprintf(c->job_id, sizeof c->job_id, "%s", id);
        c->next = j->restarts;
        j->restarts = c;
    }
    c->n = add < 0 ? 0 : c->n + add;
    return c->n;
}

static worker *find_worker(const hlptd_jobs *j, const char *id) {
    for (worker *w = j->workers; w; w = w->next)
        if (!strcmp(w->job_id, id)) return w;
    return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* Worker lines                                                                                    */

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A step's figures: its metric row, the job's progress and an event, in one write while the job is
 * this worker's (hlptd_store_job_report: one round trip on a shared store). */
static void on_progress_line(worker *w, const cJSON *o) {
    hlptd_jobs *j = w->jobs;
    char why[256], msg[256];
    hlptd_metric m = {.step = (int64_t)num(o, "step"), .train_loss = num(o, "train_loss"),
                     .valid_loss = num(o, "valid_loss"), .valid_acc = num(o, "valid_acc"),
                     .lr = num(o, "learning_rate"), .tokens_per_s = num(o, "tokens_per_s")};
    int total = (int)num(o, "total_steps");
    if (!isnan(num(o, "tokens_seen"))) w->tokens_seen = (int64_t)num(o, "tokens_seen");
    w->live = (hlptd_job_live){.train_loss = m.train_loss, .valid_loss = m.valid_loss, .learning_rate = m.lr,
                               .tokens_per_s = m.tokens_per_s, .elapsed_s = num(o, "elapsed_s"),
                               .step = (int)m.step, .total_steps = total};
    if (!isnan(m.valid_loss))
        snprintf(msg, sizeof msg, "Step %lld/%d: training loss=%.4f, validation loss=%.4f", (long long)m.step, total,
                 m.train_loss, m.valid_loss);
    else
        snprintf(msg, sizeof msg, "Step %lld/%d: training loss=%.4f", (long long)m.step, total, m.train_loss);
    char *data = cJSON_PrintUnformatted(o);
    int err = hlptd_store_job_report(j->st, w->job_id, &w->hold, &m, total, num(o, "epoch"), "info", msg,
                                    data, why, sizeof why);
    free(data);
    if (err == HLPT_ERR_STATE) lose(w, why);
    else if (err) fprintf(stderr, "hlptd: job %s: storing step %lld failed: %s\n", w->job_id, (long long)m.step, why);
    changed(j, w->job_id);
}

/* The sealed temporary a dropped line names: no row will name it. */
static void discard_tmp(hlptd_jobs *j, const cJSON *o) { hlptd_blob_discard(j->o.blobs, str(o, "tmp")); }

/* The checkpoint's row and its event, in one transaction that holds the job: a stale worker's
 * checkpoint is dropped with its blob. */
static void on_checkpoint_line(worker *w, const cJSON *o) {
    hlptd_jobs *j = w->jobs;
    char why[256], msg[256];
    int step = (int)num(o, "step");
    cJSON *metrics = cJSON_Duplicate(o, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(metrics, "type");
    cJSON_DeleteItemFromObjectCaseSensitive(metrics, "sha256");
    cJSON_DeleteItemFromObjectCaseSensitive(metrics, "bytes");
    cJSON_DeleteItemFromObjectCaseSensitive(metrics, "tmp");
    char *mj = cJSON_PrintUnformatted(metrics);
    cJSON_Delete(metrics);
    hlptd_checkpoint *c = NULL;
    int err = begin_held(w, why, sizeof why);
    if (err) {
        discard_tmp(j, o);
    } else {
        /* The worker sealed the blob; the insert puts it into place and checks it is of the size
         * the line says; a rollback removes it again. */
        err = hlptd_store_checkpoint_insert(j->st, w->job_id, step, mj, str(o, "sha256") ? str(o, "sha256") : "",
                                           (int64_t)num(o, "bytes"), str(o, "tmp"), &c, why, sizeof why);
        if (!err) snprintf(msg, sizeof msg, "Checkpoint %s created at step %d", c->id, step);
        if (!err && !(err = hlptd_store_event_add(j->st, w->job_id, "info", msg, mj, NULL, why, sizeof why)))
            err = hlptd_store_commit(j->st, why, sizeof why);
        if (err) hlptd_store_rollback(j->st);
        if (err && err != HLPT_ERR_STATE)
            held_event(w, "warn", NULL, "Checkpoint of step %d could not be stored: %s", step, why);
        changed(j, w->job_id);
    }
    hlptd_checkpoint_free(c);
    free(mj);
}

int hlptd_csv_num(char **buf, size_t *len, size_t *cap, double v, const char *sep) {
    char cell[64];
    int k = isfinite(v) ? snprintf(cell, sizeof cell, "%.9g%s", v, sep) : snprintf(cell, sizeof cell, "%s", sep);
    if (*len + (size_t)k + 1 > *cap) {
        size_t ncap = (*cap + (size_t)k + 1) * 2;
        char *nb = realloc(*buf, ncap);
        if (!nb) return HLPT_ERR_NOMEM;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, cell, (size_t)k + 1);
    *len += (size_t)k;
    return HLPT_OK;
}

/* The job's results file, as OpenAI's: one row per logged step with the columns OpenAI's result
 * files have (hlpt does not measure training accuracy: that column stays empty). Stored as a file
 * of purpose fine-tune-results; its id goes to out (empty when there is none). Only a full disk is
 * an error: the job can finish again once there is room; without the file it still succeeds. */
static int store_results(hlptd_jobs *j, const char *job_id, char out[HLPTD_ID_MAX], char *why, size_t len) {
    hlptd_metric *rows = NULL;
    size_t n = 0, cap = 256, blen = 0;
    char sub[256] = "out of memory", sha[HLPT_SHA256_HEX], tmp[HLPTD_BLOB_TMP_MAX];
    out[0] = 0;
    int err = hlptd_store_metric_list(j->st, job_id, -1, 1 << 30, &rows, &n, sub, sizeof sub);
    char *buf = err ? NULL : malloc(cap);
    if (buf) blen = (size_t)snprintf(buf, cap, "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n");
    for (size_t i = 0; buf && i < n; i++) {
        /* A results file that cannot be whole is not written at all (a cut CSV would look complete). */
        if (hlptd_csv_num(&buf, &blen, &cap, (double)rows[i].step, ",") ||
            hlptd_csv_num(&buf, &blen, &cap, rows[i].train_loss, ",") || hlptd_csv_num(&buf, &blen, &cap, NAN, ",") ||
            hlptd_csv_num(&buf, &blen, &cap, rows[i].valid_loss, ",") ||
            hlptd_csv_num(&buf, &blen, &cap, rows[i].valid_acc, "\n")) {
            free(buf);
            buf = NULL;
        }
    }
    hlptd_file *f = NULL;
    char name[HLPTD_ID_MAX + 32];
    snprintf(name, sizeof name, "%s-results.csv", job_id);
    if (!buf) err = err ? err : HLPT_ERR_NOMEM;
    /* The blob goes into place with its row, and again should the job's transaction roll back. */
    else if (!(err = hlptd_blob_put_sealed(j->o.blobs, buf, blen, sha, tmp, sizeof tmp, sub, sizeof sub)))
        err = hlptd_store_file_insert(j->st, name, "fine-tune-results", "processed", sha, (int64_t)blen, tmp, (int64_t)n,
                                     NULL, &f, sub, sizeof sub);
    if (!err) snprintf(out, HLPTD_ID_MAX, "%s", f->id);
    else fprintf(stderr, "hlptd: job %s: storing the results file failed: %s\n", job_id, sub);
    hlptd_file_free(f);
    free(buf);
    free(rows);
    return err == HLPT_ERR_NOSPACE ? hlpt_why(why, len, err, "the results file: %s", sub) : HLPT_OK;
}

/* The worker's adapter becomes a registered one, named as OpenAI names fine-tuned models. With it,
 * in one transaction, the job's fine-tuned model, its results and its success: a daemon killed
 * before the commit finds the job running, resumes it from its last checkpoint and registers the
 * adapter then, once. A rollback takes the blobs put into place for it (the weights, the results
 * file) away again. Event streams hear of it after the commit. */
static void on_done_line(worker *w, const cJSON *o) {
    hlptd_jobs *j = w->jobs;
    char why[256], name[256], results[HLPTD_ID_MAX];
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(o, "config");
    char *cfg = cJSON_IsObject(config) ? cJSON_PrintUnformatted(config) : NULL;
    hlptd_job *job = NULL;
    int taken = 0; /* the adapter's insert took the line's sealed temporary */
    int err = hlptd_store_job_get(j->st, w->job_id, &job, why, sizeof why);
    if (!err && !cfg) err = hlpt_why(why, sizeof why, HLPT_ERR_FORMAT, "the worker named no adapter config");
    if (!err) {
        hlptd_jobs_model_name(j->model_name, job, -1, name, sizeof name);
        char msg[512];
        snprintf(msg, sizeof msg, "New fine-tuned model created: %s (best step %d)", name, (int)num(o, "best_step"));
        /* The worker sealed the weights' blob; the insert puts it into place and checks it is of the
         * size the line says. */
        hlptd_adapter_fields in = {.name = name, .config = cfg, .sha256 = str(o, "sha256") ? str(o, "sha256") : "",
                                   .bytes = (int64_t)num(o, "bytes"), .tmp = str(o, "tmp"),
                                   .base_hash = str(config, "base_hash"), .job_id = w->job_id};
        if (!(err = begin_held(w, why, sizeof why))) {
            taken = 1;
            if (!(err = hlptd_store_adapter_insert(j->st, &in, NULL, why, sizeof why)) &&
                !(err = hlptd_store_job_set_fine_tuned_model(j->st, w->job_id, name, why, sizeof why)) &&
                !(err = store_results(j, w->job_id, results, why, sizeof why)) &&
                !(err = hlptd_store_job_set_results(j->st, w->job_id, w->tokens_seen, results[0] ? results : NULL, why,
                                                   sizeof why)) &&
                !(err = hlptd_store_event_add(j->st, w->job_id, "info", msg, NULL, NULL, why, sizeof why)) &&
                !(err = hlptd_store_event_add(j->st, w->job_id, "info", "The job has successfully completed", NULL, NULL,
                                             why, sizeof why)) &&
                !(err = hlptd_store_job_set_status_owned(j->st, w->job_id, &w->hold, HLPTD_JOB_SUCCEEDED, NULL, why,
                                                         sizeof why)))
                err = hlptd_store_commit(j->st, why, sizeof why);
            else
                hlptd_store_rollback(j->st);
        }
    }
    if (err) {
        w->said = SAID_ERROR;
        snprintf(w->error, sizeof w->error, "registering the adapter failed: %s", why);
        /* The job can finish again from its last checkpoint once there is room. */
        if (err == HLPT_ERR_NOSPACE) snprintf(w->error_code, sizeof w->error_code, "no_space");
        if (!taken) discard_tmp(j, o);
    } else {
        w->said = SAID_DONE;
        changed(j, w->job_id);
    }
    hlptd_job_free(job);
    free(cfg);
}

static void on_line(worker *w, const char *line, size_t n) {
    hlptd_jobs *j = w->jobs;
    cJSON *o = cJSON_ParseWithLength(line, n);
    const char *type = o ? str(o, "type") : NULL;
    /* A cancelled job is over, and a lost one is another node's: what its worker says before the
     * kill lands is dropped, with the sealed temporaries it names. */
    if (!type || w->want == WANT_CANCEL || w->want == WANT_LOST) {
        if (type && (!strcmp(type, "checkpoint") || !strcmp(type, "done"))) discard_tmp(j, o);
        cJSON_Delete(o);
        return;
    }
    char why[256];
    if (!strcmp(type, "started")) {
        w->started = 1;
        if (w->pending_signal) uv_process_kill(&w->proc, w->pending_signal);
        int from = (int)num(o, "resumed_from");
        char *data = cJSON_PrintUnformatted(o), msg[256];
        if (from > 0)
            snprintf(msg, sizeof msg, "Training resumed from the checkpoint of step %d", from);
        else
            snprintf(msg, sizeof msg, "Training started: %d steps, %d examples, %.0f trainable parameters",
                     (int)num(o, "total_steps"), (int)num(o, "examples"), num(o, "trainable_params"));
        /* Steps after the checkpoint run again: their first reports (before a kill, or on the node
         * that held the job before) go. */
        if (!begin_held(w, why, sizeof why)) {
            if (hlptd_store_job_rewind(j->st, w->job_id, from, why, sizeof why) ||
                hlptd_store_job_set_progress(j->st, w->job_id, from, (int)num(o, "total_steps"), 0, 0, why, sizeof why) ||
                hlptd_store_event_add(j->st, w->job_id, "info", msg, data, NULL, why, sizeof why) ||
                hlptd_store_commit(j->st, why, sizeof why)) {
                hlptd_store_rollback(j->st);
                fprintf(stderr, "hlptd: job %s: %s\n", w->job_id, why);
            }
            changed(j, w->job_id);
        }
        free(data);
    } else if (!strcmp(type, "progress")) {
        on_progress_line(w, o);
    } else if (!strcmp(type, "checkpoint")) {
        on_checkpoint_line(w, o);
    } else if (!strcmp(type, "done")) {
        on_done_line(w, o);
    } else if (!strcmp(type, "stopped")) {
        w->said = SAID_STOPPED;
    } else if (!strcmp(type, "error")) {
        w->said = SAID_ERROR;
        snprintf(w->error, sizeof w->error, "%s", str(o, "message") ? str(o, "message") : "the worker failed");
        snprintf(w->error_code, sizeof w->error_code, "%s", str(o, "code") ? str(o, "code") : "");
        /* A worker that found the disk full found it full for every job. */
        if (!strcmp(w->error_code, "no_space")) hlptd_jobs_pause_all_for_space(j);
    }
    cJSON_Delete(o);
}

/* ---------------------------------------------------------------------------------------------- */
/* Process life                                                                                    */

static void worker_finish(worker *w);

static void on_handle_closed(uv_handle_t *h) {
    worker *w = h->data;
    if (--w->handles_open > 0) return;
    hlptd_jobs *j = w->jobs;
    for (worker **l = &j->workers; *l; l = &(*l)->next)
        if (*l == w) {
            *l = w->next;
            break;
        }
    free(w->buf);
    free(w->spec);
    free(w);
    j->running--;
    if (j->draining && j->running == 0 && j->drained) {
        void (*done)(void *) = j->drained;
        j->drained = NULL;
        done(j->drained_ctx);
        return;
    }
    hlptd_jobs_schedule(j);
}

static void close_handle(worker *w, uv_handle_t *h) {
    if (!uv_is_closing(h)) uv_close(h, on_handle_closed);
}

static void maybe_finish(worker *w) {
    if (w->exited && w->eof) worker_finish(w);
}

/* Decides the job's status from what the worker said and what was asked of it. */
static void worker_finish(worker *w) {
    hlptd_jobs *j = w->jobs;
    char msg[600];
    w->finished = 1;
    /* Every line is read: a temporary of this worker's left in blobs/tmp/ is one no line handed
     * over (cut off mid-write, or written just before a kill). */
    hlptd_blobs_discard_pid(j->o.blobs, w->proc.pid);
    /* The event goes in before the status: an event stream ends ([DONE]) as soon as it sees a final
     * status, so the job's last word must already be there. */
    int stopped = w->said == SAID_STOPPED || (w->said == SAID_NOTHING && w->want != WANT_NONE);
    if (w->said == SAID_NOTHING) {
        if (w->term_signal) snprintf(msg, sizeof msg, "the worker was killed by signal %d (%s)", w->term_signal, strsignal(w->term_signal));
        else snprintf(msg, sizeof msg, "the worker exited with status %lld without finishing", (long long)w->exit_status);
    }
    const hlptd_hold *h = &w->hold;
    if (w->want == WANT_LOST) {
        /* Another node holds the job: nothing here is written. */
    } else if (w->want == WANT_CANCEL) {
        /* Cancelled when it was asked (hlptd_jobs_cancel); the worker is gone now, and with it the
         * node's hold on the job. */
        set_status_held(j, w->job_id, h, HLPTD_JOB_CANCELLED, NULL, NULL);
    } else if (w->said == SAID_DONE) {
        /* Recorded with its adapter (on_done_line). */
    } else if (stopped && w->want == WANT_PAUSE) {
        /* Asked to stop, it stopped, or died on the way (before its handlers were in place, or while
         * checkpointing): either way the job stops at its last stored checkpoint. */
        if (w->said == SAID_NOTHING) held_event(w, "warn", NULL, "While pausing, %s", msg);
        held_event(w, "info", NULL, "Job paused at its last checkpoint");
        set_status_held(j, w->job_id, h, HLPTD_JOB_PAUSED, NULL, NULL);
    } else if (stopped && w->want == WANT_REQUEUE) {
        held_event(w, "info", NULL, "The worker stopped at its last checkpoint; the job resumes from there");
        set_status_held(j, w->job_id, h, HLPTD_JOB_QUEUED, NULL, NULL);
    } else if (stopped) {
        if (w->said == SAID_NOTHING) held_event(w, "warn", NULL, "While stopping, %s", msg);
        held_event(w, "info", NULL, "Interrupted by the daemon's shutdown; the job resumes from its last checkpoint");
        set_status_held(j, w->job_id, h, HLPTD_JOB_QUEUED, NULL, NULL);
    } else if (w->said == SAID_ERROR && !strcmp(w->error_code, "no_space")) {
        held_event(w, "error", NULL,
                   "Job paused: %s. Its last checkpoint is kept; free some space, then resume the job", w->error);
        set_status_held(j, w->job_id, h, HLPTD_JOB_PAUSED, NULL, NULL);
    } else if (w->said == SAID_NOTHING && restarts(j, w->job_id, 1) <= MAX_WORKER_RESTARTS) {
        held_event(w, "warn", NULL, "%s; the job resumes from its last checkpoint (automatic restart %d of %d)", msg,
                   restarts(j, w->job_id, 0), MAX_WORKER_RESTARTS);
        set_status_held(j, w->job_id, h, HLPTD_JOB_QUEUED, NULL, NULL);
    } else if (w->said == SAID_NOTHING) {
        held_event(w, "error", NULL,
                   "Job paused: %s, and it died %d times in a row; resume the job to try again from its last checkpoint",
                   msg, MAX_WORKER_RESTARTS + 1);
        set_status_held(j, w->job_id, h, HLPTD_JOB_PAUSED, NULL, NULL);
    } else {
        held_event(w, "error", NULL, "Job failed: %s", w->error);
        set_status_held(j, w->job_id, h, HLPTD_JOB_FAILED, "training_error", w->error);
    }
    close_handle(w, (uv_handle_t *)&w->proc);
    close_handle(w, (uv_handle_t *)&w->in);
    close_handle(w, (uv_handle_t *)&w->out);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig) {
    worker *w = p->data;
    w->exited = 1;
    if (watch_pid(w->jobs, p->pid, 0)) lose(w, "killed by the fence's watchdog: the store did not answer for 2/3 of a lease");
    w->exit_status = status;
    w->term_signal = sig;
    maybe_finish(w);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    b->base = malloc(suggested);
    b->len = b->base ? suggested : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    worker *w = s->data;
    if (n > 0) {
        char *buf = realloc(w->buf, w->len + (size_t)n);
        if (buf) {
            memcpy(buf + w->len, b->base, (size_t)n);
            w->buf = buf;
            w->len += (size_t)n;
            size_t start = 0;
            for (size_t i = 0; i < w->len; i++)
                if (w->buf[i] == '\n') {
                    on_line(w, w->buf + start, i - start);
                    start = i + 1;
                }
            memmove(w->buf, w->buf + start, w->len - start);
            w->len -= start;
        }
    }
    free(b->base);
    if (n < 0) {
        uv_read_stop(s);
        w->eof = 1;
        maybe_finish(w);
    }
}

static void on_spec_written(uv_write_t *req, int status) {
    worker *w = req->data;
    /* Closing stdin is the end of the spec for the worker. */
    close_handle(w, (uv_handle_t *)&w->in);
}

/* Asks a worker to checkpoint and stop (SIGUSR1: pause, SIGTERM: drain). Until it has said
 * "started" it may not have its handlers yet, and the signal's default action would kill it: the
 * signal waits for that line. */
static void signal_stop(worker *w, int sig) {
    if (w->exited) return;
    if (w->started) uv_process_kill(&w->proc, sig);
    else w->pending_signal = sig;
}

/* The path of a stored file's blob, which the worker reads where it is. */
static int file_blob_path(hlptd_jobs *j, const char *file_id, char *out, size_t cap, char *why, size_t len) {
    hlptd_file *f = NULL;
    int err = hlptd_store_file_get(j->st, file_id, &f, why, len);
    /* Uploaded to another node of a shared store: fetched here first. */
    if (!err) err = hlptd_store_blob_local(j->st, f->sha256, 0, why, len);
    if (!err && hlptd_blob_path(j->o.blobs, f->sha256, out, cap))
        err = hlpt_why(why, len, HLPT_ERR_INTERNAL, "file %s names no blob", file_id);
    hlptd_file_free(f);
    return err;
}

/* Writes the spec and spawns the worker. Returns an error for the job. */
static int start_job(hlptd_jobs *j, const hlptd_job *job, char *why, size_t len) {
    char train[4200], valid[4200], resume[4200];
    int err = file_blob_path(j, job->training_file, train, sizeof train, why, len);
    if (!err && job->validation_file) err = file_blob_path(j, job->validation_file, valid, sizeof valid, why, len);
    if (err) return err;
    /* It resumes from its newest checkpoint; without one (or should its blob be gone) it starts
     * from the beginning. */
    hlptd_checkpoint *ck = NULL;
    uint64_t size;
    int have_ckpt = 0;
    if (hlptd_store_checkpoint_latest(j->st, job->id, &ck, why, len) == HLPT_OK && ck &&
        hlptd_store_blob_local(j->st, ck->sha256, 0, why, len) == HLPT_OK &&
        hlptd_blob_size(j->o.blobs, ck->sha256, &size, why, len) == HLPT_OK)
        have_ckpt = hlptd_blob_path(j->o.blobs, ck->sha256, resume, sizeof resume) == HLPT_OK;
    hlptd_checkpoint_free(ck);
    worker *w = calloc(1, sizeof *w);
    if (!w) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    w->jobs = j;
    snprintf(w->job_id, sizeof w->job_id, "%s", job->id);
    w->hold = (hlptd_hold){.node = j->node_id, .epoch = job->lease_epoch};
    cJSON *spec = cJSON_CreateObject();
    cJSON_AddStringToObject(spec, "model_dir", j->model_dir);
    cJSON_AddStringToObject(spec, "data_dir", j->data_dir);
    cJSON_AddStringToObject(spec, "training_file", train);
    if (job->validation_file) cJSON_AddStringToObject(spec, "validation_file", valid);
    cJSON *method = cJSON_Parse(job->method ? job->method : "{}");
    cJSON *hp = cJSON_Parse(job->hyperparameters ? job->hyperparameters : "{}");
    cJSON_AddItemToObject(spec, "method", method ? method : cJSON_CreateObject());
    cJSON_AddItemToObject(spec, "hyperparameters", hp ? hp : cJSON_CreateObject());
    cJSON_AddNumberToObject(spec, "seed", (double)job->seed);
    cJSON_AddNumberToObject(spec, "threads", j->o.threads > 0 ? j->o.threads : 1);
    cJSON_AddNumberToObject(spec, "daemon_pid", (double)getpid());
    if (have_ckpt) cJSON_AddStringToObject(spec, "resume_checkpoint", resume);
    w->spec = cJSON_PrintUnformatted(spec);
    cJSON_Delete(spec);

    uv_pipe_init(j->loop, &w->in, 0);
    uv_pipe_init(j->loop, &w->out, 0);
    w->in.data = w->out.data = w->proc.data = w;
    w->handles_open = 3;
    char *args[] = {j->exe, "--worker", NULL};
    uv_stdio_container_t stdio[4] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&w->in},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&w->out},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
        {.flags = UV_INHERIT_FD, .data.fd = j->o.model_fd},
    };
    /* UV_PROCESS_DETACHED: the worker leads its own session, so a terminal's ^C or a signal to the
     * daemon's process group reaches the daemon alone, which decides; until the worker has its
     * handlers (its "started" line), a stop signal's default action would kill it. */
    uv_process_options_t po = {.exit_cb = on_exit_cb, .file = j->exe, .args = args, .stdio = stdio, .stdio_count = 4,
                               .flags = UV_PROCESS_DETACHED};
    int rc = uv_spawn(j->loop, &w->proc, &po);
    w->next = j->workers;
    j->workers = w;
    j->running++;
    if (rc != 0) {
        /* The handles were initialised: close them through the normal path. */
        w->exited = w->eof = 1;
        w->said = SAID_ERROR;
        snprintf(w->error, sizeof w->error, "the worker could not be started: %s", uv_strerror(rc));
        uv_close((uv_handle_t *)&w->proc, NULL);
        w->handles_open = 2;
        set_status_held(j, w->job_id, &w->hold, HLPTD_JOB_FAILED, "worker_died", w->error);
        close_handle(w, (uv_handle_t *)&w->in);
        close_handle(w, (uv_handle_t *)&w->out);
        return HLPT_OK;
    }
    watch_pid(j, w->proc.pid, 1);
    uv_buf_t b = uv_buf_init(w->spec, (unsigned)strlen(w->spec));
    w->wreq.data = w;
    uv_write(&w->wreq, (uv_stream_t *)&w->in, &b, 1, on_spec_written);
    uv_read_start((uv_stream_t *)&w->out, on_alloc, on_read);
    /* The job is running already: hlptd_store_job_claim moved it. */
    changed(j, w->job_id);
    held_event(w, "info", NULL, "Worker started on node %s%s", j->node_id,
               have_ckpt ? "; resuming from the last checkpoint" : "");
    return HLPT_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* API                                                                                             */

void hlptd_jobs_model_name(const char *base, const hlptd_job *job, int64_t step, char *out, size_t cap) {
    const char *tail = job->id + (strncmp(job->id, HLPTD_ID_JOB, strlen(HLPTD_ID_JOB)) ? 0 : strlen(HLPTD_ID_JOB));
    const char *suffix = job->suffix && *job->suffix ? job->suffix : "hlpt";
    if (step < 0) snprintf(out, cap, "ft:%s:%s:%s", base, suffix, tail);
    else snprintf(out, cap, "ft:%s:%s:%s:ckpt-step-%lld", base, suffix, tail, (long long)step);
}

int hlptd_jobs_new(uv_loop_t *loop, hlptd_store *st, const hlptd_jobs_opts *o, hlptd_jobs **out) {
    *out = NULL;
    hlptd_jobs *j = calloc(1, sizeof *j);
    if (!j) return HLPT_ERR_NOMEM;
    j->loop = loop;
    j->st = st;
    j->o = *o;
    j->exe = strdup(o->exe);
    j->model_dir = strdup(o->model_dir);
    j->model_name = strdup(o->model_name ? o->model_name : "base");
    j->data_dir = strdup(o->data_dir);
    j->node_id = strdup(o->node_id ? o->node_id : o->data_dir);
    j->url = strdup(o->url ? o->url : "");
    j->started_at = (int64_t)time(NULL);
    if (j->o.lease_ms < 1000) j->o.lease_ms = 15000;
    if (!j->exe || !j->model_dir || !j->model_name || !j->data_dir || !j->node_id || !j->url) {
        hlptd_jobs_free(j);
        return HLPT_ERR_NOMEM;
    }
    atomic_init(&j->beat_ok_ms, mono_ms());
    pthread_mutex_init(&j->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    /* Where no other node can take a job, there is nothing to fence. */
    if (hlptd_store_shared(st) && pthread_create(&j->watchdog, NULL, watch, j) == 0) j->watching = 1;
    if (j->o.max_workers < 1) j->o.max_workers = 1;
    *out = j;
    return HLPT_OK;
}

void hlptd_jobs_free(hlptd_jobs *j) {
    if (!j) return;
    if (j->watching) {
        pthread_mutex_lock(&j->mu);
        j->stop = 1;
        pthread_cond_signal(&j->cv);
        pthread_mutex_unlock(&j->mu);
        pthread_join(j->watchdog, NULL);
    }
    free(j->exe);
    free(j->model_dir);
    free(j->model_name);
    free(j->data_dir);
    free(j->node_id);
    free(j->url);
    while (j->restarts) {
        restart_count *c = j->restarts;
        j->restarts = c->next;
        free(c);
    }
    free(j);
}

void hlptd_jobs_schedule(hlptd_jobs *j) {
    char why[512];
    while (!j->draining && j->running < j->o.max_workers) {
        /* Other nodes on the same store may claim at the same moment; the claim gives each job to
         * one of them (docs/design.md, "Many nodes"). */
        hlptd_job *job = NULL;
        char *lost_by = NULL;
        if (hlptd_store_job_claim(j->st, j->node_id, j->o.lease_ms, &job, &lost_by, why, sizeof why) != HLPT_OK || !job)
            return;
        hlptd_hold hold = {.node = j->node_id, .epoch = job->lease_epoch};
        j->counts.claims++;
        worker *mine = find_worker(j, job->id);
        if (mine && !mine->finished && mine->want != WANT_LOST) {
            /* This node let its own lease lapse (the loop was held up past a lease) and claimed the
             * job back before any other node: its worker goes on under the new claim. Had another
             * node claimed it meanwhile, the worker's next write would have been refused, and the
             * worker lost. */
            fprintf(stderr, "hlptd: job %s: claimed back after its lease lapsed here (claim %lld)\n", job->id,
                    (long long)job->lease_epoch);
            mine->hold.epoch = job->lease_epoch;
            hlptd_job_free(job);
            free(lost_by);
            continue;
        }
        if (mine) {
            /* Its worker here is on its way out: the job goes back to the queue until it is gone. */
            set_status_held(j, job->id, &hold, HLPTD_JOB_QUEUED, NULL, NULL);
            hlptd_job_free(job);
            free(lost_by);
            return;
        }
        if (lost_by) {
            j->counts.takeovers++;
            event(j, job->id, "warn", NULL,
                  "Node %s stopped renewing its lease on this job; node %s takes it over from its last checkpoint", lost_by,
                  j->node_id);
        }
        free(lost_by);
        int err = start_job(j, job, why, sizeof why);
        if (err == HLPT_ERR_NOSPACE) {
            event(j, job->id, "error", NULL, "Job paused before it started: %s. Free some space, then resume the job", why);
            set_status_held(j, job->id, &hold, HLPTD_JOB_PAUSED, NULL, NULL);
        } else if (err) {
            event(j, job->id, "error", NULL, "Job failed before it started: %s", why);
            set_status_held(j, job->id, &hold, HLPTD_JOB_FAILED, "setup_failed", why);
        }
        hlptd_job_free(job);
    }
}

/* What a job's status, as the store has it now, asks of its worker here. */
static void follow_status(worker *w, hlptd_job_state status) {
    if (w->finished || w->want == WANT_LOST || w->want == WANT_CANCEL) return;
    if (status == HLPTD_JOB_CANCELLED) {
        w->want = WANT_CANCEL;
        if (!w->exited) uv_process_kill(&w->proc, SIGKILL);
    } else if (status == HLPTD_JOB_PAUSED && (w->want == WANT_NONE || w->want == WANT_REQUEUE || w->want == WANT_DRAIN)) {
        /* A worker already stopping (resumed, or drained) is not signalled again; it ends paused. */
        int stop = w->want == WANT_NONE;
        w->want = WANT_PAUSE;
        if (stop) signal_stop(w, SIGUSR1);
    } else if (status == HLPTD_JOB_QUEUED && w->want == WANT_PAUSE) {
        w->want = WANT_REQUEUE;
    }
}

void hlptd_jobs_notified(hlptd_jobs *j, const char *id, const char *status) {
    int k = hlptd_job_state_from_name(status);
    if (k < 0) return;
    worker *w = find_worker(j, id);
    if (w) follow_status(w, (hlptd_job_state)k);
    else if (k == HLPTD_JOB_QUEUED) hlptd_jobs_schedule(j);
}

static void beat(hlptd_jobs *j, const char *state) {
    char why[256];
    hlptd_node_fields self = {.id = j->node_id, .url = j->url, .pid = getpid(), .workers = j->o.max_workers,
                              .running = j->running, .state = state, .lease_ms = j->o.lease_ms,
                              .started_at = j->started_at};
    hlptd_lease **held = NULL;
    size_t n = 0;
    if (hlptd_store_node_beat(j->st, &self, &held, &n, why, sizeof why)) {
        /* The watchdog stops the workers before the leases can run out (a shared store). */
        j->counts.beats_failed++;
        fprintf(stderr, "hlptd: heartbeat failed (the store unanswered for %lld ms): %s\n",
                (long long)(mono_ms() - atomic_load(&j->beat_ok_ms)), why);
        return;
    }
    atomic_store(&j->beat_ok_ms, mono_ms());
    j->counts.beats++;
    for (worker *w = j->workers; w; w = w->next) {
        if (w->finished || w->want == WANT_LOST) continue;
        size_t i = 0;
        while (i < n && (strcmp(held[i]->id, w->job_id) || held[i]->lease_epoch != w->hold.epoch)) i++;
        if (i == n) lose(w, "another node has claimed the job");
        else follow_status(w, held[i]->status);
    }
    /* A lease without a worker here (its status write failed, say) is given up. */
    for (size_t i = 0; i < n; i++) {
        worker *w = find_worker(j, held[i]->id);
        if (w && w->hold.epoch == held[i]->lease_epoch) continue;
        hlptd_hold hold = {.node = j->node_id, .epoch = held[i]->lease_epoch};
        hlptd_job_state to = held[i]->status == HLPTD_JOB_RUNNING ? HLPTD_JOB_QUEUED : held[i]->status;
        set_status_held(j, held[i]->id, &hold, to, NULL, NULL);
    }
    hlptd_lease_list_free(held, n);
}

/* How long a node's row outlives its last heartbeat, and how many heartbeats apart old rows are
 * looked for (an hour at the default lease). */
#define NODE_ROW_DAYS 1
#define PRUNE_EVERY_BEATS 720
/* A shared store's blobs folder is trimmed every this many heartbeats (20 s at the default lease),
 * and spares blobs used this recently. */
#define TRIM_EVERY_BEATS 4
#define TRIM_SPARE_S 600

/* A shared store's blobs folder is a cache of the database's copies: past cache_max_bytes, the
 * least recently used go (docs/design.md, "Many nodes"). */
static void trim_cache(hlptd_jobs *j) {
    if (!j->o.cache_max_bytes || !hlptd_store_shared(j->st)) return;
    if (j->counts.beats % TRIM_EVERY_BEATS) return;
    char why[256];
    size_t n = 0;
    uint64_t freed = 0;
    if (hlptd_blobs_trim(j->o.blobs, j->o.cache_max_bytes, TRIM_SPARE_S, &n, &freed, why, sizeof why))
        fprintf(stderr, "hlptd: trimming the blobs folder: %s\n", why);
    else if (n)
        fprintf(stderr, "hlptd: trimmed the blobs folder: %zu blob(s), %llu MB, the least recently used\n", n,
                (unsigned long long)(freed >> 20));
}

void hlptd_jobs_beat(hlptd_jobs *j) {
    long before = j->counts.beats;
    beat(j, j->draining ? "draining" : "up");
    /* Now and then, paced by the heartbeats that reached the store: rows of nodes long gone go,
     * and the blobs folder is trimmed. */
    if (j->counts.beats != before) {
        char why[256];
        if (j->counts.beats % PRUNE_EVERY_BEATS == 2 &&
            hlptd_store_node_prune(j->st, (int64_t)NODE_ROW_DAYS * 86400000, why, sizeof why))
            fprintf(stderr, "hlptd: removing old node rows: %s\n", why);
        trim_cache(j);
    }
    hlptd_jobs_schedule(j);
}

void hlptd_jobs_goodbye(hlptd_jobs *j) {
    char **ids, why[256];
    size_t n;
    /* Whatever a drain that ran out of time left running dies with this process: its job is free
     * for the others at once, not after its lease. */
    if (hlptd_store_node_release(j->st, j->node_id, &ids, &n, why, sizeof why) == HLPT_OK) {
        for (size_t i = 0; i < n; i++)
            event(j, ids[i], "warn", NULL, "The daemon stopped before this job's worker did; it resumes from its last checkpoint");
        hlptd_store_ids_free(ids, n);
    }
    beat(j, "stopped");
}

void hlptd_jobs_counts_get(const hlptd_jobs *j, hlptd_jobs_counts *out) { *out = j->counts; }

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    remove(path);
    return 0;
}

/* hlptd before blobs (docs/design.md, "The store") kept a job's dataset copies, checkpoint files and
 * adapter in <data_dir>/jobs/<id>; nothing reads them now, and the store has everything. */
static void remove_job_dirs(hlptd_jobs *j) {
    char path[1200];
    if ((size_t)snprintf(path, sizeof path, "%s/jobs", j->data_dir) < sizeof path)
        nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int hlptd_jobs_recover(hlptd_jobs *j, char *why, size_t len) {
    char **ids;
    size_t n;
    remove_job_dirs(j);
    /* Only this node's: a job another node holds is that node's, or, once its lease has expired,
     * any node's to claim. */
    int err = hlptd_store_node_release(j->st, j->node_id, &ids, &n, why, len);
    if (err) return err;
    for (size_t i = 0; i < n; i++)
        event(j, ids[i], "warn", NULL, "The daemon stopped while this job ran; it resumes from its last checkpoint");
    hlptd_store_ids_free(ids, n);
    beat(j, "up");
    hlptd_jobs_schedule(j);
    return HLPT_OK;
}

/* The job's status, and in node[cap] the node that holds it ("" when none does). */
static int job_status(hlptd_jobs *j, const char *id, hlptd_job_state *status, char *node, size_t cap, char *why,
                      size_t len) {
    hlptd_job *job = NULL;
    int err = hlptd_store_job_get(j->st, id, &job, why, len);
    if (err) return err;
    *status = job->status;
    snprintf(node, cap, "%s", job->lease_until && job->node ? job->node : "");
    hlptd_job_free(job);
    return HLPT_OK;
}

/* Cancel and pause act on a worker here at once; a worker on another node follows the new status
 * when that node hears of it (hlptd_jobs_notified, or its next heartbeat). */
int hlptd_jobs_cancel(hlptd_jobs *j, const char *id, char *why, size_t len) {
    hlptd_job_state status;
    char node[256];
    int err = job_status(j, id, &status, node, sizeof node, why, len);
    if (err) return err;
    if (!hlptd_job_state_can(status, HLPTD_JOB_CANCELLED))
        return hlpt_why(why, len, HLPT_ERR_STATE, "job %s is %s and cannot be cancelled", id, hlptd_job_state_name(status));
    worker *w = find_worker(j, id);
    if (w) follow_status(w, HLPTD_JOB_CANCELLED);
    if (!w && *node && strcmp(node, j->node_id)) event(j, id, "info", NULL, "Job cancelled; its worker on node %s stops", node);
    else event(j, id, "info", NULL, "Job cancelled");
    set_status(j, id, HLPTD_JOB_CANCELLED, NULL, NULL);
    return HLPT_OK;
}

int hlptd_jobs_pause(hlptd_jobs *j, const char *id, char *why, size_t len) {
    hlptd_job_state status;
    char node[256];
    int err = job_status(j, id, &status, node, sizeof node, why, len);
    if (err) return err;
    if (!hlptd_job_state_can(status, HLPTD_JOB_PAUSED))
        return hlpt_why(why, len, HLPT_ERR_STATE, "job %s is %s and cannot be paused", id, hlptd_job_state_name(status));
    worker *w = find_worker(j, id);
    if (w) {
        /* The worker checkpoints at the next step boundary, says "stopped" and exits. */
        follow_status(w, HLPTD_JOB_PAUSED);
        event(j, id, "info", NULL, "Pausing: the job stops at its next checkpoint");
    } else if (status == HLPTD_JOB_RUNNING && *node) {
        event(j, id, "info", NULL, "Pausing: the job stops at its next checkpoint on node %s", node);
    } else {
        event(j, id, "info", NULL, "Job paused before it started");
    }
    set_status(j, id, HLPTD_JOB_PAUSED, NULL, NULL);
    return HLPT_OK;
}

void hlptd_jobs_pause_all_for_space(hlptd_jobs *j) {
    for (worker *w = j->workers; w; w = w->next) {
        /* A worker that has exited but whose job's state is not decided yet (its pipe still has
         * lines) pauses too: it may be the one that found the disk full. */
        if (w->want != WANT_NONE || w->finished) continue;
        w->want = WANT_PAUSE;
        signal_stop(w, SIGUSR1);
        event(j, w->job_id, "error", NULL,
              "Pausing: the disk is full. The job stops at its next checkpoint; free some space, then resume it");
        set_status(j, w->job_id, HLPTD_JOB_PAUSED, NULL, NULL);
    }
}

int hlptd_jobs_resume(hlptd_jobs *j, const char *id, char *why, size_t len) {
    hlptd_job_state status;
    char node[256];
    int err = job_status(j, id, &status, node, sizeof node, why, len);
    if (err) return err;
    if (status != HLPTD_JOB_PAUSED)
        return hlpt_why(why, len, HLPT_ERR_STATE, "job %s is %s, not paused", id, hlptd_job_state_name(status));
    worker *w = find_worker(j, id);
    if (w) follow_status(w, HLPTD_JOB_QUEUED);
    restarts(j, id, -1);
    set_status(j, id, HLPTD_JOB_QUEUED, NULL, NULL);
    event(j, id, "info", NULL, "Job resumed; it continues from its last checkpoint");
    hlptd_jobs_schedule(j);
    return HLPT_OK;
}

void hlptd_jobs_drain(hlptd_jobs *j, void (*done)(void *ctx), void *ctx) {
    j->draining = 1;
    if (j->running == 0) {
        done(ctx);
        return;
    }
    j->drained = done;
    j->drained_ctx = ctx;
    for (worker *w = j->workers; w; w = w->next) {
        if (w->want == WANT_NONE) w->want = WANT_DRAIN;
        signal_stop(w, SIGTERM);
    }
}

int hlptd_jobs_running(const hlptd_jobs *j) { return j->running; }

int hlptd_jobs_queue_position(hlptd_jobs *j, const char *id) {
    char **ids, why[128];
    size_t n;
    if (hlptd_store_job_ids_with_status(j->st, HLPTD_JOB_QUEUED, &ids, &n, why, sizeof why)) return 0;
    int pos = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ids[i], id)) pos = (int)i + 1;
    hlptd_store_ids_free(ids, n);
    return pos;
}

int hlptd_jobs_live(const hlptd_jobs *j, const char *id, hlptd_job_live *out) {
    memset(out, 0, sizeof *out);
    const worker *w = find_worker(j, id);
    if (!w) return 0;
    *out = w->live;
    return 1;
}

void hlptd_jobs_each_live(const hlptd_jobs *j, void (*fn)(void *ctx, const char *id, const hlptd_job_live *live),
                          void *ctx) {
    for (const worker *w = j->workers; w; w = w->next) fn(ctx, w->job_id, &w->live);
}
