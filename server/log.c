/*
 * log.c - see log.h. The level is a process-wide setting written once at start-up (an atomic so that
 * reading it from HTTP threads is defined); the message is formatted into a stack buffer and written
 * with a single write(2).
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {
#define X(name, str) str,
    HLPTD_LOG_LEVELS(X)
#undef X
};

static atomic_int log_level = HLPTD_LOG_INFO;

void hlptd_log_set_level(hlptd_log_level level) { atomic_store(&log_level, (int)level); }

int hlptd_log_level_parse(const char *name) {
    for (int i = 0; i < HLPTD_LOG_COUNT__; i++)
        if (name && strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

void hlptd_log(hlptd_log_level level, const char *fmt, ...) {
    if ((int)level < atomic_load(&log_level) || (int)level >= HLPTD_LOG_COUNT__) return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %-5s ", ts.tv_nsec / 1000000L,
                          level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    /* A longer message is cut; the line still ends with its newline. */
    n = m < 0 ? n : n + (size_t)m;
    if (n > sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
