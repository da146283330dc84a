/*
 * model.c - the frozen base model: weight arena, sealed shared memory, and the forward/backward
 * passes of the LLaMA block with HLPT adapters.
 *
 * DESIGN
 * Weights. Every base tensor goes into one arena whose layout is computed from the config by the
 * tables GLOBAL_WEIGHTS and LAYER_WEIGHTS below (adding a tensor is one line): vectors as float32,
 * matrices as the engine stores them for the model's dtype (include/hlpt/engine.h; packed BF16 or
 * row-major F32). In shared mode the arena sits in a memfd behind a one-page header (magic, dtype,
 * config, hash); the memfd is sealed (F_SEAL_WRITE|SHRINK|GROW|SEAL) once written, so the kernel
 * itself keeps it frozen, and workers map it read-only with hlpt_model_attach().
 *
 * Batches. A step runs a packed batch: the rows of several sequences laid end to end (no padding).
 * The base's linear layers run once over all rows (hlpt_linear); everything that belongs to one
 * sequence (its adapter's LoRA and gates, its prefix, attention over its own keys) runs per segment.
 * That is what lets requests for different adapters share a decode step.
 *
 * Training reuses the same layer_forward() with saved activations (one layer_acts per layer, or one
 * shared set refilled per layer when recomputing) and a layer_backward() that differentiates it line
 * by line. Only adapter parameters get gradients; backward stops at the lowest adapted layer.
 */
#include "hlpt/model.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hlpt/engine.h"
#include "hlpt/err.h"
#include "hlpt/safetensors.h"
#include "layers.h"
#include "rng.h"

/* ---------------------------------------------------------------------------------------------- */
/* Weight tables                                                                                   */

/* Dimension codes of the tables; resolved by dim_of(). */
enum { DIM_1, DIM_C, DIM_QD, DIM_KVD, DIM_F, DIM_V };

/* X(kind, field, HF name, rows, cols): kind VEC is a vector (kept F32), MAT a matrix stored by the
 * engine (include/hlpt/engine.h). */
#define GLOBAL_WEIGHTS(X)                                        \
    X(MAT, embed, "model.embed_tokens.weight", DIM_V, DIM_C)     \
    X(VEC, norm, "model.norm.weight", DIM_C, DIM_1)              \
    X(MAT, lm_head, "lm_head.weight", DIM_V, DIM_C)

/* The order of w[] matches hlpt_module (q k v o gate up down). */
#define LAYER_WEIGHTS(X)                                                     \
    X(VEC, attn_norm, "input_layernorm.weight", DIM_C, DIM_1)                \
    X(MAT, w[HLPT_MOD_Q], "self_attn.q_proj.weight", DIM_QD, DIM_C)          \
    X(MAT, w[HLPT_MOD_K], "self_attn.k_proj.weight", DIM_KVD, DIM_C)         \
    X(MAT, w[HLPT_MOD_V], "self_attn.v_proj.weight", DIM_KVD, DIM_C)         \
    X(MAT, w[HLPT_MOD_O], "self_attn.o_proj.weight", DIM_C, DIM_QD)          \
    X(VEC, mlp_norm, "post_attention_layernorm.weight", DIM_C, DIM_1)        \
    X(MAT, w[HLPT_MOD_GATE], "mlp.gate_proj.weight", DIM_F, DIM_C)           \
    X(MAT, w[HLPT_MOD_UP], "mlp.up_proj.weight", DIM_F, DIM_C)               \
    X(MAT, w[HLPT_MOD_DOWN], "mlp.down_proj.weight", DIM_C, DIM_F)

typedef struct {
    const float *attn_norm; /* [C] */
    const float *mlp_norm;  /* [C] */
    hlpt_weight w[HLPT_MOD_COUNT]; /* q[QD,C] k[KVD,C] v[KVD,C] o[C,QD] gate[F,C] up[F,C] down[C,F] */
} layer_weights;

/* One tensor of the tables: where it lives in the arena and which field points at it. */
typedef struct {
    char name[96];          /* HF name */
    int rows, cols;         /* cols 1: a vector */
    const float **vec;      /* a vector's field, or NULL */
    hlpt_weight *mat;       /* a matrix's field, or NULL */
    size_t off, bytes;      /* in the arena */
} tensor_slot;

#define SHM_MAGIC "HLPTARN2"
#define SHM_HEADER 4096

typedef struct {
    char magic[8];
    uint32_t header_bytes;
    uint32_t config_bytes;  /* sizeof(hlpt_config), guards against a different build */
    uint64_t arena_bytes;
    uint32_t dtype;         /* hlpt_base_dtype of the arena (F32 or BF16) */
    hlpt_config cfg;
    char hash[17];
} shm_header;
_Static_assert(sizeof(shm_header) <= SHM_HEADER, "header fits its page");

struct hlpt_model {
    hlpt_config cfg;
    hlpt_base_dtype dtype;  /* F32 or BF16: how the matrices are stored and multiplied */
    hlpt_tokenizer *tok;
    void *map;              /* whole mapping (header page + arena in shared mode) */
    size_t map_bytes;
    char *arena;
    size_t arena_bytes;
    int fd;                 /* memfd in shared mode, else -1 */
    char hash[17];
    hlpt_weight embed, lm_head;
    const float *norm;
    layer_weights *layers;  /* [L] */
    float *inv_freq;        /* [D/2] RoPE frequencies */
    tensor_slot *slots;     /* every tensor, in table order */
    int n_slots;
};

static int64_t dim_of(const hlpt_config *c, int code) {
    switch (code) {
    case DIM_C: return c->hidden;
    case DIM_QD: return (int64_t)c->n_heads * c->head_dim;
    case DIM_KVD: return (int64_t)c->n_kv_heads * c->head_dim;
    case DIM_F: return c->ffn;
    case DIM_V: return c->vocab;
    default: return 1;
    }
}

/* The float32 slot of a tensor in the F32 arena: 64-byte aligned, in floats. The base hash walks
 * these slots whatever the dtype, so that an adapter names the same base in either. */
static size_t slot_floats(int64_t rows, int64_t cols) { return (size_t)((rows * cols + 15) & ~(int64_t)15); }

/* Whether a token's forward reads matrix w whole: every matrix but an untied embedding table, which
 * is read a row at a time (and so is not packed for the matmul). */
static int read_whole(const hlpt_model *m, const hlpt_weight *w) {
    return w != &m->embed || m->cfg.tie_embeddings;
}

/* Appends the slot of one tensor (vec or mat is its field) at *off, advancing it. */
static void put_slot(hlpt_model *m, size_t *off, const char *name, int64_t rows, int64_t cols, const float **vec,
                     hlpt_weight *mat) {
    tensor_slot *s = &m->slots[m->n_slots++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->rows = (int)rows;
    s->cols = (int)cols;
    s->vec = vec;
    s->mat = mat;
    if (mat) {
        int packed = m->dtype == HLPT_BASE_BF16 && read_whole(m, mat);
        *mat = (hlpt_weight){.O = s->rows, .I = s->cols, .dtype = m->dtype, .packed = packed};
        s->bytes = hlpt_weight_bytes(m->dtype, packed, s->rows, s->cols);
    } else {
        s->bytes = slot_floats(rows, 1) * sizeof(float);
    }
    s->off = *off;
    *off += s->bytes;
}

/* Walks the tables once: one slot per stored tensor (tied embeddings store no lm_head), with its
 * arena offset for the model's dtype. */
static int build_slots(hlpt_model *m) {
    const hlpt_config *c = &m->cfg;
    m->slots = calloc(3 + 9 * (size_t)c->n_layers, sizeof *m->slots);
    if (!m->slots) return HLPT_ERR_NOMEM;
    size_t off = 0;
#define VEC_FIELDS(f) &(f), NULL
#define MAT_FIELDS(f) NULL, &(f)
#define GLOBAL(kind, field, hfname, r, cdim)                                                \
    if (!(c->tie_embeddings && !strcmp(#field, "lm_head")))                                 \
        put_slot(m, &off, hfname, dim_of(c, r), dim_of(c, cdim), kind##_FIELDS(m->field));
    GLOBAL_WEIGHTS(GLOBAL)
#undef GLOBAL
    for (int l = 0; l < c->n_layers; l++) {
        layer_weights *lw = &m->layers[l];
        char name[96];
#define LAYER(kind, field, hfname, r, cdim)                                                 \
    snprintf(name, sizeof name, "model.layers.%d.%s", l, hfname);                           \
    put_slot(m, &off, name, dim_of(c, r), dim_of(c, cdim), kind##_FIELDS(lw->field));
        LAYER_WEIGHTS(LAYER)
#undef LAYER
    }
#undef VEC_FIELDS
#undef MAT_FIELDS
    m->arena_bytes = off;
    return HLPT_OK;
}

/* Points every field into the arena (pointers valid until close). */
static void point(hlpt_model *m) {
    for (int i = 0; i < m->n_slots; i++) {
        tensor_slot *s = &m->slots[i];
        if (s->vec) *s->vec = (const float *)(m->arena + s->off);
        else s->mat->data = m->arena + s->off;
    }
    if (m->cfg.tie_embeddings) m->lm_head = m->embed;
}

/* FNV-1a over 64-bit words of the F32 slots (see slot_floats): identifies the base weights. */
typedef struct {
    uint64_t h;
} base_hash;

static void hash_feed(base_hash *bh, const float *x, size_t n_floats) {
    const uint64_t *w = (const uint64_t *)x;
    for (size_t i = 0; i < n_floats / 2; i++) {
        bh->h ^= w[i];
        bh->h *= 0x100000001b3ULL;
    }
}

/* Reads every tensor of the tables from the checkpoint into the arena, as F32 first (in place in an
 * F32 arena, else through scratch that the engine then rounds and packs), hashing as it goes. Each
 * tensor's file pages are dropped once converted, so resident memory stays near the arena's size. */
static int fill(hlpt_model *m, const hlpt_st *st, char *why, size_t len) {
    size_t most = 0;
    for (int i = 0; i < m->n_slots; i++) {
        size_t f = slot_floats(m->slots[i].rows, m->slots[i].cols);
        most = f > most ? f : most;
    }
    float *scratch = NULL;
    if (m->dtype != HLPT_BASE_F32 && !(scratch = malloc(most * sizeof(float))))
        return hlpt_why(why, len, HLPT_ERR_NOMEM, "%zu bytes to convert the weights", most * sizeof(float));
    base_hash bh = {0xcbf29ce484222325ULL};
    int err = HLPT_OK;
    for (int i = 0; i < m->n_slots && !err; i++) {
        tensor_slot *s = &m->slots[i];
        int64_t shape[2] = {s->rows, s->cols};
        size_t n = (size_t)s->rows * s->cols, nslot = slot_floats(s->rows, s->cols);
        int f32_here = s->vec || m->dtype == HLPT_BASE_F32;
        float *dst = f32_here ? (float *)(m->arena + s->off) : scratch;
        err = hlpt_st_get_f32(st, s->name, s->vec ? 1 : 2, shape, dst, why, len);
        if (err) break;
        memset(dst + n, 0, (nslot - n) * sizeof(float));
        hash_feed(&bh, dst, nslot);
        if (!f32_here && hlpt_weight_store(s->mat, m->arena + s->off, dst))
            err = hlpt_why(why, len, HLPT_ERR_NOMEM, "packing %s", s->name);
        hlpt_st_release(st, s->name);
    }
    free(scratch);
    snprintf(m->hash, sizeof m->hash, "%016llx", (unsigned long long)bh.h);
    return err;
}

static int model_prepare(hlpt_model *m, const char *dir, char *why, size_t len) {
    const hlpt_config *c = &m->cfg;
    m->fd = -1;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    m->inv_freq = malloc(sizeof(float) * (size_t)(c->head_dim / 2));
    if (!m->layers || !m->inv_freq || build_slots(m)) return HLPT_ERR_NOMEM;
    /* As HF computes it: 1 / theta^(2j/D) in float32. */
    for (int j = 0; j < c->head_dim / 2; j++)
        m->inv_freq[j] = (float)(1.0 / pow((double)c->rope_theta, (double)(2 * j) / c->head_dim));
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    return hlpt_tokenizer_load(path, &m->tok, why, len);
}

void hlpt_model_close(hlpt_model *m) {
    if (!m) return;
    if (m->map) munmap(m->map, m->map_bytes);
    if (m->fd >= 0) close(m->fd);
    hlpt_tokenizer_free(m->tok);
    free(m->layers);
    free(m->inv_freq);
    free(m->slots);
    free(m);
}

static int model_load(const char *dir, hlpt_base_dtype dtype, int shared, hlpt_model **out, char *why,
                      size_t len) {
    *out = NULL;
    hlpt_st *st = NULL;
    int err = hlpt_engine_check(dtype, why, len);
    if (err) return err;
    hlpt_model *m = calloc(1, sizeof *m);
    if (!m) return HLPT_ERR_NOMEM;
    m->dtype = hlpt_base_dtype_resolve(dtype);
    hlpt_engine_note_base(m->dtype);
    err = hlpt_config_load(dir, &m->cfg, why, len);
    if (!err) err = model_prepare(m, dir, why, len);
    if (!err) err = hlpt_st_open(dir, &st, why, len);
    if (err) goto out;

    size_t head = shared ? SHM_HEADER : 0;
    m->map_bytes = head + m->arena_bytes;
    if (shared) {
        m->fd = memfd_create("hlpt-base", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (m->fd < 0 || ftruncate(m->fd, (off_t)m->map_bytes) != 0) {
            err = hlpt_why(why, len, HLPT_ERR_IO, "memfd of %zu bytes: %s", m->map_bytes, strerror(errno));
            goto out;
        }
        m->map = mmap(NULL, m->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
    } else {
        m->map = mmap(NULL, m->map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    if (m->map == MAP_FAILED) {
        m->map = NULL;
        err = hlpt_why(why, len, HLPT_ERR_NOMEM, "mapping %zu bytes of weights: %s", m->map_bytes, strerror(errno));
        goto out;
    }
    m->arena = (char *)m->map + head;
    point(m);
    if ((err = fill(m, st, why, len))) goto out;

    if (shared) {
        shm_header *h = m->map;
        memcpy(h->magic, SHM_MAGIC, 8);
        h->header_bytes = SHM_HEADER;
        h->config_bytes = sizeof(hlpt_config);
        h->arena_bytes = m->arena_bytes;
        h->dtype = (uint32_t)m->dtype;
        h->cfg = m->cfg;
        memcpy(h->hash, m->hash, 17);
        /* F_SEAL_WRITE needs every writable mapping gone: unmap, seal, map again read-only. */
        munmap(m->map, m->map_bytes);
        m->map = NULL;
        if (fcntl(m->fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
            err = hlpt_why(why, len, HLPT_ERR_IO, "sealing the weights: %s", strerror(errno));
            goto out;
        }
        /* MAP_POPULATE: the page tables point at the memfd's pages now rather than at first use, so
         * the first request pays no page faults (and every process visibly maps the same pages). */
        m->map = mmap(NULL, m->map_bytes, PROT_READ, MAP_SHARED | MAP_POPULATE, m->fd, 0);
        if (m->map == MAP_FAILED) {
            m->map = NULL;
            err = hlpt_why(why, len, HLPT_ERR_IO, "mapping sealed weights: %s", strerror(errno));
            goto out;
        }
        m->arena = (char *)m->map + head;
        point(m);
    } else if (mprotect(m->map, m->map_bytes, PROT_READ) != 0) {
        err = hlpt_why(why, len, HLPT_ERR_IO, "protecting weights: %s", strerror(errno));
        goto out;
    }
out:
    hlpt_st_close(st);
    if (err) {
        hlpt_model_close(m);
        return err;
    }
    *out = m;
    return HLPT_OK;
}

int hlpt_model_open(const char *dir, hlpt_base_dtype dtype, hlpt_model **out, char *why, size_t len) {
    return model_load(dir, dtype, 0, out, why, len);
}

int hlpt_model_open_shared(const char *dir, hlpt_base_dtype dtype, hlpt_model **out, char *why, size_t len) {
    return model_load(dir, dtype, 1, out, why, len);
}

int hlpt_model_attach(const char *dir, int fd, hlpt_model **out, char *why, size_t len) {
    *out = NULL;
    struct stat sb;
    int seals = fcntl(fd, F_GET_SEALS);
    int need = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW;
    if (fstat(fd, &sb) != 0 || seals < 0 || (seals & need) != need || (size_t)sb.st_size < SHM_HEADER)
        return hlpt_why(why, len, HLPT_ERR_FORMAT, "fd %d is not a sealed weight arena", fd);
    hlpt_model *m = calloc(1, sizeof *m);
    if (!m) return HLPT_ERR_NOMEM;
    int err = HLPT_OK;
    m->map_bytes = (size_t)sb.st_size;
    m->map = mmap(NULL, m->map_bytes, PROT_READ, MAP_SHARED, fd, 0);
    if (m->map == MAP_FAILED) {
        m->map = NULL;
        err = hlpt_why(why, len, HLPT_ERR_IO, "mapping fd %d: %s", fd, strerror(errno));
        goto out;
    }
    const shm_header *h = m->map;
    if (memcmp(h->magic, SHM_MAGIC, 8) || h->config_bytes != sizeof(hlpt_config) ||
        h->header_bytes != SHM_HEADER || h->arena_bytes + SHM_HEADER != m->map_bytes ||
        (h->dtype != HLPT_BASE_F32 && h->dtype != HLPT_BASE_BF16)) {
        err = hlpt_why(why, len, HLPT_ERR_FORMAT, "fd %d: bad arena header", fd);
        goto out;
    }
    m->cfg = h->cfg;
    m->dtype = (hlpt_base_dtype)h->dtype;
    memcpy(m->hash, h->hash, 17);
    m->hash[16] = 0;
    if ((err = hlpt_engine_check(m->dtype, why, len))) goto out;
    hlpt_engine_note_base(m->dtype);
    if ((err = model_prepare(m, dir, why, len))) goto out;
    if (m->arena_bytes != h->arena_bytes) {
        err = hlpt_why(why, len, HLPT_ERR_FORMAT, "fd %d: arena size does not match its config", fd);
        goto out;
    }
    m->fd = -1; /* the fd stays the caller's */
    m->arena = (char *)m->map + SHM_HEADER;
    point(m);
out:
    if (err) {
        hlpt_model_close(m);
        return err;
    }
    *out = m;
    return HLPT_OK;
}

const hlpt_config *hlpt_model_config(const hlpt_model *m) { return &m->cfg; }
const hlpt_tokenizer *hlpt_model_tokenizer(const hlpt_model *m) { return m->tok; }
const char *hlpt_model_hash(const hlpt_model *m) { return m->hash; }
int hlpt_model_fd(const hlpt_model *m) { return m->fd; }
size_t hlpt_model_bytes(const hlpt_model *m) { return m->arena_bytes; }
hlpt_base_dtype hlpt_model_dtype(const hlpt_model *m) { return m->dtype; }

size_t hlpt_model_matrix_bytes(const hlpt_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_slots; i++)
        if (m->slots[i].mat && read_whole(m, m->slots[i].mat)) n += m->slots[i].bytes;
    return n;
}
/* ---------------------------------------------------------------------------------------------- */
/* Sequences (KV caches)                                                                           */

/* Gate slots per layer: one per LoRA module, and the prefix gate. */
#define GATE_PREFIX HLPT_MOD_COUNT
#define GATE_SLOTS (HLPT_MOD_COUNT + 1)

struct hlpt_seq {
    const hlpt_model *m;
    const hlpt_adapter *a;
    int cap;               /* positions */
    int n;                 /* tokens cached */
    size_t elt;            /* bytes per cached value: 4 (F32 base) or 2 (BF16 base) */
    void *k, *v;           /* [L, cap, KVD] of F32 or BF16, as the base */
    double *gsum;          /* [L, GATE_SLOTS] causal gate running sums */
    int *gcnt;             /* [L, GATE_SLOTS] */
};

int hlpt_seq_new(const hlpt_model *m, const hlpt_adapter *a, int max_tokens, hlpt_seq **out) {
    *out = NULL;
    const hlpt_config *c = &m->cfg;
    if (max_tokens <= 0) return HLPT_ERR_INVAL;
    hlpt_seq *s = calloc(1, sizeof *s);
    if (!s) return HLPT_ERR_NOMEM;
    size_t kv = (size_t)c->n_layers * max_tokens * c->n_kv_heads * c->head_dim;
    s->m = m;
    s->a = a;
    s->cap = max_tokens;
    s->elt = m->dtype == HLPT_BASE_BF16 ? sizeof(uint16_t) : sizeof(float);
    s->k = malloc(kv * s->elt);
    s->v = malloc(kv * s->elt);
    s->gsum = calloc((size_t)c->n_layers * GATE_SLOTS, sizeof(double));
    s->gcnt = calloc((size_t)c->n_layers * GATE_SLOTS, sizeof(int));
    if (!s->k || !s->v || !s->gsum || !s->gcnt) {
        hlpt_seq_free(s);
        return HLPT_ERR_NOMEM;
    }
    *out = s;
    return HLPT_OK;
}

void hlpt_seq_free(hlpt_seq *s) {
    if (!s) return;
    free(s->k);
    free(s->v);
    free(s->gsum);
    free(s->gcnt);
    free(s);
}

void hlpt_seq_reset(hlpt_seq *s) {
    size_t n = (size_t)s->m->cfg.n_layers * GATE_SLOTS;
    s->n = 0;
    memset(s->gsum, 0, n * sizeof(double));
    memset(s->gcnt, 0, n * sizeof(int));
}

int hlpt_seq_len(const hlpt_seq *s) { return s->n; }

/* ---------------------------------------------------------------------------------------------- */
/* Activations and segments                                                                        */

/* One sequence's rows in a packed batch. */
typedef struct {
    int off, n;               /* rows [off, off+n) */
    int past;                 /* tokens already cached before these rows (0 in training) */
    int pos0;                 /* RoPE position of the sequence's first real token */
    const hlpt_adapter *a;    /* NULL: base only */
    hlpt_seq *seq;            /* NULL in training: keys come from the layer's own k/v rows */
    size_t att_off;           /* this segment's block in the layer's att buffer */
} segment;

/* The activations of one layer over N rows. Each buffer's shape is in the comment. */
#define ACT_BUFFERS(X)                                                        \
    X(float, h1, N *C)        /* input_layernorm output */                    \
    X(float, rstd1, N)                                                        \
    X(float, q, N *QD)        /* after RoPE */                                \
    X(float, k, N *KVD)       /* after RoPE */                                \
    X(float, v, N *KVD)                                                       \
    X(float, ao, N *QD)       /* attention output, o_proj input */            \
    X(float, x2, N *C)        /* residual after attention */                  \
    X(float, h2, N *C)        /* post_attention_layernorm output */           \
    X(float, rstd2, N)                                                        \
    X(float, fg, N *F)        /* gate_proj output */                          \
    X(float, fu, N *F)        /* up_proj output */                            \
    X(float, fa, N *F)        /* silu(fg) * fu, down_proj input */            \
    X(float, ps, N)           /* prefix gate scores */                        \
    X(float, pg, N)           /* prefix gates */                              \
    X(float, att, ATT)        /* per segment [H, n, P + S] */

typedef struct {
#define X(type, name, count) type *name;
    ACT_BUFFERS(X)
#undef X
    float *xa[HLPT_MOD_COUNT];    /* [N, R] LoRA A outputs */
    float *ls[HLPT_MOD_COUNT];    /* [N] LoRA gate scores */
    float *lg[HLPT_MOD_COUNT];    /* [N] LoRA gates */
    uint8_t *keep[HLPT_MOD_COUNT];/* [N, I] dropout keep masks (training only) */
} layer_acts;

/* Sizes of one layer_acts block; the same walk sizes it and slices it. */
typedef struct {
    size_t N, C, QD, KVD, F, ATT, R;
    unsigned lora_mods;   /* modules that need LoRA buffers */
    int keep;             /* dropout masks needed */
    int max_in;           /* largest module input */
} acts_shape;

static size_t acts_slice(const acts_shape *sh, layer_acts *t, char *base) {
    size_t N = sh->N, C = sh->C, QD = sh->QD, KVD = sh->KVD, F = sh->F, ATT = sh->ATT;
    size_t off = 0;
#define TAKE(ptr, type, count)                                                 \
    do {                                                                       \
        if (base) ptr = (type *)(base + off);                                  \
        off += (((count) * sizeof(type)) + 63) & ~(size_t)63;                  \
    } while (0)
#define X(type, name, count) TAKE(t->name, type, count);
    ACT_BUFFERS(X)
#undef X
    for (int m = 0; m < HLPT_MOD_COUNT; m++) {
        if (!(sh->lora_mods & (1u << m))) continue;
        TAKE(t->xa[m], float, N * sh->R);
        TAKE(t->ls[m], float, N);
        TAKE(t->lg[m], float, N);
        if (sh->keep) TAKE(t->keep[m], uint8_t, N * (size_t)sh->max_in);
    }
#undef TAKE
    (void)C; (void)QD; (void)KVD; (void)F; (void)ATT;
    return off;
}

/* A growable byte buffer: realloc only when a bigger batch than ever before arrives. */
typedef struct {
    void *p;
    size_t n;
} growbuf;

static int grow(growbuf *b, size_t n) {
    if (n <= b->n) return HLPT_OK;
    void *p = realloc(b->p, n);
    if (!p) return HLPT_ERR_NOMEM;
    b->p = p;
    b->n = n;
    return HLPT_OK;
}

struct hlpt_runner {
    const hlpt_model *m;
    growbuf acts;     /* layer_acts block(s) */
    growbuf xs;       /* residual stream(s): [N,C] (inference: 2; training: L+1) */
    growbuf logits;   /* [rows, V] */
    growbuf grads;    /* backward scratch */
    growbuf misc;     /* positions, segments, targets */
    growbuf tab;      /* layer_acts descriptors of a training step */
    growbuf kv;       /* a BF16 cache's keys and values widened to F32 for attention */
    hlpt_engine *eng; /* the base's products: cached primitives and scratch */
};

int hlpt_runner_new(const hlpt_model *m, hlpt_runner **out) {
    *out = NULL;
    hlpt_runner *r = calloc(1, sizeof *r);
    if (!r) return HLPT_ERR_NOMEM;
    r->m = m;
    if (hlpt_engine_new(&r->eng)) {
        free(r);
        return HLPT_ERR_NOMEM;
    }
    *out = r;
    return HLPT_OK;
}

void hlpt_runner_free(hlpt_runner *r) {
    if (!r) return;
    free(r->acts.p);
    free(r->xs.p);
    free(r->logits.p);
    free(r->grads.p);
    free(r->misc.p);
    free(r->tab.p);
    free(r->kv.p);
    hlpt_engine_free(r->eng);
    free(r);
}

/* ---------------------------------------------------------------------------------------------- */
/* Layer forward                                                                                   */

typedef struct {
    const hlpt_model *m;
    segment *segs;
    int n_segs;
    int N;
    const int *pos;        /* [N] RoPE positions */
    int train;             /* dropout on, training segments (no caches) */
    uint64_t seed;         /* dropout seed */
    hlpt_engine *eng;      /* the runner's */
    float *kv;             /* scratch: [2, S_max, KVD] for widening a BF16 cache */
} batch;

static float lora_scale(const hlpt_adapter *a) { return a->cfg.alpha / (float)a->cfg.r; }

static double *gate_sum(const segment *s, int l, int slotno) {
    return s->seq ? &s->seq->gsum[l * GATE_SLOTS + slotno] : NULL;
}
static int *gate_cnt(const segment *s, int l, int slotno) {
    return s->seq ? &s->seq->gcnt[l * GATE_SLOTS + slotno] : NULL;
}

/* Dropout keep mask of (layer, module, segment rows), a pure function of the seed so that
 * recomputation during backward draws the same mask. */
static void draw_keep(uint8_t *keep, uint64_t seed, int l, int mod, int row0, int n, int I, float p) {
    uint64_t thresh = (uint64_t)(p * 18446744073709551616.0);
    for (int t = 0; t < n; t++) {
        uint64_t base = rng_hash4(seed, (uint64_t)l, (uint64_t)mod, (uint64_t)(row0 + t));
        for (int i = 0; i < I; i++) keep[(size_t)t * I + i] = rng_mix(base + (uint64_t)i) >= thresh;
    }
}

/* out[N,O] += the LoRA branch of module mod for every segment whose adapter has one. */
static void lora_apply(const batch *b, int l, int mod, const float *inp, float *out, int I, int O,
                       layer_acts *t) {
    for (int si = 0; si < b->n_segs; si++) {
        const segment *s = &b->segs[si];
        const hlpt_lora *lo = s->a ? s->a->lora[l][mod] : NULL;
        if (!lo) continue;
        int R = s->a->cfg.r;
        const float *x = inp + (size_t)s->off * I;
        float *g = NULL;
        if (lo->gate) {
            g = t->lg[mod] + s->off;
            gate_forward(g, t->ls[mod] + s->off, x, lo->gate, s->n, I, s->a->cfg.gate,
                         gate_sum(s, l, mod), gate_cnt(s, l, mod));
        }
        const uint8_t *keep = NULL;
        float p = 0;
        if (b->train && s->a->cfg.dropout > 0) {
            p = s->a->cfg.dropout;
            uint8_t *k = t->keep[mod] + (size_t)s->off * I;
            draw_keep(k, b->seed, l, mod, s->off, s->n, I, p);
            keep = k;
        }
        lora_forward(out + (size_t)s->off * O, t->xa[mod] + (size_t)s->off * R, x, lo->A, lo->B, g,
                     lora_scale(s->a), keep, p, s->n, I, O, R);
    }
}

/* Writes rows [past, past+n) of layer l's cache (keys or values) from new[n,KVD] and returns the
 * cache's rows [0, past+n) as F32: the cache itself when F32, else widened into wide. A BF16 cache
 * rounds new keys before any query sees them, so a token attends to the same keys now as later. */
static const float *cache_append(const hlpt_seq *seq, void *cache, int l, int past, int n, const float *new_rows,
                                 float *wide) {
    const hlpt_config *c = &seq->m->cfg;
    size_t KVD = (size_t)c->n_kv_heads * c->head_dim, layer = (size_t)l * seq->cap * KVD;
    if (seq->elt == sizeof(float)) {
        float *f = (float *)cache + layer;
        memcpy(f + (size_t)past * KVD, new_rows, sizeof(float) * n * KVD);
        return f;
    }
    uint16_t *h = (uint16_t *)cache + layer;
    hlpt_bf16_from_f32(h + (size_t)past * KVD, new_rows, (size_t)n * KVD);
    hlpt_bf16_to_f32_n(wide, h, (size_t)(past + n) * KVD);
    return wide;
}

/* x_out[N,C] = block l (x_in[N,C]); activations into t. */
static void layer_forward(const batch *b, int l, layer_acts *t, const float *x_in, float *x_out) {
    const hlpt_model *m = b->m;
    const hlpt_config *c = &m->cfg;
    const layer_weights *W = &m->layers[l];
    int N = b->N, C = c->hidden, H = c->n_heads, KV = c->n_kv_heads, D = c->head_dim, F = c->ffn;
    int QD = H * D, KVD = KV * D;

    rmsnorm_forward(t->h1, t->rstd1, x_in, W->attn_norm, N, C, c->rms_eps);
    hlpt_linear(b->eng, t->q, t->h1, &W->w[HLPT_MOD_Q], N, 0);
    hlpt_linear(b->eng, t->k, t->h1, &W->w[HLPT_MOD_K], N, 0);
    hlpt_linear(b->eng, t->v, t->h1, &W->w[HLPT_MOD_V], N, 0);
    lora_apply(b, l, HLPT_MOD_Q, t->h1, t->q, C, QD, t);
    lora_apply(b, l, HLPT_MOD_K, t->h1, t->k, C, KVD, t);
    lora_apply(b, l, HLPT_MOD_V, t->h1, t->v, C, KVD, t);
    rope_forward(t->q, b->pos, m->inv_freq, N, H, D);
    rope_forward(t->k, b->pos, m->inv_freq, N, KV, D);

    for (int si = 0; si < b->n_segs; si++) {
        segment *s = &b->segs[si];
        const hlpt_prefix *pf = s->a ? s->a->prefix[l] : NULL;
        int P = pf ? s->a->cfg.n_virtual : 0;
        const float *g = NULL;
        if (pf && pf->gate) {
            gate_forward(t->pg + s->off, t->ps + s->off, t->h1 + (size_t)s->off * C, pf->gate, s->n, C,
                         s->a->cfg.gate, gate_sum(s, l, GATE_PREFIX), gate_cnt(s, l, GATE_PREFIX));
            g = t->pg + s->off;
        }
        const float *k = t->k + (size_t)s->off * KVD, *v = t->v + (size_t)s->off * KVD;
        int S = s->n;
        if (s->seq) {
            /* Append the new keys to the cache, then attend over all of it. */
            S = s->past + s->n;
            k = cache_append(s->seq, s->seq->k, l, s->past, s->n, k, b->kv);
            v = cache_append(s->seq, s->seq->v, l, s->past, s->n, v, b->kv + (size_t)S * KVD);
        }
        attention_forward(t->ao + (size_t)s->off * QD, t->att + s->att_off, t->q + (size_t)s->off * QD,
                          k, v, pf ? pf->key : NULL, pf ? pf->value : NULL, g, s->n, S, P, H, KV, D);
    }

    hlpt_linear(b->eng, t->x2, t->ao, &W->w[HLPT_MOD_O], N, 0);
    lora_apply(b, l, HLPT_MOD_O, t->ao, t->x2, QD, C, t);
    for (size_t i = 0; i < (size_t)N * C; i++) t->x2[i] += x_in[i];

    rmsnorm_forward(t->h2, t->rstd2, t->x2, W->mlp_norm, N, C, c->rms_eps);
    hlpt_linear(b->eng, t->fg, t->h2, &W->w[HLPT_MOD_GATE], N, 0);
    hlpt_linear(b->eng, t->fu, t->h2, &W->w[HLPT_MOD_UP], N, 0);
    lora_apply(b, l, HLPT_MOD_GATE, t->h2, t->fg, C, F, t);
    lora_apply(b, l, HLPT_MOD_UP, t->h2, t->fu, C, F, t);
    swiglu_forward(t->fa, t->fg, t->fu, N, F);
    hlpt_linear(b->eng, x_out, t->fa, &W->w[HLPT_MOD_DOWN], N, 0);
    lora_apply(b, l, HLPT_MOD_DOWN, t->fa, x_out, F, C, t);
    for (size_t i = 0; i < (size_t)N * C; i++) x_out[i] += t->x2[i];
}

/* Shape of the activations for this batch (LoRA buffers for every module any segment adapts). */
static acts_shape batch_shape(const batch *b, size_t att_total) {
    const hlpt_config *c = &b->m->cfg;
    acts_shape sh = {.N = (size_t)b->N, .C = (size_t)c->hidden,
                     .QD = (size_t)c->n_heads * c->head_dim,
                     .KVD = (size_t)c->n_kv_heads * c->head_dim, .F = (size_t)c->ffn,
                     .ATT = att_total, .R = 1, .keep = 0, .max_in = 0};
    for (int si = 0; si < b->n_segs; si++) {
        const hlpt_adapter *a = b->segs[si].a;
        if (!a) continue;
        if ((size_t)a->cfg.r > sh.R) sh.R = (size_t)a->cfg.r;
        sh.lora_mods |= a->cfg.targets;
        if (b->train && a->cfg.dropout > 0) sh.keep = 1;
    }
    for (int mod = 0; mod < HLPT_MOD_COUNT; mod++) {
        int in, o;
        hlpt_module_dims(c, mod, &in, &o);
        if ((sh.lora_mods & (1u << mod)) && in > sh.max_in) sh.max_in = in;
    }
    return sh;
}

/* Lays out att blocks per segment; returns the total floats. */
static size_t plan_att(const batch *b) {
    const hlpt_config *c = &b->m->cfg;
    size_t off = 0;
    for (int si = 0; si < b->n_segs; si++) {
        segment *s = &b->segs[si];
        int P = s->a && s->a->has_prefix ? s->a->cfg.n_virtual : 0;
        s->att_off = off;
        off += (size_t)c->n_heads * s->n * (P + s->past + s->n);
    }
    return off;
}

/* The widest input of any base product (what hlpt_linear reads) and the widest output (what
 * hlpt_linear_backward reads). */
static int max_input(const hlpt_config *c) {
    int QD = c->n_heads * c->head_dim, x = c->hidden;
    x = QD > x ? QD : x;
    return c->ffn > x ? c->ffn : x;
}

static int max_output(const hlpt_config *c) {
    int x = max_input(c);
    return c->vocab > x ? c->vocab : x;
}

/* The most scratch hlpt_linear_backward needs for any matrix. */
static size_t backward_scratch(const hlpt_model *m) {
    size_t most = 0;
    for (int i = 0; i < m->n_slots; i++) {
        size_t n = m->slots[i].mat ? hlpt_engine_backward_scratch(m->slots[i].mat) : 0;
        most = n > most ? n : most;
    }
    return most;
}

/* ---------------------------------------------------------------------------------------------- */
/* Inference step                                                                                  */

int hlpt_model_step(hlpt_runner *r, hlpt_seq **seqs, const int *const *tokens, const int *n,
                    int n_seqs, int all_logits, const float **logits, char *why, size_t len) {
    const hlpt_model *m = r->m;
    const hlpt_config *c = &m->cfg;
    int C = c->hidden, V = c->vocab;
    *logits = NULL;
    int N = 0;
    for (int i = 0; i < n_seqs; i++) {
        if (n[i] <= 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "sequence %d: no tokens", i);
        if (seqs[i]->n + n[i] > seqs[i]->cap)
            return hlpt_why(why, len, HLPT_ERR_RANGE, "sequence %d: %d tokens exceed its context of %d",
                            i, seqs[i]->n + n[i], seqs[i]->cap);
        for (int t = 0; t < n[i]; t++)
            if (tokens[i][t] < 0 || tokens[i][t] >= V)
                return hlpt_why(why, len, HLPT_ERR_RANGE, "token id %d out of range [0, %d)", tokens[i][t], V);
        N += n[i];
    }
    if (N == 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "empty batch");

    size_t misc = (size_t)N * sizeof(int) + (size_t)n_seqs * sizeof(segment);
    if (grow(&r->misc, misc)) return HLPT_ERR_NOMEM;
    segment *segs = r->misc.p;
    int *pos = (int *)(segs + n_seqs);
    for (int i = 0, off = 0; i < n_seqs; i++) {
        const hlpt_adapter *a = seqs[i]->a;
        segs[i] = (segment){.off = off, .n = n[i], .past = seqs[i]->n,
                            .pos0 = a && a->has_prefix ? a->cfg.n_virtual : 0, .a = a, .seq = seqs[i]};
        for (int t = 0; t < n[i]; t++) pos[off + t] = segs[i].pos0 + seqs[i]->n + t;
        off += n[i];
    }
    batch b = {.m = m, .segs = segs, .n_segs = n_seqs, .N = N, .pos = pos, .train = 0, .eng = r->eng};
    size_t att = plan_att(&b);
    acts_shape sh = batch_shape(&b, att);
    layer_acts t;
    size_t rows = all_logits ? (size_t)N : (size_t)n_seqs, kv = 0;
    if (m->dtype == HLPT_BASE_BF16)
        for (int i = 0; i < n_seqs; i++) {
            size_t S = (size_t)segs[i].past + segs[i].n;
            kv = S > kv ? S : kv;
        }
    if (grow(&r->acts, acts_slice(&sh, &t, NULL)) || grow(&r->xs, 2 * (size_t)N * C * sizeof(float)) ||
        grow(&r->logits, rows * V * sizeof(float)) || grow(&r->kv, 2 * kv * sh.KVD * sizeof(float)) ||
        hlpt_engine_reserve(r->eng, N, max_input(c), 0))
        return hlpt_why(why, len, HLPT_ERR_NOMEM, "scratch for %d tokens", N);
    acts_slice(&sh, &t, r->acts.p);
    b.kv = r->kv.p;

    float *x = r->xs.p, *y = x + (size_t)N * C;
    for (int i = 0, row = 0; i < n_seqs; i++)
        for (int k = 0; k < n[i]; k++, row++)
            hlpt_weight_row(&m->embed, tokens[i][k], x + (size_t)row * C);
    for (int l = 0; l < c->n_layers; l++) {
        layer_forward(&b, l, &t, x, y);
        float *tmp = x; x = y; y = tmp;
    }
    for (int i = 0; i < n_seqs; i++) seqs[i]->n += n[i];

    /* Final norm and lm_head on the rows that need logits only. */
    float *out = r->logits.p;
    if (all_logits) {
        rmsnorm_forward(y, NULL, x, m->norm, N, C, c->rms_eps);
        hlpt_linear(r->eng, out, y, &m->lm_head, N, 0);
    } else {
        for (int i = 0; i < n_seqs; i++)
            memcpy(y + (size_t)i * C, x + (size_t)(segs[i].off + segs[i].n - 1) * C, sizeof(float) * C);
        rmsnorm_forward(y, NULL, y, m->norm, n_seqs, C, c->rms_eps);
        hlpt_linear(r->eng, out, y, &m->lm_head, n_seqs, 0);
    }
    *logits = out;
    return HLPT_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Training                                                                                        */

/* Backward scratch, one set reused by every layer. */
#define GRAD_BUFFERS(X)        \
    X(dh, N *C)                \
    X(dq, N *QD)               \
    X(dk, N *KVD)              \
    X(dv, N *KVD)              \
    X(dao, N *QD)              \
    X(dfa, N *F)               \
    X(dfg, N *F)               \
    X(dfu, N *F)               \
    X(dg, N)

typedef struct {
#define X(name, count) float *name;
    GRAD_BUFFERS(X)
#undef X
} grad_scratch;

static size_t grads_slice(const acts_shape *sh, grad_scratch *g, char *base) {
    size_t N = sh->N, C = sh->C, QD = sh->QD, KVD = sh->KVD, F = sh->F, off = 0;
#define X(name, count)                                                       \
    if (base) g->name = (float *)(base + off);                               \
    off += (((count) * sizeof(float)) + 63) & ~(size_t)63;
    GRAD_BUFFERS(X)
#undef X
    (void)C; (void)QD; (void)KVD; (void)F;
    return off;
}

/* The gradient slot of a parameter: the same offset in the gradient arena. */
static float *grad_of(const hlpt_adapter *a, float *grads, const float *param) {
    return param ? grads + (param - a->params) : NULL;
}

/* Backward of lora_apply for module mod: dinp[N,I] += ..., adapter grads += ...; dout[N,O]. */
static void lora_back(const batch *b, int l, int mod, const float *inp, float *dinp, const float *dout,
                      int I, int O, layer_acts *t, grad_scratch *gs, float *grads) {
    for (int si = 0; si < b->n_segs; si++) {
        const segment *s = &b->segs[si];
        const hlpt_lora *lo = s->a ? s->a->lora[l][mod] : NULL;
        if (!lo) continue;
        const hlpt_adapter *a = s->a;
        int R = a->cfg.r;
        const float *x = inp + (size_t)s->off * I;
        float *dx = dinp ? dinp + (size_t)s->off * I : NULL;
        float *g = lo->gate ? t->lg[mod] + s->off : NULL;
        float *dg = NULL;
        if (g) {
            dg = gs->dg + s->off;
            memset(dg, 0, sizeof(float) * s->n);
        }
        const uint8_t *keep = b->train && a->cfg.dropout > 0 ? t->keep[mod] + (size_t)s->off * I : NULL;
        lora_backward(dx, grad_of(a, grads, lo->A), grad_of(a, grads, lo->B), dg,
                      dout + (size_t)s->off * O, t->xa[mod] + (size_t)s->off * R, x, lo->A, lo->B, g,
                      lora_scale(a), keep, keep ? a->cfg.dropout : 0, s->n, I, O, R);
        if (g)
            gate_backward(dx, grad_of(a, grads, lo->gate), dg, t->ls[mod] + s->off, x, lo->gate, s->n, I,
                          a->cfg.gate);
    }
}

/* Which parts of layer l must be differentiated. */
static int adapts_attention(const hlpt_adapter *a, int l) {
    if (a->prefix[l]) return 1;
    for (int mod = HLPT_MOD_Q; mod <= HLPT_MOD_O; mod++)
        if (a->lora[l][mod]) return 1;
    return 0;
}

/*
 * dx[N,C]: in, the gradient of the layer output; out, the gradient of its input (when need_dx).
 * Differentiates layer_forward line by line, bottom to top of it.
 */
static void layer_backward(const batch *b, int l, layer_acts *t, const float *x_in, float *dx,
                           int need_dx, grad_scratch *gs, float *grads) {
    const hlpt_model *m = b->m;
    const hlpt_adapter *a = b->segs[0].a;
    const hlpt_config *c = &m->cfg;
    const layer_weights *W = &m->layers[l];
    int N = b->N, C = c->hidden, H = c->n_heads, KV = c->n_kv_heads, D = c->head_dim, F = c->ffn;
    int QD = H * D, KVD = KV * D;
    int need_attn = need_dx || adapts_attention(a, l);
    int need_h2 = need_attn || a->lora[l][HLPT_MOD_GATE] || a->lora[l][HLPT_MOD_UP];

    /* x_out = x2 + down(fa) (+ LoRA): dx is also d x2. */
    float *dfa = NULL;
    if (need_h2) {
        dfa = gs->dfa;
        memset(dfa, 0, sizeof(float) * (size_t)N * F);
        hlpt_linear_backward(b->eng, dfa, dx, &W->w[HLPT_MOD_DOWN], N);
    }
    lora_back(b, l, HLPT_MOD_DOWN, t->fa, dfa, dx, F, C, t, gs, grads);
    if (!need_h2) return;

    /* fa = silu(fg) * fu */
    memset(gs->dfg, 0, sizeof(float) * (size_t)N * F);
    memset(gs->dfu, 0, sizeof(float) * (size_t)N * F);
    swiglu_backward(gs->dfg, gs->dfu, dfa, t->fg, t->fu, N, F);
    /* fg = h2 Wg^T (+LoRA), fu = h2 Wu^T (+LoRA) */
    float *dh = need_attn ? gs->dh : NULL;
    if (dh) {
        memset(dh, 0, sizeof(float) * (size_t)N * C);
        hlpt_linear_backward(b->eng, dh, gs->dfg, &W->w[HLPT_MOD_GATE], N);
        hlpt_linear_backward(b->eng, dh, gs->dfu, &W->w[HLPT_MOD_UP], N);
    }
    lora_back(b, l, HLPT_MOD_GATE, t->h2, dh, gs->dfg, C, F, t, gs, grads);
    lora_back(b, l, HLPT_MOD_UP, t->h2, dh, gs->dfu, C, F, t, gs, grads);
    if (!need_attn) return;
    /* h2 = rmsnorm(x2): dx (= d x2) += its part */
    rmsnorm_backward(dx, NULL, dh, t->x2, W->mlp_norm, t->rstd2, N, C);

    /* x2 = x_in + o(ao) (+LoRA) */
    memset(gs->dao, 0, sizeof(float) * (size_t)N * QD);
    hlpt_linear_backward(b->eng, gs->dao, dx, &W->w[HLPT_MOD_O], N);
    lora_back(b, l, HLPT_MOD_O, t->ao, gs->dao, dx, QD, C, t, gs, grads);

    /* ao = attention(q, k, v, prefix, g) per segment */
    memset(gs->dq, 0, sizeof(float) * (size_t)N * QD);
    memset(gs->dk, 0, sizeof(float) * (size_t)N * KVD);
    memset(gs->dv, 0, sizeof(float) * (size_t)N * KVD);
    for (int si = 0; si < b->n_segs; si++) {
        const segment *s = &b->segs[si];
        const hlpt_prefix *pf = a->prefix[l];
        int P = pf ? a->cfg.n_virtual : 0;
        float *g = pf && pf->gate ? t->pg + s->off : NULL;
        float *dg = NULL;
        if (g) {
            dg = gs->dg + s->off;
            memset(dg, 0, sizeof(float) * s->n);
        }
        size_t qo = (size_t)s->off * QD, ko = (size_t)s->off * KVD;
        attention_backward(gs->dq + qo, gs->dk + ko, gs->dv + ko, pf ? grad_of(a, grads, pf->key) : NULL,
                           pf ? grad_of(a, grads, pf->value) : NULL, dg, gs->dao + qo, t->att + s->att_off,
                           t->q + qo, t->k + ko, t->v + ko, pf ? pf->key : NULL, pf ? pf->value : NULL, g,
                           s->n, s->n, P, H, KV, D);
    }
    rope_backward(gs->dq, b->pos, m->inv_freq, N, H, D);
    rope_backward(gs->dk, b->pos, m->inv_freq, N, KV, D);

    /* q,k,v = h1 W^T (+LoRA); the prefix gate s = sigmoid(h1 · w_p) */
    dh = need_dx ? gs->dh : NULL;
    if (dh) {
        memset(dh, 0, sizeof(float) * (size_t)N * C);
        hlpt_linear_backward(b->eng, dh, gs->dq, &W->w[HLPT_MOD_Q], N);
        hlpt_linear_backward(b->eng, dh, gs->dk, &W->w[HLPT_MOD_K], N);
        hlpt_linear_backward(b->eng, dh, gs->dv, &W->w[HLPT_MOD_V], N);
    }
    for (int si = 0; si < b->n_segs; si++) {
        const segment *s = &b->segs[si];
        const hlpt_prefix *pf = a->prefix[l];
        if (!pf || !pf->gate) continue;
        gate_backward(dh ? dh + (size_t)s->off * C : NULL, grad_of(a, grads, pf->gate), gs->dg + s->off,
                      t->ps + s->off, t->h1 + (size_t)s->off * C, pf->gate, s->n, C, a->cfg.gate);
    }
    lora_back(b, l, HLPT_MOD_Q, t->h1, dh, gs->dq, C, QD, t, gs, grads);
    lora_back(b, l, HLPT_MOD_K, t->h1, dh, gs->dk, C, KVD, t, gs, grads);
    lora_back(b, l, HLPT_MOD_V, t->h1, dh, gs->dv, C, KVD, t, gs, grads);
    if (dh) rmsnorm_backward(dx, NULL, dh, x_in, W->attn_norm, t->rstd1, N, C);
}

size_t hlpt_model_train_bytes_per_token(const hlpt_model *m, const hlpt_adapter *a, int T, int recompute) {
    segment s = {.off = 0, .n = T, .a = a};
    batch b = {.m = m, .segs = &s, .n_segs = 1, .N = T, .train = 1};
    acts_shape sh = batch_shape(&b, plan_att(&b));
    layer_acts t;
    size_t per_layer = acts_slice(&sh, &t, NULL);
    int L = m->cfg.n_layers, kept = L - a->lowest_layer;
    size_t bytes = (size_t)(L + 1) * T * m->cfg.hidden * sizeof(float);
    bytes += (recompute ? 1 : (size_t)(kept > 0 ? kept : 1)) * per_layer;
    bytes += (size_t)T * m->cfg.vocab * sizeof(float);
    return bytes / (size_t)T;
}

int hlpt_model_train_step(hlpt_runner *r, const hlpt_adapter *a, const int *tokens,
                          const int *labels, const int *lens, int n_seqs,
                          const hlpt_train_opts *opts, float *grads, float grad_scale,
                          hlpt_loss *loss, char *why, size_t len) {
    const hlpt_model *m = r->m;
    const hlpt_config *c = &m->cfg;
    int C = c->hidden, V = c->vocab, L = c->n_layers;
    memset(loss, 0, sizeof *loss);
    int N = 0;
    for (int i = 0; i < n_seqs; i++) {
        if (lens[i] <= 0) return hlpt_why(why, len, HLPT_ERR_INVAL, "sequence %d is empty", i);
        N += lens[i];
    }
    for (int i = 0; i < N; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return hlpt_why(why, len, HLPT_ERR_RANGE, "token id %d out of range [0, %d)", tokens[i], V);

    size_t misc = (size_t)n_seqs * sizeof(segment) + 2 * (size_t)N * sizeof(int);
    if (grow(&r->misc, misc)) return HLPT_ERR_NOMEM;
    segment *segs = r->misc.p;
    int *pos = (int *)(segs + n_seqs), *targets = pos + N;
    int pos0 = a->has_prefix ? a->cfg.n_virtual : 0;
    for (int i = 0, off = 0; i < n_seqs; i++) {
        segs[i] = (segment){.off = off, .n = lens[i], .pos0 = pos0, .a = a};
        for (int t = 0; t < lens[i]; t++) {
            pos[off + t] = pos0 + t;
            targets[off + t] = t + 1 < lens[i] ? labels[off + t + 1] : -100;
            if (targets[off + t] != -100 && (targets[off + t] < 0 || targets[off + t] >= V))
                return hlpt_why(why, len, HLPT_ERR_RANGE, "label %d out of range [0, %d)", targets[off + t], V);
        }
        off += lens[i];
    }
    int train = opts && opts->train;
    int recompute = opts && opts->recompute;
    batch b = {.m = m, .segs = segs, .n_segs = n_seqs, .N = N, .pos = pos, .train = train,
               .seed = opts ? opts->dropout_seed : 0, .eng = r->eng};
    acts_shape sh = batch_shape(&b, plan_att(&b));
    layer_acts probe;
    size_t per_layer = acts_slice(&sh, &probe, NULL);
    int low = a->lowest_layer < L ? a->lowest_layer : L;
    int kept = grads && !recompute ? L - low : 1;
    if (kept < 1) kept = 1;
    grad_scratch gs;
    size_t gbytes = grads ? grads_slice(&sh, &gs, NULL) + (size_t)N * C * sizeof(float) : 0;
    if (grow(&r->acts, (size_t)kept * per_layer) ||
        grow(&r->xs, (size_t)(L + 2) * N * C * sizeof(float)) ||
        grow(&r->logits, (size_t)N * V * sizeof(float)) || grow(&r->grads, gbytes) ||
        hlpt_engine_reserve(r->eng, N, grads ? max_output(c) : max_input(c),
                            grads ? backward_scratch(m) : 0))
        return hlpt_why(why, len, HLPT_ERR_NOMEM, "activations for %d tokens", N);

    /* xs: the input of every layer, then the final normed states. */
    float *xs = r->xs.p;
    for (int i = 0; i < N; i++) hlpt_weight_row(&m->embed, tokens[i], xs + (size_t)i * C);
    if (grow(&r->tab, (size_t)kept * sizeof(layer_acts))) return HLPT_ERR_NOMEM;
    layer_acts *acts = r->tab.p;
    for (int k = 0; k < kept; k++) acts_slice(&sh, &acts[k], (char *)r->acts.p + (size_t)k * per_layer);
    for (int l = 0; l < L; l++) {
        layer_acts *t = &acts[grads && !recompute && l >= low ? l - low : 0];
        layer_forward(&b, l, t, xs + (size_t)l * N * C, xs + (size_t)(l + 1) * N * C);
    }
    float *hf = xs + (size_t)(L + 1) * N * C;
    float *lg = r->logits.p;
    /* Final norm: rstd saved at the end of the grad scratch. */
    float *rstdf = grads ? (float *)((char *)r->grads.p + gbytes - (size_t)N * C * sizeof(float)) : NULL;
    rmsnorm_forward(hf, rstdf, xs + (size_t)L * N * C, m->norm, N, C, c->rms_eps);
    hlpt_linear(r->eng, lg, hf, &m->lm_head, N, 0);
    for (int i = 0; i < N; i++) {
        if (targets[i] == -100) continue;
        const float *row = lg + (size_t)i * V;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (row[v] > row[best]) best = v;
        loss->n_correct += best == targets[i];
    }
    loss->loss_sum = crossentropy_forward_backward(grads ? lg : NULL, lg, targets, N, V, grad_scale,
                                                   &loss->n_targets);
    if (!grads) return HLPT_OK;

    grads_slice(&sh, &gs, r->grads.p);
    /* dx of the top: through lm_head and the final norm. dh reused as dhf. */
    float *dx = hf; /* hf is dead after the logits; reuse it as dx */
    float *dhf = gs.dh;
    memset(dhf, 0, sizeof(float) * (size_t)N * C);
    hlpt_linear_backward(r->eng, dhf, lg, &m->lm_head, N);
    memset(dx, 0, sizeof(float) * (size_t)N * C);
    rmsnorm_backward(dx, NULL, dhf, xs + (size_t)L * N * C, m->norm, rstdf, N, C);
    for (int l = L - 1; l >= low; l--) {
        layer_acts *t = &acts[recompute ? 0 : l - low];
        const float *x_in = xs + (size_t)l * N * C;
        if (recompute) {
            /* Refill this layer's activations; the output lands in scratch we no longer need. */
            layer_forward(&b, l, t, x_in, xs + (size_t)(l + 1) * N * C);
        }
        layer_backward(&b, l, t, x_in, dx, l > low, &gs, grads);
    }
    return HLPT_OK;
}
