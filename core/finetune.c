/*
 * finetune.c - a fine-tuning job from its JSON to its adapter (see finetune.h).
 *
 * The parser is the one place that decides what a job's method and hyperparameters may be: it reads
 * the shapes the REST API documents (docs/rest.md) and leans on hlpt_adapter_config_apply and
 * hlpt_train_params_apply for the settings themselves, so the API that accepts a job and the worker
 * that runs it cannot disagree. The run is the pipeline that `hlptd --worker` and `hlpt train` share;
 * everything that writes somewhere is a hook, so that the daemon and the command line can each put
 * checkpoints and adapters where they keep them.
 */
#include "hlpt/finetune.h"

#include <cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/err.h"
#include "hlpt/fileio.h"

/* The largest dataset file and checkpoint a run reads. */
#define DATASET_MAX_BYTES ((size_t)1 << 32)
#define CHECKPOINT_MAX_BYTES ((size_t)1 << 34)

/* ---------------------------------------------------------------------------------------------- */
/* The job spec                                                                                    */

/* An error of the parser: status, the field to report (param), and the message. */
static int reject(char *param, size_t param_len, const char *field, char *why, size_t len, int err,
                  const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static int reject(char *param, size_t param_len, const char *field, char *why, size_t len, int err,
                  const char *fmt, ...) {
    if (param && param_len) snprintf(param, param_len, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    hlpt_vwhy(why, len, err, fmt, ap);
    va_end(ap);
    return err;
}

/* Length of the field name `why` starts with ("r" of "r: expected an integer"), 0 when it starts
 * with none. */
static size_t leading_field(const char *why) {
    size_t k = 0;
    while (isalnum((unsigned char)why[k]) || why[k] == '_' || why[k] == '.') k++;
    return k && why[k] == ':' ? k : 0;
}

/* The adapter plan: defaults of the method, then its settings (without the hyperparameters that
 * may travel beside them). The settings are one plan, so the error is reported on their object. */
static int parse_plan(hlpt_adapter_config *cfg, hlpt_method method, const cJSON *settings, int n_layers, char *param,
                      size_t param_len, char *why, size_t len) {
    const char *name = hlpt_method_name(method);
    char field[64], sub[512] = "";
    snprintf(field, sizeof field, "method.%s", name);
    hlpt_adapter_config_defaults(cfg, method, n_layers);
    if (!settings) return HLPT_OK;
    cJSON *plan = cJSON_Duplicate(settings, 1);
    if (!plan) return reject(param, param_len, "", why, len, HLPT_ERR_NOMEM, "out of memory");
    cJSON_DeleteItemFromObjectCaseSensitive(plan, "hyperparameters");
    int err = hlpt_adapter_config_apply(cfg, plan, n_layers, 0, sub, sizeof sub);
    cJSON_Delete(plan);
    if (!err) return HLPT_OK;
    /* "r: 0 is outside [1, 4096]" becomes "method.lora.r: 0 is outside [1, 4096]". */
    return reject(param, param_len, field, why, len, HLPT_ERR_INVAL, "%s%s%s", field, leading_field(sub) ? "." : ": ",
                  sub);
}

/* validation_split: a fraction in (0, 1). */
static int parse_split(const cJSON *v, const char *field, double *out, char *param, size_t param_len, char *why,
                       size_t len) {
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0 && v->valuedouble < 1))
        return reject(param, param_len, field, why, len, HLPT_ERR_RANGE, "%s: must be in (0, 1)", field);
    *out = v->valuedouble;
    return HLPT_OK;
}

/* The hyperparameters object hp (named hp_name: "hyperparameters" or "method.<type>.hyperparameters"). */
static int parse_hyperparameters(hlpt_job_spec *spec, const cJSON *hp, const char *hp_name, char *param,
                                 size_t param_len, char *why, size_t len) {
    if (!cJSON_IsObject(hp))
        return reject(param, param_len, hp_name, why, len, HLPT_ERR_INVAL, "`%s` must be an object", hp_name);
    /* validation_split travels with the hyperparameters but is the run's, not the trainer's. */
    cJSON *copy = cJSON_Duplicate(hp, 1);
    if (!copy) return reject(param, param_len, "", why, len, HLPT_ERR_NOMEM, "out of memory");
    cJSON *split = cJSON_DetachItemFromObjectCaseSensitive(copy, "validation_split");
    char sub[512] = "";
    int err = hlpt_train_params_apply(&spec->params, copy, sub, sizeof sub);
    cJSON_Delete(copy);
    if (err) {
        /* sub starts with the field's path under "hyperparameters" ("hyperparameters.n_epochs: ..."):
         * report it under hp_name. */
        static const char top[] = "hyperparameters";
        size_t t = sizeof top - 1;
        const char *colon = strchr(sub, ':');
        int ours = !strncmp(sub, top, t);
        size_t k = colon && ours ? (size_t)(colon - sub) : t;
        char field[192];
        snprintf(field, sizeof field, "%s%.*s", hp_name, (int)(k - t), sub + t);
        err = reject(param, param_len, field, why, len, err, "%s%s", ours ? hp_name : "", ours ? sub + t : sub);
    } else if (split) {
        char field[192];
        snprintf(field, sizeof field, "%s.validation_split", hp_name);
        err = parse_split(split, field, &spec->validation_split, param, param_len, why, len);
    }
    cJSON_Delete(split);
    return err;
}

int hlpt_job_spec_parse(hlpt_job_spec *spec, const cJSON *json, int n_layers, char *param, size_t param_len, char *why,
                        size_t len) {
    memset(spec, 0, sizeof *spec);
    if (param && param_len) param[0] = 0;
    if (n_layers <= 0 || n_layers > HLPT_MAX_LAYERS)
        return reject(param, param_len, "", why, len, HLPT_ERR_RANGE, "a base of %d layers is not supported", n_layers);
    hlpt_adapter_config_defaults(&spec->adapter, HLPT_JOB_DEFAULT_METHOD, n_layers);
    hlpt_train_params_defaults(&spec->params);
    if (!cJSON_IsObject(json))
        return reject(param, param_len, "", why, len, HLPT_ERR_INVAL, "the job must be a JSON object");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(json, "method"),
                *hp = cJSON_GetObjectItemCaseSensitive(json, "hyperparameters"),
                *split = cJSON_GetObjectItemCaseSensitive(json, "validation_split"),
                *seed = cJSON_GetObjectItemCaseSensitive(json, "seed"), *v;
    if (cJSON_IsNull(hp)) hp = NULL;
    char field[192];
    int err;

    /* method: {type, <type>: {settings..., hyperparameters?}}. OpenAI's `supervised` trains the
     * default method; its only setting is `hyperparameters`. */
    hlpt_method type = HLPT_JOB_DEFAULT_METHOD;
    const char *given = NULL;
    const cJSON *settings = NULL, *nested_hp = NULL;
    if (method && !cJSON_IsNull(method)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(method, "type");
        if (!cJSON_IsObject(method) || !cJSON_IsString(t))
            return reject(param, param_len, "method.type", why, len, HLPT_ERR_INVAL,
                          "`method` must be an object with `type`: supervised, hlpt, h2lpt, lora or prefix");
        given = t->valuestring;
        int supervised = !strcmp(given, "supervised");
        if (!strcmp(given, "dpo") || !strcmp(given, "reinforcement"))
            return reject(param, param_len, "method.type", why, len, HLPT_ERR_UNSUPPORTED,
                          "`method.type` %s is not supported: hlpt trains supervised (supervised, hlpt, h2lpt, lora, prefix)",
                          given);
        int m = supervised ? (int)HLPT_JOB_DEFAULT_METHOD : hlpt_method_from_name(given);
        if (m < 0)
            return reject(param, param_len, "method.type", why, len, HLPT_ERR_INVAL,
                          "`method.type` must be one of supervised, hlpt, h2lpt, lora, prefix");
        type = (hlpt_method)m;
        cJSON_ArrayForEach(v, method) {
            if (strcmp(v->string, "type") && strcmp(v->string, given)) {
                snprintf(field, sizeof field, "method.%.64s", v->string);
                return reject(param, param_len, field, why, len, HLPT_ERR_INVAL,
                              "unknown field `method.%.64s` (settings go in `method.%.64s`)", v->string, given);
            }
        }
        settings = cJSON_GetObjectItemCaseSensitive(method, given);
        if (cJSON_IsNull(settings)) settings = NULL;
        if (settings && !cJSON_IsObject(settings)) {
            snprintf(field, sizeof field, "method.%.64s", given);
            return reject(param, param_len, field, why, len, HLPT_ERR_INVAL, "`%s` must be an object", field);
        }
        nested_hp = settings ? cJSON_GetObjectItemCaseSensitive(settings, "hyperparameters") : NULL;
        if (cJSON_IsNull(nested_hp)) nested_hp = NULL;
        if (supervised && settings) {
            cJSON_ArrayForEach(v, settings) {
                if (strcmp(v->string, "hyperparameters")) {
                    snprintf(field, sizeof field, "method.supervised.%.64s", v->string);
                    return reject(param, param_len, field, why, len, HLPT_ERR_INVAL,
                                  "unknown field `%s` (only `hyperparameters`; adapter settings need one of hlpt's "
                                  "method types)", field);
                }
            }
            settings = NULL; /* no adapter settings in it */
        }
    }
    if (nested_hp && hp) {
        snprintf(field, sizeof field, "method.%.64s.hyperparameters", given);
        return reject(param, param_len, field, why, len, HLPT_ERR_INVAL,
                      "give `hyperparameters` once: at the top level or in `%s`", field);
    }
    if ((err = parse_plan(&spec->adapter, type, settings, n_layers, param, param_len, why, len))) return err;

    /* hyperparameters, at the top level or nested in the method. */
    if (nested_hp) {
        snprintf(field, sizeof field, "method.%.64s.hyperparameters", given);
        if ((err = parse_hyperparameters(spec, nested_hp, field, param, param_len, why, len))) return err;
    } else if (hp && (err = parse_hyperparameters(spec, hp, "hyperparameters", param, param_len, why, len))) {
        return err;
    }
    /* validation_split at the top level: the shape in which the daemon hands a job to its worker. */
    if (split && !cJSON_IsNull(split)) {
        if (spec->validation_split > 0)
            return reject(param, param_len, "validation_split", why, len, HLPT_ERR_INVAL,
                          "give `validation_split` once: at the top level or in the hyperparameters");
        if ((err = parse_split(split, "validation_split", &spec->validation_split, param, param_len, why, len)))
            return err;
    }
    /* seed: an integer a JSON number carries exactly. */
    if (seed && !cJSON_IsNull(seed)) {
        if (!cJSON_IsNumber(seed) || seed->valuedouble < 0 || seed->valuedouble > 9007199254740991.0 ||
            seed->valuedouble != floor(seed->valuedouble))
            return reject(param, param_len, "seed", why, len, HLPT_ERR_INVAL, "`seed` must be a non-negative integer");
        spec->params.seed = (uint64_t)seed->valuedouble;
    }
    return HLPT_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* The run                                                                                         */

/* Reads and tokenizes one JSONL dataset file (what: "training file", for messages). */
static int load_examples(const hlpt_model *m, const char *path, const hlpt_train_params *p, const char *what,
                         hlpt_examples *out, char *why, size_t len) {
    char *buf = NULL, sub[512] = "";
    size_t n;
    int err = hlpt_file_read(path, DATASET_MAX_BYTES, &buf, &n, sub, sizeof sub);
    if (!err) err = hlpt_examples_load(hlpt_model_tokenizer(m), hlpt_model_config(m), buf, n, p, out, sub, sizeof sub);
    free(buf);
    return err ? hlpt_why(why, len, err, "%s: %s", what, sub) : HLPT_OK;
}

/* Restores the trainer from a checkpoint file. */
static int restore(hlpt_trainer *t, const char *path, char *why, size_t len) {
    char *blob = NULL, sub[512] = "";
    size_t n;
    int err = hlpt_file_read(path, CHECKPOINT_MAX_BYTES, &blob, &n, sub, sizeof sub);
    if (!err) err = hlpt_trainer_restore(t, blob, n, sub, sizeof sub);
    free(blob);
    return err ? hlpt_why(why, len, err, "resume: %s", sub) : HLPT_OK;
}

int hlpt_finetune_run(const hlpt_model *m, const hlpt_job_spec *spec, const hlpt_finetune_hooks *hooks,
                      hlpt_finetune_result *res, char *why, size_t len) {
    static const hlpt_finetune_hooks none = {0};
    const hlpt_finetune_hooks *h = hooks ? hooks : &none;
    const hlpt_config *c = hlpt_model_config(m);
    const hlpt_train_params *p = &spec->params;
    hlpt_adapter_config cfg = spec->adapter;
    hlpt_examples train = {0}, valid = {0};
    hlpt_adapter *a = NULL;
    hlpt_trainer *t = NULL;
    char *extra = NULL, sub[512] = "";
    int err;
    *res = (hlpt_finetune_result){.best_step = -1, .best_loss = NAN};
    snprintf(cfg.base_hash, sizeof cfg.base_hash, "%s", hlpt_model_hash(m));

    if (!spec->training_file) {
        err = hlpt_why(why, len, HLPT_ERR_INVAL, "the job has no training file");
        goto out;
    }
    if ((err = load_examples(m, spec->training_file, p, "training file", &train, why, len))) goto out;
    if (spec->validation_file) {
        if ((err = load_examples(m, spec->validation_file, p, "validation file", &valid, why, len))) goto out;
    } else if (spec->validation_split > 0) {
        hlpt_examples all = train;
        memset(&train, 0, sizeof train);
        err = hlpt_examples_split(&all, spec->validation_split, p->seed, &train, &valid);
        hlpt_examples_free(&all);
        if (err) {
            hlpt_why(why, len, err, "validation_split: %s", hlpt_strerror(err));
            goto out;
        }
    }
    if ((err = hlpt_adapter_new(c, &cfg, &a, sub, sizeof sub))) {
        hlpt_why(why, len, err, "adapter: %s", sub);
        goto out;
    }
    hlpt_adapter_init(a, p->seed);
    if ((err = hlpt_trainer_new(m, a, &train, valid.n ? &valid : NULL, p, &t, why, len))) goto out;
    if (spec->resume_checkpoint && (err = restore(t, spec->resume_checkpoint, why, len))) goto out;

    hlpt_finetune_started s = {.total_steps = hlpt_trainer_total_steps(t), .trainable_params = a->n_params,
                               .examples = train.n, .truncated = train.n_truncated, .valid_examples = valid.n,
                               .resumed_from = hlpt_trainer_step(t)};
    if (h->on_started && (err = h->on_started(h->ctx, &s, why, len))) goto out;

    hlpt_train_hooks th = {.ctx = h->ctx, .on_progress = h->on_progress, .on_checkpoint = h->on_checkpoint,
                           .should_stop = h->should_stop};
    if ((err = hlpt_trainer_run(t, &th, sub, sizeof sub))) {
        hlpt_why(why, len, err, "training: %s", sub);
        goto out;
    }
    res->step = hlpt_trainer_step(t);
    if (!hlpt_trainer_finished(t)) goto out; /* stopped, its checkpoint written */

    /* The adapter goes out with the parameters of the best evaluation (the last ones without a
     * validation set). */
    int best_step;
    double best_loss;
    memcpy(a->params, hlpt_trainer_best_params(t, &best_step, &best_loss), a->n_params * sizeof(float));
    if (!isfinite(best_loss)) best_loss = NAN;
    if (!(extra = hlpt_train_params_json(p))) {
        err = hlpt_why(why, len, HLPT_ERR_NOMEM, "saving the adapter: out of memory");
        goto out;
    }
    if (h->on_adapter && (err = h->on_adapter(h->ctx, a, extra, best_step, best_loss, sub, sizeof sub))) {
        hlpt_why(why, len, err, "saving the adapter: %s", sub);
        goto out;
    }
    res->finished = 1;
    res->best_step = best_step;
    res->best_loss = best_loss;
out:
    free(extra);
    hlpt_trainer_free(t);
    hlpt_adapter_free(a);
    hlpt_examples_free(&train);
    hlpt_examples_free(&valid);
    return err;
}
