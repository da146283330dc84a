/*
 * check_main.h - the shared main() of every Check suite under tests/unit/.
 *
 * A test file defines `static Suite *suite(void)` and ends with HLPT_CHECK_MAIN(). Tests find their
 * fixtures through HLPT_FIXTURES (default tests/fixtures, relative to the repository root, where
 * tests/run.sh starts them). main() calls hlpt_blas_init() first, so suites run on the same OpenBLAS
 * kernels as the programs (it may re-execute the binary once; see include/hlpt/blas.h).
 */
#ifndef HLPT_CHECK_MAIN_H
#define HLPT_CHECK_MAIN_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "hlpt/blas.h"

static inline const char *fixture_dir(void) {
    const char *d = getenv("HLPT_FIXTURES");
    return d && *d ? d : "tests/fixtures";
}

/* fixture_path(buf, "llama2-mha-f32/config.json") -> "<fixtures>/llama2-mha-f32/config.json" */
static inline const char *fixture_path(char *buf, size_t len, const char *rel) {
    snprintf(buf, len, "%s/%s", fixture_dir(), rel);
    return buf;
}

#define HLPT_CHECK_MAIN()                                                   \
    int main(int argc, char **argv) {                                       \
        (void)argc;                                                         \
        hlpt_blas_init(argv);                                               \
        setvbuf(stdout, NULL, _IOLBF, 0); /* a failing test's lines survive */ \
        SRunner *sr = srunner_create(suite());                              \
        srunner_run_all(sr, CK_NORMAL);                                     \
        int failed = srunner_ntests_failed(sr);                             \
        srunner_free(sr);                                                   \
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;                        \
    }

#endif
