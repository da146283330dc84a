/*
 * serving.h - what the generation handlers share with the metrics module (api/metrics.c).
 */
#ifndef HLPT_API_SERVING_H
#define HLPT_API_SERVING_H

/* Records one finished generation: endpoint ("completions", "chat"), adapter label ("base" or the
 * adapter's name), generated tokens, and its submitted / first token / done times (monotonic
 * seconds). Any thread. */
void api_metrics_request(const char *endpoint, const char *adapter, int tokens, double submitted_s,
                         double first_token_s, double done_s);

/* The exposition text of /metrics from the counters and the given live figures (returns owned,
 * *len bytes). */
#include <stddef.h>
#include "infer.h"
#include "jobs.h"
typedef struct {
    char id[64];
    hlptd_job_live live;
} api_job_figures;
char *api_metrics_render(const hlptd_infer_stats *is, const api_job_figures *jobs, int n_jobs, size_t *len);

#endif
