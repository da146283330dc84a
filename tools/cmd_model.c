/*
 * cmd_model.c - the offline model commands: forward, generate, grad.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "hlpt/adapter.h"
#include "hlpt/blas.h"
#include "hlpt/err.h"
#include "hlpt/generate.h"
#include "hlpt/model.h"
#include "hlpt/safetensors.h"
#include "hlpt/tokenizer.h"

/* Opens the model with its matrices in dtype (--dtype) and, when adapter_dir is given, its adapter. */
static int open_model(const char *dir, hlpt_base_dtype dtype, const char *adapter_dir, hlpt_model **m,
                      hlpt_adapter **a) {
    char why[512] = "";
    *a = NULL;
    int err = hlpt_model_open(dir, dtype, m, why, sizeof why);
    if (err) return cli_fail("%s: %s%s%s", dir, hlpt_strerror(err), *why ? ": " : "", why);
    if (adapter_dir) {
        err = hlpt_adapter_load(adapter_dir, hlpt_model_config(*m), hlpt_model_hash(*m), a, why, sizeof why);
        if (err) {
            hlpt_model_close(*m);
            *m = NULL;
            return cli_fail("%s: %s%s%s", adapter_dir, hlpt_strerror(err), *why ? ": " : "", why);
        }
    }
    return CLI_OK;
}

/* The --dtype line of every usage text here. */
#define DTYPE_HELP                                                                                 \
    "--dtype stores the base's matrices as bf16 or f32; auto (the default) is bf16 where the CPU\n"   \
    "has AVX512-BF16 or AMX, else f32. f32 reproduces the reference fixtures to 1e-4.\n"

static const char forward_usage[] =
    "usage: hlpt forward --model DIR --tokens 1,2,3 --out FILE [--adapter DIR]\n"
    "                    [--dtype auto|bf16|f32]\n"
    "Writes the logits [T, V] (F32) of the token sequence to a safetensors file.\n"
    DTYPE_HELP;

int cmd_forward(int argc, char **argv) {
    const char *model = NULL, *tokens = NULL, *out = NULL, *adapter = NULL, *dtype = NULL;
    cli_opt opts[] = {{"--model", &model, NULL}, {"--tokens", &tokens, NULL}, {"--out", &out, NULL},
                      {"--adapter", &adapter, NULL}, {"--dtype", &dtype, NULL}};
    int n_opts = (int)(sizeof opts / sizeof *opts);
    char **rest;
    int n_rest, st = cli_parse(argc, argv, opts, n_opts, forward_usage, &rest, &n_rest);
    if (st) return st == CLI_HELP ? CLI_OK : st;
    if ((st = cli_require("forward", opts, n_opts, "--model --tokens --out", n_rest, rest, 0, forward_usage)))
        return st;
    hlpt_base_dtype dt = HLPT_BASE_AUTO;
    if ((st = cli_dtype("--dtype", dtype, &dt))) return st;
    int *ids, n;
    if ((st = cli_int_list("--tokens", tokens, 0, &ids, &n))) return st;
    hlpt_model *m;
    hlpt_adapter *a;
    if ((st = open_model(model, dt, adapter, &m, &a))) {
        free(ids);
        return st;
    }
    const hlpt_config *c = hlpt_model_config(m);
    char why[512] = "";
    hlpt_runner *r = NULL;
    hlpt_seq *seq = NULL;
    hlpt_st_writer *w = NULL;
    const float *logits;
    int err = hlpt_runner_new(m, &r);
    if (!err) err = hlpt_seq_new(m, a, n, &seq);
    const int *tp = ids;
    if (!err) err = hlpt_model_step(r, &seq, &tp, &n, 1, 1, &logits, why, sizeof why);
    int64_t shape[2] = {n, c->vocab};
    if (!err) err = hlpt_st_writer_new(&w);
    if (!err) err = hlpt_st_writer_add(w, "logits", HLPT_DTYPE_F32, 2, shape, logits);
    if (!err) err = hlpt_st_writer_write(w, out, why, sizeof why);
    if (err) st = cli_fail("forward: %s%s%s", hlpt_strerror(err), *why ? ": " : "", why);
    hlpt_st_writer_free(w);
    hlpt_seq_free(seq);
    hlpt_runner_free(r);
    hlpt_adapter_free(a);
    hlpt_model_close(m);
    free(ids);
    return st;
}

static const char generate_usage[] =
    "usage: hlpt generate --model DIR --prompt TEXT [--adapter DIR] [--max-tokens N]\n"
    "                     [--temperature T] [--top-p P] [--top-k K] [--seed S] [--ignore-eos] [--ids]\n"
    "                     [--dtype auto|bf16|f32]\n"
    "Continues the prompt (BOS is added first). Temperature 0 (the default) is greedy decoding.\n"
    "--ids prints the generated token ids as a JSON array instead of the text.\n"
    DTYPE_HELP;

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *adapter = NULL, *max_tokens = NULL, *temp = NULL,
               *top_p = NULL, *top_k = NULL, *seed = NULL, *dtype = NULL;
    int ignore_eos = 0, as_ids = 0;
    cli_opt opts[] = {{"--model", &model, NULL},          {"--prompt", &prompt, NULL},
                      {"--adapter", &adapter, NULL},      {"--max-tokens", &max_tokens, NULL},
                      {"--temperature", &temp, NULL},     {"--top-p", &top_p, NULL},
                      {"--top-k", &top_k, NULL},          {"--seed", &seed, NULL},
                      {"--ignore-eos", NULL, &ignore_eos}, {"--ids", NULL, &as_ids},
                      {"--dtype", &dtype, NULL}};
    char **rest;
    int n_rest, st = cli_parse(argc, argv, opts, (int)(sizeof opts / sizeof *opts), generate_usage, &rest, &n_rest);
    if (st) return st == CLI_HELP ? CLI_OK : st;
    if ((st = cli_require("generate", opts, (int)(sizeof opts / sizeof *opts), "--model --prompt", n_rest, rest, 0,
                          generate_usage)))
        return st;
    hlpt_gen_params p;
    hlpt_gen_params_defaults(&p);
    p.temperature = 0;
    long mt = 64, tk = 0;
    double t = 0, tp = 1;
    hlpt_base_dtype dt = HLPT_BASE_AUTO;
    if ((st = cli_int("--max-tokens", max_tokens, 1, 1 << 20, &mt)) || (st = cli_float("--temperature", temp, 0, 100, &t)) ||
        (st = cli_float("--top-p", top_p, 1e-9, 1, &tp)) || (st = cli_int("--top-k", top_k, 0, 1 << 30, &tk)) ||
        (st = cli_u64("--seed", seed, &p.seed)) || (st = cli_dtype("--dtype", dtype, &dt)))
        return st;
    p.max_tokens = (int)mt;
    p.temperature = (float)t;
    p.top_p = (float)tp;
    p.top_k = (int)tk;
    p.ignore_eos = ignore_eos;

    hlpt_model *m;
    hlpt_adapter *a;
    if ((st = open_model(model, dt, adapter, &m, &a))) return st;
    const hlpt_config *c = hlpt_model_config(m);
    char why[512] = "";
    int *ids = NULL, n = 0, *full = NULL;
    hlpt_runner *r = NULL;
    hlpt_gen *g = NULL;
    int err = hlpt_tokenizer_encode(hlpt_model_tokenizer(m), prompt, strlen(prompt), 0, &ids, &n, why, sizeof why);
    if (!err) {
        /* BOS first, as LLaMA tokenizers add it. */
        int bos = c->bos_id >= 0;
        full = malloc(sizeof(int) * ((size_t)n + 1));
        if (!full) err = HLPT_ERR_NOMEM;
        else {
            if (bos) full[0] = c->bos_id;
            memcpy(full + bos, ids, sizeof(int) * (size_t)n);
            n += bos;
        }
    }
    if (!err) err = hlpt_runner_new(m, &r);
    if (!err) err = hlpt_gen_new(m, a, full, n, &p, &g, why, sizeof why);
    if (!err) err = hlpt_generate(r, &g, 1, why, sizeof why);
    if (!err) {
        if (as_ids) {
            int nt;
            const hlpt_gen_token *toks = hlpt_gen_tokens(g, &nt);
            putchar('[');
            for (int i = 0; i < nt; i++) printf("%s%d", i ? "," : "", toks[i].id);
            puts("]");
        } else {
            size_t len;
            const char *text = hlpt_gen_text(g, &len);
            fwrite(text, 1, len, stdout);
            putchar('\n');
        }
    } else {
        st = cli_fail("generate: %s%s%s", hlpt_strerror(err), *why ? ": " : "", why);
    }
    hlpt_gen_free(g);
    hlpt_runner_free(r);
    free(ids);
    free(full);
    hlpt_adapter_free(a);
    hlpt_model_close(m);
    return st;
}

static const char grad_usage[] =
    "usage: hlpt grad --model DIR --adapter DIR --tokens 1,2,3 --labels -100,-100,5 --out FILE\n"
    "                 [--dtype auto|bf16|f32]\n"
    "Writes loss [1] (mean cross-entropy; logits[t] predicts labels[t+1]) and grad.<tensor> for every\n"
    "adapter tensor to a safetensors file. Dropout is off.\n"
    DTYPE_HELP;

int cmd_grad(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *tokens = NULL, *labels = NULL, *out = NULL, *dtype = NULL;
    cli_opt opts[] = {{"--model", &model, NULL}, {"--adapter", &adapter, NULL}, {"--tokens", &tokens, NULL},
                      {"--labels", &labels, NULL}, {"--out", &out, NULL}, {"--dtype", &dtype, NULL}};
    int n_opts = (int)(sizeof opts / sizeof *opts);
    char **rest;
    int n_rest, st = cli_parse(argc, argv, opts, n_opts, grad_usage, &rest, &n_rest);
    if (st) return st == CLI_HELP ? CLI_OK : st;
    if ((st = cli_require("grad", opts, n_opts, "--model --adapter --tokens --labels --out", n_rest, rest, 0,
                          grad_usage)))
        return st;
    hlpt_base_dtype dt = HLPT_BASE_AUTO;
    if ((st = cli_dtype("--dtype", dtype, &dt))) return st;
    int *ids = NULL, *lab = NULL, n, nl;
    if ((st = cli_int_list("--tokens", tokens, 0, &ids, &n)) || (st = cli_int_list("--labels", labels, 1, &lab, &nl))) {
        free(ids);
        return st;
    }
    if (n != nl) {
        free(ids);
        free(lab);
        return cli_fail("--labels has %d items but --tokens has %d", nl, n) + 1;
    }
    hlpt_model *m;
    hlpt_adapter *a;
    if ((st = open_model(model, dt, adapter, &m, &a))) {
        free(ids);
        free(lab);
        return st;
    }
    char why[512] = "";
    hlpt_runner *r = NULL;
    hlpt_loss loss;
    float *grads = calloc(a->n_params + 1, sizeof(float));
    hlpt_train_opts o = {.train = 0};
    int err = grads ? hlpt_runner_new(m, &r) : HLPT_ERR_NOMEM;
    /* First a forward to count targets, so the gradients are those of the mean. */
    if (!err) err = hlpt_model_train_step(r, a, ids, lab, &n, 1, &o, NULL, 0, &loss, why, sizeof why);
    if (!err && loss.n_targets == 0) err = hlpt_why(why, sizeof why, HLPT_ERR_INVAL, "no label is a target (all -100)");
    if (!err) err = hlpt_model_train_step(r, a, ids, lab, &n, 1, &o, grads, 1.0f / loss.n_targets, &loss, why, sizeof why);
    hlpt_st_writer *w = NULL;
    float mean = loss.n_targets ? (float)(loss.loss_sum / loss.n_targets) : 0;
    int64_t one = 1;
    char (*names)[sizeof a->tensors[0].name + 8] = calloc((size_t)a->n_tensors + 1, sizeof *names);
    if (!err && !names) err = HLPT_ERR_NOMEM;
    if (!err) err = hlpt_st_writer_new(&w);
    if (!err) err = hlpt_st_writer_add(w, "loss", HLPT_DTYPE_F32, 1, &one, &mean);
    for (int i = 0; !err && i < a->n_tensors; i++) {
        const hlpt_adapter_tensor *t = &a->tensors[i];
        snprintf(names[i], sizeof names[i], "grad.%s", t->name);
        err = hlpt_st_writer_add(w, names[i], HLPT_DTYPE_F32, 2, t->shape, grads + t->offset);
    }
    if (!err) err = hlpt_st_writer_write(w, out, why, sizeof why);
    if (err) st = cli_fail("grad: %s%s%s", hlpt_strerror(err), *why ? ": " : "", why);
    hlpt_st_writer_free(w);
    free(names);
    free(grads);
    hlpt_runner_free(r);
    hlpt_adapter_free(a);
    hlpt_model_close(m);
    free(ids);
    free(lab);
    return st;
}
