/*
 * shared.c - what handlers share: ?limit= and ?after=, the paging of every list (docs/rest.md), read
 * one way; the base model, or the one answer while it loads.
 */
#include <stdlib.h>

#include "api.h"
#include "app.h"
#include "hlpt/err.h"

int hlptd_api_page_args(hlptd_req *r, int def, int max, int *limit, const char **after) {
    const char *l = hlptd_req_query(r, "limit");
    *limit = def;
    *after = hlptd_req_query(r, "after");
    if (*after && !**after) *after = NULL;
    if (l) {
        char *end;
        long v = strtol(l, &end, 10);
        if (!*l || *end || v < 1 || v > max) {
            hlptd_reply_err(r, HLPT_ERR_INVAL, "limit", "limit must be an integer in [1, %d]", max);
            return 1;
        }
        *limit = (int)v;
    }
    return 0;
}

const hlpt_model *hlptd_api_model(hlptd_req *r) {
    const hlpt_model *m = hlptd_model(hlptd_req_app(r));
    if (!m) hlptd_reply_http_err(r, 503, "server_error", "loading", NULL, "the base model is still loading");
    return m;
}
