/*
 * safetensors: the Python-written fixtures read correctly and re-write byte for byte; the writer
 * round-trips every dtype; each kind of bad file is refused with a message naming the tensor;
 * sharded checkpoints; F16/BF16 conversion against hand-derived bit patterns.
 */
#include "hlpt/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hlpt/err.h"

#include "../check_main.h"

static const char *const fixture_files[] = {
    "llama2-mha-f32/model.safetensors",       "llama2-mha-f32/ref.safetensors",
    "llama3-gqa-tied-bf16/model.safetensors", "llama3-gqa-tied-bf16/ref.safetensors",
    "peft-lora-qv/adapter_model.safetensors", "peft-lora-qv/ref.safetensors",
    "hlpt-causal/adapter_model.safetensors",  "hlpt-causal/ref.safetensors",
    "hlpt-sequence/adapter_model.safetensors", "hlpt-sequence/ref.safetensors",
};

static void *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = malloc((size_t)sz + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static void write_all_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* A temporary directory, removed (with its files) by rm_tmpdir. */
static void mk_tmpdir(char *dir, size_t len) {
    snprintf(dir, len, "/tmp/hlpt-st-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_tmpdir(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* An image: 8-byte length of hdr, hdr, then data_n bytes of data (value i & 0xff). */
static unsigned char *image(const char *hdr, size_t data_n, size_t *n) {
    size_t hl = strlen(hdr);
    unsigned char *b = malloc(8 + hl + data_n + 1);
    uint64_t l = hl;
    memcpy(b, &l, 8);
    memcpy(b + 8, hdr, hl);
    for (size_t i = 0; i < data_n; i++) b[8 + hl + i] = (unsigned char)i;
    *n = 8 + hl + data_n;
    return b;
}

/* Opens an image that must fail with err and a why containing want. */
static void expect_bad(const unsigned char *b, size_t n, int err, const char *want) {
    hlpt_st *st = (hlpt_st *)1;
    char why[512] = "";
    int rc = hlpt_st_open_mem(b, n, &st, why, sizeof why);
    ck_assert_msg(rc == err, "expected %s, got %s (%s)", hlpt_err_name(err), hlpt_err_name(rc), why);
    ck_assert_ptr_null(st);
    ck_assert_msg(strstr(why, want) != NULL, "why '%s' lacks '%s'", why, want);
}

static void expect_bad_hdr(const char *hdr, size_t data_n, int err, const char *want) {
    size_t n;
    unsigned char *b = image(hdr, data_n, &n);
    expect_bad(b, n, err, want);
    free(b);
}

START_TEST(test_fixture_llama2) {
    char p[512], why[256];
    hlpt_st *st;
    fixture_path(p, sizeof p, "llama2-mha-f32/model.safetensors");
    ck_assert_int_eq(hlpt_st_open(p, &st, why, sizeof why), HLPT_OK);
    /* 8 layers x 9 tensors + embed, norm, lm_head */
    ck_assert_int_eq(hlpt_st_count(st), 75);
    ck_assert_str_eq(hlpt_st_metadata(st, "format"), "pt");
    ck_assert_ptr_null(hlpt_st_metadata(st, "nope"));
    const hlpt_st_tensor *t = hlpt_st_find(st, "model.embed_tokens.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, HLPT_DTYPE_F32);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(t->shape[0], 1024);
    ck_assert_int_eq(t->shape[1], 64);
    ck_assert_int_eq(t->numel, 65536);
    ck_assert_uint_eq(t->nbytes, 262144);
    ck_assert_ptr_null(hlpt_st_find(st, "model.embed_tokens"));
    float *x = malloc(65536 * sizeof *x);
    int64_t shape[2] = {1024, 64};
    ck_assert_int_eq(hlpt_st_get_f32(st, "model.embed_tokens.weight", 2, shape, x, why, sizeof why),
                     HLPT_OK);
    /* Reference values from Python's struct module over the same bytes. */
    double sum = 0;
    for (int i = 0; i < 65536; i++) sum += x[i];
    ck_assert_float_eq(x[0], -0.008937484584748745f);
    ck_assert_float_eq(x[65535], -0.02925632894039154f);
    ck_assert_msg(fabs(sum - 2.1689595068454537) < 1e-9, "sum %.17g", sum);
    /* Every tensor is found by name, and at() and find() agree. */
    for (int i = 0; i < hlpt_st_count(st); i++) {
        const hlpt_st_tensor *a = hlpt_st_at(st, i);
        ck_assert_ptr_eq(hlpt_st_find(st, a->name), a);
    }
    ck_assert_ptr_null(hlpt_st_at(st, -1));
    ck_assert_ptr_null(hlpt_st_at(st, 75));
    free(x);
    hlpt_st_close(st);
}
END_TEST

START_TEST(test_fixture_bf16_dir) {
    char p[512], why[256];
    hlpt_st *st;
    fixture_path(p, sizeof p, "llama3-gqa-tied-bf16");
    ck_assert_int_eq(hlpt_st_open(p, &st, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_st_count(st), 74); /* tied: no lm_head.weight */
    ck_assert_ptr_null(hlpt_st_find(st, "lm_head.weight"));
    const hlpt_st_tensor *t = hlpt_st_find(st, "model.embed_tokens.weight");
    ck_assert_int_eq(t->dtype, HLPT_DTYPE_BF16);
    ck_assert_uint_eq(t->nbytes, 1200 * 96 * 2);
    float *x = malloc(1200 * 96 * sizeof *x);
    ck_assert_int_eq(hlpt_st_to_f32(t, x, why, sizeof why), HLPT_OK);
    double sum = 0;
    for (int i = 0; i < 1200 * 96; i++) sum += x[i];
    ck_assert_float_eq(x[0], -0.0089111328125f); /* 0xbc12 */
    ck_assert_float_eq(x[1200 * 96 - 1], -0.2353515625f); /* 0xbe71 */
    ck_assert_msg(fabs(sum - 23.583250250667334) < 1e-9, "sum %.17g", sum);
    free(x);
    hlpt_st_close(st);
}
END_TEST

/* ref.safetensors' I32 input_ids equal the ids ref.json lists for the same cases. */
START_TEST(test_fixture_ref_ids) {
    static const char *const models[] = {"llama2-mha-f32", "llama3-gqa-tied-bf16"};
    for (int m = 0; m < 2; m++) {
        char p[512], why[256], rel[128];
        hlpt_st *st;
        snprintf(rel, sizeof rel, "%s/ref.safetensors", models[m]);
        ck_assert_int_eq(hlpt_st_open(fixture_path(p, sizeof p, rel), &st, why, sizeof why), HLPT_OK);
        snprintf(rel, sizeof rel, "%s/ref.json", models[m]);
        size_t n;
        char *txt = read_all(fixture_path(p, sizeof p, rel), &n);
        txt[n] = 0;
        cJSON *j = cJSON_Parse(txt);
        const cJSON *cases = cJSON_GetObjectItem(j, "cases");
        ck_assert_int_eq(cJSON_GetArraySize(cases), 3);
        for (int c = 0; c < 3; c++) {
            const cJSON *ids = cJSON_GetObjectItem(cJSON_GetArrayItem(cases, c), "input_ids");
            char name[64];
            snprintf(name, sizeof name, "case%d.input_ids", c);
            const hlpt_st_tensor *t = hlpt_st_find(st, name);
            ck_assert_ptr_nonnull(t);
            ck_assert_int_eq(t->dtype, HLPT_DTYPE_I32);
            ck_assert_int_eq(t->ndim, 1);
            ck_assert_int_eq(t->numel, cJSON_GetArraySize(ids));
            for (int i = 0; i < t->numel; i++) {
                int32_t v;
                memcpy(&v, (const char *)t->data + 4 * i, 4);
                ck_assert_int_eq(v, cJSON_GetArrayItem(ids, i)->valueint);
            }
            /* Integers are not floats: get_f32 refuses them. */
            int64_t shape[1] = {t->numel};
            float f[64];
            ck_assert_int_eq(hlpt_st_get_f32(st, name, 1, shape, f, why, sizeof why),
                             HLPT_ERR_MISMATCH);
            ck_assert_ptr_nonnull(strstr(why, name));
        }
        cJSON_Delete(j);
        free(txt);
        hlpt_st_close(st);
    }
}
END_TEST

/* Writing back what was read reproduces every Python-written fixture byte for byte, in memory and
 * through the atomic file writer. */
START_TEST(test_rewrite_fixtures_identical) {
    char dir[64];
    mk_tmpdir(dir, sizeof dir);
    for (size_t f = 0; f < sizeof fixture_files / sizeof fixture_files[0]; f++) {
        char p[512], why[256], out[128];
        size_t n;
        void *orig = read_all(fixture_path(p, sizeof p, fixture_files[f]), &n);
        hlpt_st *st;
        ck_assert_int_eq(hlpt_st_open_mem(orig, n, &st, why, sizeof why), HLPT_OK);
        hlpt_st_writer *w;
        ck_assert_int_eq(hlpt_st_writer_new(&w), HLPT_OK);
        if (hlpt_st_metadata(st, "format"))
            ck_assert_int_eq(hlpt_st_writer_metadata(w, "format", hlpt_st_metadata(st, "format")),
                             HLPT_OK);
        /* Added in reverse so the writer's own ordering is what is tested. */
        for (int i = hlpt_st_count(st) - 1; i >= 0; i--) {
            const hlpt_st_tensor *t = hlpt_st_at(st, i);
            ck_assert_int_eq(hlpt_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data),
                             HLPT_OK);
        }
        void *buf;
        size_t m;
        ck_assert_int_eq(hlpt_st_writer_to_mem(w, &buf, &m, why, sizeof why), HLPT_OK);
        ck_assert_msg(m == n && memcmp(buf, orig, n) == 0, "%s: rewrite differs (%zu vs %zu bytes)",
                      fixture_files[f], m, n);
        snprintf(out, sizeof out, "%s/out.safetensors", dir);
        ck_assert_int_eq(hlpt_st_writer_write(w, out, why, sizeof why), HLPT_OK);
        size_t k;
        void *disk = read_all(out, &k);
        ck_assert_msg(k == n && memcmp(disk, orig, n) == 0, "%s: file differs", fixture_files[f]);
        free(disk);
        free(buf);
        hlpt_st_writer_free(w);
        hlpt_st_close(st);
        free(orig);
    }
    /* Only the final file is left: no temporary files behind. */
    char cmd[128];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", dir);
    ck_assert_int_eq(system(cmd), 0);
    rm_tmpdir(dir);
}
END_TEST

START_TEST(test_writer_roundtrip_dtypes) {
    static const float f32[6] = {1.5f, -2.25f, 0, 3e-30f, 1e30f, -0.0f};
    static const uint16_t bf16[4] = {0x3f80, 0xc049, 0x7f80, 0x0001};
    static const uint16_t f16[3] = {0x3c00, 0x0001, 0xfc00};
    static const int64_t i64[2] = {-5, INT64_MAX};
    static const uint8_t b8[3] = {1, 0, 1};
    static const double f64[1] = {0.1};
    hlpt_st_writer *w;
    ck_assert_int_eq(hlpt_st_writer_new(&w), HLPT_OK);
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3}, s2[1] = {2}, s0[2] = {5, 0};
    ck_assert_int_eq(hlpt_st_writer_add(w, "a.f32", HLPT_DTYPE_F32, 2, s23, f32), HLPT_OK);
    ck_assert_int_eq(hlpt_st_writer_add(w, "b.bf16", HLPT_DTYPE_BF16, 1, s4, bf16), HLPT_OK);
    ck_assert_int_eq(hlpt_st_writer_add(w, "c.f16", HLPT_DTYPE_F16, 1, s3, f16), HLPT_OK);
    ck_assert_int_eq(hlpt_st_writer_add(w, "d.i64", HLPT_DTYPE_I64, 1, s2, i64), HLPT_OK);
    ck_assert_int_eq(hlpt_st_writer_add(w, "e.bool", HLPT_DTYPE_BOOL, 1, s3, b8), HLPT_OK);
    ck_assert_int_eq(hlpt_st_writer_add(w, "f.scalar", HLPT_DTYPE_F64, 0, NULL, f64), HLPT_OK);
    ck_assert_int_eq(hlpt_st_writer_add(w, "g.empty", HLPT_DTYPE_F32, 2, s0, NULL), HLPT_OK);
    ck_assert_int_eq(hlpt_st_writer_add(w, "quote\"back\\slash\n\x01", HLPT_DTYPE_U8, 1, s2, b8),
                     HLPT_OK);
    ck_assert_int_eq(hlpt_st_writer_metadata(w, "note", "v1"), HLPT_OK);
    ck_assert_int_eq(hlpt_st_writer_metadata(w, "note", "tab\there \xc3\xa9"), HLPT_OK);
    ck_assert_int_eq(hlpt_st_writer_metadata(w, "base", "llama"), HLPT_OK);
    /* Refused at add time. */
    int64_t neg[1] = {-1}, huge[2] = {INT64_MAX, 2};
    ck_assert_int_eq(hlpt_st_writer_add(w, "x", HLPT_DTYPE_F32, 1, neg, f32), HLPT_ERR_INVAL);
    ck_assert_int_eq(hlpt_st_writer_add(w, "x", HLPT_DTYPE_F32, 2, huge, f32), HLPT_ERR_INVAL);
    ck_assert_int_eq(hlpt_st_writer_add(w, "x", HLPT_DTYPE_F32, 9, s23, f32), HLPT_ERR_INVAL);
    ck_assert_int_eq(hlpt_st_writer_add(w, "__metadata__", HLPT_DTYPE_F32, 1, s4, f32), HLPT_ERR_INVAL);
    ck_assert_int_eq(hlpt_st_writer_add(w, "x", HLPT_DTYPE_F32, 1, s4, NULL), HLPT_ERR_INVAL);

    void *buf;
    size_t n;
    char why[256];
    ck_assert_int_eq(hlpt_st_writer_to_mem(w, &buf, &n, why, sizeof why), HLPT_OK);
    uint64_t hl;
    memcpy(&hl, buf, 8);
    ck_assert_uint_eq(hl % 8, 0);
    /* Wider dtypes first (I64, F64, F32, BF16, F16, U8, BOOL), so every tensor is aligned. */
    const char *h = (const char *)buf + 8;
    const char *order[] = {"d.i64", "f.scalar", "a.f32", "g.empty", "b.bf16", "c.f16", "quote", "e.bool"};
    const char *prev = h;
    for (int i = 0; i < 8; i++) {
        const char *q = strstr(h, order[i]);
        ck_assert_msg(q && q > prev, "%s out of order", order[i]);
        prev = q;
    }
    ck_assert_int_eq(memcmp(h, "{\"__metadata__\":{\"base\":\"llama\",\"note\":\"tab\\there \xc3\xa9\"}", 53),
                     0);

    hlpt_st *st;
    ck_assert_int_eq(hlpt_st_open_mem(buf, n, &st, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_st_count(st), 8);
    ck_assert_str_eq(hlpt_st_metadata(st, "note"), "tab\there \xc3\xa9");
    const hlpt_st_tensor *t = hlpt_st_find(st, "a.f32");
    ck_assert_int_eq(memcmp(t->data, f32, sizeof f32), 0);
    ck_assert_int_eq(t->shape[0] * 10 + t->shape[1], 23);
    ck_assert_int_eq(memcmp(hlpt_st_find(st, "b.bf16")->data, bf16, sizeof bf16), 0);
    ck_assert_int_eq(memcmp(hlpt_st_find(st, "c.f16")->data, f16, sizeof f16), 0);
    ck_assert_int_eq(memcmp(hlpt_st_find(st, "d.i64")->data, i64, sizeof i64), 0);
    ck_assert_int_eq(memcmp(hlpt_st_find(st, "e.bool")->data, b8, sizeof b8), 0);
    t = hlpt_st_find(st, "f.scalar");
    ck_assert_int_eq(t->ndim, 0);
    ck_assert_int_eq(t->numel, 1);
    float one;
    ck_assert_int_eq(hlpt_st_to_f32(t, &one, why, sizeof why), HLPT_OK);
    ck_assert_float_eq(one, 0.1f);
    t = hlpt_st_find(st, "g.empty");
    ck_assert_int_eq(t->numel, 0);
    ck_assert_uint_eq(t->nbytes, 0);
    ck_assert_ptr_nonnull(hlpt_st_find(st, "quote\"back\\slash\n\x01"));
    for (int i = 0; i < hlpt_st_count(st); i++) {
        const hlpt_st_tensor *a = hlpt_st_at(st, i);
        ck_assert_uint_eq((uintptr_t)a->data % hlpt_dtype_size(a->dtype), 0);
    }
    hlpt_st_close(st);
    free(buf);

    /* A duplicate name (even with another dtype) is refused when writing. */
    ck_assert_int_eq(hlpt_st_writer_add(w, "a.f32", HLPT_DTYPE_U8, 1, s2, b8), HLPT_OK);
    ck_assert_int_eq(hlpt_st_writer_to_mem(w, &buf, &n, why, sizeof why), HLPT_ERR_EXISTS);
    ck_assert_ptr_null(buf);
    ck_assert_ptr_nonnull(strstr(why, "a.f32"));
    ck_assert_int_eq(hlpt_st_writer_write(w, "/tmp/hlpt-never-written.safetensors", why, sizeof why),
                     HLPT_ERR_EXISTS);
    ck_assert_int_ne(access("/tmp/hlpt-never-written.safetensors", F_OK), 0);
    hlpt_st_writer_free(w);
    hlpt_st_writer_free(NULL);
    hlpt_st_close(NULL);
}
END_TEST

START_TEST(test_writer_empty_and_io_error) {
    hlpt_st_writer *w;
    char why[256];
    ck_assert_int_eq(hlpt_st_writer_new(&w), HLPT_OK);
    void *buf;
    size_t n;
    ck_assert_int_eq(hlpt_st_writer_to_mem(w, &buf, &n, why, sizeof why), HLPT_OK);
    /* "{}" padded to 8: the Python library writes the same 16 bytes for an empty dict. */
    ck_assert_uint_eq(n, 16);
    ck_assert_int_eq(memcmp(buf, "\x08\0\0\0\0\0\0\0{}      ", 16), 0);
    hlpt_st *st;
    ck_assert_int_eq(hlpt_st_open_mem(buf, n, &st, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_st_count(st), 0);
    ck_assert_ptr_null(hlpt_st_find(st, "x"));
    hlpt_st_close(st);
    free(buf);
    ck_assert_int_eq(hlpt_st_writer_write(w, "/nonexistent-dir/x.safetensors", why, sizeof why),
                     HLPT_ERR_IO);
    ck_assert_ptr_nonnull(strstr(why, "/nonexistent-dir/x.safetensors"));
    hlpt_st_writer_free(w);
}
END_TEST

START_TEST(test_bad_images) {
    /* Short, zero and oversized header lengths. */
    expect_bad((const unsigned char *)"\x01\0\0", 3, HLPT_ERR_FORMAT, "shorter than");
    expect_bad((const unsigned char *)"\0\0\0\0\0\0\0\0{}", 10, HLPT_ERR_FORMAT, "header length is 0");
    expect_bad((const unsigned char *)"\x10\0\0\0\0\0\0\0{}", 10, HLPT_ERR_FORMAT, "beyond the file");
    expect_bad((const unsigned char *)"\0\0\0\x10\0\0\0\0{}", 10, HLPT_ERR_FORMAT, "absurd");
    expect_bad((const unsigned char *)"\xff\xff\xff\xff\xff\xff\xff\xff{}", 10, HLPT_ERR_FORMAT, "absurd");
    /* Header text. */
    expect_bad_hdr("{\"a\":{\"dtype\":\"F32\",", 0, HLPT_ERR_FORMAT, "not valid JSON");
    expect_bad_hdr("[1,2]   ", 0, HLPT_ERR_FORMAT, "not a JSON object");
    expect_bad_hdr("{}  x   ", 0, HLPT_ERR_FORMAT, "not valid JSON");
    expect_bad_hdr("{\"a\xff\":1}", 0, HLPT_ERR_FORMAT, "UTF-8");
    expect_bad_hdr("{\"a\xed\xa0\x80\":1}", 0, HLPT_ERR_FORMAT, "UTF-8"); /* a surrogate */
    {
        size_t n;
        unsigned char *b = image("{\"a\":{}}    ", 0, &n);
        b[8 + 9] = 0;
        expect_bad(b, n, HLPT_ERR_FORMAT, "NUL");
        free(b);
    }
    /* Entries: each message names the tensor. */
    expect_bad_hdr("{\"w.bad\":5}", 0, HLPT_ERR_FORMAT, "'w.bad': entry is not an object");
    expect_bad_hdr("{\"w.q\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                   HLPT_ERR_FORMAT, "'w.q': unknown dtype 'F99'");
    expect_bad_hdr("{\"w.q\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, HLPT_ERR_FORMAT,
                   "'w.q': dtype missing");
    expect_bad_hdr("{\"w.q\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24,
                   HLPT_ERR_FORMAT, "'w.q': shape [2, 3] of F32 needs 24 bytes, data_offsets give 20");
    expect_bad_hdr("{\"w.q\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
                   HLPT_ERR_FORMAT, "'w.q': data_offsets [0, 8] beyond the data section (4 bytes)");
    expect_bad_hdr("{\"w.q\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
                   HLPT_ERR_FORMAT, "'w.q': data_offsets [8, 4] begin after end");
    expect_bad_hdr("{\"w.q\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
                   HLPT_ERR_FORMAT, "'w.q': data_offsets missing");
    expect_bad_hdr("{\"w.q\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4,
                   HLPT_ERR_FORMAT, "'w.q': data_offsets are not");
    expect_bad_hdr("{\"w.q\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                   HLPT_ERR_FORMAT, "'w.q': shape[0] is not a non-negative integer");
    expect_bad_hdr("{\"w.q\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
                   HLPT_ERR_FORMAT, "'w.q': shape[0]");
    expect_bad_hdr("{\"w.q\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", 4,
                   HLPT_ERR_FORMAT, "'w.q': shape missing");
    expect_bad_hdr("{\"w.q\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                   "\"data_offsets\":[0,4]}}", 4, HLPT_ERR_FORMAT, "'w.q': shape product overflows");
    expect_bad_hdr("{\"w.q\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
                   4, HLPT_ERR_UNSUPPORTED, "'w.q': 9 dimensions");
    /* Overlaps, duplicates, metadata. */
    expect_bad_hdr("{\"w.a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"w.b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
                   HLPT_ERR_FORMAT, "tensors 'w.a' and 'w.b' overlap");
    expect_bad_hdr("{\"w.a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"w.a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                   HLPT_ERR_FORMAT, "tensor 'w.a' is listed twice");
    expect_bad_hdr("{\"__metadata__\":[1]}", 0, HLPT_ERR_FORMAT, "__metadata__ is not an object");
    expect_bad_hdr("{\"__metadata__\":{\"k\":1}}", 0, HLPT_ERR_FORMAT, "__metadata__ 'k' is not a string");
    expect_bad_hdr("{\"__metadata__\":{},\"__metadata__\":{}}", 0, HLPT_ERR_FORMAT, "twice");
}
END_TEST

/* What the format allows: gaps, empty tensors anywhere, any order, misaligned data. */
START_TEST(test_good_images) {
    char why[256];
    hlpt_st *st;
    size_t n;
    /* Header of odd length: the data section starts misaligned; to_f32 must still read it. */
    const char *hdr = "{\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]},"
                      "\"e\":{\"dtype\":\"F32\",\"shape\":[0,7],\"data_offsets\":[4,4]}}  ";
    ck_assert_uint_eq(strlen(hdr) % 2, 1);
    unsigned char *b = image(hdr, 12, &n);
    uint16_t hv[2] = {0x3c00, 0xc000};
    memcpy(b + n - 8, hv, 4);
    ck_assert_int_eq(hlpt_st_open_mem(b, n, &st, why, sizeof why), HLPT_OK);
    const hlpt_st_tensor *t = hlpt_st_find(st, "h");
    ck_assert_uint_eq((uintptr_t)t->data % 2, 1);
    float f[2];
    int64_t s2[1] = {2}, s3[1] = {3};
    ck_assert_int_eq(hlpt_st_get_f32(st, "h", 1, s2, f, why, sizeof why), HLPT_OK);
    ck_assert_float_eq(f[0], 1.0f);
    ck_assert_float_eq(f[1], -2.0f);
    ck_assert_int_eq(hlpt_st_get_f32(st, "h", 1, s3, f, why, sizeof why), HLPT_ERR_MISMATCH);
    ck_assert_str_eq(why, "tensor 'h': shape [2], expected [3]");
    ck_assert_int_eq(hlpt_st_get_f32(st, "nope", 1, s3, f, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_nonnull(strstr(why, "'nope'"));
    ck_assert_int_eq(hlpt_st_find(st, "e")->numel, 0);
    hlpt_st_close(st);
    free(b);
}
END_TEST

/* Files cut short on disk: inside the header, and inside the data. */
START_TEST(test_truncated_files) {
    char p[512], why[512], dir[64], out[128];
    size_t n;
    unsigned char *orig = read_all(fixture_path(p, sizeof p, "llama2-mha-f32/model.safetensors"), &n);
    mk_tmpdir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/cut.safetensors", dir);
    hlpt_st *st = (hlpt_st *)1;
    write_all_file(out, orig, 1000);
    ck_assert_int_eq(hlpt_st_open(out, &st, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_null(st);
    ck_assert_ptr_nonnull(strstr(why, "beyond the file"));
    ck_assert_ptr_nonnull(strstr(why, out));
    write_all_file(out, orig, n - 100);
    ck_assert_int_eq(hlpt_st_open(out, &st, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(why, "beyond the data section"));
    ck_assert_ptr_nonnull(strstr(why, "'model.norm.weight'")); /* the last tensor */
    write_all_file(out, orig, 0);
    ck_assert_int_eq(hlpt_st_open(out, &st, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(why, "shorter than"));
    ck_assert_int_eq(hlpt_st_open("/nonexistent.safetensors", &st, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_int_eq(hlpt_st_open(dir, &st, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_nonnull(strstr(why, "model.safetensors.index.json"));
    rm_tmpdir(dir);
    free(orig);
}
END_TEST

/* Writes the tensors of src whose index i satisfies pick(i) into dir/name. */
static void write_shard(const hlpt_st *src, const char *dir, const char *name, int part, int also) {
    hlpt_st_writer *w;
    char path[256], why[256];
    ck_assert_int_eq(hlpt_st_writer_new(&w), HLPT_OK);
    for (int i = 0; i < hlpt_st_count(src); i++) {
        const hlpt_st_tensor *t = hlpt_st_at(src, i);
        if (i % 2 == part || i == also)
            ck_assert_int_eq(hlpt_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data), HLPT_OK);
    }
    ck_assert_int_eq(hlpt_st_writer_metadata(w, "format", "pt"), HLPT_OK);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ck_assert_int_eq(hlpt_st_writer_write(w, path, why, sizeof why), HLPT_OK);
    hlpt_st_writer_free(w);
}

/* An index mapping tensor i to shard 1 + i % 2; extra is appended verbatim to the weight_map. */
static void write_index(const hlpt_st *src, const char *dir, const char *extra, int skip) {
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"metadata\": {\"total_size\": 2134272},\n \"weight_map\": {");
    const char *sep = "";
    for (int i = 0; i < hlpt_st_count(src); i++) {
        if (i == skip) continue;
        fprintf(f, "%s\n  \"%s\": \"model-0000%d-of-00002.safetensors\"", sep, hlpt_st_at(src, i)->name,
                1 + i % 2);
        sep = ",";
    }
    fprintf(f, "%s}}\n", extra);
    fclose(f);
}

START_TEST(test_sharded) {
    char p[512], why[512], dir[64], idx[128];
    hlpt_st *src, *st = NULL;
    ck_assert_int_eq(hlpt_st_open(fixture_path(p, sizeof p, "llama2-mha-f32/model.safetensors"), &src,
                                  why, sizeof why), HLPT_OK);
    mk_tmpdir(dir, sizeof dir);
    write_shard(src, dir, "model-00001-of-00002.safetensors", 0, -1);
    write_shard(src, dir, "model-00002-of-00002.safetensors", 1, -1);
    write_index(src, dir, "", -1);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    for (int via = 0; via < 2; via++) {
        ck_assert_msg(hlpt_st_open(via ? idx : dir, &st, why, sizeof why) == HLPT_OK, "%s", why);
        ck_assert_int_eq(hlpt_st_count(st), hlpt_st_count(src));
        ck_assert_str_eq(hlpt_st_metadata(st, "format"), "pt");
        for (int i = 0; i < hlpt_st_count(src); i++) {
            const hlpt_st_tensor *a = hlpt_st_at(src, i), *b = hlpt_st_find(st, a->name);
            ck_assert_ptr_nonnull(b);
            ck_assert_int_eq(b->dtype, a->dtype);
            ck_assert_int_eq(b->ndim, a->ndim);
            ck_assert_int_eq(memcmp(b->shape, a->shape, sizeof a->shape), 0);
            ck_assert_uint_eq(b->nbytes, a->nbytes);
            ck_assert_int_eq(memcmp(b->data, a->data, a->nbytes), 0);
        }
        hlpt_st_close(st);
    }

    /* The index names a shard that does not exist. */
    write_index(src, dir, ",\n  \"extra.weight\": \"model-00003-of-00002.safetensors\"", -1);
    ck_assert_int_eq(hlpt_st_open(dir, &st, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_null(st);
    ck_assert_ptr_nonnull(strstr(why, "model-00003-of-00002.safetensors does not exist"));
    /* The index names a tensor its shard lacks. */
    write_index(src, dir, ",\n  \"extra.weight\": \"model-00001-of-00002.safetensors\"", -1);
    ck_assert_int_eq(hlpt_st_open(dir, &st, why, sizeof why), HLPT_ERR_NOENT);
    ck_assert_ptr_nonnull(strstr(why, "'extra.weight' is not in its shard model-00001-of-00002"));
    /* A shard holds a tensor the index does not list. */
    write_index(src, dir, "", 3);
    ck_assert_int_eq(hlpt_st_open(dir, &st, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(why, hlpt_st_at(src, 3)->name));
    /* A path outside the directory. */
    write_index(src, dir, ",\n  \"x\": \"../model.safetensors\"", -1);
    ck_assert_int_eq(hlpt_st_open(dir, &st, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(why, "weight_map['x']"));
    /* The same tensor in both shards. */
    write_shard(src, dir, "model-00002-of-00002.safetensors", 1, 0);
    write_index(src, dir, "", -1);
    ck_assert_int_eq(hlpt_st_open(dir, &st, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(why, "two shards"));
    ck_assert_ptr_nonnull(strstr(why, hlpt_st_at(src, 0)->name));
    /* A broken index. */
    FILE *f = fopen(idx, "w");
    fputs("{\"weight_map\": [", f);
    fclose(f);
    ck_assert_int_eq(hlpt_st_open(dir, &st, why, sizeof why), HLPT_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(why, "model.safetensors.index.json"));

    rm_tmpdir(dir);
    hlpt_st_close(src);
}
END_TEST

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Expected f32 bit patterns worked out by hand from the IEEE layouts:
 * f16 = s eeeee mmmmmmmmmm, value (-1)^s 2^(e-15) (1 + m/1024), subnormal (-1)^s 2^-14 m/1024;
 * f32 exponent bias 127, so a normal f16 maps to exponent e + 112 and mantissa m << 13. */
START_TEST(test_f16_exact) {
    static const struct {
        uint16_t h;
        uint32_t f;
    } cases[] = {
        {0x0000, 0x00000000}, /* +0 */
        {0x8000, 0x80000000}, /* -0 */
        {0x3c00, 0x3f800000}, /* 1 */
        {0x3c01, 0x3f802000}, /* 1 + 2^-10 */
        {0xc000, 0xc0000000}, /* -2 */
        {0x3555, 0x3eaaa000}, /* 2^-2 * (1 + 341/1024) = 0.333251953125 */
        {0x7bff, 0x477fe000}, /* 65504, the largest finite */
        {0x0400, 0x38800000}, /* 2^-14, the smallest normal */
        {0x0001, 0x33800000}, /* 2^-24, the smallest subnormal */
        {0x8001, 0xb3800000}, /* -2^-24 */
        {0x0002, 0x34000000}, /* 2^-23 */
        {0x0200, 0x38000000}, /* 2^-15 */
        {0x03ff, 0x387fc000}, /* 1023 * 2^-24 = 2^-15 (1 + 1022/1024), the largest subnormal */
        {0x7c00, 0x7f800000}, /* +inf */
        {0xfc00, 0xff800000}, /* -inf */
        {0x7e00, 0x7fc00000}, /* quiet NaN */
        {0x7c01, 0x7f802000}, /* signalling NaN, payload 1 kept */
        {0xfe01, 0xffc02000}, /* negative NaN with payload */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(bits(hlpt_f16_to_f32(cases[i].h)) == cases[i].f, "f16 %04x -> %08x, want %08x",
                      cases[i].h, bits(hlpt_f16_to_f32(cases[i].h)), cases[i].f);
    ck_assert_float_eq(hlpt_f16_to_f32(0x3555), 0.333251953125f);
    ck_assert_float_eq(hlpt_f16_to_f32(0x03ff), 1023.0f / 16777216.0f);
    /* All 2^16 values against ldexp of the definition (NaNs aside). */
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t e = (h >> 10) & 31, m = h & 1023;
        if (e == 31) continue;
        double v = e ? ldexp(1024 + m, (int)e - 25) : ldexp(m, -24);
        if (h & 0x8000) v = -v;
        ck_assert_msg(hlpt_f16_to_f32((uint16_t)h) == (float)v && !signbit(hlpt_f16_to_f32((uint16_t)h)) ==
                      !signbit(v), "f16 %04x", h);
    }
}
END_TEST

START_TEST(test_bf16_exact) {
    static const struct {
        uint16_t b;
        uint32_t f;
    } cases[] = {
        {0x3f80, 0x3f800000}, {0xc049, 0xc0490000}, {0x0001, 0x00010000}, {0x8000, 0x80000000},
        {0x7f80, 0x7f800000}, {0xff80, 0xff800000}, {0x7fc0, 0x7fc00000}, {0x7f7f, 0x7f7f0000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_uint_eq(bits(hlpt_bf16_to_f32(cases[i].b)), cases[i].f);
    ck_assert_float_eq(hlpt_bf16_to_f32(0xc049), -3.140625f);
    ck_assert_float_eq(hlpt_bf16_to_f32(0x0001), ldexpf(1.0f, -133));
    /* Through a tensor, with F16 alongside. */
    static const uint16_t v[3] = {0x3f80, 0x0001, 0xff80};
    hlpt_st_tensor t = {.name = "t", .dtype = HLPT_DTYPE_BF16, .ndim = 1, .shape = {3}, .numel = 3,
                        .data = v, .nbytes = 6};
    float out[3];
    char why[128];
    ck_assert_int_eq(hlpt_st_to_f32(&t, out, why, sizeof why), HLPT_OK);
    ck_assert_uint_eq(bits(out[0]), 0x3f800000);
    ck_assert_uint_eq(bits(out[1]), 0x00010000);
    ck_assert_uint_eq(bits(out[2]), 0xff800000);
    t.dtype = HLPT_DTYPE_F16;
    ck_assert_int_eq(hlpt_st_to_f32(&t, out, why, sizeof why), HLPT_OK);
    ck_assert_float_eq(out[0], 1.875f); /* 0x3f80: 2^0 * (1 + 896/1024) */
    ck_assert_uint_eq(bits(out[1]), 0x33800000);
    t.dtype = HLPT_DTYPE_I16;
    ck_assert_int_eq(hlpt_st_to_f32(&t, out, why, sizeof why), HLPT_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(why, "I16"));
}
END_TEST

/* hlpt_st_release drops a mapped file's pages, which come back from the file unchanged when read
 * again; a borrowed buffer is never touched (dropping its pages would zero the caller's memory). */
START_TEST(test_release) {
    enum { N = 3 << 12 }; /* 48 KB of floats: whole pages inside the tensor */
    float *v = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) v[i] = (float)i + 0.5f;
    hlpt_st_writer *w;
    ck_assert_int_eq(hlpt_st_writer_new(&w), HLPT_OK);
    int64_t shape[1] = {N};
    ck_assert_int_eq(hlpt_st_writer_add(w, "t", HLPT_DTYPE_F32, 1, shape, v), HLPT_OK);
    char why[256] = "", path[] = "/tmp/hlpt-release-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(hlpt_st_writer_write(w, path, why, sizeof why), HLPT_OK);
    void *buf;
    size_t n;
    ck_assert_int_eq(hlpt_st_writer_to_mem(w, &buf, &n, why, sizeof why), HLPT_OK);
    hlpt_st_writer_free(w);
    hlpt_st *mapped, *borrowed;
    ck_assert_int_eq(hlpt_st_open(path, &mapped, why, sizeof why), HLPT_OK);
    ck_assert_int_eq(hlpt_st_open_mem(buf, n, &borrowed, why, sizeof why), HLPT_OK);
    hlpt_st *sts[2] = {mapped, borrowed};
    for (int k = 0; k < 2; k++) {
        hlpt_st_release(sts[k], "t");
        hlpt_st_release(sts[k], "no such tensor");
        ck_assert_mem_eq(hlpt_st_find(sts[k], "t")->data, v, sizeof(float) * N);
    }
    hlpt_st_close(mapped);
    hlpt_st_close(borrowed);
    unlink(path);
    free(buf);
    free(v);
}
END_TEST

START_TEST(test_dtype_table) {
    hlpt_dtype d;
    for (int i = 0; i < HLPT_DTYPE_COUNT; i++) {
        ck_assert_int_eq(hlpt_dtype_from_name(hlpt_dtype_name((hlpt_dtype)i), &d), HLPT_OK);
        ck_assert_int_eq(d, i);
        ck_assert_uint_gt(hlpt_dtype_size((hlpt_dtype)i), 0);
    }
    ck_assert_int_eq(hlpt_dtype_from_name("f32", &d), HLPT_ERR_NOENT);
    ck_assert_str_eq(hlpt_dtype_name(HLPT_DTYPE_COUNT), "?");
    ck_assert_uint_eq(hlpt_dtype_size(HLPT_DTYPE_BF16), 2);
    ck_assert_uint_eq(hlpt_dtype_size(HLPT_DTYPE_I64), 8);
    char s[8];
    int64_t sh[3] = {123, 456, 789};
    ck_assert_str_eq(hlpt_st_shape_str(s, sizeof s, 3, sh), "[123, 4");
    ck_assert_str_eq(hlpt_st_shape_str(s, sizeof s, 0, sh), "[]");
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_fixture_llama2);
    tcase_add_test(tc, test_fixture_bf16_dir);
    tcase_add_test(tc, test_fixture_ref_ids);
    tcase_add_test(tc, test_rewrite_fixtures_identical);
    tcase_add_test(tc, test_writer_roundtrip_dtypes);
    tcase_add_test(tc, test_writer_empty_and_io_error);
    tcase_add_test(tc, test_bad_images);
    tcase_add_test(tc, test_good_images);
    tcase_add_test(tc, test_truncated_files);
    tcase_add_test(tc, test_sharded);
    tcase_add_test(tc, test_f16_exact);
    tcase_add_test(tc, test_bf16_exact);
    tcase_add_test(tc, test_dtype_table);
    tcase_add_test(tc, test_release);
    suite_add_tcase(s, tc);
    return s;
}

HLPT_CHECK_MAIN()
