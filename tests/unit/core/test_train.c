/*
 * The training loop on the fixture base: a small adapter learns a synthetic task (validation loss
 * falls clearly), runs are bit-for-bit deterministic, a run resumed from a checkpoint ends exactly
 * where an uninterrupted one does, whole-model gradients agree with central finite differences, and
 * bad settings are refused with the field named.
 */
#include "hlpt/train.h"

#include <cJSON.h>
#include <math.h>

#include "../check_main.h"
#include "../ref_util.h"
#include "hlpt/err.h"

/* The task: after a prompt of random tokens, answer the last prompt token, then 500 501. */
static void make_set(hlpt_examples *e, int n, uint64_t seed) {
    uint64_t st = seed;
    for (int i = 0; i < n; i++) {
        int prompt[6], answer[3];
        for (int k = 0; k < 6; k++) {
            st = st * 6364136223846793005ULL + 1442695040888963407ULL;
            prompt[k] = 300 + (int)((st >> 33) % 100);
        }
        answer[0] = prompt[5];
        answer[1] = 500;
        answer[2] = 501;
        ck_assert_int_eq(hlpt_examples_add(e, prompt, 6, answer, 3, 1, 2, 64, 0), 0);
    }
}

static hlpt_adapter *new_adapter(hlpt_model *m, hlpt_method method, uint64_t seed) {
    hlpt_adapter_config c;
    hlpt_adapter_config_defaults(&c, method, 8);
    c.r = 4;
    c.n_virtual = 4;
    hlpt_adapter *a;
    char why[256];
    ck_assert_int_eq(hlpt_adapter_new(hlpt_model_config(m), &c, &a, why, sizeof why), 0);
    hlpt_adapter_init(a, seed);
    return a;
}

static void small_params(hlpt_train_params *p) {
    hlpt_train_params_defaults(p);
    p->n_epochs = 4;
    p->batch_size = 8;
    p->micro_batch = 4;
    p->learning_rate = 1e-2f;
    p->warmup_steps = 2;
}

START_TEST(test_examples_labels) {
    hlpt_examples e = {0};
    int prompt[3] = {10, 11, 12}, comp[2] = {20, 21};
    ck_assert_int_eq(hlpt_examples_add(&e, prompt, 3, comp, 2, 1, 2, 100, 0), 0);
    int want_ids[] = {1, 10, 11, 12, 20, 21, 2}, want_labels[] = {-100, -100, -100, -100, 20, 21, 2};
    ck_assert_int_eq(e.off[1], 7);
    for (int i = 0; i < 7; i++) {
        ck_assert_int_eq(e.ids[i], want_ids[i]);
        ck_assert_int_eq(e.labels[i], want_labels[i]);
    }
    ck_assert_int_eq(e.n_targets, 3);
    /* Truncation at 5 tokens keeps bos + 3 prompt + 1 completion. */
    ck_assert_int_eq(hlpt_examples_add(&e, prompt, 3, comp, 2, 1, 2, 5, 1), 0);
    ck_assert_int_eq(e.off[2] - e.off[1], 5);
    ck_assert_int_eq(e.n_truncated, 1);
    ck_assert_int_eq(e.labels[e.off[1] + 1], 10); /* train_on_inputs */
    hlpt_examples_free(&e);
}
END_TEST

START_TEST(test_learns_synthetic_task) {
    hlpt_model *m = fixture_model("llama2-mha-f32");
    hlpt_examples train = {0}, valid = {0};
    make_set(&train, 32, 1);
    make_set(&valid, 8, 2);
    hlpt_adapter *a = new_adapter(m, _i == 0 ? HLPT_METHOD_H2LPT : HLPT_METHOD_LORA, 3);
    hlpt_train_params p;
    small_params(&p);
    p.n_epochs = 12;
    p.learning_rate = 2e-2f;
    hlpt_trainer *t;
    char why[256];
    ck_assert_int_eq(hlpt_trainer_new(m, a, &train, &valid, &p, &t, why, sizeof why), 0);
    double before, acc0, after, acc1;
    ck_assert_int_eq(hlpt_trainer_evaluate(t, &before, &acc0, why, sizeof why), 0);
    ck_assert_msg(hlpt_trainer_run(t, NULL, why, sizeof why) == 0, "%s", why);
    ck_assert_int_eq(hlpt_trainer_step(t), hlpt_trainer_total_steps(t));
    ck_assert_int_eq(hlpt_trainer_evaluate(t, &after, &acc1, why, sizeof why), 0);
    printf("%s: valid loss %.3f -> %.3f, token accuracy %.2f -> %.2f in %d steps\n", _i == 0 ? "h2lpt" : "lora",
           before, after, acc0, acc1, hlpt_trainer_total_steps(t));
    /* The constant tokens and EOS are learnt: three of four targets. */
    ck_assert_msg(after < 0.6 * before, "validation loss fell only from %.3f to %.3f", before, after);
    ck_assert_msg(acc1 >= 0.5 && acc1 > acc0, "token accuracy %.2f -> %.2f", acc0, acc1);
    hlpt_trainer_free(t);
    hlpt_adapter_free(a);
    hlpt_examples_free(&train);
    hlpt_examples_free(&valid);
    hlpt_model_close(m);
}
END_TEST

typedef struct {
    void *blob;
    size_t n;
    int at;
    double losses[64];
    int n_losses;
} capture;

static int keep_checkpoint(void *ctx, int step, const hlpt_train_progress *p, const void *blob, size_t n) {
    capture *c = ctx;
    if (step != c->at) return 0;
    c->blob = malloc(n);
    memcpy(c->blob, blob, n);
    c->n = n;
    return 0;
}

static void record(void *ctx, const hlpt_train_progress *p) {
    capture *c = ctx;
    if (c->n_losses < 64) c->losses[c->n_losses++] = p->train_loss;
}

/* Two runs with one seed are identical; a run stopped at step 5 and resumed from its checkpoint
 * ends with exactly the parameters of the uninterrupted run. Dropout is on: its masks must resume
 * too. */
START_TEST(test_deterministic_and_resume_exact) {
    hlpt_model *m = fixture_model("llama2-mha-f32");
    hlpt_examples train = {0};
    make_set(&train, 24, 5);
    hlpt_train_params p;
    small_params(&p);
    p.n_epochs = 3;
    p.save_every = 1;
    char why[256];
    hlpt_adapter *a1 = new_adapter(m, HLPT_METHOD_HLPT, 9), *a2 = new_adapter(m, HLPT_METHOD_HLPT, 9),
                 *a3 = new_adapter(m, HLPT_METHOD_HLPT, 9);
    ck_assert(a1->cfg.dropout > 0);
    hlpt_trainer *t1, *t2, *t3;
    capture c1 = {.at = 5}, c2 = {.at = -1};
    hlpt_train_hooks h1 = {.ctx = &c1, .on_checkpoint = keep_checkpoint, .on_progress = record};
    hlpt_train_hooks h2 = {.ctx = &c2, .on_checkpoint = keep_checkpoint, .on_progress = record};
    ck_assert_int_eq(hlpt_trainer_new(m, a1, &train, NULL, &p, &t1, why, sizeof why), 0);
    ck_assert_int_eq(hlpt_trainer_new(m, a2, &train, NULL, &p, &t2, why, sizeof why), 0);
    ck_assert_int_eq(hlpt_trainer_run(t1, &h1, why, sizeof why), 0);
    ck_assert_int_eq(hlpt_trainer_run(t2, &h2, why, sizeof why), 0);
    ck_assert_int_eq(c1.n_losses, c2.n_losses);
    for (int i = 0; i < c1.n_losses; i++) ck_assert(c1.losses[i] == c2.losses[i]);
    ck_assert_int_eq(memcmp(a1->params, a2->params, a1->n_params * sizeof(float)), 0);
    printf("two runs: %d identical losses, identical parameters\n", c1.n_losses);

    ck_assert_ptr_nonnull(c1.blob);
    ck_assert_int_eq(hlpt_trainer_new(m, a3, &train, NULL, &p, &t3, why, sizeof why), 0);
    ck_assert_msg(hlpt_trainer_restore(t3, c1.blob, c1.n, why, sizeof why) == 0, "%s", why);
    ck_assert_int_eq(hlpt_trainer_step(t3), 5);
    ck_assert_int_eq(hlpt_trainer_run(t3, NULL, why, sizeof why), 0);
    ck_assert_int_eq(memcmp(a1->params, a3->params, a1->n_params * sizeof(float)), 0);
    printf("resumed at step 5 of %d: parameters identical to the uninterrupted run\n", hlpt_trainer_total_steps(t1));

    /* A checkpoint of another plan is refused. */
    hlpt_adapter *other = new_adapter(m, HLPT_METHOD_LORA, 1);
    hlpt_trainer *t4;
    ck_assert_int_eq(hlpt_trainer_new(m, other, &train, NULL, &p, &t4, why, sizeof why), 0);
    ck_assert_int_eq(hlpt_trainer_restore(t4, c1.blob, c1.n, why, sizeof why), HLPT_ERR_MISMATCH);
    ck_assert_int_eq(hlpt_trainer_restore(t4, "garbage", 7, why, sizeof why) != 0, 1);
    hlpt_trainer_free(t4);
    hlpt_adapter_free(other);
    free(c1.blob);
    hlpt_trainer_free(t1);
    hlpt_trainer_free(t2);
    hlpt_trainer_free(t3);
    hlpt_adapter_free(a1);
    hlpt_adapter_free(a2);
    hlpt_adapter_free(a3);
    hlpt_examples_free(&train);
    hlpt_model_close(m);
}
END_TEST

/* d loss / d theta by the model's backward against central differences in a few coordinates of
 * every tensor, for each gate mode, with LoRA on attention and FFN modules and a prefix. */
START_TEST(test_model_gradient_finite_differences) {
    hlpt_model *m = fixture_model("llama2-mha-f32");
    hlpt_adapter_config c;
    hlpt_adapter_config_defaults(&c, HLPT_METHOD_HLPT, 8);
    c.r = 2;
    c.n_virtual = 3;
    c.targets = (1u << HLPT_MOD_Q) | (1u << HLPT_MOD_O) | (1u << HLPT_MOD_UP) | (1u << HLPT_MOD_DOWN);
    c.gate = (hlpt_gate_mode)_i;
    memset(c.lora_layer, 0, sizeof c.lora_layer);
    memset(c.prefix_layer, 0, sizeof c.prefix_layer);
    c.lora_layer[5] = c.lora_layer[6] = 1;
    c.prefix_layer[6] = c.prefix_layer[7] = 1;
    hlpt_adapter *a;
    char why[256];
    ck_assert_int_eq(hlpt_adapter_new(hlpt_model_config(m), &c, &a, why, sizeof why), 0);
    hlpt_adapter_init(a, 11);
    /* Non-zero B so every path carries gradient; larger gates so they matter. */
    for (size_t i = 0; i < a->n_params; i++) a->params[i] += 0.05f * (float)sin(1.7 * i);
    int ids[10] = {1, 300, 301, 302, 40, 50, 60, 70, 80, 90};
    int labels[10] = {-100, -100, -100, 302, 40, 50, 60, 70, 80, 90};
    int n = 10;
    hlpt_runner *r;
    ck_assert_int_eq(hlpt_runner_new(m, &r), 0);
    float *g = calloc(a->n_params, sizeof(float));
    hlpt_train_opts o = {.train = 0};
    hlpt_loss l;
    ck_assert_int_eq(hlpt_model_train_step(r, a, ids, labels, &n, 1, &o, g, 1.0f, &l, why, sizeof why), 0);
    double worst = 0;
    for (int ti = 0; ti < a->n_tensors; ti++) {
        const hlpt_adapter_tensor *t = &a->tensors[ti];
        for (int k = 0; k < 3; k++) {
            size_t i = t->offset + (size_t)(k * 7919) % t->numel;
            float keep = a->params[i], h = 1e-2f;
            a->params[i] = keep + h;
            hlpt_model_train_step(r, a, ids, labels, &n, 1, &o, NULL, 0, &l, why, sizeof why);
            double up = l.loss_sum;
            a->params[i] = keep - h;
            hlpt_model_train_step(r, a, ids, labels, &n, 1, &o, NULL, 0, &l, why, sizeof why);
            double down = l.loss_sum;
            a->params[i] = keep;
            double fd = (up - down) / (2 * h), e = fabs(fd - g[i]) / fmax(1e-2, fabs(fd) + fabs(g[i]));
            worst = fmax(worst, e);
            ck_assert_msg(e < 2e-2, "%s[%zu]: backward %.6g, finite difference %.6g", t->name, i - t->offset, g[i], fd);
        }
    }
    printf("gate %s: model gradient vs central differences, worst relative error %.2e (tol 2e-2, fp32 loss)\n",
           hlpt_gate_name(c.gate), worst);
    free(g);
    hlpt_runner_free(r);
    hlpt_adapter_free(a);
    hlpt_model_close(m);
}
END_TEST

/* Recomputing activations in backward gives the same gradients as keeping them, for less memory. */
START_TEST(test_recompute_same_gradients) {
    hlpt_model *m = fixture_model("llama2-mha-f32");
    hlpt_adapter *a = new_adapter(m, HLPT_METHOD_HLPT, 5);
    for (size_t i = 0; i < a->n_params; i++) a->params[i] += 0.03f * (float)cos(0.7 * i);
    int ids[16], labels[16], lens[2] = {9, 7};
    for (int i = 0; i < 16; i++) {
        ids[i] = 3 + (i * 97) % 1000;
        labels[i] = i % 9 < 3 ? -100 : ids[i];
    }
    hlpt_runner *r;
    ck_assert_int_eq(hlpt_runner_new(m, &r), 0);
    float *g0 = calloc(a->n_params, sizeof(float)), *g1 = calloc(a->n_params, sizeof(float));
    hlpt_train_opts keep = {.train = 1, .dropout_seed = 3}, again = {.train = 1, .recompute = 1, .dropout_seed = 3};
    hlpt_loss l0, l1;
    char why[256];
    ck_assert_int_eq(hlpt_model_train_step(r, a, ids, labels, lens, 2, &keep, g0, 0.1f, &l0, why, sizeof why), 0);
    ck_assert_int_eq(hlpt_model_train_step(r, a, ids, labels, lens, 2, &again, g1, 0.1f, &l1, why, sizeof why), 0);
    ck_assert(l0.loss_sum == l1.loss_sum);
    ck_assert_int_eq(memcmp(g0, g1, a->n_params * sizeof(float)), 0);
    size_t full = hlpt_model_train_bytes_per_token(m, a, 64, 0), less = hlpt_model_train_bytes_per_token(m, a, 64, 1);
    printf("activations per token: %zu bytes kept, %zu with recomputation\n", full, less);
    ck_assert(less < full);
    free(g0);
    free(g1);
    hlpt_runner_free(r);
    hlpt_adapter_free(a);
    hlpt_model_close(m);
}
END_TEST

/* Early stopping: a learning rate that makes validation worse stops the run after `patience`
 * evaluations without improvement, and the best parameters are those of the best evaluation. */
START_TEST(test_early_stopping_keeps_best) {
    hlpt_model *m = fixture_model("llama2-mha-f32");
    hlpt_examples train = {0}, valid = {0};
    make_set(&train, 32, 1);
    make_set(&valid, 8, 2);
    hlpt_adapter *a = new_adapter(m, HLPT_METHOD_LORA, 3);
    hlpt_train_params p;
    small_params(&p);
    p.n_epochs = 20;
    p.learning_rate = 3.0f; /* diverges */
    p.schedule = HLPT_SCHED_CONSTANT;
    p.warmup_steps = 0;
    p.max_grad_norm = 0;
    p.eval_every = 1;
    p.patience = 2;
    hlpt_trainer *t;
    char why[256];
    ck_assert_int_eq(hlpt_trainer_new(m, a, &train, &valid, &p, &t, why, sizeof why), 0);
    capture c = {.at = -1};
    hlpt_train_hooks h = {.ctx = &c, .on_progress = record};
    ck_assert_int_eq(hlpt_trainer_run(t, &h, why, sizeof why), 0);
    ck_assert_int_lt(hlpt_trainer_step(t), hlpt_trainer_total_steps(t));
    int best_step;
    double best_loss;
    const float *best = hlpt_trainer_best_params(t, &best_step, &best_loss);
    ck_assert_int_ge(best_step, 1);
    ck_assert_int_le(best_step, hlpt_trainer_step(t) - 2);
    /* The best parameters are not the last ones, and evaluate to the best loss. */
    ck_assert_int_ne(memcmp(best, a->params, a->n_params * sizeof(float)), 0);
    memcpy(a->params, best, a->n_params * sizeof(float));
    double loss, acc;
    ck_assert_int_eq(hlpt_trainer_evaluate(t, &loss, &acc, why, sizeof why), 0);
    ck_assert(fabs(loss - best_loss) < 1e-9);
    printf("early stop after %d of %d steps; best step %d (valid loss %.3f)\n", hlpt_trainer_step(t),
           hlpt_trainer_total_steps(t), best_step, best_loss);
    hlpt_trainer_free(t);
    hlpt_adapter_free(a);
    hlpt_examples_free(&train);
    hlpt_examples_free(&valid);
    hlpt_model_close(m);
}
END_TEST

START_TEST(test_params_validation) {
    hlpt_train_params p;
    char why[256];
    const char *bad[] = {"{\"n_epochs\":0}", "{\"learning_rate\":\"fast\"}", "{\"batch_size\":6,\"micro_batch_size\":4}",
                         "{\"lr_scheduler\":\"step\"}", "{\"epochs\":3}", "{\"n_epochs\":1.5}"};
    const char *names[] = {"n_epochs", "learning_rate", "batch_size", "lr_scheduler", "epochs", "n_epochs"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        hlpt_train_params_defaults(&p);
        cJSON *j = cJSON_Parse(bad[i]);
        ck_assert_int_ne(hlpt_train_params_apply(&p, j, why, sizeof why), 0);
        ck_assert_msg(strstr(why, names[i]), "'%s' should name %s", why, names[i]);
        cJSON_Delete(j);
    }
    hlpt_train_params_defaults(&p);
    cJSON *j = cJSON_Parse("{\"n_epochs\":\"auto\",\"batch_size\":8,\"learning_rate_multiplier\":2,\"lr_scheduler\":\"cosine\"}");
    ck_assert_int_eq(hlpt_train_params_apply(&p, j, why, sizeof why), 0);
    ck_assert_int_eq(p.n_epochs, 3);
    ck_assert_int_eq(p.batch_size, 8);
    ck_assert(fabsf(p.learning_rate - 6e-3f) < 1e-9f);
    ck_assert_int_eq(p.schedule, HLPT_SCHED_COSINE);
    cJSON_Delete(j);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_examples_labels);
    tcase_add_loop_test(tc, test_learns_synthetic_task, 0, 2);
    tcase_add_test(tc, test_deterministic_and_resume_exact);
    tcase_add_loop_test(tc, test_model_gradient_finite_differences, 0, 3);
    tcase_add_test(tc, test_recompute_same_gradients);
    tcase_add_test(tc, test_early_stopping_keeps_best);
    tcase_add_test(tc, test_params_validation);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
