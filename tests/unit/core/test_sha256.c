/*
 * SHA-256 (include/hlpt/sha256.h) against the FIPS 180-4 example messages and the NIST long-message
 * vector, fed whole and in every split, so the partial-block path is exercised at each offset.
 */
#include "hlpt/sha256.h"

#include <stdlib.h>
#include <string.h>

#include "../check_main.h"

static const struct {
    const char *msg;
    const char *hex;
} vectors[] = {
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrst"
     "nopqrstu",
     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
};

START_TEST(known_vectors) {
    char out[HLPT_SHA256_HEX];
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        hlpt_sha256_hex(vectors[i].msg, strlen(vectors[i].msg), out);
        ck_assert_str_eq(out, vectors[i].hex);
        ck_assert(hlpt_sha256_hex_valid(out));
    }
}
END_TEST

START_TEST(any_split_same_digest) {
    const char *m = vectors[3].msg;
    size_t n = strlen(m);
    for (size_t cut = 0; cut <= n; cut++) {
        hlpt_sha256 s;
        char out[HLPT_SHA256_HEX];
        hlpt_sha256_init(&s);
        hlpt_sha256_update(&s, m, cut);
        hlpt_sha256_update(&s, m + cut, n - cut);
        hlpt_sha256_final_hex(&s, out);
        ck_assert_str_eq(out, vectors[3].hex);
    }
}
END_TEST

/* One million 'a's (FIPS 180-2 appendix B.3), fed in uneven pieces. */
START_TEST(million_a) {
    size_t n = 1000000;
    char *m = malloc(n);
    ck_assert_ptr_nonnull(m);
    memset(m, 'a', n);
    hlpt_sha256 s;
    char out[HLPT_SHA256_HEX];
    hlpt_sha256_init(&s);
    for (size_t off = 0, step = 1; off < n; off += step, step = step * 3 % 1000 + 1)
        hlpt_sha256_update(&s, m + off, off + step <= n ? step : n - off);
    hlpt_sha256_final_hex(&s, out);
    ck_assert_str_eq(out, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(m);
}
END_TEST

START_TEST(hex_validity) {
    ck_assert(!hlpt_sha256_hex_valid(NULL));
    ck_assert(!hlpt_sha256_hex_valid(""));
    ck_assert(!hlpt_sha256_hex_valid("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
    ck_assert(!hlpt_sha256_hex_valid("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85"));
    ck_assert(!hlpt_sha256_hex_valid("../b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    ck_assert(hlpt_sha256_hex_valid("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("sha256");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, known_vectors);
    tcase_add_test(tc, any_split_same_digest);
    tcase_add_test(tc, million_a);
    tcase_add_test(tc, hex_validity);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
