/*
 * subscribers.h - job event streams: the `?stream=true` requests that follow a fine-tuning job's
 * events. The daemon owns one set (struct hlptd); the job queue's change callback feeds it, so
 * every stream gets each new event once, in order, and ends with `[DONE]` when its job has ended.
 *
 * Threads: the loop thread only (it owns the store the events are read from).
 */
#ifndef HLPTD_SUBSCRIBERS_H
#define HLPTD_SUBSCRIBERS_H

#include "http.h"
#include "store.h"

typedef struct hlptd_subscribers hlptd_subscribers;

/* One event as a stream's data (the REST shape is the handler's): returns owned text (free()), or
 * NULL when out of memory. */
typedef char *(*hlptd_event_text)(const hlptd_job_event *e);

/* Borrows st for the set's life. *out owned: hlptd_subscribers_free. HLPT_ERR_NOMEM. */
int hlptd_subscribers_new(hlptd_store *st, hlptd_subscribers **out);
/* Ends every stream still open, then frees the set. NULL is fine. */
void hlptd_subscribers_free(hlptd_subscribers *s);

/* Makes r's reply an event stream that follows job_id (borrowed): the job's events so far at once,
 * then each new one as the job changes, `[DONE]` once it has ended. text renders each event. On
 * failure r has a 500 reply. */
void hlptd_subscribers_follow(hlptd_subscribers *s, hlptd_req *r, const char *job_id, hlptd_event_text text);

/* A job changed (job_id NULL: any job): its streams get the events they have not seen, and end
 * when it has ended. The job queue's on_change callback: ctx is the hlptd_subscribers. */
void hlptd_subscribers_changed(void *ctx, const char *job_id);

/* At shutdown: ends every stream. */
void hlptd_subscribers_close_all(hlptd_subscribers *s);

#endif
