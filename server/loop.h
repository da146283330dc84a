/*
 * loop.h - the hlptd daemon: its libuv loop and everything it owns (struct hlptd).
 *
 * Threads (docs/design.md, "Threads and who owns what"):
 *   loop thread (the main thread)  runs uv_run: signals (uv_signal_t), the wake-up from other
 *                                  threads (uv_async_t), timers, the worker processes and their
 *                                  pipes. It owns the store (the database's one writer), the job
 *                                  queue and the job event streams, and runs every request's work
 *                                  (http.h).
 *   MHD thread pool                parses and validates requests, answers what needs no state
 *                                  (/health), submits generations to the inference thread, and
 *                                  hands the rest to the loop.
 *   inference thread (infer.h)     resolves each generation's model (resolver.h), batches and runs
 *                                  the generations, and answers their connections itself.
 *
 * The REST API is a layer above: main hands its route table in (hlptd_opts), and the handlers
 * reach the daemon through app.h only.
 *
 * Start-up: data directory, store + migrations, HTTP bound (port and pid files written), then the
 * base model is loaded on the loop (the load_base_model hook in loop.c; /health says "loading"
 * until it is done), then READY=1 to systemd. SIGTERM/SIGINT: STOPPING=1, no new connections or
 * hand-offs, queued work finished, event streams ended, workers drained, then hlptd_run returns.
 * SIGHUP reloads the API key file.
 */
#ifndef HLPTD_LOOP_H
#define HLPTD_LOOP_H

#include <stddef.h>

#include "app.h"
#include "settings.h"
#include "http.h"

typedef struct {
    const hlptd_settings *cfg;  /* borrowed; must outlive the daemon */
    const hlptd_route *routes; /* the REST API's route table; borrowed, must outlive the daemon */
    size_t nroutes;
} hlptd_opts;

/* Opens the data directory and the store and starts serving HTTP with o's routes. *out owned:
 * hlptd_close. Errors name the step (e.g. "listen 127.0.0.1:8080: Address already in use",
 * "model directory /x: no config.json"). Main thread. */
int hlptd_open(hlptd **out, const hlptd_opts *o, char *why, size_t len);
/* Runs the loop until a SIGTERM/SIGINT drain has finished. Main thread (which becomes the loop
 * thread). Returns HLPT_OK after a graceful drain, or an error (model load failed, ...). */
int hlptd_run(hlptd *d, char *why, size_t len);
/* Stops HTTP, the inference thread and the job queue, closes the store, removes the port and pid
 * files. NULL is fine. */
void hlptd_close(hlptd *d);

#endif
