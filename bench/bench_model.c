/*
 * bench_model - prefill, single-stream decode and batched decode speed of a model directory, at 1
 * and 2 threads, against the ceilings measured in the same run: the product rate of the dtype in use
 * (OpenBLAS sgemm for f32, the engine's BF16 product for bf16) and the memory read bandwidth.
 *
 *   bench_model --make-model DIR [--shape slice-1b|tinyllama-1.1b|llama2-7b]
 *        writes a random-weight model of a realistic shape in BF16, so speed needs no download:
 *        slice-1b (default): hidden 2048, 32 heads, 4 kv heads, ffn 5632, vocab 32000, 4 layers;
 *        tinyllama-1.1b: the same with 22 layers; llama2-7b: hidden 4096, 32 heads (MHA), ffn 11008,
 *        vocab 32000, 32 layers (13.5 GB, written one tensor at a time)
 *   bench_model --model DIR [--dtype auto|bf16|f32] [--prompt 256] [--decode 64] [--batch 1,8,16]
 *               [--threads 1,2]
 *
 * Decode is memory-bound: each token reads every matrix once, so the figure of merit is matrix bytes
 * per second against the read bandwidth. Prefill is compute-bound: 2 x the layers' matrix parameters
 * FLOPs per token (the lm_head runs for the last token only) against the product rate. Batched decode feeds one token to each of B sequences a step:
 * aggregate tokens/s, and its ratio to one stream.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "bench_util.h"
#include "hlpt/blas.h"
#include "hlpt/engine.h"
#include "hlpt/err.h"
#include "hlpt/model.h"

/* ---------------------------------------------------------------------------------------------- */

static uint64_t rng = 0x1234567;
/* Uniform in [-scale*sqrt(3), scale*sqrt(3)] (standard deviation scale): cheap enough for 7B. */
static uint16_t random_bf16(float scale) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    float f = ((float)((rng >> 40) * 0x1.0p-24) * 2.0f - 1.0f) * scale * 1.7320508f;
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

typedef struct {
    const char *name;
    int L, C, H, KV, D, F, V;
} model_shape;

static const model_shape shapes[] = {
    {"slice-1b", 4, 2048, 32, 4, 64, 5632, 32000},
    {"tinyllama-1.1b", 22, 2048, 32, 4, 64, 5632, 32000},
    {"llama2-7b", 32, 4096, 32, 32, 128, 11008, 32000},
};

typedef struct {
    char name[96];
    int64_t rows, cols; /* cols 1: a vector (norm weights, all ones) */
} st_entry;

/* Writes a BF16 safetensors file tensor by tensor: the header first (offsets are known from the
 * shapes), then each tensor's random values through a 1 MB buffer. */
static int write_streaming(const char *path, const st_entry *t, int n) {
    size_t cap = 256 + (size_t)n * 160, len = 0;
    char *json = malloc(cap);
    uint64_t off = 0;
    len += (size_t)snprintf(json + len, cap - len, "{");
    for (int i = 0; i < n; i++) {
        uint64_t bytes = (uint64_t)t[i].rows * t[i].cols * 2;
        if (t[i].cols == 1)
            len += (size_t)snprintf(json + len, cap - len, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld],"
                                    "\"data_offsets\":[%llu,%llu]}", i ? "," : "", t[i].name, (long long)t[i].rows,
                                    (unsigned long long)off, (unsigned long long)(off + bytes));
        else
            len += (size_t)snprintf(json + len, cap - len, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld,%lld],"
                                    "\"data_offsets\":[%llu,%llu]}", i ? "," : "", t[i].name, (long long)t[i].rows,
                                    (long long)t[i].cols, (unsigned long long)off, (unsigned long long)(off + bytes));
        off += bytes;
    }
    len += (size_t)snprintf(json + len, cap - len, "}");
    while (len % 8) json[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(json, 1, len, f);
    free(json);
    uint16_t *buf = malloc(1 << 20);
    for (int i = 0; i < n; i++) {
        uint64_t left = (uint64_t)t[i].rows * t[i].cols;
        while (left) {
            size_t k = left < (1 << 19) ? (size_t)left : (1 << 19);
            for (size_t j = 0; j < k; j++) buf[j] = t[i].cols == 1 ? 0x3f80 /* 1.0 */ : random_bf16(0.02f);
            if (fwrite(buf, 2, k, f) != k) {
                fclose(f);
                free(buf);
                return 1;
            }
            left -= k;
        }
    }
    free(buf);
    return fclose(f) != 0;
}

static int make_model(const char *dir, const char *shape_name) {
    const model_shape *sh = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(shapes[i].name, shape_name)) sh = &shapes[i];
    if (!sh) {
        fprintf(stderr, "bench_model: --shape: expected slice-1b, tinyllama-1.1b or llama2-7b, got '%s'\n", shape_name);
        return 2;
    }
    int L = sh->L, C = sh->C, H = sh->H, KV = sh->KV, D = sh->D, F = sh->F, V = sh->V;
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
    int n = 3 + 9 * L, k = 0;
    st_entry *t = calloc((size_t)n, sizeof *t);
#define ADD(r, c, ...) (snprintf(t[k].name, sizeof t[k].name, __VA_ARGS__), t[k].rows = (r), t[k].cols = (c), k++)
    ADD(V, C, "model.embed_tokens.weight");
    ADD(V, C, "lm_head.weight");
    ADD(C, 1, "model.norm.weight");
    for (int l = 0; l < L; l++) {
        ADD(C, 1, "model.layers.%d.input_layernorm.weight", l);
        ADD(C, 1, "model.layers.%d.post_attention_layernorm.weight", l);
        ADD(H * D, C, "model.layers.%d.self_attn.q_proj.weight", l);
        ADD(KV * D, C, "model.layers.%d.self_attn.k_proj.weight", l);
        ADD(KV * D, C, "model.layers.%d.self_attn.v_proj.weight", l);
        ADD(C, H * D, "model.layers.%d.self_attn.o_proj.weight", l);
        ADD(F, C, "model.layers.%d.mlp.gate_proj.weight", l);
        ADD(F, C, "model.layers.%d.mlp.up_proj.weight", l);
        ADD(C, F, "model.layers.%d.mlp.down_proj.weight", l);
    }
#undef ADD
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int err = write_streaming(path, t, n);
    free(t);
    if (err) {
        fprintf(stderr, "bench_model: writing %s failed\n", path);
        return 1;
    }
    /* Any LLaMA tokenizer will do: the benchmark feeds ids. */
    snprintf(path, sizeof path, "cp tests/fixtures/llama2-mha-f32/tokenizer.json %s/tokenizer.json", dir);
    if (system(path) != 0) return 1;
    printf("random %s model written to %s\n", sh->name, dir);
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */

/* Peak resident memory of this process so far, GB. */
static double peak_rss_gb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1e6; /* kilobytes on Linux */
}

static int parse_list(const char *s, int *out, int cap) {
    int n = 0;
    while (s && *s && n < cap) {
        out[n++] = atoi(s);
        s = strchr(s, ',');
        if (s) s++;
    }
    return n;
}

static int run(const char *dir, hlpt_base_dtype dtype, int prompt, int decode, const int *batches, int n_batches,
               const int *threads_list, int n_threads) {
    char why[512] = "";
    hlpt_model *m;
    double t0 = now();
    if (hlpt_model_open(dir, dtype, &m, why, sizeof why)) {
        fprintf(stderr, "bench_model: %s: %s\n", dir, why);
        return 1;
    }
    double load = now() - t0;
    const hlpt_config *c = hlpt_model_config(m);
    int bf16 = hlpt_model_dtype(m) == HLPT_BASE_BF16;
    double per_token = (double)hlpt_model_matrix_bytes(m); /* bytes each decoded token reads */
    double params = per_token / (bf16 ? 2 : 4);            /* matrix parameters */
    /* A prefill token goes through every layer; only the last one through the lm_head. */
    double layer_params = params - (double)c->vocab * c->hidden;
    printf("model %s: %d layers, hidden %d, %d heads (%d kv), ffn %d, vocab %d; %.2f B matrix parameters\n", dir,
           c->n_layers, c->hidden, c->n_heads, c->n_kv_heads, c->ffn, c->vocab, params / 1e9);
    printf("dtype %s: %.0f MB of weights (%.2f bytes/parameter), loaded in %.1f s, peak resident %.2f GB\n",
           hlpt_base_dtype_name(hlpt_model_dtype(m)), hlpt_model_bytes(m) / 1e6,
           (double)hlpt_model_bytes(m) / (params + (c->tie_embeddings ? 0 : (double)c->vocab * c->hidden)), load,
           peak_rss_gb());
    printf("engine: %s\n", hlpt_engine_describe(hlpt_model_dtype(m), why, sizeof why));
    int most = 1;
    for (int i = 0; i < n_batches; i++) most = batches[i] > most ? batches[i] : most;
    int ctx = prompt + decode + 16;
    int *ids = malloc(sizeof(int) * (size_t)ctx);
    for (int i = 0; i < ctx; i++) ids[i] = 3 + (i * 7919) % (c->vocab - 3);
    hlpt_runner *r;
    hlpt_runner_new(m, &r);
    hlpt_seq **seqs = calloc((size_t)most, sizeof *seqs);
    for (int i = 0; i < most; i++) hlpt_seq_new(m, NULL, ctx, &seqs[i]);
    for (int ti = 0; ti < n_threads; ti++) {
        int threads = threads_list[ti];
        hlpt_engine_set_threads(threads);
        double bw = machine_bandwidth(threads);
        double rate = bf16 ? bf16_gflops(prompt, c->ffn, c->hidden) : gemm_gflops(prompt, c->ffn, c->hidden);
        printf("threads %d: ceilings: %s %dx%dx%d %.1f GFLOP/s; read bandwidth %.1f GB/s\n", threads,
               bf16 ? "bf16 product" : "sgemm", prompt, c->ffn, c->hidden, rate, bw);
        hlpt_seq *s = seqs[0];
        const float *lg;
        const int *tp = ids;
        int n = prompt;
        /* Best of three after a warm-up pass of the same length (which makes the primitives and
         * touches the scratch). */
        double prefill = 1e30;
        for (int rep = 0; rep < 4; rep++) {
            hlpt_seq_reset(s);
            t0 = now();
            if (hlpt_model_step(r, &s, &tp, &n, 1, 0, &lg, why, sizeof why)) {
                fprintf(stderr, "bench_model: %s\n", why);
                return 1;
            }
            if (rep > 0) prefill = fmin(prefill, now() - t0);
        }
        double pf_tps = prompt / prefill, pf_gflops = pf_tps * 2 * (layer_params + params / prompt) / 1e9;
        printf("threads %d: prefill %d tokens: %.1f tokens/s, %.1f GFLOP/s (%.0f%% of the product rate)\n", threads,
               prompt, pf_tps, pf_gflops, 100 * pf_gflops / rate);
        t0 = now();
        for (int i = 0; i < decode; i++) {
            int one = 1;
            tp = ids + prompt + i;
            hlpt_model_step(r, &s, &tp, &one, 1, 0, &lg, why, sizeof why);
        }
        double dec_tps = decode / (now() - t0);
        printf("threads %d: decode %d tokens: %.2f tokens/s, %.1f GB/s of weights (%.0f%% of read bandwidth)\n",
               threads, decode, dec_tps, dec_tps * per_token / 1e9, 100 * dec_tps * per_token / 1e9 / bw);
        for (int bi = 0; bi < n_batches; bi++) {
            int B = batches[bi];
            const int *toks[256];
            int ones[256];
            /* Each sequence starts from 16 prompt tokens, then decodes one token a step. */
            for (int i = 0; i < B; i++) {
                hlpt_seq_reset(seqs[i]);
                toks[i] = ids + i;
                ones[i] = 16;
            }
            hlpt_model_step(r, seqs, toks, ones, B, 0, &lg, why, sizeof why);
            for (int i = 0; i < B; i++) ones[i] = 1;
            int steps = decode;
            t0 = now();
            for (int st = 0; st < steps; st++) {
                for (int i = 0; i < B; i++) toks[i] = ids + 16 + i + st;
                if (hlpt_model_step(r, seqs, toks, ones, B, 0, &lg, why, sizeof why)) {
                    fprintf(stderr, "bench_model: %s\n", why);
                    return 1;
                }
            }
            double agg = (double)B * steps / (now() - t0);
            printf("threads %d: decode batch %d: %.1f tokens/s aggregate, %.2fx one stream\n", threads, B, agg,
                   agg / dec_tps);
        }
    }
    for (int i = 0; i < most; i++) hlpt_seq_free(seqs[i]);
    free(seqs);
    hlpt_runner_free(r);
    free(ids);
    hlpt_model_close(m);
    return 0;
}

static const char usage[] =
    "usage: bench_model --make-model DIR [--shape slice-1b|tinyllama-1.1b|llama2-7b]\n"
    "       bench_model --model DIR [--dtype auto|bf16|f32] [--prompt N] [--decode N] [--batch 1,8,16]\n"
    "                   [--threads 1,2]\n";

int main(int argc, char **argv) {
    hlpt_blas_init(argv);
    const char *model = NULL, *make = NULL, *shape = "slice-1b";
    int prompt = 256, decode = 64, batches[16], n_batches = 0, threads[8] = {1, 2}, n_threads = 2;
    hlpt_base_dtype dtype = HLPT_BASE_AUTO;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--make-model") && i + 1 < argc) make = argv[++i];
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) shape = argv[++i];
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode") && i + 1 < argc) decode = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) n_batches = parse_list(argv[++i], batches, 16);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) n_threads = parse_list(argv[++i], threads, 8);
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            if (hlpt_base_dtype_parse(argv[++i], &dtype)) {
                fprintf(stderr, "bench_model: --dtype: expected auto, bf16 or f32\n");
                return 2;
            }
        } else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (make) return make_model(make, shape);
    for (int i = 0; i < n_batches; i++)
        if (batches[i] < 1 || batches[i] > 256) n_batches = -1;
    if (!model || prompt < 16 || decode < 1 || n_batches < 0 || n_threads < 1) {
        fputs(usage, stderr);
        return 2;
    }
    return run(model, dtype, prompt, decode, batches, n_batches, threads, n_threads);
}
