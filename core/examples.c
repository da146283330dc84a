/*
 * examples.c - JSONL datasets to tokenized training examples (see hlpt_examples_load in train.h):
 * dataset.c parses and renders each line, the tokenizer turns the texts into ids.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/dataset.h"
#include "hlpt/err.h"
#include "hlpt/tokenizer.h"
#include "hlpt/train.h"

int hlpt_examples_texts(const char *json, size_t n, long line, char **prompt, char **completion, char *why,
                        size_t len) {
    *prompt = *completion = NULL;
    hlpt_example ex = {0};
    int err = hlpt_dataset_parse_line(json, n, (size_t)line, NULL, &ex, why, len);
    if (err) return err;
    /* The parsed example owns its strings: hand them over. */
    *prompt = ex.prompt;
    *completion = ex.completion;
    return HLPT_OK;
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
        char *pt, *ct;
        int *pi = NULL, *ci = NULL, np = 0, nc = 0;
        err = hlpt_examples_texts(start, ln, line, &pt, &ct, why, len);
        if (!err) err = hlpt_tokenizer_encode(tok, pt, strlen(pt), 0, &pi, &np, why, len);
        if (!err) err = hlpt_tokenizer_encode(tok, ct, strlen(ct), 0, &ci, &nc, why, len);
        if (!err)
            err = hlpt_examples_add(out, pi, np, ci, nc, c->bos_id, c->n_eos ? c->eos_ids[0] : -1, p->max_length,
                                    p->train_on_inputs);
        free(pt);
        free(ct);
        free(pi);
        free(ci);
    }
    if (!err && out->n == 0) err = hlpt_why(why, len, HLPT_ERR_INVAL, "the dataset has no examples");
    return err;
}
