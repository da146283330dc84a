/* The status map: every status has a distinct name and message, and hlpt_why formats detail. */
#include "hlpt/err.h"

#include <string.h>

#include "../check_main.h"

START_TEST(test_names_distinct) {
    for (int a = 0; a < HLPT_ERR_COUNT__; a++)
        for (int b = a + 1; b < HLPT_ERR_COUNT__; b++)
            ck_assert_str_ne(hlpt_err_name(-a), hlpt_err_name(-b));
    ck_assert_str_eq(hlpt_err_name(HLPT_OK), "OK");
    ck_assert_str_eq(hlpt_err_name(HLPT_ERR_NOMEM), "NOMEM");
    ck_assert_str_eq(hlpt_strerror(-1000), "unknown error");
}
END_TEST

START_TEST(test_why) {
    char why[32];
    ck_assert_int_eq(hlpt_why(why, sizeof why, HLPT_ERR_FORMAT, "tensor %s", "x"), HLPT_ERR_FORMAT);
    ck_assert_str_eq(why, "tensor x");
    ck_assert_int_eq(hlpt_why(NULL, 0, HLPT_ERR_IO, "ignored"), HLPT_ERR_IO);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("err");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_names_distinct);
    tcase_add_test(tc, test_why);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
