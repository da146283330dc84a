/*
 * api.h - hlptd's REST handlers and the route table (docs/rest.md): the layer above the daemon,
 * which reaches the daemon through app.h only and is handed its route table by main.
 *
 * Handlers run on MHD threads and are thin: parse and validate the request (writing any 4xx
 * themselves), then answer, or hand one call to the loop thread with hlpt_req_defer (store access
 * happens there), or submit generations to the inference thread; and render. No SQL, threads or
 * tensors here.
 */
#ifndef HLPTD_API_H
#define HLPTD_API_H

#include <stddef.h>

#include "app.h"
#include "http.h"

/* The routes, one line each (api/routes.c). */
extern const hlpt_route hlpt_api_routes[];
extern const size_t hlpt_api_nroutes;

/* GET /health: 200 {"status":"ok"} when ready, 503 {"status":"loading"|"stopping"} otherwise. */
void hlpt_api_health(hlpt_req *r);

/* The dashboard (api/web.c): static files compiled in from web/, public (they hold no data). */
void hlpt_api_web_index(hlpt_req *r);        /* GET /            (web/index.html) */
void hlpt_api_web_file(hlpt_req *r);         /* GET /ui/{name}   (web/<name>; 404 for others) */

/* Files (api/files.c). */
void hlpt_api_files_create(hlpt_req *r);  /* POST   /v1/files */
void hlpt_api_files_list(hlpt_req *r);    /* GET    /v1/files */
void hlpt_api_files_get(hlpt_req *r);     /* GET    /v1/files/{id} */
void hlpt_api_files_content(hlpt_req *r); /* GET    /v1/files/{id}/content */
void hlpt_api_files_delete(hlpt_req *r);  /* DELETE /v1/files/{id} */

/* Fine-tuning jobs (api/jobs.c). */
void hlpt_api_jobs_create(hlpt_req *r);      /* POST /v1/fine_tuning/jobs */
void hlpt_api_jobs_list(hlpt_req *r);        /* GET  /v1/fine_tuning/jobs */
void hlpt_api_jobs_get(hlpt_req *r);         /* GET  /v1/fine_tuning/jobs/{id} */
void hlpt_api_jobs_lifecycle(hlpt_req *r);   /* POST /v1/fine_tuning/jobs/{id}/cancel|pause|resume */
void hlpt_api_jobs_events(hlpt_req *r);      /* GET  /v1/fine_tuning/jobs/{id}/events[?stream=true] */
void hlpt_api_jobs_metrics(hlpt_req *r);     /* GET  /v1/fine_tuning/jobs/{id}/metrics[?format=csv] */
void hlpt_api_jobs_checkpoints(hlpt_req *r); /* GET  /v1/fine_tuning/jobs/{id}/checkpoints */
void hlpt_api_jobs_loss_svg(hlpt_req *r);    /* GET  /v1/fine_tuning/jobs/{id}/loss.svg */

/* Generation (api/generate.c). */
void hlpt_api_completions(hlpt_req *r);      /* POST /v1/completions */
void hlpt_api_chat_completions(hlpt_req *r); /* POST /v1/chat/completions */
void hlpt_api_responses(hlpt_req *r);        /* POST /v1/responses (text) */

/* Models (api/models.c). */
void hlpt_api_models(hlpt_req *r);           /* GET    /v1/models */
void hlpt_api_models_get(hlpt_req *r);       /* GET    /v1/models/{id} */
void hlpt_api_models_delete(hlpt_req *r);    /* DELETE /v1/models/{id} (a fine-tuned model) */

/* The adapter registry (api/adapters.c). */
void hlpt_api_adapters_list(hlpt_req *r);    /* GET    /v1/adapters */
void hlpt_api_adapters_get(hlpt_req *r);     /* GET    /v1/adapters/{id} */
void hlpt_api_adapters_delete(hlpt_req *r);  /* DELETE /v1/adapters/{id} */
void hlpt_api_adapters_import(hlpt_req *r);  /* POST   /v1/adapters (multipart: config, weights, name?) */
void hlpt_api_adapters_file(hlpt_req *r);    /* GET    /v1/adapters/{id}/files/{name} */

/* Prometheus text (api/metrics.c). */
void hlpt_api_metrics(hlpt_req *r);          /* GET /metrics */

/* Shared by handlers: reads ?limit= (default def, 1..max) and ?after=; replies 400 and returns
 * nonzero on a bad value. */
int hlpt_api_page_args(hlpt_req *r, int def, int max, int *limit, const char **after);

#endif
