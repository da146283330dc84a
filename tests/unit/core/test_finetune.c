/*
 * The fine-tuning entry point: the job parser takes every shape the API documents (OpenAI's
 * supervised method, hlpt's own types, hyperparameters at the top or nested, validation_split in
 * either place, seed) and names the field of a bad one; a run on the fixture base gives bit for bit
 * the parameters of the same pipeline done by hand with the trainer; a run stopped after k steps and
 * resumed from its checkpoint ends exactly where an uninterrupted run does.
 */
#include "hlpt/finetune.h"

#include <cJSON.h>
#include <math.h>
#include <unistd.h>

#include "../check_main.h"
#include "../ref_util.h"
#include "hlpt/err.h"
#include "hlpt/fileio.h"

static int parse(const char *text, hlpt_job_spec *spec, char *param, size_t plen, char *why, size_t len) {
    cJSON *j = cJSON_Parse(text);
    ck_assert_msg(j != NULL, "test JSON: %s", text);
    int err = hlpt_job_spec_parse(spec, j, 8, param, plen, why, len);
    cJSON_Delete(j);
    return err;
}

static void parse_ok(const char *text, hlpt_job_spec *spec) {
    char param[192], why[512] = "";
    int err = parse(text, spec, param, sizeof param, why, sizeof why);
    ck_assert_msg(err == HLPT_OK, "%s: %s", text, why);
    ck_assert_str_eq(param, "");
}

START_TEST(test_parse_shapes) {
    hlpt_job_spec s;
    hlpt_train_params d;
    hlpt_train_params_defaults(&d);
    hlpt_adapter_config want;

    /* Nothing given: the default method with its default plan, default hyperparameters, seed 42. */
    parse_ok("{}", &s);
    hlpt_adapter_config_defaults(&want, HLPT_JOB_DEFAULT_METHOD, 8);
    ck_assert_int_eq(memcmp(&s.adapter, &want, sizeof want), 0);
    ck_assert_int_eq(memcmp(&s.params, &d, sizeof d), 0);
    ck_assert(s.validation_split == 0 && !s.training_file && !s.validation_file && !s.resume_checkpoint);
    parse_ok("{\"method\": null, \"hyperparameters\": null, \"seed\": null, \"validation_split\": null}", &s);
    ck_assert_int_eq(memcmp(&s.params, &d, sizeof d), 0);

    /* OpenAI's supervised method, hyperparameters nested; keys that are not the parser's are left. */
    parse_ok("{\"method\": {\"type\": \"supervised\", \"supervised\": {\"hyperparameters\": {\"n_epochs\": 2, "
             "\"batch_size\": 8, \"learning_rate_multiplier\": 2}}}, \"seed\": 7, \"training_file\": \"file-abc\", "
             "\"model_dir\": \"/m\"}",
             &s);
    ck_assert_int_eq(s.adapter.method, HLPT_JOB_DEFAULT_METHOD);
    ck_assert_int_eq(s.params.n_epochs, 2);
    ck_assert_int_eq(s.params.batch_size, 8);
    ck_assert(s.params.learning_rate == 2 * d.learning_rate);
    ck_assert_int_eq((int)s.params.seed, 7);
    ck_assert_ptr_null(s.training_file);
    parse_ok("{\"method\": {\"type\": \"supervised\"}, \"hyperparameters\": {\"max_steps\": 3}}", &s);
    ck_assert_int_eq(s.params.max_steps, 3);

    /* hlpt's own types: settings and nested hyperparameters, validation_split among them. */
    parse_ok("{\"method\": {\"type\": \"lora\", \"lora\": {\"r\": 2, \"lora_alpha\": 4, \"target_modules\": "
             "[\"q_proj\", \"down_proj\"], \"hyperparameters\": {\"learning_rate\": 0.01, \"validation_split\": 0.25}}}}",
             &s);
    ck_assert_int_eq(s.adapter.method, HLPT_METHOD_LORA);
    ck_assert_int_eq(s.adapter.r, 2);
    ck_assert(s.adapter.alpha == 4.0f);
    ck_assert_uint_eq(s.adapter.targets, 1u << HLPT_MOD_Q | 1u << HLPT_MOD_DOWN);
    ck_assert(s.params.learning_rate == 0.01f);
    ck_assert(s.validation_split == 0.25);

    /* Top-level hyperparameters and the worker's top-level validation_split; an h2lpt plan. */
    parse_ok("{\"method\": {\"type\": \"h2lpt\", \"h2lpt\": {\"num_virtual_tokens\": 3, \"gate\": \"sequence\"}}, "
             "\"hyperparameters\": {\"max_steps\": 5, \"eval_every\": 2}, \"validation_split\": 0.1, \"seed\": 9007199254740991}",
             &s);
    hlpt_adapter_config_defaults(&want, HLPT_METHOD_H2LPT, 8);
    ck_assert_int_eq(s.adapter.method, HLPT_METHOD_H2LPT);
    ck_assert_int_eq(memcmp(s.adapter.lora_layer, want.lora_layer, sizeof want.lora_layer), 0);
    ck_assert_int_eq(memcmp(s.adapter.prefix_layer, want.prefix_layer, sizeof want.prefix_layer), 0);
    ck_assert_int_eq(s.adapter.n_virtual, 3);
    ck_assert_int_eq(s.adapter.gate, HLPT_GATE_SEQUENCE);
    ck_assert_int_eq(s.params.max_steps, 5);
    ck_assert_int_eq(s.params.eval_every, 2);
    ck_assert(s.validation_split == 0.1);
    ck_assert(s.params.seed == 9007199254740991ull);

    /* A prefix plan with settings null. */
    parse_ok("{\"method\": {\"type\": \"prefix\", \"prefix\": null}}", &s);
    ck_assert_int_eq(s.adapter.method, HLPT_METHOD_PREFIX);
}
END_TEST

/* Each bad job: its status, the param the API reports, and what its message must start with (or
 * hold, after a '~'). */
static const struct {
    const char *json;
    int err;
    const char *param, *why;
} bad_jobs[] = {
    {"[1]", HLPT_ERR_INVAL, "", "~JSON object"},
    {"{\"method\": \"lora\"}", HLPT_ERR_INVAL, "method.type", "`method` must be an object"},
    {"{\"method\": {\"lora\": {\"r\": 2}}}", HLPT_ERR_INVAL, "method.type", "`method` must be an object"},
    {"{\"method\": {\"type\": \"adapterx\"}}", HLPT_ERR_INVAL, "method.type", "`method.type` must be one of"},
    {"{\"method\": {\"type\": \"dpo\", \"dpo\": {}}}", HLPT_ERR_UNSUPPORTED, "method.type", "`method.type` dpo"},
    {"{\"method\": {\"type\": \"lora\", \"hlpt\": {\"r\": 2}}}", HLPT_ERR_INVAL, "method.hlpt", "unknown field `method.hlpt`"},
    {"{\"method\": {\"type\": \"lora\", \"lora\": 3}}", HLPT_ERR_INVAL, "method.lora", "`method.lora` must be an object"},
    {"{\"method\": {\"type\": \"lora\", \"lora\": {\"r\": 0}}}", HLPT_ERR_INVAL, "method.lora", "method.lora.r: "},
    {"{\"method\": {\"type\": \"hlpt\", \"hlpt\": {\"lora_rank\": 8}}}", HLPT_ERR_INVAL, "method.hlpt",
     "method.hlpt.lora_rank: unknown adapter setting"},
    {"{\"method\": {\"type\": \"hlpt\", \"hlpt\": {\"lora_layers\": [99]}}}", HLPT_ERR_INVAL, "method.hlpt",
     "method.hlpt.lora_layers: "},
    {"{\"method\": {\"type\": \"prefix\", \"prefix\": {\"num_virtual_tokens\": \"many\"}}}", HLPT_ERR_INVAL,
     "method.prefix", "method.prefix.num_virtual_tokens: "},
    {"{\"method\": {\"type\": \"hlpt\", \"hlpt\": {\"lora_layers\": [], \"prefix_layers\": []}}}", HLPT_ERR_INVAL,
     "method.hlpt", "method.hlpt: the layer plan adapts no layer"},
    {"{\"method\": {\"type\": \"supervised\", \"supervised\": {\"r\": 4}}}", HLPT_ERR_INVAL, "method.supervised.r",
     "unknown field `method.supervised.r`"},
    {"{\"method\": {\"type\": \"supervised\", \"supervised\": {\"hyperparameters\": {\"n_epochs\": 0}}}}", HLPT_ERR_RANGE,
     "method.supervised.hyperparameters.n_epochs", "method.supervised.hyperparameters.n_epochs: "},
    {"{\"method\": {\"type\": \"supervised\", \"supervised\": {\"hyperparameters\": []}}}", HLPT_ERR_INVAL,
     "method.supervised.hyperparameters", "`method.supervised.hyperparameters` must be an object"},
    {"{\"hyperparameters\": {}, \"method\": {\"type\": \"lora\", \"lora\": {\"hyperparameters\": {}}}}", HLPT_ERR_INVAL,
     "method.lora.hyperparameters", "give `hyperparameters` once"},
    {"{\"hyperparameters\": {\"n_epochs\": 0}}", HLPT_ERR_RANGE, "hyperparameters.n_epochs", "hyperparameters.n_epochs: "},
    {"{\"hyperparameters\": {\"n_epoch\": 1}}", HLPT_ERR_INVAL, "hyperparameters.n_epoch", "~unknown"},
    {"{\"hyperparameters\": {\"batch_size\": 2.5}}", HLPT_ERR_INVAL, "hyperparameters.batch_size", "hyperparameters.batch_size: "},
    {"{\"hyperparameters\": {\"lr_scheduler\": \"wavy\"}}", HLPT_ERR_INVAL, "hyperparameters.lr_scheduler", "hyperparameters.lr_scheduler: "},
    {"{\"hyperparameters\": [1]}", HLPT_ERR_INVAL, "hyperparameters", "`hyperparameters` must be an object"},
    {"{\"hyperparameters\": {\"validation_split\": 1.5}}", HLPT_ERR_RANGE, "hyperparameters.validation_split",
     "hyperparameters.validation_split: must be in (0, 1)"},
    {"{\"validation_split\": 0}", HLPT_ERR_RANGE, "validation_split", "validation_split: must be in (0, 1)"},
    {"{\"validation_split\": 0.2, \"hyperparameters\": {\"validation_split\": 0.2}}", HLPT_ERR_INVAL, "validation_split",
     "give `validation_split` once"},
    {"{\"seed\": -1}", HLPT_ERR_INVAL, "seed", "`seed` must be a non-negative integer"},
    {"{\"seed\": 1.5}", HLPT_ERR_INVAL, "seed", "`seed` must be a non-negative integer"},
    {"{\"seed\": \"x\"}", HLPT_ERR_INVAL, "seed", "`seed` must be a non-negative integer"},
    {"{\"seed\": 9007199254740992}", HLPT_ERR_INVAL, "seed", "`seed` must be a non-negative integer"},
};

START_TEST(test_parse_names_the_field) {
    for (size_t i = 0; i < sizeof bad_jobs / sizeof *bad_jobs; i++) {
        hlpt_job_spec s;
        char param[192] = "?", why[512] = "";
        int err = parse(bad_jobs[i].json, &s, param, sizeof param, why, sizeof why);
        ck_assert_msg(err == bad_jobs[i].err, "%s: status %s, want %s (%s)", bad_jobs[i].json, hlpt_err_name(err),
                      hlpt_err_name(bad_jobs[i].err), why);
        ck_assert_msg(!strcmp(param, bad_jobs[i].param), "%s: param '%s', want '%s'", bad_jobs[i].json, param,
                      bad_jobs[i].param);
        const char *w = bad_jobs[i].why;
        int ok = w[0] == '~' ? strstr(why, w + 1) != NULL : !strncmp(why, w, strlen(w));
        ck_assert_msg(ok, "%s: why '%s', want '%s'", bad_jobs[i].json, why, w);
        /* The same without a param buffer. */
        ck_assert_int_eq(parse(bad_jobs[i].json, &s, NULL, 0, why, sizeof why), bad_jobs[i].err);
    }
    printf("%zu bad jobs refused, each naming its field\n", sizeof bad_jobs / sizeof *bad_jobs);
}
END_TEST

/* ---------------------------------------------------------------------------------------------- */
/* Runs on the fixture base                                                                        */

static char tmp_dir[64];

/* A JSONL file of n short question/answer lines in the temporary directory. */
static char *write_dataset(const char *name, int n, int offset) {
    static const char *const words[] = {"red", "blue", "green", "cat", "dog", "fish", "one", "two", "three"};
    size_t cap = 256 * (size_t)n, len = 0;
    char *buf = malloc(cap);
    for (int i = 0; i < n; i++) {
        int k = i + offset;
        len += (size_t)snprintf(buf + len, cap - len, "{\"prompt\": \"Say %s and %s.\", \"completion\": \" %s %s.\"}\n",
                                words[k % 9], words[(k * 5 + 1) % 9], words[k % 9], words[(k * 5 + 1) % 9]);
    }
    char *path = malloc(512);
    snprintf(path, 512, "%s/%s", tmp_dir, name);
    ck_assert_int_eq(hlpt_file_write(path, buf, len, 0, NULL, 0), HLPT_OK);
    free(buf);
    return path;
}

typedef struct {
    int stop_after;          /* should_stop once this many steps were reported; 0 = never */
    int steps_seen;
    void *ckpt;              /* the latest checkpoint's bytes */
    size_t ckpt_n;
    float *params;           /* the final adapter's parameters */
    size_t n_params;
    char *extra;
    int best_step, adapters;
    hlpt_finetune_started started;
    int n_started;
} run_log;

static int log_started(void *ctx, const hlpt_finetune_started *s, char *why, size_t len) {
    run_log *l = ctx;
    l->started = *s;
    l->n_started++;
    return HLPT_OK;
}

static void log_progress(void *ctx, const hlpt_train_progress *p) {
    run_log *l = ctx;
    if (p->step > l->steps_seen) l->steps_seen = p->step;
}

static int log_checkpoint(void *ctx, int step, const hlpt_train_progress *p, const void *blob, size_t n) {
    run_log *l = ctx;
    free(l->ckpt);
    l->ckpt = malloc(n);
    memcpy(l->ckpt, blob, n);
    l->ckpt_n = n;
    return 0;
}

static int log_stop(void *ctx) {
    run_log *l = ctx;
    return l->stop_after && l->steps_seen >= l->stop_after;
}

static int log_adapter(void *ctx, const hlpt_adapter *a, const char *extra_json, int best_step, double best_loss,
                       char *why, size_t len) {
    run_log *l = ctx;
    l->params = malloc(a->n_params * sizeof(float));
    memcpy(l->params, a->params, a->n_params * sizeof(float));
    l->n_params = a->n_params;
    l->extra = strdup(extra_json);
    l->best_step = best_step;
    l->adapters++;
    return HLPT_OK;
}

static void run_log_free(run_log *l) {
    free(l->ckpt);
    free(l->params);
    free(l->extra);
}

static int run(const hlpt_model *m, const hlpt_job_spec *spec, run_log *l, hlpt_finetune_result *res) {
    hlpt_finetune_hooks h = {.ctx = l, .on_started = log_started, .on_progress = log_progress,
                             .on_checkpoint = log_checkpoint, .should_stop = log_stop, .on_adapter = log_adapter};
    char why[512] = "";
    int err = hlpt_finetune_run(m, spec, &h, res, why, sizeof why);
    ck_assert_msg(err == HLPT_OK, "run: %s", why);
    return err;
}

static void setup_tmp(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/hlpt-finetune-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
}

static void remove_tmp(const char *const *files, int n) {
    for (int i = 0; i < n; i++) unlink(files[i]);
    rmdir(tmp_dir);
}

/* A job with a held-out validation split (so the best parameters are chosen by evaluation) runs to
 * the same parameters, bit for bit, as the same steps done by hand. */
START_TEST(test_run_equals_the_pipeline_by_hand) {
    setup_tmp();
    hlpt_model *m = fixture_model("llama2-mha-f32");
    char *data = write_dataset("train.jsonl", 20, 0);
    hlpt_job_spec spec;
    parse_ok("{\"method\": {\"type\": \"hlpt\", \"hlpt\": {\"r\": 4, \"num_virtual_tokens\": 4}}, "
             "\"hyperparameters\": {\"n_epochs\": 3, \"batch_size\": 4, \"micro_batch_size\": 2, \"learning_rate\": 0.02, "
             "\"warmup_steps\": 1, \"eval_every\": 2, \"validation_split\": 0.25}, \"seed\": 11}",
             &spec);
    spec.training_file = data;
    run_log l = {0};
    hlpt_finetune_result res;
    run(m, &spec, &l, &res);
    ck_assert_int_eq(res.finished, 1);
    ck_assert_int_eq(l.adapters, 1);
    ck_assert_int_eq(l.n_started, 1);

    /* By hand: read, tokenize, split, adapter, trainer, run, best parameters. */
    char why[512] = "", *buf;
    size_t n;
    hlpt_examples all = {0}, train = {0}, valid = {0};
    ck_assert_int_eq(hlpt_file_read(data, 1 << 20, &buf, &n, why, sizeof why), HLPT_OK);
    ck_assert_msg(hlpt_examples_load(hlpt_model_tokenizer(m), hlpt_model_config(m), buf, n, &spec.params, &all, why,
                                     sizeof why) == HLPT_OK, "%s", why);
    free(buf);
    ck_assert_int_eq(hlpt_examples_split(&all, 0.25, 11, &train, &valid), HLPT_OK);
    hlpt_adapter_config cfg = spec.adapter;
    snprintf(cfg.base_hash, sizeof cfg.base_hash, "%s", hlpt_model_hash(m));
    hlpt_adapter *a;
    ck_assert_int_eq(hlpt_adapter_new(hlpt_model_config(m), &cfg, &a, why, sizeof why), HLPT_OK);
    hlpt_adapter_init(a, 11);
    hlpt_trainer *t;
    ck_assert_int_eq(hlpt_trainer_new(m, a, &train, &valid, &spec.params, &t, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_trainer_run(t, NULL, why, sizeof why), HLPT_OK);
    int best_step;
    double best_loss;
    const float *best = hlpt_trainer_best_params(t, &best_step, &best_loss);

    ck_assert_int_eq(l.started.total_steps, hlpt_trainer_total_steps(t));
    ck_assert_int_eq(l.started.examples, train.n);
    ck_assert_int_eq(l.started.valid_examples, valid.n);
    ck_assert_int_eq(l.started.truncated, train.n_truncated);
    ck_assert_int_eq(l.started.resumed_from, 0);
    ck_assert_uint_eq(l.started.trainable_params, a->n_params);
    ck_assert_int_eq(res.step, hlpt_trainer_step(t));
    ck_assert_int_eq(res.best_step, best_step);
    ck_assert_int_eq(l.best_step, best_step);
    ck_assert(res.best_loss == best_loss);
    ck_assert_uint_eq(l.n_params, a->n_params);
    ck_assert_int_eq(memcmp(l.params, best, a->n_params * sizeof(float)), 0);
    char *extra = hlpt_train_params_json(&spec.params);
    ck_assert_str_eq(l.extra, extra);
    printf("run = by hand: %d examples + %d held out, %d steps, best step %d (valid loss %.4f), %zu parameters identical\n",
           train.n, valid.n, res.step, best_step, best_loss, a->n_params);
    free(extra);
    hlpt_trainer_free(t);
    hlpt_adapter_free(a);
    hlpt_examples_free(&all);
    hlpt_examples_free(&train);
    hlpt_examples_free(&valid);
    run_log_free(&l);
    hlpt_model_close(m);
    const char *files[] = {data};
    remove_tmp(files, 1);
    free(data);
}
END_TEST

/* Stopped after 3 steps (should_stop), resumed from the checkpoint it left, a run ends with the
 * parameters of an uninterrupted one, bit for bit; dropout and the best-of-validation choice resume
 * with it. */
START_TEST(test_stop_and_resume_exact) {
    setup_tmp();
    hlpt_model *m = fixture_model("llama2-mha-f32");
    char *data = write_dataset("train.jsonl", 16, 0), *vdata = write_dataset("valid.jsonl", 4, 7);
    hlpt_job_spec spec;
    parse_ok("{\"method\": {\"type\": \"lora\", \"lora\": {\"r\": 2, \"lora_dropout\": 0.1}}, "
             "\"hyperparameters\": {\"n_epochs\": 2, \"batch_size\": 4, \"micro_batch_size\": 2, \"learning_rate\": 0.02, "
             "\"warmup_steps\": 1, \"eval_every\": 1}, \"seed\": 5}",
             &spec);
    spec.training_file = data;
    spec.validation_file = vdata;

    run_log whole = {0}, first = {.stop_after = 3}, second = {0};
    hlpt_finetune_result r1, r2, r3;
    run(m, &spec, &whole, &r1);
    ck_assert_int_eq(r1.finished, 1);

    run(m, &spec, &first, &r2);
    ck_assert_int_eq(r2.finished, 0);
    ck_assert_int_eq(r2.step, 3);
    ck_assert_int_eq(r2.best_step, -1);
    ck_assert_int_eq(first.adapters, 0);
    ck_assert_ptr_nonnull(first.ckpt);

    char ckpt[128];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", tmp_dir);
    ck_assert_int_eq(hlpt_file_write(ckpt, first.ckpt, first.ckpt_n, 0, NULL, 0), HLPT_OK);
    spec.resume_checkpoint = ckpt;
    run(m, &spec, &second, &r3);
    ck_assert_int_eq(second.started.resumed_from, 3);
    ck_assert_int_eq(r3.finished, 1);
    ck_assert_int_eq(r3.step, r1.step);
    ck_assert_int_eq(r3.best_step, r1.best_step);
    ck_assert(r3.best_loss == r1.best_loss);
    ck_assert_int_eq(memcmp(second.params, whole.params, whole.n_params * sizeof(float)), 0);
    printf("stopped at step 3 of %d, resumed: best step %d, parameters identical to the uninterrupted run\n", r1.step,
           r1.best_step);

    /* A checkpoint that is not one fails the run, named. */
    ck_assert_int_eq(hlpt_file_write(ckpt, "garbage", 7, 0, NULL, 0), HLPT_OK);
    run_log third = {0};
    hlpt_finetune_hooks h = {.ctx = &third, .on_adapter = log_adapter};
    char why[512] = "";
    ck_assert_int_ne(hlpt_finetune_run(m, &spec, &h, &r3, why, sizeof why), HLPT_OK);
    ck_assert_msg(!strncmp(why, "resume: ", 8), "%s", why);
    /* So does a missing training file. */
    spec.resume_checkpoint = NULL;
    spec.training_file = "/nonexistent/train.jsonl";
    ck_assert_int_eq(hlpt_finetune_run(m, &spec, &h, &r3, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_msg(!strncmp(why, "training file: ", 15), "%s", why);
    ck_assert_int_eq(third.adapters, 0);

    run_log_free(&whole);
    run_log_free(&first);
    run_log_free(&second);
    hlpt_model_close(m);
    const char *files[] = {data, vdata, ckpt};
    remove_tmp(files, 3);
    free(data);
    free(vdata);
}
END_TEST

/* A hook's status ends the run with that status and its detail. */
static int refuse_adapter(void *ctx, const hlpt_adapter *a, const char *extra_json, int best_step, double best_loss,
                          char *why, size_t len) {
    return hlpt_why(why, len, HLPT_ERR_NOSPACE, "disk full");
}

START_TEST(test_hook_status_is_the_run_status) {
    setup_tmp();
    hlpt_model *m = fixture_model("llama2-mha-f32");
    char *data = write_dataset("train.jsonl", 4, 0);
    hlpt_job_spec spec;
    parse_ok("{\"method\": {\"type\": \"prefix\", \"prefix\": {\"num_virtual_tokens\": 2}}, "
             "\"hyperparameters\": {\"max_steps\": 1, \"batch_size\": 4}}",
             &spec);
    spec.training_file = data;
    hlpt_finetune_hooks h = {.on_adapter = refuse_adapter};
    hlpt_finetune_result res;
    char why[512] = "";
    ck_assert_int_eq(hlpt_finetune_run(m, &spec, &h, &res, why, sizeof why), HLPT_ERR_NOSPACE);
    ck_assert_str_eq(why, "saving the adapter: disk full");
    /* Without hooks at all the run trains and hands nothing over. */
    ck_assert_int_eq(hlpt_finetune_run(m, &spec, NULL, &res, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(res.finished, 1);
    ck_assert_int_eq(res.step, 1);
    ck_assert(isnan(res.best_loss));
    hlpt_model_close(m);
    const char *files[] = {data};
    remove_tmp(files, 1);
    free(data);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("finetune");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_parse_shapes);
    tcase_add_test(tc, test_parse_names_the_field);
    tcase_add_test(tc, test_run_equals_the_pipeline_by_hand);
    tcase_add_test(tc, test_stop_and_resume_exact);
    tcase_add_test(tc, test_hook_status_is_the_run_status);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
