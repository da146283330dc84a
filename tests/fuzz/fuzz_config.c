/*
 * fuzz_config - libFuzzer target: any byte string through hlpt_config_parse. An accepted config
 * must satisfy the invariants the forward relies on.
 */
#include <stdint.h>
#include <stdlib.h>

#include "hlpt/config.h"
#include "hlpt/err.h"

static void check(int ok) {
    if (!ok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hlpt_config c;
    char why[256];
    if (hlpt_config_parse((const char *)data, size, &c, why, sizeof why) != HLPT_OK) return 0;
    check(c.n_layers > 0 && c.hidden > 0 && c.n_heads > 0 && c.n_kv_heads > 0 && c.head_dim > 0);
    check(c.ffn > 0 && c.vocab > 0 && c.max_pos > 0 && c.n_heads % c.n_kv_heads == 0);
    check(c.rope_theta > 0 && c.rms_eps > 0);
    check(c.bos_id >= -1 && c.bos_id < c.vocab && c.pad_id >= -1 && c.pad_id < c.vocab);
    check(c.n_eos >= 0 && c.n_eos <= HLPT_MAX_EOS);
    for (int i = 0; i < c.n_eos; i++) check(c.eos_ids[i] >= 0 && c.eos_ids[i] < c.vocab);
    return 0;
}
