/* AVX2 kernels of the checkpoint weight types (cpu/dot_ckpt.h). e4m3 bytes become f16 by moving
 * their seven low bits up by 7 and the sign to bit 15 (the value / 256, which the block scale
 * carries back), then f32 by F16C; GPTQ's nibbles are widened to int32 and converted. Eight
 * lanes, block sums scaled once per block, like the scalar references. */
#include "cpu/dot_ckpt.h"

#ifdef __AVX2__

#include <immintrin.h>
#include "quant/blocks.h"
#include "quant/checkpoint_quants.h"

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Sixteen e4m3 bytes as the f16 bits of their values / 256: sign-extended to 16 bits and
 * shifted up by 7, the magnitude lands on bits 7..13 and the sign on 14 and 15; bit 14 cleared. */
static inline __m256i e4m3_to_f16(__m128i bytes) {
    __m256i shifted = _mm256_slli_epi16(_mm256_cvtepi8_epi16(bytes), 7);
    return _mm256_and_si256(shifted, _mm256_set1_epi16((short)0xBFFF));
}

/* The 32 weights of an FP8 block (without its scale) dotted with y. */
static inline __m256 f8_block_dot(const uint8_t *q, const float *y) {
    __m256i h0 = e4m3_to_f16(_mm_loadu_si128((const __m128i *)q));
    __m256i h1 = e4m3_to_f16(_mm_loadu_si128((const __m128i *)(q + 16)));
    __m256 s = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h0)), _mm256_loadu_ps(y));
    s = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h0, 1)), _mm256_loadu_ps(y + 8), s);
    s = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h1)), _mm256_loadu_ps(y + 16), s);
    return _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h1, 1)), _mm256_loadu_ps(y + 24), s);
}

float q3_f8_b32_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_f8_b32 *b = w;
    const float *y = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int64_t nb = n / Q3_FP8_BLOCK, i = 0;
    for (; i + 2 <= nb; i += 2, y += 2 * Q3_FP8_BLOCK) {
        acc0 = _mm256_fmadd_ps(f8_block_dot(b[i].q, y), _mm256_set1_ps(b[i].d), acc0);
        acc1 = _mm256_fmadd_ps(f8_block_dot(b[i + 1].q, y + Q3_FP8_BLOCK), _mm256_set1_ps(b[i + 1].d), acc1);
    }
    if (i < nb) acc0 = _mm256_fmadd_ps(f8_block_dot(b[i].q, y), _mm256_set1_ps(b[i].d), acc0);
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

void q3_f8_b32_to_float_avx2(const void *src, float *dst, int64_t n) {
    const q3_block_f8_b32 *b = src;
    for (int64_t i = 0; i < n / Q3_FP8_BLOCK; i++, dst += Q3_FP8_BLOCK) {
        __m256 d = _mm256_set1_ps(b[i].d);
        for (int half = 0; half < 2; half++) {
            __m256i h = e4m3_to_f16(_mm_loadu_si128((const __m128i *)(b[i].q + 16 * half)));
            _mm256_storeu_ps(dst + 16 * half, _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), d));
            _mm256_storeu_ps(dst + 16 * half + 8, _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), d));
        }
    }
}

/* Eight 4-bit levels (bytes 0..15) minus 8 as floats. */
static inline __m256 levels_ps(__m128i bytes8) {
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(bytes8), _mm256_set1_epi32(8)));
}

float q3_gptq4_b32_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q4_0 *b = w;
    const float *y = x;
    __m256 acc = _mm256_setzero_ps();
    const __m128i low_mask = _mm_set1_epi8(0xF);
    for (int64_t i = 0; i < n / Q3_QK; i++, y += Q3_QK) {
        __m128i qs = _mm_loadu_si128((const __m128i *)b[i].qs);
        __m128i lo = _mm_and_si128(qs, low_mask), hi = _mm_and_si128(_mm_srli_epi16(qs, 4), low_mask);
        __m256 s = _mm256_mul_ps(levels_ps(lo), _mm256_loadu_ps(y));
        s = _mm256_fmadd_ps(levels_ps(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(y + 8), s);
        s = _mm256_fmadd_ps(levels_ps(hi), _mm256_loadu_ps(y + 16), s);
        s = _mm256_fmadd_ps(levels_ps(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(y + 24), s);
        acc = _mm256_fmadd_ps(s, _mm256_set1_ps(_cvtsh_ss(b[i].d)), acc);
    }
    return hsum_ps(acc);
}

#endif
