/*
 * config.c - config.json of LLaMA-family models: parse with cJSON, check, fill hlpt_config.
 *
 * DESIGN. The integer dimensions are one table (key, field, required, default, range); the rest
 * are a handful of special cases (architecture, rope, token ids) each with its own small function.
 * Order: every field is read with its JSON type checked (wrong types name the field), then the
 * combinations are checked (divisibility, overflow guards). JSON null means "not given", as
 * transformers writes defaults as null.
 */
#include "hlpt/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hlpt/err.h"

#define CONFIG_FILE_MAX (16 << 20) /* a config.json larger than 16 MB is not a config */
#define MAX_ELEMS ((int64_t)1 << 34) /* absurd single matrix: more elements than this */
#define MAX_PARAMS ((int64_t)1 << 40) /* absurd model: more parameters than this */

/* Integer fields: X(key, field, required, default (-1: derived later), min, max). */
#define CONFIG_INTS(X)                                                  \
    X("num_hidden_layers", n_layers, 1, 0, 1, 4096)                     \
    X("hidden_size", hidden, 1, 0, 1, 1 << 20)                          \
    X("num_attention_heads", n_heads, 1, 0, 1, 1 << 14)                 \
    X("num_key_value_heads", n_kv_heads, 0, -1, 1, 1 << 14)             \
    X("head_dim", head_dim, 0, -1, 1, 1 << 16)                          \
    X("intermediate_size", ffn, 1, 0, 1, 1 << 22)                       \
    X("vocab_size", vocab, 1, 0, 1, 1 << 24)                            \
    X("max_position_embeddings", max_pos, 0, 2048, 1, 1 << 24)

static const struct {
    const char *key;
    size_t off;
    int required, def, min, max;
} int_fields[] = {
#define X(key, field, req, def, min, max) {key, offsetof(hlpt_config, field), req, def, min, max},
    CONFIG_INTS(X)
#undef X
};

static const char *const architectures[][2] = {
    {"LlamaForCausalLM", "llama"},
    {"MistralForCausalLM", "mistral"},
};
static const char *const dtype_names[] = {"float32", "bfloat16", "float16"};

/* The item for key, NULL when absent or null. */
static const cJSON *get(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNull(v) ? NULL : v;
}

/* An exact integer in [INT_MIN, INT_MAX]. */
static int as_int(const cJSON *v, int *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= -2147483648.0 && d <= 2147483647.0) || d != floor(d)) return 0;
    *out = (int)d;
    return 1;
}

static int get_bool(const cJSON *o, const char *key, int def, int *out, char *why, size_t len) {
    const cJSON *v = get(o, key);
    if (!v) {
        *out = def;
        return HLPT_OK;
    }
    if (!cJSON_IsBool(v)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: expected a boolean", key);
    *out = cJSON_IsTrue(v);
    return HLPT_OK;
}

/* A positive finite number (rope_theta, rms_norm_eps); messages call it name. */
static int get_pos_float(const cJSON *o, const char *key, const char *name, float def, float *out,
                         char *why, size_t len) {
    const cJSON *v = get(o, key);
    if (!v) {
        *out = def;
        return HLPT_OK;
    }
    if (!cJSON_IsNumber(v)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: expected a number", name);
    double d = v->valuedouble;
    if (!(d > 0) || !isfinite((float)d) || (float)d == 0)
        return hlpt_why(why, len, HLPT_ERR_RANGE, "%s: %g is not a positive float", name, d);
    *out = (float)d;
    return HLPT_OK;
}

static int check_arch(const cJSON *root, hlpt_config *c, char *why, size_t len) {
    const cJSON *arch = get(root, "architectures"), *mt = get(root, "model_type");
    const char *from_arch = NULL;
    if (arch) {
        if (!cJSON_IsArray(arch))
            return hlpt_why(why, len, HLPT_ERR_FORMAT, "architectures: expected an array of strings");
        for (const cJSON *a = arch->child; a; a = a->next) {
            if (!cJSON_IsString(a))
                return hlpt_why(why, len, HLPT_ERR_FORMAT,
                                "architectures: expected an array of strings");
            size_t k = 0;
            while (k < sizeof architectures / sizeof architectures[0] &&
                   strcmp(a->valuestring, architectures[k][0]) != 0)
                k++;
            if (k == sizeof architectures / sizeof architectures[0])
                return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED,
                                "architectures: '%.64s' is not supported (LlamaForCausalLM or "
                                "MistralForCausalLM)", a->valuestring);
            from_arch = architectures[k][1];
        }
    }
    if (mt) {
        if (!cJSON_IsString(mt)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "model_type: expected a string");
        if (strcmp(mt->valuestring, "llama") != 0 && strcmp(mt->valuestring, "mistral") != 0)
            return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED,
                            "model_type: '%.64s' is not supported (llama or mistral)", mt->valuestring);
        snprintf(c->model_type, sizeof c->model_type, "%s", mt->valuestring);
    } else if (from_arch) {
        snprintf(c->model_type, sizeof c->model_type, "%s", from_arch);
    } else {
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "model_type: missing (and no architectures)");
    }
    return HLPT_OK;
}

/* rope_scaling and rope_parameters: only the default rotation; theta from rope_parameters first. */
static int check_rope(const cJSON *root, hlpt_config *c, char *why, size_t len) {
    static const char *const keys[] = {"rope_scaling", "rope_parameters"};
    int rc = get_pos_float(root, "rope_theta", "rope_theta", 10000.0f, &c->rope_theta, why, len);
    if (rc) return rc;
    for (size_t i = 0; i < 2; i++) {
        const cJSON *r = get(root, keys[i]);
        if (!r) continue;
        if (!cJSON_IsObject(r)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: expected an object", keys[i]);
        const cJSON *t = get(r, "rope_type");
        if (!t) t = get(r, "type");
        if (t && !cJSON_IsString(t))
            return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s.rope_type: expected a string", keys[i]);
        if (t && strcmp(t->valuestring, "default") != 0)
            return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED,
                            "%s: rope_type '%.64s' is not supported (only default)", keys[i],
                            t->valuestring);
        if (i == 0 && !t)
            return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED,
                            "rope_scaling: present without a rope_type (only default is supported)");
        if (i == 1 && get(r, "rope_theta") &&
            (rc = get_pos_float(r, "rope_theta", "rope_parameters.rope_theta", 0, &c->rope_theta,
                                why, len)))
            return rc;
    }
    return HLPT_OK;
}

/* Appends the ids of v (an int or a list of ints) to eos_ids, dropping duplicates and negatives. */
static int add_eos(hlpt_config *c, const cJSON *v, const char *key, char *why, size_t len) {
    if (!v) return HLPT_OK;
    const cJSON *one = v, *next = NULL;
    if (cJSON_IsArray(v)) one = v->child;
    for (; one; one = next) {
        next = cJSON_IsArray(v) ? one->next : NULL;
        int id;
        if (!as_int(one, &id))
            return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: expected an integer or a list of integers",
                            key);
        if (id < 0) continue;
        int k = 0;
        while (k < c->n_eos && c->eos_ids[k] != id) k++;
        if (k < c->n_eos) continue;
        if (c->n_eos == HLPT_MAX_EOS)
            return hlpt_why(why, len, HLPT_ERR_RANGE, "%s: more than %d ids", key, HLPT_MAX_EOS);
        c->eos_ids[c->n_eos++] = id;
    }
    return HLPT_OK;
}

/* A token id field: int or null; negative means none. */
static int get_id(const cJSON *root, const char *key, int *out, char *why, size_t len) {
    const cJSON *v = get(root, key);
    *out = -1;
    if (!v) return HLPT_OK;
    if (!as_int(v, out)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: expected an integer", key);
    if (*out < 0) *out = -1;
    return HLPT_OK;
}

static int parse_root(const cJSON *root, hlpt_config *c, char *why, size_t len) {
    int rc;
    if (!cJSON_IsObject(root)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "not a JSON object");
    if ((rc = check_arch(root, c, why, len))) return rc;

    for (size_t i = 0; i < sizeof int_fields / sizeof int_fields[0]; i++) {
        const cJSON *v = get(root, int_fields[i].key);
        int *dst = (int *)((char *)c + int_fields[i].off), x;
        if (!v) {
            if (int_fields[i].required)
                return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: missing", int_fields[i].key);
            *dst = int_fields[i].def;
            continue;
        }
        if (!as_int(v, &x))
            return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: expected an integer", int_fields[i].key);
        if (x < int_fields[i].min)
            return hlpt_why(why, len, HLPT_ERR_RANGE, "%s: %d is not positive", int_fields[i].key, x);
        if (x > int_fields[i].max)
            return hlpt_why(why, len, HLPT_ERR_RANGE, "%s: %d is absurd (at most %d)",
                            int_fields[i].key, x, int_fields[i].max);
        *dst = x;
    }

    const cJSON *act = get(root, "hidden_act");
    if (act && !cJSON_IsString(act)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "hidden_act: expected a string");
    if (act && strcmp(act->valuestring, "silu") != 0 && strcmp(act->valuestring, "swish") != 0)
        return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "hidden_act: '%.64s' is not supported (silu)",
                        act->valuestring);
    static const char *const biases[] = {"attention_bias", "mlp_bias"};
    for (size_t i = 0; i < 2; i++) {
        int b = 0;
        if ((rc = get_bool(root, biases[i], 0, &b, why, len))) return rc;
        if (b) return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "%s: true is not supported", biases[i]);
    }
    if (get(root, "quantization_config"))
        return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED,
                        "quantization_config: quantized checkpoints are not supported");
    const cJSON *sw = get(root, "sliding_window");
    int w;
    if (sw && !as_int(sw, &w)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "sliding_window: expected an integer");
    if (sw && w < c->max_pos)
        return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED,
                        "sliding_window: %d is shorter than max_position_embeddings %d (sliding "
                        "window attention is not supported)", w, c->max_pos);
    if ((rc = check_rope(root, c, why, len))) return rc;
    if ((rc = get_pos_float(root, "rms_norm_eps", "rms_norm_eps", 1e-6f, &c->rms_eps, why, len))) return rc;
    if ((rc = get_bool(root, "tie_word_embeddings", 0, &c->tie_embeddings, why, len))) return rc;

    const char *dkey = get(root, "dtype") ? "dtype" : "torch_dtype";
    const cJSON *dt = get(root, dkey);
    snprintf(c->dtype, sizeof c->dtype, "float32");
    if (dt) {
        if (!cJSON_IsString(dt)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: expected a string", dkey);
        size_t k = 0;
        while (k < 3 && strcmp(dt->valuestring, dtype_names[k]) != 0) k++;
        if (k == 3)
            return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED,
                            "%s: '%.32s' is not supported (float32, bfloat16 or float16)", dkey,
                            dt->valuestring);
        snprintf(c->dtype, sizeof c->dtype, "%s", dtype_names[k]);
    }

    if ((rc = get_id(root, "bos_token_id", &c->bos_id, why, len))) return rc;
    if ((rc = get_id(root, "pad_token_id", &c->pad_id, why, len))) return rc;
    if ((rc = add_eos(c, get(root, "eos_token_id"), "eos_token_id", why, len))) return rc;

    /* Combinations. */
    if (c->n_kv_heads < 0) c->n_kv_heads = c->n_heads;
    if (c->n_heads % c->n_kv_heads)
        return hlpt_why(why, len, HLPT_ERR_MISMATCH,
                        "num_attention_heads %d is not a multiple of num_key_value_heads %d",
                        c->n_heads, c->n_kv_heads);
    if (c->head_dim < 0) {
        if (c->hidden % c->n_heads)
            return hlpt_why(why, len, HLPT_ERR_MISMATCH,
                            "hidden_size %d is not divisible by num_attention_heads %d (and no "
                            "head_dim)", c->hidden, c->n_heads);
        c->head_dim = c->hidden / c->n_heads;
    }
    int64_t C = c->hidden, qd = (int64_t)c->n_heads * c->head_dim,
            kvd = (int64_t)c->n_kv_heads * c->head_dim;
    static const char *const what[] = {"vocab_size * hidden_size", "intermediate_size * hidden_size",
                                       "num_attention_heads * head_dim * hidden_size"};
    int64_t elems[] = {(int64_t)c->vocab * C, (int64_t)c->ffn * C, qd * C};
    for (size_t i = 0; i < 3; i++)
        if (elems[i] > MAX_ELEMS)
            return hlpt_why(why, len, HLPT_ERR_RANGE, "%s = %lld elements is absurd (at most 2^34)",
                            what[i], (long long)elems[i]);
    /* Per layer: q, o [qd, C]; k, v [kvd, C]; gate, up, down [F, C]; two norms [C]. Each term is
     * below 2^36 from the guards above, so the sum and the product by L (< 2^13) fit. */
    int64_t per_layer = 2 * qd * C + 2 * kvd * C + 3 * (int64_t)c->ffn * C + 2 * C;
    int64_t params = c->n_layers * per_layer + (c->tie_embeddings ? 1 : 2) * elems[0];
    if (params > MAX_PARAMS)
        return hlpt_why(why, len, HLPT_ERR_RANGE, "%lld parameters is absurd (at most 2^40)",
                        (long long)params);
    if (c->bos_id >= c->vocab)
        return hlpt_why(why, len, HLPT_ERR_RANGE, "bos_token_id: %d is outside the vocabulary (%d)",
                        c->bos_id, c->vocab);
    if (c->pad_id >= c->vocab)
        return hlpt_why(why, len, HLPT_ERR_RANGE, "pad_token_id: %d is outside the vocabulary (%d)",
                        c->pad_id, c->vocab);
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] >= c->vocab)
            return hlpt_why(why, len, HLPT_ERR_RANGE,
                            "eos_token_id: %d is outside the vocabulary (%d)", c->eos_ids[i], c->vocab);
    return HLPT_OK;
}

/* Parses text[n] into a cJSON tree (returns owned). */
static int parse_json(const char *text, size_t n, cJSON **out, char *why, size_t len) {
    *out = NULL;
    if (memchr(text, 0, n)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "contains a NUL byte");
    char *s = malloc(n + 1);
    if (!s) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    memcpy(s, text, n);
    s[n] = 0;
    const char *end = NULL;
    *out = cJSON_ParseWithOpts(s, &end, 1);
    long at = end ? (long)(end - s) : -1L;
    free(s);
    if (!*out) return hlpt_why(why, len, HLPT_ERR_FORMAT, "not valid JSON (at byte %ld)", at);
    return HLPT_OK;
}

int hlpt_config_parse(const char *json, size_t n, hlpt_config *out, char *why, size_t len) {
    memset(out, 0, sizeof *out);
    cJSON *root;
    int rc = parse_json(json, n, &root, why, len);
    if (!rc) rc = parse_root(root, out, why, len);
    cJSON_Delete(root);
    if (rc) memset(out, 0, sizeof *out);
    return rc;
}

static int read_file(const char *path, char **buf, size_t *n, char *why, size_t len) {
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return hlpt_why(why, len, errno == ENOENT ? HLPT_ERR_NOENT : HLPT_ERR_IO, "%s: %s", path,
                        strerror(errno));
    int rc = HLPT_OK;
    char *b = NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) < 0 || !S_ISREG(sb.st_mode)) {
        rc = hlpt_why(why, len, HLPT_ERR_IO, "%s: not a readable regular file", path);
        goto out;
    }
    if (sb.st_size > CONFIG_FILE_MAX) {
        rc = hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: larger than %d bytes", path, CONFIG_FILE_MAX);
        goto out;
    }
        if (!(b = malloc((size_t)sb.st_size + 1))) {
        rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    size_t got = fread(b, 1, (size_t)sb.st_size, f);
    if (ferror(f)) {
        rc = hlpt_why(why, len, HLPT_ERR_IO, "%s: read error", path);
        goto out;
    }
    *buf = b;
    *n = got;
    b = NULL;
out:
    free(b);
    fclose(f);
    return rc;
}

/* Prefixes why with the file name: "<path>: <detail>". */
static int with_path(int rc, const char *path, char *why, size_t len) {
    if (!why || !len) return rc;
    char *d = strdup(why);
    if (!d) return rc;
    hlpt_why(why, len, rc, "%s: %s", path, d);
    free(d);
    return rc;
}

int hlpt_config_load(const char *path, hlpt_config *out, char *why, size_t len) {
    memset(out, 0, sizeof *out);
    char *cfg = NULL, *gen = NULL, *text = NULL;
    cJSON *g = NULL;
    size_t pl = strlen(path) + 32, n;
    struct stat sb;
    int rc = HLPT_OK;
    if (!(cfg = malloc(pl)) || !(gen = malloc(pl))) {
        rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* dir: the directory part with its trailing '/', "" when path is a bare file name. */
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        const char *sep = path[strlen(path) - 1] == '/' ? "" : "/";
        snprintf(cfg, pl, "%s%sconfig.json", path, sep);
        snprintf(gen, pl, "%s%sgeneration_config.json", path, sep);
    } else {
        const char *slash = strrchr(path, '/');
        int dl = slash ? (int)(slash - path + 1) : 0;
        snprintf(cfg, pl, "%s", path);
        snprintf(gen, pl, "%.*sgeneration_config.json", dl, path);
    }
    if ((rc = read_file(cfg, &text, &n, why, len))) goto out;
    if ((rc = hlpt_config_parse(text, n, out, why, len))) {
        rc = with_path(rc, cfg, why, len);
        goto out;
    }
    free(text);
    text = NULL;
    rc = read_file(gen, &text, &n, why, len);
    if (rc == HLPT_ERR_NOENT) {
        rc = HLPT_OK;
        goto out;
    }
    if (rc) goto out;
    if ((rc = parse_json(text, n, &g, why, len))) {
        rc = with_path(rc, gen, why, len);
        goto out;
    }
    if (!cJSON_IsObject(g)) {
        rc = hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: not a JSON object", gen);
        goto out;
    }
    if ((rc = add_eos(out, get(g, "eos_token_id"), "eos_token_id", why, len))) {
        rc = with_path(rc, gen, why, len);
        goto out;
    }
    for (int i = 0; i < out->n_eos; i++)
        if (out->eos_ids[i] >= out->vocab) {
            rc = hlpt_why(why, len, HLPT_ERR_RANGE, "%s: eos_token_id: %d is outside the vocabulary (%d)",
                          gen, out->eos_ids[i], out->vocab);
            goto out;
        }
out:
    if (rc) memset(out, 0, sizeof *out);
    cJSON_Delete(g);
    free(text);
    free(cfg);
    free(gen);
    return rc;
}
