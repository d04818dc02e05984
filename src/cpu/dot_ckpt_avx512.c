/* AVX-512 kernels of the checkpoint weight types (cpu/dot_ckpt.h): the AVX2 ones sixteen lanes
 * wide, one FP8 block in two conversions of sixteen. */
#include "cpu/dot_ckpt.h"

#ifdef __AVX512F__

#include <immintrin.h>
#include "quant/blocks.h"
#include "quant/checkpoint_quants.h"

/* Thirty-two e4m3 bytes as the f16 bits of their values / 256: sign-extended to 16 bits and
 * shifted up by 7, the magnitude lands on bits 7..13 and the sign on 14 and 15; bit 14 cleared. */
static inline __m512i e4m3_to_f16(__m256i bytes) {
    __m512i shifted = _mm512_slli_epi16(_mm512_cvtepi8_epi16(bytes), 7);
    return _mm512_and_si512(shifted, _mm512_set1_epi16((short)0xBFFF));
}

static inline __m512 f8_block_dot(const uint8_t *q, const float *y) {
    __m512i h = e4m3_to_f16(_mm256_loadu_si256((const __m256i *)q));
    __m512 s = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), _mm512_loadu_ps(y));
    return _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), _mm512_loadu_ps(y + 16), s);
}

float q3_f8_b32_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_f8_b32 *b = w;
    const float *y = x;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
    int64_t nb = n / Q3_FP8_BLOCK, i = 0;
    for (; i + 2 <= nb; i += 2, y += 2 * Q3_FP8_BLOCK) {
        acc0 = _mm512_fmadd_ps(f8_block_dot(b[i].q, y), _mm512_set1_ps(b[i].d), acc0);
        acc1 = _mm512_fmadd_ps(f8_block_dot(b[i + 1].q, y + Q3_FP8_BLOCK), _mm512_set1_ps(b[i + 1].d), acc1);
    }
    if (i < nb) acc0 = _mm512_fmadd_ps(f8_block_dot(b[i].q, y), _mm512_set1_ps(b[i].d), acc0);
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* The tile kernel (q3_gemm_fn) of FP8 rows: vec_dot's own order for every (row, token) pair,
 * 2 rows x 2 tokens at a time, so each block is converted once for two tokens and each
 * activation load serves two rows: prefill is then bound by the FMAs, not the conversions. */
/* Block i of nr rows against nc tokens into accumulator `slot`. */
#define F8_TILE_BLOCK(i, slot)                                                                  \
    do {                                                                                        \
        __m512 lo[2], hi[2], d[2];                                                              \
        _Pragma("GCC unroll 2") for (int r = 0; r < nr; r++) {                                  \
            __m512i h = e4m3_to_f16(_mm256_loadu_si256((const __m256i *)w[r][i].q));            \
            lo[r] = _mm512_cvtph_ps(_mm512_castsi512_si256(h));                                 \
            hi[r] = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));                           \
            d[r] = _mm512_set1_ps(w[r][i].d);                                                   \
        }                                                                                       \
        _Pragma("GCC unroll 2") for (int c = 0; c < nc; c++) {                                  \
            __m512 y0 = _mm512_loadu_ps(x[c] + (i) * Q3_FP8_BLOCK);                             \
            __m512 y1 = _mm512_loadu_ps(x[c] + (i) * Q3_FP8_BLOCK + 16);                        \
            _Pragma("GCC unroll 2") for (int r = 0; r < nr; r++) {                              \
                __m512 s = _mm512_fmadd_ps(hi[r], y1, _mm512_mul_ps(lo[r], y0));                \
                acc[r][c][slot] = _mm512_fmadd_ps(s, d[r], acc[r][c][slot]);                    \
            }                                                                                   \
        }                                                                                       \
    } while (0)

static inline __attribute__((always_inline)) void f8_tile(int64_t n, const q3_block_f8_b32 *const *w,
                                                          const float *const *x, float *out, size_t out_stride,
                                                          const int nr, const int nc) {
    __m512 acc[2][2][2];
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++) acc[r][c][0] = acc[r][c][1] = _mm512_setzero_ps();
    /* vec_dot's order: blocks in pairs into two accumulators, a last odd one into the first */
    int64_t nb = n / Q3_FP8_BLOCK, i = 0;
    for (; i + 2 <= nb; i += 2) {
        F8_TILE_BLOCK(i, 0);
        F8_TILE_BLOCK(i + 1, 1);
    }
    if (i < nb) F8_TILE_BLOCK(i, 0);
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++) out[c * out_stride + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][c][0], acc[r][c][1]));
}

void q3_f8_b32_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc, float *out,
                           size_t out_stride) {
    for (int r = 0; r < nr; r += 2) {
        const q3_block_f8_b32 *rows[2] = {(const void *)((const char *)w + r * w_stride),
                                          (const void *)((const char *)w + (r + 1 < nr ? r + 1 : r) * w_stride)};
        for (int c = 0; c < nc; c += 2) {
            const float *xs[2] = {x[c], x[c + 1 < nc ? c + 1 : c]};
            float *o = out + c * out_stride + r;
            if (r + 1 < nr && c + 1 < nc) f8_tile(n, rows, xs, o, out_stride, 2, 2);
            else if (r + 1 < nr) f8_tile(n, rows, xs, o, out_stride, 2, 1);
            else if (c + 1 < nc) f8_tile(n, rows, xs, o, out_stride, 1, 2);
            else f8_tile(n, rows, xs, o, out_stride, 1, 1);
        }
    }
}

float q3_gptq4_b32_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q4_0 *b = w;
    const float *y = x;
    __m512 acc = _mm512_setzero_ps();
    const __m128i low_mask = _mm_set1_epi8(0xF);
    const __m512i eight = _mm512_set1_epi32(8);
    for (int64_t i = 0; i < n / Q3_QK; i++, y += Q3_QK) {
        __m128i qs = _mm_loadu_si128((const __m128i *)b[i].qs);
        __m128i lo = _mm_and_si128(qs, low_mask), hi = _mm_and_si128(_mm_srli_epi16(qs, 4), low_mask);
        __m512 wl = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(lo), eight));
        __m512 wh = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(hi), eight));
        __m512 s = _mm512_fmadd_ps(wh, _mm512_loadu_ps(y + 16), _mm512_mul_ps(wl, _mm512_loadu_ps(y)));
        acc = _mm512_fmadd_ps(s, _mm512_set1_ps(_cvtsh_ss(b[i].d)), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

#endif
