/*
 * app.h - what the REST handlers (api/) may reach of the running daemon. The handlers get the
 * daemon as the opaque app pointer of every request; these accessors say which thread may use what.
 */
#ifndef HLPTD_APP_H
#define HLPTD_APP_H

#include <stdint.h>

#include "blobs.h"
#include "hlpt/model.h"
#include "infer.h"
#include "jobs.h"
#include "store.h"

typedef struct hlptd hlptd;

/* Any thread: immutable after start-up. NULL while the model loads; kept through a shutdown's
 * drain, which generations in flight need. */
const hlpt_model *hlptd_model(hlptd *d);
/* Any thread: the base model's name (its directory's base name), what `model` names it by. */
const char *hlptd_model_name(hlptd *d);
/* Any thread: when the base model was made (Unix seconds; its config.json's modification time). */
int64_t hlptd_model_created(hlptd *d);
/* Any thread: the inference thread (NULL while the model loads, and once a shutdown began). */
hlptd_infer *hlptd_inference(hlptd *d);
/* Loop thread only: the inference thread while it runs, a shutdown's drain included, so that a
 * request handed to the loop before the drain began still runs (NULL while the model loads). */
hlptd_infer *hlptd_inference_running(hlptd *d);
/* Loop thread only. */
hlpt_store *hlptd_store(hlptd *d);
hlptd_jobs *hlptd_job_queue(hlptd *d);
/* Any thread: the artefact files under <data-dir>/blobs (blobs.h); uploads are written there as
 * they arrive. */
hlptd_blobs *hlptd_blob_store(hlptd *d);
/* Loop thread only: a read-only store connection for the inference thread's adapter fetches is
 * separate (see main.c). */

#endif
