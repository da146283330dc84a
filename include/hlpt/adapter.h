/*
 * adapter.h - HLPT / H²LPT adapters: layer plans, gated LoRA and gated prefix parameters, the
 * adapter file format (DESIGN.md §1-2).
 */
#ifndef HLPT_ADAPTER_H
#define HLPT_ADAPTER_H

/* How per-token gate scores s_t become the scale g_t (DESIGN.md §1). */
typedef enum {
    HLPT_GATE_NONE = 0,     /* g_t = 1 */
    HLPT_GATE_CAUSAL = 1,   /* mean of s_1..s_t: exact under a KV cache */
    HLPT_GATE_SEQUENCE = 2, /* mean of s over the whole sequence (the authors' code) */
} hlpt_gate_mode;

#endif
