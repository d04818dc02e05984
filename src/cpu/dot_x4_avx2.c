/* AVX2 rows kernels over the row-interleaved layouts (quant/interleave.h): a register holds two
 * of a group's four rows, one per 128-bit lane, so one broadcast load of 16 activations feeds
 * both, and a block's scales, integer reductions and float tail run once for the four rows.
 *
 * Exactness as the scalar reference: maddubs multiplies levels (unsigned) by activations into
 * int16 pairs that cannot saturate (2 x 15 x 128 for Q4_K, 2 x 63 x 128 for Q6_K), madd
 * applies the int16 sub-block scale into int32; every integer sum is the reference's, and each
 * block ends with q3_kdot_accumulate's float operations in its order, a row per lane. */
#include "cpu/dot.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include "cpu/prefetch_x86.h"
#include "quant/interleave.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

static inline __m256i broadcast16(const void *p) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Rows 0-1 (q01, m01) and 2-3 (q23, m23), four int32 lanes a row: [Q0 Q1 Q2 Q3 M0 M1 M2 M3]. */
static inline __m256i row_sums(__m256i q01, __m256i q23, __m256i m01, __m256i m23) {
    __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(q01, q23), _mm256_hadd_epi32(m01, m23));
    /* lane 0: Q0 Q2 M0 M2, lane 1: Q1 Q3 M1 M3 */
    return _mm256_permutevar8x32_epi32(s, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* acc + ((dx * d) * Q - (dx * dmin) * M) for four rows: q3_kdot_accumulate lane by lane. */
static inline __m128 rows_tail(__m128 acc, float dx, __m256 dd, __m256i sums) {
    __m256 p = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(dx), dd), _mm256_cvtepi32_ps(sums));
    return _mm_add_ps(acc, _mm_sub_ps(_mm256_castps256_ps128(p), _mm256_extractf128_ps(p, 1)));
}

/* ---- Q4_K ---- */

/* As the AVX-512 file: 6-bit scales (sc) and mins (m), sub-blocks 0-3 (lo) and 4-7 (hi), bytes
 * [4r + s]. */
static inline void q4_k_x4_scales(const q3_block_q4_k_x4 *b, __m128i *sc_lo, __m128i *sc_hi, __m128i *m_lo,
                                  __m128i *m_hi) {
    const __m128i low6 = _mm_set1_epi8(0x3f), low4 = _mm_set1_epi8(0x0f), two = _mm_set1_epi8(0x03);
    __m128i a = _mm_loadu_si128((const __m128i *)b->scales[0]);
    __m128i m = _mm_loadu_si128((const __m128i *)b->scales[1]);
    __m128i c = _mm_loadu_si128((const __m128i *)b->scales[2]);
    *sc_lo = _mm_and_si128(a, low6);
    *m_lo = _mm_and_si128(m, low6);
    __m128i top_sc = _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(a, 6), two), 4);
    __m128i top_m = _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(m, 6), two), 4);
    *sc_hi = _mm_or_si128(_mm_and_si128(c, low4), top_sc);
    *m_hi = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(c, 4), low4), top_m);
}

/* Sub-block s's scale (byte 4r + s % 4 of sc, both lanes holding all four rows) as int16 over
 * lane k of rows 2p + k. */
static inline __m256i q4_k_x4_scale(__m256i sc, int p, int s) {
    const int r0 = 4 * (2 * p) + s % 4, r1 = 4 * (2 * p + 1) + s % 4;
    const __m256i pick = _mm256_setr_epi16((short)(0x8000 | r0), (short)(0x8000 | r0), (short)(0x8000 | r0),
                                           (short)(0x8000 | r0), (short)(0x8000 | r0), (short)(0x8000 | r0),
                                           (short)(0x8000 | r0), (short)(0x8000 | r0), (short)(0x8000 | r1),
                                           (short)(0x8000 | r1), (short)(0x8000 | r1), (short)(0x8000 | r1),
                                           (short)(0x8000 | r1), (short)(0x8000 | r1), (short)(0x8000 | r1),
                                           (short)(0x8000 | r1));
    return _mm256_shuffle_epi8(sc, pick);
}

static inline __attribute__((always_inline)) void q4_k_x4_block(const q3_block_q4_k_x4 *b, const q3_block_q8_k *x,
                                                                __m256i qy[2], __m256i my[2]) {
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    __m128i sc_lo, sc_hi, m_lo, m_hi;
    q4_k_x4_scales(b, &sc_lo, &sc_hi, &m_lo, &m_hi);
    __m256i sc[2] = {_mm256_broadcastsi128_si256(sc_lo), _mm256_broadcastsi128_si256(sc_hi)};
    __m256i acc[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i y_low = broadcast16(x->qs + 64 * j + 16 * h), y_high = broadcast16(x->qs + 64 * j + 32 + 16 * h);
#pragma GCC unroll 2
            for (int p = 0; p < 2; p++) {
                __m256i q = loadu256(b->qs[2 * j + h] + 32 * p);
                __m256i low = _mm256_and_si256(q, nibble), high = _mm256_and_si256(_mm256_srli_epi16(q, 4), nibble);
                __m256i s_low = _mm256_madd_epi16(_mm256_maddubs_epi16(low, y_low), q4_k_x4_scale(sc[j / 2], p, 2 * j));
                __m256i s_high = _mm256_madd_epi16(_mm256_maddubs_epi16(high, y_high), q4_k_x4_scale(sc[j / 2], p, 2 * j + 1));
                acc[p] = _mm256_add_epi32(acc[p], _mm256_add_epi32(s_low, s_high));
            }
        }
    }
    qy[0] = acc[0], qy[1] = acc[1];
    __m256i pairs = _mm256_broadcastsi128_si256(_mm_hadd_epi16(_mm_loadu_si128((const __m128i *)x->bsums),
                                                               _mm_loadu_si128((const __m128i *)(x->bsums + 8))));
    my[0] = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpacklo_epi32(m_lo, m_hi)), pairs);
    my[1] = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpackhi_epi32(m_lo, m_hi)), pairs);
}

void q3_q4_k_vec_dot_rows_x4_avx2(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out) {
    const q3_block_q8_k *bx = x;
    int64_t nb = n / Q3_QK_K;
    for (int g = 0; g < nr / 4; g++) {
        const q3_block_q4_k_x4 *b = (const q3_block_q4_k_x4 *)((const char *)w + (size_t)g * 4 * w_stride);
        __m128 acc = _mm_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            __m256i qy[2], my[2];
            q3_x86_prefetch_ahead(&b[i], sizeof *b);
            q4_k_x4_block(&b[i], &bx[i], qy, my);
            __m256 dd = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b[i].d));
            acc = rows_tail(acc, bx[i].d, dd, row_sums(qy[0], qy[1], my[0], my[1]));
        }
        _mm_storeu_ps(out + 4 * g, acc);
    }
}

/* ---- Q6_K ---- */

/* As the AVX-512 file: levels 0..63 of ql register k (0..3) of a half, low nibbles (sub-block
 * 8h + k) and high (8h + 4 + k), top bits from qh register k % 2, bit pairs k / 2 and
 * 2 + k / 2 moved to bits 4-5. */
static inline void q6_k_x4_levels(__m256i ql, __m256i qh, int k, __m256i *low, __m256i *high) {
    const __m256i nibble = _mm256_set1_epi8(0x0F), top = _mm256_set1_epi8(0x30);
    __m256i tl = k < 2 ? _mm256_slli_epi16(qh, 4) : _mm256_slli_epi16(qh, 2);
    __m256i th = k < 2 ? qh : _mm256_srli_epi16(qh, 2);
    *low = _mm256_or_si256(_mm256_and_si256(ql, nibble), _mm256_and_si256(tl, top));
    *high = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql, 4), nibble), _mm256_and_si256(th, top));
}

/* Sub-block s's scale as int16 over each lane's row, from w8 / w16: the lanes' rows' scales
 * 0-7 / 8-15 as int16. */
static inline __m256i q6_k_x4_scale(__m256i w8, __m256i w16, int s) {
    const __m256i pick = _mm256_set1_epi16((short)((2 * (s % 8) + 1) << 8 | 2 * (s % 8)));
    return _mm256_shuffle_epi8(s < 8 ? w8 : w16, pick);
}

/* Rows 2p and 2p + 1 of the x4 block: sum(scale x (level - 32) x activation), four int32
 * lanes a row. */
static inline __attribute__((always_inline)) __m256i q6_k_x4_pair(const q3_block_q6_k_x4 *b, const q3_block_q8_k *x,
                                                                  int p) {
    __m256i sc = loadu256(b->scales[2 * p]); /* row 2p + k's 16 int8 scales in lane k */
    __m256i w8 = _mm256_srai_epi16(_mm256_unpacklo_epi8(sc, sc), 8), w16 = _mm256_srai_epi16(_mm256_unpackhi_epi8(sc, sc), 8);
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256i low, high;
            q6_k_x4_levels(loadu256(b->ql[4 * h + k] + 32 * p), loadu256(b->qh[2 * h + k % 2] + 32 * p), k, &low, &high);
            __m256i s_low = _mm256_madd_epi16(_mm256_maddubs_epi16(low, broadcast16(x->qs + 128 * h + 16 * k)),
                                              q6_k_x4_scale(w8, w16, 8 * h + k));
            __m256i s_high = _mm256_madd_epi16(_mm256_maddubs_epi16(high, broadcast16(x->qs + 128 * h + 64 + 16 * k)),
                                               q6_k_x4_scale(w8, w16, 8 * h + 4 + k));
            acc = _mm256_add_epi32(acc, _mm256_add_epi32(s_low, s_high));
        }
    }
    /* 32 x sum(scale x bsums) */
    __m256i corr = _mm256_add_epi32(_mm256_madd_epi16(w8, broadcast16(x->bsums)), _mm256_madd_epi16(w16, broadcast16(x->bsums + 8)));
    return _mm256_sub_epi32(acc, _mm256_slli_epi32(corr, 5));
}

void q3_q6_k_vec_dot_rows_x4_avx2(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out) {
    const q3_block_q8_k *bx = x;
    int64_t nb = n / Q3_QK_K;
    const __m256i zero = _mm256_setzero_si256();
    for (int g = 0; g < nr / 4; g++) {
        const q3_block_q6_k_x4 *b = (const q3_block_q6_k_x4 *)((const char *)w + (size_t)g * 4 * w_stride);
        __m128 acc = _mm_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            q3_x86_prefetch_ahead(&b[i], sizeof *b);
            __m256i q01 = q6_k_x4_pair(&b[i], &bx[i], 0), q23 = q6_k_x4_pair(&b[i], &bx[i], 1);
            /* d, then dmin = 0 and sum_my = 0: q3_kdot_accumulate(acc, dx, d, 0, qy, 0) */
            __m256 dd = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)b[i].d))),
                                             _mm_setzero_ps(), 1);
            acc = rows_tail(acc, bx[i].d, dd, row_sums(q01, q23, zero, zero));
        }
        _mm_storeu_ps(out + 4 * g, acc);
    }
}

#else
typedef int q3_dot_x4_avx2_unused; /* ISO C wants a declaration in every translation unit */
#endif
