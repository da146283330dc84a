/*
 * nodes.c - GET /v1/nodes: the nodes that share the store as their heartbeats left them, each with
 * the leases it holds (docs/design.md, "Many nodes"; docs/rest.md, "Nodes").
 *
 * The rows are read on the loop thread, which owns the store (hlptd_store_node_list, one call);
 * turning them into the reply is a pure function of the rows and the database's clock
 * (hlptd_api_nodes_json, serving.h), so that which node is lost is tested without a daemon. Every
 * time in a row is the database's, and so is `now`: ages and seconds left do not depend on the
 * clocks of the nodes.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "app.h"
#include "hlpt/err.h"
#include "serving.h"

/* A node whose row says it runs (up or draining) but whose last heartbeat is older than its lease
 * is lost: its leases can be taken over. A stopped node said goodbye, so its age says nothing. */
static const char *node_state(const hlptd_node *n, int64_t now_ms) {
    const char *s = n->state ? n->state : "";
    int runs = !strcmp(s, "up") || !strcmp(s, "draining");
    return runs && now_ms - n->heartbeat_at > n->lease_ms ? "lost" : s;
}

static cJSON *lease_json(const hlptd_lease *l, int64_t now_ms, int with_node) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job_id", l->id);
    if (with_node) {
        if (l->node) cJSON_AddStringToObject(o, "node", l->node);
        else cJSON_AddNullToObject(o, "node");
    }
    cJSON_AddNumberToObject(o, "epoch", (double)l->lease_epoch);
    cJSON_AddStringToObject(o, "status", hlptd_job_state_name(l->status));
    /* Negative for a lease that has run out and that no claim has taken over yet. */
    cJSON_AddNumberToObject(o, "expires_in_s", (double)(l->lease_until - now_ms) / 1000.0);
    return o;
}

static int has_node(hlptd_node *const *nodes, size_t n, const char *id) {
    for (size_t i = 0; id && i < n; i++)
        if (!strcmp(nodes[i]->id, id)) return 1;
    return 0;
}

cJSON *hlptd_api_nodes_json(hlptd_node *const *nodes, size_t n, hlptd_lease *const *leases, size_t nleases,
                            int64_t now_ms, const char *self) {
    cJSON *list = cJSON_CreateObject();
    if (!list) return NULL;
    cJSON_AddStringToObject(list, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(list, "data");
    for (size_t i = 0; i < n; i++) {
        const hlptd_node *nd = nodes[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(data, o);
        cJSON_AddStringToObject(o, "object", "node");
        cJSON_AddStringToObject(o, "id", nd->id);
        cJSON_AddStringToObject(o, "url", nd->url ? nd->url : "");
        cJSON_AddStringToObject(o, "state", node_state(nd, now_ms));
        cJSON_AddBoolToObject(o, "self", self && !strcmp(nd->id, self));
        cJSON_AddNumberToObject(o, "pid", (double)nd->pid);
        cJSON_AddNumberToObject(o, "workers", (double)nd->workers);
        cJSON_AddNumberToObject(o, "running", (double)nd->running);
        cJSON_AddNumberToObject(o, "started_at", (double)nd->started_at);
        cJSON_AddNumberToObject(o, "heartbeat_at", (double)nd->heartbeat_at / 1000.0);
        /* Another node's heartbeat may land between the reading of the clock and that of the rows. */
        int64_t age = now_ms > nd->heartbeat_at ? now_ms - nd->heartbeat_at : 0;
        cJSON_AddNumberToObject(o, "heartbeat_age_s", (double)age / 1000.0);
        cJSON_AddNumberToObject(o, "lease_seconds", (double)nd->lease_ms / 1000.0);
        cJSON *held = cJSON_AddArrayToObject(o, "leases");
        for (size_t k = 0; k < nleases; k++)
            if (leases[k]->node && !strcmp(leases[k]->node, nd->id))
                cJSON_AddItemToArray(held, lease_json(leases[k], now_ms, 0));
    }
    cJSON_AddBoolToObject(list, "has_more", 0);
    /* Leases of a node without a row (one that never beat, or whose row aged out of the list). */
    cJSON *orphans = NULL;
    for (size_t k = 0; k < nleases; k++) {
        if (has_node(nodes, n, leases[k]->node)) continue;
        if (!orphans) orphans = cJSON_AddArrayToObject(list, "orphan_leases");
        cJSON_AddItemToArray(orphans, lease_json(leases[k], now_ms, 1));
    }
    return list;
}

static void nodes_work(void *app, hlptd_req *r) {
    hlptd *d = app;
    hlptd_node **nodes = NULL;
    hlptd_lease **leases = NULL;
    size_t n = 0, nleases = 0;
    int64_t now_ms = 0;
    char why[256];
    int err = hlptd_store_node_list(hlptd_store_of(d), &nodes, &n, &leases, &nleases, &now_ms, why, sizeof why);
    if (err) {
        hlptd_reply_err(r, err, NULL, "listing the nodes failed: %s", why);
        return;
    }
    cJSON *body = hlptd_api_nodes_json(nodes, n, leases, nleases, now_ms, hlptd_node_id(d));
    hlptd_node_list_free(nodes, n);
    hlptd_lease_list_free(leases, nleases);
    if (!body) hlptd_reply_err(r, HLPT_ERR_NOMEM, NULL, "out of memory");
    else hlptd_reply_json(r, 200, body);
}

void hlptd_api_nodes(hlptd_req *r) { hlptd_req_defer(r, nodes_work); }
