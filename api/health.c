/*
 * health.c - GET /health: readiness for load balancers and tests. Answered on the MHD thread from
 * the daemon's atomic flags, so it works while the loop is busy loading the model.
 */
#include <stdlib.h>

#include "api.h"
#include "app.h"
#include "hlpt/err.h"

void hlptd_api_health(hlptd_req *r) {
    hlptd *d = hlptd_req_app(r);
    cJSON *o = cJSON_CreateObject();
    /* Never ok over a store SQLite has found corrupt since the start-up check. */
    int damaged = hlptd_store_damaged(hlptd_store_of(d));
    int ok = hlptd_ready(d) && !damaged;
    cJSON_AddStringToObject(o, "status", ok ? "ok" : damaged ? "damaged" : hlptd_stopping(d) ? "stopping" : "loading");
    hlptd_reply_json(r, ok ? 200 : 503, o);
}

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
