/*
 * The blob store (server/blobs.h): content addressing, piecewise writes, dedup, damage detection,
 * no temporaries left behind, names that cannot leave the folder, the start-up clean, and sealed
 * temporaries: adopted into place, discarded, and discarded by their writer's pid.
 */
#include "blobs.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../check_main.h"
#include "hlpt/err.h"

static char dir[64];
static char why[512];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/hlpt-blobs-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static int count_files(const char *path) {
    DIR *dp = opendir(path);
    if (!dp) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (e->d_name[0] != '.') n++;
    closedir(dp);
    return n;
}

static const char abc_hex[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

START_TEST(put_read_named_by_hash) {
    hlptd_blobs *b;
    ck_assert_int_eq(hlptd_blobs_open(dir, 1, &b, why, sizeof why), HLPT_OK);
    char sha[HLPT_SHA256_HEX], path[4200];
    ck_assert_int_eq(hlptd_blob_put(b, "abc", 3, sha, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(sha, abc_hex);
    ck_assert_int_eq(hlptd_blob_path(b, sha, path, sizeof path), HLPT_OK);
    char want[4200];
    snprintf(want, sizeof want, "%s/blobs/sha256/ba/%s", dir, abc_hex);
    ck_assert_str_eq(path, want);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    char *buf;
    size_t n;
    ck_assert_int_eq(hlptd_blob_read(b, sha, 100, &buf, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(buf, "abc");
    free(buf);
    uint64_t size;
    ck_assert_int_eq(hlptd_blob_size(b, sha, &size, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(size, 3);
    /* The same bytes again: the same one file. */
    char sha2[HLPT_SHA256_HEX];
    ck_assert_int_eq(hlptd_blob_put(b, "abc", 3, sha2, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(sha2, sha);
    snprintf(want, sizeof want, "%s/blobs/sha256/ba", dir);
    ck_assert_int_eq(count_files(want), 1);
    /* Nothing is left in tmp/. */
    snprintf(want, sizeof want, "%s/blobs/tmp", dir);
    ck_assert_int_eq(count_files(want), 0);
    ck_assert_int_eq(hlptd_blob_read(b, sha, 2, &buf, &n, why, sizeof why), HLPT_ERR_RANGE);
    ck_assert_ptr_null(buf);
    ck_assert_int_eq(hlptd_blob_remove(b, sha, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_blob_read(b, sha, 100, &buf, &n, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_int_eq(hlptd_blob_remove(b, sha, why, sizeof why), HLPT_OK);
    hlptd_blobs_close(b);
}
END_TEST

START_TEST(piecewise_equals_whole) {
    hlptd_blobs *b;
    ck_assert_int_eq(hlptd_blobs_open(dir, 1, &b, why, sizeof why), HLPT_OK);
    size_t n = 300000;
    unsigned char *data = malloc(n);
    for (size_t i = 0; i < n; i++) data[i] = (unsigned char)(i * 2654435761u >> 13);
    char whole[HLPT_SHA256_HEX], parts[HLPT_SHA256_HEX];
    hlpt_sha256_hex(data, n, whole);
    hlptd_blob_writer *w;
    ck_assert_int_eq(hlptd_blob_begin(b, &w, why, sizeof why), HLPT_OK);
    for (size_t off = 0, k = 1; off < n; off += k, k = k * 7 % 9000 + 1)
        ck_assert_int_eq(hlptd_blob_write(w, data + off, off + k <= n ? k : n - off, why, sizeof why), HLPT_OK);
    uint64_t bytes;
    ck_assert_int_eq(hlptd_blob_commit(w, parts, &bytes, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(parts, whole);
    ck_assert_uint_eq(bytes, n);
    char *buf;
    size_t got;
    ck_assert_int_eq(hlptd_blob_read(b, parts, n, &buf, &got, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(got, n);
    ck_assert_int_eq(memcmp(buf, data, n), 0);
    free(buf);
    free(data);
    hlptd_blobs_close(b);
}
END_TEST

START_TEST(damage_detected) {
    hlptd_blobs *b;
    ck_assert_int_eq(hlptd_blobs_open(dir, 1, &b, why, sizeof why), HLPT_OK);
    char sha[HLPT_SHA256_HEX], path[4200];
    ck_assert_int_eq(hlptd_blob_put(b, "abc", 3, sha, why, sizeof why), HLPT_OK);
    hlptd_blob_path(b, sha, path, sizeof path);
    FILE *f = fopen(path, "r+");
    ck_assert_ptr_nonnull(f);
    fputc('x', f);
    fclose(f);
    char *buf;
    size_t n;
    ck_assert_int_eq(hlptd_blob_read(b, sha, 100, &buf, &n, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(why, "damaged"));
    ck_assert_ptr_null(buf);
    hlptd_blobs_close(b);
}
END_TEST

START_TEST(names_stay_inside) {
    hlptd_blobs *b;
    ck_assert_int_eq(hlptd_blobs_open(dir, 1, &b, why, sizeof why), HLPT_OK);
    char path[4200], *buf;
    size_t n;
    ck_assert_int_eq(hlptd_blob_path(b, "../../etc/passwd", path, sizeof path), HLPT_ERR_INVAL);
    ck_assert_int_eq(hlptd_blob_read(b, "../../etc/passwd", 100, &buf, &n, why, sizeof why), HLPT_ERR_INVAL);
    ck_assert_int_eq(hlptd_blob_remove(b, "", why, sizeof why), HLPT_ERR_INVAL);
    ck_assert_int_eq(hlptd_blob_path(b, abc_hex, path, 10), HLPT_ERR_RANGE);
    hlptd_blobs_close(b);
}
END_TEST

/* An aborted writer leaves nothing; a writer that died leaves a temporary that the next clean
 * open removes, and an open without clean (a worker's) keeps. */
START_TEST(temporaries) {
    hlptd_blobs *b;
    ck_assert_int_eq(hlptd_blobs_open(dir, 1, &b, why, sizeof why), HLPT_OK);
    char tmp[200];
    snprintf(tmp, sizeof tmp, "%s/blobs/tmp", dir);
    hlptd_blob_writer *w;
    ck_assert_int_eq(hlptd_blob_begin(b, &w, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_blob_write(w, "partial", 7, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(count_files(tmp), 1);
    hlptd_blob_abort(w);
    ck_assert_int_eq(count_files(tmp), 0);
    char stale[260];
    snprintf(stale, sizeof stale, "%s/99999-0", tmp);
    FILE *f = fopen(stale, "w");
    fputs("half", f);
    fclose(f);
    hlptd_blobs_close(b);
    ck_assert_int_eq(hlptd_blobs_open(dir, 0, &b, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(count_files(tmp), 1);
    hlptd_blobs_close(b);
    ck_assert_int_eq(hlptd_blobs_open(dir, 1, &b, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(count_files(tmp), 0);
    hlptd_blobs_close(b);
}
END_TEST

static int exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* A sealed blob stays under tmp/ until it is adopted: then it is in place, under its name, and the
 * temporary is gone. Adopting over the same bytes in place is fine; a name that is not a
 * temporary's is refused and touches nothing. */
START_TEST(seal_then_adopt) {
    hlptd_blobs *b;
    ck_assert_int_eq(hlptd_blobs_open(dir, 1, &b, why, sizeof why), HLPT_OK);
    char tmpdir[200], path[4200], tmp[HLPTD_BLOB_TMP_MAX], sha[HLPT_SHA256_HEX], sub[256];
    snprintf(tmpdir, sizeof tmpdir, "%s/blobs/tmp", dir);
    hlptd_blob_writer *w;
    ck_assert_int_eq(hlptd_blob_begin(b, &w, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_blob_write(w, "ab", 2, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_blob_write(w, "c", 1, why, sizeof why), HLPT_OK);
    uint64_t bytes = 0;
    ck_assert_int_eq(hlptd_blob_seal(w, sha, &bytes, tmp, sizeof tmp, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(sha, abc_hex);
    ck_assert_uint_eq(bytes, 3);
    char want[64];
    snprintf(want, sizeof want, "%ld-", (long)getpid());
    ck_assert_int_eq(strncmp(tmp, want, strlen(want)), 0);
    /* Sealed: not in place, not even its folder; the temporary is whole. */
    hlptd_blob_path(b, sha, path, sizeof path);
    ck_assert(!exists(path));
    snprintf(sub, sizeof sub, "%s/blobs/sha256/ba", dir);
    ck_assert(!exists(sub));
    ck_assert_int_eq(count_files(tmpdir), 1);
    ck_assert_int_eq(hlptd_blob_adopt(b, tmp, sha, why, sizeof why), HLPT_OK);
    ck_assert(exists(path));
    ck_assert_int_eq(count_files(tmpdir), 0);
    char *buf;
    size_t n;
    ck_assert_int_eq(hlptd_blob_read(b, sha, 100, &buf, &n, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(buf, "abc");
    free(buf);
    /* Adopted once, the temporary is no more. */
    ck_assert_int_eq(hlptd_blob_adopt(b, tmp, sha, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert(exists(path));
    /* The same bytes sealed again go over the blob in place. */
    ck_assert_int_eq(hlptd_blob_put_sealed(b, "abc", 3, sha, tmp, sizeof tmp, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_blob_adopt(b, tmp, sha, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(count_files(sub), 1);
    ck_assert_int_eq(count_files(tmpdir), 0);
    /* Names from outside cannot reach out of tmp/. */
    char outside[300];
    snprintf(outside, sizeof outside, "%s/victim", dir);
    FILE *f = fopen(outside, "w");
    fputs("x", f);
    fclose(f);
    const char *bad[] = {"../victim", "..", ".", "", "1-2/../../victim", "1-", "-1", "x-1", "1-1x", "12"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(hlptd_blob_adopt(b, bad[i], sha, why, sizeof why), HLPT_ERR_INVAL);
        hlptd_blob_discard(b, bad[i]);
    }
    ck_assert_int_eq(hlptd_blob_adopt(b, NULL, sha, why, sizeof why), HLPT_ERR_INVAL);
    hlptd_blob_discard(b, NULL);
    ck_assert(exists(outside));
    ck_assert(exists(path));
    /* A bad blob name: refused, and the temporary goes all the same. */
    ck_assert_int_eq(hlptd_blob_put_sealed(b, "abc", 3, sha, tmp, sizeof tmp, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_blob_adopt(b, tmp, "../../victim", why, sizeof why), HLPT_ERR_INVAL);
    ck_assert_int_eq(count_files(tmpdir), 0);
    /* Too small a buffer for the temporary's name: nothing is left. */
    ck_assert_int_eq(hlptd_blob_put_sealed(b, "abc", 3, sha, tmp, 2, why, sizeof why), HLPT_ERR_RANGE);
    ck_assert_int_eq(count_files(tmpdir), 0);
    hlptd_blobs_close(b);
}
END_TEST

/* A temporary that is never adopted is discarded by its name, or with every other of its writer's
 * process; temporaries of other processes stay. */
START_TEST(discard_and_discard_pid) {
    hlptd_blobs *b;
    ck_assert_int_eq(hlptd_blobs_open(dir, 1, &b, why, sizeof why), HLPT_OK);
    char tmpdir[200], tmp[HLPTD_BLOB_TMP_MAX], sha[HLPT_SHA256_HEX];
    snprintf(tmpdir, sizeof tmpdir, "%s/blobs/tmp", dir);
    ck_assert_int_eq(hlptd_blob_put_sealed(b, "dropped", 7, sha, tmp, sizeof tmp, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(count_files(tmpdir), 1);
    hlptd_blob_discard(b, tmp);
    ck_assert_int_eq(count_files(tmpdir), 0);
    hlptd_blob_discard(b, tmp); /* gone already: nothing happens */
    /* A name an earlier process of the same pid left is passed over. */
    long pid, seq;
    ck_assert_int_eq(sscanf(tmp, "%ld-%ld", &pid, &seq), 2);
    char next[300];
    snprintf(next, sizeof next, "%s/%ld-%ld", tmpdir, pid, seq + 1);
    FILE *nf = fopen(next, "w");
    fclose(nf);
    ck_assert_int_eq(hlptd_blob_put_sealed(b, "after", 5, sha, tmp, sizeof tmp, why, sizeof why), HLPT_OK);
    snprintf(next, sizeof next, "%ld-%ld", pid, seq + 2);
    ck_assert_str_eq(tmp, next);
    ck_assert_int_eq(count_files(tmpdir), 2);
    hlptd_blobs_discard_pid(b, getpid());
    ck_assert_int_eq(count_files(tmpdir), 0);
    /* A worker of pid 4242 left two (one sealed, one cut off mid-write), pid 424 one, and the
     * folder has a stray file. */
    const char *planted[] = {"4242-0", "4242-17", "424-0", "42420-3", "notes.txt"};
    for (size_t i = 0; i < 5; i++) {
        char p[300];
        snprintf(p, sizeof p, "%s/%s", tmpdir, planted[i]);
        FILE *f = fopen(p, "w");
        fputs("half", f);
        fclose(f);
    }
    /* This process writes one too, which stays. */
    ck_assert_int_eq(hlptd_blob_put_sealed(b, "mine", 4, sha, tmp, sizeof tmp, why, sizeof why), HLPT_OK);
    hlptd_blobs_discard_pid(b, 4242);
    ck_assert_int_eq(count_files(tmpdir), 4);
    char p[300];
    snprintf(p, sizeof p, "%s/4242-0", tmpdir);
    ck_assert(!exists(p));
    snprintf(p, sizeof p, "%s/4242-17", tmpdir);
    ck_assert(!exists(p));
    snprintf(p, sizeof p, "%s/424-0", tmpdir);
    ck_assert(exists(p));
    snprintf(p, sizeof p, "%s/42420-3", tmpdir);
    ck_assert(exists(p));
    snprintf(p, sizeof p, "%s/%s", tmpdir, tmp);
    ck_assert(exists(p));
    hlptd_blobs_discard_pid(b, getpid());
    ck_assert(!exists(p));
    ck_assert_int_eq(count_files(tmpdir), 3);
    hlptd_blobs_close(b);
}
END_TEST

static int collect(void *ctx, const char *sha256) {
    char (*seen)[HLPT_SHA256_HEX] = ctx;
    for (int i = 0; i < 4; i++)
        if (!seen[i][0]) {
            snprintf(seen[i], HLPT_SHA256_HEX, "%s", sha256);
            return 0;
        }
    return 1;
}

/* A blob opened as a file descriptor reads back its bytes; every blob is listed once, and what is
 * not a blob name in the folder is not. */
START_TEST(open_and_each) {
    hlptd_blobs *b;
    ck_assert_int_eq(hlptd_blobs_open(dir, 1, &b, why, sizeof why), HLPT_OK);
    char a[HLPT_SHA256_HEX], c[HLPT_SHA256_HEX];
    ck_assert_int_eq(hlptd_blob_put(b, "alpha", 5, a, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlptd_blob_put(b, "gamma!", 6, c, why, sizeof why), HLPT_OK);
    int fd;
    uint64_t n;
    ck_assert_int_eq(hlptd_blob_open(b, a, &fd, &n, why, sizeof why), HLPT_OK);
    char buf[16] = "";
    ck_assert_uint_eq(n, 5);
    ck_assert_int_eq(read(fd, buf, sizeof buf), 5);
    ck_assert_str_eq(buf, "alpha");
    close(fd);
    char missing[HLPT_SHA256_HEX];
    hlpt_sha256_hex("nothing", 7, missing);
    ck_assert_int_eq(hlptd_blob_open(b, missing, &fd, &n, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_int_eq(fd, -1);
    ck_assert_int_eq(hlptd_blob_open(b, "../../etc/passwd", &fd, &n, why, sizeof why), HLPT_ERR_INVAL);
    /* A stray file beside the blobs is not one. */
    char stray[256];
    snprintf(stray, sizeof stray, "%s/blobs/sha256/%.2s/notes.txt", dir, a);
    FILE *f = fopen(stray, "w");
    fputs("x", f);
    fclose(f);
    char seen[4][HLPT_SHA256_HEX] = {{0}};
    ck_assert_int_eq(hlptd_blobs_each(b, collect, seen, why, sizeof why), 0);
    int got_a = 0, got_c = 0;
    for (int i = 0; i < 4; i++) got_a += !strcmp(seen[i], a), got_c += !strcmp(seen[i], c);
    ck_assert_int_eq(got_a, 1);
    ck_assert_int_eq(got_c, 1);
    ck_assert_str_eq(seen[2], "");
    hlptd_blobs_close(b);
}
END_TEST

/* Sets a blob's last use (its modification time) to `ago` seconds before now. */
static void used_ago(hlptd_blobs *b, const char *sha, int ago) {
    char path[4200];
    ck_assert_int_eq(hlptd_blob_path(b, sha, path, sizeof path), HLPT_OK);
    struct timespec t[2] = {{.tv_sec = time(NULL) - ago}, {.tv_sec = time(NULL) - ago}};
    ck_assert_int_eq(utimensat(AT_FDCWD, path, t, 0), 0);
}

static int there(hlptd_blobs *b, const char *sha) {
    uint64_t n;
    return hlptd_blob_size(b, sha, &n, NULL, 0) == HLPT_OK;
}

/* A cache folder trimmed to a size: the least recently used go first, a touch counts as a use, and
 * nothing used lately goes, even when the folder stays above the size. */
START_TEST(trim_least_recently_used) {
    hlptd_blobs *b;
    ck_assert_int_eq(hlptd_blobs_open(dir, 1, &b, why, sizeof why), HLPT_OK);
    char x[4][HLPT_SHA256_HEX];
    char buf[1000];
    for (int i = 0; i < 4; i++) {
        memset(buf, 'a' + i, sizeof buf);
        ck_assert_int_eq(hlptd_blob_put(b, buf, sizeof buf, x[i], why, sizeof why), HLPT_OK);
    }
    used_ago(b, x[0], 4000);
    used_ago(b, x[1], 5000);
    used_ago(b, x[2], 3000);
    /* x[3] was just written. Within its size: nothing goes. */
    size_t removed;
    uint64_t freed;
    ck_assert_int_eq(hlptd_blobs_trim(b, 4000, 600, &removed, &freed, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(removed, 0);
    /* Two must go: the two least recently used, x[1] then x[0]. */
    ck_assert_int_eq(hlptd_blobs_trim(b, 2000, 600, &removed, &freed, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(removed, 2);
    ck_assert_uint_eq(freed, 2000);
    ck_assert(!there(b, x[1]) && !there(b, x[0]));
    ck_assert(there(b, x[2]) && there(b, x[3]));
    /* A touch is a use: x[2] used now, and x[3] too, and nothing goes though the folder holds
     * twice the size asked. */
    hlptd_blob_touch(b, x[2]);
    ck_assert_int_eq(hlptd_blobs_trim(b, 1000, 600, &removed, &freed, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(removed, 0);
    ck_assert(there(b, x[2]) && there(b, x[3]));
    /* Once old enough, the older of the two goes. */
    used_ago(b, x[2], 700);
    used_ago(b, x[3], 650);
    ck_assert_int_eq(hlptd_blobs_trim(b, 1000, 600, &removed, &freed, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(removed, 1);
    ck_assert(!there(b, x[2]) && there(b, x[3]));
    hlptd_blobs_close(b);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("blobs");
    TCase *tc = tcase_create("files");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, put_read_named_by_hash);
    tcase_add_test(tc, piecewise_equals_whole);
    tcase_add_test(tc, damage_detected);
    tcase_add_test(tc, names_stay_inside);
    tcase_add_test(tc, temporaries);
    tcase_add_test(tc, open_and_each);
    tcase_add_test(tc, seal_then_adopt);
    tcase_add_test(tc, discard_and_discard_pid);
    tcase_add_test(tc, trim_least_recently_used);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
