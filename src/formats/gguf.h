/* GGUF (v2/v3), llama.cpp's single-file model format: a header, typed key/value metadata,
 * tensor infos (name, dims with the fastest-varying first, type, offset), then aligned tensor
 * data. The reader maps the file and validates every offset; the writer builds a file from
 * metadata and tensors and moves it into place only when complete. */
#ifndef Q3_GGUF_H
#define Q3_GGUF_H

#include "base/error.h"
#include "base/mapfile.h"

enum q3_gguf_vtype {
    Q3_GGUF_U8 = 0, Q3_GGUF_I8 = 1, Q3_GGUF_U16 = 2, Q3_GGUF_I16 = 3, Q3_GGUF_U32 = 4,
    Q3_GGUF_I32 = 5, Q3_GGUF_F32 = 6, Q3_GGUF_BOOL = 7, Q3_GGUF_STRING = 8, Q3_GGUF_ARRAY = 9,
    Q3_GGUF_U64 = 10, Q3_GGUF_I64 = 11, Q3_GGUF_F64 = 12,
};

/* A string inside the mapping: not NUL-terminated. */
typedef struct q3_gguf_str {
    const char *ptr;
    uint64_t len;
} q3_gguf_str;

typedef struct q3_gguf_kv {
    char *key;              /* NUL-terminated copy */
    uint32_t type;          /* enum q3_gguf_vtype */
    uint32_t arr_type;      /* element type when type is ARRAY */
    uint64_t arr_n;         /* element count when type is ARRAY */
    const void *arr_data;   /* numeric array elements inside the mapping (maybe unaligned) */
    q3_gguf_str *strs;      /* string array elements, or the one string of a STRING value */
    union {                 /* scalar value, widened */
        uint64_t u;
        int64_t i;
        double f;
    } v;
} q3_gguf_kv;

typedef struct q3_gguf_tensor {
    char *name;
    q3_type type;
    int n_dims;
    int64_t ne[4];          /* ne[0] is the row length (fastest varying) */
    uint64_t offset;        /* from the start of the data section */
    const void *data;
    size_t nbytes;
} q3_gguf_tensor;

typedef struct q3_gguf {
    q3_mapfile map;
    const char *path;
    uint32_t version;
    uint32_t alignment;
    int64_t n_kv, n_tensors;
    q3_gguf_kv *kv;
    q3_gguf_tensor *tensors;
} q3_gguf;

q3_status q3_gguf_open(q3_gguf *g, const char *path, q3_error *e);
/* The same over bytes in memory (the fuzzer's entry point); data must outlive g. */
q3_status q3_gguf_parse(q3_gguf *g, const unsigned char *data, size_t size, const char *path,
                        q3_error *e);
void q3_gguf_close(q3_gguf *g);

const q3_gguf_kv *q3_gguf_find_kv(const q3_gguf *g, const char *key);
const q3_gguf_tensor *q3_gguf_find_tensor(const q3_gguf *g, const char *name);
/* Typed getters: Q3_EFORMAT (naming the key) when missing or of a non-convertible type. */
q3_status q3_gguf_get_int(const q3_gguf *g, const char *key, int64_t *out, q3_error *e);
q3_status q3_gguf_get_float(const q3_gguf *g, const char *key, double *out, q3_error *e);
q3_status q3_gguf_get_str(const q3_gguf *g, const char *key, q3_gguf_str *out, q3_error *e);
/* Element i of a numeric array as an integer or float; the caller checks i < arr_n. */
int64_t q3_gguf_arr_int(const q3_gguf_kv *kv, uint64_t i);
double q3_gguf_arr_float(const q3_gguf_kv *kv, uint64_t i);

/* ---- writing ---- */

typedef struct q3_gguf_writer q3_gguf_writer;
/* Produces a tensor's bytes into dst (nbytes long) when the writer reaches it, so a converter
 * never holds more than one converted tensor in memory. */
typedef q3_status (*q3_gguf_fill_fn)(void *ctx, int tensor_index, void *dst, size_t nbytes,
                                     q3_error *e);

q3_status q3_gguf_writer_new(q3_gguf_writer **out, q3_error *e);
void q3_gguf_writer_free(q3_gguf_writer *w);
/* Metadata setters; a key set twice keeps the last value. They fail only on allocation. */
q3_status q3_gguf_set_u32(q3_gguf_writer *w, const char *key, uint32_t v);
q3_status q3_gguf_set_i32(q3_gguf_writer *w, const char *key, int32_t v);
q3_status q3_gguf_set_f32(q3_gguf_writer *w, const char *key, float v);
q3_status q3_gguf_set_bool(q3_gguf_writer *w, const char *key, bool v);
q3_status q3_gguf_set_str(q3_gguf_writer *w, const char *key, const char *v);
q3_status q3_gguf_set_arr_i32(q3_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
q3_status q3_gguf_set_arr_f32(q3_gguf_writer *w, const char *key, const float *v, uint64_t n);
/* n strings, each given with its length (they may hold NUL bytes). */
q3_status q3_gguf_set_arr_str(q3_gguf_writer *w, const char *key, const q3_gguf_str *v,
                              uint64_t n);
/* Copies one key/value (any type) from a file being read, e.g. to requantize a GGUF. */
q3_status q3_gguf_copy_kv(q3_gguf_writer *w, const q3_gguf_kv *kv);
/* ne[0] is the row length. data (copied at write time) or fill gives the bytes. */
q3_status q3_gguf_add_tensor(q3_gguf_writer *w, const char *name, q3_type type, int n_dims,
                             const int64_t *ne, const void *data, q3_gguf_fill_fn fill, void *ctx,
                             q3_error *e);
/* Writes path.tmp, then renames it to path: a failed write never clobbers an existing file.
 * progress (may be NULL) is called after each tensor. */
q3_status q3_gguf_write(q3_gguf_writer *w, const char *path,
                        void (*progress)(void *ctx, int done, int total), void *progress_ctx,
                        q3_error *e);

#endif
