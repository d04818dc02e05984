/* Tensor types: one row of traits per type (block size, bytes per block, conversions, dot
 * product). Adding a quant format is one row here plus its kernels in its own file; the SIMD
 * versions of the kernels are installed over these by src/cpu/kernel_table.c.
 * Weights are stored as rows of blocks; a row of `n` elements takes n / block_size blocks. */
#ifndef Q3_TYPES_H
#define Q3_TYPES_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include "q3moe.h"

/* Dequantize n elements (a multiple of block_size) of src into dst. */
typedef void (*q3_to_float_fn)(const void *src, float *dst, int64_t n);
/* Quantize n elements of src into dst: the reference (round-to-nearest or llama.cpp's search).
 * The run-time conversion (activations, KV caches); files are written with q3_quantize_row. */
typedef void (*q3_from_float_fn)(const float *src, void *dst, int64_t n);
/* Dot product of n elements: w is a row of this type, x a row of vec_dot_type. */
typedef float (*q3_vec_dot_fn)(int64_t n, const void *w, const void *x);
/* Quantize n elements of a row with an importance per element (how much its error costs, from
 * an importance matrix; NULL: none). */
typedef void (*q3_quantize_fn)(const float *src, void *dst, int64_t n, const float *importance);
/* Tile product for batches (prefill): out[c * out_stride + r] = vec_dot(n, w + r * w_stride,
 * x[c]) for r < nr <= Q3_GEMM_ROWS and c < nc <= Q3_GEMM_COLS, bit-identical to this ISA's
 * vec_dot for every (r, c): a token's result never depends on the batch around it. It shares
 * the work vec_dot repeats per pair (unpacking a weight block, rearranging it for the vector
 * lanes) across the tile. NULL in the traits: callers use vec_dot. */
typedef void (*q3_gemm_fn)(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x,
                           int nc, float *out, size_t out_stride);
#define Q3_GEMM_ROWS 16 /* rows per gemm call: one per 32-bit lane of an AVX-512 register */
/* Rows against one activation row, decode's matrix-vector product: out[r] = vec_dot(n, w + r *
 * w_stride, x) for r < nr <= Q3_GEMM_ROWS, bit-identical to this ISA's vec_dot. Rows side by
 * side share the activation's loads and run their float tails in one vector. NULL in the
 * traits: callers use vec_dot. */
typedef void (*q3_vec_dot_rows_fn)(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out);
#define Q3_GEMM_COLS 64 /* tokens per gemm call: enough to spread the weight unpacking thin */
/* Tokens per gemm_x4 call: batched decode's steps of a few streams, where a group of
 * interleaved rows unpacked once in registers feeds every token (more tokens go through the tile
 * kernel, which unpacks into memory once for up to Q3_GEMM_COLS). */
#define Q3_X4_COLS 4

typedef struct q3_type_traits {
    const char *name;        /* as llama.cpp prints it: "F32", "Q4_K", ... */
    int block_size;          /* elements per block */
    size_t type_size;        /* bytes per block */
    q3_to_float_fn to_float;
    q3_from_float_fn from_float;
    q3_vec_dot_fn vec_dot;
    q3_type vec_dot_type;    /* the type activations are converted to for vec_dot */
    q3_gemm_fn gemm;         /* NULL: no tile kernel on this ISA, use vec_dot */
    q3_quantize_fn quantize; /* how files are written, with an importance or without (NULL);
                                NULL: from_float writes files too, and takes no importance */
    q3_vec_dot_rows_fn vec_dot_rows; /* NULL: use vec_dot row by row */
    /* vec_dot_rows over row-interleaved groups (quant/interleave.h: w at a group, nr a multiple
     * of 4). NULL: the type has no interleaved layout, or this ISA no kernel for it (callers
     * take the rows out of their groups). */
    q3_vec_dot_rows_fn vec_dot_rows_x4;
    /* gemm over row-interleaved groups (w at a group, nr a multiple of 4) for nc <= Q3_X4_COLS
     * tokens, bit-identical to vec_dot per token: vec_dot_rows_x4 with each block's levels and
     * scales unpacked once for all the tokens. NULL as vec_dot_rows_x4. */
    q3_gemm_fn gemm_x4;
} q3_type_traits;

/* Traits of t with the portable reference kernels, or NULL for an id we do not know (not every
 * GGML id is a type we read): the block geometry, and kernels that are right on every CPU. The
 * fastest kernels for this CPU are src/cpu/kernel_table.h's q3_type_get. */
const q3_type_traits *q3_type_info(q3_type t);
/* Type by case-insensitive name ("bf16", "q4_k"); returns false when unknown. */
bool q3_type_from_name(const char *name, q3_type *out);
/* Quantizes n elements of src into dst as a file holds them (the bytes llama-quantize and the
 * gguf package write), with importance where the type uses one (may be NULL). tr is t's traits
 * from q3_type_info or q3_type_get; cannot fail. */
static inline void q3_quantize_row(const q3_type_traits *tr, const float *src, void *dst, int64_t n,
                                   const float *importance) {
    if (tr->quantize) tr->quantize(src, dst, n, importance);
    else tr->from_float(src, dst, n);
}
/* Bytes taken by a row of n elements; 0 when n is not a whole number of blocks. */
size_t q3_row_bytes(q3_type t, int64_t n);
/* Name of t, or "unknown(N)" in a static buffer for unknown ids; cannot fail. */
const char *q3_type_name(q3_type t);


#endif
