/*
 * cli.h - option parsing shared by the hlpt subcommands: a table of options per command, strict
 * number parsing that names the flag, and the exit codes (0 ok, 1 failure, 2 usage).
 */
#ifndef HLPT_CLI_H
#define HLPT_CLI_H

#include <stdint.h>

#include "hlpt/engine.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2, CLI_HELP = 3 };

typedef struct {
    const char *name;    /* "--model" */
    const char **value;  /* set for options that take a value */
    int *flag;           /* set to 1 for flags */
} cli_opt;

/* Parses argv[1..] against opts; positional arguments go to rest (argv storage, *n_rest of them).
 * Returns CLI_OK, CLI_HELP (after printing usage to stdout) or CLI_USAGE (after a message). */
int cli_parse(int argc, char **argv, const cli_opt *opts, int n_opts, const char *usage,
              char ***rest, int *n_rest);
/* After cli_parse: each option named in required (space-separated, e.g. "--model --out") must have
 * been given, and no positional argument may be left unless allow_rest. Otherwise prints
 * "hlpt CMD: missing --out" (or the unexpected argument) and the usage to stderr and returns
 * CLI_USAGE. */
int cli_require(const char *cmd, const cli_opt *opts, int n_opts, const char *required, int n_rest,
                char **rest, int allow_rest, const char *usage);
/* Strict conversions: the whole string must parse and fit; errors print "--flag: ..." and return
 * CLI_USAGE. NULL s leaves *out alone. */
int cli_int(const char *flag, const char *s, long lo, long hi, long *out);
int cli_float(const char *flag, const char *s, double lo, double hi, double *out);
int cli_u64(const char *flag, const char *s, uint64_t *out);
/* --dtype: auto, bf16 or f32 (hlpt_base_dtype_parse). */
int cli_dtype(const char *flag, const char *s, hlpt_base_dtype *out);
/* "1,2,3" -> owned array (free()); -100 allowed when allow_neg. */
int cli_int_list(const char *flag, const char *s, int allow_neg, int **out, int *n);
/* Prints "hlpt: " + message to stderr and returns CLI_FAIL. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
