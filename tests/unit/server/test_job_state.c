/* Job states (server/job_state.h): names both ways, the final states, and every move of the
 * transition table, allowed or not. */
#include "job_state.h"

#include <string.h>

#include "../check_main.h"

#define Q HLPTD_JOB_QUEUED
#define R HLPTD_JOB_RUNNING
#define P HLPTD_JOB_PAUSED
#define V HLPTD_JOB_VALIDATING_FILES
#define S HLPTD_JOB_SUCCEEDED
#define F HLPTD_JOB_FAILED
#define C HLPTD_JOB_CANCELLED

START_TEST(names) {
    const char *want[] = {"validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"};
    ck_assert_int_eq(HLPTD_JOB_STATE_COUNT, 7);
    for (int i = 0; i < HLPTD_JOB_STATE_COUNT; i++) {
        ck_assert_str_eq(hlptd_job_state_name((hlptd_job_state)i), want[i]);
        ck_assert_int_eq(hlptd_job_state_from_name(want[i]), i);
    }
    ck_assert_int_eq(hlptd_job_state_from_name("Queued"), -1);
    ck_assert_int_eq(hlptd_job_state_from_name(""), -1);
    ck_assert_int_eq(hlptd_job_state_from_name(NULL), -1);
    ck_assert_str_eq(hlptd_job_state_name((hlptd_job_state)HLPTD_JOB_STATE_COUNT), "unknown");
    ck_assert(hlptd_job_state_final(S) && hlptd_job_state_final(F) && hlptd_job_state_final(C));
    ck_assert(!hlptd_job_state_final(V) && !hlptd_job_state_final(Q) && !hlptd_job_state_final(R) &&
              !hlptd_job_state_final(P));
}
END_TEST

/* The whole table, written out: row = from, column = to, in the enum's order (V Q R P S F C). */
START_TEST(moves) {
    static const int want[7][7] = {
        /*        V  Q  R  P  S  F  C */
        /* V */ {0, 1, 0, 0, 0, 1, 1},
        /* Q */ {0, 0, 1, 1, 1, 1, 1},
        /* R */ {0, 1, 0, 1, 1, 1, 1},
        /* P */ {0, 1, 0, 0, 1, 1, 1},
        /* S */ {0, 0, 0, 0, 0, 0, 0},
        /* F */ {0, 0, 0, 0, 0, 0, 0},
        /* C */ {0, 0, 0, 0, 0, 0, 0},
    };
    for (int a = 0; a < 7; a++)
        for (int b = 0; b < 7; b++)
            ck_assert_msg(hlptd_job_state_can((hlptd_job_state)a, (hlptd_job_state)b) == want[a][b], "%s -> %s",
                          hlptd_job_state_name((hlptd_job_state)a), hlptd_job_state_name((hlptd_job_state)b));
    /* What the lifecycle verbs rely on: pause only a queued or running job, resume only a paused
     * one (paused -> queued), cancel anything not final. */
    ck_assert(!hlptd_job_state_can(V, P) && !hlptd_job_state_can(P, P));
    ck_assert(hlptd_job_state_can(P, Q));
    for (int a = 0; a < 7; a++)
        ck_assert_int_eq(hlptd_job_state_can((hlptd_job_state)a, C), !hlptd_job_state_final((hlptd_job_state)a));
    /* Out of range is never a move. */
    ck_assert(!hlptd_job_state_can((hlptd_job_state)7, Q));
    ck_assert(!hlptd_job_state_can(Q, (hlptd_job_state)-1));
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("job_state");
    TCase *tc = tcase_create("job_state");
    tcase_add_test(tc, names);
    tcase_add_test(tc, moves);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
