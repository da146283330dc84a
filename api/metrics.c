/*
 * metrics.c - GET /metrics in the Prometheus text format (0.0.4): generation requests and tokens by
 * endpoint and adapter, time-to-first-token and per-token latency histograms, the live figures of
 * the inference thread and the job queue, and the node's: its leases, claims and heartbeats, its
 * store's round trips and the blobs it fetched (docs/design.md, "Many nodes"), each labelled with
 * the node's id so that the series of several nodes on one Prometheus stay apart.
 *
 * The counters are the daemon's (server/stats.h, server/jobs.h, server/store.h); this file only
 * renders them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "app.h"
#include "hlpt/err.h"
#include "serving.h"

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0 || t->oom) return;
    if (t->n + (size_t)k + 1 > t->cap) {
        size_t cap = (t->cap + (size_t)k + 1) * 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->p + t->n, t->cap - t->n, fmt, ap);
    va_end(ap);
    t->n += (size_t)k;
}

/* Label values escape backslash, quote and newline. */
static void label(text *t, const char *s) {
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') put(t, "\\%c", *s);
        else if (*s == '\n') put(t, "\\n");
        else put(t, "%c", *s);
    }
}

static void hist(text *t, const char *name, const char *help, const hlptd_stats_hist *h) {
    put(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    long cum = 0;
    for (size_t i = 0; i < HLPTD_STATS_BUCKETS; i++) {
        cum += h->count[i];
        put(t, "%s_bucket{le=\"%g\"} %ld\n", name, hlptd_stats_bucket_le[i], cum);
    }
    put(t, "%s_bucket{le=\"+Inf\"} %ld\n%s_sum %.6f\n%s_count %ld\n", name, h->n, name, h->sum, name, h->n);
}

char *hlptd_api_metrics_render(const hlptd_stats_counts *c, const hlptd_infer_stats *is, const hlptd_api_job_figures *jobs,
                         int n_jobs, const hlptd_api_node_figures *node, size_t *len) {
    text t = {0};
    const hlptd_stats_series *other = &c->other;
    put(&t, "# HELP hlpt_requests_total Generation requests finished, by endpoint and adapter.\n"
            "# TYPE hlpt_requests_total counter\n");
    for (int i = 0; i <= c->n_series; i++) {
        const hlptd_stats_series *e = i < c->n_series ? &c->series[i] : other;
        if (e == other && !other->requests) break;
        put(&t, "hlpt_requests_total{endpoint=\"%s\",adapter=\"", e->endpoint);
        label(&t, e->adapter);
        put(&t, "\"} %ld\n", e->requests);
    }
    put(&t, "# HELP hlpt_generated_tokens_total Tokens generated, by endpoint and adapter.\n"
            "# TYPE hlpt_generated_tokens_total counter\n");
    for (int i = 0; i <= c->n_series; i++) {
        const hlptd_stats_series *e = i < c->n_series ? &c->series[i] : other;
        if (e == other && !other->requests) break;
        put(&t, "hlpt_generated_tokens_total{endpoint=\"%s\",adapter=\"", e->endpoint);
        label(&t, e->adapter);
        put(&t, "\"} %ld\n", e->tokens);
    }
    hist(&t, "hlpt_time_to_first_token_seconds", "Time from a request's arrival at the inference thread to its first token.", &c->ttft);
    hist(&t, "hlpt_time_per_token_seconds", "Mean time between tokens after the first, per request.", &c->per_token);
    /* The inference thread's and the queue's figures: one table, one line each. */
    const struct {
        const char *name, *type, *help;
        double value;
    } figures[] = {
        {"hlpt_queue_depth", "gauge", "Generation requests waiting for a place in the batch.", is->queued},
        {"hlpt_active_sequences", "gauge", "Sequences in the running batch.", is->active},
        {"hlpt_batch_size", "gauge", "Sequences in the last decode step.", is->last_batch},
        {"hlpt_decode_steps_total", "counter", "Batched model steps run.", (double)is->steps},
        {"hlpt_prompt_tokens_total", "counter", "Prompt tokens prefilled.", (double)is->prompt_tokens},
        {"hlpt_adapters_resident", "gauge", "Adapters loaded in the cache.", is->adapters_resident},
        {"hlpt_adapter_bytes", "gauge", "Bytes of adapter parameters in the cache.", (double)is->adapter_bytes},
        {"hlpt_adapter_loads_total", "counter", "Adapters loaded into the cache.", (double)is->adapter_loads},
        {"hlpt_adapter_evictions_total", "counter", "Adapters dropped from the cache.", (double)is->adapter_evictions},
        {"hlpt_running_jobs", "gauge", "Fine-tuning jobs running.", n_jobs},
    };
    for (size_t i = 0; i < sizeof figures / sizeof *figures; i++)
        put(&t, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", figures[i].name, figures[i].help, figures[i].name,
            figures[i].type, figures[i].name, figures[i].value);
    const char *names[3] = {"hlpt_job_train_loss", "hlpt_job_tokens_per_second", "hlpt_job_step"};
    const char *helps[3] = {"Latest training loss of a running job.", "Training tokens per second of a running job.",
                            "Optimizer steps done by a running job."};
    for (int k = 0; k < 3; k++) {
        put(&t, "# HELP %s %s\n# TYPE %s gauge\n", names[k], helps[k], names[k]);
        for (int i = 0; i < n_jobs; i++) {
            const hlptd_job_live *l = &jobs[i].live;
            double v = k == 0 ? l->train_loss : k == 1 ? l->tokens_per_s : l->step;
            if (l->step > 0) put(&t, "%s{job=\"%s\"} %g\n", names[k], jobs[i].id, v);
        }
    }
    put(&t, "# HELP hlpt_node_info This node: its id and where it answers.\n# TYPE hlpt_node_info gauge\n"
            "hlpt_node_info{node=\"");
    label(&t, node->id);
    put(&t, "\",url=\"");
    label(&t, node->url);
    put(&t, "\"} 1\n");
    const hlptd_jobs_counts *jc = &node->jobs;
    const struct {
        const char *name, *type, *help;
        double value;
    } per_node[] = {
        {"hlpt_leases_held", "gauge", "Jobs this node runs, each under a lease.", node->leases_held},
        {"hlpt_job_claims_total", "counter", "Jobs this node claimed.", (double)jc->claims},
        {"hlpt_job_takeovers_total", "counter", "Claims of a job whose node's lease had expired.",
         (double)jc->takeovers},
        {"hlpt_heartbeats_total", "counter", "Heartbeats that reached the store (each renews the node's leases).",
         (double)jc->beats},
        {"hlpt_heartbeat_failures_total", "counter", "Heartbeats the store did not answer.", (double)jc->beats_failed},
        {"hlpt_leases_lost_total", "counter",
         "Workers stopped because another node claimed their job or the store was away.", (double)jc->leases_lost},
        {"hlpt_store_round_trips_total", "counter",
         "Requests answered by the database server on the loop's connection.",
         (double)node->store_round_trips},
        {"hlpt_blob_fetches_total", "counter", "Blobs fetched from the database into this node's blobs folder.",
         (double)node->blob_fetches},
        {"hlpt_blob_fetched_bytes_total", "counter", "Bytes of the blobs fetched from the database.",
         (double)node->blob_fetched_bytes},
        {"hlpt_blob_fetch_seconds_total", "counter", "Seconds spent fetching blobs from the database.",
         node->blob_fetch_seconds},
    };
    for (size_t i = 0; i < sizeof per_node / sizeof *per_node; i++) {
        put(&t, "# HELP %s %s\n# TYPE %s %s\n%s{node=\"", per_node[i].name, per_node[i].help, per_node[i].name,
            per_node[i].type, per_node[i].name);
        label(&t, node->id);
        put(&t, "\"} %.17g\n", per_node[i].value);
    }
    if (t.oom) {
        free(t.p);
        return NULL;
    }
    *len = t.n;
    return t.p;
}

typedef struct {
    hlptd_api_job_figures *v;
    int n, cap;
} job_list;

static void collect(void *ctx, const char *id, const hlptd_job_live *live) {
    job_list *l = ctx;
    if (l->n == l->cap) return;
    snprintf(l->v[l->n].id, sizeof l->v[l->n].id, "%s", id);
    l->v[l->n++].live = *live;
}

static void metrics_work(void *app, hlptd_req *r) {
    hlptd *d = app;
    hlptd_infer_stats is = {0};
    if (hlptd_inference(d)) hlptd_infer_get_stats(hlptd_inference(d), &is);
    hlptd_api_job_figures figs[64];
    job_list jl = {figs, 0, 64};
    if (hlptd_job_queue(d)) hlptd_jobs_each_live(hlptd_job_queue(d), collect, &jl);
    hlptd_api_node_figures node = {.id = hlptd_node_id(d), .url = hlptd_node_url(d),
                                   .store_round_trips = hlptd_store_round_trips(hlptd_store_of(d))};
    /* No job queue while the model loads: no claims or heartbeats yet. */
    if (hlptd_job_queue(d)) {
        node.leases_held = hlptd_jobs_running(hlptd_job_queue(d));
        hlptd_jobs_counts_get(hlptd_job_queue(d), &node.jobs);
    }
    hlptd_store_blob_fetch_counts(&node.blob_fetches, &node.blob_fetched_bytes, &node.blob_fetch_seconds);
    hlptd_stats_counts *counts = malloc(sizeof *counts);
    size_t n;
    if (counts) hlptd_stats_read(hlptd_serving_stats(d), counts);
    char *body = counts ? hlptd_api_metrics_render(counts, &is, figs, jl.n, &node, &n) : NULL;
    free(counts);
    if (!body) hlptd_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
    else hlptd_reply_bytes(r, 200, "text/plain; version=0.0.4; charset=utf-8", body, n);
}

void hlptd_api_metrics(hlptd_req *r) { hlptd_req_defer(r, metrics_work); }
