/*
 * fileio.c - see fileio.h.
 */
#include "hlpt/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hlpt/err.h"

int hlpt_fd_read(int fd, size_t max, char **buf, size_t *n, char *why, size_t len) {
    *buf = NULL;
    *n = 0;
    size_t cap = 4096, used = 0;
    char *p = malloc(cap);
    if (!p) return HLPT_ERR_NOMEM;
    for (;;) {
        if (used + 1 >= cap) {
            char *q = realloc(p, cap *= 2);
            if (!q) {
                free(p);
                return HLPT_ERR_NOMEM;
            }
            p = q;
        }
        ssize_t k = read(fd, p + used, cap - used - 1);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            int e = errno;
            free(p);
            return hlpt_why(why, len, HLPT_ERR_IO, "read: %s", strerror(e));
        }
        if (k == 0) break;
        used += (size_t)k;
        if (used > max) {
            free(p);
            return hlpt_why(why, len, HLPT_ERR_RANGE, "larger than %zu bytes", max);
        }
    }
    p[used] = 0;
    *buf = p;
    *n = used;
    return HLPT_OK;
}

int hlpt_file_read(const char *path, size_t max, char **buf, size_t *n, char *why, size_t len) {
    *buf = NULL;
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return hlpt_why(why, len, errno == ENOENT ? HLPT_ERR_NOENT : HLPT_ERR_IO, "%s: %s", path, strerror(errno));
    char sub[256] = "";
    int err = hlpt_fd_read(fd, max, buf, n, sub, sizeof sub);
    close(fd);
    if (err) return hlpt_why(why, len, err, "%s: %s", path, *sub ? sub : hlpt_strerror(err));
    return HLPT_OK;
}

int hlpt_file_write(const char *path, const void *buf, size_t n, int durable, char *why, size_t len) {
    size_t plen = strlen(path) + 16;
    char *tmp = malloc(plen);
    if (!tmp) return HLPT_ERR_NOMEM;
    snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return hlpt_why(why, len, e == ENOSPC || e == EDQUOT ? HLPT_ERR_NOSPACE : HLPT_ERR_IO, "%s: %s", path, strerror(e));
    }
    const char *p = buf;
    size_t left = n;
    int ok = 1;
    while (ok && left) {
        ssize_t k = write(fd, p, left);
        if (k < 0 && errno == EINTR) continue;
        ok = k > 0;
        if (ok) {
            p += k;
            left -= (size_t)k;
        }
    }
    int e = errno;
    if (ok && durable) ok = fsync(fd) == 0, e = errno;
    if (close(fd) != 0 && ok) ok = 0, e = errno;
    if (ok && rename(tmp, path) != 0) ok = 0, e = errno;
    if (!ok) unlink(tmp);
    free(tmp);
    if (ok) return HLPT_OK;
    return hlpt_why(why, len, e == ENOSPC || e == EDQUOT ? HLPT_ERR_NOSPACE : HLPT_ERR_IO, "%s: %s", path, strerror(e));
}
