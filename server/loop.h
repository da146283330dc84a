/*
 * loop.h - the hlptd daemon: its libuv loop and everything the loop thread owns.
 *
 * Threads:
 *   loop thread (the main thread)  runs uv_run: signals (uv_signal_t), the wake-up from HTTP threads
 *                                  (uv_async_t), timers, and later the worker processes and their
 *                                  pipes. It owns the store (the database's one writer) and the
 *                                  job queue, and runs every request's work (http.h).
 *   MHD thread pool                parses and validates requests, answers what needs no state
 *                                  (/health) and hands the rest to the loop.
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

#include "config.h"
#include "store.h"

typedef struct hlptd hlptd;

/* Opens the data directory and the store and starts serving HTTP. cfg is borrowed and must outlive
 * the daemon. *out owned: hlptd_close. Errors name the step (e.g. "listen 127.0.0.1:8080: Address
 * already in use", "model directory /x: no config.json"). Main thread. */
int hlptd_open(hlptd **out, const hlptd_config *cfg, char *why, size_t len);
/* Runs the loop until a SIGTERM/SIGINT drain has finished. Main thread (which becomes the loop
 * thread). Returns HLPT_OK after a graceful drain, or an error (model load failed, ...). */
int hlptd_run(hlptd *d, char *why, size_t len);
/* Stops HTTP, closes the store, removes the port and pid files. NULL is fine. */
void hlptd_close(hlptd *d);

/* 1 once the base model is loaded and the daemon takes work; 0 while loading or stopping. Any
 * thread. */
int hlptd_ready(const hlptd *d);
/* 1 after SIGTERM/SIGINT. Any thread. */
int hlptd_stopping(const hlptd *d);
/* The store: loop thread only (work functions). */
hlpt_store *hlptd_store(hlptd *d);
const hlptd_config *hlptd_config_get(const hlptd *d);

#endif
