/*
 * app.h - all that the REST handlers (api/) may reach of the running daemon, and the one daemon
 * header they include. The handlers get the daemon as the app pointer of every request
 * (hlptd_req_app); the accessors below say which thread may use what. The modules they lead to are
 * re-exported whole: the store (store.h), the job queue (jobs.h), the inference thread (infer.h),
 * model names (resolver.h), job event streams (subscribers.h) and the serving counters (stats.h).
 *
 * Threads (docs/design.md, "Threads and who owns what"): an MHD thread runs a handler; what needs
 * the store or the job queue is handed to the loop thread with hlptd_req_defer; a generation is
 * submitted to the inference thread directly.
 */
#ifndef HLPTD_APP_H
#define HLPTD_APP_H

#include <stdint.h>

#include "blobs.h"
#include "hlpt/model.h"
#include "http.h"
#include "infer.h"
#include "jobs.h"
#include "resolver.h"
#include "stats.h"
#include "store.h"
#include "subscribers.h"

typedef struct hlptd hlptd;

/* Any thread: 1 once the base model is loaded and the daemon takes work; 0 while loading or
 * stopping. */
int hlptd_ready(const hlptd *d);
/* Any thread: 1 after SIGTERM/SIGINT. */
int hlptd_stopping(const hlptd *d);

/* Any thread: immutable after start-up. NULL while the model loads; kept through a shutdown's
 * drain, which generations in flight need. */
const hlpt_model *hlptd_model(hlptd *d);
/* Any thread: the base model's name (its directory's base name), what `model` names it by. */
const char *hlptd_model_name(hlptd *d);
/* Any thread: when the base model was made (Unix seconds; its config.json's modification time). */
int64_t hlptd_model_created(hlptd *d);

/* Any thread: the inference thread, to submit generations to (NULL while the model loads, and once
 * a shutdown began). The handle stays valid until the daemon is closed, after every HTTP thread
 * has stopped: a handler that got it just before a shutdown may still submit, and is refused. */
hlptd_infer *hlptd_inference(hlptd *d);
/* Any thread: the serving counters (GET /metrics). */
hlptd_stats *hlptd_serving_stats(hlptd *d);

/* Any thread: this node's name in the store (--node-id). */
const char *hlptd_node_id(hlptd *d);
/* Loop thread only: where this node answers (--advertise-url, or http://HOSTNAME:PORT). */
const char *hlptd_node_url(hlptd *d);

/* Loop thread only (work functions), but for hlptd_store_damaged, which any thread may ask. */
hlptd_store *hlptd_store_of(hlptd *d);
/* Loop thread only; NULL while the model loads. */
hlptd_jobs *hlptd_job_queue(hlptd *d);
/* Loop thread only: the event streams that follow jobs. */
hlptd_subscribers *hlptd_job_streams(hlptd *d);
/* Any thread: the artefact files under <data-dir>/blobs (blobs.h) that the store's rows name;
 * uploads are written there as they arrive. */
hlptd_blobs *hlptd_blob_store(hlptd *d);

#endif
