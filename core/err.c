/*
 * err.c - names and messages of the status map in include/hlpt/err.h.
 */
#include "hlpt/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const err_msgs[] = {
#define X(name, msg) msg,
    HLPT_ERR_MAP(X)
#undef X
};

static const char *const err_names[] = {
#define X(name, msg) #name,
    HLPT_ERR_MAP(X)
#undef X
};

_Static_assert(sizeof err_msgs / sizeof err_msgs[0] == HLPT_ERR_COUNT__, "one message per status");

const char *hlpt_strerror(int err) {
    if (err > 0 || -err >= HLPT_ERR_COUNT__) return "unknown error";
    return err_msgs[-err];
}

const char *hlpt_err_name(int err) {
    if (err > 0 || -err >= HLPT_ERR_COUNT__) return "UNKNOWN";
    return err_names[-err];
}

int hlpt_vwhy(char *why, size_t len, int err, const char *fmt, va_list ap) {
    if (why && len) vsnprintf(why, len, fmt, ap);
    return err;
}

int hlpt_why(char *why, size_t len, int err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    hlpt_vwhy(why, len, err, fmt, ap);
    va_end(ap);
    return err;
}

void hlpt_assert_fail__(const char *what, const char *file, int line) {
    fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, what);
    abort();
}
