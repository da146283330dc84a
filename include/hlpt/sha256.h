/*
 * sha256.h - SHA-256 (FIPS 180-4), streaming: the content address of every artefact hlptd keeps
 * (uploads, checkpoints, adapters; docs/design.md, "Files").
 */
#ifndef HLPT_SHA256_H
#define HLPT_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define HLPT_SHA256_HEX 65 /* 64 lowercase hex digits and a NUL */

typedef struct {
    uint32_t h[8];        /* the running hash */
    uint64_t bytes;       /* message bytes fed so far */
    unsigned char buf[64]; /* the partial block */
    size_t fill;          /* bytes of buf in use */
} hlpt_sha256;

void hlpt_sha256_init(hlpt_sha256 *s);
void hlpt_sha256_update(hlpt_sha256 *s, const void *data, size_t n);
/* Ends the message: out gets the 32-byte digest. s must be initialised again before reuse. */
void hlpt_sha256_final(hlpt_sha256 *s, unsigned char out[32]);
/* The digest as 64 lowercase hex digits. */
void hlpt_sha256_final_hex(hlpt_sha256 *s, char out[HLPT_SHA256_HEX]);
/* One call for a whole buffer. */
void hlpt_sha256_hex(const void *data, size_t n, char out[HLPT_SHA256_HEX]);
/* 1 when s is 64 lowercase hex digits (a well-formed content address), else 0. */
int hlpt_sha256_hex_valid(const char *s);

#endif
