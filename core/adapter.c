/*
 * adapter.c - adapter configs, parameter arenas and the adapter file formats.
 *
 * DESIGN
 * An adapter's parameters are one float32 arena. hlpt_adapter_new() walks the layer plan once,
 * appending each tensor to a table (name, offset, shape) and pointing the per-module structs into
 * the arena; everything else (loading, saving, gradients, the optimizer) walks that table or the flat
 * arena, so a new kind of adapter tensor is a change in plan_tensors() alone.
 *
 * Files: hlpt's own adapter_config.json + adapter_model.safetensors (docs/design.md, "Files"), and HF PEFT's
 * LORA and PREFIX_TUNING as PEFT saves them. PEFT LoRA tensors carry the same names as ours; a PEFT
 * prefix is one [P, L*2*KVD] tensor whose slot 2i is layer i's keys and 2i+1 its values.
 */
#include "hlpt/adapter.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "hlpt/err.h"
#include "hlpt/fileio.h"
#include "hlpt/safetensors.h"
#include "rng.h"

static const struct {
    const char *name, *block;
} modules[] = {
#define X(id, name, block) {name, block},
    HLPT_MODULE_MAP(X)
#undef X
};
_Static_assert(sizeof modules / sizeof modules[0] == HLPT_MOD_COUNT, "one entry per module");

static const char *const method_names[] = {"hlpt", "h2lpt", "lora", "prefix"};
static const char *const gate_names[] = {"none", "causal", "sequence"};

const char *hlpt_module_name(hlpt_module m) { return modules[m].name; }
const char *hlpt_method_name(hlpt_method m) { return method_names[m]; }
const char *hlpt_gate_name(hlpt_gate_mode g) { return gate_names[g]; }

static int index_of(const char *const *names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return i;
    return -1;
}

int hlpt_module_from_name(const char *name) {
    for (int m = 0; m < HLPT_MOD_COUNT; m++)
        if (!strcmp(modules[m].name, name)) return m;
    return -1;
}
int hlpt_method_from_name(const char *name) { return index_of(method_names, 4, name); }
int hlpt_gate_from_name(const char *name) { return index_of(gate_names, 3, name); }

void hlpt_module_dims(const hlpt_config *c, hlpt_module m, int *in, int *out) {
    int C = c->hidden, QD = c->n_heads * c->head_dim, KVD = c->n_kv_heads * c->head_dim, F = c->ffn;
    static const int ins[] = {0, 0, 0, 1, 0, 0, 2}, outs[] = {1, 3, 3, 0, 2, 2, 0};
    int dims[] = {C, QD, F, KVD};
    *in = dims[ins[m]];
    *out = dims[outs[m]];
}

/* ---------------------------------------------------------------------------------------------- */
/* Configs                                                                                         */

static void set_range(uint8_t *flags, int from, int to) {
    for (int i = from; i < to; i++) flags[i] = 1;
}

void hlpt_adapter_config_defaults(hlpt_adapter_config *cfg, hlpt_method method, int L) {
    memset(cfg, 0, sizeof *cfg);
    cfg->method = method;
    cfg->r = 8;
    cfg->alpha = 16;
    cfg->dropout = 0.05f;
    cfg->n_virtual = 20;
    cfg->gate = HLPT_GATE_CAUSAL;
    cfg->targets = 1u << HLPT_MOD_DOWN;
    switch (method) {
    case HLPT_METHOD_HLPT:
        set_range(cfg->lora_layer, 0, 3 * L / 4);
        set_range(cfg->prefix_layer, 3 * L / 4, L);
        break;
    case HLPT_METHOD_H2LPT:
        set_range(cfg->lora_layer, 0, L / 4);
        set_range(cfg->prefix_layer, 3 * L / 4, L);
        break;
    case HLPT_METHOD_LORA:
        set_range(cfg->lora_layer, 0, L);
        cfg->targets = 1u << HLPT_MOD_Q | 1u << HLPT_MOD_V;
        cfg->gate = HLPT_GATE_NONE;
        break;
    case HLPT_METHOD_PREFIX:
        set_range(cfg->prefix_layer, 0, L);
        cfg->gate = HLPT_GATE_NONE;
        break;
    }
}

static int want_int(const cJSON *v, const char *key, int lo, int hi, int *out, char *why, size_t len) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return hlpt_why(why, len, HLPT_ERR_INVAL, "%s: expected an integer", key);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return hlpt_why(why, len, HLPT_ERR_RANGE, "%s: %g is outside [%d, %d]", key, v->valuedouble, lo, hi);
    *out = (int)v->valuedouble;
    return HLPT_OK;
}

static int want_num(const cJSON *v, const char *key, double lo, double hi, int hi_open, float *out,
                    char *why, size_t len) {
    if (!cJSON_IsNumber(v)) return hlpt_why(why, len, HLPT_ERR_INVAL, "%s: expected a number", key);
    if (!(v->valuedouble >= lo) || v->valuedouble > hi || (hi_open && v->valuedouble >= hi))
        return hlpt_why(why, len, HLPT_ERR_RANGE, "%s: %g is outside [%g, %g%s", key, v->valuedouble, lo,
                        hi, hi_open ? ")" : "]");
    *out = (float)v->valuedouble;
    return HLPT_OK;
}

/* A list of layer indexes, or null for none. */
static int want_layers(const cJSON *v, const char *key, int L, uint8_t *flags, char *why, size_t len) {
    memset(flags, 0, HLPT_MAX_LAYERS);
    if (cJSON_IsNull(v)) return HLPT_OK;
    if (cJSON_IsNumber(v)) {
        int i, err = want_int(v, key, 0, L - 1, &i, why, len);
        if (!err) flags[i] = 1;
        return err;
    }
    if (!cJSON_IsArray(v)) return hlpt_why(why, len, HLPT_ERR_INVAL, "%s: expected a list of layer indexes", key);
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        int i, err = want_int(e, key, 0, L - 1, &i, why, len);
        if (err) return err;
        flags[i] = 1;
    }
    return HLPT_OK;
}

static int want_targets(const cJSON *v, unsigned *targets, char *why, size_t len) {
    *targets = 0;
    if (cJSON_IsString(v)) {
        int m = hlpt_module_from_name(v->valuestring);
        if (m < 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "target_modules: unknown module '%.64s'", v->valuestring);
        *targets = 1u << m;
        return HLPT_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
        return hlpt_why(why, len, HLPT_ERR_INVAL, "target_modules: expected a non-empty list of module names");
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        int m = cJSON_IsString(e) ? hlpt_module_from_name(e->valuestring) : -1;
        if (m < 0)
            return hlpt_why(why, len, HLPT_ERR_INVAL,
                            "target_modules: unknown module '%.64s' (allowed: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)",
                            cJSON_IsString(e) ? e->valuestring : "?");
        *targets |= 1u << m;
    }
    return HLPT_OK;
}

/* Keys an adapter config may carry; anything else is rejected unless allow_unknown. */
static const char *const config_keys[] = {
    "r", "lora_alpha", "alpha", "lora_dropout", "dropout", "target_modules", "lora_layers",
    "prefix_layers", "ratio", "skip_middle", "num_virtual_tokens", "gate", "method", "peft_type",
    "base_model_name_or_path", "base_hash",
};

int hlpt_adapter_config_apply(hlpt_adapter_config *cfg, const cJSON *json, int L, int allow_unknown,
                              char *why, size_t len) {
    int err;
    const cJSON *v;
    if (!cJSON_IsObject(json)) return hlpt_why(why, len, HLPT_ERR_INVAL, "adapter settings: expected an object");
    if (L <= 0 || L > HLPT_MAX_LAYERS) return hlpt_why(why, len, HLPT_ERR_RANGE, "%d layers are not supported", L);
    if (!allow_unknown) {
        cJSON_ArrayForEach(v, json) {
            if (index_of(config_keys, (int)(sizeof config_keys / sizeof *config_keys), v->string) < 0)
                return hlpt_why(why, len, HLPT_ERR_INVAL, "%.64s: unknown adapter setting", v->string);
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(json, "method"))) {
        int m = cJSON_IsString(v) ? hlpt_method_from_name(v->valuestring) : -1;
        if (m < 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "method: expected one of hlpt, h2lpt, lora, prefix");
        hlpt_adapter_config keep = *cfg;
        hlpt_adapter_config_defaults(cfg, (hlpt_method)m, L);
        memcpy(cfg->base_name, keep.base_name, sizeof cfg->base_name);
        memcpy(cfg->base_hash, keep.base_hash, sizeof cfg->base_hash);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(json, "r")) && (err = want_int(v, "r", 1, 4096, &cfg->r, why, len)))
        return err;
    if (!(v = cJSON_GetObjectItemCaseSensitive(json, "lora_alpha"))) v = cJSON_GetObjectItemCaseSensitive(json, "alpha");
    if (v && (err = want_num(v, "lora_alpha", 1e-6, 1e6, 0, &cfg->alpha, why, len))) return err;
    if (!(v = cJSON_GetObjectItemCaseSensitive(json, "lora_dropout"))) v = cJSON_GetObjectItemCaseSensitive(json, "dropout");
    if (v && (err = want_num(v, "lora_dropout", 0, 1, 1, &cfg->dropout, why, len))) return err;
    if ((v = cJSON_GetObjectItemCaseSensitive(json, "target_modules")) && (err = want_targets(v, &cfg->targets, why, len)))
        return err;
    /* 0 is what other tools write for a plan without prefix layers; checked against the plan below. */
    if ((v = cJSON_GetObjectItemCaseSensitive(json, "num_virtual_tokens")) &&
        (err = want_int(v, "num_virtual_tokens", 0, 1024, &cfg->n_virtual, why, len)))
        return err;
    if ((v = cJSON_GetObjectItemCaseSensitive(json, "gate"))) {
        int g = cJSON_IsString(v) ? hlpt_gate_from_name(v->valuestring) : -1;
        if (g < 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "gate: expected one of causal, sequence, none");
        cfg->gate = (hlpt_gate_mode)g;
    }
    /* Shorthands first, explicit lists win. */
    if ((v = cJSON_GetObjectItemCaseSensitive(json, "ratio"))) {
        float ratio;
        if ((err = want_num(v, "ratio", 0, 1, 0, &ratio, why, len))) return err;
        int k = (int)lround(ratio * L);
        memset(cfg->lora_layer, 0, sizeof cfg->lora_layer);
        memset(cfg->prefix_layer, 0, sizeof cfg->prefix_layer);
        set_range(cfg->lora_layer, 0, k);
        set_range(cfg->prefix_layer, k, L);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(json, "skip_middle"))) {
        if (!cJSON_IsBool(v)) return hlpt_why(why, len, HLPT_ERR_INVAL, "skip_middle: expected true or false");
        if (cJSON_IsTrue(v)) {
            /* H²LPT: the middle half keeps nothing. */
            for (int i = L / 4; i < 3 * L / 4; i++) cfg->lora_layer[i] = cfg->prefix_layer[i] = 0;
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(json, "lora_layers")) &&
        (err = want_layers(v, "lora_layers", L, cfg->lora_layer, why, len)))
        return err;
    if ((v = cJSON_GetObjectItemCaseSensitive(json, "prefix_layers")) &&
        (err = want_layers(v, "prefix_layers", L, cfg->prefix_layer, why, len)))
        return err;
    if ((v = cJSON_GetObjectItemCaseSensitive(json, "base_model_name_or_path")) && cJSON_IsString(v))
        snprintf(cfg->base_name, sizeof cfg->base_name, "%s", v->valuestring);
    if ((v = cJSON_GetObjectItemCaseSensitive(json, "base_hash")) && cJSON_IsString(v))
        snprintf(cfg->base_hash, sizeof cfg->base_hash, "%s", v->valuestring);
    int any = 0, any_prefix = 0;
    for (int i = 0; i < L; i++) any |= cfg->lora_layer[i] | cfg->prefix_layer[i], any_prefix |= cfg->prefix_layer[i];
    if (!any) return hlpt_why(why, len, HLPT_ERR_INVAL, "the layer plan adapts no layer");
    if (any_prefix && cfg->n_virtual < 1)
        return hlpt_why(why, len, HLPT_ERR_INVAL, "num_virtual_tokens: must be at least 1 when a layer has a prefix");
    return HLPT_OK;
}

static cJSON *layer_list(const uint8_t *flags) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < HLPT_MAX_LAYERS; i++)
        if (flags[i]) cJSON_AddItemToArray(a, cJSON_CreateNumber(i));
    return a;
}

static cJSON *config_object(const hlpt_adapter_config *cfg) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "peft_type", "HLPT");
    cJSON_AddStringToObject(o, "method", hlpt_method_name(cfg->method));
    cJSON_AddNumberToObject(o, "r", cfg->r);
    cJSON_AddNumberToObject(o, "lora_alpha", cfg->alpha);
    cJSON_AddNumberToObject(o, "lora_dropout", cfg->dropout);
    cJSON *t = cJSON_AddArrayToObject(o, "target_modules");
    for (int m = 0; m < HLPT_MOD_COUNT; m++)
        if (cfg->targets & (1u << m)) cJSON_AddItemToArray(t, cJSON_CreateString(hlpt_module_name(m)));
    cJSON_AddItemToObject(o, "lora_layers", layer_list(cfg->lora_layer));
    cJSON_AddItemToObject(o, "prefix_layers", layer_list(cfg->prefix_layer));
    cJSON_AddNumberToObject(o, "num_virtual_tokens", cfg->n_virtual);
    cJSON_AddStringToObject(o, "gate", hlpt_gate_name(cfg->gate));
    cJSON_AddStringToObject(o, "base_model_name_or_path", cfg->base_name);
    cJSON_AddStringToObject(o, "base_hash", cfg->base_hash);
    return o;
}

char *hlpt_adapter_config_json(const hlpt_adapter_config *cfg) {
    cJSON *o = config_object(cfg);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

char *hlpt_adapter_config_peft_json(const hlpt_adapter_config *cfg, int n_layers) {
    int any_prefix = 0, all = 1;
    for (int l = 0; l < n_layers; l++) {
        any_prefix |= cfg->prefix_layer[l];
        all &= cfg->lora_layer[l];
    }
    if (any_prefix || cfg->gate != HLPT_GATE_NONE) return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "peft_type", "LORA");
    cJSON_AddStringToObject(o, "task_type", "CAUSAL_LM");
    cJSON_AddNumberToObject(o, "r", cfg->r);
    cJSON_AddNumberToObject(o, "lora_alpha", cfg->alpha);
    cJSON_AddNumberToObject(o, "lora_dropout", cfg->dropout);
    cJSON *t = cJSON_AddArrayToObject(o, "target_modules");
    for (int m = 0; m < HLPT_MOD_COUNT; m++)
        if (cfg->targets & (1u << m)) cJSON_AddItemToArray(t, cJSON_CreateString(hlpt_module_name(m)));
    if (all) cJSON_AddNullToObject(o, "layers_to_transform");
    else cJSON_AddItemToObject(o, "layers_to_transform", layer_list(cfg->lora_layer));
    cJSON_AddStringToObject(o, "bias", "none");
    cJSON_AddBoolToObject(o, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(o, "use_rslora", 0);
    cJSON_AddBoolToObject(o, "use_dora", 0);
    cJSON_AddBoolToObject(o, "inference_mode", 1);
    cJSON_AddStringToObject(o, "base_model_name_or_path", cfg->base_name);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

/* ---------------------------------------------------------------------------------------------- */
/* Arenas                                                                                          */

/* Appends a tensor to the table (when a is built) and returns its offset. */
static size_t add_tensor(hlpt_adapter *a, int *n, size_t *off, const char *name, int64_t d0, int64_t d1) {
    size_t at = *off;
    if (a->tensors) {
        hlpt_adapter_tensor *t = &a->tensors[*n];
        snprintf(t->name, sizeof t->name, "%s", name);
        t->offset = at;
        t->ndim = 2;
        t->shape[0] = d0;
        t->shape[1] = d1;
        t->numel = (size_t)(d0 * d1);
    }
    (*n)++;
    *off += (size_t)(d0 * d1);
    return at;
}

/* One walk over the plan: counts tensors and floats, or (second pass) fills the table and points
 * the module structs into the arena. */
static void plan_tensors(hlpt_adapter *a, int *n_tensors, size_t *n_params) {
    const hlpt_config *c = &a->base;
    const hlpt_adapter_config *cfg = &a->cfg;
    int n = 0, nl = 0, np = 0;
    size_t off = 0;
    int KVD = c->n_kv_heads * c->head_dim, gated = cfg->gate != HLPT_GATE_NONE;
    char name[160];
    for (int l = 0; l < c->n_layers; l++) {
        if (cfg->lora_layer[l]) {
            for (int m = 0; m < HLPT_MOD_COUNT; m++) {
                if (!(cfg->targets & (1u << m))) continue;
                int in, out;
                hlpt_module_dims(c, m, &in, &out);
                const char *pre = "base_model.model.model.layers";
                snprintf(name, sizeof name, "%s.%d.%s.%s.lora_A.weight", pre, l, modules[m].block, modules[m].name);
                size_t oA = add_tensor(a, &n, &off, name, cfg->r, in);
                snprintf(name, sizeof name, "%s.%d.%s.%s.lora_B.weight", pre, l, modules[m].block, modules[m].name);
                size_t oB = add_tensor(a, &n, &off, name, out, cfg->r);
                size_t oG = 0;
                if (gated) {
                    snprintf(name, sizeof name, "%s.%d.%s.%s.lora_gate.weight", pre, l, modules[m].block, modules[m].name);
                    oG = add_tensor(a, &n, &off, name, 1, in);
                }
                if (a->params) {
                    hlpt_lora *lo = &a->lora_store[nl];
                    lo->A = a->params + oA;
                    lo->B = a->params + oB;
                    lo->gate = gated ? a->params + oG : NULL;
                    a->lora[l][m] = lo;
                }
                nl++;
            }
        }
        if (cfg->prefix_layer[l]) {
            snprintf(name, sizeof name, "base_model.model.model.layers.%d.self_attn.prefix_key", l);
            size_t oK = add_tensor(a, &n, &off, name, cfg->n_virtual, KVD);
            snprintf(name, sizeof name, "base_model.model.model.layers.%d.self_attn.prefix_value", l);
            size_t oV = add_tensor(a, &n, &off, name, cfg->n_virtual, KVD);
            size_t oG = 0;
            if (gated) {
                snprintf(name, sizeof name, "base_model.model.model.layers.%d.self_attn.prefix_gate.weight", l);
                oG = add_tensor(a, &n, &off, name, 1, c->hidden);
            }
            if (a->params) {
                hlpt_prefix *p = &a->prefix_store[np];
                p->key = a->params + oK;
                p->value = a->params + oV;
                p->gate = gated ? a->params + oG : NULL;
                a->prefix[l] = p;
            }
            np++;
        }
    }
    *n_tensors = n;
    *n_params = off;
}

/* The parameter arena is mapped, not malloc'd, so that freeing an adapter returns its memory to
 * the system at once (a server loads and unloads many). */
static float *arena_alloc(size_t n) {
    void *p = mmap(NULL, n * sizeof(float), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void hlpt_adapter_free(hlpt_adapter *a) {
    if (!a) return;
    if (a->params) munmap(a->params, (a->n_params + 1) * sizeof(float));
    free(a->tensors);
    free(a->lora_store);
    free(a->prefix_store);
    free(a);
}

int hlpt_adapter_new(const hlpt_config *c, const hlpt_adapter_config *cfg, hlpt_adapter **out,
                     char *why, size_t len) {
    *out = NULL;
    if (c->n_layers > HLPT_MAX_LAYERS)
        return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "%d layers (at most %d)", c->n_layers, HLPT_MAX_LAYERS);
    for (int l = c->n_layers; l < HLPT_MAX_LAYERS; l++)
        if (cfg->lora_layer[l] || cfg->prefix_layer[l])
            return hlpt_why(why, len, HLPT_ERR_MISMATCH, "layer %d is out of range: the base has %d layers", l, c->n_layers);
    hlpt_adapter *a = calloc(1, sizeof *a);
    if (!a) return HLPT_ERR_NOMEM;
    a->cfg = *cfg;
    a->base = *c;
    a->n_layers = c->n_layers;
    int n_tensors;
    plan_tensors(a, &n_tensors, &a->n_params);
    int nl = 0, np = 0;
    for (int l = 0; l < c->n_layers; l++) {
        if (cfg->lora_layer[l])
            for (int m = 0; m < HLPT_MOD_COUNT; m++) nl += !!(cfg->targets & (1u << m));
        np += cfg->prefix_layer[l];
    }
    a->tensors = calloc((size_t)n_tensors + 1, sizeof *a->tensors);
    a->params = arena_alloc(a->n_params + 1);
    a->lora_store = calloc((size_t)nl + 1, sizeof *a->lora_store);
    a->prefix_store = calloc((size_t)np + 1, sizeof *a->prefix_store);
    if (!a->tensors || !a->params || !a->lora_store || !a->prefix_store) {
        hlpt_adapter_free(a);
        return HLPT_ERR_NOMEM;
    }
    plan_tensors(a, &a->n_tensors, &a->n_params);
    a->lowest_layer = c->n_layers;
    for (int l = c->n_layers - 1; l >= 0; l--)
        if (cfg->lora_layer[l] || cfg->prefix_layer[l]) a->lowest_layer = l;
    for (int l = 0; l < c->n_layers; l++) a->has_prefix |= cfg->prefix_layer[l];
    *out = a;
    return HLPT_OK;
}

const hlpt_adapter_tensor *hlpt_adapter_find(const hlpt_adapter *a, const char *name) {
    for (int i = 0; i < a->n_tensors; i++)
        if (!strcmp(a->tensors[i].name, name)) return &a->tensors[i];
    return NULL;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/*
 * Initialisation. LoRA A: Kaiming-uniform as PyTorch's nn.Linear (bound 1/sqrt(in)); B: zero, so the
 * adapter starts as the identity. Gate vectors N(0, 0.02): gates start near sigmoid(0) = 1/2.
 * Prefix keys and values N(0, 0.02): PEFT's N(0, 1) puts large random scores on the prefix slots and
 * disturbs the base badly at step 0; small keys give the slots near-zero scores, so the prefix starts
 * as a mild, trainable extension of the context.
 */
void hlpt_adapter_init(hlpt_adapter *a, uint64_t seed) {
    uint64_t st = seed;
    for (int i = 0; i < a->n_tensors; i++) {
        const hlpt_adapter_tensor *t = &a->tensors[i];
        float *p = a->params + t->offset;
        if (ends_with(t->name, "lora_A.weight")) {
            double bound = 1.0 / sqrt((double)t->shape[1]);
            for (size_t k = 0; k < t->numel; k++) p[k] = (float)((2 * rng_uniform(&st) - 1) * bound);
        } else if (ends_with(t->name, "lora_B.weight")) {
            memset(p, 0, t->numel * sizeof(float));
        } else {
            for (size_t k = 0; k < t->numel; k++) p[k] = (float)(0.02 * rng_normal(&st));
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Loading                                                                                         */

/* Translates a PEFT LORA config into ours: gate none, PEFT's layers_to_transform (all when null). */
static int peft_lora_config(const cJSON *j, const hlpt_config *c, hlpt_adapter_config *cfg, char *why, size_t len) {
    static const char *const unsupported[] = {"use_dora", "use_rslora", "use_qalora", "lora_bias"};
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, unsupported[i])))
            return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "PEFT LoRA with %s is not supported", unsupported[i]);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "bias");
    if (cJSON_IsString(v) && strcmp(v->valuestring, "none"))
        return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "PEFT LoRA with bias '%.32s' is not supported", v->valuestring);
    const char *patterns[] = {"rank_pattern", "alpha_pattern"};
    for (int i = 0; i < 2; i++) {
        v = cJSON_GetObjectItemCaseSensitive(j, patterns[i]);
        if (cJSON_IsObject(v) && v->child)
            return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "PEFT LoRA with a %s is not supported", patterns[i]);
    }
    hlpt_adapter_config_defaults(cfg, HLPT_METHOD_LORA, c->n_layers);
    cJSON *sub = cJSON_CreateObject();
    static const char *const keep[] = {"r", "lora_alpha", "lora_dropout", "target_modules", "base_model_name_or_path"};
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) {
        v = cJSON_GetObjectItemCaseSensitive(j, keep[i]);
        if (v && !cJSON_IsNull(v)) cJSON_AddItemToObject(sub, keep[i], cJSON_Duplicate(v, 1));
    }
    v = cJSON_GetObjectItemCaseSensitive(j, "layers_to_transform");
    if (v && !cJSON_IsNull(v)) cJSON_AddItemToObject(sub, "lora_layers", cJSON_Duplicate(v, 1));
    cJSON_AddStringToObject(sub, "gate", "none");
    int err = hlpt_adapter_config_apply(cfg, sub, c->n_layers, 0, why, len);
    cJSON_Delete(sub);
    return err;
}

static int peft_prefix_config(const cJSON *j, const hlpt_config *c, hlpt_adapter_config *cfg, char *why, size_t len) {
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "prefix_projection")))
        return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "PEFT prefix tuning with prefix_projection is not supported");
    hlpt_adapter_config_defaults(cfg, HLPT_METHOD_PREFIX, c->n_layers);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "num_virtual_tokens");
    int err = want_int(v, "num_virtual_tokens", 1, 1024, &cfg->n_virtual, why, len);
    if (err) return err;
    v = cJSON_GetObjectItemCaseSensitive(j, "num_layers");
    if (cJSON_IsNumber(v) && v->valueint != c->n_layers)
        return hlpt_why(why, len, HLPT_ERR_MISMATCH, "num_layers %d does not match the base's %d layers", v->valueint, c->n_layers);
    v = cJSON_GetObjectItemCaseSensitive(j, "base_model_name_or_path");
    if (cJSON_IsString(v)) snprintf(cfg->base_name, sizeof cfg->base_name, "%s", v->valuestring);
    return HLPT_OK;
}

/* Copies every table tensor from st; gates the file lacks are dropped (docs/design.md, "Files": a missing gate
 * tensor means no gate); any tensor of the file not in the table is an error. */
static int load_tensors(hlpt_adapter *a, const hlpt_st *st, char *why, size_t len) {
    int kept = 0, err;
    for (int i = 0; i < a->n_tensors; i++) {
        hlpt_adapter_tensor *t = &a->tensors[i];
        if (!hlpt_st_find(st, t->name)) {
            if (ends_with(t->name, "gate.weight")) {
                /* Unhook the pointer of the module that owned it. */
                for (int l = 0; l < a->n_layers; l++) {
                    for (int m = 0; m < HLPT_MOD_COUNT; m++)
                        if (a->lora[l][m] && a->lora[l][m]->gate == a->params + t->offset) a->lora[l][m]->gate = NULL;
                    if (a->prefix[l] && a->prefix[l]->gate == a->params + t->offset) a->prefix[l]->gate = NULL;
                }
                continue;
            }
            return hlpt_why(why, len, HLPT_ERR_MISMATCH, "tensor %s is missing", t->name);
        }
        int64_t shape1[1] = {t->shape[1]};
        /* Gate vectors may be stored [1, n] or [n]. */
        const hlpt_st_tensor *ft = hlpt_st_find(st, t->name);
        if (ft->ndim == 1 && t->shape[0] == 1)
            err = hlpt_st_get_f32(st, t->name, 1, shape1, a->params + t->offset, why, len);
        else
            err = hlpt_st_get_f32(st, t->name, 2, t->shape, a->params + t->offset, why, len);
        if (err) return err == HLPT_ERR_NOENT ? HLPT_ERR_MISMATCH : err;
        a->tensors[kept++] = *t;
    }
    a->n_tensors = kept;
    for (int i = 0; i < hlpt_st_count(st); i++) {
        const hlpt_st_tensor *ft = hlpt_st_at(st, i);
        if (!hlpt_adapter_find(a, ft->name))
            return hlpt_why(why, len, HLPT_ERR_MISMATCH, "tensor %s does not belong to this adapter's plan", ft->name);
    }
    return HLPT_OK;
}

/* PEFT prefix: prompt_embeddings [P, L*2*KVD] -> per layer key (slot 2i) and value (slot 2i+1). */
static int load_peft_prefix(hlpt_adapter *a, const hlpt_st *st, char *why, size_t len) {
    const hlpt_config *c = &a->base;
    int P = a->cfg.n_virtual, L = c->n_layers, KVD = c->n_kv_heads * c->head_dim;
    const char *name = "prompt_embeddings";
    const hlpt_st_tensor *t = hlpt_st_find(st, name);
    if (!t) {
        /* PEFT writes the bare name; some versions prefix it. */
        for (int i = 0; i < hlpt_st_count(st) && !t; i++)
            if (ends_with(hlpt_st_at(st, i)->name, "prompt_embeddings")) t = hlpt_st_at(st, i);
        if (!t) return hlpt_why(why, len, HLPT_ERR_MISMATCH, "tensor prompt_embeddings is missing");
        name = t->name;
    }
    int64_t shape[2] = {P, (int64_t)L * 2 * KVD};
    float *buf = malloc(sizeof(float) * (size_t)P * L * 2 * KVD);
    if (!buf) return HLPT_ERR_NOMEM;
    int err = hlpt_st_get_f32(st, name, 2, shape, buf, why, len);
    if (!err) {
        for (int l = 0; l < L; l++)
            for (int p = 0; p < P; p++) {
                const float *row = buf + (size_t)p * L * 2 * KVD;
                memcpy(a->prefix[l]->key + (size_t)p * KVD, row + (size_t)(2 * l) * KVD, sizeof(float) * KVD);
                memcpy(a->prefix[l]->value + (size_t)p * KVD, row + (size_t)(2 * l + 1) * KVD, sizeof(float) * KVD);
            }
    }
    free(buf);
    return err;
}

int hlpt_adapter_load_mem(const char *config_json, size_t config_len, const void *weights,
                          size_t weights_len, const hlpt_config *c, const char *base_hash,
                          hlpt_adapter **out, char *why, size_t len) {
    *out = NULL;
    hlpt_adapter *a = NULL;
    hlpt_st *st = NULL;
    hlpt_adapter_config cfg;
    int err;
    cJSON *j = cJSON_ParseWithLength(config_json, config_len);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "adapter_config.json is not a JSON object");
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    const char *ptype = cJSON_IsString(type) ? type->valuestring : "";
    int peft_prefix = !strcmp(ptype, "PREFIX_TUNING");
    if (!strcmp(ptype, "HLPT")) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "method");
        int method = cJSON_IsString(m) ? hlpt_method_from_name(m->valuestring) : -1;
        if (method < 0) {
            err = hlpt_why(why, len, HLPT_ERR_FORMAT, "adapter_config.json: method must be hlpt, h2lpt, lora or prefix");
            goto out;
        }
        hlpt_adapter_config_defaults(&cfg, (hlpt_method)method, c->n_layers);
        /* Our own files may carry training settings beside the adapter's: allow unknown keys. */
        err = hlpt_adapter_config_apply(&cfg, j, c->n_layers, 1, why, len);
    } else if (!strcmp(ptype, "LORA")) {
        err = peft_lora_config(j, c, &cfg, why, len);
    } else if (peft_prefix) {
        err = peft_prefix_config(j, c, &cfg, why, len);
    } else {
        err = hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "adapter_config.json: peft_type '%.32s' is not supported (HLPT, LORA, PREFIX_TUNING)", ptype);
    }
    if (err) goto out;
    if (base_hash && *base_hash && *cfg.base_hash && strcmp(base_hash, cfg.base_hash)) {
        err = hlpt_why(why, len, HLPT_ERR_MISMATCH, "the adapter was trained on base %s, this base is %s", cfg.base_hash, base_hash);
        goto out;
    }
    if ((err = hlpt_adapter_new(c, &cfg, &a, why, len))) goto out;
    if ((err = hlpt_st_open_mem(weights, weights_len, &st, why, len))) goto out;
    err = peft_prefix ? load_peft_prefix(a, st, why, len) : load_tensors(a, st, why, len);
out:
    hlpt_st_close(st);
    cJSON_Delete(j);
    if (err) {
        hlpt_adapter_free(a);
        return err;
    }
    *out = a;
    return HLPT_OK;
}

int hlpt_adapter_load(const char *dir, const hlpt_config *c, const char *base_hash,
                      hlpt_adapter **out, char *why, size_t len) {
    *out = NULL;
    char path[4096];
    char *cj = NULL, *w = NULL;
    size_t cn = 0, wn = 0;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    int err = hlpt_file_read(path, (size_t)16 << 20, &cj, &cn, why, len);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (!err) err = hlpt_file_read(path, (size_t)1 << 36, &w, &wn, why, len);
    if (!err) err = hlpt_adapter_load_mem(cj, cn, w, wn, c, base_hash, out, why, len);
    free(cj);
    free(w);
    return err;
}

/* ---------------------------------------------------------------------------------------------- */
/* Saving                                                                                          */

int hlpt_adapter_to_safetensors(const hlpt_adapter *a, const float *arena, const char *prefix,
                                void **buf, size_t *n, char *why, size_t len) {
    *buf = NULL;
    hlpt_st_writer *w = NULL;
    char (*names)[160] = calloc((size_t)a->n_tensors + 1, sizeof *names);
    int err = names ? hlpt_st_writer_new(&w) : HLPT_ERR_NOMEM;
    for (int i = 0; !err && i < a->n_tensors; i++) {
        const hlpt_adapter_tensor *t = &a->tensors[i];
        snprintf(names[i], sizeof names[i], "%s%s", prefix ? prefix : "", t->name);
        err = hlpt_st_writer_add(w, names[i], HLPT_DTYPE_F32, 2, t->shape, arena + t->offset);
    }
    if (!err) err = hlpt_st_writer_to_mem(w, buf, n, why, len);
    hlpt_st_writer_free(w);
    free(names);
    return err;
}

int hlpt_adapter_save(const hlpt_adapter *a, const char *dir, const char *extra_json, char *why,
                      size_t len) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return hlpt_why(why, len, HLPT_ERR_IO, "%s: %s", dir, strerror(errno));
    cJSON *o = config_object(&a->cfg);
    if (extra_json) {
        cJSON *x = cJSON_Parse(extra_json);
        cJSON *it;
        if (x) {
            cJSON_ArrayForEach(it, x) {
                if (!cJSON_GetObjectItemCaseSensitive(o, it->string))
                    cJSON_AddItemToObject(o, it->string, cJSON_Duplicate(it, 1));
            }
        }
        cJSON_Delete(x);
    }
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    int err = text ? hlpt_file_write(path, text, strlen(text), 1, why, len) : HLPT_ERR_NOMEM;
    free(text);
    void *buf = NULL;
    size_t n = 0;
    if (!err) err = hlpt_adapter_to_safetensors(a, a->params, NULL, &buf, &n, why, len);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (!err) err = hlpt_file_write(path, buf, n, 1, why, len);
    free(buf);
    return err;
}
