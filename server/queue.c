/*
 * queue.c - see queue.h. A stub with the final interface: the worker processes land here.
 */
#include "queue.h"

#include <stdlib.h>

#include "hlpt/err.h"
#include "log.h"

struct hlpt_queue {
    uv_loop_t *loop;
    hlpt_store *store;
    int max_workers;
    int running; /* worker processes alive */
    int draining;
};

int hlpt_queue_new(hlpt_queue **out, uv_loop_t *loop, hlpt_store *store, int max_workers, char *why, size_t len) {
    *out = NULL;
    hlpt_queue *q = calloc(1, sizeof *q);
    if (!q) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    q->loop = loop;
    q->store = store;
    q->max_workers = max_workers;
    *out = q;
    return HLPT_OK;
}

void hlpt_queue_free(hlpt_queue *q) { free(q); }

void hlpt_queue_kick(hlpt_queue *q) {
    if (q->draining) return;
    char why[256];
    char **ids = NULL;
    size_t n = 0;
    if (hlpt_store_job_ids_with_status(q->store, "queued", &ids, &n, why, sizeof why) == HLPT_OK && n)
        hlpt_info("%zu fine-tuning job(s) queued; training workers are not available in this build", n);
    hlpt_store_ids_free(ids, n);
}

int hlpt_queue_drain_step(hlpt_queue *q) {
    q->draining = 1;
    return q->running;
}
