/* Whole-file reads and atomic writes. */
#include "hlpt/fileio.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check_main.h"
#include "hlpt/err.h"

START_TEST(test_round_trip_and_limits) {
    char dir[] = "/tmp/hlpt-fileio-XXXXXX", path[256], why[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/f", dir);
    ck_assert_int_eq(hlpt_file_write(path, "hello\0world", 11, 1, why, sizeof why), HLPT_OK);
    char *buf;
    size_t n;
    ck_assert_int_eq(hlpt_file_read(path, 100, &buf, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 11);
    ck_assert_int_eq(memcmp(buf, "hello\0world", 11), 0);
    ck_assert_int_eq(buf[11], 0);
    free(buf);
    /* Overwrite is atomic: no temporary file is left beside it. */
    ck_assert_int_eq(hlpt_file_write(path, "x", 1, 0, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_file_read(path, 100, &buf, &n, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(n, 1);
    free(buf);
    ck_assert_int_eq(hlpt_file_write(path, "0123456789", 10, 0, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_file_read(path, 5, &buf, &n, why, sizeof why), HLPT_ERR_RANGE);
    ck_assert_ptr_null(buf);
    ck_assert_ptr_nonnull(strstr(why, path));
    unlink(path);
    ck_assert_int_eq(hlpt_file_read(path, 5, &buf, &n, why, sizeof why), HLPT_ERR_NOENT);
    snprintf(path, sizeof path, "%s/missing/f", dir);
    ck_assert_int_eq(hlpt_file_write(path, "x", 1, 0, why, sizeof why), HLPT_ERR_IO);
    ck_assert_int_eq(rmdir(dir), 0); /* empty: nothing left behind */
}
END_TEST

START_TEST(test_pipe) {
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(write(fds[1], "{\"a\":1}", 7), 7);
    close(fds[1]);
    char *buf, why[128];
    size_t n;
    ck_assert_int_eq(hlpt_fd_read(fds[0], 100, &buf, &n, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(buf, "{\"a\":1}");
    free(buf);
    close(fds[0]);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("fileio");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_round_trip_and_limits);
    tcase_add_test(tc, test_pipe);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
