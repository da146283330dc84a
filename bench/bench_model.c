/*
 * bench_model - single-stream prefill and decode speed of a model directory, at 1 and 2 BLAS
 * threads, against the machine's own sgemm rate and memory read bandwidth (measured here too).
 *
 *   bench_model --make-model DIR     writes a random-weight model of a realistic shape (a slice of a
 *                                    1B model: hidden 2048, 32 heads, 4 kv heads, ffn 5632, vocab
 *                                    32000, 4 layers; BF16 on disk) so speed needs no download
 *   bench_model --model DIR [--prompt 512] [--decode 64]
 *
 * Decode is memory-bound: each token reads every weight once, so the figure of merit is weight
 * bytes per second against the read bandwidth. Prefill is compute-bound: 2 x parameters FLOPs per
 * token against sgemm's rate.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bench_util.h"
#include "hlpt/err.h"
#include "hlpt/model.h"
#include "hlpt/safetensors.h"
#include "hlpt/tensor.h"


/* ---------------------------------------------------------------------------------------------- */

static uint64_t rng = 0x1234567;
static float randn(void) {
    /* xorshift + Box-Muller: quality is irrelevant here, speed is not. */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    double u1 = ((rng >> 11) + 1) * 0x1.0p-53;
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    double u2 = (rng >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

static uint16_t *random_bf16(size_t n, float scale) {
    uint16_t *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) {
        float f = randn() * scale;
        uint32_t u;
        memcpy(&u, &f, 4);
        p[i] = (uint16_t)(u >> 16);
    }
    return p;
}

static int make_model(const char *dir) {
    const int L = 4, C = 2048, H = 32, KV = 4, D = 64, F = 5632, V = 32000;
    mkdir(dir, 0755);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f,
            "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":%d,"
            "\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"head_dim\":%d,\"intermediate_size\":%d,"
            "\"vocab_size\":%d,\"num_hidden_layers\":%d,\"max_position_embeddings\":4096,\"rms_norm_eps\":1e-5,"
            "\"rope_theta\":10000.0,\"tie_word_embeddings\":false,\"bos_token_id\":1,\"eos_token_id\":2,"
            "\"hidden_act\":\"silu\",\"torch_dtype\":\"bfloat16\"}\n",
            C, H, KV, D, F, V, L);
    fclose(f);
    hlpt_st_writer *w;
    hlpt_st_writer_new(&w);
    char names[64][96];
    void *bufs[64];
    int nb = 0;
#define ADD(name, r, c)                                                                   \
    do {                                                                                  \
        int64_t shape[2] = {(r), (c)};                                                    \
        snprintf(names[nb], sizeof names[nb], "%s", name);                                \
        bufs[nb] = random_bf16((size_t)(r) * (c), (c) == 1 ? 0.0f : 0.02f);               \
        if ((c) == 1)                                                                     \
            for (int64_t i = 0; i < (r); i++) ((uint16_t *)bufs[nb])[i] = 0x3f80; /* 1.0 */ \
        hlpt_st_writer_add(w, names[nb], HLPT_DTYPE_BF16, (c) == 1 ? 1 : 2, shape, bufs[nb]); \
        nb++;                                                                             \
    } while (0)
    ADD("model.embed_tokens.weight", V, C);
    ADD("lm_head.weight", V, C);
    ADD("model.norm.weight", C, 1);
    for (int l = 0; l < L; l++) {
        char n[96];
#define LAYER(suffix, r, c) snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix); ADD(n, r, c)
        LAYER("input_layernorm.weight", C, 1);
        LAYER("post_attention_layernorm.weight", C, 1);
        LAYER("self_attn.q_proj.weight", H * D, C);
        LAYER("self_attn.k_proj.weight", KV * D, C);
        LAYER("self_attn.v_proj.weight", KV * D, C);
        LAYER("self_attn.o_proj.weight", C, H * D);
        LAYER("mlp.gate_proj.weight", F, C);
        LAYER("mlp.up_proj.weight", F, C);
        LAYER("mlp.down_proj.weight", C, F);
#undef LAYER
    }
#undef ADD
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    char why[256] = "";
    int err = hlpt_st_writer_write(w, path, why, sizeof why);
    hlpt_st_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    if (err) {
        fprintf(stderr, "bench_model: %s\n", why);
        return 1;
    }
    /* Any LLaMA tokenizer will do: the benchmark feeds ids. */
    snprintf(path, sizeof path, "cp tests/fixtures/llama2-mha-f32/tokenizer.json %s/tokenizer.json", dir);
    if (system(path) != 0) return 1;
    printf("random model written to %s\n", dir);
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */

static int run(const char *dir, int prompt, int decode) {
    char why[512] = "";
    hlpt_model *m;
    double t0 = now();
    if (hlpt_model_open(dir, HLPT_BASE_F32, &m, why, sizeof why)) {
        fprintf(stderr, "bench_model: %s: %s\n", dir, why);
        return 1;
    }
    const hlpt_config *c = hlpt_model_config(m);
    size_t bytes = hlpt_model_bytes(m);
    /* Weights read per decoded token: every matrix except the embedding table (one row is read). */
    double per_token = (double)bytes - (c->tie_embeddings ? 0 : (double)c->vocab * c->hidden * 4);
    double params_flop = per_token / 4; /* FLOPs per token = 2 x matmul parameters */
    printf("model %s: %d layers, hidden %d, %d heads (%d kv), ffn %d, vocab %d; %.0f MB f32, loaded in %.1f s\n",
           dir, c->n_layers, c->hidden, c->n_heads, c->n_kv_heads, c->ffn, c->vocab, bytes / 1e6, now() - t0);
    printf("OpenBLAS core: %s\n", hlpt_blas_corename());
    double bws[3] = {0, machine_bandwidth(1), machine_bandwidth(2)};
    printf("memory read bandwidth (streaming sum): %.1f GB/s 1 thread, %.1f GB/s 2 threads\n", bws[1], bws[2]);
    int *ids = malloc(sizeof(int) * (size_t)(prompt + decode));
    for (int i = 0; i < prompt + decode; i++) ids[i] = 3 + (i * 7919) % (c->vocab - 3);
    hlpt_runner *r;
    hlpt_runner_new(m, &r);
    for (int threads = 1; threads <= 2; threads++) {
        hlpt_blas_set_threads(threads);
        double peak = gemm_gflops(prompt, c->ffn, c->hidden), bw = bws[threads];
        hlpt_seq *s;
        hlpt_seq_new(m, NULL, prompt + decode, &s);
        const float *lg;
        const int *tp = ids;
        int n = prompt;
        /* warm-up pass over a short prompt */
        int warm = 16;
        hlpt_model_step(r, &s, &tp, &warm, 1, 0, &lg, why, sizeof why);
        hlpt_seq_reset(s);
        t0 = now();
        if (hlpt_model_step(r, &s, &tp, &n, 1, 0, &lg, why, sizeof why)) {
            fprintf(stderr, "bench_model: %s\n", why);
            return 1;
        }
        double prefill = now() - t0;
        t0 = now();
        for (int i = 0; i < decode; i++) {
            int one = 1;
            tp = ids + prompt + i;
            hlpt_model_step(r, &s, &tp, &one, 1, 0, &lg, why, sizeof why);
        }
        double dec = now() - t0;
        double pf_tps = prompt / prefill, dec_tps = decode / dec;
        printf("threads %d: sgemm %dx%dx%d %.1f GFLOP/s\n", threads, prompt, c->ffn, c->hidden, peak);
        printf("threads %d: prefill %d tokens: %.1f tokens/s, %.1f GFLOP/s (%.0f%% of sgemm)\n", threads, prompt,
               pf_tps, pf_tps * 2 * params_flop / 1e9, 100 * pf_tps * 2 * params_flop / 1e9 / peak);
        printf("threads %d: decode %d tokens: %.2f tokens/s, %.1f GB/s of weights (%.0f%% of read bandwidth)\n",
               threads, decode, dec_tps, dec_tps * per_token / 1e9, 100 * dec_tps * per_token / 1e9 / bw);
        hlpt_seq_free(s);
    }
    hlpt_runner_free(r);
    free(ids);
    hlpt_model_close(m);
    return 0;
}

int main(int argc, char **argv) {
    hlpt_blas_init(argv);
    const char *model = NULL;
    int prompt = 512, decode = 64;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--make-model") && i + 1 < argc) return make_model(argv[i + 1]);
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode") && i + 1 < argc) decode = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_model --make-model DIR | --model DIR [--prompt N] [--decode N]\n");
            return 2;
        }
    }
    if (!model || prompt < 1 || decode < 1) {
        fprintf(stderr, "usage: bench_model --make-model DIR | --model DIR [--prompt N] [--decode N]\n");
        return 2;
    }
    return run(model, prompt, decode);
}
