/*
 * fuzz_request - libFuzzer target: request bodies of POST /v1/completions, /v1/chat/completions and
 * /v1/responses, parsed as the handlers parse them (cJSON_ParseWithLengthOpts, then
 * hlptd_api_gen_request_parse / hlptd_api_responses_request_parse). The first byte picks the route. A request
 * that parses must be within the limits the inference thread relies on.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "hlpt/err.h"
#include "serving.h"

static void check(int ok) {
    if (!ok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int route = data[0] % 3;
    cJSON *j = cJSON_ParseWithLengthOpts((const char *)data + 1, size - 1, NULL, 0);
    if (!j) return 0;
    hlptd_api_gen_request q;
    hlptd_api_responses_extra x;
    memset(&q, 0, sizeof q);
    memset(&x, 0, sizeof x);
    const char *param = NULL;
    char why[256];
    int err = route == 2 ? hlptd_api_responses_request_parse(j, &q, &x, &param, why, sizeof why)
                         : hlptd_api_gen_request_parse(j, route, &q, &param, why, sizeof why);
    if (!err) check(q.n >= 1 && q.n_prompts >= 1 && q.n_prompts * q.n <= API_GEN_MAX_CHOICES);
    hlptd_api_gen_request_free(&q);
    if (route == 2) hlptd_api_responses_extra_free(&x);
    cJSON_Delete(j);
    return 0;
}
