/*
 * engine.c - the base's weight storage and products (include/hlpt/engine.h): F32 through OpenBLAS,
 * BF16 through oneDNN matmul and an AVX512-BF16 kernel of our own. The only includer of oneDNN.
 *
 * The packed BF16 layout of W[O,I], seen as the matmul's B[K=I, N=O] (oneDNN tag BA16a64b2a):
 * K is padded to Kp (a multiple of 32), N to Np (a multiple of 64); tiles of 32 x 64 elements are
 * laid N-tile major, K-tile minor; inside a tile, 16 rows of input pairs, each row 64 outputs x 2
 * inputs. So element (k, n) sits at
 *     ((n / 64) * (Kp / 32) + k / 32) * 2048 + ((k % 32) / 2) * 128 + (n % 64) * 2 + k % 2
 * and one 64-byte load at a pair row holds 16 outputs x 2 inputs: exactly the operand of
 * vdpbf16ps, which multiplies pairs and sums into 16 F32 lanes. The padding holds zeros.
 *
 * Small batches (decoding: 1..HLPT_ENGINE_SMALL_M rows) are bandwidth-bound: kernel_rows() gives
 * each OpenMP thread whole N-tile columns, streams each column once from memory and keeps a tile of
 * up to 6 rows x 64 outputs of sums in registers. Large batches are compute-bound and go to
 * oneDNN's brgemm matmul on the same packed bytes.
 */
#include "hlpt/engine.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include <oneapi/dnnl/dnnl.h>

#include "hlpt/blas.h"
#include "hlpt/err.h"
#include "layers.h"

#define KT 32   /* K tile: 16 input pairs */
#define PAR_MIN_MACS (256u * 1024)
#define NT 64   /* N tile: 64 outputs */
#define TILE (KT * NT)

static size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

/* ---------------------------------------------------------------------------------------------- */
/* CPU and dtypes                                                                                  */

/* AVX512-BF16 (vdpbf16ps, vcvtneps2bf16) with the OS saving zmm state; AMX-BF16 implies it on every
 * CPU that has AMX. */
static int cpu_has_bf16(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    unsigned a, b, c, d;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) return 0;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (a >> 5) & 1;
#else
    return 0;
#endif
}

static int cpu_has_amx(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (d >> 22) & 1;
#else
    return 0;
#endif
}

int hlpt_base_dtype_parse(const char *name, hlpt_base_dtype *out) {
    static const struct {
        const char *name;
        hlpt_base_dtype dt;
    } names[] = {{"auto", HLPT_BASE_AUTO}, {"f32", HLPT_BASE_F32}, {"float32", HLPT_BASE_F32},
                 {"bf16", HLPT_BASE_BF16}, {"bfloat16", HLPT_BASE_BF16}};
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(name, names[i].name)) {
            *out = names[i].dt;
            return HLPT_OK;
        }
    return HLPT_ERR_INVAL;
}

const char *hlpt_base_dtype_name(hlpt_base_dtype dt) {
    return dt == HLPT_BASE_F32 ? "f32" : dt == HLPT_BASE_BF16 ? "bf16" : "auto";
}

hlpt_base_dtype hlpt_base_dtype_resolve(hlpt_base_dtype dt) {
    if (dt != HLPT_BASE_AUTO) return dt;
    return cpu_has_bf16() ? HLPT_BASE_BF16 : HLPT_BASE_F32;
}

/* ---------------------------------------------------------------------------------------------- */
/* oneDNN: one CPU engine per process; primitives per context                                       */

static dnnl_engine_t g_dnnl;
static int g_dnnl_ok;
static char g_impl[96] = "unavailable";
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void dnnl_md_2d(dnnl_memory_desc_t *md, int rows, int cols, int ld, dnnl_data_type_t dt) {
    dnnl_dims_t dims = {rows, cols}, strides = {ld, 1};
    dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides);
}

/* The matmul dst[M,N] = src[M,K] (bf16, row stride ld_src) x B[K,N] (packed); NULL on failure. */
static dnnl_primitive_t matmul_create(int M, int K, int N, int ld_src, int ld_dst, char *impl, size_t impl_len) {
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t bd = {K, N};
    dnnl_md_2d(&a, M, K, ld_src, dnnl_bf16);
    dnnl_md_2d(&c, M, N, ld_dst, dnnl_f32);
    if (dnnl_memory_desc_init_by_tag(&b, 2, bd, dnnl_bf16, dnnl_BA16a64b2a) != dnnl_success) return NULL;
    dnnl_matmul_desc_t desc;
    if (dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c) != dnnl_success) return NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t p = NULL;
    if (dnnl_primitive_desc_create(&pd, &desc, NULL, g_dnnl, NULL) != dnnl_success) return NULL;
    if (impl) {
        const char *s = NULL;
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s);
        snprintf(impl, impl_len, "%s", s ? s : "?");
    }
    if (dnnl_primitive_create(&p, pd) != dnnl_success) p = NULL;
    dnnl_primitive_desc_destroy(pd);
    return p;
}

static void dnnl_init_once(void) {
    /* HLPT_NO_ONEDNN=1: the engine's own code at every size (a fallback to test, and a way out should
     * a oneDNN build misbehave). */
    const char *off = getenv("HLPT_NO_ONEDNN");
    if (!cpu_has_bf16() || (off && *off && strcmp(off, "0"))) return;
    if (dnnl_engine_create(&g_dnnl, dnnl_cpu, 0) != dnnl_success) return;
    /* Probe: the packed layout must be one oneDNN's matmul takes as it is, through a real kernel
     * (a reference implementation would be far slower than our own kernel at any size). */
    char impl[96] = "";
    dnnl_primitive_t p = matmul_create(64, 64, 64, 64, 64, impl, sizeof impl);
    if (p) dnnl_primitive_destroy(p);
    if (p && strncmp(impl, "ref", 3) != 0) {
        g_dnnl_ok = 1;
        snprintf(g_impl, sizeof g_impl, "%s", impl);
    }
}

static int dnnl_ready(void) {
    pthread_once(&g_once, dnnl_init_once);
    return g_dnnl_ok;
}

int hlpt_engine_check(hlpt_base_dtype dt, char *why, size_t len) {
    if (hlpt_base_dtype_resolve(dt) != HLPT_BASE_BF16) return HLPT_OK;
    if (!cpu_has_bf16())
        return hlpt_why(why, len, HLPT_ERR_UNSUPPORTED,
                        "dtype bf16 needs a CPU with AVX512-BF16 or AMX; use --dtype f32");
    return HLPT_OK;
}

const char *hlpt_engine_describe(hlpt_base_dtype dt, char *buf, size_t len) {
    if (hlpt_base_dtype_resolve(dt) == HLPT_BASE_F32) {
        snprintf(buf, len, "f32: OpenBLAS %s sgemm", hlpt_blas_corename());
        return buf;
    }
    int ok = dnnl_ready();
    snprintf(buf, len, "bf16: %s%s%s, AVX512-BF16 kernel up to %d rows%s", ok ? "oneDNN " : "", ok ? g_impl : "",
             ok ? " above" : "no oneDNN matmul (own kernel at every size)", HLPT_ENGINE_SMALL_M,
             cpu_has_amx() ? "; CPU has AMX" : "");
    return buf;
}

/* The thread policy. The BF16 products run on OpenMP threads, which spin a while after each
 * parallel region; OpenBLAS's threads spin too. Both pools at full size would fight for the cores
 * at every switch between a base product and the attention or adapter products around it (decoding
 * on 2 threads ran at a third of its 1-thread speed). So once a BF16 base is in the process, OpenMP
 * gets the cores (the products, and the row- and head-parallel loops of core/) and OpenBLAS, left
 * with the small products, runs on the calling thread alone; under an F32 base OpenBLAS gets the
 * cores and OpenMP one thread, as before there was a BF16 path. */
static atomic_int g_threads;   /* as last set; 0: never set (then: every core) */
static atomic_int g_bf16_base; /* a BF16 base was opened in this process */

static void apply_threads(void) {
    int n = atomic_load(&g_threads), bf16 = atomic_load(&g_bf16_base);
    if (n < 1) n = omp_get_num_procs();
    omp_set_num_threads(bf16 ? n : 1);
    hlpt_blas_set_threads(bf16 ? 1 : n);
}

void hlpt_engine_set_threads(int n) {
    atomic_store(&g_threads, n < 1 ? 1 : n);
    apply_threads();
}

void hlpt_engine_note_base(hlpt_base_dtype dt) {
    if (dt == HLPT_BASE_BF16) atomic_store(&g_bf16_base, 1);
    apply_threads();
}

/* ---------------------------------------------------------------------------------------------- */
/* BF16 conversions                                                                                */

static uint16_t bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static float bf16_widen(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void bf16_from_f32_avx(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)h);
    }
    for (; i < n; i++) dst[i] = bf16_round(src[i]);
}
#endif

void hlpt_bf16_from_f32(uint16_t *dst, const float *src, size_t n) {
#if defined(__x86_64__)
    static atomic_int avx = -1; /* any thread may be first: each finds the same answer */
    int have = atomic_load_explicit(&avx, memory_order_relaxed);
    if (have < 0) atomic_store_explicit(&avx, have = cpu_has_bf16(), memory_order_relaxed);
    if (have) {
        bf16_from_f32_avx(dst, src, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = bf16_round(src[i]);
}

void hlpt_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bf16_widen(src[i]);
}

/* ---------------------------------------------------------------------------------------------- */
/* Storage                                                                                         */

/* Offset of B(k, n) in the packed layout with Kp padded inputs. */
static size_t packed_at(int Kp, int k, int n) {
    return ((size_t)(n / NT) * (Kp / KT) + k / KT) * TILE + (size_t)((k % KT) / 2) * (2 * NT) +
           (size_t)(n % NT) * 2 + (k & 1);
}

size_t hlpt_weight_bytes(hlpt_base_dtype dt, int packed, int O, int I) {
    if (dt == HLPT_BASE_F32) return round_up((size_t)O * I * sizeof(float), 64);
    if (packed) return round_up((size_t)I, KT) * round_up((size_t)O, NT) * 2;
    return round_up((size_t)O * I * 2, 64);
}

int hlpt_weight_store(const hlpt_weight *w, void *dst, const float *src) {
    size_t bytes = hlpt_weight_bytes(w->dtype, w->packed, w->O, w->I);
    int O = w->O, I = w->I;
    if (w->dtype == HLPT_BASE_F32) {
        memcpy(dst, src, (size_t)O * I * sizeof(float));
        memset((char *)dst + (size_t)O * I * sizeof(float), 0, bytes - (size_t)O * I * sizeof(float));
        return HLPT_OK;
    }
    uint16_t *d = dst;
    if (!w->packed) {
        hlpt_bf16_from_f32(d, src, (size_t)O * I);
        memset(d + (size_t)O * I, 0, bytes - (size_t)O * I * 2);
        return HLPT_OK;
    }
    /* Each source row is rounded whole (vectorised), then its input pairs, one 32-bit word each, go
     * to their pair rows: 64 consecutive rows fill a tile column, which stays in cache meanwhile. */
    int Kp = (int)round_up((size_t)I, KT);
    memset(d, 0, bytes);
    uint16_t *row = calloc((size_t)Kp, sizeof *row);
    if (!row) return HLPT_ERR_NOMEM;
    uint32_t *d32 = dst;
    for (int n = 0; n < O; n++) {
        hlpt_bf16_from_f32(row, src + (size_t)n * I, (size_t)I);
        const uint16_t *r = row;
        uint32_t *col = d32 + (size_t)(n / NT) * (Kp / KT) * (TILE / 2) + n % NT;
        for (int kt = 0; kt < Kp / KT; kt++)
            for (int kk = 0; kk < KT / 2; kk++, r += 2) {
                uint32_t pair;
                memcpy(&pair, r, 4);
                col[(size_t)kt * (TILE / 2) + (size_t)kk * NT] = pair;
            }
    }
    free(row);
    return HLPT_OK;
}

void hlpt_weight_row(const hlpt_weight *w, int o, float *out) {
    int I = w->I;
    if (w->dtype == HLPT_BASE_F32) {
        memcpy(out, (const float *)w->data + (size_t)o * I, sizeof(float) * I);
    } else if (!w->packed) {
        hlpt_bf16_to_f32_n(out, (const uint16_t *)w->data + (size_t)o * I, (size_t)I);
    } else {
        const uint16_t *d = w->data;
        int Kp = (int)round_up((size_t)I, KT);
        for (int i = 0; i < I; i++) out[i] = bf16_widen(d[packed_at(Kp, i, o)]);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* The small-batch kernel                                                                          */

#if defined(__x86_64__)
/*
 * C[MR rows, the 64 outputs of one tile column] (+)= X[MR, Kp] . B, sums in MR x 4 registers: each
 * 256-byte pair row of the column is read once, whole. x rows are BF16 with stride ldx (>= Kp, zero
 * past K); out rows F32 with stride ldo, n_valid (<= 64) outputs written. MR is a constant at every
 * call, and the loops over it unroll fully, so the sums never leave their registers.
 */
__attribute__((target("avx512f,avx512bw,avx512bf16"), always_inline)) static inline void
tile_rows(float *out, int ldo, const uint16_t *x, int ldx, const uint16_t *wt, int nkt, int n_valid, int accumulate,
          const int MR) {
    __m512 acc[6][4];
#pragma GCC unroll 6
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) acc[m][j] = _mm512_setzero_ps();
    const uint16_t *w = wt;
    for (int kt = 0; kt < nkt; kt++, w += TILE) {
        const uint16_t *xk = x + kt * KT;
        _mm_prefetch((const char *)(w + 4 * TILE), _MM_HINT_T0);
        for (int kk = 0; kk < KT / 2; kk++) {
            const uint16_t *row = w + kk * 2 * NT;
            __m512i w0 = _mm512_load_si512(row), w1 = _mm512_load_si512(row + 32);
            __m512i w2 = _mm512_load_si512(row + 64), w3 = _mm512_load_si512(row + 96);
#pragma GCC unroll 6
            for (int m = 0; m < MR; m++) {
                int32_t pair;
                memcpy(&pair, xk + (size_t)m * ldx + 2 * kk, 4);
                __m512bh xb = (__m512bh)_mm512_set1_epi32(pair);
                acc[m][0] = _mm512_dpbf16_ps(acc[m][0], (__m512bh)w0, xb);
                acc[m][1] = _mm512_dpbf16_ps(acc[m][1], (__m512bh)w1, xb);
                acc[m][2] = _mm512_dpbf16_ps(acc[m][2], (__m512bh)w2, xb);
                acc[m][3] = _mm512_dpbf16_ps(acc[m][3], (__m512bh)w3, xb);
            }
        }
    }
#pragma GCC unroll 6
    for (int m = 0; m < MR; m++) {
        float *o = out + (size_t)m * ldo;
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            int left = n_valid - 16 * j;
            if (left <= 0) break;
            __mmask16 k = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
            __m512 v = acc[m][j];
            if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, o + 16 * j));
            _mm512_mask_storeu_ps(o + 16 * j, k, v);
        }
    }
}

/* out[M,N] (+)= x[M,Kp] (bf16) . B (packed, Kp x Np); threads split the tile columns, each
 * streamed once from memory for all rows (later row tiles find it in L2). */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void
kernel_rows(float *out, int ldo, const uint16_t *x, int ldx, int M, const uint16_t *B, int Kp, int N,
            int accumulate) {
    int nkt = Kp / KT, nnt = (N + NT - 1) / NT;
    /* Waking the other threads costs tens of microseconds: worth it from about a quarter million
     * multiply-adds. */
#pragma omp parallel for schedule(dynamic, 2) if ((size_t)M * Kp * N >= PAR_MIN_MACS && nnt > 1)
    for (int nt = 0; nt < nnt; nt++) {
        int c0 = nt * NT, n_valid = N - c0 < NT ? N - c0 : NT;
        const uint16_t *wt = B + (size_t)nt * nkt * TILE;
        for (int m0 = 0; m0 < M; m0 += 6) {
            int rows = M - m0 < 6 ? M - m0 : 6;
            float *o = out + (size_t)m0 * ldo + c0;
            const uint16_t *xm = x + (size_t)m0 * ldx;
            switch (rows) {
            case 1: tile_rows(o, ldo, xm, ldx, wt, nkt, n_valid, accumulate, 1); break;
            case 2: tile_rows(o, ldo, xm, ldx, wt, nkt, n_valid, accumulate, 2); break;
            case 3: tile_rows(o, ldo, xm, ldx, wt, nkt, n_valid, accumulate, 3); break;
            case 4: tile_rows(o, ldo, xm, ldx, wt, nkt, n_valid, accumulate, 4); break;
            case 5: tile_rows(o, ldo, xm, ldx, wt, nkt, n_valid, accumulate, 5); break;
            default: tile_rows(o, ldo, xm, ldx, wt, nkt, n_valid, accumulate, 6); break;
            }
        }
    }
}
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Contexts                                                                                        */

/* Cached matmul primitives, by bucketed row count and shape; least recently used goes first. */
#define PRIM_CAP 128

typedef struct {
    int M, K, N, ld_src, ld_dst;
    int threads;             /* oneDNN plans a primitive's work for the threads at its creation */
    dnnl_primitive_t p;      /* NULL: creation failed, use the kernel */
    unsigned long long used;
} prim_entry;

struct hlpt_engine {
    dnnl_stream_t stream;
    int no_stream;           /* oneDNN could not give a stream: never ask again */
    prim_entry prims[PRIM_CAP];
    int n_prims;
    unsigned long long clock;
    uint16_t *xb;            /* activations rounded to BF16: rows x ld, zero past K */
    size_t xb_cap;           /* elements */
    uint16_t *wt;            /* a weight repacked transposed (backward) */
    size_t wt_cap;           /* elements */
    float *yb;               /* oneDNN's output at the bucketed row count */
    size_t yb_cap;           /* elements */
    struct {
        int O, I;
        dnnl_primitive_t p;  /* NULL: creation failed, repack by hand */
    } reorders[16];          /* transposing repacks, one per weight shape */
    int n_reorders;
};

int hlpt_engine_new(hlpt_engine **out) {
    *out = calloc(1, sizeof **out);
    return *out ? HLPT_OK : HLPT_ERR_NOMEM;
}

/* The context's oneDNN stream, made at its first large BF16 product (an F32 base never needs one);
 * NULL when oneDNN is unusable, and then the kernel runs every size. */
static dnnl_stream_t stream_of(hlpt_engine *e) {
    if (!e->stream && !e->no_stream) {
        if (!dnnl_ready() || dnnl_stream_create(&e->stream, g_dnnl, dnnl_stream_default_flags) != dnnl_success) {
            e->stream = NULL;
            e->no_stream = 1;
        }
    }
    return e->stream;
}

void hlpt_engine_free(hlpt_engine *e) {
    if (!e) return;
    for (int i = 0; i < e->n_prims; i++)
        if (e->prims[i].p) dnnl_primitive_destroy(e->prims[i].p);
    for (int i = 0; i < e->n_reorders; i++)
        if (e->reorders[i].p) dnnl_primitive_destroy(e->reorders[i].p);
    if (e->stream) dnnl_stream_destroy(e->stream);
    free(e->xb);
    free(e->wt);
    free(e->yb);
    free(e);
}

/* Grows a 64-byte aligned scratch (for the kernel's loads and oneDNN) to n elements of elt bytes,
 * dropping its contents; *cap counts elements. */
static int grow_aligned(void *pp, size_t *cap, size_t n, size_t elt) {
    void **p = pp;
    if (n <= *cap) return HLPT_OK;
    void *q = NULL;
    if (posix_memalign(&q, 64, n * elt + 64) != 0) return HLPT_ERR_NOMEM;
    free(*p);
    *p = q;
    *cap = n;
    return HLPT_OK;
}

/* The row count a oneDNN primitive is made for: M rounded up, so that training (whose row count
 * changes with every micro-batch) and prefill reuse a few dozen primitives instead of making 12 new
 * ones a step. The padding rows are zeros in and discarded out. */
static int bucket_rows(int M) {
    int q = M <= 512 ? 64 : M <= 2048 ? 128 : 256;
    return (M + q - 1) / q * q;
}

/* Matrices below this many elements run the kernel at every row count: they sit in cache, and a
 * oneDNN call costs more than their product. */
#define SMALL_WEIGHT (512 * 1024)

int hlpt_engine_reserve(hlpt_engine *e, int rows, int in, size_t max_weight) {
    size_t ld = round_up((size_t)(in > 0 ? in : 1), KT);
    if (grow_aligned(&e->xb, &e->xb_cap, (size_t)bucket_rows(rows > 0 ? rows : 1) * ld, sizeof(uint16_t)))
        return HLPT_ERR_NOMEM;
    if (max_weight && grow_aligned(&e->wt, &e->wt_cap, max_weight, sizeof(uint16_t))) return HLPT_ERR_NOMEM;
    return HLPT_OK;
}

static dnnl_primitive_t prim_get(hlpt_engine *e, int M, int K, int N, int ld_src, int ld_dst) {
    prim_entry *lru = NULL;
    int threads = omp_get_max_threads();
    e->clock++;
    for (int i = 0; i < e->n_prims; i++) {
        prim_entry *p = &e->prims[i];
        if (p->M == M && p->K == K && p->N == N && p->ld_src == ld_src && p->ld_dst == ld_dst &&
            p->threads == threads) {
            p->used = e->clock;
            return p->p;
        }
        if (!lru || p->used < lru->used) lru = p;
    }
    prim_entry *slot = e->n_prims < PRIM_CAP ? &e->prims[e->n_prims++] : lru;
    if (slot->p) dnnl_primitive_destroy(slot->p);
    *slot = (prim_entry){.M = M, .K = K, .N = N, .ld_src = ld_src, .ld_dst = ld_dst, .threads = threads,
                         .used = e->clock};
    slot->p = matmul_create(M, K, N, ld_src, ld_dst, NULL, 0);
    return slot->p;
}

/* Runs primitive p: dst[Mb, N] (row stride ldd) = xb[Mb, Kp] . B. */
static int dnnl_run(hlpt_engine *e, dnnl_primitive_t p, float *dst, int ldd, int Mb, const uint16_t *B, int K,
                    int N) {
    int Kp = (int)round_up((size_t)K, KT);
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t bd = {K, N};
    dnnl_md_2d(&a, Mb, K, Kp, dnnl_bf16);
    dnnl_md_2d(&c, Mb, N, ldd, dnnl_f32);
    dnnl_memory_desc_init_by_tag(&b, 2, bd, dnnl_bf16, dnnl_BA16a64b2a);
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL;
    int ok = dnnl_memory_create(&ma, &a, g_dnnl, e->xb) == dnnl_success &&
             dnnl_memory_create(&mb, &b, g_dnnl, (void *)B) == dnnl_success &&
             dnnl_memory_create(&mc, &c, g_dnnl, dst) == dnnl_success;
    if (ok) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
        ok = dnnl_primitive_execute(p, e->stream, 3, args) == dnnl_success &&
             dnnl_stream_wait(e->stream) == dnnl_success;
    }
    if (ma) dnnl_memory_destroy(ma);
    if (mb) dnnl_memory_destroy(mb);
    if (mc) dnnl_memory_destroy(mc);
    return ok;
}

/* out[M,N] (+)= xb[M,Kp] . B (packed K x N). Large products go to oneDNN at the bucketed row count:
 * straight into out when that is M and nothing accumulates, else through yb, whose first M rows are
 * then copied or added. Anything oneDNN cannot do falls to the kernel. */
static void bf16_product(hlpt_engine *e, float *out, int ldo, int M, const uint16_t *B, int K, int N,
                         int accumulate) {
    int Kp = (int)round_up((size_t)K, KT);
    if (M > HLPT_ENGINE_SMALL_M && (size_t)K * N >= SMALL_WEIGHT && stream_of(e)) {
        int Mb = bucket_rows(M), direct = Mb == M && !accumulate;
        dnnl_primitive_t p = NULL;
        /* yb grows on the first product of a larger shape (the products' only allocation; a
         * failure sends the product to the kernel, which needs none). */
        if ((size_t)Mb * Kp <= e->xb_cap && (direct || !grow_aligned(&e->yb, &e->yb_cap, (size_t)Mb * N, sizeof(float))))
            p = prim_get(e, Mb, K, N, Kp, direct ? ldo : N);
        if (p) {
            memset(e->xb + (size_t)M * Kp, 0, sizeof(uint16_t) * (size_t)(Mb - M) * Kp);
            if (direct && dnnl_run(e, p, out, ldo, Mb, B, K, N)) return;
            if (!direct && dnnl_run(e, p, e->yb, N, Mb, B, K, N)) {
                for (int r = 0; r < M; r++) {
                    float *o = out + (size_t)r * ldo;
                    const float *y = e->yb + (size_t)r * N;
                    if (accumulate)
                        for (int j = 0; j < N; j++) o[j] += y[j];
                    else
                        memcpy(o, y, sizeof(float) * (size_t)N);
                }
                return;
            }
        }
    }
#if defined(__x86_64__)
    kernel_rows(out, ldo, e->xb, Kp, M, B, Kp, N, accumulate);
#else
    HLPT_ASSERT(!"bf16 products need x86-64");
#endif
}

/* xb[N, round_up(K, 32)] = bf16(src[N,K]) (src rows lds apart), zero past K. */
static void round_rows(hlpt_engine *e, const float *src, size_t lds, int N, int K) {
    int Kp = (int)round_up((size_t)K, KT);
    HLPT_ASSERT((size_t)N * Kp <= e->xb_cap);
    for (int r = 0; r < N; r++) {
        uint16_t *d = e->xb + (size_t)r * Kp;
        hlpt_bf16_from_f32(d, src + (size_t)r * lds, (size_t)K);
        memset(d + K, 0, sizeof(uint16_t) * (size_t)(Kp - K));
    }
}

void hlpt_linear(hlpt_engine *e, float *out, const float *inp, const hlpt_weight *w, int N, int accumulate) {
    if (N <= 0) return;
    if (w->dtype == HLPT_BASE_F32) {
        matmul_forward(out, inp, w->data, N, w->I, w->O, accumulate);
        return;
    }
    HLPT_ASSERT(w->packed);
    round_rows(e, inp, (size_t)w->I, N, w->I);
    bf16_product(e, out, w->O, N, w->data, w->I, w->O, accumulate);
}

/* wt = W repacked as the matmul's B'[K=O, N=I]: element (o, i) is W[o, i] = B(i, o). Destination
 * order, as hlpt_weight_store; the sources of one destination tile lie in two source tiles. */
static void repack_transposed(uint16_t *wt, const hlpt_weight *w) {
    const uint16_t *src = w->data;
    int O = w->O, I = w->I;
    int Kp = (int)round_up((size_t)I, KT);        /* source: K = I */
    int Kq = (int)round_up((size_t)O, KT), Nq = (int)round_up((size_t)I, NT); /* destination */
    size_t at = 0;
    for (int n0 = 0; n0 < Nq; n0 += NT)
        for (int k0 = 0; k0 < Kq; k0 += KT)
            for (int kk = 0; kk < KT; kk += 2)
                for (int n = n0; n < n0 + NT; n++)
                    for (int k = k0 + kk; k < k0 + kk + 2; k++)
                        wt[at++] = n < I && k < O ? src[packed_at(Kp, n, k)] : 0;
}

/* The two memory descriptors of the transposing repack of W[O,I]: the packed B[K=I, N=O] seen with
 * its axes swapped, and the packed B'[K=O, N=I]. */
static int repack_mds(const hlpt_weight *w, dnnl_memory_desc_t *from, dnnl_memory_desc_t *to) {
    dnnl_memory_desc_t fwd;
    dnnl_dims_t fd = {w->I, w->O}, td = {w->O, w->I};
    int perm[2] = {1, 0};
    return dnnl_memory_desc_init_by_tag(&fwd, 2, fd, dnnl_bf16, dnnl_BA16a64b2a) == dnnl_success &&
           dnnl_memory_desc_permute_axes(from, &fwd, perm) == dnnl_success &&
           dnnl_memory_desc_init_by_tag(to, 2, td, dnnl_bf16, dnnl_BA16a64b2a) == dnnl_success;
}

/* e->wt = W repacked transposed, by oneDNN's reorder (a JIT transposition, about 15x faster than
 * repack_transposed) where it can, else by hand. */
static void repack(hlpt_engine *e, const hlpt_weight *w) {
    dnnl_primitive_t p = NULL;
    int i = 0, have = 0;
    for (; i < e->n_reorders; i++)
        if (e->reorders[i].O == w->O && e->reorders[i].I == w->I) {
            p = e->reorders[i].p;
            have = 1;
            break;
        }
    dnnl_memory_desc_t from, to;
    int mds = stream_of(e) && repack_mds(w, &from, &to);
    if (!have && mds && e->n_reorders < (int)(sizeof e->reorders / sizeof e->reorders[0])) {
        dnnl_primitive_desc_t pd = NULL;
        if (dnnl_reorder_primitive_desc_create(&pd, &from, g_dnnl, &to, g_dnnl, NULL) == dnnl_success) {
            if (dnnl_primitive_create(&p, pd) != dnnl_success) p = NULL;
            dnnl_primitive_desc_destroy(pd);
        }
        e->reorders[e->n_reorders].O = w->O;
        e->reorders[e->n_reorders].I = w->I;
        e->reorders[e->n_reorders++].p = p;
    }
    if (p && mds) {
        dnnl_memory_t mf = NULL, mt = NULL;
        int ok = dnnl_memory_create(&mf, &from, g_dnnl, (void *)w->data) == dnnl_success &&
                 dnnl_memory_create(&mt, &to, g_dnnl, e->wt) == dnnl_success;
        if (ok) {
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, mf}, {DNNL_ARG_TO, mt}};
            ok = dnnl_primitive_execute(p, e->stream, 2, args) == dnnl_success &&
                 dnnl_stream_wait(e->stream) == dnnl_success;
        }
        if (mf) dnnl_memory_destroy(mf);
        if (mt) dnnl_memory_destroy(mt);
        if (ok) return;
    }
    repack_transposed(e->wt, w);
}

/* Outputs of W repacked at a time in backward: whole N tiles, about 8 M elements of scratch (16 MB)
 * whatever the matrix, so that training holds no transposed copy of a large one (a 7B model's
 * lm_head alone would be 262 MB). */
#define BACKWARD_CHUNK_ELEMS ((size_t)8 << 20)

static int backward_chunk(const hlpt_weight *w) {
    size_t rows = BACKWARD_CHUNK_ELEMS / round_up((size_t)w->I, NT) / NT * NT;
    if (rows < NT) rows = NT;
    return rows >= (size_t)w->O ? w->O : (int)rows;
}

size_t hlpt_engine_backward_scratch(const hlpt_weight *w) {
    if (w->dtype != HLPT_BASE_BF16 || !w->packed) return 0;
    return round_up((size_t)backward_chunk(w), KT) * round_up((size_t)w->I, NT);
}

void hlpt_linear_backward(hlpt_engine *e, float *dinp, const float *dout, const hlpt_weight *w, int N) {
    if (N <= 0) return;
    if (w->dtype == HLPT_BASE_F32) {
        matmul_backward(dinp, NULL, dout, NULL, w->data, N, w->I, w->O);
        return;
    }
    HLPT_ASSERT(w->packed);
    HLPT_ASSERT(hlpt_engine_backward_scratch(w) <= e->wt_cap);
    /* dinp += sum over chunks of outputs [o0, o0+c): dout[:, o0:o0+c] . W[o0:o0+c, :]. A chunk of
     * whole N tiles is itself a packed matrix, contiguous in W's bytes. */
    int chunk = backward_chunk(w), Kp = (int)round_up((size_t)w->I, KT);
    for (int o0 = 0; o0 < w->O; o0 += chunk) {
        hlpt_weight sub = *w;
        sub.O = w->O - o0 < chunk ? w->O - o0 : chunk;
        sub.data = (const uint16_t *)w->data + (size_t)(o0 / NT) * (Kp / KT) * TILE;
        repack(e, &sub);
        round_rows(e, dout + o0, (size_t)w->O, N, sub.O);
        bf16_product(e, dinp, w->I, N, e->wt, sub.O, w->I, 1);
    }
}
