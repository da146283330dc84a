/*
 * blobs.c - see blobs.h.
 */
#include "blobs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hlpt/err.h"
#include "hlpt/fileio.h"

struct hlptd_blobs {
    char *dir;  /* <data_dir>/blobs */
};

struct hlptd_blob_writer {
    hlptd_blobs *b;
    int fd;
    char tmp[4200];
    hlpt_sha256 sha;
    uint64_t bytes;
};

/* Temporary names are unique across threads (counter) and processes (pid). */
static atomic_ulong tmp_seq;

static int io_err(int e) { return e == ENOSPC || e == EDQUOT ? HLPT_ERR_NOSPACE : HLPT_ERR_IO; }

static int make_dir(const char *path, char *why, size_t len) {
    if (mkdir(path, 0700) == 0 || errno == EEXIST) return HLPT_OK;
    return hlpt_why(why, len, io_err(errno), "%s: %s", path, strerror(errno));
}

/* fsync of a folder, so that a rename into it survives a power cut. */
static int sync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static void clean_tmp(const char *tmpdir) {
    DIR *dp = opendir(tmpdir);
    if (!dp) return;
    struct dirent *e;
    char path[4200 + 256];
    while ((e = readdir(dp))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
        unlink(path);
    }
    closedir(dp);
}

int hlptd_blobs_open(const char *data_dir, int clean, hlptd_blobs **out, char *why, size_t len) {
    *out = NULL;
    hlptd_blobs *b = calloc(1, sizeof *b);
    size_t n = strlen(data_dir) + sizeof "/blobs";
    if (!b || !(b->dir = malloc(n))) {
        free(b);
        return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    }
    snprintf(b->dir, n, "%s/blobs", data_dir);
    char path[4200];
    int err = make_dir(b->dir, why, len);
    snprintf(path, sizeof path, "%s/sha256", b->dir);
    if (!err) err = make_dir(path, why, len);
    snprintf(path, sizeof path, "%s/tmp", b->dir);
    if (!err) err = make_dir(path, why, len);
    if (err) {
        hlptd_blobs_close(b);
        return err;
    }
    if (clean) clean_tmp(path);
    *out = b;
    return HLPT_OK;
}

void hlptd_blobs_close(hlptd_blobs *b) {
    if (!b) return;
    free(b->dir);
    free(b);
}

const char *hlptd_blobs_dir(const hlptd_blobs *b) { return b->dir; }

int hlptd_blob_path(const hlptd_blobs *b, const char *sha256, char *out, size_t cap) {
    if (!hlpt_sha256_hex_valid(sha256)) return HLPT_ERR_INVAL;
    int k = snprintf(out, cap, "%s/sha256/%.2s/%s", b->dir, sha256, sha256);
    return k < 0 || (size_t)k >= cap ? HLPT_ERR_RANGE : HLPT_OK;
}

int hlptd_blob_begin(hlptd_blobs *b, hlptd_blob_writer **out, char *why, size_t len) {
    *out = NULL;
    hlptd_blob_writer *w = calloc(1, sizeof *w);
    if (!w) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    w->b = b;
    snprintf(w->tmp, sizeof w->tmp, "%s/tmp/%ld-%lu", b->dir, (long)getpid(), atomic_fetch_add(&tmp_seq, 1));
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        int e = errno;
        free(w);
        return hlpt_why(why, len, io_err(e), "%s/tmp: %s", b->dir, strerror(e));
    }
    hlpt_sha256_init(&w->sha);
    *out = w;
    return HLPT_OK;
}

int hlptd_blob_write(hlptd_blob_writer *w, const void *buf, size_t n, char *why, size_t len) {
    const char *p = buf;
    hlpt_sha256_update(&w->sha, buf, n);
    w->bytes += n;
    while (n) {
        ssize_t k = write(w->fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            int e = k < 0 ? errno : ENOSPC;
            return hlpt_why(why, len, io_err(e), "writing %s: %s", w->tmp, strerror(e));
        }
        p += k;
        n -= (size_t)k;
    }
    return HLPT_OK;
}

uint64_t hlptd_blob_written(const hlptd_blob_writer *w) { return w->bytes; }

void hlptd_blob_abort(hlptd_blob_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    unlink(w->tmp);
    free(w);
}

int hlptd_blob_commit(hlptd_blob_writer *w, char sha256[HLPT_SHA256_HEX], uint64_t *bytes, char *why, size_t len) {
    hlpt_sha256_final_hex(&w->sha, sha256);
    if (bytes) *bytes = w->bytes;
    char path[4200], dir[4200];
    snprintf(dir, sizeof dir, "%s/sha256/%.2s", w->b->dir, sha256);
    hlptd_blob_path(w->b, sha256, path, sizeof path);
    int e = 0;
    if (fsync(w->fd) != 0) e = errno;
    if (close(w->fd) != 0 && !e) e = errno;
    w->fd = -1;
    if (!e && mkdir(dir, 0700) != 0 && errno != EEXIST) e = errno;
    /* Same name, same bytes: a blob already there is kept as it is. */
    if (!e && rename(w->tmp, path) != 0) e = errno;
    if (!e && sync_dir(dir) != 0) e = errno;
    if (e) {
        hlptd_blob_abort(w);
        return hlpt_why(why, len, io_err(e), "storing blob %s: %s", sha256, strerror(e));
    }
    free(w);
    return HLPT_OK;
}

int hlptd_blob_put(hlptd_blobs *b, const void *buf, size_t n, char sha256[HLPT_SHA256_HEX], char *why, size_t len) {
    hlptd_blob_writer *w;
    int err = hlptd_blob_begin(b, &w, why, len);
    if (err) return err;
    if ((err = hlptd_blob_write(w, buf, n, why, len))) {
        hlptd_blob_abort(w);
        return err;
    }
    return hlptd_blob_commit(w, sha256, NULL, why, len);
}

int hlptd_blob_read(hlptd_blobs *b, const char *sha256, size_t max, char **buf, size_t *n, char *why, size_t len) {
    *buf = NULL;
    *n = 0;
    char path[4200], got[HLPT_SHA256_HEX];
    if (hlptd_blob_path(b, sha256, path, sizeof path))
        return hlpt_why(why, len, HLPT_ERR_INVAL, "'%s' is not a blob name", sha256);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return hlpt_why(why, len, errno == ENOENT ? HLPT_ERR_NOENT : HLPT_ERR_IO, "blob %s: %s", sha256, strerror(errno));
    char sub[256] = "";
    int err = hlpt_fd_read(fd, max, buf, n, sub, sizeof sub);
    close(fd);
    if (err) return hlpt_why(why, len, err, "blob %s: %s", sha256, *sub ? sub : hlpt_strerror(err));
    hlpt_sha256_hex(*buf, *n, got);
    if (strcmp(got, sha256) != 0) {
        free(*buf);
        *buf = NULL;
        *n = 0;
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "blob %s is damaged: its bytes hash to %s", sha256, got);
    }
    return HLPT_OK;
}

int hlptd_blob_size(hlptd_blobs *b, const char *sha256, uint64_t *bytes, char *why, size_t len) {
    char path[4200];
    struct stat sb;
    *bytes = 0;
    if (hlptd_blob_path(b, sha256, path, sizeof path))
        return hlpt_why(why, len, HLPT_ERR_INVAL, "'%s' is not a blob name", sha256);
    if (stat(path, &sb) != 0)
        return hlpt_why(why, len, errno == ENOENT ? HLPT_ERR_NOENT : HLPT_ERR_IO, "blob %s: %s", sha256, strerror(errno));
    *bytes = (uint64_t)sb.st_size;
    return HLPT_OK;
}

int hlptd_blob_open(hlptd_blobs *b, const char *sha256, int *fd, uint64_t *bytes, char *why, size_t len) {
    char path[4200];
    struct stat sb;
    *fd = -1;
    *bytes = 0;
    if (hlptd_blob_path(b, sha256, path, sizeof path))
        return hlpt_why(why, len, HLPT_ERR_INVAL, "'%s' is not a blob name", sha256);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return hlpt_why(why, len, errno == ENOENT ? HLPT_ERR_NOENT : HLPT_ERR_IO, "blob %s: %s", sha256, strerror(errno));
    if (fstat(f, &sb) != 0) {
        int e = errno;
        close(f);
        return hlpt_why(why, len, HLPT_ERR_IO, "blob %s: %s", sha256, strerror(e));
    }
    *fd = f;
    *bytes = (uint64_t)sb.st_size;
    return HLPT_OK;
}

int hlptd_blobs_each(hlptd_blobs *b, int (*fn)(void *ctx, const char *sha256), void *ctx, char *why, size_t len) {
    char path[4200];
    snprintf(path, sizeof path, "%s/sha256", b->dir);
    DIR *top = opendir(path);
    if (!top) return hlpt_why(why, len, HLPT_ERR_IO, "%s: %s", path, strerror(errno));
    int rc = 0;
    struct dirent *e;
    /* sha256/<2 hex>/<64 hex>: a blob's folder is the first two digits of its name. */
    while (!rc && (e = readdir(top))) {
        if (strlen(e->d_name) != 2) continue;
        char sub[4300];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        DIR *dp = opendir(sub);
        if (!dp) continue;
        struct dirent *f;
        while (!rc && (f = readdir(dp)))
            if (hlpt_sha256_hex_valid(f->d_name) && !strncmp(f->d_name, e->d_name, 2)) rc = fn(ctx, f->d_name);
        closedir(dp);
    }
    closedir(top);
    return rc;
}

int hlptd_blob_remove(hlptd_blobs *b, const char *sha256, char *why, size_t len) {
    char path[4200];
    if (hlptd_blob_path(b, sha256, path, sizeof path))
        return hlpt_why(why, len, HLPT_ERR_INVAL, "'%s' is not a blob name", sha256);
    if (unlink(path) != 0 && errno != ENOENT)
        return hlpt_why(why, len, HLPT_ERR_IO, "removing blob %s: %s", sha256, strerror(errno));
    return HLPT_OK;
}
