/*
 * safetensors.c - the safetensors reader (mmap, validate, hash lookup) and writer.
 *
 * DESIGN. An hlpt_st is a list of files (one, or the shards of an index) and one flat table of
 * tensors over all of them. Opening a file maps it, copies the header into a NUL-terminated buffer,
 * parses it with cJSON and checks every entry (types, shapes, byte ranges, overlaps) before the
 * table is visible; names are copied so the JSON tree is freed straight away. After all files are
 * read, one open-addressing hash over the names gives hlpt_st_find and catches duplicates, within a
 * file and across shards, in one place.
 *
 * The writer borrows tensor data and writes it straight from the caller's memory; the header is
 * built by hand (not cJSON) so its bytes match the Python library's output exactly.
 */
#include "hlpt/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hlpt/err.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; hlpt reads it in place and needs a little-endian host"
#endif

#define HEADER_MAX ((uint64_t)100 * 1000 * 1000) /* absurd header guard: 100 MB */
#define JSON_INT_MAX ((double)(1ull << 53))      /* larger JSON numbers are not exact doubles */
#define INDEX_MAX ((off_t)100 * 1000 * 1000)     /* an index.json larger than this is absurd */

/* ---- dtypes ---- */

static const struct {
    const char *name;
    size_t size;
    int conv;
} dtypes[] = {
#define X(name, size, conv) {#name, size, conv},
    HLPT_DTYPE_MAP(X)
#undef X
};
_Static_assert(sizeof dtypes / sizeof dtypes[0] == HLPT_DTYPE_COUNT, "one row per dtype");

/* The Python library (Rust safetensors) writes tensors in descending order of its Dtype enum,
 * whose declaration order is BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64.
 * The rank is the position in that list; the writer sorts by descending rank, then name. */
static const unsigned char dtype_rank[] = {
    [HLPT_DTYPE_BOOL] = 0, [HLPT_DTYPE_U8] = 1,  [HLPT_DTYPE_I8] = 2,   [HLPT_DTYPE_F8_E5M2] = 3,
    [HLPT_DTYPE_F8_E4M3] = 4, [HLPT_DTYPE_I16] = 5, [HLPT_DTYPE_U16] = 6, [HLPT_DTYPE_F16] = 7,
    [HLPT_DTYPE_BF16] = 8, [HLPT_DTYPE_I32] = 9, [HLPT_DTYPE_U32] = 10, [HLPT_DTYPE_F32] = 11,
    [HLPT_DTYPE_F64] = 12, [HLPT_DTYPE_I64] = 13, [HLPT_DTYPE_U64] = 14,
};
_Static_assert(sizeof dtype_rank == HLPT_DTYPE_COUNT, "one rank per dtype");

const char *hlpt_dtype_name(hlpt_dtype dt) {
    return (unsigned)dt < HLPT_DTYPE_COUNT ? dtypes[dt].name : "?";
}

size_t hlpt_dtype_size(hlpt_dtype dt) {
    return (unsigned)dt < HLPT_DTYPE_COUNT ? dtypes[dt].size : 0;
}

int hlpt_dtype_to_f32_ok(hlpt_dtype dt) {
    return (unsigned)dt < HLPT_DTYPE_COUNT && dtypes[dt].conv;
}

int hlpt_dtype_from_name(const char *name, hlpt_dtype *out) {
    for (int i = 0; i < HLPT_DTYPE_COUNT; i++)
        if (strcmp(name, dtypes[i].name) == 0) {
            *out = (hlpt_dtype)i;
            return HLPT_OK;
        }
    return HLPT_ERR_NOENT;
}

/* ---- conversions ---- */

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float hlpt_bf16_to_f32(uint16_t b) {
    return f32_from_bits((uint32_t)b << 16);
}

float hlpt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (man << 13)); /* inf, NaN payload */
    if (exp != 0) return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
    if (man == 0) return f32_from_bits(sign);
    /* Subnormal man * 2^-24: normalise so the leading 1 moves to bit 10 (it is a normal f32). */
    uint32_t e = 113;
    while (!(man & 0x400)) {
        man <<= 1;
        e--;
    }
    return f32_from_bits(sign | (e << 23) | ((man & 0x3ff) << 13));
}

char *hlpt_st_shape_str(char *buf, size_t len, int ndim, const int64_t *shape) {
    if (!len) return buf;
    size_t o = 0;
    int k = snprintf(buf, len, "[");
    o = k > 0 ? (size_t)k : 0;
    for (int i = 0; i < ndim && o < len; i++) {
        k = snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
        if (k < 0) break;
        o += (size_t)k;
    }
    if (o < len) snprintf(buf + o, len - o, "]");
    return buf;
}

int hlpt_st_to_f32(const hlpt_st_tensor *t, float *dst, char *why, size_t len) {
    const unsigned char *p = t->data;
    int64_t n = t->numel;
    switch (t->dtype) {
    case HLPT_DTYPE_F32:
        if (n) memcpy(dst, p, (size_t)n * 4);
        return HLPT_OK;
    case HLPT_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            dst[i] = hlpt_bf16_to_f32(v);
        }
        return HLPT_OK;
    case HLPT_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            dst[i] = hlpt_f16_to_f32(v);
        }
        return HLPT_OK;
    case HLPT_DTYPE_F64:
        for (int64_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, p + 8 * i, 8);
            dst[i] = (float)v;
        }
        return HLPT_OK;
    default:
        return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "tensor '%s': cannot convert %s to F32",
                        t->name, hlpt_dtype_name(t->dtype));
    }
}

/* ---- the open handle ---- */

typedef struct {
    const unsigned char *base; /* the whole file image */
    size_t size;
    int mapped; /* 1: munmap on close; 0: borrowed buffer */
    char *label; /* file name for messages (owned) */
} st_file;

typedef struct {
    char *key, *value;
} st_meta;

struct hlpt_st {
    st_file *files;
    int n_files, cap_files;
    hlpt_st_tensor *tensors;
    int *file_of; /* file_of[i]: index into files of tensor i */
    int n, cap, cap_of;
    int *slots; /* hash: tensor index or -1; mask + 1 slots */
    size_t mask;
    st_meta *meta;
    int n_meta, cap_meta;
};

static int grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return HLPT_OK;
    int c = *cap ? *cap : 16;
    while (c < need) {
        if (c > INT_MAX / 2) return HLPT_ERR_NOMEM;
        c *= 2;
    }
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return HLPT_ERR_NOMEM;
    *p = q;
    *cap = c;
    return HLPT_OK;
}

void hlpt_st_close(hlpt_st *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free((char *)st->tensors[i].name);
    for (int i = 0; i < st->n_files; i++) {
        if (st->files[i].mapped) munmap((void *)st->files[i].base, st->files[i].size);
        free(st->files[i].label);
    }
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta[i].key);
        free(st->meta[i].value);
    }
    free(st->files);
    free(st->tensors);
    free(st->file_of);
    free(st->slots);
    free(st->meta);
    free(st);
}

int hlpt_st_count(const hlpt_st *st) {
    return st->n;
}

const hlpt_st_tensor *hlpt_st_at(const hlpt_st *st, int i) {
    return i >= 0 && i < st->n ? &st->tensors[i] : NULL;
}

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

const hlpt_st_tensor *hlpt_st_find(const hlpt_st *st, const char *name) {
    if (!st->slots) return NULL;
    for (size_t s = hash_name(name) & st->mask;; s = (s + 1) & st->mask) {
        int i = st->slots[s];
        if (i < 0) return NULL;
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    }
}

const char *hlpt_st_metadata(const hlpt_st *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[i].key, key) == 0) return st->meta[i].value;
    return NULL;
}

/* Builds the hash over all tensors; a name seen twice is an error naming both files. */
static int build_index(hlpt_st *st, char *why, size_t len) {
    size_t cap = 16;
    while (cap < (size_t)st->n * 2) cap *= 2;
    st->slots = malloc(cap * sizeof *st->slots);
    if (!st->slots) return hlpt_why(why, len, HLPT_ERR_NOMEM, "tensor index: out of memory");
    memset(st->slots, 0xff, cap * sizeof *st->slots);
    st->mask = cap - 1;
    for (int i = 0; i < st->n; i++) {
        const char *name = st->tensors[i].name;
        size_t s = hash_name(name) & st->mask;
        for (; st->slots[s] >= 0; s = (s + 1) & st->mask) {
            int j = st->slots[s];
            if (strcmp(st->tensors[j].name, name) != 0) continue;
            const char *a = st->files[st->file_of[j]].label, *b = st->files[st->file_of[i]].label;
            if (st->file_of[i] == st->file_of[j])
                return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: tensor '%s' is listed twice", a,
                                name);
            return hlpt_why(why, len, HLPT_ERR_FORMAT, "tensor '%s' is in two shards: %s and %s",
                            name, a, b);
        }
        st->slots[s] = i;
    }
    return HLPT_OK;
}

/* ---- header validation ---- */

/* Checks UTF-8 well-formedness (no overlongs, surrogates or code points above U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) k = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else
            return 0;
        if (n - i <= k) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return 0;
        i += k + 1;
    }
    return 1;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= JSON_INT_MAX) || d != floor(d)) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int cmp_by_data(const void *a, const void *b, void *ctx) {
    const hlpt_st_tensor *t = ctx;
    const unsigned char *x = t[*(const int *)a].data, *y = t[*(const int *)b].data;
    return x < y ? -1 : x > y;
}

/* glibc's qsort_r (with _GNU_SOURCE): the context comes last. */
static int check_overlaps(hlpt_st *st, int first, const char *label, char *why, size_t len) {
    int n = st->n - first;
    if (n < 2) return HLPT_OK;
    int *ord = malloc((size_t)n * sizeof *ord);
    if (!ord) return hlpt_why(why, len, HLPT_ERR_NOMEM, "%s: out of memory", label);
    for (int i = 0; i < n; i++) ord[i] = i;
    const hlpt_st_tensor *t = st->tensors + first;
    qsort_r(ord, (size_t)n, sizeof *ord, cmp_by_data, (void *)t);
    int rc = HLPT_OK;
    /* Empty tensors occupy no bytes and cannot overlap anything. */
    const hlpt_st_tensor *prev = NULL;
    for (int i = 0; i < n; i++) {
        const hlpt_st_tensor *cur = &t[ord[i]];
        if (!cur->nbytes) continue;
        if (prev && (const unsigned char *)cur->data < (const unsigned char *)prev->data + prev->nbytes) {
            rc = hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", label,
                          prev->name, cur->name);
            break;
        }
        prev = cur;
    }
    free(ord);
    return rc;
}

/* Reads one tensor entry of the header into t (name not yet set). */
static int parse_entry(const cJSON *e, const char *name, const unsigned char *data, uint64_t data_size,
                       hlpt_st_tensor *t, const char *label, char *why, size_t len) {
    if (!cJSON_IsObject(e))
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: tensor '%s': entry is not an object", label,
                        name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: tensor '%s': dtype missing or not a string",
                        label, name);
    if (hlpt_dtype_from_name(dt->valuestring, &t->dtype) != HLPT_OK)
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", label,
                        name, dt->valuestring);
    if (!cJSON_IsArray(sh))
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: tensor '%s': shape missing or not an array",
                        label, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > HLPT_ST_MAX_NDIM)
        return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions (at most %d)",
                        label, name, nd, HLPT_ST_MAX_NDIM);
    t->ndim = nd;
    uint64_t numel = 1;
    int k = 0, overflow = 0;
    for (const cJSON *d = sh->child; d; d = d->next, k++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return hlpt_why(why, len, HLPT_ERR_FORMAT,
                            "%s: tensor '%s': shape[%d] is not a non-negative integer", label, name,
                            k);
        t->shape[k] = (int64_t)v;
        /* Overflow only matters when no later dimension is 0; note it and decide at the end. */
        if (__builtin_mul_overflow(numel, v, &numel) || numel > (uint64_t)INT64_MAX) overflow = 1;
    }
    for (; k < HLPT_ST_MAX_NDIM; k++) t->shape[k] = 0;
    for (int i = 0; i < nd; i++)
        if (t->shape[i] == 0) numel = 0, overflow = 0;
    uint64_t nbytes;
    if (overflow || __builtin_mul_overflow(numel, (uint64_t)dtypes[t->dtype].size, &nbytes) ||
        nbytes > SIZE_MAX)
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: tensor '%s': shape product overflows",
                        label, name);
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return hlpt_why(why, len, HLPT_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets missing or not [begin, end]", label, name);
    uint64_t b, en;
    if (!json_uint(off->child, &b) || !json_uint(off->child->next, &en))
        return hlpt_why(why, len, HLPT_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets are not non-negative integers", label, name);
    if (b > en)
        return hlpt_why(why, len, HLPT_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] begin after end", label, name,
                        (unsigned long long)b, (unsigned long long)en);
    if (en > data_size)
        return hlpt_why(why, len, HLPT_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] beyond the data section (%llu "
                        "bytes)",
                        label, name, (unsigned long long)b, (unsigned long long)en,
                        (unsigned long long)data_size);
    if (en - b != nbytes) {
        char s[128];
        return hlpt_why(why, len, HLPT_ERR_FORMAT,
                        "%s: tensor '%s': shape %s of %s needs %llu bytes, data_offsets give %llu",
                        label, name, hlpt_st_shape_str(s, sizeof s, nd, t->shape),
                        dtypes[t->dtype].name, (unsigned long long)nbytes,
                        (unsigned long long)(en - b));
    }
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)nbytes;
    t->data = data + b;
    return HLPT_OK;
}

static int parse_metadata(hlpt_st *st, const cJSON *m, const char *label, char *why, size_t len) {
    if (!cJSON_IsObject(m))
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: __metadata__ is not an object", label);
    for (const cJSON *v = m->child; v; v = v->next) {
        if (!cJSON_IsString(v))
            return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: __metadata__ '%s' is not a string",
                            label, v->string);
        if (grow((void **)&st->meta, &st->cap_meta, st->n_meta + 1, sizeof *st->meta))
            return hlpt_why(why, len, HLPT_ERR_NOMEM, "%s: out of memory", label);
        st_meta *e = &st->meta[st->n_meta];
        e->key = strdup(v->string);
        e->value = strdup(v->valuestring);
        st->n_meta++;
        if (!e->key || !e->value)
            return hlpt_why(why, len, HLPT_ERR_NOMEM, "%s: out of memory", label);
    }
    return HLPT_OK;
}

/* Validates the image of files[fi] and appends its tensors and metadata to st. On error st keeps
 * whatever was appended (hlpt_st_close frees it). */
static int parse_file(hlpt_st *st, int fi, char *why, size_t len) {
    const st_file *f = &st->files[fi];
    const char *label = f->label;
    if (f->size < 8)
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: %zu bytes, shorter than the 8-byte header "
                        "length", label, f->size);
    uint64_t hl;
    memcpy(&hl, f->base, 8);
    if (hl == 0) return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: header length is 0", label);
    if (hl > HEADER_MAX)
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: header length %llu is absurd (over 100 MB)",
                        label, (unsigned long long)hl);
    if (hl > f->size - 8)
        return hlpt_why(why, len, HLPT_ERR_FORMAT,
                        "%s: header length %llu is beyond the file (%zu bytes after the length)",
                        label, (unsigned long long)hl, f->size - 8);
    const unsigned char *hdr = f->base + 8;
    if (memchr(hdr, 0, hl))
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: header contains a NUL byte", label);
    if (!utf8_valid(hdr, hl))
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: header is not valid UTF-8", label);
    char *text = malloc(hl + 1);
    if (!text) return hlpt_why(why, len, HLPT_ERR_NOMEM, "%s: out of memory for the header", label);
    memcpy(text, hdr, hl);
    text[hl] = 0;
    const char *end = NULL;
    /* require_null_terminated: only whitespace (the padding) may follow the object. */
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    int rc = HLPT_OK;
    if (!root) {
        rc = hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: header is not valid JSON (at byte %ld)",
                      label, end ? (long)(end - text) : -1L);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        rc = hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: header is not a JSON object", label);
        goto out;
    }
    const unsigned char *data = hdr + hl;
    uint64_t data_size = f->size - 8 - hl;
    int first = st->n, seen_meta = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (seen_meta++) {
                rc = hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: __metadata__ appears twice", label);
                goto out;
            }
            if ((rc = parse_metadata(st, e, label, why, len))) goto out;
            continue;
        }
        if (grow((void **)&st->tensors, &st->cap, st->n + 1, sizeof *st->tensors) ||
            grow((void **)&st->file_of, &st->cap_of, st->n + 1, sizeof *st->file_of)) {
            rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "%s: out of memory", label);
            goto out;
        }
        hlpt_st_tensor *t = &st->tensors[st->n];
        memset(t, 0, sizeof *t);
        if ((rc = parse_entry(e, e->string, data, data_size, t, label, why, len))) goto out;
        if (!(t->name = strdup(e->string))) {
            rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "%s: out of memory", label);
            goto out;
        }
        st->file_of[st->n++] = fi;
    }
    rc = check_overlaps(st, first, label, why, len);
out:
    cJSON_Delete(root);
    free(text);
    return rc;
}

/* Adds a file record; takes label (freed even on error). */
static int add_file(hlpt_st *st, const void *base, size_t size, int mapped, char *label) {
    if (!label || grow((void **)&st->files, &st->cap_files, st->n_files + 1, sizeof *st->files)) {
        if (mapped) munmap((void *)base, size);
        free(label);
        return HLPT_ERR_NOMEM;
    }
    st->files[st->n_files++] = (st_file){base, size, mapped, label};
    return HLPT_OK;
}

int hlpt_st_open_mem(const void *buf, size_t n, hlpt_st **out, char *why, size_t len) {
    *out = NULL;
    hlpt_st *st = calloc(1, sizeof *st);
    if (!st) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    int rc = add_file(st, buf, n, 0, strdup("buffer"));
    if (rc) {
        rc = hlpt_why(why, len, rc, "out of memory");
        goto fail;
    }
    if ((rc = parse_file(st, 0, why, len)) || (rc = build_index(st, why, len))) goto fail;
    *out = st;
    return HLPT_OK;
fail:
    hlpt_st_close(st);
    return rc;
}

/* Maps path read-only into a new file record of st. */
static int map_file(hlpt_st *st, const char *path, const char *label, char *why, size_t len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return hlpt_why(why, len, errno == ENOENT ? HLPT_ERR_NOENT : HLPT_ERR_IO, "%s: %s", path,
                        strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int e = errno;
        close(fd);
        return hlpt_why(why, len, HLPT_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return hlpt_why(why, len, HLPT_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    void *base = NULL;
    /* mmap of 0 bytes fails; an empty file is still a file, rejected by parse_file. */
    if (size) {
        base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (base == MAP_FAILED) {
            int e = errno;
            close(fd);
            return hlpt_why(why, len, HLPT_ERR_IO, "%s: mmap: %s", path, strerror(e));
        }
    }
    close(fd);
    if (add_file(st, size ? base : "", size, size != 0, strdup(label)))
        return hlpt_why(why, len, HLPT_ERR_NOMEM, "%s: out of memory", path);
    return HLPT_OK;
}

/* Reads a whole small file into a NUL-terminated buffer (returns owned). */
static int read_text(const char *path, off_t max, char **out, size_t *n, char *why, size_t len) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return hlpt_why(why, len, errno == ENOENT ? HLPT_ERR_NOENT : HLPT_ERR_IO, "%s: %s", path,
                        strerror(errno));
    struct stat sb;
    int rc = HLPT_OK;
    char *buf = NULL;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        rc = hlpt_why(why, len, HLPT_ERR_IO, "%s: not a readable regular file", path);
        goto out;
    }
    if (sb.st_size > max) {
        rc = hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: %lld bytes is too large", path,
                      (long long)sb.st_size);
        goto out;
    }
    size_t size = (size_t)sb.st_size, got = 0;
    if (!(buf = malloc(size + 1))) {
        rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            rc = hlpt_why(why, len, HLPT_ERR_IO, "%s: read: %s", path, r ? strerror(errno) : "short");
            goto out;
        }
        got += (size_t)r;
    }
    buf[size] = 0;
    *n = size;
    *out = buf;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

static int shard_name_ok(const char *s) {
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Opens the shards of an index file; dir is the index's directory ("" or ending in '/'). */
static int open_index(hlpt_st *st, const char *index_path, const char *dir, char *why, size_t len) {
    char *text = NULL, *path = NULL;
    size_t n = 0;
    const char **shards = NULL;
    unsigned char *listed = NULL;
    cJSON *root = NULL;
    int n_shards = 0, cap_shards = 0;
    int rc = read_text(index_path, INDEX_MAX, &text, &n, why, len);
    if (rc) goto out;
    if (memchr(text, 0, n)) {
        rc = hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: contains a NUL byte", index_path);
        goto out;
    }
    const char *end = NULL;
    if (!(root = cJSON_ParseWithOpts(text, &end, 1)) || !cJSON_IsObject(root)) {
        rc = hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: not a JSON object (at byte %ld)", index_path,
                      root ? 0L : end ? (long)(end - text) : -1L);
        goto out;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        rc = hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: weight_map missing or not an object",
                      index_path);
        goto out;
    }
    /* The shards, in order of first appearance. */
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
            rc = hlpt_why(why, len, HLPT_ERR_FORMAT,
                          "%s: weight_map['%s'] is not a file name in the index's directory",
                          index_path, e->string);
            goto out;
        }
        int k = 0;
        while (k < n_shards && strcmp(shards[k], e->valuestring) != 0) k++;
        if (k < n_shards) continue;
        if (grow((void **)&shards, &cap_shards, n_shards + 1, sizeof *shards)) {
            rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "%s: out of memory", index_path);
            goto out;
        }
        shards[n_shards++] = e->valuestring;
    }
    if (!n_shards) {
        rc = hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: weight_map is empty", index_path);
        goto out;
    }
    for (int k = 0; k < n_shards; k++) {
        free(path);
        size_t pl = strlen(dir) + strlen(shards[k]) + 1;
        if (!(path = malloc(pl))) {
            rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "%s: out of memory", index_path);
            goto out;
        }
        snprintf(path, pl, "%s%s", dir, shards[k]);
        if ((rc = map_file(st, path, shards[k], why, len))) {
            if (rc == HLPT_ERR_NOENT)
                rc = hlpt_why(why, len, HLPT_ERR_NOENT, "%s: shard %s does not exist", index_path,
                              path);
            goto out;
        }
        if ((rc = parse_file(st, st->n_files - 1, why, len))) goto out;
    }
    if ((rc = build_index(st, why, len))) goto out;
    /* Every entry names a tensor in its shard, and every tensor is named once. */
    if (!(listed = calloc((size_t)st->n + 1, 1))) {
        rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "%s: out of memory", index_path);
        goto out;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        const hlpt_st_tensor *t = hlpt_st_find(st, e->string);
        int i = t ? (int)(t - st->tensors) : -1;
        if (!t || strcmp(st->files[st->file_of[i]].label, e->valuestring) != 0) {
            rc = hlpt_why(why, len, HLPT_ERR_NOENT, "%s: tensor '%s' is not in its shard %s",
                          index_path, e->string, e->valuestring);
            goto out;
        }
        if (listed[i]++) {
            rc = hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: tensor '%s' is listed twice", index_path,
                          e->string);
            goto out;
        }
    }
    for (int i = 0; i < st->n; i++)
        if (!listed[i]) {
            rc = hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: shard %s holds tensor '%s' the index does "
                          "not list", index_path, st->files[st->file_of[i]].label,
                          st->tensors[i].name);
            goto out;
        }
out:
    free(listed);
    free(path);
    free(shards);
    cJSON_Delete(root);
    free(text);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int hlpt_st_open(const char *path, hlpt_st **out, char *why, size_t len) {
    *out = NULL;
    char *dir = NULL, *p = NULL;
    hlpt_st *st = calloc(1, sizeof *st);
    if (!st) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    int rc;
    struct stat sb;
    if (stat(path, &sb) < 0) {
        rc = hlpt_why(why, len, errno == ENOENT ? HLPT_ERR_NOENT : HLPT_ERR_IO, "%s: %s", path,
                      strerror(errno));
        goto fail;
    }
    size_t pl = strlen(path) + 64;
    if (!(dir = malloc(pl)) || !(p = malloc(pl))) {
        rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (S_ISDIR(sb.st_mode)) {
        snprintf(dir, pl, "%s%s", path, ends_with(path, "/") ? "" : "/");
        snprintf(p, pl, "%smodel.safetensors", dir);
        if (access(p, F_OK) == 0) {
            if ((rc = map_file(st, p, p, why, len)) || (rc = parse_file(st, 0, why, len)) ||
                (rc = build_index(st, why, len)))
                goto fail;
        } else {
            snprintf(p, pl, "%smodel.safetensors.index.json", dir);
            if (access(p, F_OK) != 0) {
                rc = hlpt_why(why, len, HLPT_ERR_NOENT,
                              "%s: no model.safetensors or model.safetensors.index.json", path);
                goto fail;
            }
            if ((rc = open_index(st, p, dir, why, len))) goto fail;
        }
    } else if (ends_with(path, ".json")) {
        const char *slash = strrchr(path, '/');
        size_t dl = slash ? (size_t)(slash - path + 1) : 0;
        memcpy(dir, path, dl);
        dir[dl] = 0;
        if ((rc = open_index(st, path, dir, why, len))) goto fail;
    } else {
        if ((rc = map_file(st, path, path, why, len)) || (rc = parse_file(st, 0, why, len)) ||
            (rc = build_index(st, why, len)))
            goto fail;
    }
    free(dir);
    free(p);
    *out = st;
    return HLPT_OK;
fail:
    free(dir);
    free(p);
    hlpt_st_close(st);
    return rc;
}

void hlpt_st_release(const hlpt_st *st, const char *name) {
    const hlpt_st_tensor *t = hlpt_st_find(st, name);
    if (!t || !t->nbytes) return;
    int i = (int)(t - st->tensors);
    if (!st->files[st->file_of[i]].mapped) return;
    /* Whole pages inside the tensor only: a neighbour may still be needed. */
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)t->data + pg - 1) & ~(pg - 1), b = ((uintptr_t)t->data + t->nbytes) & ~(pg - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

int hlpt_st_get_f32(const hlpt_st *st, const char *name, int ndim, const int64_t *shape, float *dst,
                    char *why, size_t len) {
    const hlpt_st_tensor *t = hlpt_st_find(st, name);
    if (!t) return hlpt_why(why, len, HLPT_ERR_NOENT, "tensor '%s' is missing", name);
    char want[160], have[160];
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same)
        return hlpt_why(why, len, HLPT_ERR_MISMATCH, "tensor '%s': shape %s, expected %s", name,
                        hlpt_st_shape_str(have, sizeof have, t->ndim, t->shape),
                        hlpt_st_shape_str(want, sizeof want, ndim, shape));
    if (!hlpt_dtype_to_f32_ok(t->dtype))
        return hlpt_why(why, len,
                        t->dtype == HLPT_DTYPE_F8_E4M3 || t->dtype == HLPT_DTYPE_F8_E5M2
                            ? HLPT_ERR_UNSUPPORTED
                            : HLPT_ERR_MISMATCH,
                        "tensor '%s': dtype %s, expected a floating type (F32, BF16, F16)", name,
                        hlpt_dtype_name(t->dtype));
    return hlpt_st_to_f32(t, dst, why, len);
}

/* ---- writer ---- */

typedef struct {
    const char *name;
    hlpt_dtype dtype;
    int ndim;
    int64_t shape[HLPT_ST_MAX_NDIM];
    size_t nbytes;
    const void *data;
} wr_tensor;

struct hlpt_st_writer {
    wr_tensor *t;
    int n, cap;
    st_meta *meta;
    int n_meta, cap_meta;
};

int hlpt_st_writer_new(hlpt_st_writer **out) {
    *out = calloc(1, sizeof **out);
    return *out ? HLPT_OK : HLPT_ERR_NOMEM;
}

void hlpt_st_writer_free(hlpt_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->meta);
    free(w->t);
    free(w);
}

int hlpt_st_writer_add(hlpt_st_writer *w, const char *name, hlpt_dtype dtype, int ndim,
                       const int64_t *shape, const void *data) {
    if (!w || !name || strcmp(name, "__metadata__") == 0 || ndim < 0 || ndim > HLPT_ST_MAX_NDIM ||
        (unsigned)dtype >= HLPT_DTYPE_COUNT || (ndim && !shape))
        return HLPT_ERR_INVAL;
    wr_tensor t = {.name = name, .dtype = dtype, .ndim = ndim, .data = data};
    uint64_t n = 1;
    int zero = 0, overflow = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return HLPT_ERR_INVAL;
        t.shape[i] = shape[i];
        zero |= shape[i] == 0;
        overflow |= __builtin_mul_overflow(n, (uint64_t)shape[i], &n);
    }
    if (zero) n = 0;
    else if (overflow || __builtin_mul_overflow(n, (uint64_t)dtypes[dtype].size, &n) ||
             n > (uint64_t)INT64_MAX)
        return HLPT_ERR_INVAL;
    t.nbytes = (size_t)n;
    if (t.nbytes && !data) return HLPT_ERR_INVAL;
    if (grow((void **)&w->t, &w->cap, w->n + 1, sizeof *w->t)) return HLPT_ERR_NOMEM;
    w->t[w->n++] = t;
    return HLPT_OK;
}

int hlpt_st_writer_metadata(hlpt_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value) return HLPT_ERR_INVAL;
    char *v = strdup(value);
    if (!v) return HLPT_ERR_NOMEM;
    for (int i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[i].key, key) == 0) {
            free(w->meta[i].value);
            w->meta[i].value = v;
            return HLPT_OK;
        }
    char *k = strdup(key);
    if (!k || grow((void **)&w->meta, &w->cap_meta, w->n_meta + 1, sizeof *w->meta)) {
        free(k);
        free(v);
        return HLPT_ERR_NOMEM;
    }
    w->meta[w->n_meta++] = (st_meta){k, v};
    return HLPT_OK;
}

static int cmp_wr(const void *a, const void *b) {
    const wr_tensor *x = a, *y = b;
    if (x->dtype != y->dtype) return dtype_rank[y->dtype] - dtype_rank[x->dtype];
    return strcmp(x->name, y->name);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_meta(const void *a, const void *b) {
    return strcmp(((const st_meta *)a)->key, ((const st_meta *)b)->key);
}

/* A growing byte buffer for the header; a failed append sets oom and drops the rest. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) sb_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* A JSON string as serde_json writes it: quote, backslash and control bytes escaped; the rest,
 * UTF-8 included, as is. */
static void sb_json_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        }
        if (esc) sb_put(b, esc, strlen(esc));
        else if (c < 0x20) sb_printf(b, "\\u%04x", c);
        else sb_put(b, (const char *)&c, 1);
    }
    sb_put(b, "\"", 1);
}

/* Sorts the tensors, checks names, and builds the 8-byte length + padded header in *hdr. */
static int build_header(hlpt_st_writer *w, sbuf *hdr, uint64_t *data_size, char *why, size_t len) {
    /* qsort's array may not be NULL even when empty. */
    if (w->n) qsort(w->t, (size_t)w->n, sizeof *w->t, cmp_wr);
    if (w->n_meta) qsort(w->meta, (size_t)w->n_meta, sizeof *w->meta, cmp_meta);
    /* Equal names sort apart when their dtypes differ, so duplicates need a sorted name list. */
    const char **names = malloc(((size_t)w->n + 1) * sizeof *names);
    if (!names) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < w->n; i++) names[i] = w->t[i].name;
    if (w->n) qsort(names, (size_t)w->n, sizeof *names, cmp_str);
    for (int i = 1; i < w->n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) {
            int rc = hlpt_why(why, len, HLPT_ERR_EXISTS, "tensor '%s' added twice", names[i]);
            free(names);
            return rc;
        }
    free(names);
    sb_put(hdr, "01234567", 8); /* the length, filled in below */
    sb_put(hdr, "{", 1);
    int comma = 0;
    if (w->n_meta) {
        sb_put(hdr, "\"__metadata__\":{", 16);
        for (int i = 0; i < w->n_meta; i++) {
            if (i) sb_put(hdr, ",", 1);
            sb_json_str(hdr, w->meta[i].key);
            sb_put(hdr, ":", 1);
            sb_json_str(hdr, w->meta[i].value);
        }
        sb_put(hdr, "}", 1);
        comma = 1;
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const wr_tensor *t = &w->t[i];
        if (comma) sb_put(hdr, ",", 1);
        comma = 1;
        sb_json_str(hdr, t->name);
        sb_printf(hdr, ":{\"dtype\":\"%s\",\"shape\":[", dtypes[t->dtype].name);
        for (int k = 0; k < t->ndim; k++) sb_printf(hdr, "%s%lld", k ? "," : "", (long long)t->shape[k]);
        sb_printf(hdr, "],\"data_offsets\":[%llu,", (unsigned long long)off);
        off += t->nbytes;
        sb_printf(hdr, "%llu]}", (unsigned long long)off);
    }
    sb_put(hdr, "}", 1);
    while ((hdr->n - 8) % 8) sb_put(hdr, " ", 1);
    if (hdr->oom) return hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory for the header");
    uint64_t hl = hdr->n - 8;
    memcpy(hdr->p, &hl, 8);
    *data_size = off;
    return HLPT_OK;
}

int hlpt_st_writer_to_mem(hlpt_st_writer *w, void **buf, size_t *n, char *why, size_t len) {
    *buf = NULL;
    *n = 0;
    sbuf hdr = {0};
    uint64_t ds;
    int rc = build_header(w, &hdr, &ds, why, len);
    if (rc) goto out;
    if (ds > SIZE_MAX - hdr.n) {
        rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "%llu bytes do not fit in memory",
                      (unsigned long long)ds);
        goto out;
    }
    unsigned char *p = malloc(hdr.n + ds ? hdr.n + ds : 1);
    if (!p) {
        rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory for %llu bytes",
                      (unsigned long long)(hdr.n + ds));
        goto out;
    }
    memcpy(p, hdr.p, hdr.n);
    size_t o = hdr.n;
    for (int i = 0; i < w->n; i++) {
        if (w->t[i].nbytes) memcpy(p + o, w->t[i].data, w->t[i].nbytes);
        o += w->t[i].nbytes;
    }
    *buf = p;
    *n = o;
out:
    free(hdr.p);
    return rc;
}

static int write_all(int fd, const void *p, size_t n) {
    const unsigned char *c = p;
    while (n) {
        /* Linux writes at most ~2 GB per call; larger requests come back short and loop. */
        ssize_t r = write(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return r < 0 ? errno : EIO;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

int hlpt_st_writer_write(hlpt_st_writer *w, const char *path, char *why, size_t len) {
    sbuf hdr = {0};
    uint64_t ds;
    char *tmp = NULL, *dir = NULL;
    int fd = -1;
    int rc = build_header(w, &hdr, &ds, why, len);
    if (rc) goto out;
    size_t pl = strlen(path);
    if (!(tmp = malloc(pl + 16)) || !(dir = malloc(pl + 2))) {
        rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
        goto out;
    }
    snprintf(tmp, pl + 16, "%s.tmp.XXXXXX", path);
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        rc = hlpt_why(why, len, HLPT_ERR_IO, "%s: cannot create a temporary file: %s", path,
                      strerror(errno));
        free(tmp);
        tmp = NULL; /* nothing to unlink */
        goto out;
    }
    int e = fchmod(fd, 0644) < 0 ? errno : 0;
    if (!e) e = write_all(fd, hdr.p, hdr.n);
    for (int i = 0; !e && i < w->n; i++)
        if (w->t[i].nbytes) e = write_all(fd, w->t[i].data, w->t[i].nbytes);
    if (!e && fsync(fd) < 0) e = errno;
    if (close(fd) < 0 && !e) e = errno;
    fd = -1;
    if (!e && rename(tmp, path) < 0) e = errno;
    if (e) {
        rc = hlpt_why(why, len, HLPT_ERR_IO, "%s: %s", path, strerror(e));
        goto out;
    }
    free(tmp);
    tmp = NULL;
    /* The rename is durable once the directory entry is; a failure here loses nothing written. */
    const char *slash = strrchr(path, '/');
    if (slash) {
        memcpy(dir, path, (size_t)(slash - path) + 1);
        dir[slash - path + 1] = 0;
    } else
        strcpy(dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
out:
    if (fd >= 0) close(fd);
    if (tmp) unlink(tmp);
    free(tmp);
    free(dir);
    free(hdr.p);
    return rc;
}
