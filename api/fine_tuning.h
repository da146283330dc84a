/*
 * fine_tuning.h - the fine-tuning REST API (api/jobs.c) and its loss plot (api/plot.c).
 */
#ifndef HLPT_API_FINE_TUNING_H
#define HLPT_API_FINE_TUNING_H

#include <stddef.h>

#include "http.h"
#include "store.h"

typedef struct hlptd hlptd;

/* Loop thread: a job changed (NULL: any); feeds its event streams and ends those of finished jobs.
 * The job queue's on_change callback. */
void api_jobs_changed(hlptd *d, const char *job_id);
/* Loop thread, at shutdown: ends every event stream. */
void api_jobs_close_streams(void);

/* An SVG plot of train and validation loss against step (returns owned, *len bytes). */
int api_loss_svg(const char *title, const hlpt_metric *rows, size_t n, char **svg, size_t *len);

#endif
