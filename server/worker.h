/*
 * worker.h - the job worker process (`hlptd --worker`); see worker.c for the line protocol.
 */
#ifndef HLPTD_WORKER_H
#define HLPTD_WORKER_H

/* The fd on which a worker finds the sealed base-model arena. */
#define HLPTD_WORKER_MODEL_FD 3

/* Runs one job: spec on stdin, JSON lines on stdout. Returns the process exit status. Called from
 * main() only, in a process of its own. */
int hlptd_worker_main(int argc, char **argv);

#endif
