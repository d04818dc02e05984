/* AVX2 rows kernels over the row-interleaved layouts (quant/interleave.h): a register holds two
 * of a group's four rows, one per 128-bit lane, so one broadcast load of 16 activations feeds
 * both, and a block's scales, integer reductions and float tail run once for the four rows.
 *
 * Exactness as the scalar reference: maddubs multiplies levels (unsigned) by activations into
 * int16 pairs that cannot saturate (2 x 15 x 128 for Q4_K, 2 x 63 x 128 for Q6_K), madd
 * applies the int16 sub-block scale into int32; every integer sum is the reference's, and each
 * block ends with q3_kdot_accumulate's float operations in its order, a row per lane. The loops
 * over groups, blocks and 1-4 tokens are dot_x4_x86.h's. */
#include "cpu/dot.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include "cpu/dot_x4_x86.h"

static inline __m256i broadcast16(const void *p) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* [Q0 Q1 Q2 Q3 M0 M1 M2 M3] from q and m holding two int32 lanes a row, rows in the order
 * [0 0 2 2 | 1 1 3 3]. */
static inline __m256i paired_row_sums(__m256i q, __m256i m) {
    __m256i s = _mm256_hadd_epi32(q, m); /* lane 0: Q0 Q2 M0 M2, lane 1: Q1 Q3 M1 M3 */
    return _mm256_permutevar8x32_epi32(s, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Rows 0-1 (q01, m01) and 2-3 (q23, m23), four int32 lanes a row: [Q0 Q1 Q2 Q3 M0 M1 M2 M3]. */
static inline __m256i row_sums(__m256i q01, __m256i q23, __m256i m01, __m256i m23) {
    return paired_row_sums(_mm256_hadd_epi32(q01, q23), _mm256_hadd_epi32(m01, m23));
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

/* Block i of each token against the x4 block b (dot_x4_x86.h): a register's nibbles and its two
 * sub-block scales are unpacked once and multiplied against every token's activations. Rows
 * 0-1 and 2-3 (two registers) are folded into one accumulator a token by a horizontal add, so
 * four tokens' accumulators, the four registers of levels and the activations fit AVX2's 16
 * registers (two accumulators a token spilled to the stack and ran no faster than a token at a
 * time). */
static inline __attribute__((always_inline)) void q4_k_x4_sums(const q3_block_q4_k_x4 *b, const q3_block_q8_k *const *x,
                                                               int64_t i, int nt, __m256i *sums) {
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    __m128i sc_lo, sc_hi, m_lo, m_hi;
    q4_k_x4_scales(b, &sc_lo, &sc_hi, &m_lo, &m_hi);
    __m256i sc[2] = {_mm256_broadcastsi128_si256(sc_lo), _mm256_broadcastsi128_si256(sc_hi)};
    __m256i acc[Q3_X4_COLS]; /* per token, two int32 lanes a row: [0 0 2 2 | 1 1 3 3] */
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m256i sc_low[2], sc_high[2], low[2], high[2];
#pragma GCC unroll 2
        for (int p = 0; p < 2; p++) {
            sc_low[p] = q4_k_x4_scale(sc[j / 2], p, 2 * j);
            sc_high[p] = q4_k_x4_scale(sc[j / 2], p, 2 * j + 1);
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
#pragma GCC unroll 2
            for (int p = 0; p < 2; p++) {
                __m256i q = loadu256(b->qs[2 * j + h] + 32 * p);
                low[p] = _mm256_and_si256(q, nibble);
                high[p] = _mm256_and_si256(_mm256_srli_epi16(q, 4), nibble);
            }
#pragma GCC unroll 4
            for (int t = 0; t < nt; t++) {
                const int8_t *y = x[t][i].qs + 64 * j + 16 * h;
                __m256i y_low = broadcast16(y), y_high = broadcast16(y + 32), s[2];
#pragma GCC unroll 2
                for (int p = 0; p < 2; p++)
                    s[p] = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(low[p], y_low), sc_low[p]),
                                            _mm256_madd_epi16(_mm256_maddubs_epi16(high[p], y_high), sc_high[p]));
                acc[t] = _mm256_add_epi32(acc[t], _mm256_hadd_epi32(s[0], s[1]));
            }
        }
    }
    __m256i m01 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi32(m_lo, m_hi)), m23 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi32(m_lo, m_hi));
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) {
        const int16_t *bsums = x[t][i].bsums;
        __m256i pairs = _mm256_broadcastsi128_si256(_mm_hadd_epi16(_mm_loadu_si128((const __m128i *)bsums),
                                                                   _mm_loadu_si128((const __m128i *)(bsums + 8))));
        __m256i my = _mm256_hadd_epi32(_mm256_madd_epi16(m01, pairs), _mm256_madd_epi16(m23, pairs));
        sums[t] = paired_row_sums(acc[t], my);
    }
}

void q3_q4_k_vec_dot_rows_x4_avx2(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out) {
    q3_x86_x4_gemm(false, n, w, w_stride, nr, &x, 1, out, 0);
}

void q3_q4_k_gemm_x4_avx2(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc, float *out,
                          size_t out_stride) {
    q3_x86_x4_gemm_tokens(false, n, w, w_stride, nr, x, nc, out, out_stride);
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

/* Block i of each token against the x4 block b (dot_x4_x86.h), rows 2p and 2p + 1 a register
 * (a lane each): levels and scales unpacked once for every token; sum(scale x (level - 32) x
 * activation) as sum(scale x level x activation) - 32 x sum(scale x bsums). */
static inline __attribute__((always_inline)) void q6_k_x4_sums(const q3_block_q6_k_x4 *b, const q3_block_q8_k *const *x,
                                                               int64_t i, int nt, __m256i *sums) {
    __m256i acc[Q3_X4_COLS][2];
#pragma GCC unroll 2
    for (int p = 0; p < 2; p++) {
        __m256i sc = loadu256(b->scales[2 * p]); /* row 2p + k's 16 int8 scales in lane k */
        __m256i w8 = _mm256_srai_epi16(_mm256_unpacklo_epi8(sc, sc), 8), w16 = _mm256_srai_epi16(_mm256_unpackhi_epi8(sc, sc), 8);
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) {
            __m256i corr = _mm256_add_epi32(_mm256_madd_epi16(w8, broadcast16(x[t][i].bsums)),
                                            _mm256_madd_epi16(w16, broadcast16(x[t][i].bsums + 8)));
            acc[t][p] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr, 5));
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i low, high;
                q6_k_x4_levels(loadu256(b->ql[4 * h + k] + 32 * p), loadu256(b->qh[2 * h + k % 2] + 32 * p), k, &low, &high);
                __m256i sc_low = q6_k_x4_scale(w8, w16, 8 * h + k), sc_high = q6_k_x4_scale(w8, w16, 8 * h + 4 + k);
#pragma GCC unroll 4
                for (int t = 0; t < nt; t++) {
                    const int8_t *y = x[t][i].qs + 128 * h + 16 * k;
                    __m256i s_low = _mm256_madd_epi16(_mm256_maddubs_epi16(low, broadcast16(y)), sc_low);
                    __m256i s_high = _mm256_madd_epi16(_mm256_maddubs_epi16(high, broadcast16(y + 64)), sc_high);
                    acc[t][p] = _mm256_add_epi32(acc[t][p], _mm256_add_epi32(s_low, s_high));
                }
            }
        }
    }
    const __m256i zero = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) sums[t] = row_sums(acc[t][0], acc[t][1], zero, zero);
}

void q3_q6_k_vec_dot_rows_x4_avx2(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out) {
    q3_x86_x4_gemm(true, n, w, w_stride, nr, &x, 1, out, 0);
}

void q3_q6_k_gemm_x4_avx2(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc, float *out,
                          size_t out_stride) {
    q3_x86_x4_gemm_tokens(true, n, w, w_stride, nr, x, nc, out, out_stride);
}

#else
typedef int q3_dot_x4_avx2_unused; /* ISO C wants a declaration in every translation unit */
#endif
