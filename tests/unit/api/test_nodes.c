/*
 * GET /v1/nodes rendering (api/nodes.c): the state of each node from its row and the database's
 * clock (lost when a running node's heartbeat is older than its lease, never for a stopped one),
 * the times in seconds, `self`, leases under their nodes with the seconds they have left (negative
 * once run out), and leases of a node without a row in `orphan_leases`, which is there only then.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check_main.h"
#include "serving.h"

#define NOW 1700000000123LL /* ms, the database's clock */

static hlptd_node node_row(const char *id, const char *state, int64_t age_ms, int64_t lease_ms) {
    return (hlptd_node){.id = (char *)id, .url = (char *)"http://h:1", .state = (char *)state, .pid = 42,
                        .workers = 2, .running = 1, .lease_ms = lease_ms, .started_at = 1699990000,
                        .heartbeat_at = NOW - age_ms};
}

static hlptd_lease lease_row(const char *job, const char *node, int64_t epoch, int64_t left_ms) {
    hlptd_lease l = {.node = (char *)node, .lease_epoch = epoch, .lease_until = NOW + left_ms,
                     .status = HLPTD_JOB_RUNNING};
    snprintf(l.id, sizeof l.id, "%s", job);
    return l;
}

static const cJSON *item(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    ck_assert_msg(v != NULL, "no field %s", k);
    return v;
}

static const cJSON *node_of(const cJSON *list, const char *id) {
    const cJSON *n;
    cJSON_ArrayForEach(n, item(list, "data")) {
        if (!strcmp(item(n, "id")->valuestring, id)) return n;
    }
    ck_abort_msg("no node %s", id);
    return NULL;
}

static const char *state_of(const cJSON *list, const char *id) { return item(node_of(list, id), "state")->valuestring; }

START_TEST(test_states_and_fields) {
    hlptd_node rows[] = {
        node_row("a", "up", 1000, 15000),       /* fresh */
        node_row("b", "up", 15000, 15000),      /* exactly a lease old: not lost yet */
        node_row("c", "up", 15001, 15000),      /* older than its lease */
        node_row("d", "draining", 20000, 15000),
        node_row("e", "stopped", 3600000, 15000), /* said goodbye: stays stopped */
        node_row("f", "draining", 100, 15000),
        node_row("g", "up", -40, 3000),         /* a heartbeat that landed after the clock was read */
    };
    hlptd_node *nodes[7];
    for (int i = 0; i < 7; i++) nodes[i] = &rows[i];
    cJSON *list = hlptd_api_nodes_json(nodes, 7, NULL, 0, NOW, "a");
    ck_assert_ptr_nonnull(list);
    ck_assert_str_eq(item(list, "object")->valuestring, "list");
    ck_assert_int_eq(cJSON_GetArraySize(item(list, "data")), 7);
    ck_assert(cJSON_IsFalse(item(list, "has_more")));
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(list, "orphan_leases"));
    ck_assert_str_eq(state_of(list, "a"), "up");
    ck_assert_str_eq(state_of(list, "b"), "up");
    ck_assert_str_eq(state_of(list, "c"), "lost");
    ck_assert_str_eq(state_of(list, "d"), "lost");
    ck_assert_str_eq(state_of(list, "e"), "stopped");
    ck_assert_str_eq(state_of(list, "f"), "draining");
    ck_assert_str_eq(state_of(list, "g"), "up");

    const cJSON *a = node_of(list, "a");
    ck_assert_str_eq(item(a, "object")->valuestring, "node");
    ck_assert_str_eq(item(a, "url")->valuestring, "http://h:1");
    ck_assert(cJSON_IsTrue(item(a, "self")));
    ck_assert(cJSON_IsFalse(item(node_of(list, "b"), "self")));
    ck_assert_double_eq(item(a, "pid")->valuedouble, 42);
    ck_assert_double_eq(item(a, "workers")->valuedouble, 2);
    ck_assert_double_eq(item(a, "running")->valuedouble, 1);
    ck_assert_double_eq(item(a, "started_at")->valuedouble, 1699990000);
    ck_assert_double_eq_tol(item(a, "heartbeat_at")->valuedouble, 1699999999.123, 1e-6);
    ck_assert_double_eq_tol(item(a, "heartbeat_age_s")->valuedouble, 1.0, 1e-9);
    ck_assert_double_eq_tol(item(a, "lease_seconds")->valuedouble, 15.0, 1e-9);
    ck_assert_int_eq(cJSON_GetArraySize(item(a, "leases")), 0);
    ck_assert_double_eq(item(node_of(list, "g"), "heartbeat_age_s")->valuedouble, 0);

    /* The text keeps the milliseconds of heartbeat_at. */
    char *text = cJSON_PrintUnformatted(list);
    ck_assert_ptr_nonnull(strstr(text, "\"heartbeat_at\":1699999999.123,"));
    free(text);
    cJSON_Delete(list);
}
END_TEST

START_TEST(test_leases) {
    hlptd_node rows[] = {node_row("a", "up", 1000, 15000), node_row("b", "up", 30000, 15000)};
    hlptd_node *nodes[] = {&rows[0], &rows[1]};
    /* As the store orders them: by node, then queue order. */
    hlptd_lease lr[] = {
        lease_row("ftjob-1", "a", 3, 14000),
        lease_row("ftjob-2", "a", 1, 2500),
        lease_row("ftjob-3", "b", 7, -15000), /* run out, not taken over yet */
        lease_row("ftjob-4", "gone", 2, 500), /* its node's row is not listed */
    };
    lr[1].status = HLPTD_JOB_PAUSED;
    hlptd_lease *leases[] = {&lr[0], &lr[1], &lr[2], &lr[3]};
    cJSON *list = hlptd_api_nodes_json(nodes, 2, leases, 4, NOW, NULL);
    ck_assert_ptr_nonnull(list);
    const cJSON *a = node_of(list, "a"), *b = node_of(list, "b");
    ck_assert(cJSON_IsFalse(item(a, "self")));
    const cJSON *la = item(a, "leases");
    ck_assert_int_eq(cJSON_GetArraySize(la), 2);
    const cJSON *l0 = cJSON_GetArrayItem(la, 0), *l1 = cJSON_GetArrayItem(la, 1);
    ck_assert_str_eq(item(l0, "job_id")->valuestring, "ftjob-1");
    ck_assert_double_eq(item(l0, "epoch")->valuedouble, 3);
    ck_assert_str_eq(item(l0, "status")->valuestring, "running");
    ck_assert_double_eq_tol(item(l0, "expires_in_s")->valuedouble, 14.0, 1e-9);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(l0, "node"));
    ck_assert_str_eq(item(l1, "job_id")->valuestring, "ftjob-2");
    ck_assert_str_eq(item(l1, "status")->valuestring, "paused");
    ck_assert_double_eq_tol(item(l1, "expires_in_s")->valuedouble, 2.5, 1e-9);

    ck_assert_str_eq(item(b, "state")->valuestring, "lost");
    const cJSON *lb = item(b, "leases");
    ck_assert_int_eq(cJSON_GetArraySize(lb), 1);
    ck_assert_double_eq(item(cJSON_GetArrayItem(lb, 0), "epoch")->valuedouble, 7);
    ck_assert_double_eq_tol(item(cJSON_GetArrayItem(lb, 0), "expires_in_s")->valuedouble, -15.0, 1e-9);

    const cJSON *orphans = item(list, "orphan_leases");
    ck_assert_int_eq(cJSON_GetArraySize(orphans), 1);
    const cJSON *o = cJSON_GetArrayItem(orphans, 0);
    ck_assert_str_eq(item(o, "job_id")->valuestring, "ftjob-4");
    ck_assert_str_eq(item(o, "node")->valuestring, "gone");
    ck_assert_double_eq(item(o, "epoch")->valuedouble, 2);
    ck_assert_double_eq_tol(item(o, "expires_in_s")->valuedouble, 0.5, 1e-9);
    cJSON_Delete(list);
}
END_TEST

/* No node has beaten yet (a store nobody uses): an empty list. */
START_TEST(test_empty) {
    cJSON *list = hlptd_api_nodes_json(NULL, 0, NULL, 0, NOW, "a");
    ck_assert_ptr_nonnull(list);
    char *text = cJSON_PrintUnformatted(list);
    ck_assert_str_eq(text, "{\"object\":\"list\",\"data\":[],\"has_more\":false}");
    free(text);
    cJSON_Delete(list);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("api_nodes");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_states_and_fields);
    tcase_add_test(tc, test_leases);
    tcase_add_test(tc, test_empty);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
