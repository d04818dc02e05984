/* Helpers shared by the AVX2 and AVX-512 kernels (both files are built with at least AVX2, FMA
 * and F16C): the K-quant scale unpacking and the per-block tail that turns exact integer sums
 * into the reference's float result. Include only from files built with those flags. */
#ifndef Q3_CPU_DOT_X86_H
#define Q3_CPU_DOT_X86_H

#include <immintrin.h>
#include <string.h>
#include "quant/blocks.h"

/* Decode streams each weight row from DRAM once. The hardware prefetchers lose the stream at
 * every 4 KiB page and at each task's start, so the K-quant loops ask for the bytes this far
 * ahead themselves: measured on the 2-core EPYC of bench/RESULTS.md, 1.2 to 4.6 KiB ahead
 * decoded a Qwen3-30B-A3B Q4_K_M 8% faster than none (beyond a row's end it reaches into the
 * next row, or touches nothing: a prefetch never faults). */
#define Q3_X86_PREFETCH_AHEAD 2304

/* Asks for the `bytes` bytes that lie Q3_X86_PREFETCH_AHEAD after p. */
static inline void q3_x86_prefetch_ahead(const void *p, size_t bytes) {
    for (size_t l = 0; l < bytes; l += 64) _mm_prefetch((const char *)p + Q3_X86_PREFETCH_AHEAD + l, _MM_HINT_T0);
}

/* The 6-bit scales and mins of a Q4_K / Q5_K block as bytes [sc0..sc7, m0..m7] (the layout of
 * q3_kscale_get, unpacked four lanes at a time). Reads 16 bytes from packed: the 12 of the
 * scales and 4 of the block's next field. */
static inline __m128i q3_x86_kscales(const uint8_t *packed) {
    __m128i v = _mm_loadu_si128((const __m128i *)packed); /* 32-bit lanes a, b, c, - */
    __m128i low = _mm_and_si128(v, _mm_set1_epi32(0x3f3f3f3f)); /* sc0-3, m0-3 */
    __m128i c = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 2, 2, 2));
    __m128i nibbles = _mm_srlv_epi32(c, _mm_setr_epi32(0, 4, 0, 4)); /* c, c >> 4 */
    __m128i top = _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(v, 6), _mm_set1_epi32(0x03030303)), 4);
    __m128i high = _mm_or_si128(_mm_and_si128(nibbles, _mm_set1_epi32(0x0f0f0f0f)), top); /* sc4-7, m4-7 */
    return _mm_unpacklo_epi32(low, high);
}

/* The 16 signed scales of a Q3_K block as int8 (-32..31). Scale j's low four bits are the low
 * nibble of byte j (j < 8) or the high nibble of byte j - 8; its top two bits are bit pair
 * j / 4 of byte 8 + j % 4. Reads exactly the 12 bytes (the block ends 2 bytes later). */
static inline __m128i q3_x86_q3k_scales(const uint8_t *packed) {
    int64_t low_bytes;
    int32_t high_bytes;
    memcpy(&low_bytes, packed, 8);
    memcpy(&high_bytes, packed + 8, 4);
    __m128i ab = _mm_set1_epi64x(low_bytes); /* 32-bit lanes: bytes 0-3, 4-7, 0-3, 4-7 */
    __m128i low = _mm_and_si128(_mm_srlv_epi32(ab, _mm_setr_epi32(0, 0, 4, 4)), _mm_set1_epi32(0x0f0f0f0f));
    __m128i top = _mm_srlv_epi32(_mm_set1_epi32(high_bytes), _mm_setr_epi32(0, 2, 4, 6));
    top = _mm_slli_epi32(_mm_and_si128(top, _mm_set1_epi32(0x03030303)), 4);
    return _mm_sub_epi8(_mm_or_si128(low, top), _mm_set1_epi8(32));
}

/* sum m_j * (bsums[2j] + bsums[2j + 1]) in four int32 lanes (not yet summed): the min term of
 * Q4_K / Q5_K. scales_mins is q3_x86_kscales' result. */
static inline __m128i q3_x86_kmin_terms(__m128i scales_mins, const int16_t *bsums) {
    __m128i pairs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)bsums),
                                   _mm_loadu_si128((const __m128i *)(bsums + 8)));
    __m128i mins = _mm_unpackhi_epi8(scales_mins, _mm_setzero_si128());
    return _mm_madd_epi16(pairs, mins);
}

/* Sums the four lanes of qy and of my: [sum qy, sum my] in lanes 0 and 1. */
static inline __m128i q3_x86_sum_pair(__m128i qy, __m128i my) {
    __m128i h = _mm_hadd_epi32(qy, my);
    return _mm_hadd_epi32(h, h);
}

/* q3_kdot_accumulate on the two sums of q3_x86_sum_pair: acc + ((dx * d) * qy - (dx * dmin) *
 * my), the same IEEE operations in the same order, two lanes at once. d_dmin points at the
 * block's adjacent fp16 d and dmin. */
static inline float q3_x86_kdot_tail(float acc, float dx, const uint16_t *d_dmin, __m128i sums) {
    uint32_t halves;
    memcpy(&halves, d_dmin, 4);
    __m128 d = _mm_cvtph_ps(_mm_cvtsi32_si128((int)halves));
    __m128 products = _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(dx), d), _mm_cvtepi32_ps(sums));
    __m128 difference = _mm_sub_ss(products, _mm_movehdup_ps(products));
    return _mm_cvtss_f32(_mm_add_ss(_mm_set_ss(acc), difference));
}

/* q3_x86_kdot_tail for four consecutive blocks at once: qy[b] and my[b] hold block b's sums in
 * four lanes each (not yet summed); d_dmin points at the first block's fp16 d and dmin, the
 * others follow every stride bytes. The products of the four blocks are computed side by side;
 * only the running sum takes them one after another, as the reference adds. */
static inline float q3_x86_kdot_tail4(float acc, const q3_block_q8_k *x, const uint16_t *d_dmin, size_t stride,
                                      const __m128i qy[4], const __m128i my[4]) {
    __m128 sum_qy = _mm_cvtepi32_ps(_mm_hadd_epi32(_mm_hadd_epi32(qy[0], qy[1]), _mm_hadd_epi32(qy[2], qy[3])));
    __m128 sum_my = _mm_cvtepi32_ps(_mm_hadd_epi32(_mm_hadd_epi32(my[0], my[1]), _mm_hadd_epi32(my[2], my[3])));
    uint32_t h[4];
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++) memcpy(&h[b], (const unsigned char *)d_dmin + b * stride, 4);
    __m256 halves = _mm256_cvtph_ps(_mm_setr_epi32((int)h[0], (int)h[1], (int)h[2], (int)h[3]));
    __m128 lo = _mm256_castps256_ps128(halves), hi = _mm256_extractf128_ps(halves, 1);
    __m128 d = _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)), dmin = _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
    __m128 dx = _mm_setr_ps(x[0].d, x[1].d, x[2].d, x[3].d);
    __m128 diff = _mm_sub_ps(_mm_mul_ps(_mm_mul_ps(dx, d), sum_qy), _mm_mul_ps(_mm_mul_ps(dx, dmin), sum_my));
    float t[4];
    _mm_storeu_ps(t, diff);
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++) acc += t[b];
    return acc;
}

/* An ISA's exact integer sums of one Q4_K block (levels x activations x scales) folded to four
 * int32 lanes; scales_mins is q3_x86_kscales' result for the block. */
typedef __m128i (*q3_x86_q4_k_sums_fn)(const q3_block_q4_k *w, const q3_block_q8_k *x, __m128i scales_mins);

/* The Q4_K dot product around an ISA's block sums: four blocks' float terms side by side, the
 * blocks left over one at a time; either way the reference's additions in its order, so every
 * ISA gives the scalar code's bits. Always inlined, so block_sums is inlined in turn. */
static inline __attribute__((always_inline)) float q3_x86_q4_k_dot(int64_t n, const q3_block_q4_k *bw, const q3_block_q8_k *bx,
                                    q3_x86_q4_k_sums_fn block_sums) {
    int64_t nb = n / Q3_QK_K, i = 0;
    float sum = 0;
    for (; i + 4 <= nb; i += 4) {
        __m128i qy[4], my[4];
        q3_x86_prefetch_ahead(bw + i, 4 * sizeof *bw);
#pragma GCC unroll 4
        for (int b = 0; b < 4; b++) {
            __m128i scales_mins = q3_x86_kscales(bw[i + b].scales);
            qy[b] = block_sums(&bw[i + b], &bx[i + b], scales_mins);
            my[b] = q3_x86_kmin_terms(scales_mins, bx[i + b].bsums);
        }
        sum = q3_x86_kdot_tail4(sum, bx + i, &bw[i].d, sizeof *bw, qy, my);
    }
    for (; i < nb; i++) {
        __m128i scales_mins = q3_x86_kscales(bw[i].scales);
        __m128i min_terms = q3_x86_kmin_terms(scales_mins, bx[i].bsums);
        sum = q3_x86_kdot_tail(sum, bx[i].d, &bw[i].d, q3_x86_sum_pair(block_sums(&bw[i], &bx[i], scales_mins), min_terms));
    }
    return sum;
}

#endif
