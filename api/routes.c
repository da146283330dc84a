/*
 * routes.c - the route table: method, path pattern ({name} captures one segment), handler, flags.
 * Order matters only for readability; patterns do not overlap.
 */
#include "api.h"

const hlpt_route hlpt_api_routes[] = {
    {"GET", "/health", hlpt_api_health, HLPT_ROUTE_PUBLIC},
    {"GET", "/", hlpt_api_web_index, HLPT_ROUTE_PUBLIC},
    {"GET", "/ui/{name}", hlpt_api_web_file, HLPT_ROUTE_PUBLIC},

    {"POST", "/v1/files", hlpt_api_files_create, HLPT_ROUTE_STREAM_BODY},
    {"GET", "/v1/files", hlpt_api_files_list, 0},
    {"GET", "/v1/files/{id}", hlpt_api_files_get, 0},
    {"DELETE", "/v1/files/{id}", hlpt_api_files_delete, 0},
    {"GET", "/v1/files/{id}/content", hlpt_api_files_content, 0},

    {"POST", "/v1/fine_tuning/jobs", hlpt_api_jobs_create, 0},
    {"GET", "/v1/fine_tuning/jobs", hlpt_api_jobs_list, 0},
    {"GET", "/v1/fine_tuning/jobs/{id}", hlpt_api_jobs_get, 0},
    {"POST", "/v1/fine_tuning/jobs/{id}/cancel", hlpt_api_jobs_lifecycle, 0},
    {"POST", "/v1/fine_tuning/jobs/{id}/pause", hlpt_api_jobs_lifecycle, 0},
    {"POST", "/v1/fine_tuning/jobs/{id}/resume", hlpt_api_jobs_lifecycle, 0},
    {"GET", "/v1/fine_tuning/jobs/{id}/events", hlpt_api_jobs_events, 0},
    {"GET", "/v1/fine_tuning/jobs/{id}/metrics", hlpt_api_jobs_metrics, 0},
    {"GET", "/v1/fine_tuning/jobs/{id}/checkpoints", hlpt_api_jobs_checkpoints, 0},
    {"GET", "/v1/fine_tuning/jobs/{id}/loss.svg", hlpt_api_jobs_loss_svg, 0},

    {"POST", "/v1/completions", hlpt_api_completions, 0},
    {"POST", "/v1/chat/completions", hlpt_api_chat_completions, 0},
    {"POST", "/v1/responses", hlpt_api_responses, 0},
    {"GET", "/v1/models", hlpt_api_models, 0},
    {"GET", "/v1/models/{id}", hlpt_api_models_get, 0},
    {"DELETE", "/v1/models/{id}", hlpt_api_models_delete, 0},

    {"GET", "/v1/adapters", hlpt_api_adapters_list, 0},
    {"POST", "/v1/adapters", hlpt_api_adapters_import, 0},
    {"GET", "/v1/adapters/{id}", hlpt_api_adapters_get, 0},
    {"DELETE", "/v1/adapters/{id}", hlpt_api_adapters_delete, 0},
    {"GET", "/v1/adapters/{id}/files/{name}", hlpt_api_adapters_file, 0},

    {"GET", "/metrics", hlpt_api_metrics, 0},
};

const size_t hlpt_api_nroutes = sizeof hlpt_api_routes / sizeof hlpt_api_routes[0];
