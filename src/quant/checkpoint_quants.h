/* The quantized weights of published Hugging Face checkpoints, run as they are (exactly the
 * float model transformers computes from their dequantized weights, with float activations):
 *
 *   FP8 (quant_method "fp8", e.g. Qwen3-30B-A3B-FP8): e4m3 weights, one float32 scale_inv per
 *   128x128 block. Repacked at load into rows of Q3_TYPE_F8_E4M3_B32 blocks: the block's scale
 *   (times 256, see below) and 32 e4m3 bytes. 32 columns rather than the checkpoint's 128 so a
 *   tensor-parallel split of an expert's 768 columns over 8 ranks (96 each) still falls on block
 *   boundaries; the cost is 4 scale bytes per 32 weights instead of per 128.
 *   Why FP8 kernels rather than dequantizing at load: the other exact choice is BF16 (Q8_0 would
 *   requantize, and moves the tiny fixture's logits by 10%), which takes 2 bytes a weight against
 *   1.125: twice the memory (a 235B-A22B checkpoint would need 470 GB instead of 265 GB) and
 *   1.8x the bytes a decode step streams. Measured on the 2-core CI machine (bench/RESULTS.md),
 *   one thread, where the e4m3 conversion is not hidden behind DRAM: decode on par with BF16,
 *   prefill 0.8x of it (both have AVX-512 tiles); with the cores of a server, decode is bound
 *   by bandwidth and the smaller rows win.
 *
 *   GPTQ-Int4 (quant_method "gptq", bits 4, sym, desc_act false): 4-bit q, one f16 scale per
 *   group of 128 inputs, w = scale * (q - zero) with zero 8. Repacked at load into Q4_0's
 *   blocks (the group's scale in each of its four 32-blocks), which hold exactly these values;
 *   the type differs from Q4_0 only in taking float activations, so it computes what
 *   transformers computes. `convert --type q4_0` copies the blocks unchanged.
 *
 * e4m3 (sign, 4 exponent bits with bias 7, 3 mantissa bits; no infinities, 0x7f/0xff NaN) is a
 * subset of IEEE half once shifted: the byte's low seven bits moved up by 7 and its sign to bit
 * 15 make an f16 whose value is the e4m3 value / 256, subnormals included. The kernels convert
 * that way (F16C / NEON conversions do it in hardware) and the stored scale carries the 256. */
#ifndef Q3_CHECKPOINT_QUANTS_H
#define Q3_CHECKPOINT_QUANTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/half.h"

#define Q3_FP8_BLOCK 32

typedef struct q3_block_f8_b32 {
    float d;                   /* the checkpoint's scale_inv for this block, times 256 */
    uint8_t q[Q3_FP8_BLOCK];   /* e4m3 */
} q3_block_f8_b32;
_Static_assert(sizeof(q3_block_f8_b32) == 36, "FP8 block is 36 bytes");

/* The f16 bits of e4m3 byte b divided by 256 (exact). */
static inline uint16_t q3_e4m3_to_f16_bits(uint8_t b) {
    return (uint16_t)(((b & 0x7f) << 7) | ((b & 0x80) << 8));
}

/* Reference kernels: to_float, and vec_dot against float32 activations; from_float (per 32
 * weights the scale that maps the largest to 448, round to nearest) makes test and benchmark
 * data, GPTQ4_B32's is Q4_0's. */
void q3_f8_b32_to_float(const void *src, float *dst, int64_t n);
void q3_f8_b32_from_float(const float *src, void *dst, int64_t n);
float q3_f8_b32_vec_dot(int64_t n, const void *w, const void *x);
void q3_gptq4_b32_to_float(const void *src, float *dst, int64_t n);
float q3_gptq4_b32_vec_dot(int64_t n, const void *w, const void *x);

/* Repacks an FP8 checkpoint tensor: weight [rows, cols] of e4m3 bytes and scale_inv
 * [ceil(rows / block_rows), ceil(cols / block_cols)] into rows of F8_E4M3_B32 blocks at dst
 * (rows * cols / 32 blocks). block_cols must be a multiple of 32 and cols of 32. Returns false at
 * the first NaN byte (0x7f or 0xff), which a valid checkpoint never holds, with its element
 * index in *bad. */
bool q3_fp8_repack(const uint8_t *weight, const float *scale_inv, int64_t rows, int64_t cols, int64_t block_rows,
                   int64_t block_cols, void *dst, int64_t *bad);

/* Repacks a GPTQ-Int4 tensor of `in` inputs and `out` outputs (qweight int32 [in / 8, out], the
 * nibble of input i in bits 4 (i % 8) of qweight[i / 8]; qzeros int32 [in / group, out / 8];
 * scales f16 [in / group, out]) into `out` rows of Q4_0-layout blocks at dst. zero_offset is
 * added to each stored zero (1 for the original GPTQ format, which stores zero - 1). Returns
 * false, with the group and output in *bad_group / *bad_out, where a zero is not 8: only
 * symmetric GPTQ is Q4_0 exactly. */
bool q3_gptq4_repack(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales, int64_t in, int64_t out,
                     int64_t group, int zero_offset, void *dst, int64_t *bad_group, int64_t *bad_out);

#endif
