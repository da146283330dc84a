/*
 * job_state.h - the states of a fine-tuning job and the moves between them (docs/design.md, "The
 * store"). The store keeps a job's state as its name (the `status` the REST API shows); everything
 * in the daemon compares the enum.
 *
 *   validating_files ──> queued <──> running ──> succeeded | failed | cancelled
 *                          ^  \        |
 *                          |   v       v
 *                          └── paused <┘
 *
 * Every state but the three final ones can be cancelled or fail. A worker is stopped behind its
 * job's new state (docs/faults.md), so a job that was paused, or paused and resumed, may still
 * succeed or fail with the last word of the worker it had.
 *
 * Pure functions: any thread.
 */
#ifndef HLPTD_JOB_STATE_H
#define HLPTD_JOB_STATE_H

/* X(id, name): the name is what the store and the REST API say. */
#define HLPTD_JOB_STATE_MAP(X)                                                                       \
    X(VALIDATING_FILES, "validating_files")                                                          \
    X(QUEUED, "queued")                                                                              \
    X(RUNNING, "running")                                                                            \
    X(PAUSED, "paused")                                                                              \
    X(SUCCEEDED, "succeeded")                                                                        \
    X(FAILED, "failed")                                                                              \
    X(CANCELLED, "cancelled")

typedef enum {
#define X(id, name) HLPTD_JOB_##id,
    HLPTD_JOB_STATE_MAP(X)
#undef X
    HLPTD_JOB_STATE_COUNT
} hlptd_job_state;

/* "queued"; "unknown" for a value outside the enum. */
const char *hlptd_job_state_name(hlptd_job_state s);
/* The state named `name`, or -1 when no state has that name (NULL included). */
int hlptd_job_state_from_name(const char *name);
/* 1 for succeeded, failed and cancelled: nothing moves a job out of them. */
int hlptd_job_state_final(hlptd_job_state s);
/* 1 when a job may move from `from` to `to`, else 0. Staying in a state is no move (0): callers
 * that re-assert a state (the store's set_status) treat it apart. */
int hlptd_job_state_can(hlptd_job_state from, hlptd_job_state to);

#endif
