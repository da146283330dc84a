/* Scoring rules of the tasks. */
#include "hlpt/score.h"

#include "../check_main.h"

START_TEST(test_last_number) {
    double v;
    ck_assert(hlpt_score_last_number("She has 3 apples and buys 12, so 15.", &v) && v == 15);
    ck_assert(hlpt_score_last_number("total 1,250 dollars", &v) && v == 1250);
    ck_assert(hlpt_score_last_number("it drops to -4.5 degrees", &v) && v == -4.5);
    ck_assert(hlpt_score_last_number("12-3=9", &v) && v == 9);
    ck_assert(!hlpt_score_last_number("no digits here", &v));
}
END_TEST

START_TEST(test_math_rule) {
    ck_assert(hlpt_score_math("3 * 4 = 12. The answer is 12.", "The answer is 12."));
    ck_assert(hlpt_score_math("The answer is 12.0004", "The answer is 12."));
    ck_assert(!hlpt_score_math("The answer is 12.01", "The answer is 12."));
    ck_assert(!hlpt_score_math("The answer is 13.", "The answer is 12."));
    ck_assert(!hlpt_score_math("I do not know.", "The answer is 12."));
}
END_TEST

START_TEST(test_exact_rule) {
    ck_assert(hlpt_score_exact("  Dog.\nmore text", "dog"));
    ck_assert(hlpt_score_exact("hot dog", "hot_dog"));
    ck_assert(!hlpt_score_exact("dogs", "dog"));
    ck_assert(!hlpt_score_exact("", ""));
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("score");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_last_number);
    tcase_add_test(tc, test_math_rule);
    tcase_add_test(tc, test_exact_rule);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
