/*
 * tokenizer.c - HF tokenizer.json: loading, BPE encoding, decoding.
 *
 * Design. Loading turns the JSON into immutable tables:
 *   - id -> piece (NUL-terminated strings in one arena; added tokens override), a special flag per id;
 *   - model vocab piece -> id: open addressing over ids, keyed by the piece bytes (FNV-1a);
 *   - merges (left id, right id) -> (rank, merged id): open addressing over a 64-bit key;
 *   - three step lists, normalizer, pre-tokenizer and decoder, with HF's Sequence nesting flattened.
 * Encoding mirrors HF: the text is cut at added tokens (leftmost-longest, special ones only when
 * asked); each remaining segment is normalized, split by the pre-tokenizer steps into pieces, and each
 * piece is encoded by BPE. BPE follows HF's `Word::merge_all`: symbols in a linked list, candidate
 * merges in a binary min-heap ordered by (rank, position), stale heap entries recognised when popped,
 * so a word of n symbols costs O(n log n). Decoding maps ids to pieces and runs the decoder steps over
 * the list of piece strings, each step exactly as HF's `decode_chain`.
 * A step list transforms a `plist` (pieces as spans of one byte buffer) into another, so every stage
 * is a loop over steps with two buffers swapped; all per-call memory lives in those buffers and the
 * BPE scratch, never in the tokenizer, which makes a shared tokenizer safe across threads.
 */
#include "hlpt/tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "hlpt/err.h"

/* Ids above this are refused: a lying file must not make us allocate gigabytes. */
#define MAX_ID (1 << 24)
/* Nesting of Sequence components. */
#define MAX_DEPTH 8

/* GPT-2's pre-tokenization regex, used by ByteLevel with use_regex (HF's default). */
static const char gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ------------------------------------------------------------------------------------------------ */
/* Tables */

enum step_type {
    ST_PREPEND,       /* normalizer: prepend a to a non-empty segment */
    ST_REPLACE,       /* normalizer or decoder: replace every a by b */
    ST_NFC,           /* normalizer: identity (see the header) */
    ST_SPLIT,         /* pre-tokenizer: regex (re) or literal (a) split with a behaviour */
    ST_BYTE_LEVEL,    /* pre-tokenizer (prefix space, optional GPT-2 regex, byte map) or decoder */
    ST_METASPACE,     /* pre-tokenizer or decoder, replacement a */
    ST_BYTE_FALLBACK, /* decoder */
    ST_FUSE,          /* decoder */
    ST_STRIP,         /* decoder: strip up to start/stop copies of a */
};

enum split_behavior { SB_REMOVED, SB_ISOLATED, SB_MERGED_PREV, SB_MERGED_NEXT, SB_CONTIGUOUS };
static const char *const split_behavior_names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                                   "MergedWithNext", "Contiguous"};
_Static_assert(sizeof split_behavior_names / sizeof split_behavior_names[0] == SB_CONTIGUOUS + 1,
               "one name per split behaviour");

enum prepend_scheme { PS_ALWAYS, PS_FIRST, PS_NEVER };

typedef struct {
    enum step_type type;
    char *a;                 /* owned: Prepend text, Replace pattern, Split literal, Metaspace replacement,
                                Strip content */
    size_t an;
    char *b;                 /* owned: Replace content */
    size_t bn;
    pcre2_code *re;          /* owned: Split regex, ByteLevel's GPT-2 regex; NULL if none */
    int behavior;            /* Split: enum split_behavior */
    int invert;              /* Split */
    int prefix_space;        /* ByteLevel pre-tokenizer: add_prefix_space */
    int scheme;              /* Metaspace: enum prepend_scheme */
    int split;               /* Metaspace pre-tokenizer: split on the replacement */
    int start, stop;         /* Strip */
} step;

typedef struct {
    step *v;
    int n, cap;
} step_list;

typedef struct {
    int id;
    const char *content;     /* into the arena */
    size_t len;
    unsigned char special, lstrip, rstrip, single_word, normalized;
} added_token;

/* A byte's character in the byte-level alphabet, UTF-8 encoded (1 or 2 bytes). */
typedef struct { char s[2]; unsigned char n; } byte_char;

typedef struct {
    uint64_t key;            /* (uint64_t)left << 32 | right */
    int32_t rank;            /* index in `merges` */
    int32_t new_id;          /* -1: empty slot */
} merge_slot;

struct hlpt_tokenizer {
    hlpt_tokenizer_kind kind;
    int n_ids;               /* highest id + 1 */
    char *arena;             /* every piece string, NUL-terminated */
    const char **pieces;     /* [n_ids] added content or model piece; NULL for a hole */
    uint32_t *piece_lens;    /* [n_ids] */
    unsigned char *special;  /* [n_ids] */
    const char **mpieces;    /* [n_ids] model vocab pieces only; NULL if not in the model vocab */
    uint32_t *mpiece_lens;   /* [n_ids] */
    int32_t *vmap;           /* model piece -> id, open addressing, -1 empty */
    uint32_t vmap_mask;
    merge_slot *mmap;
    uint32_t mmap_mask;
    int unk_id;              /* -1: unknown characters are dropped, as HF does without unk_token */
    int fuse_unk, byte_fallback, ignore_merges;
    int byte_ids[256];       /* id of "<0xNN>", -1 if absent */
    added_token *added;      /* [n_added] sorted by first byte, then longest first */
    int n_added;
    int added_first[257];    /* added[added_first[b] .. added_first[b+1]) start with byte b */
    step_list norm, pre, dec;
    int has_decoder;
    byte_char bchars[256];   /* byte -> its byte-level character */
    int16_t cp_byte[324];    /* byte-level character (code point < 324) -> byte, -1 if none */
};

/* ------------------------------------------------------------------------------------------------ */
/* UTF-8 */

/* Length of the sequence a lead byte announces, 0 for a byte that cannot lead. */
static int utf8_seq_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Length of the valid sequence at s[0..n), 0 if it is not valid. Ranges per Unicode table 3-7. */
static size_t utf8_valid_at(const unsigned char *s, size_t n) {
    int k = utf8_seq_len(s[0]);
    if (k == 0 || (size_t)k > n) return 0;
    if (k == 1) return 1;
    unsigned char lo = 0x80, hi = 0xBF;
    if (s[0] == 0xE0) lo = 0xA0;
    else if (s[0] == 0xED) hi = 0x9F;
    else if (s[0] == 0xF0) lo = 0x90;
    else if (s[0] == 0xF4) hi = 0x8F;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < k; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return (size_t)k;
}

/* Offset of the first invalid byte, n if all valid. */
static size_t utf8_check(const char *text, size_t n) {
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        size_t k = utf8_valid_at(s + i, n - i);
        if (!k) return i;
        i += k;
    }
    return n;
}

static uint32_t utf8_decode(const unsigned char *s, size_t *k) {
    int n = utf8_seq_len(s[0]);
    *k = n ? (size_t)n : 1;
    switch (n) {
    case 2: return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3: return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    case 4:
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
               ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    default: return s[0];
    }
}

static size_t utf8_encode(uint32_t c, char *out) {
    if (c < 0x80) { out[0] = (char)c; return 1; }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Rust's char::is_whitespace (the White_Space property). */
static int is_unicode_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Word character for single_word: ASCII alnum or '_', or any non-ASCII non-space (approximation). */
static int is_word_char(uint32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    return !is_unicode_space(c);
}

/* Start of the character that ends at s[end). */
static size_t utf8_prev(const char *s, size_t end) {
    size_t i = end - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

/* ------------------------------------------------------------------------------------------------ */
/* Byte-level alphabet (GPT-2 bytes_to_unicode): printable bytes stand for themselves, the other 68
 * map to U+0100.. in byte order. */

static uint32_t byte_to_cp(unsigned b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    unsigned k = 0;
    for (unsigned i = 0; i < b; i++)
        if (!((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174)) k++;
    return 256 + k;
}

static void byte_tables(hlpt_tokenizer *t) {
    for (int c = 0; c < 324; c++) t->cp_byte[c] = -1;
    for (unsigned b = 0; b < 256; b++) {
        char tmp[4];
        uint32_t c = byte_to_cp(b);
        t->bchars[b].n = (unsigned char)utf8_encode(c, tmp);
        memcpy(t->bchars[b].s, tmp, t->bchars[b].n);
        t->cp_byte[c] = (int16_t)b;
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* Growable buffers and piece lists (per call) */

typedef struct { char *p; size_t n, cap; } buf;

static int buf_reserve(buf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_add(buf *b, const void *s, size_t n) {
    if (buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

typedef struct { size_t off, len; int first; } span;
typedef struct { buf text; span *v; size_t n, cap; } plist;

static void plist_reset(plist *l) { l->text.n = 0; l->n = 0; }
static void plist_free(plist *l) { free(l->text.p); free(l->v); }

/* Appends a new empty piece; its bytes are what buf_add puts into l->text until the next call.
 * Pieces are read as text.p + off, so the buffer exists even while every piece is empty (NULL + 0
 * is undefined behaviour, which the tokenizer fuzzer's UBSan stops on). */
static int plist_open(plist *l, int first) {
    if (buf_reserve(&l->text, 0)) return -1;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        span *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (span){l->text.n, 0, first};
    return 0;
}

static int plist_put(plist *l, const char *s, size_t n) {
    if (buf_add(&l->text, s, n)) return -1;
    l->v[l->n - 1].len += n;
    return 0;
}

static int plist_add(plist *l, const char *s, size_t n, int first) {
    return plist_open(l, first) || plist_put(l, s, n) ? -1 : 0;
}

typedef struct { int *v; size_t n, cap; } ivec;

static int ivec_push(ivec *a, int x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        int *v = realloc(a->v, cap * sizeof *v);
        if (!v) return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* Hash maps */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint32_t table_size(size_t count) {
    uint32_t cap = 16;
    while (cap < 2 * count) cap *= 2;
    return cap;
}

static int vocab_find(const hlpt_tokenizer *t, const char *s, size_t n) {
    uint32_t i = (uint32_t)hash_bytes(s, n) & t->vmap_mask;
    for (;;) {
        int32_t id = t->vmap[i];
        if (id < 0) return -1;
        if (t->mpiece_lens[id] == n && memcmp(t->mpieces[id], s, n) == 0) return id;
        i = (i + 1) & t->vmap_mask;
    }
}

static const merge_slot *merge_find(const hlpt_tokenizer *t, int a, int b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t i = (uint32_t)mix64(key) & t->mmap_mask;
    for (;;) {
        const merge_slot *m = &t->mmap[i];
        if (m->new_id < 0) return NULL;
        if (m->key == key) return m;
        i = (i + 1) & t->mmap_mask;
    }
}

/* Inserts or overwrites (a later duplicate merge wins, as in HF's HashMap collect). */
static void merge_put(hlpt_tokenizer *t, int a, int b, int rank, int new_id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t i = (uint32_t)mix64(key) & t->mmap_mask;
    while (t->mmap[i].new_id >= 0 && t->mmap[i].key != key) i = (i + 1) & t->mmap_mask;
    t->mmap[i] = (merge_slot){key, rank, new_id};
}

/* ------------------------------------------------------------------------------------------------ */
/* Freeing */

static void steps_free(step_list *l) {
    for (int i = 0; i < l->n; i++) {
        free(l->v[i].a);
        free(l->v[i].b);
        pcre2_code_free(l->v[i].re);
    }
    free(l->v);
}

void hlpt_tokenizer_free(hlpt_tokenizer *t) {
    if (!t) return;
    free(t->arena);
    free(t->pieces);
    free(t->piece_lens);
    free(t->special);
    free(t->mpieces);
    free(t->mpiece_lens);
    free(t->vmap);
    free(t->mmap);
    free(t->added);
    steps_free(&t->norm);
    steps_free(&t->pre);
    steps_free(&t->dec);
    free(t);
}

/* ------------------------------------------------------------------------------------------------ */
/* JSON helpers: each names the field in why. */

/* A string field; NULL and OK when absent and optional (null counts as absent). */
static int json_str(const cJSON *o, const char *key, int required, const char *where, const char **out,
                    char *why, size_t len) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) {
        if (required) return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: missing \"%s\"", where, key);
        return HLPT_OK;
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s.%s: expected a string", where, key);
    *out = v->valuestring;
    return HLPT_OK;
}

static int json_bool(const cJSON *o, const char *key, int dflt, const char *where, int *out, char *why,
                     size_t len) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = dflt;
    if (!v || cJSON_IsNull(v)) return HLPT_OK;
    if (!cJSON_IsBool(v)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s.%s: expected true or false", where, key);
    *out = cJSON_IsTrue(v);
    return HLPT_OK;
}

/* An integer in [lo, hi]. */
static int json_int(const cJSON *v, long lo, long hi, const char *what, long *out, char *why, size_t len) {
    if (!cJSON_IsNumber(v)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: expected an integer", what);
    /* Range first: converting an out-of-range double to long is undefined. */
    if (!(v->valuedouble >= (double)lo && v->valuedouble <= (double)hi))
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: %g is outside [%ld, %ld]", what, v->valuedouble, lo, hi);
    if (v->valuedouble != (double)(long)v->valuedouble)
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: %g is not an integer", what, v->valuedouble);
    *out = (long)v->valuedouble;
    return HLPT_OK;
}

/* Reads a pattern object {"String": s} or {"Regex": r}. */
static int json_pattern(const cJSON *o, const char *where, const char **s, int *is_regex, char *why, size_t len) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    if (!cJSON_IsObject(p)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s.pattern: expected an object", where);
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(p, "String"))) *is_regex = 0;
    else if ((v = cJSON_GetObjectItemCaseSensitive(p, "Regex"))) *is_regex = 1;
    else return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s.pattern: expected \"String\" or \"Regex\"", where);
    if (!cJSON_IsString(v) || !v->valuestring)
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s.pattern: expected a string", where);
    *s = v->valuestring;
    return HLPT_OK;
}

static char *dup_str(const char *s, size_t *n) {
    *n = strlen(s);
    char *p = malloc(*n + 1);
    if (p) memcpy(p, s, *n + 1);
    return p;
}

static int compile_regex(const char *pat, uint32_t options, const char *where, pcre2_code **out, char *why,
                         size_t len) {
    int code;
    PCRE2_SIZE off;
    *out = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | options, &code, &off,
                         NULL);
    if (!*out) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: regex does not compile at offset %zu: %s", where,
                        (size_t)off, (const char *)msg);
    }
    /* JIT is an optimisation: without it (no JIT support, out of memory) matching still works. */
    (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE);
    return HLPT_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* Components -> steps */

enum stage { STAGE_NORM, STAGE_PRE, STAGE_DEC };
static const char *const stage_names[] = {"normalizer", "pre_tokenizer", "decoder"};
static const char *const stage_seq_keys[] = {"normalizers", "pretokenizers", "decoders"};

static int steps_push(step_list *l, step **out) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 4;
        step *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return HLPT_ERR_NOMEM;
        l->v = v;
        l->cap = cap;
    }
    *out = &l->v[l->n++];
    memset(*out, 0, sizeof **out);
    return HLPT_OK;
}

/* A one-character string field (Metaspace replacement, Strip content). */
static int json_char(const cJSON *o, const char *key, const char *where, step *s, char *why, size_t len) {
    const char *v;
    int rc = json_str(o, key, 1, where, &v, why, len);
    if (rc) return rc;
    size_t n = strlen(v);
    if (n == 0 || utf8_valid_at((const unsigned char *)v, n) != n)
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s.%s: expected one character", where, key);
    s->a = dup_str(v, &s->an);
    return s->a ? HLPT_OK : HLPT_ERR_NOMEM;
}

static int parse_component(hlpt_tokenizer *t, enum stage stage, const cJSON *j, const char *where, int depth,
                           char *why, size_t len) {
    step_list *list = stage == STAGE_NORM ? &t->norm : stage == STAGE_PRE ? &t->pre : &t->dec;
    if (!cJSON_IsObject(j)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: expected an object", where);
    const char *type;
    int rc = json_str(j, "type", 1, where, &type, why, len);
    if (rc) return rc;
    step *s;

    if (strcmp(type, "Sequence") == 0) {
        if (depth >= MAX_DEPTH) return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: Sequence nested too deeply", where);
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, stage_seq_keys[stage]);
        if (!cJSON_IsArray(arr))
            return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s.%s: expected an array", where, stage_seq_keys[stage]);
        int i = 0;
        for (const cJSON *c = arr->child; c; c = c->next, i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.%s[%d]", where, stage_seq_keys[stage], i);
            if ((rc = parse_component(t, stage, c, sub, depth + 1, why, len))) return rc;
        }
        return HLPT_OK;
    }

    if (stage == STAGE_NORM && strcmp(type, "Prepend") == 0) {
        const char *v;
        if ((rc = json_str(j, "prepend", 1, where, &v, why, len))) return rc;
        if ((rc = steps_push(list, &s))) return rc;
        s->type = ST_PREPEND;
        return (s->a = dup_str(v, &s->an)) ? HLPT_OK : HLPT_ERR_NOMEM;
    }
    if (stage == STAGE_NORM && strcmp(type, "NFC") == 0) {
        if ((rc = steps_push(list, &s))) return rc;
        s->type = ST_NFC;
        return HLPT_OK;
    }
    if ((stage == STAGE_NORM || stage == STAGE_DEC) && strcmp(type, "Replace") == 0) {
        const char *pat, *content;
        int is_regex;
        if ((rc = json_pattern(j, where, &pat, &is_regex, why, len))) return rc;
        if (is_regex)
            return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "%s: Replace with a Regex pattern is not supported", where);
        if (!*pat) return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s.pattern: empty string", where);
        if ((rc = json_str(j, "content", 1, where, &content, why, len))) return rc;
        if ((rc = steps_push(list, &s))) return rc;
        s->type = ST_REPLACE;
        s->a = dup_str(pat, &s->an);
        s->b = dup_str(content, &s->bn);
        return s->a && s->b ? HLPT_OK : HLPT_ERR_NOMEM;
    }
    if (stage == STAGE_PRE && strcmp(type, "Split") == 0) {
        const char *pat, *beh;
        int is_regex, invert;
        if ((rc = json_pattern(j, where, &pat, &is_regex, why, len))) return rc;
        if ((rc = json_str(j, "behavior", 1, where, &beh, why, len))) return rc;
        if ((rc = json_bool(j, "invert", 0, where, &invert, why, len))) return rc;
        int b = -1;
        for (int i = 0; i <= SB_CONTIGUOUS; i++)
            if (strcmp(beh, split_behavior_names[i]) == 0) b = i;
        if (b < 0) return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "%s: split behavior \"%s\" is not supported", where, beh);
        if (!*pat) return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s.pattern: empty pattern", where);
        if ((rc = steps_push(list, &s))) return rc;
        s->type = ST_SPLIT;
        s->behavior = b;
        s->invert = invert;
        if (is_regex) return compile_regex(pat, 0, where, &s->re, why, len);
        return (s->a = dup_str(pat, &s->an)) ? HLPT_OK : HLPT_ERR_NOMEM;
    }
    if (stage == STAGE_PRE && strcmp(type, "Digits") == 0) {
        int individual;
        if ((rc = json_bool(j, "individual_digits", 0, where, &individual, why, len))) return rc;
        if ((rc = steps_push(list, &s))) return rc;
        /* HF splits on char::is_numeric (\p{N}), Isolated for single digits, Contiguous for runs. */
        s->type = ST_SPLIT;
        s->behavior = SB_ISOLATED;
        return compile_regex(individual ? "\\p{N}" : "\\p{N}+", 0, where, &s->re, why, len);
    }
    if ((stage == STAGE_PRE || stage == STAGE_DEC) && strcmp(type, "ByteLevel") == 0) {
        int prefix, use_regex;
        if ((rc = json_bool(j, "add_prefix_space", 1, where, &prefix, why, len))) return rc;
        if ((rc = json_bool(j, "use_regex", 1, where, &use_regex, why, len))) return rc;
        if ((rc = steps_push(list, &s))) return rc;
        s->type = ST_BYTE_LEVEL;
        if (stage == STAGE_PRE) {
            t->kind = HLPT_TOKENIZER_BYTE_LEVEL;
            s->prefix_space = prefix;
            if (use_regex) return compile_regex(gpt2_regex, 0, where, &s->re, why, len);
        }
        return HLPT_OK;
    }
    if ((stage == STAGE_PRE || stage == STAGE_DEC) && strcmp(type, "Metaspace") == 0) {
        const char *scheme;
        int prefix, split;
        if ((rc = steps_push(list, &s))) return rc;
        if ((rc = json_char(j, "replacement", where, s, why, len))) return rc;
        if ((rc = json_str(j, "prepend_scheme", 0, where, &scheme, why, len))) return rc;
        if ((rc = json_bool(j, "add_prefix_space", 1, where, &prefix, why, len))) return rc;
        if ((rc = json_bool(j, "split", 1, where, &split, why, len))) return rc;
        s->type = ST_METASPACE;
        s->split = stage == STAGE_PRE && split;
        if (!scheme) s->scheme = prefix ? PS_ALWAYS : PS_NEVER;
        else if (strcmp(scheme, "always") == 0) s->scheme = PS_ALWAYS;
        else if (strcmp(scheme, "first") == 0) s->scheme = PS_FIRST;
        else if (strcmp(scheme, "never") == 0) s->scheme = PS_NEVER;
        else return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "%s: prepend_scheme \"%s\" is not supported", where, scheme);
        return HLPT_OK;
    }
    if (stage == STAGE_DEC && (strcmp(type, "ByteFallback") == 0 || strcmp(type, "Fuse") == 0)) {
        if ((rc = steps_push(list, &s))) return rc;
        s->type = type[0] == 'B' ? ST_BYTE_FALLBACK : ST_FUSE;
        return HLPT_OK;
    }
    if (stage == STAGE_DEC && strcmp(type, "Strip") == 0) {
        long start, stop;
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "start"), *je = cJSON_GetObjectItemCaseSensitive(j, "stop");
        char what[300];
        snprintf(what, sizeof what, "%s.start", where);
        if ((rc = json_int(js, 0, 1 << 20, what, &start, why, len))) return rc;
        snprintf(what, sizeof what, "%s.stop", where);
        if ((rc = json_int(je, 0, 1 << 20, what, &stop, why, len))) return rc;
        if (steps_push(list, &s)) return HLPT_ERR_NOMEM;
        if ((rc = json_char(j, "content", where, s, why, len))) return rc;
        s->type = ST_STRIP;
        s->start = (int)start;
        s->stop = (int)stop;
        return HLPT_OK;
    }
    return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "%s: %s \"%s\" is not supported", where, stage_names[stage], type);
}

/* ------------------------------------------------------------------------------------------------ */
/* Model and added tokens */

static int parse_model(hlpt_tokenizer *t, const cJSON *model, const cJSON *added, char *why, size_t len) {
    int rc;
    if (!cJSON_IsObject(model)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "model: expected an object");
    const char *type;
    if ((rc = json_str(model, "type", 0, "model", &type, why, len))) return rc;
    if (type && strcmp(type, "BPE") != 0)
        return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "model: type \"%s\" is not supported (BPE only)", type);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "model.vocab: expected an object");
    if (!merges || cJSON_IsNull(merges)) merges = NULL;
    else if (!cJSON_IsArray(merges)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "model.merges: expected an array");
    const char *s;
    if ((rc = json_str(model, "continuing_subword_prefix", 0, "model", &s, why, len))) return rc;
    if (s && *s) return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "model: continuing_subword_prefix is not supported");
    if ((rc = json_str(model, "end_of_word_suffix", 0, "model", &s, why, len))) return rc;
    if (s && *s) return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED, "model: end_of_word_suffix is not supported");
    if ((rc = json_bool(model, "fuse_unk", 0, "model", &t->fuse_unk, why, len))) return rc;
    if ((rc = json_bool(model, "byte_fallback", 0, "model", &t->byte_fallback, why, len))) return rc;
    if ((rc = json_bool(model, "ignore_merges", 0, "model", &t->ignore_merges, why, len))) return rc;
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !cJSON_IsNumber(dropout))
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "model.dropout: expected a number or null");
    if (!cJSON_IsArray(added) && added && !cJSON_IsNull(added))
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "added_tokens: expected an array");
    if (added && !cJSON_IsArray(added)) added = NULL;

    /* First pass: sizes, types and the highest id. */
    size_t n_vocab = 0, bytes = 0;
    long max_id = -1;
    for (const cJSON *v = vocab->child; v; v = v->next) {
        long id;
        char what[128];
        snprintf(what, sizeof what, "model.vocab[\"%.60s\"]", v->string ? v->string : "");
        if ((rc = json_int(v, 0, MAX_ID - 1, what, &id, why, len))) return rc;
        if (id > max_id) max_id = id;
        bytes += strlen(v->string) + 1;
        n_vocab++;
    }
    int n_added = 0;
    if (added) {
        int i = 0;
        for (const cJSON *a = added->child; a; a = a->next, i++) {
            char where[64];
            snprintf(where, sizeof where, "added_tokens[%d]", i);
            if (!cJSON_IsObject(a)) return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s: expected an object", where);
            const char *content;
            long id;
            if ((rc = json_str(a, "content", 1, where, &content, why, len))) return rc;
            char what[96];
            snprintf(what, sizeof what, "%s.id", where);
            if ((rc = json_int(cJSON_GetObjectItemCaseSensitive(a, "id"), 0, MAX_ID - 1, what, &id, why, len))) return rc;
            if (utf8_check(content, strlen(content)) != strlen(content))
                return hlpt_why(why, len, HLPT_ERR_FORMAT, "%s.content: invalid UTF-8", where);
            if (id > max_id) max_id = id;
            bytes += strlen(content) + 1;
            n_added++;
        }
    }
    t->n_ids = (int)(max_id + 1);
    size_t n_ids = (size_t)t->n_ids;
    t->arena = malloc(bytes ? bytes : 1);
    t->pieces = calloc(n_ids ? n_ids : 1, sizeof *t->pieces);
    t->piece_lens = calloc(n_ids ? n_ids : 1, sizeof *t->piece_lens);
    t->special = calloc(n_ids ? n_ids : 1, 1);
    t->mpieces = calloc(n_ids ? n_ids : 1, sizeof *t->mpieces);
    t->mpiece_lens = calloc(n_ids ? n_ids : 1, sizeof *t->mpiece_lens);
    uint32_t vcap = table_size(n_vocab);
    t->vmap = malloc(vcap * sizeof *t->vmap);
    t->vmap_mask = vcap - 1;
    size_t n_merges = merges ? (size_t)cJSON_GetArraySize(merges) : 0;
    uint32_t mcap = table_size(n_merges);
    t->mmap = malloc(mcap * sizeof *t->mmap);
    t->mmap_mask = mcap - 1;
    t->added = calloc(n_added ? (size_t)n_added : 1, sizeof *t->added);
    if (!t->arena || !t->pieces || !t->piece_lens || !t->special || !t->mpieces || !t->mpiece_lens || !t->vmap ||
        !t->mmap || !t->added)
        return hlpt_why(why, len, HLPT_ERR_NOMEM, "tokenizer tables of %zu ids", n_ids);
    memset(t->vmap, 0xff, vcap * sizeof *t->vmap);
    for (uint32_t i = 0; i < mcap; i++) t->mmap[i] = (merge_slot){0, 0, -1};

    /* Second pass: the model vocab. */
    char *p = t->arena;
    for (const cJSON *v = vocab->child; v; v = v->next) {
        int id = (int)v->valuedouble;
        size_t n = strlen(v->string);
        if (t->mpieces[id])
            return hlpt_why(why, len, HLPT_ERR_FORMAT, "model.vocab: id %d given to both \"%.60s\" and \"%.60s\"", id,
                            t->mpieces[id], v->string);
        if (n == 0) return hlpt_why(why, len, HLPT_ERR_FORMAT, "model.vocab: empty piece for id %d", id);
        if (utf8_check(v->string, n) != n)
            return hlpt_why(why, len, HLPT_ERR_FORMAT, "model.vocab: piece for id %d is not valid UTF-8", id);
        if (vocab_find(t, v->string, n) >= 0)
            return hlpt_why(why, len, HLPT_ERR_FORMAT, "model.vocab: \"%.60s\" given twice", v->string);
        memcpy(p, v->string, n + 1);
        t->mpieces[id] = t->pieces[id] = p;
        t->mpiece_lens[id] = t->piece_lens[id] = (uint32_t)n;
        p += n + 1;
        uint32_t i = (uint32_t)hash_bytes(v->string, n) & t->vmap_mask;
        while (t->vmap[i] >= 0) i = (i + 1) & t->vmap_mask;
        t->vmap[i] = id;
    }

    /* Added tokens override the id -> piece map, as HF's added vocabulary is consulted first. */
    if (added) {
        int i = 0;
        for (const cJSON *a = added->child; a; a = a->next, i++) {
            char where[64];
            snprintf(where, sizeof where, "added_tokens[%d]", i);
            added_token *at = &t->added[i];
            const char *content = cJSON_GetObjectItemCaseSensitive(a, "content")->valuestring;
            int special, lstrip, rstrip, single, normalized;
            if ((rc = json_bool(a, "special", 0, where, &special, why, len)) ||
                (rc = json_bool(a, "lstrip", 0, where, &lstrip, why, len)) ||
                (rc = json_bool(a, "rstrip", 0, where, &rstrip, why, len)) ||
                (rc = json_bool(a, "single_word", 0, where, &single, why, len)) ||
                (rc = json_bool(a, "normalized", !special, where, &normalized, why, len)))
                return rc;
            size_t n = strlen(content);
            memcpy(p, content, n + 1);
            at->id = (int)cJSON_GetObjectItemCaseSensitive(a, "id")->valuedouble;
            at->content = p;
            at->len = n;
            at->special = (unsigned char)special;
            at->lstrip = (unsigned char)lstrip;
            at->rstrip = (unsigned char)rstrip;
            at->single_word = (unsigned char)single;
            at->normalized = (unsigned char)normalized;
            p += n + 1;
            t->pieces[at->id] = at->content;
            t->piece_lens[at->id] = (uint32_t)n;
            t->special[at->id] = (unsigned char)special;
        }
    }
    t->n_added = n_added;

    /* Merges: "a b" strings (split at the first space) or ["a", "b"] pairs. */
    if (merges) {
        int rank = 0;
        for (const cJSON *m = merges->child; m; m = m->next, rank++) {
            const char *a, *b;
            size_t an, bn;
            if (cJSON_IsString(m) && m->valuestring) {
                const char *sp = strchr(m->valuestring, ' ');
                if (!sp) return hlpt_why(why, len, HLPT_ERR_FORMAT, "model.merges[%d]: \"%.60s\" is not two pieces", rank, m->valuestring);
                a = m->valuestring;
                an = (size_t)(sp - a);
                b = sp + 1;
                bn = strlen(b);
            } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                       cJSON_IsString(m->child->next)) {
                a = m->child->valuestring;
                an = strlen(a);
                b = m->child->next->valuestring;
                bn = strlen(b);
            } else {
                return hlpt_why(why, len, HLPT_ERR_FORMAT, "model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", rank);
            }
            int ia = vocab_find(t, a, an), ib = vocab_find(t, b, bn);
            if (ia < 0) return hlpt_why(why, len, HLPT_ERR_FORMAT, "model.merges[%d]: \"%.*s\" is not in the vocab", rank, (int)(an > 60 ? 60 : an), a);
            if (ib < 0) return hlpt_why(why, len, HLPT_ERR_FORMAT, "model.merges[%d]: \"%.*s\" is not in the vocab", rank, (int)(bn > 60 ? 60 : bn), b);
            char stack[256];
            char *cat = an + bn <= sizeof stack ? stack : malloc(an + bn);
            if (!cat) return HLPT_ERR_NOMEM;
            memcpy(cat, a, an);
            memcpy(cat + an, b, bn);
            int im = vocab_find(t, cat, an + bn);
            if (cat != stack) free(cat);
            if (im < 0)
                return hlpt_why(why, len, HLPT_ERR_FORMAT, "model.merges[%d]: the merged piece \"%.*s%.*s\" is not in the vocab",
                                rank, (int)(an > 60 ? 60 : an), a, (int)(bn > 60 ? 60 : bn), b);
            merge_put(t, ia, ib, rank, im);
        }
    }

    const char *unk;
    if ((rc = json_str(model, "unk_token", 0, "model", &unk, why, len))) return rc;
    t->unk_id = -1;
    if (unk && (t->unk_id = vocab_find(t, unk, strlen(unk))) < 0)
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "model.unk_token: \"%.60s\" is not in the vocab", unk);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_ids[b] = vocab_find(t, name, 6);
    }
    return HLPT_OK;
}

/* Orders added tokens by first byte, longest first, so a match at a position is leftmost-longest. */
static int added_cmp(const void *x, const void *y) {
    const added_token *a = x, *b = y;
    unsigned char ca = a->len ? (unsigned char)a->content[0] : 0, cb = b->len ? (unsigned char)b->content[0] : 0;
    if (ca != cb) return ca < cb ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static void index_added(hlpt_tokenizer *t) {
    qsort(t->added, (size_t)t->n_added, sizeof *t->added, added_cmp);
    int i = 0;
    for (int b = 0; b < 256; b++) {
        t->added_first[b] = i;
        while (i < t->n_added && (!t->added[i].len || (unsigned char)t->added[i].content[0] == b)) i++;
    }
    t->added_first[256] = t->n_added;
}

/* ------------------------------------------------------------------------------------------------ */
/* Loading */

int hlpt_tokenizer_parse(const char *json, size_t n, hlpt_tokenizer **out, char *why, size_t len) {
    *out = NULL;
    if (!json) return hlpt_why(why, len, HLPT_ERR_INVAL, "no JSON given");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, n, &end, 0);
    if (!root) {
        size_t off = end && end >= json ? (size_t)(end - json) : 0;
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "tokenizer.json: broken JSON near byte %zu", off);
    }
    int rc;
    hlpt_tokenizer *t = calloc(1, sizeof *t);
    if (!t) { rc = HLPT_ERR_NOMEM; goto out; }
    t->kind = HLPT_TOKENIZER_SENTENCEPIECE;
    t->unk_id = -1;
    byte_tables(t);
    if (!cJSON_IsObject(root)) { rc = hlpt_why(why, len, HLPT_ERR_FORMAT, "tokenizer.json: expected an object"); goto out; }
    if ((rc = parse_model(t, cJSON_GetObjectItemCaseSensitive(root, "model"),
                          cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), why, len)))
        goto out;
    index_added(t);
    const cJSON *c;
    if ((c = cJSON_GetObjectItemCaseSensitive(root, "normalizer")) && !cJSON_IsNull(c) &&
        (rc = parse_component(t, STAGE_NORM, c, "normalizer", 0, why, len)))
        goto out;
    if ((c = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer")) && !cJSON_IsNull(c) &&
        (rc = parse_component(t, STAGE_PRE, c, "pre_tokenizer", 0, why, len)))
        goto out;
    if ((c = cJSON_GetObjectItemCaseSensitive(root, "decoder")) && !cJSON_IsNull(c)) {
        t->has_decoder = 1;
        if ((rc = parse_component(t, STAGE_DEC, c, "decoder", 0, why, len))) goto out;
    }
out:
    cJSON_Delete(root);
    if (rc) {
        hlpt_tokenizer_free(t);
        return rc == HLPT_ERR_NOMEM ? hlpt_why(why, len, rc, "out of memory loading tokenizer.json") : rc;
    }
    *out = t;
    return HLPT_OK;
}

int hlpt_tokenizer_load(const char *path, hlpt_tokenizer **out, char *why, size_t len) {
    *out = NULL;
    if (!path) return hlpt_why(why, len, HLPT_ERR_INVAL, "no path given");
    char full[4096];
    struct stat st;
    if (stat(path, &st) != 0)
        return hlpt_why(why, len, errno == ENOENT ? HLPT_ERR_NOENT : HLPT_ERR_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        if ((size_t)snprintf(full, sizeof full, "%s/tokenizer.json", path) >= sizeof full)
            return hlpt_why(why, len, HLPT_ERR_INVAL, "%s: path too long", path);
        path = full;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return hlpt_why(why, len, errno == ENOENT ? HLPT_ERR_NOENT : HLPT_ERR_IO, "%s: %s", path, strerror(errno));
    int rc = HLPT_OK;
    char *data = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 1 << 16;
            char *d = realloc(data, cap);
            if (!d) { rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "%s: out of memory reading", path); goto out; }
            data = d;
        }
        size_t got = fread(data + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) { rc = hlpt_why(why, len, HLPT_ERR_IO, "%s: read error", path); goto out; }
    rc = hlpt_tokenizer_parse(data, n, out, why, len);
    if (rc && why && len) {
        /* Prefix the file name so the caller's message says which file. */
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", why);
        snprintf(why, len, "%s: %s", path, tmp);
    }
out:
    free(data);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */
/* Encoding: per-call state */

typedef struct { int id, prev, next; } sym;          /* id -1: merged away */
typedef struct { int rank, pos, new_id; } hnode;

typedef struct {
    plist a, b;                 /* the pieces of one segment, swapped by each step */
    sym *syms;
    size_t syms_cap;
    hnode *heap;
    size_t heap_n, heap_cap;
    pcre2_match_data *md;
    ivec out;
} enc;

static int heap_less(const hnode *x, const hnode *y) {
    return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos;
}

static int heap_push(enc *w, hnode x) {
    if (w->heap_n == w->heap_cap) {
        size_t cap = w->heap_cap ? 2 * w->heap_cap : 64;
        hnode *h = realloc(w->heap, cap * sizeof *h);
        if (!h) return -1;
        w->heap = h;
        w->heap_cap = cap;
    }
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&x, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = x;
    return 0;
}

static hnode heap_pop(enc *w) {
    hnode top = w->heap[0], x = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(&w->heap[c + 1], &w->heap[c])) c++;
        if (!heap_less(&w->heap[c], &x)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = x;
    return top;
}

static int sym_add(enc *w, size_t *ns, int id) {
    if (*ns == w->syms_cap) {
        size_t cap = w->syms_cap ? 2 * w->syms_cap : 64;
        sym *s = realloc(w->syms, cap * sizeof *s);
        if (!s) return -1;
        w->syms = s;
        w->syms_cap = cap;
    }
    w->syms[*ns] = (sym){id, (int)*ns - 1, (int)*ns + 1};
    (*ns)++;
    return 0;
}

/* BPE of one pre-token, as HF's BPE::tokenize (merge_word + Word::merge_all). */
static int bpe_piece(const hlpt_tokenizer *t, enc *w, const char *s, size_t n) {
    if (n == 0) return 0;
    if (t->ignore_merges) {
        int id = vocab_find(t, s, n);
        if (id >= 0) return ivec_push(&w->out, id);
    }
    size_t ns = 0;
    int unk_pending = 0;
    for (size_t i = 0; i < n;) {
        size_t cl = (size_t)utf8_seq_len((unsigned char)s[i]);
        if (cl == 0 || cl > n - i) cl = 1;
        int id = vocab_find(t, s + i, cl);
        if (id >= 0) {
            if (unk_pending && sym_add(w, &ns, t->unk_id)) return -1;
            unk_pending = 0;
            if (sym_add(w, &ns, id)) return -1;
        } else {
            int done = 0;
            if (t->byte_fallback) {
                size_t k = 0;
                while (k < cl && t->byte_ids[(unsigned char)s[i + k]] >= 0) k++;
                if (k == cl) {
                    /* HF pushes the byte pieces without flushing a pending unk first; so do we. */
                    for (k = 0; k < cl; k++)
                        if (sym_add(w, &ns, t->byte_ids[(unsigned char)s[i + k]])) return -1;
                    done = 1;
                }
            }
            if (!done && t->unk_id >= 0) {
                if (unk_pending && !t->fuse_unk && sym_add(w, &ns, t->unk_id)) return -1;
                unk_pending = 1;
            }
        }
        i += cl;
    }
    if (unk_pending && sym_add(w, &ns, t->unk_id)) return -1;
    if (ns == 0) return 0;
    w->syms[ns - 1].next = -1;

    w->heap_n = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        const merge_slot *m = merge_find(t, w->syms[i].id, w->syms[i + 1].id);
        if (m && heap_push(w, (hnode){m->rank, (int)i, m->new_id})) return -1;
    }
    while (w->heap_n) {
        hnode top = heap_pop(w);
        sym *cur = &w->syms[top.pos];
        if (cur->id < 0 || cur->next < 0) continue;
        int nx = cur->next;
        const merge_slot *m = merge_find(t, cur->id, w->syms[nx].id);
        if (!m || m->new_id != top.new_id) continue;   /* stale entry */
        cur->id = top.new_id;
        cur->next = w->syms[nx].next;
        w->syms[nx].id = -1;
        if (cur->next >= 0) w->syms[cur->next].prev = top.pos;
        if (cur->prev >= 0 && (m = merge_find(t, w->syms[cur->prev].id, cur->id)) &&
            heap_push(w, (hnode){m->rank, cur->prev, m->new_id}))
            return -1;
        cur = &w->syms[top.pos];
        if (cur->next >= 0 && (m = merge_find(t, cur->id, w->syms[cur->next].id)) &&
            heap_push(w, (hnode){m->rank, top.pos, m->new_id}))
            return -1;
    }
    for (int i = 0; i >= 0; i = w->syms[i].next)
        if (ivec_push(&w->out, w->syms[i].id)) return -1;
    return 0;
}

/* Finds the next match of a split step in s[from..n): 1 and [*ms, *me) if found, 0 if none, <0 on a
 * regex failure. */
static int split_find(const step *st, enc *w, const char *s, size_t n, size_t from, size_t *ms, size_t *me) {
    if (!st->re) {
        if (n - from < st->an) return 0;
        const char *p = memmem(s + from, n - from, st->a, st->an);
        if (!p) return 0;
        *ms = (size_t)(p - s);
        *me = *ms + st->an;
        return 1;
    }
    int rc = pcre2_match(st->re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, w->md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(st->re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, w->md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) return rc;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
    *ms = ov[0];
    *me = ov[1];
    if (*me < *ms || *me > n) return PCRE2_ERROR_INTERNAL;  /* \K games in a lookahead */
    return 1;
}

/* One split step on one piece: the piece's (start, end, is_match) parts as HF's find_matches gives
 * them, then combined by the behaviour (HF's NormalizedString::split). */
static int split_piece(const step *st, enc *w, const char *s, size_t n, int first, plist *dst, char *why, size_t len) {
    size_t pos = 0, prev = 0;
    /* Parts pending for the Merged/Contiguous behaviours: one at a time is enough. */
    size_t pend_s = 0, pend_e = 0;
    int have_pend = 0, pend_match = 0;
#define EMIT(a_, b_)                                                                               \
    do {                                                                                           \
        if ((b_) > (a_) && plist_add(dst, s + (a_), (b_) - (a_), first && (a_) == 0)) return -1;   \
    } while (0)
    for (;;) {
        size_t ms = n, me = n;
        int found = 0;
        if (pos <= n) {
            int rc = split_find(st, w, s, n, pos, &ms, &me);
            if (rc < 0) {
                hlpt_why(why, len, HLPT_ERR_INTERNAL, "pre_tokenizer Split: regex match failed (PCRE2 error %d)", rc);
                return -2;
            }
            found = rc;
        }
        if (!found) ms = me = n;
        /* parts: gap [prev, ms) then, if found, match [ms, me) */
        for (int k = 0; k < 2; k++) {
            size_t ps = k == 0 ? prev : ms, pe = k == 0 ? ms : me;
            int is_match = k == 1;
            if (k == 1 && !found) break;
            if (pe == ps) continue;
            if (st->invert) is_match = !is_match;
            switch (st->behavior) {
            case SB_ISOLATED: EMIT(ps, pe); break;
            case SB_REMOVED:
                if (!is_match) EMIT(ps, pe);
                break;
            case SB_MERGED_PREV:
                /* A match joins the part before it unless that was a match too. */
                if (is_match && have_pend && !pend_match) pend_e = pe;
                else {
                    if (have_pend) EMIT(pend_s, pend_e);
                    pend_s = ps, pend_e = pe, have_pend = 1;
                }
                pend_match = is_match;
                break;
            case SB_MERGED_NEXT:
                /* A match starts a part that the next non-match joins. */
                if (!is_match && have_pend && pend_match) pend_e = pe;
                else {
                    if (have_pend) EMIT(pend_s, pend_e);
                    pend_s = ps, pend_e = pe, have_pend = 1;
                }
                pend_match = is_match;
                break;
            case SB_CONTIGUOUS:
                if (is_match && have_pend && pend_match) pend_e = pe;
                else {
                    if (have_pend) EMIT(pend_s, pend_e);
                    pend_s = ps, pend_e = pe, have_pend = 1;
                }
                pend_match = is_match;
                break;
            }
        }
        if (!found) break;
        prev = me;
        if (me == ms) {
            /* An empty match: step over one character so the search moves on. */
            if (me >= n) break;
            size_t k = (size_t)utf8_seq_len((unsigned char)s[me]);
            pos = me + (k ? k : 1);
        } else {
            pos = me;
        }
    }
    if (have_pend) EMIT(pend_s, pend_e);
#undef EMIT
    return 0;
}

/* Replace every occurrence of a by b in s[0..n), appending to the open piece of dst. */
static int put_replaced(plist *dst, const char *s, size_t n, const char *a, size_t an, const char *b, size_t bn) {
    size_t i = 0;
    while (i < n) {
        const char *p = n - i >= an ? memmem(s + i, n - i, a, an) : NULL;
        if (!p) return plist_put(dst, s + i, n - i);
        if (plist_put(dst, s + i, (size_t)(p - (s + i))) || plist_put(dst, b, bn)) return -1;
        i = (size_t)(p - s) + an;
    }
    return 0;
}

/* Runs one pre-tokenizer step over every piece of src into dst. */
static int pre_step(const hlpt_tokenizer *t, const step *st, enc *w, const plist *src, plist *dst, char *why, size_t len) {
    static const char space[] = " ";
    for (size_t i = 0; i < src->n; i++) {
        const char *s = src->text.p + src->v[i].off;
        size_t n = src->v[i].len;
        int first = src->v[i].first;
        switch (st->type) {
        case ST_SPLIT: {
            int rc = split_piece(st, w, s, n, first, dst, why, len);
            if (rc) return rc;
            break;
        }
        case ST_BYTE_LEVEL: {
            const byte_char *bc = t->bchars;
            plist tmp = {0};
            const plist *parts = NULL;
            plist one = {0};
            /* add_prefix_space, then the GPT-2 split, then the byte map of each part. */
            if (plist_open(&one, first) ||
                (st->prefix_space && n && s[0] != ' ' && plist_put(&one, space, 1)) ||
                plist_put(&one, s, n)) {
                plist_free(&one);
                return -1;
            }
            if (st->re) {
                step sp = {.type = ST_SPLIT, .re = st->re, .behavior = SB_ISOLATED};
                int rc = split_piece(&sp, w, one.text.p, one.v[0].len, first, &tmp, why, len);
                if (rc) { plist_free(&one); plist_free(&tmp); return rc; }
                parts = &tmp;
            } else {
                parts = &one;
            }
            for (size_t k = 0; k < parts->n; k++) {
                const unsigned char *q = (const unsigned char *)parts->text.p + parts->v[k].off;
                if (parts->v[k].len == 0) continue;
                if (plist_open(dst, parts->v[k].first)) goto bl_fail;
                for (size_t j = 0; j < parts->v[k].len; j++)
                    if (plist_put(dst, bc[q[j]].s, bc[q[j]].n)) goto bl_fail;
            }
            plist_free(&one);
            plist_free(&tmp);
            break;
        bl_fail:
            plist_free(&one);
            plist_free(&tmp);
            return -1;
        }
        case ST_METASPACE: {
            /* HF: replace ' ' by the replacement, prepend it (scheme permitting) unless already there,
             * then optionally split before every replacement (MergedWithNext). */
            plist one = {0};
            int starts = n >= st->an && memcmp(s, st->a, st->an) == 0;
            if (!starts && n && s[0] == ' ' && st->an) starts = 1; /* ' ' becomes the replacement */
            int prepend = !starts && (st->scheme == PS_ALWAYS || (st->scheme == PS_FIRST && first));
            if (plist_open(&one, first) || (prepend && plist_put(&one, st->a, st->an)) ||
                put_replaced(&one, s, n, space, 1, st->a, st->an)) {
                plist_free(&one);
                return -1;
            }
            int rc = 0;
            if (st->split) {
                step sp = {.type = ST_SPLIT, .a = st->a, .an = st->an, .behavior = SB_MERGED_NEXT};
                rc = split_piece(&sp, w, one.text.p, one.v[0].len, first, dst, why, len);
            } else if (one.v[0].len) {
                rc = plist_add(dst, one.text.p, one.v[0].len, first);
            }
            plist_free(&one);
            if (rc) return rc;
            break;
        }
        default: return -1;
        }
    }
    return 0;
}

/* Encodes one segment of text between added tokens. first: it starts at offset 0 of the input. */
static int encode_segment(const hlpt_tokenizer *t, enc *w, const char *s, size_t n, int first, char *why, size_t len) {
    if (n == 0) return 0;
    plist *a = &w->a, *b = &w->b;
    plist_reset(a);
    if (plist_add(a, s, n, first)) return -1;
    for (int i = 0; i < t->norm.n; i++) {
        const step *st = &t->norm.v[i];
        if (st->type == ST_NFC) continue;
        plist_reset(b);
        if (plist_open(b, first)) return -1;
        const char *cur = a->text.p;
        size_t cn = a->v[0].len;
        if (st->type == ST_PREPEND) {
            if (cn && (plist_put(b, st->a, st->an) || plist_put(b, cur, cn))) return -1;
        } else if (put_replaced(b, cur, cn, st->a, st->an, st->b, st->bn)) {
            return -1;
        }
        plist *x = a; a = b; b = x;
    }
    for (int i = 0; i < t->pre.n; i++) {
        plist_reset(b);
        int rc = pre_step(t, &t->pre.v[i], w, a, b, why, len);
        if (rc) return rc;
        plist *x = a; a = b; b = x;
    }
    for (size_t i = 0; i < a->n; i++)
        if (bpe_piece(t, w, a->text.p + a->v[i].off, a->v[i].len)) return -1;
    return 0;
}

/* The added token matching at text[pos], or NULL; [*ms, *me) is the span it takes (lstrip/rstrip
 * widen it over whitespace, not before seg_start). */
static const added_token *match_added(const hlpt_tokenizer *t, const char *text, size_t n, size_t pos,
                                      size_t seg_start, int parse_special, size_t *ms, size_t *me) {
    unsigned char c = (unsigned char)text[pos];
    for (int i = t->added_first[c]; i < t->added_first[c + 1]; i++) {
        const added_token *a = &t->added[i];
        if (!a->len || a->len > n - pos || memcmp(text + pos, a->content, a->len) != 0) continue;
        if (a->special && !parse_special) continue;
        size_t s = pos, e = pos + a->len, k;
        if (a->single_word) {
            if (s > 0 && is_word_char(utf8_decode((const unsigned char *)text + utf8_prev(text, s), &k))) continue;
            if (e < n && is_word_char(utf8_decode((const unsigned char *)text + e, &k))) continue;
        }
        if (a->lstrip)
            while (s > seg_start) {
                size_t p = utf8_prev(text, s);
                if (!is_unicode_space(utf8_decode((const unsigned char *)text + p, &k))) break;
                s = p;
            }
        if (a->rstrip)
            while (e < n && is_unicode_space(utf8_decode((const unsigned char *)text + e, &k))) e += k;
        *ms = s;
        *me = e;
        return a;
    }
    return NULL;
}

int hlpt_tokenizer_encode(const hlpt_tokenizer *t, const char *text, size_t n, int parse_special, int **ids,
                          int *n_ids, char *why, size_t len) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!t || !ids || !n_ids || (!text && n)) return hlpt_why(why, len, HLPT_ERR_INVAL, "tokenizer_encode: NULL argument");
    size_t bad = utf8_check(text, n);
    if (bad != n) return hlpt_why(why, len, HLPT_ERR_INVAL, "invalid UTF-8 at byte offset %zu", bad);
    if (n > (size_t)INT_MAX / 4) return hlpt_why(why, len, HLPT_ERR_RANGE, "text of %zu bytes is too long", n);

    enc w = {0};
    int rc = HLPT_OK;
    w.md = pcre2_match_data_create(1, NULL);
    if (!w.md) { rc = HLPT_ERR_NOMEM; goto out; }
    size_t seg = 0, pos = 0;
    while (pos < n) {
        size_t ms, me;
        const added_token *a = t->n_added ? match_added(t, text, n, pos, seg, parse_special, &ms, &me) : NULL;
        if (!a) { pos++; continue; }
        int r = encode_segment(t, &w, text + seg, ms - seg, seg == 0, why, len);
        if (r || ivec_push(&w.out, a->id)) { rc = r == -2 ? HLPT_ERR_INTERNAL : HLPT_ERR_NOMEM; goto out; }
        seg = pos = me;
    }
    int r = encode_segment(t, &w, text + seg, n - seg, seg == 0, why, len);
    if (r) { rc = r == -2 ? HLPT_ERR_INTERNAL : HLPT_ERR_NOMEM; goto out; }
out:
    plist_free(&w.a);
    plist_free(&w.b);
    free(w.syms);
    free(w.heap);
    pcre2_match_data_free(w.md);
    if (rc) {
        free(w.out.v);
        return rc == HLPT_ERR_NOMEM ? hlpt_why(why, len, rc, "out of memory encoding %zu bytes", n) : rc;
    }
    if (w.out.n == 0) {
        free(w.out.v);
        w.out.v = NULL;
    }
    *ids = w.out.v;
    *n_ids = (int)w.out.n;
    return HLPT_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* Decoding */

static const char fffd[] = "\xEF\xBF\xBD";

/* Appends s[0..n) to the open piece, each maximal invalid subpart replaced by U+FFFD (Rust's
 * String::from_utf8_lossy). */
static int put_lossy(plist *dst, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        size_t k = utf8_valid_at(u + i, n - i);
        if (k) { i += k; continue; }
        if (plist_put(dst, s + run, i - run) || plist_put(dst, fffd, 3)) return -1;
        /* Skip the longest prefix that could still have begun a valid sequence. */
        int want = utf8_seq_len(u[i]);
        size_t j = 1;
        if (want > 1) {
            unsigned char lo = 0x80, hi = 0xBF;
            if (u[i] == 0xE0) lo = 0xA0;
            else if (u[i] == 0xED) hi = 0x9F;
            else if (u[i] == 0xF0) lo = 0x90;
            else if (u[i] == 0xF4) hi = 0x8F;
            if (i + 1 < n && u[i + 1] >= lo && u[i + 1] <= hi) {
                j = 2;
                while ((int)j < want && i + j < n && (u[i + j] & 0xC0) == 0x80) j++;
            }
        }
        i += j;
        run = i;
    }
    return plist_put(dst, s + run, n - run);
}

/* The byte a "<0xNN>" piece stands for, -1 if it is not one (HF: 6 bytes, "<0x", two hex digits, ">"). */
static int byte_piece(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static int flush_bytes(plist *dst, const unsigned char *bytes, size_t nb) {
    if (!nb) return 0;
    if (utf8_check((const char *)bytes, nb) == nb) return plist_add(dst, (const char *)bytes, nb, 0);
    for (size_t i = 0; i < nb; i++)
        if (plist_add(dst, fffd, 3, 0)) return -1;
    return 0;
}

static int dec_step(const hlpt_tokenizer *t, const step *st, const plist *src, plist *dst) {
    switch (st->type) {
    case ST_REPLACE:
        for (size_t i = 0; i < src->n; i++)
            if (plist_open(dst, 0) || put_replaced(dst, src->text.p + src->v[i].off, src->v[i].len, st->a, st->an, st->b, st->bn))
                return -1;
        return 0;
    case ST_BYTE_FALLBACK: {
        buf bytes = {0};
        for (size_t i = 0; i < src->n; i++) {
            const char *s = src->text.p + src->v[i].off;
            int b = byte_piece(s, src->v[i].len);
            if (b >= 0) {
                unsigned char c = (unsigned char)b;
                if (buf_add(&bytes, &c, 1)) goto bf_fail;
                continue;
            }
            if (flush_bytes(dst, (unsigned char *)bytes.p, bytes.n) || plist_add(dst, s, src->v[i].len, 0)) goto bf_fail;
            bytes.n = 0;
        }
        if (flush_bytes(dst, (unsigned char *)bytes.p, bytes.n)) goto bf_fail;
        free(bytes.p);
        return 0;
    bf_fail:
        free(bytes.p);
        return -1;
    }
    case ST_FUSE:
        if (plist_open(dst, 0)) return -1;
        for (size_t i = 0; i < src->n; i++)
            if (plist_put(dst, src->text.p + src->v[i].off, src->v[i].len)) return -1;
        return 0;
    case ST_STRIP:
        for (size_t i = 0; i < src->n; i++) {
            const char *s = src->text.p + src->v[i].off;
            size_t n = src->v[i].len, a = 0, e = n;
            for (int k = 0; k < st->start && n - a >= st->an && memcmp(s + a, st->a, st->an) == 0; k++) a += st->an;
            for (int k = 0; k < st->stop && e - a >= st->an && memcmp(s + e - st->an, st->a, st->an) == 0; k++) e -= st->an;
            if (plist_add(dst, s + a, e - a, 0)) return -1;
        }
        return 0;
    case ST_METASPACE:
        /* HF: every replacement becomes ' ', except in the first piece, where (unless the scheme is
         * "never") they are all dropped. */
        for (size_t i = 0; i < src->n; i++) {
            const char *s = src->text.p + src->v[i].off;
            int drop = i == 0 && st->scheme != PS_NEVER;
            if (plist_open(dst, 0) || put_replaced(dst, s, src->v[i].len, st->a, st->an, " ", drop ? 0 : 1)) return -1;
        }
        return 0;
    case ST_BYTE_LEVEL: {
        /* HF: a piece whose characters are all in the byte alphabet becomes those bytes, any other
         * piece stays as it is; then the whole is made valid UTF-8 lossily. */
        buf bytes = {0};
        for (size_t i = 0; i < src->n; i++) {
            const unsigned char *s = (const unsigned char *)src->text.p + src->v[i].off;
            size_t n = src->v[i].len, start = bytes.n, k;
            int ok = 1;
            for (size_t j = 0; j < n; j += k) {
                uint32_t cp = utf8_decode(s + j, &k);
                int b = cp < 324 ? t->cp_byte[cp] : -1;
                unsigned char c = (unsigned char)b;
                if (b < 0) { ok = 0; break; }
                if (buf_add(&bytes, &c, 1)) goto bl_fail;
            }
            if (!ok) {
                bytes.n = start;
                if (buf_add(&bytes, s, n)) goto bl_fail;
            }
        }
        if (plist_open(dst, 0) || put_lossy(dst, bytes.p ? bytes.p : "", bytes.n)) goto bl_fail;
        free(bytes.p);
        return 0;
    bl_fail:
        free(bytes.p);
        return -1;
    }
    default: return -1;
    }
}

int hlpt_tokenizer_decode(const hlpt_tokenizer *t, const int *ids, int n_ids, int skip_special, char **text,
                          size_t *n, char *why, size_t len) {
    if (text) *text = NULL;
    if (n) *n = 0;
    if (!t || !text || !n || (!ids && n_ids > 0) || n_ids < 0)
        return hlpt_why(why, len, HLPT_ERR_INVAL, "tokenizer_decode: bad argument");
    plist a = {0}, b = {0};
    int rc = HLPT_OK;
    for (int i = 0; i < n_ids; i++) {
        int id = ids[i];
        if (id < 0 || id >= t->n_ids || !t->pieces[id]) {
            rc = hlpt_why(why, len, HLPT_ERR_RANGE, "token id %d (position %d) is not in the vocab of %d", id, i, t->n_ids);
            goto out;
        }
        if (skip_special && t->special[id]) continue;
        if (plist_add(&a, t->pieces[id], t->piece_lens[id], 0)) goto nomem;
    }
    if (!t->has_decoder) {
        /* HF joins the pieces with spaces when there is no decoder. */
        plist_reset(&b);
        if (plist_open(&b, 0)) goto nomem;
        for (size_t i = 0; i < a.n; i++)
            if ((i && plist_put(&b, " ", 1)) || plist_put(&b, a.text.p + a.v[i].off, a.v[i].len)) goto nomem;
        plist x = a; a = b; b = x;
    }
    for (int i = 0; i < t->dec.n; i++) {
        plist_reset(&b);
        if (dec_step(t, &t->dec.v[i], &a, &b)) goto nomem;
        plist x = a; a = b; b = x;
    }
    plist_reset(&b);
    if (plist_open(&b, 0)) goto nomem;
    for (size_t i = 0; i < a.n; i++)
        if (put_lossy(&b, a.text.p + a.v[i].off, a.v[i].len)) goto nomem;
    if (buf_reserve(&b.text, 1)) goto nomem;
    b.text.p[b.text.n] = 0;
    *text = b.text.p;
    *n = b.text.n;
    b.text.p = NULL;
    goto out;
nomem:
    rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory decoding %d ids", n_ids);
out:
    plist_free(&a);
    plist_free(&b);
    return rc;
}

size_t hlpt_tokenizer_stream_safe_len(const char *text, size_t n) {
    if (!text) return 0;
    const unsigned char *s = (const unsigned char *)text;
    size_t k = n, i = n;
    int cont = 0;
    while (i > 0 && cont < 3 && (s[i - 1] & 0xC0) == 0x80) i--, cont++;
    if (i > 0) {
        int want = utf8_seq_len(s[i - 1]);
        if (want > cont + 1) k = i - 1;
    }
    while (k >= 3 && memcmp(s + k - 3, fffd, 3) == 0) k -= 3;
    return k;
}

int hlpt_tokenizer_decode_stream(const hlpt_tokenizer *t, hlpt_tokenizer_stream *st, const int *ids, int n_ids,
                                 int skip_special, int last, char **text, size_t *n, char *why, size_t len) {
    if (text) *text = NULL;
    if (n) *n = 0;
    if (!t || !st || !text || !n || (!ids && n_ids > 0) || st->prefix < 0 || st->prefix > st->read ||
        st->read > n_ids)
        return hlpt_why(why, len, HLPT_ERR_INVAL, "tokenizer_decode_stream: stream state {%d, %d} does not fit %d ids",
                        st ? st->prefix : 0, st ? st->read : 0, n_ids);
    char *before = NULL, *after = NULL;
    size_t nb = 0, na = 0;
    int rc = hlpt_tokenizer_decode(t, ids + st->prefix, st->read - st->prefix, skip_special, &before, &nb, why, len);
    if (rc) return rc;
    rc = hlpt_tokenizer_decode(t, ids + st->prefix, n_ids - st->prefix, skip_special, &after, &na, why, len);
    if (rc) {
        free(before);
        return rc;
    }
    /* Emit only when the window's text is clean: a held character shows up as U+FFFD until complete. */
    if (na > nb && (last || hlpt_tokenizer_stream_safe_len(after, na) == na)) {
        size_t common = 0;
        while (common < nb && after[common] == before[common]) common++;
        memmove(after, after + common, na - common + 1);
        *text = after;
        *n = na - common;
        after = NULL;
        st->prefix = st->read;
        st->read = n_ids;
    } else {
        char *empty = calloc(1, 1);
        if (!empty) rc = hlpt_why(why, len, HLPT_ERR_NOMEM, "out of memory");
        *text = empty;
        if (last) st->prefix = st->read = n_ids;
    }
    free(before);
    free(after);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */
/* Lookups */

int hlpt_tokenizer_vocab_size(const hlpt_tokenizer *t) { return t ? t->n_ids : 0; }

int hlpt_tokenizer_token_id(const hlpt_tokenizer *t, const char *piece) {
    if (!t || !piece || !*piece) return -1;
    size_t n = strlen(piece);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->added[i].content, piece, n) == 0) return t->added[i].id;
    return vocab_find(t, piece, n);
}

const char *hlpt_tokenizer_piece(const hlpt_tokenizer *t, int id) {
    if (!t || id < 0 || id >= t->n_ids) return NULL;
    return t->pieces[id];
}

int hlpt_tokenizer_is_special(const hlpt_tokenizer *t, int id) {
    if (!t || id < 0 || id >= t->n_ids) return 0;
    return t->special[id];
}

hlpt_tokenizer_kind hlpt_tokenizer_get_kind(const hlpt_tokenizer *t) { return t ? t->kind : HLPT_TOKENIZER_SENTENCEPIECE; }

int hlpt_tokenizer_default_bos(const hlpt_tokenizer *t) {
    int id = hlpt_tokenizer_token_id(t, "<s>");
    return id >= 0 ? id : hlpt_tokenizer_token_id(t, "<|begin_of_text|>");
}
