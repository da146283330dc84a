/*
 * job_state.c - see job_state.h. The legal moves are one table: for each state, the set of states
 * it may move to, as bits.
 */
#include "job_state.h"

#include <string.h>

static const char *const names[] = {
#define X(id, name) name,
    HLPTD_JOB_STATE_MAP(X)
#undef X
};
_Static_assert(sizeof names / sizeof names[0] == HLPTD_JOB_STATE_COUNT, "one name per state");

#define TO(id) (1u << HLPTD_JOB_##id)

static const unsigned moves[HLPTD_JOB_STATE_COUNT] = {
    [HLPTD_JOB_VALIDATING_FILES] = TO(QUEUED) | TO(FAILED) | TO(CANCELLED),
    /* queued -> succeeded: a job resumed while its last worker was still stopping takes that
     * worker's last word, which may be that it finished. */
    [HLPTD_JOB_QUEUED] = TO(RUNNING) | TO(PAUSED) | TO(SUCCEEDED) | TO(FAILED) | TO(CANCELLED),
    /* running -> queued: the daemon's shutdown, a worker's death (restarted), a restart of the
     * daemon; running -> paused: asked, or the disk is full. */
    [HLPTD_JOB_RUNNING] = TO(QUEUED) | TO(PAUSED) | TO(SUCCEEDED) | TO(FAILED) | TO(CANCELLED),
    /* paused -> succeeded | failed: a worker asked to pause may finish, or fail, first. */
    [HLPTD_JOB_PAUSED] = TO(QUEUED) | TO(SUCCEEDED) | TO(FAILED) | TO(CANCELLED),
    [HLPTD_JOB_SUCCEEDED] = 0,
    [HLPTD_JOB_FAILED] = 0,
    [HLPTD_JOB_CANCELLED] = 0,
};

const char *hlptd_job_state_name(hlptd_job_state s) {
    return (unsigned)s < HLPTD_JOB_STATE_COUNT ? names[s] : "unknown";
}

int hlptd_job_state_from_name(const char *name) {
    for (int i = 0; name && i < HLPTD_JOB_STATE_COUNT; i++)
        if (!strcmp(names[i], name)) return i;
    return -1;
}

int hlptd_job_state_final(hlptd_job_state s) {
    return s == HLPTD_JOB_SUCCEEDED || s == HLPTD_JOB_FAILED || s == HLPTD_JOB_CANCELLED;
}

int hlptd_job_state_can(hlptd_job_state from, hlptd_job_state to) {
    if ((unsigned)from >= HLPTD_JOB_STATE_COUNT || (unsigned)to >= HLPTD_JOB_STATE_COUNT) return 0;
    return (moves[from] & (1u << to)) != 0;
}
