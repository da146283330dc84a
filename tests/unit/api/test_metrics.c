/*
 * /metrics rendering of the daemon's serving counters (server/stats.h): the exposition text parses as Prometheus text format 0.0.4 (every sample
 * after its family's HELP and TYPE, label values escaped), counters add up per endpoint and adapter,
 * histograms are cumulative with +Inf equal to the count, and the live figures of the inference
 * thread, of running jobs and of the node come out as given, the node's labelled with its id.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../check_main.h"
#include "serving.h"

typedef struct {
    char name[128];
    char labels[256]; /* raw text between the braces, "" when none */
    double value;
} sample;

/* Parses the text strictly enough to catch format slips; returns the number of samples. */
static int parse_exposition(const char *text, size_t n, sample *out, int max) {
    char typed[64][128];
    int n_typed = 0, k = 0;
    const char *p = text, *end = text + n;
    ck_assert_msg(n > 0 && text[n - 1] == '\n', "the text must end with a newline");
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        ck_assert_ptr_nonnull(nl);
        char line[512];
        size_t len = (size_t)(nl - p);
        ck_assert_uint_lt(len, sizeof line);
        memcpy(line, p, len);
        line[len] = 0;
        p = nl + 1;
        if (!strncmp(line, "# HELP ", 7)) continue;
        if (!strncmp(line, "# TYPE ", 7)) {
            char name[128], type[32];
            ck_assert_int_eq(sscanf(line + 7, "%127s %31s", name, type), 2);
            ck_assert_msg(!strcmp(type, "counter") || !strcmp(type, "gauge") || !strcmp(type, "histogram"), "type %s", type);
            ck_assert_int_lt(n_typed, 64);
            snprintf(typed[n_typed++], sizeof typed[0], "%s", name);
            continue;
        }
        ck_assert_msg(line[0] != '#' && line[0], "unexpected line `%s`", line);
        ck_assert_int_lt(k, max);
        sample *s = &out[k++];
        size_t i = strspn(line, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:");
        ck_assert_msg(i > 0 && i < sizeof s->name, "bad metric name in `%s`", line);
        memcpy(s->name, line, i);
        s->name[i] = 0;
        s->labels[0] = 0;
        const char *q = line + i;
        if (*q == '{') {
            /* Label values: quoted, with \\, \" and \n escapes only. */
            const char *r = q + 1;
            int in_str = 0;
            for (; *r && (in_str || *r != '}'); r++) {
                if (in_str && *r == '\\') {
                    ck_assert_msg(r[1] == '\\' || r[1] == '"' || r[1] == 'n', "bad escape in `%s`", line);
                    r++;
                } else if (*r == '"') {
                    in_str = !in_str;
                }
            }
            ck_assert_msg(*r == '}', "unclosed labels in `%s`", line);
            snprintf(s->labels, sizeof s->labels, "%.*s", (int)(r - q - 1), q + 1);
            q = r + 1;
        }
        ck_assert_msg(*q == ' ', "no space before the value in `%s`", line);
        char *e;
        s->value = strtod(q + 1, &e);
        ck_assert_msg(e != q + 1 && *e == 0, "bad value in `%s`", line);
        /* The family (name less _bucket/_sum/_count for histograms) was typed before. */
        int found = 0;
        for (int t = 0; t < n_typed && !found; t++) {
            size_t tl = strlen(typed[t]);
            found = !strcmp(s->name, typed[t]) ||
                    (!strncmp(s->name, typed[t], tl) &&
                     (!strcmp(s->name + tl, "_bucket") || !strcmp(s->name + tl, "_sum") || !strcmp(s->name + tl, "_count")));
        }
        ck_assert_msg(found, "sample %s comes before its # TYPE", s->name);
    }
    return k;
}

static double value_of(const sample *s, int n, const char *name, const char *labels) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s[i].name, name) && !strcmp(s[i].labels, labels ? labels : "")) return s[i].value;
    ck_abort_msg("no sample %s{%s}", name, labels ? labels : "");
    return NAN;
}

static void check_histogram(const sample *s, int n, const char *name, const double *want_cum, int n_want, double sum) {
    char bname[160], cname[160], sname[160];
    snprintf(bname, sizeof bname, "%s_bucket", name);
    snprintf(cname, sizeof cname, "%s_count", name);
    snprintf(sname, sizeof sname, "%s_sum", name);
    double prev = 0, count = value_of(s, n, cname, NULL);
    int buckets = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(s[i].name, bname)) continue;
        ck_assert_msg(s[i].value >= prev, "%s buckets not cumulative at {%s}", name, s[i].labels);
        prev = s[i].value;
        buckets++;
    }
    ck_assert_int_gt(buckets, 1);
    ck_assert_double_eq(value_of(s, n, bname, "le=\"+Inf\""), count);
    for (int i = 0; i + 1 < n_want; i += 2) {
        char le[64];
        snprintf(le, sizeof le, "le=\"%g\"", want_cum[i]);
        ck_assert_msg(value_of(s, n, bname, le) == want_cum[i + 1], "%s{%s} = %g, wanted %g", bname, le,
                      value_of(s, n, bname, le), want_cum[i + 1]);
    }
    ck_assert_double_eq_tol(value_of(s, n, sname, NULL), sum, 1e-5);
}

START_TEST(test_render) {
    /* time to first token: 3 ms, 200 ms, 40 s, 0.5 s; per token: (10.2 - 10.003) / 4 = 49 ms,
     * (1.0 - 0.2) / 4 = 0.2 s, (144 - 140) / 1 = 4 s. */
    hlptd_stats *st;
    ck_assert_int_eq(hlptd_stats_new(&st), 0);
    hlptd_stats_request(st, "completions", "base", 5, 10.0, 10.003, 10.2);
    hlptd_stats_request(st, "completions", "base", 5, 0.0, 0.2, 1.0);
    hlptd_stats_request(st, "chat", "ft:m:x", 2, 100.0, 140.0, 144.0);
    hlptd_stats_request(st, "chat", "a\"b\\c", 1, 1.0, 1.5, 1.5); /* one token: no per-token figure */
    hlptd_stats_request(st, "chat", "none", 0, 1.0, 0, 2.0);      /* no token at all: no first-token figure */
    static hlptd_stats_counts counts;
    hlptd_stats_read(st, &counts);
    hlptd_stats_free(st);
    hlptd_infer_stats is = {.queued = 3, .active = 2, .steps = 77, .tokens_generated = 13, .prompt_tokens = 40,
                            .adapters_resident = 2, .adapter_bytes = 123456, .adapter_loads = 5,
                            .adapter_evictions = 3, .last_batch = 2};
    /* Two running jobs; the second has not reported a step yet, so it has no figures. */
    hlptd_api_job_figures jobs[2];
    memset(jobs, 0, sizeof jobs);
    snprintf(jobs[0].id, sizeof jobs[0].id, "ftjob-a");
    jobs[0].live.train_loss = 1.25;
    jobs[0].live.tokens_per_s = 900;
    jobs[0].live.step = 12;
    snprintf(jobs[1].id, sizeof jobs[1].id, "ftjob-b");
    hlptd_api_node_figures node = {.id = "node-a", .url = "http://a:8080", .leases_held = 2,
                                   .jobs = {.claims = 7, .takeovers = 2, .beats = 41, .beats_failed = 3,
                                            .leases_lost = 1},
                                   .store_round_trips = 1234567, .blob_fetches = 4, .blob_fetched_bytes = 5000000000L,
                                   .blob_fetch_seconds = 2.5};
    size_t len = 0;
    char *text = hlptd_api_metrics_render(&counts, &is, jobs, 2, &node, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(strlen(text), len);
    static sample s[512];
    int n = parse_exposition(text, len, s, 512);

    ck_assert_double_eq(value_of(s, n, "hlpt_requests_total", "endpoint=\"completions\",adapter=\"base\""), 2);
    ck_assert_double_eq(value_of(s, n, "hlpt_generated_tokens_total", "endpoint=\"completions\",adapter=\"base\""), 10);
    ck_assert_double_eq(value_of(s, n, "hlpt_requests_total", "endpoint=\"chat\",adapter=\"ft:m:x\""), 1);
    ck_assert_double_eq(value_of(s, n, "hlpt_generated_tokens_total", "endpoint=\"chat\",adapter=\"ft:m:x\""), 2);
    ck_assert_double_eq(value_of(s, n, "hlpt_requests_total", "endpoint=\"chat\",adapter=\"a\\\"b\\\\c\""), 1);

    const double ttft[] = {0.005, 1, 0.1, 1, 0.25, 2, 30, 3};
    check_histogram(s, n, "hlpt_time_to_first_token_seconds", ttft, 8, 0.003 + 0.2 + 40.0 + 0.5);
    ck_assert_double_eq(value_of(s, n, "hlpt_time_to_first_token_seconds_count", NULL), 4);
    const double tpt[] = {0.025, 0, 0.05, 1, 0.1, 1, 0.25, 2, 2.5, 2, 5, 3};
    check_histogram(s, n, "hlpt_time_per_token_seconds", tpt, 12, (10.2 - 10.003) / 4 + (1.0 - 0.2) / 4 + 4.0);
    ck_assert_double_eq(value_of(s, n, "hlpt_time_per_token_seconds_count", NULL), 3);

    ck_assert_double_eq(value_of(s, n, "hlpt_queue_depth", NULL), 3);
    ck_assert_double_eq(value_of(s, n, "hlpt_active_sequences", NULL), 2);
    ck_assert_double_eq(value_of(s, n, "hlpt_batch_size", NULL), 2);
    ck_assert_double_eq(value_of(s, n, "hlpt_decode_steps_total", NULL), 77);
    ck_assert_double_eq(value_of(s, n, "hlpt_prompt_tokens_total", NULL), 40);
    ck_assert_double_eq(value_of(s, n, "hlpt_adapters_resident", NULL), 2);
    ck_assert_double_eq(value_of(s, n, "hlpt_adapter_bytes", NULL), 123456);
    ck_assert_double_eq(value_of(s, n, "hlpt_adapter_loads_total", NULL), 5);
    ck_assert_double_eq(value_of(s, n, "hlpt_adapter_evictions_total", NULL), 3);
    ck_assert_double_eq(value_of(s, n, "hlpt_running_jobs", NULL), 2);
    ck_assert_double_eq(value_of(s, n, "hlpt_job_train_loss", "job=\"ftjob-a\""), 1.25);
    ck_assert_double_eq(value_of(s, n, "hlpt_job_tokens_per_second", "job=\"ftjob-a\""), 900);
    ck_assert_double_eq(value_of(s, n, "hlpt_job_step", "job=\"ftjob-a\""), 12);
    for (int i = 0; i < n; i++) ck_assert_msg(!strstr(s[i].labels, "ftjob-b"), "%s{%s}", s[i].name, s[i].labels);

    ck_assert_double_eq(value_of(s, n, "hlpt_node_info", "node=\"node-a\",url=\"http://a:8080\""), 1);
    const char *a = "node=\"node-a\"";
    ck_assert_double_eq(value_of(s, n, "hlpt_leases_held", a), 2);
    ck_assert_double_eq(value_of(s, n, "hlpt_job_claims_total", a), 7);
    ck_assert_double_eq(value_of(s, n, "hlpt_job_takeovers_total", a), 2);
    ck_assert_double_eq(value_of(s, n, "hlpt_heartbeats_total", a), 41);
    ck_assert_double_eq(value_of(s, n, "hlpt_heartbeat_failures_total", a), 3);
    ck_assert_double_eq(value_of(s, n, "hlpt_leases_lost_total", a), 1);
    ck_assert_double_eq(value_of(s, n, "hlpt_store_round_trips_total", a), 1234567);
    ck_assert_double_eq(value_of(s, n, "hlpt_blob_fetches_total", a), 4);
    ck_assert_double_eq(value_of(s, n, "hlpt_blob_fetched_bytes_total", a), 5000000000.0);
    ck_assert_double_eq(value_of(s, n, "hlpt_blob_fetch_seconds_total", a), 2.5);
    /* Each node family has its HELP and TYPE once, and one sample. */
    ck_assert_ptr_nonnull(strstr(text, "# TYPE hlpt_leases_held gauge\n"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE hlpt_job_claims_total counter\n"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE hlpt_node_info gauge\n"));
    int claims = 0;
    for (int i = 0; i < n; i++) claims += !strcmp(s[i].name, "hlpt_job_claims_total");
    ck_assert_int_eq(claims, 1);
    free(text);
}
END_TEST

/* A node id and URL are free text: quotes, backslashes and newlines in them are escaped. */
START_TEST(test_node_labels_escaped) {
    static hlptd_stats_counts counts;
    hlptd_infer_stats is = {0};
    hlptd_api_node_figures node = {.id = "rack \"7\"\\b\nc", .url = "http://h:1/\"x\"", .jobs = {.claims = 3}};
    size_t len;
    char *text = hlptd_api_metrics_render(&counts, &is, NULL, 0, &node, &len);
    ck_assert_ptr_nonnull(text);
    static sample s[512];
    int n = parse_exposition(text, len, s, 512);
    const char *id = "node=\"rack \\\"7\\\"\\\\b\\nc\"";
    ck_assert_double_eq(value_of(s, n, "hlpt_job_claims_total", id), 3);
    ck_assert_double_eq(value_of(s, n, "hlpt_leases_held", id), 0);
    char info[256];
    snprintf(info, sizeof info, "%s,url=\"http://h:1/\\\"x\\\"\"", id);
    ck_assert_double_eq(value_of(s, n, "hlpt_node_info", info), 1);
    free(text);
}
END_TEST

/* Adapters come and go; past a bound, their requests still count, under adapter="other". */
START_TEST(test_bounded_series) {
    char name[32];
    hlptd_stats *st;
    ck_assert_int_eq(hlptd_stats_new(&st), 0);
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "ad%d", i);
        hlptd_stats_request(st, "completions", name, 1, 0, 0.001, 0.001);
    }
    static hlptd_stats_counts counts;
    hlptd_stats_read(st, &counts);
    hlptd_stats_free(st);
    hlptd_infer_stats is = {0};
    hlptd_api_node_figures node = {.id = "n", .url = "http://n"};
    size_t len;
    char *text = hlptd_api_metrics_render(&counts, &is, NULL, 0, &node, &len);
    ck_assert_ptr_nonnull(text);
    static sample s[2048];
    int n = parse_exposition(text, len, s, 2048);
    double total = 0;
    int series = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(s[i].name, "hlpt_requests_total")) total += s[i].value, series++;
    ck_assert_double_eq(total, 300);
    ck_assert_int_le(series, 257);
    ck_assert_double_gt(value_of(s, n, "hlpt_requests_total", "endpoint=\"other\",adapter=\"other\""), 0);
    free(text);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("api_metrics");
    TCase *tc = tcase_create("core");
    /* Each test runs in its own process (Check's fork mode), so each starts from empty counters. */
    tcase_add_test(tc, test_render);
    tcase_add_test(tc, test_bounded_series);
    tcase_add_test(tc, test_node_labels_escaped);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
