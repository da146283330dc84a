/*
 * examples.c - JSONL datasets to tokenized training examples (see hlpt_examples_load in train.h).
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/err.h"
#include "hlpt/tokenizer.h"
#include "hlpt/train.h"

static const char alpaca_plain[] =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n%s\n\n### Response:\n";
static const char alpaca_input[] =
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request.\n\n### Instruction:\n%s\n\n### Input:\n%s\n\n### Response:\n";

static const char *field(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* prompt and completion text of one line (returned owned). */
static int line_texts(const cJSON *o, long line, char **prompt, char **completion, char *why, size_t len) {
    *prompt = *completion = NULL;
    const char *p = field(o, "prompt"), *c = field(o, "completion");
    const char *ins = field(o, "instruction"), *inp = field(o, "input"), *out = field(o, "output");
    const char *text = field(o, "text");
    if (ins || out) {
        if (!ins || !out) return hlpt_why(why, len, HLPT_ERR_INVAL, "line %ld: field `%s` missing", line, ins ? "output" : "instruction");
        size_t n = strlen(ins) + (inp ? strlen(inp) : 0) + sizeof alpaca_input;
        *prompt = malloc(n);
        if (!*prompt) return HLPT_ERR_NOMEM;
        if (inp && *inp) snprintf(*prompt, n, alpaca_input, ins, inp);
        else snprintf(*prompt, n, alpaca_plain, ins);
        *completion = strdup(out);
    } else if (p || c) {
        if (!p || !c) return hlpt_why(why, len, HLPT_ERR_INVAL, "line %ld: field `%s` missing", line, p ? "completion" : "prompt");
        *prompt = strdup(p);
        *completion = strdup(c);
    } else if (text) {
        *prompt = strdup("");
        *completion = strdup(text);
    } else {
        return hlpt_why(why, len, HLPT_ERR_INVAL, "line %ld: expected prompt/completion, instruction/output or text", line);
    }
    return *prompt && *completion ? HLPT_OK : HLPT_ERR_NOMEM;
}

int hlpt_examples_load(const hlpt_tokenizer *tok, const hlpt_config *c, const char *buf, size_t n,
                       const hlpt_train_params *p, hlpt_examples *out, char *why, size_t len) {
    long line = 0;
    int err = HLPT_OK;
    for (size_t at = 0; at < n && !err;) {
        const char *start = buf + at, *nl = memchr(start, '\n', n - at);
        size_t ln = nl ? (size_t)(nl - start) : n - at;
        at += ln + 1;
        line++;
        if (ln == 0 || (ln == 1 && *start == '\r')) continue;
        const char *end = NULL;
        cJSON *o = cJSON_ParseWithLengthOpts(start, ln, &end, 0);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            return hlpt_why(why, len, HLPT_ERR_INVAL, "line %ld: not a JSON object", line);
        }
        char *pt, *ct;
        int *pi = NULL, *ci = NULL, np = 0, nc = 0;
        err = line_texts(o, line, &pt, &ct, why, len);
        if (!err) err = hlpt_tokenizer_encode(tok, pt, strlen(pt), 0, &pi, &np, why, len);
        if (!err) err = hlpt_tokenizer_encode(tok, ct, strlen(ct), 0, &ci, &nc, why, len);
        if (!err)
            err = hlpt_examples_add(out, pi, np, ci, nc, c->bos_id, c->n_eos ? c->eos_ids[0] : -1, p->max_length,
                                    p->train_on_inputs);
        free(pt);
        free(ct);
        free(pi);
        free(ci);
        cJSON_Delete(o);
    }
    if (!err && out->n == 0) err = hlpt_why(why, len, HLPT_ERR_INVAL, "the dataset has no examples");
    return err;
}
