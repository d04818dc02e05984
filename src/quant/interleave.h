/* Row-interleaved weights: four rows of a K-quant matrix stored block by block side by side, so
 * that a decode kernel reads one stream instead of four and every activation load feeds the
 * four rows (a 128-bit lane each in the SIMD kernels). The layout is made at load
 * (model/interleave.c, `--repack`) from the file's rows and is the same size: a group of four
 * rows takes the bytes the four rows took, so a matrix keeps its row offsets at every multiple
 * of four rows, and rows past the last whole group stay as they were.
 *
 * Within a group, block i of the four rows is one "x4 block" of 4 x type_size bytes:
 * Q4_K (576 bytes): d[4], dmin[4] (fp16, row r at index r); scales[3][16]: the 12 packed scale
 * bytes (q3_kscale_get) as three words per row, [k][4r + b] = row r's scales[4k + b]; qs[8][64]:
 * [2j + h][16r + l] = row r's qs[32j + 16h + l].
 * Q6_K (840 bytes): d[4]; scales[4][16] int8: row r's 16 scales at [r]; ql[8][64]: [4h + k][16r + l] = row r's
 * ql[64h + 16k + l]; qh[4][64]: [2h + k][16r + l] = row r's qh[32h + 16k + l].
 * Each kernel over this layout gives, row for row, the bits of the type's vec_dot on the
 * original rows (the scalar reference here un-interleaves a block and calls it). */
#ifndef Q3_QUANT_INTERLEAVE_H
#define Q3_QUANT_INTERLEAVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "quant/blocks.h"
#include "quant/types.h"

#define Q3_INTERLEAVE_ROWS 4
/* The longest rows interleaved: the tile kernels take Q3_GEMM_ROWS rows out of their groups
 * into a buffer of this many bytes a row on the stack (64 KiB; Q4_K rows of up to 7168). */
#define Q3_INTERLEAVE_MAX_ROW_BYTES 4096

typedef struct q3_block_q4_k_x4 {
    uint16_t d[4];
    uint16_t dmin[4];
    uint8_t scales[3][16];
    uint8_t qs[8][64];
} q3_block_q4_k_x4;
_Static_assert(sizeof(q3_block_q4_k_x4) == 4 * sizeof(q3_block_q4_k), "a Q4_K x4 block is four Q4_K blocks");

typedef struct q3_block_q6_k_x4 {
    uint16_t d[4];
    int8_t scales[4][16];
    uint8_t ql[8][64];
    uint8_t qh[4][64];
} q3_block_q6_k_x4;
_Static_assert(sizeof(q3_block_q6_k_x4) == 4 * sizeof(q3_block_q6_k), "a Q6_K x4 block is four Q6_K blocks");

/* Whether t has an interleaved layout; cannot fail. */
bool q3_interleave_supported(q3_type t);

/* Four rows of t (cols elements each, consecutive at src, row_bytes apart) into one group at
 * dst (4 * row_bytes bytes, not overlapping src). t must be supported; cannot fail. */
void q3_interleave_group(q3_type t, int64_t cols, const void *src, size_t row_bytes, void *dst);

/* Row r (0..3) of the group at group back in t's own layout, into dst (row_bytes bytes). */
void q3_deinterleave_row(q3_type t, int64_t cols, const void *group, int r, void *dst);

/* The portable rows kernels over groups (q3_vec_dot_rows_fn, quant/types.h, with w a group
 * boundary, w_stride the original row bytes and nr a multiple of 4): each row's vec_dot on its
 * blocks taken out of the group, so the reference's bits by construction. */
void q3_q4_k_vec_dot_rows_x4(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out);
void q3_q6_k_vec_dot_rows_x4(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out);
/* And the same for nc <= Q3_X4_COLS tokens (q3_gemm_fn): the rows kernel above per token. */
void q3_q4_k_gemm_x4(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc, float *out,
                     size_t out_stride);
void q3_q6_k_gemm_x4(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc, float *out,
                     size_t out_stride);

#endif
