/*
 * rng.h - the project's random numbers: a splitmix64 stream (state is one uint64_t, so it can be
 * checkpointed as an integer) and a stateless hash for values that must be recomputable from their
 * coordinates (dropout masks re-drawn during activation recomputation).
 */
#ifndef HLPT_RNG_H
#define HLPT_RNG_H

#include <math.h>
#include <stdint.h>

static inline uint64_t rng_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rng_next(uint64_t *state) {
    *state += 0x9e3779b97f4a7c15ULL;
    return rng_mix(*state);
}

/* Uniform in [0, 1) with 53 bits. */
static inline double rng_uniform(uint64_t *state) {
    return (double)(rng_next(state) >> 11) * 0x1.0p-53;
}

/* Standard normal (Box-Muller; one value per call keeps the state a single integer). */
static inline double rng_normal(uint64_t *state) {
    double u1 = rng_uniform(state), u2 = rng_uniform(state);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* A hash of up to four coordinates, for stateless draws. */
static inline uint64_t rng_hash4(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    return rng_mix(rng_mix(rng_mix(rng_mix(a) ^ b) ^ c) ^ d);
}

#endif
