/* Helpers shared by the AVX2 and AVX-512 i-quant kernels (dot_iq_avx2.c, dot_iq_avx512.c,
 * both built with at least AVX2, FMA and F16C): gathering grid vectors and sign masks for runs
 * of 8 weights, the 16 int8 levels of IQ4, and the float tails that turn a block's exact integer
 * sum into the reference's result. Include only from files built with those flags. */
#ifndef Q3_CPU_DOT_IQ_X86_H
#define Q3_CPU_DOT_IQ_X86_H

#include <immintrin.h>
#include <string.h>
#include "quant/iq_blocks.h"
#include "quant/iq_grids.h"

static inline __m256i q3_iqx_loadu(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Four 8-byte table entries side by side: weights 0-7, 8-15, 16-23, 24-31 of a group. */
static inline __m256i q3_iqx_gather4(const uint64_t *table, int i0, int i1, int i2, int i3) {
    return _mm256_setr_epi64x((long long)table[i0], (long long)table[i1], (long long)table[i2], (long long)table[i3]);
}

/* Eight 4-byte grid entries side by side (IQ3: a group of 32 weights). */
static inline __m256i q3_iqx_gather8(const uint32_t *table, const int idx[8]) {
    return _mm256_setr_epi32((int)table[idx[0]], (int)table[idx[1]], (int)table[idx[2]], (int)table[idx[3]],
                             (int)table[idx[4]], (int)table[idx[5]], (int)table[idx[6]], (int)table[idx[7]]);
}

/* The sign masks (0xff: minus) of a group's four runs from four 7-bit sign indices packed 7
 * bits apart in `word` (IQ2_XXS, IQ3_XXS). */
static inline __m256i q3_iqx_ksign_masks(uint32_t word) {
    return q3_iqx_gather4(q3_iq_ksign_masks, word & 127, (word >> 7) & 127, (word >> 14) & 127, (word >> 21) & 127);
}

/* The sign masks of 32 weights from their 32 stored sign bits (IQ2_S, IQ3_S): byte j is 0xff
 * where bit j is set. */
static inline __m256i q3_iqx_sign_bits(const uint8_t *signs) {
    uint32_t bits;
    memcpy(&bits, signs, 4);
    const __m256i byte_of_bit = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit_in_byte = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), byte_of_bit);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit_in_byte), bit_in_byte);
}

/* y negated where mask is 0xff: (y ^ m) - m. */
static inline __m256i q3_iqx_apply_signs(__m256i y, __m256i mask) {
    return _mm256_sub_epi8(_mm256_xor_si256(y, mask), mask);
}

/* Two int16 multipliers for the two halves of 32 weights (lanes of 128 bits). */
static inline __m256i q3_iqx_scale_pair(int a, int b) {
    return _mm256_setr_m128i(_mm_set1_epi16((short)a), _mm_set1_epi16((short)b));
}

/* The 32 IQ4 indices of one sub-block in weight order: qs[j] low nibble is weight j, high
 * nibble weight j + 16. */
static inline __m256i q3_iqx_iq4_indices(const uint8_t *qs) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_setr_m128i(q, _mm_srli_epi16(q, 4));
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

/* The IQ4 levels (q3_iq4nl_values) in both 128-bit lanes, for vpshufb. */
static inline __m256i q3_iqx_iq4_table(void) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q3_iq4nl_values));
}

/* The eight 6-bit scales of an IQ4_XS block as stored (0..63: the scale plus 32) in the bytes
 * of a uint64, byte j for sub-block j: the nibbles of scales_l and the bit pairs of scales_h
 * spread to bytes. */
static inline uint64_t q3_iqx_iq4xs_scales(const q3_block_iq4_xs *b) {
    uint32_t l32;
    memcpy(&l32, b->scales_l, 4);
    uint64_t l = l32, h = b->scales_h;
    l = (l | l << 16) & 0x0000ffff0000ffffull;
    l = (l | l << 8) & 0x00ff00ff00ff00ffull;
    l = (l | l << 4) & 0x0f0f0f0f0f0f0f0full;
    h = (h | h << 24) & 0x000000ff000000ffull;
    h = (h | h << 12) & 0x000f000f000f000full;
    h = (h | h << 6) & 0x0303030303030303ull;
    return l | h << 4;
}

static inline int32_t q3_iqx_hsum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* The block sums of four blocks (each as 8 int32 lanes) folded to one lane each. */
static inline __m128i q3_iqx_hsum4(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* q3_iq_accumulate for four consecutive blocks: products side by side, the additions one after
 * another in block order, as the reference adds. */
static inline float q3_iqx_accumulate4(float acc, __m128 dx, __m128 dw, __m128i sums) {
    __m128 terms = _mm_mul_ps(_mm_mul_ps(dx, dw), _mm_cvtepi32_ps(sums));
    float t[4];
    _mm_storeu_ps(t, terms);
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++) acc += t[b];
    return acc;
}

/* The fp16 scales of four consecutive blocks of `stride` bytes, d first in each. */
static inline __m128 q3_iqx_halves4(const void *first, size_t stride) {
    uint16_t h[4];
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++) memcpy(&h[b], (const unsigned char *)first + b * stride, 2);
    __m128i bits = _mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], 0, 0, 0, 0);
    return _mm_cvtph_ps(bits);
}

#endif
