/*
 * engine.h - the backend seam: how the frozen base's weight matrices are stored (dtype and layout)
 * and the products that read them. core/model.c multiplies by a base weight only through
 * hlpt_linear() and hlpt_linear_backward(); nothing above this module tests for a CPU feature or
 * knows a layout. A GPU backend slots in here (docs/design.md, "The engine").
 *
 * Two dtypes:
 *  - F32: row-major float32 W[O,I] (nn.Linear's layout); products through OpenBLAS sgemm
 *    (hlpt_gemm). The exact path the fidelity tests hold to 1e-4 of HF transformers.
 *  - BF16: every matrix is rounded to bfloat16 once, at load, and packed in the blocked layout that
 *    oneDNN's BF16 matmul reads without repacking (tiles of 32 inputs x 64 outputs, input pairs
 *    adjacent: oneDNN's BA16a64b2a). Activations are rounded to BF16 at the product's input; the
 *    sum is F32. Batches of more than HLPT_ENGINE_SMALL_M rows run oneDNN matmul primitives, created
 *    once per shape and kept in the engine context; smaller ones (decoding) run the engine's own
 *    AVX512-BF16 kernel, which streams the packed weights at memory speed. The backward product
 *    dX = dY W (the frozen W, training only) repacks W transposed into context scratch and runs the
 *    same dispatch. Embedding tables that are not also the lm_head stay row-major BF16.
 *
 * Threads: BF16 products run on OpenMP threads (oneDNN's runtime and the kernel's), F32 products on
 * OpenBLAS's; hlpt_engine_set_threads() sizes both so that they never compete for the cores. An hlpt_engine context belongs to one thread at
 * a time (a runner owns one); weights are immutable and shared by every thread and process.
 */
#ifndef HLPT_ENGINE_H
#define HLPT_ENGINE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    HLPT_BASE_AUTO = 0, /* BF16 where the CPU multiplies BF16 natively (AVX512-BF16, AMX), else F32 */
    HLPT_BASE_F32,
    HLPT_BASE_BF16,
} hlpt_base_dtype;

/* Rows up to which a BF16 product runs the engine's own kernel rather than oneDNN. */
#define HLPT_ENGINE_SMALL_M 16

/* "auto", "f32", "bf16" (also "float32", "bfloat16"). HLPT_ERR_INVAL for anything else. */
int hlpt_base_dtype_parse(const char *name, hlpt_base_dtype *out);
const char *hlpt_base_dtype_name(hlpt_base_dtype dt);
/* AUTO resolved for this CPU; F32 and BF16 are returned as given. */
hlpt_base_dtype hlpt_base_dtype_resolve(hlpt_base_dtype dt);
/* HLPT_OK when dt (after resolving) can run here; HLPT_ERR_UNSUPPORTED with why naming the missing
 * CPU feature or library otherwise. */
int hlpt_engine_check(hlpt_base_dtype dt, char *why, size_t len);
/* One line in buf saying what runs the products of dt here, e.g. "bf16: oneDNN
 * brg:avx512_core_bf16 above, AVX512-BF16 kernel up to 16 rows". Returns buf. */
const char *hlpt_engine_describe(hlpt_base_dtype dt, char *buf, size_t len);
/* Threads of the products, >= 1: the pool of the base's products gets n, the other one thread
 * (core/engine.c says why). Call from each thread that will run products: OpenMP's setting is per
 * thread. */
void hlpt_engine_set_threads(int n);
/* Called by the model loader with the base's dtype, and applies the policy to the calling thread: a
 * BF16 base moves the cores to OpenMP for good in this process. */
void hlpt_engine_note_base(hlpt_base_dtype dt);

/* A base weight W[O,I] (out = inp @ W^T) as the engine stores it. A plain value: copy freely. */
typedef struct {
    int O, I;              /* output and input features */
    hlpt_base_dtype dtype; /* F32 or BF16 */
    int packed;            /* BF16: 1 blocked for matmul, 0 row-major (embedding tables); F32: 0 */
    const void *data;      /* borrows: inside the model's arena, hlpt_weight_bytes() long */
} hlpt_weight;

/* Bytes of W[O,I] stored as dtype/packed, a multiple of 64. */
size_t hlpt_weight_bytes(hlpt_base_dtype dt, int packed, int O, int I);
/* Writes src (row-major float32 [O,I]) into dst (hlpt_weight_bytes() bytes, zeroed by the caller or
 * not: padding is written too) in w's dtype and layout; BF16 rounds to nearest even.
 * HLPT_ERR_NOMEM (a row of scratch). */
int hlpt_weight_store(const hlpt_weight *w, void *dst, const float *src);
/* out[I] = W[o, :] as float32 (an embedding lookup). */
void hlpt_weight_row(const hlpt_weight *w, int o, float *out);

/* Per-thread state of the products: cached oneDNN primitives and scratch. */
typedef struct hlpt_engine hlpt_engine;
int hlpt_engine_new(hlpt_engine **out);
void hlpt_engine_free(hlpt_engine *e);
/* Makes room for products of up to rows x in and, for backward, max_weight elements of repacking
 * scratch (the largest hlpt_engine_backward_scratch() of the weights), so that the products
 * themselves never allocate. HLPT_ERR_NOMEM. */
int hlpt_engine_reserve(hlpt_engine *e, int rows, int in, size_t max_weight);

/* out[N,O] = inp[N,I] @ W^T, or out += that when accumulate. Needs hlpt_engine_reserve(N, I). */
void hlpt_linear(hlpt_engine *e, float *out, const float *inp, const hlpt_weight *w, int N, int accumulate);
/* dinp[N,I] += dout[N,O] @ W (the gradient through a frozen W). Needs hlpt_engine_reserve(N, O,
 * hlpt_engine_backward_scratch(w)). */
void hlpt_linear_backward(hlpt_engine *e, float *dinp, const float *dout, const hlpt_weight *w, int N);
/* Elements of scratch hlpt_linear_backward needs for w: W is repacked transposed a slice of whole
 * output tiles at a time, about 8 M elements at most; 0 for F32. */
size_t hlpt_engine_backward_scratch(const hlpt_weight *w);

/* BF16 <-> F32 of n values; to_bf16 rounds to nearest even (NaN stays NaN). */
void hlpt_bf16_from_f32(uint16_t *dst, const float *src, size_t n);
void hlpt_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n);

#endif
