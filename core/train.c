/*
 * train.c - the training loop (see train.h for the determinism contract).
 *
 * One optimizer step takes batch_size examples of the epoch's permutation, runs them as micro-batches
 * of micro_batch packed sequences through hlpt_model_train_step (gradients accumulate into one
 * arena), scales by 1/targets-of-the-step so the loss is the mean over every target token of the
 * batch, clips by global norm, and applies AdamW to the flat parameter arena.
 */
#include "hlpt/train.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hlpt/err.h"
#include "hlpt/safetensors.h"
#include "rng.h"

/* ---------------------------------------------------------------------------------------------- */
/* Hyperparameters                                                                                 */

void hlpt_train_params_defaults(hlpt_train_params *p) {
    memset(p, 0, sizeof *p);
    p->n_epochs = 3;
    p->batch_size = 16;
    p->micro_batch = 4;
    p->learning_rate = 3e-3f;
    p->warmup_steps = 100;
    p->schedule = HLPT_SCHED_LINEAR;
    p->beta1 = 0.9f;
    p->beta2 = 0.999f;
    p->eps = 1e-8f;
    p->max_grad_norm = 1.0f;
    p->max_length = 256;
    p->seed = 42;
    p->log_every = 1;
}

static const char *const sched_names[] = {"linear", "cosine", "constant"};

/* The table of hyperparameters: JSON key, kind, where it goes, and its bounds. */
typedef enum { HP_INT, HP_FLOAT, HP_BOOL, HP_SCHED, HP_LR_MULT } hp_kind;
typedef struct {
    const char *key;
    hp_kind kind;
    size_t off;
    double lo, hi;
} hp_entry;

#define HP(key, kind, field, lo, hi) {key, kind, offsetof(hlpt_train_params, field), lo, hi}
static const hp_entry hp_table[] = {
    HP("n_epochs", HP_INT, n_epochs, 1, 1000),
    HP("batch_size", HP_INT, batch_size, 1, 4096),
    HP("micro_batch_size", HP_INT, micro_batch, 1, 4096),
    HP("learning_rate", HP_FLOAT, learning_rate, 1e-9, 10),
    HP("learning_rate_multiplier", HP_LR_MULT, learning_rate, 1e-6, 1000),
    HP("warmup_steps", HP_INT, warmup_steps, 0, 1e7),
    HP("lr_scheduler", HP_SCHED, schedule, 0, 0),
    HP("weight_decay", HP_FLOAT, weight_decay, 0, 10),
    HP("max_grad_norm", HP_FLOAT, max_grad_norm, 0, 1e6),
    HP("max_length", HP_INT, max_length, 2, 1 << 16),
    HP("train_on_inputs", HP_BOOL, train_on_inputs, 0, 1),
    HP("max_steps", HP_INT, max_steps, 0, 1e8),
    HP("log_every", HP_INT, log_every, 1, 1e6),
    HP("eval_every", HP_INT, eval_every, 0, 1e7),
    HP("save_every", HP_INT, save_every, 0, 1e7),
    HP("recompute", HP_BOOL, recompute, 0, 1),
    HP("early_stopping_patience", HP_INT, patience, 0, 1e6),
    HP("early_stopping_min_delta", HP_FLOAT, min_delta, 0, 1e6),
};
#undef HP

int hlpt_train_params_apply(hlpt_train_params *p, const cJSON *json, char *why, size_t len) {
    if (!cJSON_IsObject(json)) return hlpt_why(why, len, HLPT_ERR_INVAL, "hyperparameters: expected an object");
    const cJSON *v;
    cJSON_ArrayForEach(v, json) {
        const hp_entry *e = NULL;
        for (size_t i = 0; i < sizeof hp_table / sizeof *hp_table; i++)
            if (!strcmp(hp_table[i].key, v->string)) e = &hp_table[i];
        if (!e) return hlpt_why(why, len, HLPT_ERR_INVAL, "hyperparameters.%.64s: unknown hyperparameter", v->string);
        if (cJSON_IsString(v) && !strcmp(v->valuestring, "auto")) continue;
        char *field = (char *)p + e->off;
        switch (e->kind) {
        case HP_BOOL:
            if (!cJSON_IsBool(v)) return hlpt_why(why, len, HLPT_ERR_INVAL, "hyperparameters.%s: expected true or false", e->key);
            *(int *)field = cJSON_IsTrue(v);
            break;
        case HP_SCHED: {
            int k = -1;
            for (int i = 0; i < 3 && cJSON_IsString(v); i++)
                if (!strcmp(sched_names[i], v->valuestring)) k = i;
            if (k < 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "hyperparameters.%s: expected linear, cosine or constant", e->key);
            *(hlpt_sched *)field = (hlpt_sched)k;
            break;
        }
        default:
            if (!cJSON_IsNumber(v)) return hlpt_why(why, len, HLPT_ERR_INVAL, "hyperparameters.%s: expected a number", e->key);
            if (e->kind == HP_INT && v->valuedouble != floor(v->valuedouble))
                return hlpt_why(why, len, HLPT_ERR_INVAL, "hyperparameters.%s: expected an integer", e->key);
            if (!(v->valuedouble >= e->lo && v->valuedouble <= e->hi))
                return hlpt_why(why, len, HLPT_ERR_RANGE, "hyperparameters.%s: %g is outside [%g, %g]", e->key,
                                v->valuedouble, e->lo, e->hi);
            if (e->kind == HP_INT) *(int *)field = (int)v->valuedouble;
            else if (e->kind == HP_FLOAT) *(float *)field = (float)v->valuedouble;
            else *(float *)field = 3e-3f * (float)v->valuedouble;
        }
    }
    if (p->micro_batch > p->batch_size) p->micro_batch = p->batch_size;
    if (p->batch_size % p->micro_batch)
        return hlpt_why(why, len, HLPT_ERR_INVAL, "hyperparameters.batch_size: %d is not a multiple of micro_batch_size %d",
                        p->batch_size, p->micro_batch);
    return HLPT_OK;
}

char *hlpt_train_params_json(const hlpt_train_params *p) {
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < sizeof hp_table / sizeof *hp_table; i++) {
        const hp_entry *e = &hp_table[i];
        const char *field = (const char *)p + e->off;
        switch (e->kind) {
        case HP_INT: cJSON_AddNumberToObject(o, e->key, *(const int *)field); break;
        case HP_FLOAT: cJSON_AddNumberToObject(o, e->key, *(const float *)field); break;
        case HP_BOOL: cJSON_AddBoolToObject(o, e->key, *(const int *)field); break;
        case HP_SCHED: cJSON_AddStringToObject(o, e->key, sched_names[*(const hlpt_sched *)field]); break;
        case HP_LR_MULT: break;
        }
    }
    cJSON_AddNumberToObject(o, "seed", (double)p->seed);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ---------------------------------------------------------------------------------------------- */
/* Examples                                                                                        */

void hlpt_examples_free(hlpt_examples *e) {
    if (!e) return;
    free(e->off);
    free(e->ids);
    free(e->labels);
    memset(e, 0, sizeof *e);
}

int hlpt_examples_add(hlpt_examples *e, const int *prompt, int n_prompt, const int *completion,
                      int n_completion, int bos, int eos, int max_length, int train_on_inputs) {
    int total = (bos >= 0) + n_prompt + n_completion + (eos >= 0);
    int n = total < max_length ? total : max_length;
    int base = e->n ? e->off[e->n] : 0;
    int *off = realloc(e->off, sizeof(int) * (size_t)(e->n + 2));
    if (!off) return HLPT_ERR_NOMEM;
    e->off = off;
    if (e->n == 0) e->off[0] = 0;
    int *ids = realloc(e->ids, sizeof(int) * (size_t)(base + n));
    if (!ids) return HLPT_ERR_NOMEM;
    e->ids = ids;
    int *labels = realloc(e->labels, sizeof(int) * (size_t)(base + n));
    if (!labels) return HLPT_ERR_NOMEM;
    e->labels = labels;
    int k = 0, targets = 0;
#define PUT(id, target)                                                      \
    if (k < n) {                                                             \
        ids[base + k] = (id);                                                \
        labels[base + k] = (target) ? (id) : -100;                           \
        targets += (target) != 0;                                            \
        k++;                                                                 \
    }
    if (bos >= 0) PUT(bos, 0);
    for (int i = 0; i < n_prompt; i++) PUT(prompt[i], train_on_inputs);
    for (int i = 0; i < n_completion; i++) PUT(completion[i], 1);
    if (eos >= 0) PUT(eos, 1);
#undef PUT
    e->off[e->n + 1] = base + n;
    e->n++;
    e->n_targets += targets;
    if (total > max_length) e->n_truncated++;
    return HLPT_OK;
}

/* Appends example i of src to dst. */
static int copy_example(hlpt_examples *dst, const hlpt_examples *src, int i) {
    int a = src->off[i], b = src->off[i + 1], base = dst->n ? dst->off[dst->n] : 0;
    int *off = realloc(dst->off, sizeof(int) * (size_t)(dst->n + 2));
    if (!off) return HLPT_ERR_NOMEM;
    dst->off = off;
    if (dst->n == 0) dst->off[0] = 0;
    int *ids = realloc(dst->ids, sizeof(int) * (size_t)(base + b - a));
    if (!ids) return HLPT_ERR_NOMEM;
    dst->ids = ids;
    int *labels = realloc(dst->labels, sizeof(int) * (size_t)(base + b - a));
    if (!labels) return HLPT_ERR_NOMEM;
    dst->labels = labels;
    memcpy(ids + base, src->ids + a, sizeof(int) * (size_t)(b - a));
    memcpy(labels + base, src->labels + a, sizeof(int) * (size_t)(b - a));
    for (int k = a; k < b; k++) dst->n_targets += src->labels[k] != -100;
    dst->off[++dst->n] = base + b - a;
    return HLPT_OK;
}

int hlpt_examples_split(const hlpt_examples *src, double frac, uint64_t seed, hlpt_examples *train,
                        hlpt_examples *valid) {
    int n = src->n, k = (int)lround(frac * n);
    if (n >= 2 && k < 1) k = 1;
    if (k >= n) k = n - 1;
    int *perm = malloc(sizeof(int) * (size_t)(n + 1));
    if (!perm) return HLPT_ERR_NOMEM;
    uint64_t st = rng_hash4(seed, 0x73706c74ULL, 0, 0);
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_next(&st) % (uint64_t)(i + 1)), tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    /* Keep file order inside each part: mark the held-out ones, then walk in order. */
    unsigned char *held = calloc((size_t)n + 1, 1);
    int err = held ? HLPT_OK : HLPT_ERR_NOMEM;
    for (int i = 0; !err && i < k; i++) held[perm[i]] = 1;
    for (int i = 0; !err && i < n; i++) err = copy_example(held[i] ? valid : train, src, i);
    free(held);
    free(perm);
    return err;
}

/* ---------------------------------------------------------------------------------------------- */
/* Trainer                                                                                         */

struct hlpt_trainer {
    const hlpt_model *m;
    hlpt_adapter *a;
    const hlpt_examples *train, *valid;
    hlpt_train_params p;
    hlpt_runner *r;
    float *grads, *adam_m, *adam_v, *best; /* [n_params] each */
    int *perm;                  /* [train->n] this epoch's order */
    int perm_epoch;             /* epoch perm was drawn for, -1 none */
    int *mb_ids, *mb_labels, *mb_lens; /* micro-batch packing */
    int step, total_steps, steps_per_epoch, warmup;
    int best_step, bad_evals, finished;
    double best_loss;
    long tokens_seen;
    double elapsed_s;
};

void hlpt_trainer_free(hlpt_trainer *t) {
    if (!t) return;
    hlpt_runner_free(t->r);
    free(t->grads);
    free(t->adam_m);
    free(t->adam_v);
    free(t->best);
    free(t->perm);
    free(t->mb_ids);
    free(t->mb_labels);
    free(t->mb_lens);
    free(t);
}

int hlpt_trainer_new(const hlpt_model *m, hlpt_adapter *a, const hlpt_examples *train,
                     const hlpt_examples *valid, const hlpt_train_params *p, hlpt_trainer **out,
                     char *why, size_t len) {
    *out = NULL;
    if (!train || train->n == 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "the training set is empty");
    if (train->n_targets == 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "the training set has no target tokens");
    if (p->micro_batch < 1 || p->batch_size < p->micro_batch || p->batch_size % p->micro_batch)
        return hlpt_why(why, len, HLPT_ERR_INVAL, "batch_size must be a multiple of micro_batch_size");
    hlpt_trainer *t = calloc(1, sizeof *t);
    if (!t) return HLPT_ERR_NOMEM;
    t->m = m;
    t->a = a;
    t->train = train;
    t->valid = valid && valid->n ? valid : NULL;
    t->p = *p;
    t->perm_epoch = -1;
    t->best_step = -1;
    t->best_loss = INFINITY;
    t->steps_per_epoch = (train->n + p->batch_size - 1) / p->batch_size;
    t->total_steps = t->steps_per_epoch * p->n_epochs;
    if (p->max_steps > 0 && p->max_steps < t->total_steps) t->total_steps = p->max_steps;
    t->warmup = p->warmup_steps < t->total_steps / 10 ? p->warmup_steps : t->total_steps / 10;
    size_t n = a->n_params + 1;
    int max_tokens = 0;
    for (int i = 0; i < train->n; i++)
        if (train->off[i + 1] - train->off[i] > max_tokens) max_tokens = train->off[i + 1] - train->off[i];
    for (int i = 0; t->valid && i < t->valid->n; i++)
        if (t->valid->off[i + 1] - t->valid->off[i] > max_tokens) max_tokens = t->valid->off[i + 1] - t->valid->off[i];
    size_t mb = (size_t)max_tokens * p->micro_batch;
    t->grads = calloc(n, sizeof(float));
    t->adam_m = calloc(n, sizeof(float));
    t->adam_v = calloc(n, sizeof(float));
    t->best = malloc(n * sizeof(float));
    t->perm = malloc(sizeof(int) * (size_t)train->n);
    t->mb_ids = malloc(sizeof(int) * mb);
    t->mb_labels = malloc(sizeof(int) * mb);
    t->mb_lens = malloc(sizeof(int) * (size_t)p->micro_batch);
    int err = t->grads && t->adam_m && t->adam_v && t->best && t->perm && t->mb_ids && t->mb_labels && t->mb_lens
                  ? hlpt_runner_new(m, &t->r)
                  : HLPT_ERR_NOMEM;
    if (err) {
        hlpt_trainer_free(t);
        return err;
    }
    memcpy(t->best, a->params, a->n_params * sizeof(float));
    *out = t;
    return HLPT_OK;
}

int hlpt_trainer_total_steps(const hlpt_trainer *t) { return t->total_steps; }
int hlpt_trainer_step(const hlpt_trainer *t) { return t->step; }
int hlpt_trainer_finished(const hlpt_trainer *t) { return t->finished; }

/* The epoch's order: a Fisher-Yates shuffle seeded by (seed, epoch) alone. */
static void draw_perm(hlpt_trainer *t, int epoch) {
    if (t->perm_epoch == epoch) return;
    uint64_t st = rng_hash4(t->p.seed, 0x7065726dULL, (uint64_t)epoch, 0);
    for (int i = 0; i < t->train->n; i++) t->perm[i] = i;
    for (int i = t->train->n - 1; i > 0; i--) {
        int j = (int)(rng_next(&st) % (uint64_t)(i + 1));
        int tmp = t->perm[i];
        t->perm[i] = t->perm[j];
        t->perm[j] = tmp;
    }
    t->perm_epoch = epoch;
}

static double lr_at(const hlpt_trainer *t, int step) {
    double peak = t->p.learning_rate;
    if (step < t->warmup) return peak * (step + 1) / t->warmup;
    if (t->p.schedule == HLPT_SCHED_CONSTANT) return peak;
    double span = t->total_steps - t->warmup, done = step - t->warmup;
    double frac = span > 0 ? done / span : 1;
    if (t->p.schedule == HLPT_SCHED_COSINE) return peak * 0.5 * (1 + cos(M_PI * frac));
    return peak * (1 - frac);
}

/* Packs examples idx[0..n) of set e into the micro-batch buffers. */
static int pack(hlpt_trainer *t, const hlpt_examples *e, const int *idx, int n) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        int a = e->off[idx[i]], b = e->off[idx[i] + 1];
        memcpy(t->mb_ids + k, e->ids + a, sizeof(int) * (size_t)(b - a));
        memcpy(t->mb_labels + k, e->labels + a, sizeof(int) * (size_t)(b - a));
        t->mb_lens[i] = b - a;
        k += b - a;
    }
    return k;
}

/* Targets of an example under the HF shift: labels[1..n). */
static int example_targets(const hlpt_examples *e, int i) {
    int c = 0;
    for (int k = e->off[i] + 1; k < e->off[i + 1]; k++) c += e->labels[k] != -100;
    return c;
}

int hlpt_trainer_evaluate(hlpt_trainer *t, double *loss, double *acc, char *why, size_t len) {
    *loss = *acc = NAN;
    if (!t->valid) return HLPT_OK;
    double sum = 0;
    long targets = 0, correct = 0;
    hlpt_train_opts o = {.train = 0};
    int idx[4096];
    for (int i = 0; i < t->valid->n; i += t->p.micro_batch) {
        int n = t->valid->n - i < t->p.micro_batch ? t->valid->n - i : t->p.micro_batch;
        for (int k = 0; k < n; k++) idx[k] = i + k;
        pack(t, t->valid, idx, n);
        hlpt_loss l;
        int err = hlpt_model_train_step(t->r, t->a, t->mb_ids, t->mb_labels, t->mb_lens, n, &o, NULL, 0, &l, why, len);
        if (err) return err;
        sum += l.loss_sum;
        targets += l.n_targets;
        correct += l.n_correct;
    }
    if (targets) {
        *loss = sum / targets;
        *acc = (double)correct / targets;
    }
    return HLPT_OK;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One optimizer step; fills pr with its figures. */
static int train_one_step(hlpt_trainer *t, hlpt_train_progress *pr, char *why, size_t len) {
    const hlpt_train_params *p = &t->p;
    int epoch = t->step / t->steps_per_epoch, in_epoch = t->step % t->steps_per_epoch;
    draw_perm(t, epoch);
    int first = in_epoch * p->batch_size;
    int count = t->train->n - first < p->batch_size ? t->train->n - first : p->batch_size;
    const int *idx = t->perm + first;
    long targets = 0, tokens = 0;
    for (int i = 0; i < count; i++) {
        targets += example_targets(t->train, idx[i]);
        tokens += t->train->off[idx[i] + 1] - t->train->off[idx[i]];
    }
    size_t n = t->a->n_params;
    memset(t->grads, 0, n * sizeof(float));
    double t0 = now_s(), loss_sum = 0;
    hlpt_train_opts o = {.train = 1, .recompute = p->recompute};
    for (int mb = 0; mb * p->micro_batch < count; mb++) {
        int k = count - mb * p->micro_batch < p->micro_batch ? count - mb * p->micro_batch : p->micro_batch;
        pack(t, t->train, idx + mb * p->micro_batch, k);
        o.dropout_seed = rng_hash4(p->seed, 0x64726f70ULL, (uint64_t)t->step, (uint64_t)mb);
        hlpt_loss l;
        int err = hlpt_model_train_step(t->r, t->a, t->mb_ids, t->mb_labels, t->mb_lens, k, &o, t->grads,
                                        targets ? 1.0f / (float)targets : 0.0f, &l, why, len);
        if (err) return err;
        loss_sum += l.loss_sum;
    }
    /* Global-norm clipping, then AdamW with decoupled weight decay. */
    double norm2 = 0;
    for (size_t i = 0; i < n; i++) norm2 += (double)t->grads[i] * t->grads[i];
    double norm = sqrt(norm2), clip = 1;
    if (!isfinite(norm)) return hlpt_why(why, len, HLPT_ERR_RANGE, "step %d: the gradient is not finite", t->step + 1);
    if (p->max_grad_norm > 0 && norm > p->max_grad_norm) clip = p->max_grad_norm / norm;
    double lr = lr_at(t, t->step);
    int s = t->step + 1;
    double bc1 = 1 - pow(p->beta1, s), bc2 = 1 - pow(p->beta2, s);
    float *w = t->a->params;
    for (size_t i = 0; i < n; i++) {
        float g = (float)(t->grads[i] * clip);
        t->adam_m[i] = p->beta1 * t->adam_m[i] + (1 - p->beta1) * g;
        t->adam_v[i] = p->beta2 * t->adam_v[i] + (1 - p->beta2) * g * g;
        double mh = t->adam_m[i] / bc1, vh = t->adam_v[i] / bc2;
        w[i] -= (float)(lr * (mh / (sqrt(vh) + p->eps) + p->weight_decay * w[i]));
    }
    t->step++;
    double dt = now_s() - t0;
    t->elapsed_s += dt;
    t->tokens_seen += tokens;
    *pr = (hlpt_train_progress){.step = t->step, .total_steps = t->total_steps, .epoch = epoch,
                                .train_loss = targets ? loss_sum / targets : NAN,
                                .valid_loss = NAN, .valid_acc = NAN, .learning_rate = lr,
                                .grad_norm = norm, .tokens_per_s = dt > 0 ? tokens / dt : 0,
                                .tokens_seen = t->tokens_seen, .elapsed_s = t->elapsed_s};
    return HLPT_OK;
}

static int save_checkpoint(hlpt_trainer *t, const hlpt_train_hooks *h, const hlpt_train_progress *pr,
                           char *why, size_t len) {
    if (!h || !h->on_checkpoint) return HLPT_OK;
    void *blob;
    size_t n;
    int err = hlpt_trainer_checkpoint(t, &blob, &n, why, len);
    if (err) return err;
    if (h->on_checkpoint(h->ctx, t->step, pr, blob, n)) err = hlpt_why(why, len, HLPT_ERR_IO, "storing the checkpoint of step %d failed", t->step);
    free(blob);
    return err;
}

int hlpt_trainer_run(hlpt_trainer *t, const hlpt_train_hooks *h, char *why, size_t len) {
    const hlpt_train_params *p = &t->p;
    while (t->step < t->total_steps && !t->finished) {
        if (h && h->should_stop && h->should_stop(h->ctx)) {
            hlpt_train_progress pr = {.step = t->step, .total_steps = t->total_steps, .valid_loss = NAN,
                                      .valid_acc = NAN, .train_loss = NAN};
            return save_checkpoint(t, h, &pr, why, len);
        }
        hlpt_train_progress pr;
        int err = train_one_step(t, &pr, why, len);
        if (err) return err;
        int epoch_end = t->step % t->steps_per_epoch == 0 || t->step == t->total_steps;
        int eval = t->valid && (p->eval_every ? t->step % p->eval_every == 0 || t->step == t->total_steps : epoch_end);
        if (eval) {
            if ((err = hlpt_trainer_evaluate(t, &pr.valid_loss, &pr.valid_acc, why, len))) return err;
            if (pr.valid_loss < t->best_loss - p->min_delta) {
                t->best_loss = pr.valid_loss;
                t->best_step = t->step;
                t->bad_evals = 0;
                memcpy(t->best, t->a->params, t->a->n_params * sizeof(float));
            } else if (p->patience && ++t->bad_evals >= p->patience) {
                t->finished = 1;
            }
        }
        if (h && h->on_progress && (eval || t->step % p->log_every == 0 || t->step == t->total_steps))
            h->on_progress(h->ctx, &pr);
        int save = p->save_every ? t->step % p->save_every == 0 : epoch_end;
        if (save || t->step == t->total_steps || t->finished) {
            if ((err = save_checkpoint(t, h, &pr, why, len))) return err;
        }
    }
    if (!t->valid) {
        memcpy(t->best, t->a->params, t->a->n_params * sizeof(float));
        t->best_step = t->step;
    }
    t->finished = 1;
    return HLPT_OK;
}

const float *hlpt_trainer_best_params(const hlpt_trainer *t, int *best_step, double *best_loss) {
    if (best_step) *best_step = t->best_step;
    if (best_loss) *best_loss = t->best_loss;
    return t->best;
}

/* ---------------------------------------------------------------------------------------------- */
/* Checkpoints                                                                                     */

int hlpt_trainer_checkpoint(hlpt_trainer *t, void **blob, size_t *n, char *why, size_t len) {
    *blob = NULL;
    hlpt_st_writer *w = NULL;
    int64_t shape[1] = {(int64_t)t->a->n_params};
    char step[32], best_step[32], best_loss[48], bad[32], tokens[32], elapsed[48];
    snprintf(step, sizeof step, "%d", t->step);
    snprintf(best_step, sizeof best_step, "%d", t->best_step);
    snprintf(best_loss, sizeof best_loss, "%.17g", t->best_loss);
    snprintf(bad, sizeof bad, "%d", t->bad_evals);
    snprintf(tokens, sizeof tokens, "%ld", t->tokens_seen);
    snprintf(elapsed, sizeof elapsed, "%.17g", t->elapsed_s);
    char *cfg = hlpt_adapter_config_json(&t->a->cfg);
    int err = cfg ? hlpt_st_writer_new(&w) : HLPT_ERR_NOMEM;
    if (!err) err = hlpt_st_writer_add(w, "params", HLPT_DTYPE_F32, 1, shape, t->a->params);
    if (!err) err = hlpt_st_writer_add(w, "adam_m", HLPT_DTYPE_F32, 1, shape, t->adam_m);
    if (!err) err = hlpt_st_writer_add(w, "adam_v", HLPT_DTYPE_F32, 1, shape, t->adam_v);
    if (!err) err = hlpt_st_writer_add(w, "best_params", HLPT_DTYPE_F32, 1, shape, t->best);
    const char *meta[][2] = {{"step", step}, {"best_step", best_step}, {"best_loss", best_loss},
                             {"bad_evals", bad}, {"tokens_seen", tokens}, {"elapsed_s", elapsed},
                             {"adapter_config", cfg}, {"format", "hlpt-checkpoint-1"}};
    for (size_t i = 0; !err && i < sizeof meta / sizeof *meta; i++) err = hlpt_st_writer_metadata(w, meta[i][0], meta[i][1]);
    if (!err) err = hlpt_st_writer_to_mem(w, blob, n, why, len);
    hlpt_st_writer_free(w);
    free(cfg);
    return err;
}

static int meta_num(const hlpt_st *st, const char *key, double *out, char *why, size_t len) {
    const char *s = hlpt_st_metadata(st, key);
    char *end;
    if (!s) return hlpt_why(why, len, HLPT_ERR_FORMAT, "checkpoint: metadata %s is missing", key);
    *out = strtod(s, &end);
    if (end == s) return hlpt_why(why, len, HLPT_ERR_FORMAT, "checkpoint: metadata %s is not a number", key);
    return HLPT_OK;
}

int hlpt_trainer_restore(hlpt_trainer *t, const void *blob, size_t n, char *why, size_t len) {
    hlpt_st *st = NULL;
    int err = hlpt_st_open_mem(blob, n, &st, why, len);
    if (err) return err;
    const char *fmt = hlpt_st_metadata(st, "format");
    if (!fmt || strcmp(fmt, "hlpt-checkpoint-1")) {
        hlpt_st_close(st);
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "not an hlpt checkpoint");
    }
    int64_t shape[1] = {(int64_t)t->a->n_params};
    double step, best_step, best_loss, bad, tokens, elapsed;
    if ((err = meta_num(st, "step", &step, why, len)) || (err = meta_num(st, "best_step", &best_step, why, len)) ||
        (err = meta_num(st, "best_loss", &best_loss, why, len)) || (err = meta_num(st, "bad_evals", &bad, why, len)) ||
        (err = meta_num(st, "tokens_seen", &tokens, why, len)) || (err = meta_num(st, "elapsed_s", &elapsed, why, len)))
        goto out;
    if (step < 0 || step > t->total_steps) {
        err = hlpt_why(why, len, HLPT_ERR_MISMATCH, "checkpoint step %g does not fit this run of %d steps", step, t->total_steps);
        goto out;
    }
    /* Shapes are checked by name; a checkpoint of another plan fails here. */
    if ((err = hlpt_st_get_f32(st, "params", 1, shape, t->a->params, why, len)) ||
        (err = hlpt_st_get_f32(st, "adam_m", 1, shape, t->adam_m, why, len)) ||
        (err = hlpt_st_get_f32(st, "adam_v", 1, shape, t->adam_v, why, len)) ||
        (err = hlpt_st_get_f32(st, "best_params", 1, shape, t->best, why, len))) {
        if (err == HLPT_ERR_MISMATCH || err == HLPT_ERR_NOENT)
            err = hlpt_why(why, len, HLPT_ERR_MISMATCH, "the checkpoint belongs to another adapter plan");
        goto out;
    }
    t->step = (int)step;
    t->best_step = (int)best_step;
    t->best_loss = best_loss;
    t->bad_evals = (int)bad;
    t->tokens_seen = (long)tokens;
    t->elapsed_s = elapsed;
    t->finished = 0;
out:
    hlpt_st_close(st);
    return err;
}

int hlpt_checkpoint_adapter(const void *blob, size_t n, const hlpt_config *c, hlpt_adapter **out, char *why,
                            size_t len) {
    *out = NULL;
    hlpt_st *st = NULL;
    hlpt_adapter *a = NULL;
    cJSON *j = NULL;
    int err = hlpt_st_open_mem(blob, n, &st, why, len);
    if (err) return err;
    const char *fmt = hlpt_st_metadata(st, "format"), *text = hlpt_st_metadata(st, "adapter_config");
    if (!fmt || strcmp(fmt, "hlpt-checkpoint-1") || !text) {
        err = hlpt_why(why, len, HLPT_ERR_FORMAT, "not an hlpt checkpoint");
        goto out;
    }
    j = cJSON_Parse(text);
    const cJSON *m = j ? cJSON_GetObjectItemCaseSensitive(j, "method") : NULL;
    int method = cJSON_IsString(m) ? hlpt_method_from_name(m->valuestring) : -1;
    if (method < 0) {
        err = hlpt_why(why, len, HLPT_ERR_FORMAT, "checkpoint: adapter_config names no method");
        goto out;
    }
    hlpt_adapter_config cfg;
    hlpt_adapter_config_defaults(&cfg, (hlpt_method)method, c->n_layers);
    if ((err = hlpt_adapter_config_apply(&cfg, j, c->n_layers, 1, why, len)) ||
        (err = hlpt_adapter_new(c, &cfg, &a, why, len)))
        goto out;
    int64_t shape[1] = {(int64_t)a->n_params};
    if ((err = hlpt_st_get_f32(st, "params", 1, shape, a->params, why, len)) == HLPT_ERR_MISMATCH)
        err = hlpt_why(why, len, HLPT_ERR_MISMATCH, "checkpoint: its parameters do not fit its adapter plan");
out:
    cJSON_Delete(j);
    hlpt_st_close(st);
    if (err) {
        hlpt_adapter_free(a);
        return err;
    }
    *out = a;
    return HLPT_OK;
}
