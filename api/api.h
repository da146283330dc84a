/*
 * api.h - hlptd's REST handlers and the route table (docs/rest.md): the layer above the daemon,
 * which reaches the daemon through app.h only and is handed its route table by main.
 *
 * Handlers run on MHD threads and are thin: parse and validate the request (writing any 4xx
 * themselves), then answer, or hand one call to the loop thread with hlptd_req_defer (store access
 * happens there), or submit generations to the inference thread; and render. No SQL, threads or
 * tensors here.
 */
#ifndef HLPTD_API_H
#define HLPTD_API_H

#include <stddef.h>

#include "app.h"
#include "http.h"

/* The routes, one line each (api/routes.c). */
extern const hlptd_route hlptd_api_routes[];
extern const size_t hlptd_api_nroutes;

/* GET /health: 200 {"status":"ok"} when ready, 503 {"status":"loading"|"stopping"} otherwise. */
void hlptd_api_health(hlptd_req *r);

/* The dashboard (api/web.c): static files compiled in from web/, public (they hold no data). */
void hlptd_api_web_index(hlptd_req *r);        /* GET /            (web/index.html) */
void hlptd_api_web_file(hlptd_req *r);         /* GET /ui/{name}   (web/<name>; 404 for others) */

/* Files (api/files.c). */
void hlptd_api_files_create(hlptd_req *r);  /* POST   /v1/files */
void hlptd_api_files_list(hlptd_req *r);    /* GET    /v1/files */
void hlptd_api_files_get(hlptd_req *r);     /* GET    /v1/files/{id} */
void hlptd_api_files_content(hlptd_req *r); /* GET    /v1/files/{id}/content */
void hlptd_api_files_delete(hlptd_req *r);  /* DELETE /v1/files/{id} */

/* Fine-tuning jobs (api/jobs.c). */
void hlptd_api_jobs_create(hlptd_req *r);      /* POST /v1/fine_tuning/jobs */
void hlptd_api_jobs_list(hlptd_req *r);        /* GET  /v1/fine_tuning/jobs */
void hlptd_api_jobs_get(hlptd_req *r);         /* GET  /v1/fine_tuning/jobs/{id} */
void hlptd_api_jobs_lifecycle(hlptd_req *r);   /* POST /v1/fine_tuning/jobs/{id}/cancel|pause|resume */
void hlptd_api_jobs_events(hlptd_req *r);      /* GET  /v1/fine_tuning/jobs/{id}/events[?stream=true] */
void hlptd_api_jobs_metrics(hlptd_req *r);     /* GET  /v1/fine_tuning/jobs/{id}/metrics[?format=csv] */
void hlptd_api_jobs_checkpoints(hlptd_req *r); /* GET  /v1/fine_tuning/jobs/{id}/checkpoints */
void hlptd_api_jobs_loss_svg(hlptd_req *r);    /* GET  /v1/fine_tuning/jobs/{id}/loss.svg */

/* Generation (api/generate.c). */
void hlptd_api_completions(hlptd_req *r);      /* POST /v1/completions */
void hlptd_api_chat_completions(hlptd_req *r); /* POST /v1/chat/completions */
void hlptd_api_responses(hlptd_req *r);        /* POST /v1/responses (text) */

/* Models (api/models.c). */
void hlptd_api_models(hlptd_req *r);           /* GET    /v1/models */
void hlptd_api_models_get(hlptd_req *r);       /* GET    /v1/models/{id} */
void hlptd_api_models_delete(hlptd_req *r);    /* DELETE /v1/models/{id} (a fine-tuned model) */

/* The adapter registry (api/adapters.c). */
void hlptd_api_adapters_list(hlptd_req *r);    /* GET    /v1/adapters */
void hlptd_api_adapters_get(hlptd_req *r);     /* GET    /v1/adapters/{id} */
void hlptd_api_adapters_delete(hlptd_req *r);  /* DELETE /v1/adapters/{id} */
void hlptd_api_adapters_import(hlptd_req *r);  /* POST   /v1/adapters (multipart: config, weights, name?) */
void hlptd_api_adapters_file(hlptd_req *r);    /* GET    /v1/adapters/{id}/files/{name} */

/* The nodes sharing the store (api/nodes.c). */
void hlptd_api_nodes(hlptd_req *r);            /* GET /v1/nodes */

/* Prometheus text (api/metrics.c). */
void hlptd_api_metrics(hlptd_req *r);          /* GET /metrics */

/* Shared by handlers: reads ?limit= (default def, 1..max) and ?after=; replies 400 and returns
 * nonzero on a bad value. */
int hlptd_api_page_args(hlptd_req *r, int def, int max, int *limit, const char **after);

/* The base model, or NULL after replying 503 `loading` while it is still being loaded. */
const hlpt_model *hlptd_api_model(hlptd_req *r);

#endif
