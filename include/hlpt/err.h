/*
 * err.h - the one status type of hlpt.
 *
 * Every fallible function returns an hlpt_err: 0 is success, errors are negative. The list below is
 * the only place a status is defined; it expands into the enum, hlpt_strerror() and hlpt_err_name()
 * (the libuv UV_ERRNO_MAP pattern). Human detail (which field, line or tensor) travels separately in
 * a caller-provided `char *why, size_t len` buffer.
 */
#ifndef HLPT_ERR_H
#define HLPT_ERR_H

#include <stdarg.h>
#include <stddef.h>

#define HLPT_ERR_MAP(X)                                                     \
    X(OK, "ok")                                                             \
    X(NOMEM, "out of memory")                                               \
    X(INVAL, "invalid argument")                                            \
    X(IO, "input/output error")                                             \
    X(NOENT, "no such file or object")                                      \
    X(FORMAT, "malformed file")                                             \
    X(UNSUPPORTED, "unsupported feature")                                   \
    X(MISMATCH, "does not fit the base model")                              \
    X(RANGE, "value out of range")                                          \
    X(STATE, "wrong state for this operation")                              \
    X(EXISTS, "already exists")                                             \
    X(BUSY, "resource busy")                                                \
    X(CANCELLED, "cancelled")                                               \
    X(DB, "database error")                                                 \
    X(INTERNAL, "internal error")                                          \
    X(NOSPACE, "no space left on the device")

typedef enum {
#define X(name, msg) HLPT_ERR_##name##__,
    HLPT_ERR_MAP(X)
#undef X
    HLPT_ERR_COUNT__
} hlpt_err_index__;

/* Statuses: HLPT_OK = 0, every error negative (HLPT_ERR_NOMEM = -1, ...). */
typedef enum {
#define X(name, msg) HLPT_ERR_##name = -HLPT_ERR_##name##__,
    HLPT_ERR_MAP(X)
#undef X
} hlpt_err;

#define HLPT_OK HLPT_ERR_OK

/* A fixed English sentence for a status; never NULL ("unknown error" for values outside the map). */
const char *hlpt_strerror(int err);
/* The status's name without prefix, e.g. "NOMEM"; never NULL. */
const char *hlpt_err_name(int err);

/* Writes printf-style detail into why[len] when why is not NULL and returns err, so a failing
 * check reads `return hlpt_why(why, len, HLPT_ERR_FORMAT, "tensor %s: ...", name);`. */
int hlpt_why(char *why, size_t len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same with the arguments as a va_list (for functions that report more than the message). */
int hlpt_vwhy(char *why, size_t len, int err, const char *fmt, va_list ap);

/* Programmer errors only: aborts with file and line. Never for bad input. */
#define HLPT_ASSERT(cond)                                                   \
    do {                                                                    \
        if (!(cond)) hlpt_assert_fail__(#cond, __FILE__, __LINE__);         \
    } while (0)
_Noreturn void hlpt_assert_fail__(const char *what, const char *file, int line);

#endif
