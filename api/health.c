/*
 * health.c - GET /health: readiness for load balancers and tests. Answered on the MHD thread from
 * the daemon's atomic flags, so it works while the loop is busy loading the model.
 */
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
