/*
 * layers.h - the forward/backward kernels of the LLaMA block and of the HLPT adapters (internal to
 * core/). Each kernel lives in its own file, core/<kernel>.c, forward and backward side by side.
 *
 * Dimension letters: N tokens of a packed batch (sequences laid end to end, no padding), T tokens of
 * one sequence, S keys of one sequence (past + new), C hidden, H heads, KV kv heads, D head dim,
 * F ffn, R LoRA rank, P virtual (prefix) tokens, V vocab, I/O a linear module's in/out features.
 * All buffers are row-major float32.
 *
 * Conventions: forward(outputs, saved, inputs, params, dims); backward(input grads, param grads,
 * dout, forward inputs/params/saved, dims). Backward ACCUMULATES (+=) into every gradient; a NULL
 * gradient pointer means "not needed" and costs nothing (frozen base weights). Kernels never
 * allocate, except attention's per-call scratch noted below.
 *
 * Threads: the row- and head-parallel loops are OpenMP loops, which run on as many threads as the
 * calling thread's OpenMP setting allows (include/hlpt/engine.h: the cores under a BF16 base, one
 * thread under an F32 base, whose products take the cores through OpenBLAS). Each thread writes its
 * own rows, so results do not depend on the thread count.
 */

/* Elementwise loops smaller than this run on the calling thread alone. */
#define PAR_MIN_ELEMS 65536
#ifndef HLPT_LAYERS_H
#define HLPT_LAYERS_H

#include <stdint.h>

/* out[N,O] = inp[N,I] @ w[O,I]^T, or out += that when accumulate is non-zero. */
void matmul_forward(float *out, const float *inp, const float *w, int N, int I, int O, int accumulate);
/* dinp[N,I] += dout[N,O] @ w[O,I];  dw[O,I] += dout^T @ inp. */
void matmul_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                     int N, int I, int O);

/* out[N,C] = inp / sqrt(mean(inp^2) + eps) * w[C]; rstd[N] saved when not NULL. out may == inp. */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps);
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      const float *rstd, int N, int C);

/* In place on x[N, nh, D], token n at position pos[n]; HF rotate_half convention:
 * x' = x*cos + rotate_half(x)*sin with angle pos*inv_freq[j], inv_freq[D/2]. */
void rope_forward(float *x, const int *pos, const float *inv_freq, int N, int nh, int D);
/* In place: dx <- R(pos)^T dx, the gradient through the rotation. */
void rope_backward(float *dx, const int *pos, const float *inv_freq, int N, int nh, int D);

/* out[N,F] = silu(gate) * up. */
void swiglu_forward(float *out, const float *gate, const float *up, int N, int F);
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                     int N, int F);

/*
 * Causal attention of one sequence with an optional gated prefix (docs/method.md, "Gated prefix").
 * q[T,H,D] are the T newest queries; k,v[S,KV,D] all keys so far (S >= T); query t sits at key
 * index S-T+t and sees keys 0..S-T+t. pk,pv[P,KV,D] prefix slots (NULL when P == 0), seen by every
 * query; g[T] the prefix gate per query (NULL means 1): prefix scores are g_t*q·pk/sqrt(D) and the
 * prefix part of the output is scaled by g_t. GQA: head h uses kv head h / (H/KV).
 * out[T,H,D]; att[H,T,P+S] the softmax probabilities, saved for backward (required).
 */
void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       const float *pk, const float *pv, const float *g,
                       int T, int S, int P, int H, int KV, int D);
/* Gradients for q[T,H,D], k,v[S,KV,D], pk,pv[P,KV,D], g[T]; any may be NULL (dg with g NULL is the
 * gradient at g = 1). Scratch: one malloc per call of about T*(P+S) floats, freed before it returns;
 * aborts if that allocation fails. */
void attention_backward(float *dq, float *dk, float *dv, float *dpk, float *dpv, float *dg,
                        const float *dout, const float *att, const float *q, const float *k,
                        const float *v, const float *pk, const float *pv, const float *g,
                        int T, int S, int P, int H, int KV, int D);

/*
 * The HLPT gate of one sequence: s_t = sigmoid(w[I] · inp_t), inp[T,I]; g[T] per mode
 * (HLPT_GATE_NONE: 1; HLPT_GATE_SEQUENCE: mean of s over the T tokens; HLPT_GATE_CAUSAL: running mean
 * of s_1..s_t). For causal decoding with a KV cache, *sum and *count carry the scores of earlier
 * tokens (both 0 for a fresh sequence) and are advanced by T; they may be NULL for a fresh sequence
 * when not continued. s[T] is saved for backward.
 */
void gate_forward(float *g, float *s, const float *inp, const float *w, int T, int I, int mode,
                  double *sum, int *count);
/* Backward of a fresh sequence (count 0): dinp[T,I] += ..., dw[I] += ... from dg[T]. */
void gate_backward(float *dinp, float *dw, const float *dg, const float *s, const float *inp,
                   const float *w, int T, int I, int mode);

/*
 * Gated LoRA branch: out[N,O] += g_n * scale * (drop(inp) @ A^T) @ B^T, with A[R,I], B[O,R],
 * g[N] (NULL means 1), drop(u) = u * keep[n,i] / (1 - p) when keep (a [N,I] 0/1 mask) is not NULL.
 * xa[N,R] = drop(inp) @ A^T is saved for backward. Uses hlpt_gemm.
 */
void lora_forward(float *out, float *xa, const float *inp, const float *A, const float *B,
                  const float *g, float scale, const uint8_t *keep, float p, int N, int I, int O, int R);
void lora_backward(float *dinp, float *dA, float *dB, float *dg, const float *dout, const float *xa,
                   const float *inp, const float *A, const float *B, const float *g, float scale,
                   const uint8_t *keep, float p, int N, int I, int O, int R);

/*
 * Cross-entropy of logits[N,V] against targets[N] (-100: ignored). Returns the SUM of the losses of
 * counted rows and their number in *n_counted. When dlogits is not NULL, WRITES (not accumulates)
 * dlogits = (softmax(logits) - onehot) * dscale for counted rows and 0 for ignored rows; dlogits may
 * equal logits (in place).
 */
double crossentropy_forward_backward(float *dlogits, const float *logits, const int *targets, int N,
                                     int V, float dscale, int *n_counted);

#endif
