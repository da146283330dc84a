/*
 * fileio.h - whole-file reads and atomic writes, the one way hlpt reads and writes small files
 * (configs, datasets, adapters, checkpoints).
 */
#ifndef HLPT_FILEIO_H
#define HLPT_FILEIO_H

#include <stddef.h>

/* Reads path whole (pipes and /proc files too). *buf is returned owned (free()), NUL-terminated,
 * *n bytes. Files larger than max bytes are HLPT_ERR_RANGE; a missing file HLPT_ERR_NOENT. */
int hlpt_file_read(const char *path, size_t max, char **buf, size_t *n, char *why, size_t len);
/* The same from an open descriptor (borrowed), e.g. a pipe on stdin. */
int hlpt_fd_read(int fd, size_t max, char **buf, size_t *n, char *why, size_t len);
/* Writes buf[n] to path atomically: a temporary file beside it, fsync when durable, rename. A
 * reader sees the old file or the new one, never half of one. Errors: HLPT_ERR_NOSPACE (the disk or
 * quota is full; nothing is left behind), HLPT_ERR_IO, HLPT_ERR_NOMEM. */
int hlpt_file_write(const char *path, const void *buf, size_t n, int durable, char *why, size_t len);

#endif
