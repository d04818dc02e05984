/* The block layouts of llama.cpp's i-quants, byte for byte as GGUF files store them, and the
 * helpers every kernel of these formats shares (their scale fields, the float tail of the dot
 * products).
 *
 * IQ4_NL and IQ4_XS keep one 4-bit index per weight into 16 non-uniform levels. The others
 * (IQ3_XXS .. IQ1_M) store groups of 8 (IQ3: two groups of 4) weights as an index into a
 * lattice grid (quant/iq_grids.h), plus signs, plus a small odd scale multiplier per 16 or 32
 * weights against one fp16 d. A weight is d * m * g * sign with m = 2k + 1 (times a fixed power
 * of two per format); IQ1 has no signs (its grid is -1, 0, 1) but shifts each group by +-1/8.
 * Every dot product against Q8_K activations is a sum of exact integer products per block,
 * turned into a float once per block by one shared expression (q3_iq_accumulate), which is
 * what lets every instruction set agree with the scalar reference to the bit. */
#ifndef Q3_QUANT_IQ_BLOCKS_H
#define Q3_QUANT_IQ_BLOCKS_H

#include <stdint.h>
#include "quant/blocks.h"

/* IQ4_NL: 32 weights, x = d * values[q]; qs[j] holds weight j (low nibble) and j + 16. */
typedef struct q3_block_iq4_nl {
    uint16_t d;
    uint8_t qs[Q3_QK / 2];
} q3_block_iq4_nl;
_Static_assert(sizeof(q3_block_iq4_nl) == 18, "IQ4_NL block is 18 bytes");

/* IQ4_XS: 8 sub-blocks of 32 as IQ4_NL's, each with a 6-bit scale ls (stored + 32): low four
 * bits in nibble j of scales_l (byte j / 2, low nibble for even j), top two bits in bit pair j
 * of scales_h; x = d * (ls - 32) * values[q]. */
typedef struct q3_block_iq4_xs {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[Q3_QK_K / 64];
    uint8_t qs[Q3_QK_K / 2];
} q3_block_iq4_xs;
_Static_assert(sizeof(q3_block_iq4_xs) == 136, "IQ4_XS block is 136 bytes");

/* IQ3_XXS: 8 groups of 32. qs[0..63] are grid indices (one per 4 weights); then per group a
 * little-endian 32-bit word: four 7-bit sign indices (q3_iq_ksigns) in bits 0-27 for its four
 * runs of 8, and k in bits 28-31; x = d * (0.5 + k) * 0.5 * grid. */
typedef struct q3_block_iq3_xxs {
    uint16_t d;
    uint8_t qs[3 * Q3_QK_K / 8];
} q3_block_iq3_xxs;
_Static_assert(sizeof(q3_block_iq3_xxs) == 98, "IQ3_XXS block is 98 bytes");

/* IQ3_S: 8 groups of 32; index of run of 4 weights i is qs[i] | bit i % 8 of qh[i / 8] << 8
 * (a 512-entry grid); one sign bit per weight; k of group j in nibble j of scales;
 * x = d * (1 + 2k) * grid * sign. */
typedef struct q3_block_iq3_s {
    uint16_t d;
    uint8_t qs[Q3_QK_K / 4];
    uint8_t qh[Q3_QK_K / 32];
    uint8_t signs[Q3_QK_K / 8];
    uint8_t scales[Q3_QK_K / 64];
} q3_block_iq3_s;
_Static_assert(sizeof(q3_block_iq3_s) == 110, "IQ3_S block is 110 bytes");

/* IQ2_XXS: 8 groups of 32 as two little-endian 32-bit words: the first holds the four grid
 * indices (one byte per run of 8), the second four 7-bit sign indices and k in bits 28-31;
 * x = d * (0.5 + k) * 0.25 * grid * sign. */
typedef struct q3_block_iq2_xxs {
    uint16_t d;
    uint16_t qs[Q3_QK_K / 8];
} q3_block_iq2_xxs;
_Static_assert(sizeof(q3_block_iq2_xxs) == 66, "IQ2_XXS block is 66 bytes");

/* IQ2_XS: one 16-bit word per run of 8: grid index in bits 0-8 (512 entries), sign index in bits
 * 9-15; k per 16 weights in nibble j of scales; x = d * (0.5 + k) * 0.25 * grid * sign. */
typedef struct q3_block_iq2_xs {
    uint16_t d;
    uint16_t qs[Q3_QK_K / 8];
    uint8_t scales[Q3_QK_K / 32];
} q3_block_iq2_xs;
_Static_assert(sizeof(q3_block_iq2_xs) == 74, "IQ2_XS block is 74 bytes");

/* IQ2_S: run of 8 i has grid index qs[i] | bit pair i % 4 of qh[i / 4] << 8 (1024 entries) and
 * its 8 sign bits in qs[32 + i]; k per 16 weights in nibble j of scales;
 * x = d * (0.5 + k) * 0.25 * grid * sign. */
typedef struct q3_block_iq2_s {
    uint16_t d;
    uint8_t qs[Q3_QK_K / 4];
    uint8_t qh[Q3_QK_K / 32];
    uint8_t scales[Q3_QK_K / 32];
} q3_block_iq2_s;
_Static_assert(sizeof(q3_block_iq2_s) == 82, "IQ2_S block is 82 bytes");

/* IQ1_S: run of 8 i has grid index qs[i] | bits 3 (i % 4) .. +2 of qh[i / 4] << 8 (2048 entries);
 * qh[j] also holds group j's k in bits 12-14 and the sign of its shift in bit 15;
 * x = d * (2k + 1) * (grid +- 1/8). */
typedef struct q3_block_iq1_s {
    uint16_t d;
    uint8_t qs[Q3_QK_K / 8];
    uint16_t qh[Q3_QK_K / 32];
} q3_block_iq1_s;
_Static_assert(sizeof(q3_block_iq1_s) == 50, "IQ1_S block is 50 bytes");

/* IQ1_M: run of 8 i has grid index qs[i] | the low 3 bits of nibble i of qh (byte i / 2, low
 * nibble for even i) << 8, and the nibble's bit 3 is the sign of its +-1/8 shift. The four
 * little-endian 16-bit words of scales hold a 3-bit k per 16 weights (word j / 4, bits 3 (j % 4))
 * and, in their top nibbles (word 0 lowest), the fp16 d; x = d * (2k + 1) * (grid +- 1/8). */
typedef struct q3_block_iq1_m {
    uint8_t qs[Q3_QK_K / 8];
    uint8_t qh[Q3_QK_K / 16];
    uint8_t scales[Q3_QK_K / 32];
} q3_block_iq1_m;
_Static_assert(sizeof(q3_block_iq1_m) == 56, "IQ1_M block is 56 bytes");

/* IQ1's shift of a group: +-1/8 of the grid step. */
#define Q3_IQ1_DELTA 0.125f

/* IQ1_M's fp16 d, spread over the top nibbles of its four scale words. */
static inline uint16_t q3_iq1m_d(const q3_block_iq1_m *b) {
    uint16_t w[4];
    memcpy(w, b->scales, 8);
    return (uint16_t)((w[0] >> 12) | ((w[1] >> 8) & 0x00f0) | ((w[2] >> 4) & 0x0f00) | (w[3] & 0xf000));
}

/* IQ4_XS's scale of sub-block j, -32..31. */
static inline int q3_iq4xs_scale(const q3_block_iq4_xs *b, int j) {
    int low = (b->scales_l[j / 2] >> 4 * (j % 2)) & 0xf;
    int high = (b->scales_h >> 2 * j) & 3;
    return (low | high << 4) - 32;
}

/* The float tail of every i-quant dot product, one block at a time: sum_q is the block's exact
 * integer sum of scale * weight * activation levels, dw * dx the product of the two scales.
 * The same expression in every ISA, without fused multiply-adds, keeps them bit-identical. */
static inline float q3_iq_accumulate(float acc, float dx, float dw, int32_t sum_q) {
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
    return acc + (dx * dw) * (float)sum_q;
}

#endif
