/*
 * cli.c - see cli.h.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/err.h"

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("hlpt: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_FAIL;
}

int cli_parse(int argc, char **argv, const cli_opt *opts, int n_opts, const char *usage,
              char ***rest, int *n_rest) {
    *rest = argv + argc;
    *n_rest = 0;
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    int np = 0;
    if (!pos) return CLI_FAIL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            free(pos);
            return CLI_HELP;
        }
        if (!strcmp(a, "--")) {
            while (++i < argc) pos[np++] = argv[i];
            break;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            pos[np++] = argv[i];
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        const cli_opt *o = NULL;
        for (int k = 0; k < n_opts; k++)
            if (strlen(opts[k].name) == nlen && !strncmp(opts[k].name, a, nlen)) o = &opts[k];
        if (!o) {
            fprintf(stderr, "hlpt: unknown option %.*s\n%s", (int)nlen, a, usage);
            free(pos);
            return CLI_USAGE;
        }
        if (o->flag) {
            if (eq) {
                fprintf(stderr, "hlpt: %s takes no value\n", o->name);
                free(pos);
                return CLI_USAGE;
            }
            *o->flag = 1;
        } else if (eq) {
            *o->value = eq + 1;
        } else if (i + 1 < argc) {
            *o->value = argv[++i];
        } else {
            fprintf(stderr, "hlpt: %s needs a value\n", o->name);
            free(pos);
            return CLI_USAGE;
        }
    }
    /* Positional arguments are moved to the end of argv, in order, so rest points into argv. */
    for (int i = 0; i < np; i++) argv[argc - np + i] = pos[i];
    free(pos);
    *rest = argv + argc - np;
    *n_rest = np;
    return CLI_OK;
}

int cli_require(const char *cmd, const cli_opt *opts, int n_opts, const char *required, int n_rest,
                char **rest, int allow_rest, const char *usage) {
    char missing[256] = "";
    size_t used = 0;
    for (const char *p = required; *p;) {
        size_t n = strcspn(p, " ");
        for (int k = 0; k < n_opts; k++)
            if (opts[k].value && strlen(opts[k].name) == n && !strncmp(opts[k].name, p, n) && !*opts[k].value &&
                used + n + 3 < sizeof missing)
                used += (size_t)snprintf(missing + used, sizeof missing - used, "%s%.*s", used ? ", " : "", (int)n, p);
        p += n;
        p += strspn(p, " ");
    }
    if (*missing) {
        fprintf(stderr, "hlpt %s: missing %s\n%s", cmd, missing, usage);
        return CLI_USAGE;
    }
    if (n_rest && !allow_rest) {
        fprintf(stderr, "hlpt %s: unexpected argument '%s'\n%s", cmd, rest[0], usage);
        return CLI_USAGE;
    }
    return CLI_OK;
}

int cli_int(const char *flag, const char *s, long lo, long hi, long *out) {
    if (!s) return CLI_OK;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "hlpt: %s: expected an integer in [%ld, %ld], got '%s'\n", flag, lo, hi, s);
        return CLI_USAGE;
    }
    *out = v;
    return CLI_OK;
}

int cli_float(const char *flag, const char *s, double lo, double hi, double *out) {
    if (!s) return CLI_OK;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "hlpt: %s: expected a number in [%g, %g], got '%s'\n", flag, lo, hi, s);
        return CLI_USAGE;
    }
    *out = v;
    return CLI_OK;
}

int cli_u64(const char *flag, const char *s, uint64_t *out) {
    if (!s) return CLI_OK;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-') {
        fprintf(stderr, "hlpt: %s: expected a non-negative integer, got '%s'\n", flag, s);
        return CLI_USAGE;
    }
    *out = v;
    return CLI_OK;
}

int cli_dtype(const char *flag, const char *s, hlpt_base_dtype *out) {
    if (!s) return CLI_OK;
    if (hlpt_base_dtype_parse(s, out) != HLPT_OK) {
        fprintf(stderr, "hlpt: %s: expected auto, bf16 or f32, got '%s'\n", flag, s);
        return CLI_USAGE;
    }
    return CLI_OK;
}

int cli_int_list(const char *flag, const char *s, int allow_neg, int **out, int *n) {
    *out = NULL;
    *n = 0;
    if (!s || !*s) {
        fprintf(stderr, "hlpt: %s: expected a comma-separated list of integers\n", flag);
        return CLI_USAGE;
    }
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int *v = malloc(sizeof(int) * cap);
    if (!v) return CLI_FAIL;
    const char *p = s;
    for (size_t i = 0; i < cap; i++) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || (*end != ',' && *end) || x > 0x7fffffff || (x < 0 && !(allow_neg && x == -100))) {
            fprintf(stderr, "hlpt: %s: item %zu of '%s' is not a valid %s\n", flag, i + 1, s,
                    allow_neg ? "id or -100" : "token id");
            free(v);
            return CLI_USAGE;
        }
        v[i] = (int)x;
        p = end + 1;
    }
    *out = v;
    *n = (int)cap;
    return CLI_OK;
}
