/*
 * score.h - the task scoring rules of the demo tasks and the method comparison.
 */
#ifndef HLPT_SCORE_H
#define HLPT_SCORE_H

#include <stddef.h>

/* The last number in text (commas between digits ignored); 0 when there is none. */
int hlpt_score_last_number(const char *text, double *out);
/* LLM-Adapters' rule for math word problems: the last number of the answer equals the last number
 * of the reference within 0.001. 1 = correct. */
int hlpt_score_math(const char *answer, const char *reference);
/* Exact match after normalising both: first line only, lower case, '_' as space, surrounding
 * spaces and a final period dropped. 1 = correct. */
int hlpt_score_exact(const char *answer, const char *reference);

#endif
