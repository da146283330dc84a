/*
 * log.h - hlptd's log: one line per message on stderr, "2025-01-31T12:00:00.123Z info  message".
 *
 * Any thread may log; each message goes out in one write(2), so lines from different threads never
 * interleave. Under systemd, stderr goes to the journal, which adds its own time stamp; the line
 * keeps its own so that the log reads the same in a terminal and in a test's captured output.
 */
#ifndef HLPTD_LOG_H
#define HLPTD_LOG_H

#define HLPTD_LOG_LEVELS(X) X(DEBUG, "debug") X(INFO, "info") X(WARN, "warn") X(ERROR, "error")

typedef enum {
#define X(name, str) HLPTD_LOG_##name,
    HLPTD_LOG_LEVELS(X)
#undef X
    HLPTD_LOG_COUNT__
} hlptd_log_level;

/* Messages below `level` are dropped. Call once at start-up, before other threads exist. */
void hlptd_log_set_level(hlptd_log_level level);

/* The level whose name is `name` ("debug", "info", "warn", "error"), or -1. */
int hlptd_log_level_parse(const char *name);

/* printf-style; a trailing newline is added. Thread-safe. */
void hlptd_log(hlptd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define hlptd_debug(...) hlptd_log(HLPTD_LOG_DEBUG, __VA_ARGS__)
#define hlptd_info(...) hlptd_log(HLPTD_LOG_INFO, __VA_ARGS__)
#define hlptd_warn(...) hlptd_log(HLPTD_LOG_WARN, __VA_ARGS__)
#define hlptd_error(...) hlptd_log(HLPTD_LOG_ERROR, __VA_ARGS__)

#endif
