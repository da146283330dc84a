/*
 * fuzz_adapter - libFuzzer target: adapter imports (POST /v1/adapters) through
 * hlpt_adapter_load_mem against the fixture base's config. The input is split at its first NUL byte
 * into adapter_config.json text and adapter_model.safetensors bytes; without a NUL it is the weights
 * under the fixture adapter's own config. A loaded adapter must have a parameter arena.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hlpt/adapter.h"
#include "hlpt/config.h"
#include "hlpt/err.h"
#include "hlpt/fileio.h"

static void check(int ok) {
    if (!ok) abort();
}

static hlpt_config base;
static char *fixture_config;
static size_t fixture_config_n;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char why[256];
    /* make test-fuzz runs from the repository root. */
    if (hlpt_config_load("tests/fixtures/llama2-mha-f32/config.json", &base, why, sizeof why) ||
        hlpt_file_read("tests/fixtures/peft-lora-qv/adapter_config.json", 1 << 20, &fixture_config,
                       &fixture_config_n, why, sizeof why))
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    const char *cfg = nul ? (const char *)data : fixture_config;
    size_t cfg_n = nul ? (size_t)(nul - data) : fixture_config_n;
    const uint8_t *w = nul ? nul + 1 : data;
    size_t wn = nul ? size - (size_t)(nul - data) - 1 : size;
    hlpt_adapter *a = NULL;
    char why[256];
    if (hlpt_adapter_load_mem(cfg, cfg_n, w, wn, &base, NULL, &a, why, sizeof why) != HLPT_OK) {
        check(a == NULL);
        return 0;
    }
    check(a->params != NULL || a->n_params == 0);
    hlpt_adapter_free(a);
    return 0;
}
