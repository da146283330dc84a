/*
 * config.h - a Hugging Face config.json of a LLaMA-family model, read and checked.
 *
 * Accepted: architectures LlamaForCausalLM / MistralForCausalLM and model_type llama / mistral
 * (TinyLlama and SmolLM are llama), with both the old keys (top-level rope_theta, torch_dtype) and
 * the transformers-5 keys (rope_parameters.rope_theta, dtype). Everything hlpt's forward would get
 * wrong is rejected with an error that names the field and what was found: other architectures,
 * hidden_act other than silu, attention_bias / mlp_bias true, rope scaling other than "default",
 * Mistral sliding windows shorter than max_position_embeddings, quantization_config, non-positive
 * or inconsistent dimensions, sizes that could overflow.
 *
 * Dimension letters: L layers, C hidden, H heads, KV kv heads, D head dim, F ffn, V vocab.
 */
#ifndef HLPT_CONFIG_H
#define HLPT_CONFIG_H

#include <stddef.h>

#define HLPT_MAX_EOS 8

/* A plain value struct: copy it freely. */
typedef struct {
    char model_type[32];  /* "llama", "mistral" */
    int n_layers;         /* L  num_hidden_layers */
    int hidden;           /* C  hidden_size */
    int n_heads;          /* H  num_attention_heads */
    int n_kv_heads;       /* KV num_key_value_heads (default H); H % KV == 0 */
    int head_dim;         /* D  head_dim (default C/H) */
    int ffn;              /* F  intermediate_size */
    int vocab;            /* V  vocab_size */
    int max_pos;          /* max_position_embeddings (default 2048, as transformers) */
    float rope_theta;     /* rope_parameters.rope_theta, else rope_theta (default 10000) */
    float rms_eps;        /* rms_norm_eps (default 1e-6) */
    int tie_embeddings;   /* tie_word_embeddings (default 0) */
    int bos_id;           /* bos_token_id in [0, V), -1 if none */
    int eos_ids[HLPT_MAX_EOS]; /* eos_token_id (int or list), then generation_config.json's */
    int n_eos;            /* 0..HLPT_MAX_EOS distinct ids in [0, V) */
    int pad_id;           /* pad_token_id in [0, V), -1 if none (null or negative) */
    char dtype[16];       /* "float32", "bfloat16", "float16" from dtype or torch_dtype
                             (default "float32"); storage of the checkpoint, informational */
} hlpt_config;

/*
 * Loads path: a config.json file, or a directory holding one. When generation_config.json sits in
 * the same directory its eos_token_id (int or list) is merged into eos_ids (duplicates dropped).
 * path borrows; *out is written on success and zeroed on failure.
 * Errors: HLPT_ERR_NOENT, HLPT_ERR_IO, HLPT_ERR_NOMEM, and those of hlpt_config_parse (why starts
 * with the file's path).
 */
int hlpt_config_load(const char *path, hlpt_config *out, char *why, size_t len);
/*
 * Parses json[n] (borrows; need not be NUL-terminated; must not contain NUL bytes).
 * Errors: HLPT_ERR_FORMAT (not a JSON object, wrong JSON type: "num_hidden_layers: expected an
 * integer", a required field missing), HLPT_ERR_UNSUPPORTED (architecture, activation, bias, rope
 * scaling, sliding window, quantization), HLPT_ERR_RANGE (non-positive or absurd sizes, token ids
 * outside the vocabulary, more than HLPT_MAX_EOS eos ids), HLPT_ERR_MISMATCH (H % KV != 0, C % H
 * != 0 without head_dim), HLPT_ERR_NOMEM. *out is zeroed on failure.
 */
int hlpt_config_parse(const char *json, size_t n, hlpt_config *out, char *why, size_t len);

#endif
