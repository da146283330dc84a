/*
 * Model names resolved on the inference thread, with no loop and no HTTP: requests name the base
 * (by its name or "base"), an adapter (by name or id) or a checkpoint (by its model id); the
 * inference thread resolves each through the resolver's own store connection and generates. A
 * checkpoint is served from its state before it is registered, is noted for registration once, and
 * serves the same text after the registration; an unknown model fails before any START.
 */
#include "resolver.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check_main.h"
#include "hlpt/adapter.h"
#include "hlpt/err.h"
#include "hlpt/fileio.h"
#include "hlpt/train.h"
#include "infer.h"
#include "jobs.h"

#define BASE "llama2-mha-f32"

static char dir[64], db[128], why[512];
static hlpt_model *model;
static hlptd_store *st;     /* the store's writer, as the loop holds it */
static hlptd_blobs *blobs; /* the artefacts its rows name */
static char adapter_id[HLPTD_ID_MAX], ckpt_id[HLPTD_ID_MAX], ckpt_model[256];
static atomic_int pending_calls;

static void on_pending(void *ctx) { atomic_fetch_add(&pending_calls, 1); }

static char *fixture_file(const char *rel, size_t *n) {
    char path[512], *buf = NULL;
    fixture_path(path, sizeof path, rel);
    ck_assert_msg(hlpt_file_read(path, 1 << 26, &buf, n, why, sizeof why) == 0, "%s", why);
    return buf;
}

/* A checkpoint of a LoRA whose parameters are all non-zero, so that it changes the text. */
static void *checkpoint_blob(size_t *n) {
    hlpt_adapter_config c;
    hlpt_adapter_config_defaults(&c, HLPT_METHOD_LORA, hlpt_model_config(model)->n_layers);
    hlpt_adapter *a;
    ck_assert_int_eq(hlpt_adapter_new(hlpt_model_config(model), &c, &a, why, sizeof why), 0);
    for (size_t i = 0; i < a->n_params; i++) a->params[i] = 0.05f * sinf((float)i);
    hlpt_examples train = {0};
    int prompt[3] = {10, 11, 12}, comp[2] = {20, 21};
    ck_assert_int_eq(hlpt_examples_add(&train, prompt, 3, comp, 2, 1, 2, 64, 0), 0);
    hlpt_train_params p;
    hlpt_train_params_defaults(&p);
    hlpt_trainer *t;
    ck_assert_msg(hlpt_trainer_new(model, a, &train, NULL, &p, &t, why, sizeof why) == 0, "%s", why);
    void *blob;
    ck_assert_msg(hlpt_trainer_checkpoint(t, &blob, n, why, sizeof why) == 0, "%s", why);
    hlpt_trainer_free(t);
    hlpt_examples_free(&train);
    hlpt_adapter_free(a);
    return blob;
}

static void setup(void) {
    char path[512];
    fixture_path(path, sizeof path, BASE);
    ck_assert_msg(hlpt_model_open(path, HLPT_BASE_F32, &model, why, sizeof why) == 0, "%s", why);
    snprintf(dir, sizeof dir, "/tmp/hlpt-resolver-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/hlpt.db", dir);
    ck_assert_msg(hlptd_blobs_open(dir, 1, &blobs, why, sizeof why) == 0, "%s", why);
    ck_assert_msg(hlptd_store_open(&st, db, blobs, why, sizeof why) == 0, "%s", why);

    size_t cn, wn;
    char *cfg = fixture_file("hlpt-causal/adapter_config.json", &cn);
    char *w = fixture_file("hlpt-causal/adapter_model.safetensors", &wn);
    char sha[HLPT_SHA256_HEX];
    ck_assert_int_eq(hlptd_blob_put(blobs, w, wn, sha, why, sizeof why), 0);
    hlptd_adapter_fields in = {.name = "causal", .config = cfg, .sha256 = sha, .bytes = (int64_t)wn};
    hlptd_adapter_rec *rec;
    ck_assert_msg(hlptd_store_adapter_insert(st, &in, &rec, why, sizeof why) == 0, "%s", why);
    snprintf(adapter_id, sizeof adapter_id, "%s", rec->id);
    hlptd_adapter_rec_free(rec);
    free(cfg);
    free(w);

    hlptd_file *f;
    ck_assert_int_eq(hlptd_blob_put(blobs, "x", 1, sha, why, sizeof why), 0);
    ck_assert_int_eq(
        hlptd_store_file_insert(st, "t.jsonl", "fine-tune", "processed", sha, 1, NULL, 1, NULL, &f, why, sizeof why), 0);
    hlptd_job_fields jn = {.status = HLPTD_JOB_SUCCEEDED, .model = BASE, .training_file = f->id, .method = "{\"type\":\"lora\"}",
                       .hyperparameters = "{}", .seed = 1, .suffix = "t"};
    hlptd_job *job;
    ck_assert_int_eq(hlptd_store_job_insert(st, &jn, &job, why, sizeof why), 0);
    size_t n;
    void *blob = checkpoint_blob(&n);
    hlptd_checkpoint *ck;
    ck_assert_int_eq(hlptd_blob_put(blobs, blob, n, sha, why, sizeof why), 0);
    ck_assert_int_eq(
        hlptd_store_checkpoint_insert(st, job->id, 2, NULL, sha, (int64_t)n, NULL, &ck, why, sizeof why), 0);
    snprintf(ckpt_id, sizeof ckpt_id, "%s", ck->id);
    hlptd_jobs_model_name(BASE, job, 2, ckpt_model, sizeof ckpt_model);
    free(blob);
    hlptd_checkpoint_free(ck);
    hlptd_job_free(job);
    hlptd_file_free(f);
    atomic_store(&pending_calls, 0);
}

static void teardown(void) {
    hlptd_store_close(st);
    hlptd_blobs_close(blobs);
    hlpt_model_close(model);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* ---- one request, waited for ------------------------------------------------------------------- */

typedef struct {
    hlptd_infer_req r;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, done;
    char label[128];
    char text[1024];
} waiter;

static void on_event(hlptd_infer_req *r, hlptd_infer_ev ev, const char *delta, size_t n) {
    waiter *w = (waiter *)r;
    pthread_mutex_lock(&w->mu);
    if (ev == HLPTD_INFER_START) {
        w->started = 1;
        snprintf(w->label, sizeof w->label, "%s", r->label);
    }
    if (ev == HLPTD_INFER_DONE && r->gen) {
        size_t k;
        const char *all = hlpt_gen_text(r->gen, &k);
        snprintf(w->text, sizeof w->text, "%.*s", (int)k, all);
    }
    if (ev == HLPTD_INFER_DONE || ev == HLPTD_INFER_ERROR) {
        w->done = 1;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
}

/* Generates 8 greedy tokens for `name`; returns the request's status, its text and label. */
static int generate(hlptd_infer *inf, const char *name, waiter *w) {
    static int prompt[5] = {1, 786, 350, 672, 779};
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    snprintf(w->r.model, sizeof w->r.model, "%s", name);
    w->r.prompt = prompt;
    w->r.n_prompt = 5;
    hlpt_gen_params_defaults(&w->r.params);
    w->r.params.temperature = 0;
    w->r.params.max_tokens = 8;
    w->r.params.ignore_eos = 1;
    w->r.on_event = on_event;
    ck_assert_int_eq(hlptd_infer_submit(inf, &w->r), 0);
    pthread_mutex_lock(&w->mu);
    while (!w->done) pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    return w->r.err;
}

static void start(hlptd_resolver **res, hlptd_infer **inf) {
    hlptd_resolver_opts ro = {.db_path = db, .blobs = blobs, .base_name = BASE, .base = hlpt_model_config(model),
                              .on_pending = on_pending};
    ck_assert_int_eq(hlptd_resolver_new(&ro, res), 0);
    hlptd_infer_opts io = {.adapter_budget = 1 << 30, .max_batch = 8, .max_prefill = 4096};
    hlptd_resolver_hook(*res, &io);
    ck_assert_int_eq(hlptd_infer_start(model, &io, inf), 0);
}

/* ---- tests ------------------------------------------------------------------------------------------ */

START_TEST(test_base_and_adapters) {
    hlptd_resolver *res;
    hlptd_infer *inf;
    start(&res, &inf);
    waiter base, by_name, named, by_id;
    ck_assert_int_eq(generate(inf, "base", &base), 0);
    ck_assert_str_eq(base.label, "base");
    ck_assert_int_eq(generate(inf, BASE, &by_name), 0);
    ck_assert_str_eq(by_name.label, "base");
    ck_assert_str_eq(by_name.text, base.text);
    ck_assert_int_eq(generate(inf, "causal", &named), 0);
    ck_assert_str_eq(named.label, "causal");
    ck_assert_str_ne(named.text, base.text);
    ck_assert_int_eq(generate(inf, adapter_id, &by_id), 0);
    ck_assert_str_eq(by_id.label, "causal");
    ck_assert_str_eq(by_id.text, named.text);
    printf("base: \"%s\"; adapter causal: \"%s\"\n", base.text, named.text);

    /* Unknown names fail before any START, as the HTTP side's 404 needs. */
    const char *unknown[] = {"nope", "ft:x:y:z:ckpt-step-2", "ad-nope"};
    for (int i = 0; i < 3; i++) {
        waiter w;
        ck_assert_int_eq(generate(inf, unknown[i], &w), HLPT_ERR_NOENT);
        ck_assert_int_eq(w.started, 0);
    }
    ck_assert_int_eq(atomic_load(&pending_calls), 0);
    hlptd_infer_free(inf);
    hlptd_resolver_free(res);
}
END_TEST

START_TEST(test_checkpoint_served_then_registered) {
    hlptd_resolver *res;
    hlptd_infer *inf;
    start(&res, &inf);
    waiter base, first, again, after;
    ck_assert_int_eq(generate(inf, "base", &base), 0);
    ck_assert_msg(generate(inf, ckpt_model, &first) == 0, "%s", first.r.why);
    ck_assert_str_eq(first.label, ckpt_model);
    ck_assert_str_ne(first.text, base.text);
    printf("checkpoint %s: \"%s\"\n", ckpt_model, first.text);
    /* Served from the checkpoint; the store has no such adapter until the loop registers it, and
     * asking again notes it no second time. */
    hlptd_adapter_rec *a = NULL;
    ck_assert_int_eq(hlptd_store_adapter_get(st, ckpt_model, &a, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_int_eq(atomic_load(&pending_calls), 1);
    ck_assert_int_eq(generate(inf, ckpt_model, &again), 0);
    ck_assert_str_eq(again.text, first.text);
    ck_assert_int_eq(atomic_load(&pending_calls), 1);

    hlptd_resolver_register_pending(res, st);
    ck_assert_int_eq(hlptd_store_adapter_get(st, ckpt_model, &a, why, sizeof why), 0);
    ck_assert_str_eq(a->checkpoint_id, ckpt_id);
    ck_assert_ptr_nonnull(a->job_id);
    /* Now it is an adapter like any other, fetched from the store: the same text. */
    hlptd_infer_stats s0, s1;
    hlptd_infer_get_stats(inf, &s0);
    ck_assert_int_eq(generate(inf, ckpt_model, &after), 0);
    hlptd_infer_get_stats(inf, &s1);
    ck_assert_int_eq(s1.adapter_loads, s0.adapter_loads + 1);
    ck_assert_str_eq(after.label, ckpt_model);
    ck_assert_str_eq(after.text, first.text);
    ck_assert_int_eq(generate(inf, a->id, &after), 0);
    ck_assert_str_eq(after.text, first.text);
    hlptd_adapter_rec_free(a);
    /* Registering again is a no-op. */
    hlptd_resolver_register_pending(res, st);
    ck_assert_int_eq(atomic_load(&pending_calls), 1);

    /* Another step of the same job is no model. */
    char other[300];
    snprintf(other, sizeof other, "%.*s5", (int)(strlen(ckpt_model) - 1), ckpt_model);
    waiter w;
    ck_assert_int_eq(generate(inf, other, &w), HLPT_ERR_NOENT);
    hlptd_infer_free(inf);
    hlptd_resolver_free(res);
}
END_TEST

START_TEST(test_checkpoint_lookup) {
    hlptd_job *job;
    hlptd_checkpoint *ck;
    ck_assert_int_eq(hlptd_resolver_checkpoint(st, BASE, ckpt_model, &job, &ck, why, sizeof why), 0);
    ck_assert_str_eq(ck->id, ckpt_id);
    ck_assert_int_eq(ck->step, 2);
    hlptd_job_free(job);
    hlptd_checkpoint_free(ck);
    /* The same id under another base's name is no model of this daemon. */
    ck_assert_int_eq(hlptd_resolver_checkpoint(st, "other", ckpt_model, &job, &ck, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_null(job);
    ck_assert_ptr_null(ck);
    ck_assert_ptr_nonnull(strstr(why, ckpt_model));
    ck_assert_int_eq(hlptd_resolver_is_base(BASE, "base"), 1);
    ck_assert_int_eq(hlptd_resolver_is_base(BASE, BASE), 1);
    ck_assert_int_eq(hlptd_resolver_is_base(BASE, "causal"), 0);
}
END_TEST

/* One lookup for every kind of name, in the order of the rules: base, adapter (name or id),
 * checkpoint; anything else is no model. */
START_TEST(test_lookup_kinds) {
    hlptd_model_ref ref;
    ck_assert_int_eq(hlptd_resolver_lookup(st, BASE, "base", &ref, why, sizeof why), 0);
    ck_assert_int_eq(ref.is_base, 1);
    ck_assert_ptr_null(ref.adapter);
    hlptd_model_ref_clear(&ref);
    const char *names[] = {"causal", adapter_id};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(hlptd_resolver_lookup(st, BASE, names[i], &ref, why, sizeof why), 0);
        ck_assert_int_eq(ref.is_base, 0);
        ck_assert_ptr_nonnull(ref.adapter);
        ck_assert_str_eq(ref.adapter->id, adapter_id);
        ck_assert_ptr_null(ref.ck);
        hlptd_model_ref_clear(&ref);
        ck_assert_ptr_null(ref.adapter);
    }
    ck_assert_int_eq(hlptd_resolver_lookup(st, BASE, ckpt_model, &ref, why, sizeof why), 0);
    ck_assert_ptr_null(ref.adapter);
    ck_assert_ptr_nonnull(ref.job);
    ck_assert_str_eq(ref.ck->id, ckpt_id);
    hlptd_model_ref_clear(&ref);
    ck_assert_int_eq(hlptd_resolver_lookup(st, BASE, "no-such-model", &ref, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_null(ref.adapter);
    ck_assert_ptr_null(ref.ck);
    ck_assert_ptr_nonnull(strstr(why, "no-such-model"));
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("resolver");
    TCase *tc = tcase_create("server");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_base_and_adapters);
    tcase_add_test(tc, test_checkpoint_served_then_registered);
    tcase_add_test(tc, test_checkpoint_lookup);
    tcase_add_test(tc, test_lookup_kinds);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
