/*
 * loop.c - see loop.h. The daemon's state is one struct owned by the loop thread. Other threads
 * read the `ready` and `stopping` atomics, and, through app.h, what is immutable once `ready` is
 * set (the model, the inference thread's handle) or safe to share (the serving counters).
 */
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "app.h"
#include "blobs.h"
#include "hlpt/engine.h"
#include "hlpt/err.h"
#include "hlpt/fileio.h"
#include "hlpt/model.h"
#include "http.h"
#include "infer.h"
#include "jobs.h"
#include "log.h"
#include "notify.h"
#include "resolver.h"
#include "stats.h"
#include "subscribers.h"

/* How often shutdown checks whether requests and workers are done, how long it waits, and how long
 * generations cancelled at that point get to send their last events. */
#define DRAIN_POLL_MS 20
#define DRAIN_TIMEOUT_MS 30000
#define DRAIN_GRACE_MS 2000

struct hlptd {
    const hlptd_settings *cfg;
    uv_loop_t loop;
    int loop_open;
    uv_async_t wake;     /* HTTP threads → loop: requests queued */
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t start_timer, drain_timer, reserve_timer, full_timer, beat_timer;
    uv_poll_t note_poll;  /* the store's notifications arrive on its socket (a shared store) */
    uv_check_t note_check; /* … or were read in by the loop's own statements */
    int note_fd;          /* the socket note_poll watches, -1 when none */
    char url[512];        /* where this node answers (--advertise-url) */
    int handles_open;
    hlptd_store *store;
    hlptd_blobs *blobs;  /* <data-dir>/blobs: the artefacts the store's rows name */
    hlptd_http *http;
    hlpt_model *model;   /* sealed shared weights; NULL until loaded */
    char model_name[256];
    int64_t model_created; /* the base's config.json mtime: when the model was made, as far as we know */
    hlptd_infer *infer;  /* inference thread; NULL until the model is loaded, kept until hlptd_close */
    hlptd_resolver *resolver; /* model names, for the inference thread; with it */
    hlptd_jobs *jobs;
    hlptd_subscribers *subscribers; /* job event streams */
    hlptd_stats *stats;  /* serving counters */
    char *db_path;
    int jobs_drained;
    int gens_cancelled;  /* the drain ran out of time and cancelled the generations left */
    char *port_path, *pid_path;
    char *reserve_path;  /* <data-dir>/hlptd.reserve */
    int files_written;   /* port and pid files are ours to remove */
    int lock_fd;         /* flock on <data-dir>/hlptd.lock: one daemon per data directory */
    atomic_int ready, stopping;
    uint64_t drain_started;
    int result;          /* hlptd_run's status */
    char result_why[512];
};

int hlptd_ready(const hlptd *d) { return atomic_load(&d->ready); }
int hlptd_stopping(const hlptd *d) { return atomic_load(&d->stopping); }
hlptd_store *hlptd_store_of(hlptd *d) { return d->store; }
const char *hlptd_node_id(hlptd *d) { return d->cfg->node_id; }
/* Set in hlptd_open, before the loop runs, once the port is known. */
const char *hlptd_node_url(hlptd *d) { return d->url; }
/* The model stays loaded through a drain: the requests and generations still in flight use it. */
const hlpt_model *hlptd_model(hlptd *d) {
    return atomic_load(&d->ready) || atomic_load(&d->stopping) ? d->model : NULL;
}
const char *hlptd_model_name(hlptd *d) { return d->model_name; }
int64_t hlptd_model_created(hlptd *d) { return d->model_created; }
/* d->infer is set before `ready` and never reset before hlptd_close. */
hlptd_infer *hlptd_inference(hlptd *d) { return atomic_load(&d->ready) ? d->infer : NULL; }
hlptd_stats *hlptd_serving_stats(hlptd *d) { return d->stats; }
hlptd_jobs *hlptd_job_queue(hlptd *d) { return d->jobs; }
hlptd_blobs *hlptd_blob_store(hlptd *d) { return d->blobs; }
hlptd_subscribers *hlptd_job_streams(hlptd *d) { return d->subscribers; }

/* ---- the model hook ---------------------------------------------------------------------------- */

/* The inference thread served a checkpoint not yet registered: the loop registers it (on_wake). */
static void wake_for_pending(void *ctx) { uv_async_send(ctx); }

/* Loads the base model into the sealed memfd (docs/design.md, "Processes"), then starts the inference thread and
 * the job queue, which resumes what the last daemon left running. Runs on the loop thread after
 * HTTP is up, so /health answers "loading" meanwhile. */
static int load_base_model(hlptd *d, char *why, size_t len) {
    const hlptd_settings *cfg = d->cfg;
    /* --threads 0 means every core, for the loop, the inference thread and workers alike. */
    int threads = cfg->threads > 0 ? cfg->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    hlpt_engine_set_threads(threads);
    int err = hlpt_model_open_shared(cfg->model, cfg->dtype, &d->model, why, len);
    if (err) return err;
    const char *base = strrchr(cfg->model, '/');
    snprintf(d->model_name, sizeof d->model_name, "%s", base && base[1] ? base + 1 : cfg->model);
    size_t n = strlen(d->model_name);
    while (n > 1 && d->model_name[n - 1] == '/') d->model_name[--n] = 0;
    char cfg_path[4200];
    struct stat sb;
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", cfg->model);
    d->model_created = stat(cfg_path, &sb) == 0 ? (int64_t)sb.st_mtime : (int64_t)time(NULL);
    hlpt_base_dtype dt = hlpt_model_dtype(d->model);
    char engine[256];
    hlptd_info("base model %s: %zu MB of %s weights (--dtype %s) sealed in shared memory (hash %s); products %s",
              d->model_name, hlpt_model_bytes(d->model) >> 20, hlpt_base_dtype_name(dt),
              hlpt_base_dtype_name(cfg->dtype), hlpt_model_hash(d->model),
              hlpt_engine_describe(dt, engine, sizeof engine));
    /* The inference thread resolves model names and reads adapters through a store connection of
     * its own (SQLite WAL lets it read while the loop writes; PostgreSQL serves two connections). */
    hlptd_resolver_opts ro = {.db_path = d->db_path, .blobs = d->blobs, .base_name = d->model_name,
                              .base = hlpt_model_config(d->model), .on_pending = wake_for_pending, .ctx = &d->wake};
    if ((err = hlptd_resolver_new(&ro, &d->resolver))) return hlpt_why(why, len, err, "out of memory");
    hlptd_infer_opts io = {.adapter_budget = (size_t)256 << 20, .max_batch = 32, .max_prefill = 4096,
                           .threads = threads};
    hlptd_resolver_hook(d->resolver, &io);
    if ((err = hlptd_infer_start(d->model, &io, &d->infer)))
        return hlpt_why(why, len, err, "starting the inference thread failed");
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0) return hlpt_why(why, len, HLPT_ERR_IO, "cannot find the hlptd binary: %s", strerror(errno));
    exe[k] = 0;
    hlptd_jobs_opts jo = {.exe = exe, .model_dir = cfg->model, .model_name = d->model_name,
                          .model_fd = hlpt_model_fd(d->model), .data_dir = cfg->data_dir, .blobs = d->blobs,
                          .node_id = cfg->node_id, .url = d->url, .lease_ms = (int64_t)cfg->lease_seconds * 1000,
                          .cache_max_bytes = cfg->cache_max_bytes,
                          .max_workers = cfg->workers, .threads = threads,
                          .on_change = hlptd_subscribers_changed, .ctx = d->subscribers};
    if ((err = hlptd_jobs_new(&d->loop, d->store, &jo, &d->jobs))) return hlpt_why(why, len, err, "job queue");
    return HLPT_OK;
}

/* ---- files in the data directory ---------------------------------------------------------------- */

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ---- the space reserve ------------------------------------------------------------------------------
 * <data-dir>/hlptd.reserve holds RESERVE_BYTES while the disk has room. When SQLite finds the disk
 * full, the reserve is given back, so that what must still be written is: a job's status and events
 * (it pauses), a DELETE (SQLite logs it before it frees anything), the next start. It is made again
 * once the disk has room. */
#define RESERVE_BYTES ((off_t)4 << 20)
#define RESERVE_CHECK_MS 5000 /* how often a missing reserve is made again */

static unsigned long long disk_free(const char *dir) {
    struct statvfs sv;
    return statvfs(dir, &sv) == 0 ? (unsigned long long)sv.f_bavail * sv.f_frsize : 0;
}

/* Running jobs pause (each checkpoints into what the reserve gave back): outside the store call
 * that found the disk full. */
static void on_disk_full(uv_timer_t *t) {
    hlptd *d = t->data;
    if (d->jobs) hlptd_jobs_pause_all_for_space(d->jobs);
}

static int reserve_release(void *ctx) {
    hlptd *d = ctx;
    if (unlink(d->reserve_path) != 0) return 0;
    hlptd_warn("the disk of %s is full: its %lld MB reserve is released so that deletes and job records still work; "
              "running jobs pause", d->cfg->data_dir, (long long)(RESERVE_BYTES >> 20));
    if (d->handles_open) uv_timer_start(&d->full_timer, on_disk_full, 0, 0);
    return 1;
}

static void reserve_make(hlptd *d) {
    struct stat sb;
    if (stat(d->reserve_path, &sb) == 0 || disk_free(d->cfg->data_dir) < 3 * (unsigned long long)RESERVE_BYTES) return;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", d->reserve_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    /* Real blocks, not a hole: posix_fallocate. */
    int ok = posix_fallocate(fd, 0, RESERVE_BYTES) == 0;
    close(fd);
    if (!ok || rename(tmp, d->reserve_path) != 0) unlink(tmp);
}

static void on_reserve_tick(uv_timer_t *t) { reserve_make(t->data); }

/* ---- callbacks ------------------------------------------------------------------------------------ */

/* Checkpoints the inference thread served are registered first, so that a request which follows
 * a generation's answer finds its checkpoint an adapter (resolver.h). */
static void on_wake(uv_async_t *a) {
    hlptd *d = a->data;
    if (d->resolver) hlptd_resolver_register_pending(d->resolver, d->store);
    hlptd_http_run_deferred(d->http);
}

static void wake_loop(void *ctx) { uv_async_send(ctx); }

static void close_all(hlptd *d) {
    uv_close((uv_handle_t *)&d->wake, NULL);
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
    uv_close((uv_handle_t *)&d->sig_hup, NULL);
    uv_close((uv_handle_t *)&d->start_timer, NULL);
    uv_close((uv_handle_t *)&d->drain_timer, NULL);
    uv_close((uv_handle_t *)&d->reserve_timer, NULL);
    uv_close((uv_handle_t *)&d->full_timer, NULL);
    uv_close((uv_handle_t *)&d->beat_timer, NULL);
    uv_close((uv_handle_t *)&d->note_check, NULL);
    if (d->note_fd >= 0) uv_close((uv_handle_t *)&d->note_poll, NULL);
    d->note_fd = -1;
    d->handles_open = 0;
}

static void on_jobs_drained(void *ctx) {
    hlptd *d = ctx;
    d->jobs_drained = 1;
}

static void on_drain_tick(uv_timer_t *t) {
    hlptd *d = t->data;
    int reqs = hlptd_http_drain_step(d->http);
    int workers = d->jobs && !d->jobs_drained ? hlptd_jobs_running(d->jobs) : 0;
    uint64_t waited = uv_now(&d->loop) - d->drain_started;
    if (reqs == 0 && workers == 0) {
        hlptd_info("drained; exiting");
    } else if (waited >= DRAIN_TIMEOUT_MS && !d->gens_cancelled && d->infer) {
        /* Generations that would outlast the drain end now, each with its finish and [DONE]. */
        hlptd_warn("drain: %d request(s) still running after %llu ms; cancelling generations", reqs,
                  (unsigned long long)waited);
        hlptd_infer_cancel_all(d->infer);
        d->gens_cancelled = 1;
        return;
    } else if (waited >= DRAIN_TIMEOUT_MS + (d->gens_cancelled ? DRAIN_GRACE_MS : 0)) {
        hlptd_warn("drain timed out after %llu ms with %d request(s) and %d worker(s) left",
                  (unsigned long long)waited, reqs, workers);
    } else {
        return;
    }
    uv_timer_stop(t);
    /* The node's row says it stopped; the jobs it ran are back in the queue, free for others. */
    if (d->jobs) hlptd_jobs_goodbye(d->jobs);
    hlptd_subscribers_close_all(d->subscribers);
    /* The handle stays for hlptd_close: an HTTP thread may still hold it (app.h). */
    hlptd_infer_stop(d->infer);
    if (d->resolver) hlptd_resolver_register_pending(d->resolver, d->store);
    close_all(d);
}

static void begin_drain(hlptd *d, const char *why) {
    if (atomic_exchange(&d->stopping, 1)) return;
    atomic_store(&d->ready, 0);
    hlptd_info("%s: draining (no new requests; finishing what runs)", why);
    char nwhy[256];
    if (hlptd_sd_notify("STOPPING=1", nwhy, sizeof nwhy)) hlptd_warn("%s", nwhy);
    d->drain_started = uv_now(&d->loop);
    uv_timer_stop(&d->start_timer);
    /* Running workers checkpoint and stop; their jobs go back to the queue, for another node of a
     * shared store to take at once, or for this one's next start. Heartbeats go on meanwhile,
     * the node's row saying it drains. */
    if (d->jobs) hlptd_jobs_drain(d->jobs, on_jobs_drained, d);
    uv_timer_start(&d->drain_timer, on_drain_tick, 0, DRAIN_POLL_MS);
}

static void on_signal(uv_signal_t *s, int signum) {
    hlptd *d = s->data;
    if (signum == SIGHUP) {
        if (!d->cfg->api_key_file) {
            hlptd_info("SIGHUP: nothing to reload");
            return;
        }
        char why[512];
        int err = hlptd_http_load_api_keys(d->http, d->cfg->api_key_file, why, sizeof why);
        if (err) hlptd_warn("SIGHUP: keeping the old API keys: %s", why);
        else hlptd_info("SIGHUP: API keys reloaded from %s", d->cfg->api_key_file);
        return;
    }
    begin_drain(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---- the heartbeat and the store's notifications (docs/design.md, "Many nodes") ------------- */

static void on_beat(uv_timer_t *t) {
    hlptd *d = t->data;
    if (d->jobs) hlptd_jobs_beat(d->jobs);
}

/* "e <job id>": the job has a new event; "s <job id> <status>": it changed status or was given up. */
static void on_note(void *ctx, const char *payload) {
    hlptd *d = ctx;
    char id[HLPTD_ID_MAX], status[32];
    if (sscanf(payload, "e %39s", id) == 1) {
        hlptd_subscribers_changed(d->subscribers, id);
    } else if (sscanf(payload, "s %39s %31s", id, status) == 2) {
        hlptd_subscribers_changed(d->subscribers, id);
        if (d->jobs && atomic_load(&d->ready) && !atomic_load(&d->stopping)) hlptd_jobs_notified(d->jobs, id, status);
    }
}

static void watch_notes(hlptd *d);

static void on_note_readable(uv_poll_t *p, int status, int events) {
    hlptd *d = p->data;
    hlptd_store_notifications(d->store, 1, on_note, d);
    watch_notes(d);
}

/* Notifications the loop's own statements read in arrive in no socket event: every turn of the
 * loop hands them on. */
static void on_note_check(uv_check_t *c) {
    hlptd *d = c->data;
    hlptd_store_notifications(d->store, 0, on_note, d);
    watch_notes(d);
}

/* Watches the store's socket, again after a reconnect has changed it. */
static void watch_notes(hlptd *d) {
    int fd = hlptd_store_socket(d->store);
    if (fd == d->note_fd || !d->handles_open) return;
    if (d->note_fd >= 0) uv_close((uv_handle_t *)&d->note_poll, NULL);
    d->note_fd = -1;
    if (fd < 0 || uv_poll_init(&d->loop, &d->note_poll, fd) != 0) return;
    d->note_poll.data = d;
    d->note_fd = fd;
    uv_poll_start(&d->note_poll, UV_READABLE, on_note_readable);
}

static void on_start(uv_timer_t *t) {
    hlptd *d = t->data;
    hlptd_info("loading base model from %s", d->cfg->model);
    int err = load_base_model(d, d->result_why, sizeof d->result_why);
    if (err) {
        d->result = err;
        hlptd_error("%s", d->result_why);
        begin_drain(d, "model load failed");
        return;
    }
    /* The node's row (its first heartbeat) is written before /health says ready. */
    char why[256];
    if ((err = hlptd_jobs_recover(d->jobs, why, sizeof why))) hlptd_warn("resuming jobs: %s", why);
    atomic_store(&d->ready, 1);
    if (hlptd_sd_notify("READY=1", why, sizeof why)) hlptd_warn("%s", why);
    hlptd_info("ready");
    /* Three heartbeats a lease. */
    uint64_t every = (uint64_t)d->cfg->lease_seconds * 1000 / 3;
    uv_timer_start(&d->beat_timer, on_beat, every, every);
    /* A shared store tells of other nodes' changes. */
    if (hlptd_store_listen(d->store, why, sizeof why) == HLPT_OK) {
        uv_check_start(&d->note_check, on_note_check);
        watch_notes(d);
    }
}

/* ---- open, run, close ----------------------------------------------------------------------------- */

int hlptd_open(hlptd **out, const hlptd_opts *o, char *why, size_t len) {
    *out = NULL;
    const hlptd_settings *cfg = o->cfg;
    hlptd *d = calloc(1, sizeof *d);
    if (!d) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    d->cfg = cfg;
    d->lock_fd = -1;
    d->note_fd = -1;
    atomic_init(&d->ready, 0);
    atomic_init(&d->stopping, 0);
    /* A dtype this CPU cannot multiply (bf16 without AVX512-BF16 or AMX) fails the start before
     * anything is bound or written. */
    int err = hlpt_engine_check(cfg->dtype, why, len);
    if (err) goto fail;
    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
        err = hlpt_why(why, len, HLPT_ERR_IO, "data directory %s: %s", cfg->data_dir, strerror(errno));
        goto fail;
    }
    /* The store: SQLite in the data directory, or the PostgreSQL database --store names. */
    char *db = cfg->store ? strdup(cfg->store) : join(cfg->data_dir, "hlpt.db");
    d->port_path = join(cfg->data_dir, "hlptd.port");
    d->pid_path = join(cfg->data_dir, "hlptd.pid");
    if (!db || !d->port_path || !d->pid_path) {
        free(db);
        err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    char *lock = join(cfg->data_dir, "hlptd.lock");
    d->lock_fd = lock ? open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
    free(lock);
    if (d->lock_fd < 0 || flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        err = hlpt_why(why, len, HLPT_ERR_BUSY, "data directory %s: %s", cfg->data_dir,
                       errno == EWOULDBLOCK ? "in use by another hlptd" : strerror(errno));
        free(db);
        goto fail;
    }
    d->reserve_path = join(cfg->data_dir, "hlptd.reserve");
    if (!d->reserve_path) {
        free(db);
        err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    /* A start on a full disk needs room to open the database (its -shm and -wal files). */
    if (disk_free(cfg->data_dir) < (unsigned long long)RESERVE_BYTES) reserve_release(d);
    /* Blobs half-written when the last daemon stopped (blobs/tmp) go now, before any worker runs. */
    if ((err = hlptd_blobs_open(cfg->data_dir, 1, &d->blobs, why, len))) {
        free(db);
        goto fail;
    }
    /* Checked before anything writes to it: migrations over a damaged file could make it worse. */
    if (!(err = hlptd_store_check(db, why, len))) err = hlptd_store_open(&d->store, db, d->blobs, why, len);
    d->db_path = db;
    if (err) goto fail;
    /* Blobs written whose rows were never stored (the daemon died in between) go too. */
    size_t swept = 0;
    char swhy[256];
    if (hlptd_store_blob_sweep(d->store, &swept, swhy, sizeof swhy)) hlptd_warn("removing unnamed blobs: %s", swhy);
    if (swept) hlptd_info("removed %zu blob(s) that no row names", swept);
    hlptd_store_on_full(d->store, reserve_release, d);
    reserve_make(d);
    char where[512];
    hlptd_store_describe(db, where, sizeof where);
    hlptd_info("store: %s, at schema version %d", where, hlptd_store_version(d->store));
    if ((err = hlptd_subscribers_new(d->store, &d->subscribers)) || (err = hlptd_stats_new(&d->stats))) {
        hlpt_why(why, len, err, "out of memory");
        goto fail;
    }

    if (uv_loop_init(&d->loop) != 0) {
        err = hlpt_why(why, len, HLPT_ERR_INTERNAL, "uv_loop_init failed");
        goto fail;
    }
    d->loop_open = 1;
    uv_async_init(&d->loop, &d->wake, on_wake);
    uv_signal_init(&d->loop, &d->sig_term);
    uv_signal_init(&d->loop, &d->sig_int);
    uv_signal_init(&d->loop, &d->sig_hup);
    uv_timer_init(&d->loop, &d->start_timer);
    uv_timer_init(&d->loop, &d->drain_timer);
    uv_timer_init(&d->loop, &d->reserve_timer);
    uv_timer_init(&d->loop, &d->full_timer);
    uv_timer_init(&d->loop, &d->beat_timer);
    uv_check_init(&d->loop, &d->note_check);
    d->handles_open = 1;
    d->wake.data = d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
    d->start_timer.data = d->drain_timer.data = d->reserve_timer.data = d->full_timer.data = d->beat_timer.data = d;
    d->note_check.data = d;
    uv_timer_start(&d->reserve_timer, on_reserve_tick, RESERVE_CHECK_MS, RESERVE_CHECK_MS);
    uv_signal_start(&d->sig_term, on_signal, SIGTERM);
    uv_signal_start(&d->sig_int, on_signal, SIGINT);
    uv_signal_start(&d->sig_hup, on_signal, SIGHUP);

    hlptd_http_opts ho = {
        .host = cfg->listen_host,
        .port = cfg->listen_port,
        .threads = cfg->http_threads,
        .max_body_bytes = cfg->max_body_bytes,
        .max_upload_bytes = cfg->max_upload_bytes,
        .space_dir = cfg->data_dir,
        .routes = o->routes,
        .nroutes = o->nroutes,
        .app = d,
        .wake = wake_loop,
        .wake_ctx = &d->wake,
    };
    if ((err = hlptd_http_start(&d->http, &ho, why, len))) goto fail;
    if (cfg->api_key_file) {
        if ((err = hlptd_http_load_api_keys(d->http, cfg->api_key_file, why, len))) goto fail;
        hlptd_info("API keys required (from %s)", cfg->api_key_file);
    }
    char text[64];
    snprintf(text, sizeof text, "%d\n", hlptd_http_port(d->http));
    d->files_written = 1;
    if ((err = hlpt_file_write(d->port_path, text, strlen(text), 0, why, len))) goto fail;
    snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if ((err = hlpt_file_write(d->pid_path, text, strlen(text), 0, why, len))) goto fail;
    hlptd_info("listening on %s:%d", cfg->listen_host, hlptd_http_port(d->http));
    if (cfg->advertise_url) {
        snprintf(d->url, sizeof d->url, "%s", cfg->advertise_url);
    } else {
        char host[256];
        if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
        host[sizeof host - 1] = 0;
        snprintf(d->url, sizeof d->url, "http://%s:%d", host, hlptd_http_port(d->http));
    }
    *out = d;
    return HLPT_OK;
fail:
    hlptd_close(d);
    return err;
}

int hlptd_run(hlptd *d, char *why, size_t len) {
    d->result = HLPT_OK;
    uv_timer_start(&d->start_timer, on_start, 0, 0);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    if (d->result) return hlpt_why(why, len, d->result, "%s", d->result_why);
    return HLPT_OK;
}

void hlptd_close(hlptd *d) {
    if (!d) return;
    /* HTTP first: after it stopped, no thread can hand anything to the loop. */
    hlptd_http_stop(d->http);
    if (d->loop_open) {
        if (d->handles_open) close_all(d);
        uv_run(&d->loop, UV_RUN_DEFAULT); /* runs the close callbacks */
        uv_loop_close(&d->loop);
    }
    hlptd_infer_free(d->infer);
    hlptd_resolver_free(d->resolver);
    hlptd_jobs_free(d->jobs);
    hlptd_subscribers_free(d->subscribers);
    hlptd_stats_free(d->stats);
    hlpt_model_close(d->model);
    hlptd_store_close(d->store);
    hlptd_blobs_close(d->blobs);
    free(d->db_path);
    if (d->files_written) {
        unlink(d->port_path);
        unlink(d->pid_path);
    }
    if (d->lock_fd >= 0) close(d->lock_fd);
    free(d->port_path);
    free(d->pid_path);
    free(d->reserve_path);
    free(d);
}
