/* The block layouts of llama.cpp's quantized types, byte for byte as GGUF files store them, and
 * the small helpers every kernel of these formats shares (scale unpacking, rounding, the float
 * tail of the K-quant dot products).
 *
 * A quantized row is an array of blocks. "Legacy" formats hold 32 weights per block with one
 * fp16 scale (and for the _1 variants an fp16 offset); K-quants hold 256 weights per block split
 * into 16 or 8 sub-blocks whose scales are themselves quantized against one fp16 super-scale.
 * Scales are stored as raw IEEE half bits (uint16_t) so the structs have no padding and no
 * alignment above what the file guarantees. The static assertions check every size against
 * the sizes GGUF readers use. */
#ifndef Q3_QUANT_BLOCKS_H
#define Q3_QUANT_BLOCKS_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include "base/half.h"

#define Q3_QK 32    /* weights per block of the legacy formats */
#define Q3_QK_K 256 /* weights per block of the K-quants */

/* Q4_0: x = d * (q - 8), q in 0..15. qs[j] holds weight j in its low nibble and j + 16 in its
 * high nibble. */
typedef struct q3_block_q4_0 {
    uint16_t d;
    uint8_t qs[Q3_QK / 2];
} q3_block_q4_0;
_Static_assert(sizeof(q3_block_q4_0) == 18, "Q4_0 block is 18 bytes");

/* Q4_1: x = d * q + m, q in 0..15, nibbles as Q4_0. */
typedef struct q3_block_q4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[Q3_QK / 2];
} q3_block_q4_1;
_Static_assert(sizeof(q3_block_q4_1) == 20, "Q4_1 block is 20 bytes");

/* Q5_0: x = d * (q - 16), q in 0..31: low four bits as Q4_0, bit 4 of weight j is bit j of the
 * little-endian 32-bit qh. */
typedef struct q3_block_q5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[Q3_QK / 2];
} q3_block_q5_0;
_Static_assert(sizeof(q3_block_q5_0) == 22, "Q5_0 block is 22 bytes");

/* Q5_1: x = d * q + m, q in 0..31, bits as Q5_0. */
typedef struct q3_block_q5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[Q3_QK / 2];
} q3_block_q5_1;
_Static_assert(sizeof(q3_block_q5_1) == 24, "Q5_1 block is 24 bytes");

/* Q8_0: x = d * q, q in -127..127 (a file may hold -128; activations never do). */
typedef struct q3_block_q8_0 {
    uint16_t d;
    int8_t qs[Q3_QK];
} q3_block_q8_0;
_Static_assert(sizeof(q3_block_q8_0) == 34, "Q8_0 block is 34 bytes");

/* Q8_1: Q8_0 plus s = d * sum(q), which lets a dot product against Q4_1 / Q5_1 apply their
 * offset m once per block instead of once per weight. */
typedef struct q3_block_q8_1 {
    uint16_t d;
    uint16_t s;
    int8_t qs[Q3_QK];
} q3_block_q8_1;
_Static_assert(sizeof(q3_block_q8_1) == 36, "Q8_1 block is 36 bytes");

/* Q2_K: 16 sub-blocks of 16; scales[i] holds sub-block i's 4-bit scale (low nibble) and 4-bit
 * min (high nibble); x = d * sc * q - dmin * m, q in 0..3. Byte qs[32 * h + l] holds, in bit
 * pairs 0-1, 2-3, 4-5, 6-7, weights 128 * h + l, +32, +64, +96. */
typedef struct q3_block_q2_k {
    uint8_t scales[Q3_QK_K / 16];
    uint8_t qs[Q3_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
} q3_block_q2_k;
_Static_assert(sizeof(q3_block_q2_k) == 84, "Q2_K block is 84 bytes");

/* Q3_K: 16 sub-blocks of 16 with signed 6-bit scales (stored + 32, packed in 12 bytes: see
 * q3_q3_k_scales); x = d * sc * q, q in -4..3. The low two bits of q are laid out as in Q2_K;
 * the third bit of weight e is bit e / 32 of hmask[e % 32], and a clear bit means "minus 4". */
typedef struct q3_block_q3_k {
    uint8_t hmask[Q3_QK_K / 8];
    uint8_t qs[Q3_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} q3_block_q3_k;
_Static_assert(sizeof(q3_block_q3_k) == 110, "Q3_K block is 110 bytes");

/* Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes (q3_kscale_get);
 * x = d * sc * q - dmin * m, q in 0..15. Byte qs[32 * c + l] holds weight 64 * c + l in its low
 * nibble and 64 * c + 32 + l in its high nibble. */
typedef struct q3_block_q4_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[Q3_QK_K / 2];
} q3_block_q4_k;
_Static_assert(sizeof(q3_block_q4_k) == 144, "Q4_K block is 144 bytes");

/* Q5_K: Q4_K with a fifth bit: bit 4 of weight e is bit e / 32 of qh[e % 32]. */
typedef struct q3_block_q5_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[Q3_QK_K / 8];
    uint8_t qs[Q3_QK_K / 2];
} q3_block_q5_k;
_Static_assert(sizeof(q3_block_q5_k) == 176, "Q5_K block is 176 bytes");

/* Q6_K: 16 sub-blocks of 16 with int8 scales; x = d * sc * (q - 32), q in 0..63. In each half h
 * of 128 weights, ql[64 * h + l] holds weights l (low nibble) and l + 64 (high nibble),
 * ql[64 * h + 32 + l] weights l + 32 and l + 96; qh[32 * h + l] holds their top two bits in bit
 * pairs 0-1 (l), 2-3 (l + 32), 4-5 (l + 64), 6-7 (l + 96). */
typedef struct q3_block_q6_k {
    uint8_t ql[Q3_QK_K / 2];
    uint8_t qh[Q3_QK_K / 4];
    int8_t scales[Q3_QK_K / 16];
    uint16_t d;
} q3_block_q6_k;
_Static_assert(sizeof(q3_block_q6_k) == 210, "Q6_K block is 210 bytes");

/* Q8_K: the activation type of the K-quants. A float scale, q in -127..127, and bsums[i], the
 * sum of q over weights 16 * i .. 16 * i + 15, which the K-quant dot products need for their
 * mins (Q2_K, Q4_K, Q5_K) and offsets (Q6_K). */
typedef struct q3_block_q8_k {
    float d;
    int8_t qs[Q3_QK_K];
    int16_t bsums[Q3_QK_K / 16];
} q3_block_q8_k;
_Static_assert(sizeof(q3_block_q8_k) == 292, "Q8_K block is 292 bytes");

/* Round to nearest, ties to even, as llama.cpp's K-quant search rounds (through the float
 * magic-number trick); valid for |x| < 2^22, which every caller's values are far below. */
static inline int q3_nearest_int(float x) {
    float shifted = x + 12582912.0f; /* 1.5 * 2^23: the integer lands in the low mantissa bits */
    int32_t bits;
    memcpy(&bits, &shifted, 4);
    return (bits & 0x007fffff) - 0x00400000;
}

static inline int q3_clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The value of largest magnitude, with its sign; the first one wins a tie, as in llama.cpp.
 * Symmetric formats map it to their most negative level, which the two's-complement range has
 * one more of. */
static inline float q3_signed_absmax(const float *x, int n) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

/* Sub-block j's 6-bit scale and min of Q4_K / Q5_K. Bytes 0-3 hold scales 0-3 and bytes 4-7
 * mins 0-3 in their low six bits; scales and mins 4-7 keep their low four bits in bytes 8-11
 * (scale low nibble, min high nibble) and their top two bits in the spare top bits of bytes
 * 0-3 (scales) and 4-7 (mins). */
static inline void q3_kscale_get(const uint8_t *packed, int j, uint8_t *scale, uint8_t *min) {
    if (j < 4) {
        *scale = packed[j] & 63;
        *min = packed[j + 4] & 63;
    } else {
        *scale = (uint8_t)((packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4));
        *min = (uint8_t)((packed[j + 4] >> 4) | ((packed[j] >> 6) << 4));
    }
}

/* The inverse of q3_kscale_get: packs eight 6-bit scales and mins into 12 bytes. */
static inline void q3_kscale_pack(const uint8_t scales[8], const uint8_t mins[8], uint8_t packed[12]) {
    for (int j = 0; j < 4; j++) {
        packed[j] = (uint8_t)(scales[j] | (scales[j + 4] >> 4) << 6);
        packed[j + 4] = (uint8_t)(mins[j] | (mins[j + 4] >> 4) << 6);
        packed[j + 8] = (uint8_t)((scales[j + 4] & 0xF) | (mins[j + 4] & 0xF) << 4);
    }
}

/* All eight scales and mins of a Q4_K / Q5_K block at once, four lanes of bytes at a time:
 * scales[0..7] and mins[0..7] as two little-endian pairs of 32-bit words. */
static inline void q3_kscale_unpack_words(const uint8_t *packed, uint32_t scales[2], uint32_t mins[2]) {
    uint32_t low_sc, low_m, nibbles;
    memcpy(&low_sc, packed, 4);
    memcpy(&low_m, packed + 4, 4);
    memcpy(&nibbles, packed + 8, 4);
    scales[0] = low_sc & 0x3f3f3f3fu;
    mins[0] = low_m & 0x3f3f3f3fu;
    scales[1] = (nibbles & 0x0f0f0f0fu) | ((low_sc >> 6) & 0x03030303u) << 4;
    mins[1] = ((nibbles >> 4) & 0x0f0f0f0fu) | ((low_m >> 6) & 0x03030303u) << 4;
}

static inline void q3_kscale_unpack(const uint8_t *packed, uint8_t scales[8], uint8_t mins[8]) {
    uint32_t sc[2], m[2];
    q3_kscale_unpack_words(packed, sc, m);
    memcpy(scales, sc, 8);
    memcpy(mins, m, 8);
}

/* The float tail of every K-quant dot product, one block at a time. The integer parts
 * (sum_qy = sum of scale * q * y over the block, sum_my = sum of min * y) are exact in any ISA;
 * sharing this one expression, evaluated in this order without fused multiply-adds, makes the
 * SIMD kernels agree with the scalar reference to the bit. */
static inline float q3_kdot_accumulate(float acc, float dx, float d, float dmin, int32_t sum_qy,
                                       int32_t sum_my) {
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
    float scaled = (dx * d) * (float)sum_qy;
    float offset = (dx * dmin) * (float)sum_my;
    return acc + (scaled - offset);
}

#endif
