/*
 * settings.c - see settings.h. Each option's value is first collected as a string from each source
 * (flags, environment, file), then the winning string is converted once by its type's parser, so
 * a bad value is reported the same way whichever source it came from.
 */
#include "settings.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hlpt/err.h"
#include "log.h"

enum { OPT_STR, OPT_INT, OPT_SIZE, OPT_ADDR, OPT_LEVEL, OPT_DTYPE, OPT_STORE };

typedef struct {
    const char *field; /* "data_dir" */
    int type;
    const char *def;
    long min, max;
    const char *metavar;
    const char *help;
} option;

static const option options[] = {
#define X(field, type, def, min, max, metavar, help) {#field, OPT_##type, def, min, max, metavar, help},
    HLPTD_OPTIONS(X)
#undef X
};
enum {
#define X(field, ...) OPT_ID_##field,
    HLPTD_OPTIONS(X)
#undef X
    N_OPTIONS
};

/* Where each option's winning string came from, for messages: "--workers", "HLPTD_WORKERS",
 * "/etc/hlptd.conf:3". */
typedef struct {
    char *val[N_OPTIONS];
    char from[N_OPTIONS][96];
} raw_values;

static void flag_name(char *out, size_t n, const char *field) {
    size_t i = 0;
    for (; field[i] && i + 1 < n; i++) out[i] = field[i] == '_' ? '-' : field[i];
    out[i] = 0;
}

static void env_name(char *out, size_t n, const char *field) {
    int k = snprintf(out, n, "HLPTD_");
    for (size_t i = 0; field[i] && (size_t)k + 1 < n; i++, k++) out[k] = (char)toupper((unsigned char)field[i]);
    out[k] = 0;
}

/* The option whose flag/key spelling is name[0..n) ("data-dir" or "data_dir"), or -1. */
static int find_option(const char *name, size_t n) {
    for (int i = 0; i < N_OPTIONS; i++) {
        const char *f = options[i].field;
        if (strlen(f) != n) continue;
        size_t j = 0;
        for (; j < n; j++)
            if (!(name[j] == f[j] || (name[j] == '-' && f[j] == '_'))) break;
        if (j == n) return i;
    }
    return -1;
}

static int set_raw(raw_values *rv, int id, const char *val, size_t n, const char *from) {
    char *s = strndup(val, n);
    if (!s) return HLPT_ERR_NOMEM;
    free(rv->val[id]);
    rv->val[id] = s;
    snprintf(rv->from[id], sizeof rv->from[id], "%s", from);
    return HLPT_OK;
}

static int read_flags(raw_values *rv, int *help, int argc, char *const *argv, char *why, size_t len) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0)
            return hlpt_why(why, len, HLPT_ERR_INVAL, "unexpected argument `%s` (options start with --)", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        int id = find_option(name, n);
        if (id < 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "unknown option --%.*s", (int)n, name);
        char flag[64];
        flag_name(flag, sizeof flag, options[id].field);
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc) return hlpt_why(why, len, HLPT_ERR_INVAL, "option --%s needs a value", flag);
            val = argv[++i];
        }
        char from[80];
        snprintf(from, sizeof from, "--%s", flag);
        int err = set_raw(rv, id, val, strlen(val), from);
        if (err) return hlpt_why(why, len, err, "out of memory");
    }
    return HLPT_OK;
}

static int read_env(raw_values *rv, char *const *envp) {
    for (int id = 0; envp && id < N_OPTIONS; id++) {
        char name[64];
        env_name(name, sizeof name, options[id].field);
        size_t n = strlen(name);
        for (char *const *e = envp; *e; e++) {
            if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') {
                if (set_raw(rv, id, *e + n + 1, strlen(*e + n + 1), name)) return HLPT_ERR_NOMEM;
            }
        }
    }
    return HLPT_OK;
}

static const char *trim(char *s, char **end) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) e--;
    *e = 0;
    *end = e;
    return s;
}

static int read_file(raw_values *rv, const char *path, char *why, size_t len) {
    FILE *f = fopen(path, "r");
    if (!f) return hlpt_why(why, len, HLPT_ERR_IO, "config file %s: %s", path, strerror(errno));
    char line[4096];
    int lineno = 0, err = HLPT_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        /* A longer line would be read as two: refused rather than half taken. */
        if (!strchr(line, '\n') && !feof(f)) {
            err = hlpt_why(why, len, HLPT_ERR_INVAL, "config file %s line %d: longer than %zu bytes", path, lineno,
                           sizeof line - 2);
            goto out;
        }
        char *end;
        const char *s = trim(line, &end);
        if (!*s || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            err = hlpt_why(why, len, HLPT_ERR_INVAL, "config file %s line %d: expected `key = value`", path, lineno);
            goto out;
        }
        const char *k = s, *ke = eq;
        while (ke > k && isspace((unsigned char)ke[-1])) ke--;
        const char *v = eq + 1;
        while (isspace((unsigned char)*v)) v++;
        int id = find_option(k, (size_t)(ke - k));
        if (id < 0 || id == OPT_ID_config) {
            err = hlpt_why(why, len, HLPT_ERR_INVAL, "config file %s line %d: unknown option `%.*s`", path,
                           lineno, (int)(ke - k), k);
            goto out;
        }
        char from[96];
        snprintf(from, sizeof from, "%.80s:%d", path, lineno);
        /* The file is the weakest source: flags and environment already set stay. */
        if (rv->val[id]) continue;
        if ((err = set_raw(rv, id, v, strlen(v), from))) goto out;
    }
    if (ferror(f)) err = hlpt_why(why, len, HLPT_ERR_IO, "config file %s: read error", path);
out:
    fclose(f);
    return err;
}

static int parse_long(const char *s, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return 0;
    *out = v;
    return 1;
}

/* "1048576", "64K", "100M", "1G" (powers of 1024). */
static int parse_size(const char *s, size_t *out) {
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*s)) return 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return 0;
    unsigned shift = 0;
    if (*end) {
        switch (toupper((unsigned char)*end)) {
        case 'K': shift = 10; break;
        case 'M': shift = 20; break;
        case 'G': shift = 30; break;
        default: return 0;
        }
        if (end[1] && !(toupper((unsigned char)end[1]) == 'B' && !end[2]) &&
            !(end[1] == 'i' && toupper((unsigned char)end[2]) == 'B' && !end[3]))
            return 0;
    }
    if (v > (SIZE_MAX >> shift)) return 0;
    *out = (size_t)(v << shift);
    return 1;
}

/* "127.0.0.1:8080", "[::1]:0", "localhost:80". */
static int parse_addr(const char *s, char **host, int *port) {
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) return 0;
    const char *h = s, *he = colon;
    if (*h == '[') {
        if (he[-1] != ']') return 0;
        h++, he--;
    }
    long p;
    if (!parse_long(colon + 1, &p) || p < 0 || p > 65535 || he <= h) return 0;
    if (!(*host = strndup(h, (size_t)(he - h)))) return 0;
    *port = (int)p;
    return 1;
}

static int convert(hlptd_settings *c, int id, const char *val, const char *from, char *why, size_t len) {
    const option *o = &options[id];
    char flag[64];
    flag_name(flag, sizeof flag, o->field);
    long v = 0;
    size_t sz = 0;
    switch (o->type) {
    case OPT_STR:
        if (!*val) return hlpt_why(why, len, HLPT_ERR_INVAL, "option --%s: empty value (from %s)", flag, from);
        break;
    case OPT_STORE:
        /* The value is not repeated: a URL may hold a password. */
        if (strncmp(val, "postgres://", strlen("postgres://")) &&
            strncmp(val, "postgresql://", strlen("postgresql://")))
            return hlpt_why(why, len, HLPT_ERR_INVAL,
                            "option --%s: expected a PostgreSQL URL, postgres://... or postgresql://... (from %s)", flag,
                            from);
        break;
    case OPT_INT:
        if (!parse_long(val, &v))
            return hlpt_why(why, len, HLPT_ERR_INVAL, "option --%s: `%s` is not an integer (from %s)", flag, val, from);
        if (v < o->min || v > o->max)
            return hlpt_why(why, len, HLPT_ERR_INVAL, "option --%s: %ld is outside [%ld, %ld] (from %s)", flag, v,
                            o->min, o->max, from);
        break;
    case OPT_SIZE:
        if (!parse_size(val, &sz) || sz < (size_t)o->min)
            return hlpt_why(why, len, HLPT_ERR_INVAL,
                            "option --%s: `%s` is not a positive size like 4096, 64K, 100M, 1G (from %s)", flag, val, from);
        break;
    case OPT_ADDR:
        free(c->listen_host);
        c->listen_host = NULL;
        if (!parse_addr(val, &c->listen_host, &c->listen_port))
            return hlpt_why(why, len, HLPT_ERR_INVAL, "option --%s: `%s` is not HOST:PORT (from %s)", flag, val, from);
        break;
    case OPT_LEVEL:
        if ((v = hlptd_log_level_parse(val)) < 0)
            return hlpt_why(why, len, HLPT_ERR_INVAL,
                            "option --%s: `%s` is not one of debug, info, warn, error (from %s)", flag, val, from);
        c->log_level = (int)v;
        return HLPT_OK;
    case OPT_DTYPE:
        if (hlpt_base_dtype_parse(val, &c->dtype) != HLPT_OK)
            return hlpt_why(why, len, HLPT_ERR_INVAL, "option --%s: `%s` is not one of auto, bf16, f32 (from %s)",
                            flag, val, from);
        return HLPT_OK;
    }
    char *dup = NULL;
    if (o->type == OPT_STR || o->type == OPT_ADDR || o->type == OPT_STORE) {
        if (!(dup = strdup(val))) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    }
    switch (id) {
#define X(field, type, ...)                                                                        \
    case OPT_ID_##field:                                                                           \
        store_##type(&c->field, dup, v);                                                           \
        break;
#define store_STR(p, s, n) (free(*(p)), *(p) = (s))
#define store_STORE(p, s, n) (free(*(p)), *(p) = (s))
#define store_ADDR(p, s, n) (free(*(p)), *(p) = (s))
#define store_INT(p, s, n) (*(p) = (int)(n))
#define store_SIZE(p, s, n) (*(p) = sz)
#define store_LEVEL(p, s, n) ((void)(p))
#define store_DTYPE(p, s, n) ((void)(p))
        HLPTD_OPTIONS(X)
#undef X
#undef store_STR
#undef store_STORE
#undef store_ADDR
#undef store_INT
#undef store_SIZE
#undef store_LEVEL
#undef store_DTYPE
    }
    return HLPT_OK;
}

int hlptd_settings_load(hlptd_settings *c, int argc, char *const *argv, char *const *envp, char *why, size_t len) {
    memset(c, 0, sizeof *c);
    raw_values rv = {0};
    int err;
    if ((err = read_flags(&rv, &c->help, argc, argv, why, len))) goto out;
    raw_values env = {0};
    err = read_env(&env, envp);
    for (int id = 0; id < N_OPTIONS; id++) {
        /* Flags win over the environment. */
        if (!rv.val[id] && env.val[id]) {
            rv.val[id] = env.val[id];
            memcpy(rv.from[id], env.from[id], sizeof rv.from[id]);
        } else {
            free(env.val[id]);
        }
    }
    if (err) {
        err = hlpt_why(why, len, err, "out of memory");
        goto out;
    }
    if (rv.val[OPT_ID_config] && (err = read_file(&rv, rv.val[OPT_ID_config], why, len))) goto out;
    for (int id = 0; id < N_OPTIONS; id++) {
        const char *val = rv.val[id] ? rv.val[id] : options[id].def;
        if (!val) continue;
        if ((err = convert(c, id, val, rv.val[id] ? rv.from[id] : "default", why, len))) goto out;
    }
    if (!c->help) {
        if (!c->model) {
            err = hlpt_why(why, len, HLPT_ERR_INVAL, "option --model is required (or HLPTD_MODEL)");
            goto out;
        }
        if (!c->data_dir) {
            err = hlpt_why(why, len, HLPT_ERR_INVAL, "option --data-dir is required (or HLPTD_DATA_DIR)");
            goto out;
        }
        if (!c->node_id) {
            char host[256];
            if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
            host[sizeof host - 1] = 0;
            size_t n = strlen(host) + strlen(c->data_dir) + 2;
            if (!(c->node_id = malloc(n))) {
                err = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
                goto out;
            }
            snprintf(c->node_id, n, "%s:%s", host, c->data_dir);
        }
    }
out:
    for (int id = 0; id < N_OPTIONS; id++) free(rv.val[id]);
    if (err) hlptd_settings_free(c);
    return err;
}

void hlptd_settings_free(hlptd_settings *c) {
    if (!c) return;
    free(c->model);
    free(c->data_dir);
    free(c->store);
    free(c->node_id);
    free(c->advertise_url);
    free(c->listen);
    free(c->listen_host);
    free(c->api_key_file);
    free(c->config);
    memset(c, 0, sizeof *c);
}

void hlptd_settings_usage(FILE *f) {
    fprintf(f, "usage: hlptd --model DIR --data-dir DIR [options]\n\n"
               "Serves fine-tuning jobs and generation for one base model over HTTP.\n\noptions:\n");
    for (int id = 0; id < N_OPTIONS; id++) {
        const option *o = &options[id];
        char flag[64], env[64], left[96];
        flag_name(flag, sizeof flag, o->field);
        env_name(env, sizeof env, o->field);
        snprintf(left, sizeof left, "--%s %s", flag, o->metavar);
        fprintf(f, "  %-28s %s", left, o->help);
        if (o->def) fprintf(f, " [%s]", o->def);
        fprintf(f, "\n  %-28s env %s, file key `%s`\n", "", env, flag);
    }
    fprintf(f, "\n  --help                       this text\n\n"
               "A flag wins over its environment variable, which wins over the config file.\n");
}
