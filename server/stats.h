/*
 * stats.h - the serving counters behind GET /metrics: generation requests and tokens by endpoint
 * and adapter, and the time-to-first-token and per-token latency histograms. The daemon owns one
 * (struct hlptd); the generation handlers add to it when a request ends and the /metrics handler
 * reads a copy (api/metrics.c renders it).
 *
 * Threads: every function may be called from any thread; the counters sit under one mutex, taken
 * once per finished generation.
 */
#ifndef HLPTD_STATS_H
#define HLPTD_STATS_H

#include <stddef.h>

#define HLPTD_STATS_MAX_SERIES 256 /* endpoint × adapter pairs counted on their own */
#define HLPTD_STATS_BUCKETS 12     /* histogram buckets (hlptd_stats_bucket_le), +Inf not counted */

/* The upper bounds of the histogram buckets, in seconds. */
extern const double hlptd_stats_bucket_le[HLPTD_STATS_BUCKETS];

typedef struct {
    char endpoint[16];         /* "completions", "chat", "responses" */
    char adapter[128];         /* "base" or the adapter's name */
    long requests, tokens;
} hlptd_stats_series;

typedef struct {
    long count[HLPTD_STATS_BUCKETS + 1]; /* per bucket (not cumulative); the last is beyond every bound */
    double sum;                          /* seconds */
    long n;
} hlptd_stats_hist;

/* A copy of every counter. */
typedef struct {
    hlptd_stats_series series[HLPTD_STATS_MAX_SERIES];
    int n_series;
    hlptd_stats_series other;  /* requests past HLPTD_STATS_MAX_SERIES pairs (adapters come and go) */
    hlptd_stats_hist ttft;     /* time from submission to the first token */
    hlptd_stats_hist per_token;/* mean time between tokens after the first, per request */
} hlptd_stats_counts;

typedef struct hlptd_stats hlptd_stats;

/* *out owned: hlptd_stats_free. HLPT_ERR_NOMEM. */
int hlptd_stats_new(hlptd_stats **out);
void hlptd_stats_free(hlptd_stats *s);

/* Records one finished generation: endpoint and adapter label (borrowed; cut to their fields'
 * sizes), the tokens generated, and its submitted / first token / done times (monotonic seconds;
 * first_token_s 0 = none). Any thread. */
void hlptd_stats_request(hlptd_stats *s, const char *endpoint, const char *adapter, int tokens, double submitted_s,
                         double first_token_s, double done_s);

/* Copies every counter into *out (caller storage; about 40 kB). Any thread. */
void hlptd_stats_read(hlptd_stats *s, hlptd_stats_counts *out);

#endif
