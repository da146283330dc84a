/*
 * queue.h - the fine-tuning job queue and its worker processes (DESIGN.md §3). Owned by the loop
 * thread.
 *
 * Not built yet: this is the place where the loop starts `hlptd --worker` processes for queued jobs
 * (uv_spawn with a pipe each), reads their JSON lines into the store, and checkpoints them at
 * shutdown. Until then hlpt_queue_kick only reports how many jobs wait; no job is ever moved to a
 * state it did not reach.
 */
#ifndef HLPTD_QUEUE_H
#define HLPTD_QUEUE_H

#include <stddef.h>
#include <uv.h>

#include "store.h"

typedef struct hlpt_queue hlpt_queue;

/* loop and store are borrowed and must outlive the queue. max_workers: concurrent jobs. */
int hlpt_queue_new(hlpt_queue **out, uv_loop_t *loop, hlpt_store *store, int max_workers, char *why, size_t len);
void hlpt_queue_free(hlpt_queue *q);

/* Starts workers for queued jobs while slots are free. Call after a job was queued or a worker
 * ended. */
void hlpt_queue_kick(hlpt_queue *q);

/* Shutdown: no new workers; running ones are asked to checkpoint and exit. Returns the number of
 * workers still running; call again (from a timer) until 0. */
int hlpt_queue_drain_step(hlpt_queue *q);

#endif
