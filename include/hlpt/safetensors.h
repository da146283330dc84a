/*
 * safetensors.h - reading and writing safetensors files (the Hugging Face tensor container).
 *
 * A file is an 8-byte little-endian header length N, N bytes of JSON header, then the data section:
 *
 *     {"__metadata__": {"k": "v", ...},
 *      "<name>": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...}
 *
 * begin/end are byte offsets into the data section. Files are untrusted: hlpt_st_open() checks
 * every entry before anything is handed out (see hlpt_st_open_mem for the list), so a tensor's
 * data pointer and byte count may be used without further checks.
 *
 * Reading maps the file read-only (MAP_PRIVATE, PROT_READ): tensors point straight into the
 * mapping, nothing is copied. A model directory with model.safetensors.index.json opens as one
 * handle over all its shards.
 *
 * Threads: an open hlpt_st is read-only after open; any number of threads may read it at once.
 * A writer belongs to one thread at a time.
 */
#ifndef HLPT_SAFETENSORS_H
#define HLPT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

/*
 * Element types: X(name, bytes per element, convertible to f32). The name is the dtype string of
 * the file format ("F32", "BF16", ...). The order of the first seven is part of the API; the rest
 * follow. F8 types are known (a file holding them opens) but not converted.
 */
#define HLPT_DTYPE_MAP(X) \
    X(F32, 4, 1)          \
    X(F16, 2, 1)          \
    X(BF16, 2, 1)         \
    X(I32, 4, 0)          \
    X(I64, 8, 0)          \
    X(U8, 1, 0)           \
    X(BOOL, 1, 0)         \
    X(F64, 8, 1)          \
    X(I8, 1, 0)           \
    X(I16, 2, 0)          \
    X(U16, 2, 0)          \
    X(U32, 4, 0)          \
    X(U64, 8, 0)          \
    X(F8_E4M3, 1, 0)      \
    X(F8_E5M2, 1, 0)

typedef enum {
#define X(name, size, conv) HLPT_DTYPE_##name,
    HLPT_DTYPE_MAP(X)
#undef X
    HLPT_DTYPE_COUNT
} hlpt_dtype;

/* The format's dtype string ("BF16"); "?" for a value outside the enum. Never NULL. */
const char *hlpt_dtype_name(hlpt_dtype dt);
/* Bytes per element; 0 for a value outside the enum. */
size_t hlpt_dtype_size(hlpt_dtype dt);
/* Non-zero when hlpt_st_to_f32 converts this type: F32, F16, BF16, F64. */
int hlpt_dtype_to_f32_ok(hlpt_dtype dt);
/* Looks a dtype string up (exact, case-sensitive). HLPT_OK, or HLPT_ERR_NOENT when unknown. */
int hlpt_dtype_from_name(const char *name, hlpt_dtype *out);

/* Exact widening conversions (F16: subnormals, infinities and NaN payloads kept). */
float hlpt_f16_to_f32(uint16_t h);
float hlpt_bf16_to_f32(uint16_t b);

#define HLPT_ST_MAX_NDIM 8

/* One tensor of an open file. All fields are valid until hlpt_st_close(). */
typedef struct {
    const char *name;     /* tensor name, valid while the file is open */
    hlpt_dtype dtype;
    int ndim;             /* 0..8; 0 is a scalar (numel 1) */
    int64_t shape[HLPT_ST_MAX_NDIM]; /* shape[0..ndim-1], each >= 0; the rest 0 */
    int64_t numel;        /* product of shape */
    const void *data;     /* raw little-endian bytes inside the mapping (or the borrowed buffer) */
    size_t nbytes;        /* numel * hlpt_dtype_size(dtype) */
} hlpt_st_tensor;
/* On alignment: data is aligned to the element size when 8 + header length + begin is, which
 * files written by the Python library and by hlpt_st_writer always are (the header is padded to a
 * multiple of 8 and wider types come first). A hostile file may misalign it; hlpt_st_to_f32 reads
 * any alignment. Code that casts data to float * must check ((uintptr_t)data % 4 == 0). */

typedef struct hlpt_st hlpt_st; /* an open safetensors file, or a set of shards */

/*
 * Opens path, which is one of:
 *   - a .safetensors file;
 *   - a model directory holding model.safetensors, or else model.safetensors.index.json;
 *   - an index file (a name ending in ".json") of a sharded checkpoint:
 *     {"metadata": {...}, "weight_map": {"<tensor>": "<shard file>", ...}}. Shard names are plain
 *     file names in the index's directory (no '/'). Every tensor listed must exist in its shard,
 *     every tensor of a shard must be listed, and a name in two shards is an error.
 * Every file is validated as hlpt_st_open_mem describes. *out returns owned (hlpt_st_close), NULL on
 * failure. path borrows. Errors: HLPT_ERR_NOENT (no such file, no checkpoint in the directory, a
 * listed tensor missing), HLPT_ERR_IO, HLPT_ERR_FORMAT (invalid file, index or header),
 * HLPT_ERR_UNSUPPORTED (ndim > 8), HLPT_ERR_NOMEM. why names the file and the tensor.
 */
int hlpt_st_open(const char *path, hlpt_st **out, char *why, size_t len);
/*
 * Opens a safetensors image in memory. buf borrows: it must stay valid and unchanged until
 * hlpt_st_close(). Checks, all before returning a handle:
 *   - at least 8 bytes; header length N > 0, N <= n - 8 and N <= 100 MB;
 *   - the header is valid UTF-8 without NUL bytes, one JSON object, then only whitespace;
 *   - each tensor entry is an object with dtype (a known string), shape (an array of at most 8
 *     integers >= 0 whose product does not overflow), data_offsets ([begin, end] integers with
 *     begin <= end <= data section size and end - begin == numel * dtype size);
 *   - no two tensors share a byte (gaps between tensors are allowed);
 *   - "__metadata__", if present, is an object of strings;
 *   - no name appears twice.
 * Errors as hlpt_st_open (never NOENT or IO).
 */
int hlpt_st_open_mem(const void *buf, size_t n, hlpt_st **out, char *why, size_t len);
/* Unmaps and frees everything; every pointer obtained from st becomes invalid. Accepts NULL. */
void hlpt_st_close(hlpt_st *st);

/* Number of tensors (all shards together). */
int hlpt_st_count(const hlpt_st *st);
/* Tensor i in [0, count) in header order, shard after shard (in order of first appearance in the
 * index); NULL when i is out of range. Valid until close. */
const hlpt_st_tensor *hlpt_st_at(const hlpt_st *st, int i);
/* The tensor named name (borrows), or NULL if absent. A hash lookup. Valid until close. */
const hlpt_st_tensor *hlpt_st_find(const hlpt_st *st, const char *name);
/* The __metadata__ string value for key (borrows), or NULL. Shards: the first shard that has the
 * key wins. Valid until close. */
const char *hlpt_st_metadata(const hlpt_st *st, const char *key);

/*
 * Converts t's elements (F32, F16, BF16 exactly; F64 rounded to nearest) into dst[numel] float32
 * (borrows both). Reads any alignment. HLPT_ERR_UNSUPPORTED for other dtypes.
 */
int hlpt_st_to_f32(const hlpt_st_tensor *t, float *dst, char *why, size_t len);
/*
 * Looks up name, checks that its dtype converts to f32 and that its shape equals shape[ndim]
 * exactly, then converts into dst[product of shape]. All pointers borrow.
 * Errors: HLPT_ERR_NOENT (absent), HLPT_ERR_MISMATCH (wrong shape, or an integer/bool dtype; why
 * names the tensor and both shapes), HLPT_ERR_UNSUPPORTED (F8). On error dst is untouched.
 */
int hlpt_st_get_f32(const hlpt_st *st, const char *name, int ndim, const int64_t *shape, float *dst,
                    char *why, size_t len);
/* Drops the pages of tensor name from this process's mapping of its file (they come back from the
 * page cache if read again): a loader that converts tensors one by one keeps its resident memory to
 * the converted copy. A no-op for unknown names and borrowed buffers. */
void hlpt_st_release(const hlpt_st *st, const char *name);
/* Writes "[d0, d1, ...]" into buf[len] (truncated, always terminated when len > 0); returns buf.
 * For error messages. */
char *hlpt_st_shape_str(char *buf, size_t len, int ndim, const int64_t *shape);

/*
 * The writer: collect tensors and metadata, then write one file or one buffer. The output matches
 * the Python library byte for byte: compact JSON header with "__metadata__" first (keys sorted),
 * tensors ordered as the Python library orders them (wider dtype first: U64 I64 F64 F32 U32 I32
 * BF16 F16 U16 I16 F8_E4M3 F8_E5M2 I8 U8 BOOL; then by name, bytewise), data laid out in the same
 * order without gaps, header padded with spaces to a multiple of 8 bytes.
 */
typedef struct hlpt_st_writer hlpt_st_writer;
/* *out returns owned (hlpt_st_writer_free); NULL on failure. HLPT_ERR_NOMEM. */
int hlpt_st_writer_new(hlpt_st_writer **out);
/* Accepts NULL. Frees the writer's own copies; borrowed names and data are not touched. */
void hlpt_st_writer_free(hlpt_st_writer *w);
/*
 * Adds a tensor. name and data borrow until the writer writes (or is freed); shape[ndim] is
 * copied. data holds numel * dtype size bytes (may be NULL when that is 0).
 * Errors: HLPT_ERR_INVAL (NULL name, name "__metadata__", ndim outside 0..8, a negative dimension,
 * a size that overflows, unknown dtype, NULL data with bytes to write), HLPT_ERR_NOMEM.
 * A duplicate name is reported by the write (HLPT_ERR_EXISTS).
 */
int hlpt_st_writer_add(hlpt_st_writer *w, const char *name, hlpt_dtype dtype, int ndim,
                       const int64_t *shape, const void *data);
/* Sets a __metadata__ entry (key and value are copied; a second call for a key replaces it).
 * Errors: HLPT_ERR_INVAL (NULL), HLPT_ERR_NOMEM. */
int hlpt_st_writer_metadata(hlpt_st_writer *w, const char *key, const char *value);
/*
 * Writes atomically: a temporary file in path's directory, written in full, fsync'd, renamed over
 * path, then the directory fsync'd. Mode 0644. On failure path is untouched and the temporary file
 * removed. Errors: HLPT_ERR_EXISTS (duplicate tensor name), HLPT_ERR_IO, HLPT_ERR_NOMEM.
 */
int hlpt_st_writer_write(hlpt_st_writer *w, const char *path, char *why, size_t len);
/* The same bytes into one malloc'd buffer: *buf returns owned (free()), *n its size; NULL/0 on
 * failure. Errors: HLPT_ERR_EXISTS, HLPT_ERR_NOMEM. */
int hlpt_st_writer_to_mem(hlpt_st_writer *w, void **buf, size_t *n, char *why, size_t len);

#endif
