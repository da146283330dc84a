/*
 * The inference thread: requests for different adapters (and the base) batched together get the
 * text each gets alone; the adapter cache evicts beyond its budget; loading and unloading adapters
 * many times does not grow resident memory.
 */
#include "infer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check_main.h"
#include "hlpt/err.h"
#include "hlpt/fileio.h"

static hlpt_model *model;

/* Adapters by id: fixture directories, or "big-N" (a large synthetic LoRA). */
static void *big_weights;
static size_t big_len;
static char *big_config;

static int fetch(void *ctx, const char *id, char **config, size_t *config_len, void **weights, size_t *weights_len,
                 char *why, size_t len) {
    if (!strncmp(id, "big-", 4)) {
        *config = strdup(big_config);
        *config_len = strlen(big_config);
        *weights = malloc(big_len);
        memcpy(*weights, big_weights, big_len);
        *weights_len = big_len;
        return HLPT_OK;
    }
    char dir[512], path[600], rel[128];
    snprintf(rel, sizeof rel, "%s", id);
    fixture_path(dir, sizeof dir, rel);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    if (hlpt_file_read(path, 1 << 20, config, config_len, NULL, 0))
        return hlpt_why(why, len, HLPT_ERR_NOENT, "adapter %s is not known", id);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    char *w;
    int err = hlpt_file_read(path, 1 << 26, &w, weights_len, NULL, 0);
    *weights = w;
    return err;
}

typedef struct {
    hlptd_infer_req r;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    char text[1024];
    size_t len;
} waiter;

static void on_event(hlptd_infer_req *r, hlptd_infer_ev ev, const char *delta, size_t n) {
    waiter *w = (waiter *)r;
    pthread_mutex_lock(&w->mu);
    if (ev == HLPTD_INFER_TEXT && w->len + n < sizeof w->text) {
        memcpy(w->text + w->len, delta, n);
        w->len += n;
        w->text[w->len] = 0;
    }
    if (ev == HLPTD_INFER_DONE || ev == HLPTD_INFER_ERROR) {
        if (ev == HLPTD_INFER_DONE && r->gen) {
            size_t n_all;
            const char *all = hlpt_gen_text(r->gen, &n_all);
            snprintf(w->text, sizeof w->text, "%s", all);
            w->len = n_all;
        }
        w->done = 1;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
}

static int prompt[5] = {1, 786, 350, 672, 779};

static void init_waiter(waiter *w, const char *adapter, int max_tokens) {
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    snprintf(w->r.model, sizeof w->r.model, "%s", adapter);
    w->r.prompt = prompt;
    w->r.n_prompt = 5;
    hlpt_gen_params_defaults(&w->r.params);
    w->r.params.temperature = 0;
    w->r.params.max_tokens = max_tokens;
    w->r.params.ignore_eos = 1;
    w->r.on_event = on_event;
}

static void wait_for(waiter *w) {
    pthread_mutex_lock(&w->mu);
    while (!w->done) pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static void setup(void) {
    char dir[512], why[256];
    fixture_path(dir, sizeof dir, "llama2-mha-f32");
    ck_assert_msg(hlpt_model_open(dir, HLPT_BASE_F32, &model, why, sizeof why) == 0, "%s", why);
    /* A big LoRA on every module of every layer, rank 64: about 7 MB of parameters. */
    hlpt_adapter_config c;
    hlpt_adapter_config_defaults(&c, HLPT_METHOD_LORA, 8);
    c.r = 64;
    c.targets = (1u << HLPT_MOD_COUNT) - 1;
    hlpt_adapter *a;
    ck_assert_int_eq(hlpt_adapter_new(hlpt_model_config(model), &c, &a, why, sizeof why), 0);
    hlpt_adapter_init(a, 1);
    ck_assert_int_eq(hlpt_adapter_to_safetensors(a, a->params, NULL, &big_weights, &big_len, why, sizeof why), 0);
    big_config = hlpt_adapter_config_json(&a->cfg);
    hlpt_adapter_free(a);
}

static void teardown(void) {
    hlpt_model_close(model);
    free(big_weights);
    free(big_config);
}

START_TEST(test_mixed_batch_equals_alone) {
    hlptd_infer_opts o = {.adapter_budget = 1 << 30, .max_batch = 8, .max_prefill = 4096, .fetch = fetch};
    hlptd_infer *inf;
    ck_assert_int_eq(hlptd_infer_start(model, &o, &inf), 0);
    const char *ids[3] = {"hlpt-causal", "", "peft-lora-qv"};
    waiter alone[3], together[3];
    for (int i = 0; i < 3; i++) {
        init_waiter(&alone[i], ids[i], 10);
        ck_assert_int_eq(hlptd_infer_submit(inf, &alone[i].r), 0);
        wait_for(&alone[i]);
        ck_assert_int_eq(alone[i].r.err, 0);
    }
    for (int i = 0; i < 3; i++) {
        init_waiter(&together[i], ids[i], 10);
        ck_assert_int_eq(hlptd_infer_submit(inf, &together[i].r), 0);
    }
    for (int i = 0; i < 3; i++) {
        wait_for(&together[i]);
        ck_assert_str_eq(together[i].text, alone[i].text);
    }
    ck_assert_str_ne(alone[0].text, alone[1].text); /* the adapter changes the text */
    waiter bad;
    init_waiter(&bad, "no-such-adapter", 4);
    ck_assert_int_eq(hlptd_infer_submit(inf, &bad.r), 0);
    wait_for(&bad);
    ck_assert_int_eq(bad.r.err, HLPT_ERR_NOENT);
    hlptd_infer_stats st;
    hlptd_infer_get_stats(inf, &st);
    ck_assert_int_eq(st.adapter_loads, 2);
    ck_assert_int_eq(st.adapters_resident, 2);
    hlptd_infer_free(inf);
}
END_TEST

static long rss_kb(void) {
    char *buf;
    size_t n;
    long kb = -1;
    if (hlpt_file_read("/proc/self/status", 1 << 20, &buf, &n, NULL, 0) == 0) {
        char *p = strstr(buf, "VmRSS:");
        if (p) kb = strtol(p + 6, NULL, 10);
        free(buf);
    }
    return kb;
}

/* With a budget of one big adapter, cycling through many evicts each; resident memory stays flat. */
START_TEST(test_cache_evicts_and_frees) {
    hlptd_infer_opts o = {.adapter_budget = big_len + 4096, .max_batch = 8, .max_prefill = 4096, .fetch = fetch};
    hlptd_infer *inf;
    ck_assert_int_eq(hlptd_infer_start(model, &o, &inf), 0);
    long before = 0;
    for (int i = 0; i < 30; i++) {
        waiter w;
        char id[32];
        snprintf(id, sizeof id, "big-%d", i);
        init_waiter(&w, id, 2);
        ck_assert_int_eq(hlptd_infer_submit(inf, &w.r), 0);
        wait_for(&w);
        ck_assert_int_eq(w.r.err, 0);
        if (i == 4) before = rss_kb();
    }
    long after = rss_kb();
    hlptd_infer_stats st;
    hlptd_infer_get_stats(inf, &st);
    printf("30 loads of a %zu kB adapter: %ld evictions, %d resident; RSS %ld kB after 5, %ld kB after 30\n",
           big_len >> 10, st.adapter_evictions, st.adapters_resident, before, after);
    ck_assert_int_eq(st.adapter_loads, 30);
    ck_assert_int_ge(st.adapter_evictions, 28);
    ck_assert_int_le(st.adapters_resident, 2);
#ifndef __SANITIZE_ADDRESS__
    /* (AddressSanitizer quarantines freed memory, so resident size says nothing there.) */
    ck_assert_msg(after - before < (long)(big_len >> 10), "resident memory grew by %ld kB", after - before);
#endif
    /* Forgetting drops what is cached. */
    hlptd_infer_forget(inf, "big-29");
    usleep(100 * 1000);
    hlptd_infer_get_stats(inf, &st);
    ck_assert_int_le(st.adapters_resident, 1);
    hlptd_infer_free(inf);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("infer");
    TCase *tc = tcase_create("server");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_mixed_batch_equals_alone);
    tcase_add_test(tc, test_cache_evicts_and_frees);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
