/*
 * stats.c - see stats.h. The counters are one plain struct under one mutex: a generation adds one
 * row update when it ends, which is nothing next to the generation itself, and /metrics copies the
 * struct out rather than render under the lock.
 */
#include "stats.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/err.h"

const double hlptd_stats_bucket_le[HLPTD_STATS_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                           0.5,   1,    2.5,   5,    10,  30};

struct hlptd_stats {
    pthread_mutex_t mu;
    hlptd_stats_counts c; /* under mu */
};

int hlptd_stats_new(hlptd_stats **out) {
    *out = NULL;
    hlptd_stats *s = calloc(1, sizeof *s);
    if (!s) return HLPT_ERR_NOMEM;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return HLPT_ERR_INTERNAL;
    }
    snprintf(s->c.other.endpoint, sizeof s->c.other.endpoint, "other");
    snprintf(s->c.other.adapter, sizeof s->c.other.adapter, "other");
    *out = s;
    return HLPT_OK;
}

void hlptd_stats_free(hlptd_stats *s) {
    if (!s) return;
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void observe(hlptd_stats_hist *h, double v) {
    size_t i = 0;
    while (i < HLPTD_STATS_BUCKETS && v > hlptd_stats_bucket_le[i]) i++;
    h->count[i]++;
    h->sum += v;
    h->n++;
}

void hlptd_stats_request(hlptd_stats *s, const char *endpoint, const char *adapter, int tokens, double submitted_s,
                         double first_token_s, double done_s) {
    pthread_mutex_lock(&s->mu);
    hlptd_stats_counts *c = &s->c;
    hlptd_stats_series *e = NULL;
    for (int i = 0; i < c->n_series && !e; i++)
        if (!strncmp(c->series[i].endpoint, endpoint, sizeof c->series[i].endpoint - 1) &&
            !strncmp(c->series[i].adapter, adapter, sizeof c->series[i].adapter - 1))
            e = &c->series[i];
    if (!e && c->n_series < HLPTD_STATS_MAX_SERIES) {
        e = &c->series[c->n_series++];
        snprintf(e->endpoint, sizeof e->endpoint, "%s", endpoint);
        snprintf(e->adapter, sizeof e->adapter, "%s", adapter);
    }
    if (!e) e = &c->other;
    e->requests++;
    e->tokens += tokens;
    if (first_token_s > 0) observe(&c->ttft, first_token_s - submitted_s);
    if (tokens > 1 && done_s > first_token_s && first_token_s > 0)
        observe(&c->per_token, (done_s - first_token_s) / (tokens - 1));
    pthread_mutex_unlock(&s->mu);
}

void hlptd_stats_read(hlptd_stats *s, hlptd_stats_counts *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->c;
    pthread_mutex_unlock(&s->mu);
}
