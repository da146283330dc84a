/*
 * health.c - GET /health: readiness for load balancers and tests. Answered on the MHD thread from
 * the daemon's atomic flags, so it works while the loop is busy loading the model.
 */
#include <stdlib.h>

#include "api.h"
#include "app.h"
#include "hlpt/err.h"

void hlpt_api_health(hlpt_req *r) {
    hlptd *d = hlpt_req_app(r);
    cJSON *o = cJSON_CreateObject();
    /* Never ok over a store SQLite has found corrupt since the start-up check. */
    int damaged = hlpt_store_damaged(hlptd_store(d));
    int ok = hlptd_ready(d) && !damaged;
    cJSON_AddStringToObject(o, "status", ok ? "ok" : damaged ? "damaged" : hlptd_stopping(d) ? "stopping" : "loading");
    hlpt_reply_json(r, ok ? 200 : 503, o);
}

int hlpt_api_page_args(hlpt_req *r, int def, int max, int *limit, const char **after) {
    const char *l = hlpt_req_query(r, "limit");
    *limit = def;
    *after = hlpt_req_query(r, "after");
    if (*after && !**after) *after = NULL;
    if (l) {
        char *end;
        long v = strtol(l, &end, 10);
        if (!*l || *end || v < 1 || v > max) {
            hlpt_reply_err(r, HLPT_ERR_INVAL, "limit", "limit must be an integer in [1, %d]", max);
            return 1;
        }
        *limit = (int)v;
    }
    return 0;
}
