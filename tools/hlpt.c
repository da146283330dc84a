/*
 * hlpt - the command line: offline tools over the core library, and a client of hlptd.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "hlpt/blas.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"tokenize", cmd_tokenize, "text -> token ids"},
    {"detokenize", cmd_detokenize, "token ids -> text"},
    {"forward", cmd_forward, "logits of a token sequence, to safetensors"},
    {"generate", cmd_generate, "continue a prompt (optionally with an adapter)"},
    {"grad", cmd_grad, "adapter loss and gradients of one sequence, to safetensors"},
    {"train", cmd_train, "train an adapter on a JSONL file"},
    {"files", cmd_client, "hlptd: upload, list, show, delete training files"},
    {"jobs", cmd_client, "hlptd: create, follow, list, show, cancel, pause, resume fine-tuning jobs"},
    {"adapters", cmd_client, "hlptd: list, import, export, delete adapters"},
    {"complete", cmd_client, "hlptd: a completion, optionally with an adapter"},
    {"chat", cmd_client, "hlptd: an interactive chat"},
    {"eval", cmd_eval, "hlptd: task accuracy of the base or an adapter (math, wordnet)"},
};

static void usage(FILE *f) {
    fputs("usage: hlpt COMMAND [OPTIONS]   (hlpt COMMAND --help for each)\n\ncommands:\n", f);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    hlpt_blas_init(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "hlpt: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
