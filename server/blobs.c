/*
 * blobs.c - see blobs.h.
 *
 * DESIGN
 * A writer owns one temporary, tmp/<pid>-<n>, opened O_EXCL and hashed as it is written. Sealing
 * fsyncs and closes it; putting it into place (commit, or adopt of a sealed one) is one rename into
 * sha256/<2 hex>/ followed by an fsync of that folder, and of sha256/ too when the rename's folder
 * was just made, so that a power cut keeps the folder's entry as well as the blob's.
 */
#include "blobs.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hlpt/err.h"
#include "hlpt/fileio.h"

struct hlptd_blobs {
    char *dir;  /* <data_dir>/blobs */
};

struct hlptd_blob_writer {
    hlptd_blobs *b;
    int fd;
    char name[HLPTD_BLOB_TMP_MAX]; /* <pid>-<n> */
    char tmp[4200];                /* <dir>/tmp/<name> */
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
    /* A name left by an earlier process of the same pid (a worker that died, whose temporaries are
     * not yet discarded) is passed over. */
    int e = EEXIST;
    for (int tries = 0; tries < 8 && e == EEXIST; tries++) {
        snprintf(w->name, sizeof w->name, "%ld-%lu", (long)getpid(), atomic_fetch_add(&tmp_seq, 1));
        snprintf(w->tmp, sizeof w->tmp, "%s/tmp/%s", b->dir, w->name);
        w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        e = w->fd < 0 ? errno : 0;
    }
    if (w->fd < 0) {
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

void hlptd_blob_abort(hlptd_blob_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    unlink(w->tmp);
    free(w);
}

/* Renames the file at `from` to the blob sha256 and makes the rename durable: 0 or an errno. */
static int place(hlptd_blobs *b, const char *from, const char *sha256) {
    char path[4200], dir[4200], top[4200];
    snprintf(top, sizeof top, "%s/sha256", b->dir);
    snprintf(dir, sizeof dir, "%s/sha256/%.2s", b->dir, sha256);
    if (hlptd_blob_path(b, sha256, path, sizeof path)) return ENAMETOOLONG;
    int made = mkdir(dir, 0700) == 0;
    if (!made && errno != EEXIST) return errno;
    /* Same name, same bytes: a blob already there is replaced by the same bytes. */
    if (rename(from, path) != 0) return errno;
    if (sync_dir(dir) != 0) return errno;
    if (made && sync_dir(top) != 0) return errno;
    return 0;
}

/* fsync and close of a writer's file: 0 or an errno. */
static int seal_fd(hlptd_blob_writer *w) {
    int e = fsync(w->fd) != 0 ? errno : 0;
    if (close(w->fd) != 0 && !e) e = errno;
    w->fd = -1;
    return e;
}

int hlptd_blob_seal(hlptd_blob_writer *w, char sha256[HLPT_SHA256_HEX], uint64_t *bytes, char *tmp_name, size_t cap,
                    char *why, size_t len) {
    hlpt_sha256_final_hex(&w->sha, sha256);
    if (bytes) *bytes = w->bytes;
    if (cap) tmp_name[0] = 0;
    if (strlen(w->name) >= cap) {
        hlptd_blob_abort(w);
        return hlpt_why(why, len, HLPT_ERR_RANGE, "no room for a temporary's name");
    }
    int e = seal_fd(w);
    if (e) {
        hlptd_blob_abort(w);
        return hlpt_why(why, len, io_err(e), "storing blob %s: %s", sha256, strerror(e));
    }
    snprintf(tmp_name, cap, "%s", w->name);
    free(w);
    return HLPT_OK;
}

int hlptd_blob_commit(hlptd_blob_writer *w, char sha256[HLPT_SHA256_HEX], uint64_t *bytes, char *why, size_t len) {
    hlpt_sha256_final_hex(&w->sha, sha256);
    if (bytes) *bytes = w->bytes;
    int e = seal_fd(w);
    if (!e) e = place(w->b, w->tmp, sha256);
    if (e) {
        hlptd_blob_abort(w);
        return hlpt_why(why, len, io_err(e), "storing blob %s: %s", sha256, strerror(e));
    }
    free(w);
    return HLPT_OK;
}

static int put(hlptd_blobs *b, const void *buf, size_t n, char sha256[HLPT_SHA256_HEX], char *tmp_name, size_t cap,
               char *why, size_t len) {
    hlptd_blob_writer *w;
    int err = hlptd_blob_begin(b, &w, why, len);
    if (err) return err;
    if ((err = hlptd_blob_write(w, buf, n, why, len))) {
        hlptd_blob_abort(w);
        return err;
    }
    if (tmp_name) return hlptd_blob_seal(w, sha256, NULL, tmp_name, cap, why, len);
    return hlptd_blob_commit(w, sha256, NULL, why, len);
}

int hlptd_blob_put(hlptd_blobs *b, const void *buf, size_t n, char sha256[HLPT_SHA256_HEX], char *why, size_t len) {
    return put(b, buf, n, sha256, NULL, 0, why, len);
}

int hlptd_blob_put_sealed(hlptd_blobs *b, const void *buf, size_t n, char sha256[HLPT_SHA256_HEX], char *tmp_name,
                          size_t cap, char *why, size_t len) {
    return put(b, buf, n, sha256, tmp_name, cap, why, len);
}

/* A temporary's name as hlptd_blob_begin makes it: "<pid>-<n>", decimal, so that no name given
 * from outside can reach out of tmp/. pid (may be NULL) gets its first part. */
static int tmp_name_valid(const char *name, long *pid) {
    if (!name || strlen(name) >= HLPTD_BLOB_TMP_MAX) return 0;
    const char *p = name;
    size_t digits = strspn(p, "0123456789");
    if (!digits || p[digits] != '-') return 0;
    if (pid) *pid = strtol(p, NULL, 10);
    p += digits + 1;
    digits = strspn(p, "0123456789");
    return digits && !p[digits];
}

int hlptd_blob_adopt(hlptd_blobs *b, const char *tmp_name, const char *sha256, char *why, size_t len) {
    if (!tmp_name_valid(tmp_name, NULL))
        return hlpt_why(why, len, HLPT_ERR_INVAL, "'%s' is not a temporary blob's name",
                        tmp_name ? tmp_name : "(null)");
    if (!sha256 || !hlpt_sha256_hex_valid(sha256)) {
        hlptd_blob_discard(b, tmp_name);
        return hlpt_why(why, len, HLPT_ERR_INVAL, "'%s' is not a blob name", sha256 ? sha256 : "(null)");
    }
    char from[4200];
    snprintf(from, sizeof from, "%s/tmp/%s", b->dir, tmp_name);
    int e = place(b, from, sha256);
    if (e) {
        unlink(from);
        return hlpt_why(why, len, e == ENOENT ? HLPT_ERR_NOENT : io_err(e), "storing blob %s from %s: %s", sha256,
                        tmp_name, strerror(e));
    }
    return HLPT_OK;
}

void hlptd_blob_discard(hlptd_blobs *b, const char *tmp_name) {
    if (!tmp_name_valid(tmp_name, NULL)) return;
    char path[4200];
    snprintf(path, sizeof path, "%s/tmp/%s", b->dir, tmp_name);
    unlink(path);
}

void hlptd_blobs_discard_pid(hlptd_blobs *b, pid_t pid) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tmp", b->dir);
    DIR *dp = opendir(path);
    if (!dp) return;
    struct dirent *e;
    long of;
    while ((e = readdir(dp)))
        if (tmp_name_valid(e->d_name, &of) && of == (long)pid) hlptd_blob_discard(b, e->d_name);
    closedir(dp);
}

int hlptd_blob_read(hlptd_blobs *b, const char *sha256, size_t max, char **buf, size_t *n, char *why, size_t len) {
    *buf = NULL;
    *n = 0;
    char path[4200], got[HLPT_SHA256_HEX];
    if (hlptd_blob_path(b, sha256, path, sizeof path))
        return hlpt_why(why, len, HLPT_ERR_INVAL, "'%s' is not a blob name", sha256);
    char sub[4500] = "";
    int err = hlpt_file_read(path, max, buf, n, sub, sizeof sub);
    if (err) return hlpt_why(why, len, err, "blob %s: %s", sha256, sub);
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
        /* Two hex digits: never "." or "..". */
        if (strlen(e->d_name) != 2 || !isxdigit((unsigned char)e->d_name[0]) || !isxdigit((unsigned char)e->d_name[1]))
            continue;
        char sub[4300];
        snprintf(sub, sizeof sub, "%s/%.2s", path, e->d_name);
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

void hlptd_blob_touch(hlptd_blobs *b, const char *sha256) {
    char path[4200];
    if (hlptd_blob_path(b, sha256, path, sizeof path) == HLPT_OK) utimensat(AT_FDCWD, path, NULL, 0);
}

typedef struct {
    char sha256[HLPT_SHA256_HEX];
    uint64_t bytes;
    int64_t used; /* mtime, s */
} cached;

typedef struct {
    hlptd_blobs *b;
    cached *v;
    size_t n, cap;
    uint64_t total;
    int oom;
} cache_list;

static int list_one(void *ctx, const char *sha256) {
    cache_list *l = ctx;
    char path[4200];
    struct stat sb;
    if (hlptd_blob_path(l->b, sha256, path, sizeof path) || stat(path, &sb) != 0) return 0;
    if (l->n == l->cap) {
        cached *v = realloc(l->v, (l->cap = l->cap ? 2 * l->cap : 256) * sizeof *v);
        if (!v) {
            l->oom = 1;
            return 1;
        }
        l->v = v;
    }
    cached *c = &l->v[l->n++];
    snprintf(c->sha256, sizeof c->sha256, "%s", sha256);
    c->bytes = (uint64_t)sb.st_size;
    c->used = (int64_t)sb.st_mtime;
    l->total += c->bytes;
    return 0;
}

static int by_use(const void *a, const void *b) {
    const cached *x = a, *y = b;
    return x->used < y->used ? -1 : x->used > y->used;
}

int hlptd_blobs_trim(hlptd_blobs *b, uint64_t max_bytes, int64_t min_age_s, size_t *removed, uint64_t *freed, char *why,
                     size_t len) {
    cache_list l = {.b = b};
    size_t gone = 0;
    uint64_t bytes = 0;
    int rc = hlptd_blobs_each(b, list_one, &l, why, len);
    if (l.oom) rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    if (rc >= 0 && l.total > max_bytes) {
        qsort(l.v, l.n, sizeof *l.v, by_use);
        int64_t spare_after = (int64_t)time(NULL) - min_age_s;
        for (size_t i = 0; i < l.n && l.total - bytes > max_bytes; i++) {
            char path[4200];
            struct stat sb;
            /* Looked at again just before it goes: a blob used since the listing stays. */
            if (l.v[i].used >= spare_after || hlptd_blob_path(b, l.v[i].sha256, path, sizeof path) ||
                stat(path, &sb) != 0 || (int64_t)sb.st_mtime >= spare_after)
                continue;
            if (unlink(path) == 0) {
                gone++;
                bytes += (uint64_t)sb.st_size;
            }
        }
    }
    free(l.v);
    if (removed) *removed = gone;
    if (freed) *freed = bytes;
    return rc < 0 ? rc : HLPT_OK;
}
