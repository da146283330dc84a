/*
 * routes.c - the route table: method, path pattern ({name} captures one segment), handler, flags.
 * Order matters only for readability; patterns do not overlap.
 */
#include "api.h"

const hlptd_route hlptd_api_routes[] = {
    {"GET", "/health", hlptd_api_health, HLPTD_ROUTE_PUBLIC},
    {"GET", "/", hlptd_api_web_index, HLPTD_ROUTE_PUBLIC},
    {"GET", "/ui/{name}", hlptd_api_web_file, HLPTD_ROUTE_PUBLIC},

    {"POST", "/v1/files", hlptd_api_files_create, HLPTD_ROUTE_STREAM_BODY},
    {"GET", "/v1/files", hlptd_api_files_list, 0},
    {"GET", "/v1/files/{id}", hlptd_api_files_get, 0},
    {"DELETE", "/v1/files/{id}", hlptd_api_files_delete, 0},
    {"GET", "/v1/files/{id}/content", hlptd_api_files_content, 0},

    {"POST", "/v1/fine_tuning/jobs", hlptd_api_jobs_create, 0},
    {"GET", "/v1/fine_tuning/jobs", hlptd_api_jobs_list, 0},
    {"GET", "/v1/fine_tuning/jobs/{id}", hlptd_api_jobs_get, 0},
    {"POST", "/v1/fine_tuning/jobs/{id}/cancel", hlptd_api_jobs_lifecycle, 0},
    {"POST", "/v1/fine_tuning/jobs/{id}/pause", hlptd_api_jobs_lifecycle, 0},
    {"POST", "/v1/fine_tuning/jobs/{id}/resume", hlptd_api_jobs_lifecycle, 0},
    {"GET", "/v1/fine_tuning/jobs/{id}/events", hlptd_api_jobs_events, 0},
    {"GET", "/v1/fine_tuning/jobs/{id}/metrics", hlptd_api_jobs_metrics, 0},
    {"GET", "/v1/fine_tuning/jobs/{id}/checkpoints", hlptd_api_jobs_checkpoints, 0},
    {"GET", "/v1/fine_tuning/jobs/{id}/loss.svg", hlptd_api_jobs_loss_svg, 0},

    {"POST", "/v1/completions", hlptd_api_completions, 0},
    {"POST", "/v1/chat/completions", hlptd_api_chat_completions, 0},
    {"POST", "/v1/responses", hlptd_api_responses, 0},
    {"GET", "/v1/models", hlptd_api_models, 0},
    {"GET", "/v1/models/{id}", hlptd_api_models_get, 0},
    {"DELETE", "/v1/models/{id}", hlptd_api_models_delete, 0},

    {"GET", "/v1/adapters", hlptd_api_adapters_list, 0},
    {"POST", "/v1/adapters", hlptd_api_adapters_import, 0},
    {"GET", "/v1/adapters/{id}", hlptd_api_adapters_get, 0},
    {"DELETE", "/v1/adapters/{id}", hlptd_api_adapters_delete, 0},
    {"GET", "/v1/adapters/{id}/files/{name}", hlptd_api_adapters_file, 0},

    {"GET", "/v1/nodes", hlptd_api_nodes, 0},

    {"GET", "/metrics", hlptd_api_metrics, 0},
};

const size_t hlptd_api_nroutes = sizeof hlptd_api_routes / sizeof hlptd_api_routes[0];
