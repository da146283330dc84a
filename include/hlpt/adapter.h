/*
 * adapter.h - HLPT / H²LPT adapters: layer plans, gated LoRA and gated prefix parameters, and the
 * adapter file format (docs/method.md; docs/design.md, "Files").
 *
 * An adapter is a config (its layer plan) plus one float32 arena holding every parameter, sliced
 * into per-module pointers by a tensor table. Gradients and AdamW moments are arenas of the same
 * layout, so the optimizer is one loop over n_params and a tensor's gradient sits at the same offset.
 */
#ifndef HLPT_ADAPTER_H
#define HLPT_ADAPTER_H

#include <stddef.h>
#include <stdint.h>

#include "hlpt/config.h"

/* How per-token gate scores s_t become the scale g_t (docs/method.md, "Gate modes"). */
typedef enum {
    HLPT_GATE_NONE = 0,     /* g_t = 1: no gate tensors */
    HLPT_GATE_CAUSAL = 1,   /* mean of s_1..s_t: exact under a KV cache (default) */
    HLPT_GATE_SEQUENCE = 2, /* mean of s over the whole sequence (the authors' code) */
} hlpt_gate_mode;

/* The seven linear modules LoRA may target, in the order of a LLaMA block. */
#define HLPT_MODULE_MAP(X)                                \
    X(Q, "q_proj", "self_attn")                           \
    X(K, "k_proj", "self_attn")                           \
    X(V, "v_proj", "self_attn")                           \
    X(O, "o_proj", "self_attn")                           \
    X(GATE, "gate_proj", "mlp")                           \
    X(UP, "up_proj", "mlp")                               \
    X(DOWN, "down_proj", "mlp")

typedef enum {
#define X(id, name, block) HLPT_MOD_##id,
    HLPT_MODULE_MAP(X)
#undef X
    HLPT_MOD_COUNT
} hlpt_module;

const char *hlpt_module_name(hlpt_module m);   /* "q_proj" */
int hlpt_module_from_name(const char *name);   /* -1 when unknown */
/* in/out features of module m for a base config. */
void hlpt_module_dims(const hlpt_config *c, hlpt_module m, int *in, int *out);

#define HLPT_MAX_LAYERS 256

typedef enum { HLPT_METHOD_HLPT, HLPT_METHOD_H2LPT, HLPT_METHOD_LORA, HLPT_METHOD_PREFIX } hlpt_method;
const char *hlpt_method_name(hlpt_method m);
int hlpt_method_from_name(const char *name);   /* -1 when unknown */
const char *hlpt_gate_name(hlpt_gate_mode g);
int hlpt_gate_from_name(const char *name);     /* -1 when unknown */

typedef struct {
    hlpt_method method;
    int r;                                 /* R, LoRA rank (default 8) */
    float alpha;                           /* LoRA alpha (default 16); scale = alpha / r */
    float dropout;                         /* LoRA dropout probability (default 0.05) */
    unsigned targets;                      /* bit m set: module m gets LoRA (default DOWN) */
    uint8_t lora_layer[HLPT_MAX_LAYERS];   /* 1: layer i has LoRA on every target */
    uint8_t prefix_layer[HLPT_MAX_LAYERS]; /* 1: layer i has a prefix */
    int n_virtual;                         /* P, prefix slots (default 20) */
    hlpt_gate_mode gate;                   /* default causal; NONE means no gate tensors */
    char base_name[256];                   /* base_model_name_or_path */
    char base_hash[40];                    /* hex hash of the base weights; "" = unchecked */
} hlpt_adapter_config;

/*
 * Fills *cfg with the defaults of `method` for a base of n_layers layers: hlpt LoRA [0,3L/4) and
 * prefix [3L/4,L); h2lpt LoRA [0,L/4), prefix [3L/4,L); lora: every layer, q_proj+v_proj, no gate;
 * prefix: every layer, no gate.
 */
void hlpt_adapter_config_defaults(hlpt_adapter_config *cfg, hlpt_method method, int n_layers);

/*
 * Applies a JSON object of settings on top of *cfg (the `method.<type>` object of a job, or an
 * adapter_config.json): r, lora_alpha|alpha, lora_dropout|dropout, target_modules, lora_layers,
 * prefix_layers, ratio (fraction of layers given LoRA), skip_middle (h2lpt), num_virtual_tokens,
 * gate. Unknown keys are errors (why names them) unless allow_unknown. Borrows json.
 */
struct cJSON;
int hlpt_adapter_config_apply(hlpt_adapter_config *cfg, const struct cJSON *json, int n_layers,
                              int allow_unknown, char *why, size_t len);
/* Renders cfg as adapter_config.json text (returns owned, free()). */
char *hlpt_adapter_config_json(const hlpt_adapter_config *cfg);

/* For an adapter HF PEFT can load as a plain LoRA (LoRA only, no gates, no prefix): its config as
 * PEFT writes it (peft_type LORA, layers_to_transform), returned owned; NULL for any other plan.
 * The tensor names are PEFT's already, so the two files load in PEFT as they are. */
char *hlpt_adapter_config_peft_json(const hlpt_adapter_config *cfg, int n_layers);

/* One LoRA module's parameters, pointers into the adapter arena. */
typedef struct {
    float *A;     /* [R, I] */
    float *B;     /* [O, R] */
    float *gate;  /* [I] or NULL */
} hlpt_lora;

/* One layer's prefix, pointers into the adapter arena. */
typedef struct {
    float *key;   /* [P, KV*D] */
    float *value; /* [P, KV*D] */
    float *gate;  /* [C] or NULL */
} hlpt_prefix;

typedef struct {
    char name[160];  /* PEFT-style tensor name */
    size_t offset;   /* in floats, into the arena */
    int ndim;
    int64_t shape[2];
    size_t numel;
} hlpt_adapter_tensor;

typedef struct hlpt_adapter {
    hlpt_adapter_config cfg;
    hlpt_config base;             /* the base config it was built for */
    int n_layers;
    int lowest_layer;             /* lowest adapted layer (L when none) */
    int has_prefix;               /* any prefix layer: real tokens start at position P */
    hlpt_lora *lora[HLPT_MAX_LAYERS][HLPT_MOD_COUNT]; /* NULL where absent */
    hlpt_prefix *prefix[HLPT_MAX_LAYERS];             /* NULL where absent */
    hlpt_lora *lora_store;
    hlpt_prefix *prefix_store;
    float *params;                /* [n_params] arena */
    size_t n_params;
    hlpt_adapter_tensor *tensors; /* table, sorted as created */
    int n_tensors;
} hlpt_adapter;

/* Allocates an adapter for cfg on base c with zeroed parameters. Returns owned. */
int hlpt_adapter_new(const hlpt_config *c, const hlpt_adapter_config *cfg, hlpt_adapter **out,
                     char *why, size_t len);
void hlpt_adapter_free(hlpt_adapter *a);
/* The method's initialisation (docs/method.md, "Initialisation"): A Kaiming-uniform, B zero, gates N(0, 0.02),
 * prefix N(0, 0.02) — see adapter.c for why the prefix is small. Deterministic in seed. */
void hlpt_adapter_init(hlpt_adapter *a, uint64_t seed);
/* The tensor of that name, or NULL. */
const hlpt_adapter_tensor *hlpt_adapter_find(const hlpt_adapter *a, const char *name);

/*
 * Loads an adapter directory (adapter_config.json + adapter_model.safetensors) for base c, or the
 * same two files given as memory (config JSON text, safetensors bytes). Reads hlpt's own format and
 * HF PEFT's LORA and PREFIX_TUNING as they are. A tensor that does not fit the base (shape, layer,
 * module), a missing tensor, an unknown tensor, or a base-hash mismatch (when both sides have one)
 * is HLPT_ERR_MISMATCH naming it. base_hash may be NULL (not checked).
 */
int hlpt_adapter_load(const char *dir, const hlpt_config *c, const char *base_hash,
                      hlpt_adapter **out, char *why, size_t len);
int hlpt_adapter_load_mem(const char *config_json, size_t config_len, const void *weights,
                          size_t weights_len, const hlpt_config *c, const char *base_hash,
                          hlpt_adapter **out, char *why, size_t len);
/* Writes dir/adapter_config.json and dir/adapter_model.safetensors (creates dir). extra_json, when
 * not NULL, is merged into the config object (e.g. the training settings). */
int hlpt_adapter_save(const hlpt_adapter *a, const char *dir, const char *extra_json, char *why,
                      size_t len);
/* The safetensors bytes of the parameters (or of any arena of the same layout, e.g. gradients with
 * a name prefix "grad."). Returns owned buffer. */
int hlpt_adapter_to_safetensors(const hlpt_adapter *a, const float *arena, const char *prefix,
                                void **buf, size_t *n, char *why, size_t len);

#endif
