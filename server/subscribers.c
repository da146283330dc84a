/*
 * subscribers.c - see subscribers.h. A list of (job, stream, last event seen); a change reads the
 * job's events after the last one seen, in pages, and sends them. The store's event seq orders
 * them, so an event added while a page is being sent is picked up by the next change.
 */
#include "subscribers.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/err.h"

typedef struct subscriber {
    char job_id[HLPTD_ID_MAX];
    hlptd_sse *sse;
    hlptd_event_text text;
    int64_t seen; /* seq of the last event sent */
    struct subscriber *next;
} subscriber;

struct hlptd_subscribers {
    hlptd_store *st;
    subscriber *head;
};

int hlptd_subscribers_new(hlptd_store *st, hlptd_subscribers **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return HLPT_ERR_NOMEM;
    (*out)->st = st;
    return HLPT_OK;
}

void hlptd_subscribers_free(hlptd_subscribers *s) {
    if (!s) return;
    hlptd_subscribers_close_all(s);
    free(s);
}

/* Sends b the events after b->seen; returns 1 when the stream is over. */
static int feed(hlptd_subscribers *s, subscriber *b) {
    hlptd_job_event **ev = NULL;
    size_t n = 0;
    int more = 0;
    char why[128];
    do {
        if (hlptd_store_event_list(s->st, b->job_id, b->seen, 200, &ev, &n, &more, why, sizeof why)) return 1;
        for (size_t i = 0; i < n; i++) {
            char *text = b->text(ev[i]);
            int err = hlptd_sse_send(b->sse, NULL, text);
            free(text);
            b->seen = ev[i]->seq;
            if (err) {
                hlptd_job_event_list_free(ev, n);
                return 1;
            }
        }
        hlptd_job_event_list_free(ev, n);
    } while (more);
    hlptd_job *job = NULL;
    int over = hlptd_store_job_get(s->st, b->job_id, &job, why, sizeof why) != HLPT_OK ||
               hlptd_job_state_final(job->status);
    hlptd_job_free(job);
    if (over) hlptd_sse_send(b->sse, NULL, "[DONE]");
    return over;
}

static void end(subscriber *b) {
    hlptd_sse_close(b->sse);
    hlptd_sse_unref(b->sse);
    free(b);
}

void hlptd_subscribers_follow(hlptd_subscribers *s, hlptd_req *r, const char *job_id, hlptd_event_text text) {
    subscriber *b = calloc(1, sizeof *b);
    hlptd_sse *sse = b ? hlptd_req_stream(r) : NULL;
    if (!sse) {
        free(b);
        if (!b) hlptd_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    snprintf(b->job_id, sizeof b->job_id, "%s", job_id);
    b->sse = sse;
    b->text = text;
    if (feed(s, b)) {
        end(b);
        return;
    }
    b->next = s->head;
    s->head = b;
}

void hlptd_subscribers_changed(void *ctx, const char *job_id) {
    hlptd_subscribers *s = ctx;
    for (subscriber **l = &s->head; *l;) {
        subscriber *b = *l;
        if ((!job_id || !strcmp(b->job_id, job_id)) && feed(s, b)) {
            *l = b->next;
            end(b);
            continue;
        }
        l = &b->next;
    }
}

void hlptd_subscribers_close_all(hlptd_subscribers *s) {
    while (s->head) {
        subscriber *b = s->head;
        s->head = b->next;
        end(b);
    }
}
