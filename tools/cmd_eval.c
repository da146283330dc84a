/*
 * cmd_eval.c - `hlpt eval`: accuracy of the daemon's model (the base or an adapter) on a task file,
 * by greedy completions of the rendered prompts, sent concurrently so the daemon batches them.
 */
#include <cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "commands.h"
#include "hlpt/score.h"
#include "hlpt/train.h"

static const char eval_usage[] =
    "usage: hlpt eval --task math|wordnet --data FILE [--adapter NAME] [--limit N] [--max-tokens N]\n"
    "                 [--concurrency N] [--show N] [--url URL]\n"
    "Greedy completions of each example's prompt; math is scored by the last number (within 0.001),\n"
    "wordnet by exact match of the answer after \"The answer is\". Prints a JSON summary.\n";

typedef struct {
    char *prompt, *reference, *answer;
    int correct, done;
} item;

typedef struct {
    item *items;
    int n, next, math, max_tokens, failed;
    const char *model;
    pthread_mutex_t mu;
} eval_run;

/* The text after the last "The answer is", up to the end of its line. */
static void answer_part(const char *text, char *buf, size_t len) {
    const char *p = text, *hit = NULL;
    while ((p = strstr(p, "The answer is"))) hit = p++;
    const char *s = hit ? hit + strlen("The answer is") : text;
    size_t k = 0;
    while (*s == ' ') s++;
    while (*s && *s != '\n' && k + 1 < len) buf[k++] = *s++;
    buf[k] = 0;
}

static void *eval_thread(void *arg) {
    eval_run *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        int i = r->next < r->n && !r->failed ? r->next++ : -1;
        pthread_mutex_unlock(&r->mu);
        if (i < 0) return NULL;
        item *it = &r->items[i];
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "model", r->model);
        cJSON_AddStringToObject(b, "prompt", it->prompt);
        cJSON_AddNumberToObject(b, "max_tokens", r->max_tokens);
        cJSON_AddNumberToObject(b, "temperature", 0);
        char *body = cJSON_PrintUnformatted(b);
        cJSON_Delete(b);
        cJSON *j = client_call("POST", "/v1/completions", body);
        free(body);
        if (!j) {
            pthread_mutex_lock(&r->mu);
            r->failed = 1;
            pthread_mutex_unlock(&r->mu);
            return NULL;
        }
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0), "text");
        it->answer = strdup(cJSON_IsString(t) ? t->valuestring : "");
        cJSON_Delete(j);
        if (r->math) {
            it->correct = hlpt_score_math(it->answer, it->reference);
        } else {
            char got[512], want[512];
            answer_part(it->answer, got, sizeof got);
            answer_part(it->reference, want, sizeof want);
            it->correct = hlpt_score_exact(got, want);
        }
        it->done = 1;
    }
}

int cmd_eval(int argc, char **argv) {
    const char *url = NULL, *task = NULL, *data = NULL, *adapter = NULL, *limit = NULL, *max_tokens = NULL,
               *conc = NULL, *show = NULL;
    cli_opt opts[] = {{"--url", &url, NULL},         {"--task", &task, NULL},     {"--data", &data, NULL},
                      {"--adapter", &adapter, NULL}, {"--limit", &limit, NULL},   {"--max-tokens", &max_tokens, NULL},
                      {"--concurrency", &conc, NULL}, {"--show", &show, NULL}};
    char **rest;
    int n_rest, st = cli_parse(argc, argv, opts, (int)(sizeof opts / sizeof *opts), eval_usage, &rest, &n_rest);
    if (st) return st == CLI_HELP ? CLI_OK : st;
    if (!task || !data || n_rest || (strcmp(task, "math") && strcmp(task, "wordnet"))) {
        fputs(eval_usage, stderr);
        return CLI_USAGE;
    }
    long lim = 1 << 30, mt = 128, cc = 8, sh = 0;
    if ((st = cli_int("--limit", limit, 1, 1 << 30, &lim)) || (st = cli_int("--max-tokens", max_tokens, 1, 4096, &mt)) ||
        (st = cli_int("--concurrency", conc, 1, 256, &cc)) || (st = cli_int("--show", show, 0, 1 << 30, &sh)))
        return st;
    client_set_url(url);
    FILE *f = fopen(data, "rb");
    if (!f) return cli_fail("%s: cannot read", data);
    eval_run r = {.math = !strcmp(task, "math"), .max_tokens = (int)mt, .model = adapter ? adapter : "base"};
    pthread_mutex_init(&r.mu, NULL);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long no = 0;
    while (r.n < lim && (got = getline(&line, &cap, f)) > 0) {
        no++;
        if (got <= 1) continue;
        char *prompt, *completion, why[256];
        if (hlpt_examples_texts(line, (size_t)got, no, &prompt, &completion, why, sizeof why)) {
            fclose(f);
            free(line);
            return cli_fail("%s: %s", data, why);
        }
        cJSON *o = cJSON_Parse(line);
        const cJSON *ans = cJSON_GetObjectItemCaseSensitive(o, "answer");
        item *items = realloc(r.items, sizeof *items * (size_t)(r.n + 1));
        if (!items) return CLI_FAIL;
        r.items = items;
        /* The reference: the "answer" field when present, else the completion. */
        char *ref = NULL;
        if (cJSON_IsString(ans) && !r.math) {
            size_t k = strlen(ans->valuestring) + 32;
            ref = malloc(k);
            snprintf(ref, k, "The answer is %s", ans->valuestring);
        }
        r.items[r.n++] = (item){.prompt = prompt, .reference = ref ? ref : strdup(completion)};
        free(completion);
        cJSON_Delete(o);
    }
    fclose(f);
    free(line);
    pthread_t th[256];
    int nt = (int)cc < r.n ? (int)cc : r.n;
    for (int i = 0; i < nt; i++) pthread_create(&th[i], NULL, eval_thread, &r);
    for (int i = 0; i < nt; i++) pthread_join(th[i], NULL);
    int correct = 0;
    for (int i = 0; i < r.n; i++) correct += r.items[i].correct;
    for (int i = 0; i < r.n && i < sh; i++)
        fprintf(stderr, "--- %s\n%s\n>>> %s\n", r.items[i].correct ? "correct" : "wrong", r.items[i].reference,
                r.items[i].answer ? r.items[i].answer : "");
    if (!r.failed)
        printf("{\"task\":\"%s\",\"model\":\"%s\",\"examples\":%d,\"correct\":%d,\"accuracy\":%.4f}\n", task, r.model, r.n,
               correct, r.n ? (double)correct / r.n : 0.0);
    for (int i = 0; i < r.n; i++) {
        free(r.items[i].prompt);
        free(r.items[i].reference);
        free(r.items[i].answer);
    }
    free(r.items);
    pthread_mutex_destroy(&r.mu);
    return r.failed ? CLI_FAIL : CLI_OK;
}
