/* hlptd's configuration: flag > environment > file > default, and errors that name the option. */
#include "settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check_main.h"
#include "hlpt/err.h"
#include "log.h"

static char why[512];
static char conf[64];

static void write_conf(const char *text) {
    snprintf(conf, sizeof conf, "/tmp/hlptd-conf-XXXXXX");
    int fd = mkstemp(conf);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

#define ARGV(...) ((char *const[]){"hlptd", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"hlptd", __VA_ARGS__}) / sizeof(char *)))

START_TEST(test_defaults) {
    hlptd_settings c;
    char *const *argv = ARGV("--model", "/m", "--data-dir", "/d");
    ck_assert_int_eq(hlptd_settings_load(&c, 5, argv, NULL, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(c.model, "/m");
    ck_assert_str_eq(c.data_dir, "/d");
    ck_assert_str_eq(c.listen_host, "127.0.0.1");
    ck_assert_int_eq(c.listen_port, 8080);
    ck_assert_int_eq(c.workers, 1);
    ck_assert_int_eq(c.threads, 0);
    ck_assert_int_eq(c.dtype, HLPT_BASE_AUTO);
    ck_assert_ptr_null(c.api_key_file);
    ck_assert_ptr_null(c.store); /* SQLite in the data directory */
    char host[256], node[300];
    ck_assert_int_eq(gethostname(host, sizeof host), 0);
    snprintf(node, sizeof node, "%s:/d", host);
    ck_assert_str_eq(c.node_id, node); /* the host name and the data directory */
    ck_assert_uint_eq(c.max_body_bytes, (size_t)1 << 30);
    ck_assert_uint_eq(c.max_upload_bytes, (size_t)64 << 30);
    ck_assert_int_eq(c.log_level, HLPTD_LOG_INFO);
    ck_assert_int_eq(c.help, 0);
    hlptd_settings_free(&c);
}
END_TEST

START_TEST(test_precedence) {
    write_conf("# settings\nworkers = 3\nthreads=5\n  listen = 127.0.0.1:9000 \nlog_level = warn\nmax-body-bytes = 64K\n"
               "model = /from-file\ndata-dir = /file-data\n");
    char cflag[80];
    snprintf(cflag, sizeof cflag, "--config=%s", conf);
    char *const env[] = {"HLPTD_WORKERS=7", "HLPTD_THREADS=6", "HLPTD_LOG_LEVEL=debug", "HLPTD_MAX_UPLOAD_BYTES=3G",
                         "OTHER=1", NULL};
    char *const argv[] = {"hlptd", cflag, "--workers", "9", "--model", "/flag-model", NULL};
    hlptd_settings c;
    ck_assert_int_eq(hlptd_settings_load(&c, 6, argv, env, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c.workers, 9);                  /* flag over env and file */
    ck_assert_int_eq(c.threads, 6);                  /* env over file */
    ck_assert_int_eq(c.log_level, HLPTD_LOG_DEBUG);   /* env over file */
    ck_assert_int_eq(c.listen_port, 9000);           /* file over default */
    ck_assert_uint_eq(c.max_body_bytes, 64 * 1024);  /* file, with a suffix */
    ck_assert_uint_eq(c.max_upload_bytes, (size_t)3 << 30); /* env */
    ck_assert_str_eq(c.model, "/flag-model");
    ck_assert_str_eq(c.data_dir, "/file-data");
    ck_assert_str_eq(c.config, conf);
    hlptd_settings_free(&c);

    /* The config file can be named by the environment too. */
    char envconf[96];
    snprintf(envconf, sizeof envconf, "HLPTD_CONFIG=%s", conf);
    char *const env2[] = {envconf, NULL};
    ck_assert_int_eq(hlptd_settings_load(&c, 1, (char *const[]){"hlptd", NULL}, env2, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c.workers, 3);
    ck_assert_str_eq(c.model, "/from-file");
    hlptd_settings_free(&c);
    unlink(conf);
}
END_TEST

/* Each bad input fails and the message names the option and the source. */
START_TEST(test_errors_name_the_option) {
    static const struct {
        const char *arg, *env, *file;
        const char *expect[2];
    } cases[] = {
        {"--workers=abc", NULL, NULL, {"--workers", "`abc` is not an integer (from --workers)"}},
        {"--workers=0", NULL, NULL, {"--workers", "outside [1, 256]"}},
        {NULL, "HLPTD_WORKERS=x", NULL, {"--workers", "(from HLPTD_WORKERS)"}},
        {NULL, NULL, "workers = 2\nthreads = many\n", {"--threads", ":2)"}},
        {"--listen=nowhere", NULL, NULL, {"--listen", "HOST:PORT"}},
        {"--listen=127.0.0.1:70000", NULL, NULL, {"--listen", "HOST:PORT"}},
        {"--max-body-bytes=12Q", NULL, NULL, {"--max-body-bytes", "12Q"}},
        {"--max-upload-bytes=0", NULL, NULL, {"--max-upload-bytes", "not a positive size"}},
        {"--log-level=loud", NULL, NULL, {"--log-level", "debug, info, warn, error"}},
        {"--dtype=bogus", NULL, NULL, {"--dtype", "`bogus` is not one of auto, bf16, f32 (from --dtype)"}},
        {NULL, "HLPTD_DTYPE=fp16", NULL, {"--dtype", "(from HLPTD_DTYPE)"}},
        {NULL, NULL, "dtype = \n", {"--dtype", ":1)"}},
        {"--bogus=1", NULL, NULL, {"unknown option --bogus", ""}},
        {NULL, NULL, "bogus = 1\n", {"unknown option `bogus`", "line 1"}},
        {NULL, NULL, "no equals sign\n", {"line 1", "key = value"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cflag[80] = "--model=/m";
        if (cases[i].file) {
            write_conf(cases[i].file);
            snprintf(cflag, sizeof cflag, "--config=%s", conf);
        }
        char *const env[] = {(char *)cases[i].env, NULL};
        char *const argv[] = {"hlptd", "--model=/m", "--data-dir=/d", cflag,
                              (char *)(cases[i].arg ? cases[i].arg : "--http-threads=2"), NULL};
        hlptd_settings c;
        why[0] = 0;
        ck_assert_int_eq(hlptd_settings_load(&c, 5, argv, env, why, sizeof why), HLPT_ERR_INVAL);
        ck_assert_ptr_null(c.model); /* nothing left allocated */
        for (int k = 0; k < 2; k++)
            ck_assert_msg(strstr(why, cases[i].expect[k]), "case %zu: `%s` lacks `%s`", i, why, cases[i].expect[k]);
        if (cases[i].file) unlink(conf);
    }
}
END_TEST

START_TEST(test_required_and_help) {
    hlptd_settings c;
    ck_assert_int_eq(hlptd_settings_load(&c, ARGC("--data-dir", "/d"), ARGV("--data-dir", "/d"), NULL, why, sizeof why),
                     HLPT_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(why, "--model is required"));
    ck_assert_int_eq(hlptd_settings_load(&c, ARGC("--model", "/m"), ARGV("--model", "/m"), NULL, why, sizeof why),
                     HLPT_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(why, "--data-dir is required"));
    ck_assert_int_eq(hlptd_settings_load(&c, ARGC("--model"), ARGV("--model"), NULL, why, sizeof why), HLPT_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(why, "--model needs a value"));
    ck_assert_int_eq(hlptd_settings_load(&c, ARGC("--help"), ARGV("--help"), NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c.help, 1);
    hlptd_settings_free(&c);
    ck_assert_int_eq(hlptd_settings_load(&c, ARGC("--config", "/nonexistent/x"), ARGV("--config", "/nonexistent/x"), NULL,
                                       why, sizeof why),
                     HLPT_ERR_IO);
    ck_assert_ptr_nonnull(strstr(why, "/nonexistent/x"));
}
END_TEST

START_TEST(test_listen_forms) {
    hlptd_settings c;
    char *const argv[] = {"hlptd", "--model=/m", "--data-dir=/d", "--listen=[::1]:0", NULL};
    ck_assert_int_eq(hlptd_settings_load(&c, 4, argv, NULL, why, sizeof why), HLPT_OK);
    ck_assert_str_eq(c.listen_host, "::1");
    ck_assert_int_eq(c.listen_port, 0);
    ck_assert_str_eq(c.listen, "[::1]:0");
    hlptd_settings_free(&c);
}
END_TEST

/* --node-id names the node as given. */
START_TEST(test_node_id) {
    hlptd_settings c;
    ck_assert_int_eq(hlptd_settings_load(&c, 7, ARGV("--model", "/m", "--data-dir", "/d", "--node-id", "n1"), NULL, why,
                                         sizeof why),
                     HLPT_OK);
    ck_assert_str_eq(c.node_id, "n1");
    hlptd_settings_free(&c);
}
END_TEST

/* --dtype in its three spellings, with the usual precedence; the names hlpt_base_dtype_parse takes. */
START_TEST(test_dtype) {
    hlptd_settings c;
    char *const *argv = ARGV("--model", "/m", "--data-dir", "/d", "--dtype", "bf16");
    ck_assert_int_eq(hlptd_settings_load(&c, 7, argv, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c.dtype, HLPT_BASE_BF16);
    hlptd_settings_free(&c);

    char *const env[] = {"HLPTD_DTYPE=F32", NULL};
    ck_assert_int_eq(hlptd_settings_load(&c, 5, ARGV("--model", "/m", "--data-dir", "/d"), env, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c.dtype, HLPT_BASE_F32);
    hlptd_settings_free(&c);

    write_conf("dtype = bfloat16\n");
    char cflag[80];
    snprintf(cflag, sizeof cflag, "--config=%s", conf);
    char *const fargv[] = {"hlptd", "--model=/m", "--data-dir=/d", cflag, NULL};
    ck_assert_int_eq(hlptd_settings_load(&c, 4, fargv, NULL, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c.dtype, HLPT_BASE_BF16); /* the file */
    hlptd_settings_free(&c);
    ck_assert_int_eq(hlptd_settings_load(&c, 4, fargv, env, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c.dtype, HLPT_BASE_F32); /* the environment over the file */
    hlptd_settings_free(&c);
    char *const fargv2[] = {"hlptd", "--model=/m", "--data-dir=/d", cflag, "--dtype=auto", NULL};
    ck_assert_int_eq(hlptd_settings_load(&c, 5, fargv2, env, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(c.dtype, HLPT_BASE_AUTO); /* the flag over both */
    hlptd_settings_free(&c);
    unlink(conf);

    /* --help lists it with its default. */
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    hlptd_settings_usage(f);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "--dtype auto|bf16|f32"));
    ck_assert_ptr_nonnull(strstr(buf, "[auto]"));
    ck_assert_ptr_nonnull(strstr(buf, "HLPTD_DTYPE"));
    free(buf);
}
END_TEST

/* --store takes a PostgreSQL URL from a flag, HLPTD_STORE or the file; anything else is refused
 * without repeating the value, which may hold a password. */
START_TEST(test_store) {
    hlptd_settings c;
    char *const env[] = {"HLPTD_STORE=postgresql://hlpt:pw@db:5432/hlpt", NULL};
    ck_assert_int_eq(hlptd_settings_load(&c, ARGC("--model", "/m", "--data-dir", "/d"),
                                         ARGV("--model", "/m", "--data-dir", "/d"), env, why, sizeof why),
                     HLPT_OK);
    ck_assert_str_eq(c.store, "postgresql://hlpt:pw@db:5432/hlpt");
    hlptd_settings_free(&c);
    ck_assert_int_eq(hlptd_settings_load(&c, ARGC("--model", "/m", "--data-dir", "/d", "--store", "postgres:///x"),
                                         ARGV("--model", "/m", "--data-dir", "/d", "--store", "postgres:///x"), env, why,
                                         sizeof why),
                     HLPT_OK);
    ck_assert_str_eq(c.store, "postgres:///x");
    hlptd_settings_free(&c);
    ck_assert_int_eq(hlptd_settings_load(&c, ARGC("--model", "/m", "--data-dir", "/d", "--store", "mysql://u:s3cret@h/d"),
                                         ARGV("--model", "/m", "--data-dir", "/d", "--store", "mysql://u:s3cret@h/d"), NULL,
                                         why, sizeof why),
                     HLPT_ERR_INVAL);
    ck_assert_msg(strstr(why, "--store") && strstr(why, "postgres://") && !strstr(why, "s3cret"), "%s", why);
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    hlptd_settings_usage(f);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "--store URL"));
    ck_assert_ptr_nonnull(strstr(buf, "HLPTD_STORE"));
    free(buf);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_precedence);
    tcase_add_test(tc, test_errors_name_the_option);
    tcase_add_test(tc, test_dtype);
    tcase_add_test(tc, test_node_id);
    tcase_add_test(tc, test_store);
    tcase_add_test(tc, test_required_and_help);
    tcase_add_test(tc, test_listen_forms);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
