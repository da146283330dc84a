/*
 * cmd_tokenize.c - `hlpt tokenize` and `hlpt detokenize`: the core tokenizer on the command line.
 *
 * Both load the tokenizer from a model directory (--model DIR, its tokenizer.json) or a file
 * (--tokenizer FILE). tokenize prints the ids as a JSON array; detokenize prints the text. The BOS
 * id comes from the model's config.json (bos_token_id) when there is one, else from the tokenizer's
 * conventional "<s>" / "<|begin_of_text|>" token.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "commands.h"
#include "hlpt/err.h"
#include "hlpt/tokenizer.h"

static const char tokenize_usage[] =
    "usage: hlpt tokenize (--model DIR | --tokenizer FILE) [--bos] [--parse-special] TEXT\n"
    "\n"
    "Prints the token ids of TEXT (\"-\": read standard input; \"--\" before a TEXT starting with\n"
    "\"-\") as a JSON array.\n"
    "  --model DIR        a model directory holding tokenizer.json (and config.json)\n"
    "  --tokenizer FILE   a tokenizer.json\n"
    "  --bos              prepend the BOS id: config.json's bos_token_id with --model, else the\n"
    "                     tokenizer's \"<s>\" or \"<|begin_of_text|>\" token\n"
    "  --parse-special    match special tokens written in TEXT (e.g. \"<s>\") as those tokens\n";

static const char detokenize_usage[] =
    "usage: hlpt detokenize (--model DIR | --tokenizer FILE) [--skip-special] ID...\n"
    "\n"
    "Prints the text of the token ids, followed by a newline.\n"
    "  --model DIR        a model directory holding tokenizer.json\n"
    "  --tokenizer FILE   a tokenizer.json\n"
    "  --skip-special     leave special tokens (BOS, EOS, ...) out of the text\n";

/* Options both commands share. */
typedef struct {
    const char *model;
    const char *tokenizer;
    int bos, parse_special, skip_special, help;
    char **args;                 /* positional arguments, borrowed from argv */
    int n_args;
} options;

/* Returns 0, or 2 after printing a usage error. */
static int parse_options(const char *cmd, int argc, char **argv, int is_tokenize, options *o) {
    memset(o, 0, sizeof *o);
    o->args = calloc((size_t)(argc > 0 ? argc : 1), sizeof *o->args);
    if (!o->args) {
        fprintf(stderr, "hlpt %s: out of memory\n", cmd);
        return 1;
    }
    int only_args = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_args || a[0] != '-' || strcmp(a, "-") == 0 ||
            (!is_tokenize && a[1] >= '0' && a[1] <= '9')) {
            o->args[o->n_args++] = argv[i];
        } else if (strcmp(a, "--") == 0) {
            only_args = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            o->help = 1;
        } else if (strcmp(a, "--model") == 0 || strcmp(a, "--tokenizer") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "hlpt %s: %s needs a value\n", cmd, a);
                return 2;
            }
            if (a[2] == 'm') o->model = argv[++i];
            else o->tokenizer = argv[++i];
        } else if (is_tokenize && strcmp(a, "--bos") == 0) {
            o->bos = 1;
        } else if (is_tokenize && strcmp(a, "--parse-special") == 0) {
            o->parse_special = 1;
        } else if (!is_tokenize && strcmp(a, "--skip-special") == 0) {
            o->skip_special = 1;
        } else {
            fprintf(stderr, "hlpt %s: unknown option %s (see --help)\n", cmd, a);
            return 2;
        }
    }
    if (o->help) return 0;
    if (!o->model == !o->tokenizer) {
        fprintf(stderr, "hlpt %s: give exactly one of --model DIR and --tokenizer FILE (see --help)\n", cmd);
        return 2;
    }
    return 0;
}

static hlpt_tokenizer *open_tokenizer(const char *cmd, const options *o) {
    hlpt_tokenizer *t = NULL;
    char why[1024];
    if (hlpt_tokenizer_load(o->model ? o->model : o->tokenizer, &t, why, sizeof why) != HLPT_OK)
        fprintf(stderr, "hlpt %s: %s\n", cmd, why);
    return t;
}

/* bos_token_id from DIR/config.json, -1 after printing an error. */
static int config_bos(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "hlpt tokenize: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *data = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            char *d = realloc(data, cap = cap ? 2 * cap : 4096);
            if (!d) break;
            data = d;
        }
        size_t got = fread(data + n, 1, cap - n, f);
        if (!got) break;
        n += got;
    }
    fclose(f);
    int bos = -1;
    cJSON *j = data ? cJSON_ParseWithLengthOpts(data, n, NULL, 0) : NULL;
    const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, "bos_token_id") : NULL;
    if (!j) fprintf(stderr, "hlpt tokenize: %s: broken JSON\n", path);
    else if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > INT_MAX || v->valuedouble != (int)v->valuedouble)
        fprintf(stderr, "hlpt tokenize: %s: bos_token_id is missing or not a non-negative integer\n", path);
    else bos = (int)v->valuedouble;
    cJSON_Delete(j);
    free(data);
    return bos;
}

static char *read_stdin(size_t *n) {
    char *data = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n == cap) {
            char *d = realloc(data, cap = cap ? 2 * cap : 4096);
            if (!d) { free(data); return NULL; }
            data = d;
        }
        size_t got = fread(data + *n, 1, cap - *n, stdin);
        if (!got) break;
        *n += got;
    }
    if (ferror(stdin)) { free(data); return NULL; }
    return data;
}

int cmd_tokenize(int argc, char **argv) {
    options o;
    hlpt_tokenizer *t = NULL;
    char *input = NULL;
    int *ids = NULL, n_ids = 0, status = parse_options("tokenize", argc, argv, 1, &o);
    if (status) goto out;
    if (o.help) {
        fputs(tokenize_usage, stdout);
        goto out;
    }
    if (o.n_args != 1) {
        fprintf(stderr, "hlpt tokenize: give exactly one TEXT (got %d; see --help)\n", o.n_args);
        status = 2;
        goto out;
    }
    const char *text = o.args[0];
    size_t len = strlen(text);
    if (strcmp(text, "-") == 0) {
        if (!(input = read_stdin(&len))) {
            fprintf(stderr, "hlpt tokenize: cannot read standard input\n");
            status = 1;
            goto out;
        }
        text = input;
    }
    status = 1;
    if (!(t = open_tokenizer("tokenize", &o))) goto out;
    int bos = -1;
    if (o.bos) {
        bos = o.model ? config_bos(o.model) : hlpt_tokenizer_default_bos(t);
        if (bos < 0) {
            if (!o.model)
                fprintf(stderr, "hlpt tokenize: --bos: the tokenizer has neither \"<s>\" nor \"<|begin_of_text|>\"; "
                                "use --model DIR to take bos_token_id from config.json\n");
            goto out;
        }
    }
    char why[256];
    if (hlpt_tokenizer_encode(t, text, len, o.parse_special, &ids, &n_ids, why, sizeof why) != HLPT_OK) {
        fprintf(stderr, "hlpt tokenize: %s\n", why);
        goto out;
    }
    printf("[");
    if (o.bos) printf("%d%s", bos, n_ids ? ", " : "");
    for (int i = 0; i < n_ids; i++) printf("%s%d", i ? ", " : "", ids[i]);
    printf("]\n");
    status = fflush(stdout) == 0 ? 0 : 1;
out:
    free(ids);
    free(input);
    free(o.args);
    hlpt_tokenizer_free(t);
    return status;
}

int cmd_detokenize(int argc, char **argv) {
    options o;
    hlpt_tokenizer *t = NULL;
    int *ids = NULL;
    char *text = NULL;
    int status = parse_options("detokenize", argc, argv, 0, &o);
    if (status) goto out;
    if (o.help) {
        fputs(detokenize_usage, stdout);
        goto out;
    }
    ids = malloc(sizeof *ids * (size_t)(o.n_args ? o.n_args : 1));
    if (!ids) {
        fprintf(stderr, "hlpt detokenize: out of memory\n");
        status = 1;
        goto out;
    }
    for (int i = 0; i < o.n_args; i++) {
        char *end;
        errno = 0;
        long v = strtol(o.args[i], &end, 10);
        if (errno || end == o.args[i] || *end || v < INT_MIN || v > INT_MAX) {
            fprintf(stderr, "hlpt detokenize: \"%s\" is not a token id\n", o.args[i]);
            status = 2;
            goto out;
        }
        ids[i] = (int)v;
    }
    status = 1;
    if (!(t = open_tokenizer("detokenize", &o))) goto out;
    char why[256];
    size_t n;
    if (hlpt_tokenizer_decode(t, ids, o.n_args, o.skip_special, &text, &n, why, sizeof why) != HLPT_OK) {
        fprintf(stderr, "hlpt detokenize: %s\n", why);
        goto out;
    }
    fwrite(text, 1, n, stdout);
    fputc('\n', stdout);
    status = fflush(stdout) == 0 ? 0 : 1;
out:
    free(text);
    free(ids);
    free(o.args);
    hlpt_tokenizer_free(t);
    return status;
}
