/*
 * paging.c - ?limit= and ?after=, the paging of every list (docs/rest.md), read one way.
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
