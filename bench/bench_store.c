/*
 * bench_store.c - what a cluster of hlptd nodes asks of its PostgreSQL store (docs/cluster.md),
 * measured through the store's own code (server/store.h) against a real server:
 *
 *   claims      jobs claimed per second by N nodes at once (each a process with its own
 *               connection, as nodes are), every claim followed by the job's end, as a node's
 *               worker would write it; and the round trips each claim takes;
 *   reports     a training step's report (metric row, progress and lease, event: one pipeline),
 *               its round trips, latency and rate from one node;
 *   heartbeat   a node's heartbeat (its row and its leases), round trips and latency;
 *   cache miss  a blob of --blob-mb MB (an adapter's weights) fetched from the database into a
 *               node's empty cache folder and checked, the median of --repeat fetches.
 *
 * Beside them, the ceilings measured in the same run over the same connection: the latency of a
 * bare `SELECT 1` round trip, and the time to read the blob's chunks raw (libpq, no decoding,
 * writing or hashing).
 *
 *   bench_store --store postgresql:///db?host=/tmp/x [--nodes 3] [--jobs 3000] [--steps 2000]
 *               [--blob-mb 10] [--repeat 5]
 *
 * The database must exist and should be empty (bench/store.sh makes a throwaway server). Talks
 * only to the server the URL names.
 */
#include <libpq-fe.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "blobs.h"
#include "hlpt/err.h"
#include "store.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *why) {
    fprintf(stderr, "bench_store: %s: %s\n", what, why);
    exit(1);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A store over a blobs folder of its own (each node has one). */
static hlptd_store *open_store(const char *url, const char *dir, hlptd_blobs **blobs) {
    char why[512];
    mkdir(dir, 0700);
    if (hlptd_blobs_open(dir, 1, blobs, why, sizeof why)) die("blobs", why);
    hlptd_store *st;
    if (hlptd_store_open(&st, url, *blobs, why, sizeof why)) die("open", why);
    return st;
}

/* One node: claims until nothing is left, ending each job as its worker would; writes
 * "claims round_trips" to fd. */
static void claimer(const char *url, const char *dir, int me, int fd) {
    hlptd_blobs *blobs;
    hlptd_store *st = open_store(url, dir, &blobs);
    char node[32], why[512];
    snprintf(node, sizeof node, "bench-node-%d", me);
    long claims = 0;
    int64_t rt0 = hlptd_store_round_trips(st);
    for (;;) {
        hlptd_job *j = NULL;
        if (hlptd_store_job_claim(st, node, 60000, &j, NULL, why, sizeof why)) die("claim", why);
        if (!j) break;
        hlptd_hold h = {node, j->lease_epoch};
        if (hlptd_store_job_set_status_owned(st, j->id, &h, HLPTD_JOB_SUCCEEDED, NULL, why, sizeof why))
            die("end", why);
        hlptd_job_free(j);
        claims++;
    }
    char line[64];
    int n = snprintf(line, sizeof line, "%ld %lld\n", claims, (long long)(hlptd_store_round_trips(st) - rt0));
    if (write(fd, line, (size_t)n) != n) die("pipe", "short write");
    hlptd_store_close(st);
    hlptd_blobs_close(blobs);
}

static double select1_ms(PGconn *c, int n) {
    double t0 = now_s();
    for (int i = 0; i < n; i++) PQclear(PQexec(c, "SELECT 1"));
    return (now_s() - t0) * 1e3 / n;
}

int main(int argc, char **argv) {
    const char *url = NULL;
    int nodes = 3, jobs = 3000, steps = 2000, blob_mb = 10, repeat = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--store") && i + 1 < argc) url = argv[++i];
        else if (!strcmp(argv[i], "--nodes") && i + 1 < argc) nodes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--jobs") && i + 1 < argc) jobs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--blob-mb") && i + 1 < argc) blob_mb = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_store --store URL [--nodes N] [--jobs N] [--steps N] [--blob-mb N] [--repeat N]\n");
            return 2;
        }
    }
    if (!url || nodes < 1 || nodes > 64 || jobs < 1 || steps < 1 || blob_mb < 1 || repeat < 1) {
        fprintf(stderr, "bench_store: --store URL is required; counts must be positive\n");
        return 2;
    }
    char root[] = "/tmp/hlpt-bench-store-XXXXXX", dir[600], why[512];
    if (!mkdtemp(root)) die("mkdtemp", "failed");
    snprintf(dir, sizeof dir, "%s/node-0", root);
    hlptd_blobs *blobs;
    hlptd_store *st = open_store(url, dir, &blobs);
    PGconn *raw = PQconnectdb(url);
    if (PQstatus(raw) != CONNECTION_OK) die("connect", PQerrorMessage(raw));
    printf("ceiling: SELECT 1 round trip %.3f ms\n", select1_ms(raw, 2000));

    /* ---- claims ---- */
    char fid[HLPTD_ID_MAX], sha[HLPT_SHA256_HEX];
    if (hlptd_blob_put(blobs, "{\"text\":\"x\"}\n", 13, sha, why, sizeof why)) die("blob", why);
    hlptd_file *f;
    if (hlptd_store_file_insert(st, "bench.jsonl", "fine-tune", "processed", sha, 13, NULL, 1, NULL, &f, why, sizeof why))
        die("file", why);
    snprintf(fid, sizeof fid, "%s", f->id);
    hlptd_file_free(f);
    hlptd_job_fields jf = {.status = HLPTD_JOB_QUEUED, .model = "bench", .training_file = fid, .method = "{}",
                           .hyperparameters = "{}", .seed = 1};
    if (hlptd_store_begin(st, why, sizeof why)) die("begin", why);
    for (int i = 0; i < jobs; i++)
        if (hlptd_store_job_insert(st, &jf, NULL, why, sizeof why)) die("job", why);
    if (hlptd_store_commit(st, why, sizeof why)) die("commit", why);
    int pipefd[2];
    if (pipe(pipefd)) die("pipe", "failed");
    double t0 = now_s();
    for (int i = 0; i < nodes; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            char d[600];
            snprintf(d, sizeof d, "%s/claimer-%d", root, i);
            claimer(url, d, i, pipefd[1]);
            _exit(0);
        }
    }
    close(pipefd[1]);
    int ok = 1;
    for (int i = 0; i < nodes; i++) {
        int status;
        wait(&status);
        ok &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    double dt = now_s() - t0;
    long claimed = 0, trips = 0, c, r;
    FILE *in = fdopen(pipefd[0], "r");
    while (in && fscanf(in, "%ld %ld", &c, &r) == 2) claimed += c, trips += r;
    if (in) fclose(in);
    if (!ok || claimed != jobs) {
        fprintf(stderr, "bench_store: %ld of %d jobs claimed%s\n", claimed, jobs, ok ? "" : "; a node failed");
        return 1;
    }
    printf("claims: %d nodes claimed %d jobs (each claimed once) in %.2f s: %.0f claims/s, %.1f round trips per "
           "claim and end\n",
           nodes, jobs, dt, jobs / dt, (double)trips / jobs);

    /* ---- reports: one job, many steps ---- */
    hlptd_job *j;
    if (hlptd_store_job_insert(st, &jf, &j, why, sizeof why)) die("job", why);
    hlptd_job_free(j);
    if (hlptd_store_job_claim(st, "bench-reporter", 60000, &j, NULL, why, sizeof why) || !j) die("claim", why);
    hlptd_hold h = {"bench-reporter", j->lease_epoch};
    double *lat = malloc(sizeof(double) * (size_t)steps);
    int64_t rt0 = hlptd_store_round_trips(st);
    t0 = now_s();
    for (int s = 1; s <= steps; s++) {
        hlptd_metric m = {.step = s, .train_loss = 1.0 / s, .valid_loss = s % 50 ? NAN : 0.5, .valid_acc = NAN,
                          .lr = 1e-3, .tokens_per_s = 1000};
        double t = now_s();
        if (hlptd_store_job_report(st, j->id, &h, &m, steps, (double)s / steps, "info", "Step", "{\"step\":0}",
                                  why, sizeof why))
            die("report", why);
        lat[s - 1] = (now_s() - t) * 1e3;
    }
    dt = now_s() - t0;
    qsort(lat, (size_t)steps, sizeof *lat, cmp_double);
    printf("reports: %d steps, %.2f round trips per step, %.0f steps/s from one node, latency median %.3f ms, p99 "
           "%.3f ms\n",
           steps, (double)(hlptd_store_round_trips(st) - rt0) / steps, steps / dt, lat[steps / 2],
           lat[steps * 99 / 100]);
    free(lat);

    /* ---- heartbeats ---- */
    hlptd_node_fields self = {.id = "bench-reporter", .url = "http://bench", .pid = getpid(), .workers = 4,
                              .running = 1, .state = "up", .lease_ms = 15000, .started_at = time(NULL)};
    rt0 = hlptd_store_round_trips(st);
    t0 = now_s();
    int beats = 500;
    for (int i = 0; i < beats; i++) {
        hlptd_lease **held;
        size_t n;
        if (hlptd_store_node_beat(st, &self, &held, &n, why, sizeof why) || n != 1) die("beat", why);
        hlptd_lease_list_free(held, n);
    }
    dt = now_s() - t0;
    printf("heartbeat: %.2f round trips, %.3f ms each (its row and its leases)\n",
           (double)(hlptd_store_round_trips(st) - rt0) / beats, dt * 1e3 / beats);
    hlptd_job_free(j);

    /* ---- cache miss of a blob of blob_mb MB ---- */
    size_t bytes = (size_t)blob_mb << 20;
    unsigned char *p = malloc(bytes);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < bytes; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = (unsigned char)x;
    }
    char bsha[HLPT_SHA256_HEX];
    if (hlptd_blob_put(blobs, p, bytes, bsha, why, sizeof why)) die("blob", why);
    free(p);
    /* A file row names it: that copies it into the database, as an adapter's weights are. */
    if (hlptd_store_file_insert(st, "weights.bin", "fine-tune", "processed", bsha, (int64_t)bytes, NULL, 1, NULL, NULL,
                               why, sizeof why))
        die("file", why);
    snprintf(dir, sizeof dir, "%s/cold", root);
    hlptd_blobs *cold;
    hlptd_store *other = open_store(url, dir, &cold);
    double *miss = malloc(sizeof(double) * (size_t)repeat), *rawt = malloc(sizeof(double) * (size_t)repeat);
    char q[256];
    snprintf(q, sizeof q, "SELECT data FROM blob_chunks WHERE sha256 = '%s' ORDER BY n", bsha);
    for (int i = 0; i < repeat; i++) {
        char path[4200];
        hlptd_blob_path(cold, bsha, path, sizeof path);
        unlink(path);
        double t = now_s();
        if (hlptd_store_blob_local(other, bsha, 0, why, sizeof why)) die("fetch", why);
        miss[i] = (now_s() - t) * 1e3;
        t = now_s();
        PGresult *res = PQexec(raw, q);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) die("raw read", PQerrorMessage(raw));
        PQclear(res);
        rawt[i] = (now_s() - t) * 1e3;
    }
    qsort(miss, (size_t)repeat, sizeof *miss, cmp_double);
    qsort(rawt, (size_t)repeat, sizeof *rawt, cmp_double);
    printf("cache miss: a %d MB blob fetched, checked and put in place in %.1f ms (median of %d; %.0f MB/s); "
           "ceiling: its chunks read raw in %.1f ms\n",
           blob_mb, miss[repeat / 2], repeat, blob_mb / (miss[repeat / 2] / 1e3), rawt[repeat / 2]);
    free(miss);
    free(rawt);
    hlptd_store_close(other);
    hlptd_blobs_close(cold);
    PQfinish(raw);
    hlptd_store_close(st);
    hlptd_blobs_close(blobs);
    snprintf(q, sizeof q, "rm -rf %s", root);
    if (system(q) != 0) fprintf(stderr, "bench_store: could not remove %s\n", root);
    return 0;
}
