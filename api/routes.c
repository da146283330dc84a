/*
 * routes.c - the route table: method, path pattern ({name} captures one segment), handler, flags.
 * Order matters only for readability; patterns do not overlap.
 */
#include "api.h"

const hlpt_route hlpt_api_routes[] = {
    {"GET", "/health", hlpt_api_health, HLPT_ROUTE_PUBLIC},

    {"POST", "/v1/files", hlpt_api_files_create, 0},
    {"GET", "/v1/files", hlpt_api_files_list, 0},
    {"GET", "/v1/files/{id}", hlpt_api_files_get, 0},
    {"DELETE", "/v1/files/{id}", hlpt_api_files_delete, 0},
    {"GET", "/v1/files/{id}/content", hlpt_api_files_content, 0},
};

const size_t hlpt_api_nroutes = sizeof hlpt_api_routes / sizeof hlpt_api_routes[0];
