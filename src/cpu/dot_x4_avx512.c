/* AVX-512 rows kernels over the row-interleaved layouts (quant/interleave.h): each 128-bit lane
 * of a register holds one of four rows, so one broadcast load of 16 activations feeds the four
 * rows, VNNI's dpbusd sums weight x activation four at a time into int32 lanes, and a block's
 * scales, integer reductions and float tail run once for the four rows instead of once per row.
 *
 * Exactness: a sub-block's int32 lanes stay below 2^15 in magnitude (8 products of a level
 * 0..15 and an activation -128..127; Q6_K: 4 of a level 0..63), so dpwssd can multiply them
 * by their sub-block scale as int16 (the scale zero-extended, so each lane's high half adds
 * nothing). All integer sums are then the reference's, and each block ends with
 * q3_kdot_accumulate's float operations in its order, four rows in four lanes: the results
 * equal vec_dot on the original rows to the bit. The loops over groups, blocks and 1-4 tokens
 * are dot_x4_x86.h's. */
#include "cpu/dot.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)

#include "cpu/dot_x4_x86.h"

/* The 16 bytes at p in every 128-bit lane. */
static inline __m512i broadcast16(const void *p) {
    return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)p));
}

/* Per 128-bit lane r (row r) of qy and my, four int32 lanes each: the sums of qy's lanes and of
 * my's lanes, as [Q0 Q1 Q2 Q3 M0 M1 M2 M3]. */
static inline __m256i row_sums(__m512i qy, __m512i my) {
    __m512i a = _mm512_add_epi32(qy, _mm512_shuffle_epi32(qy, _MM_PERM_BADC));
    __m512i b = _mm512_add_epi32(my, _mm512_shuffle_epi32(my, _MM_PERM_BADC));
    __m512i c = _mm512_mask_blend_epi32(0xCCCC, a, b); /* lanes 0, 1: qy pairs; 2, 3: my pairs */
    __m512i s = _mm512_add_epi32(c, _mm512_shuffle_epi32(c, _MM_PERM_CDAB));
    const __m512i pick = _mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_castsi512_si256(_mm512_permutexvar_epi32(pick, s));
}

/* ---- Q4_K ---- */

/* The x4 block's 6-bit scales (sc) and mins (m) of sub-blocks 0-3 (lo) and 4-7 (hi), bytes
 * [4r + s]: q3_kscale_get on four rows at once. */
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

/* Block i of each token against the x4 block b (dot_x4_x86.h): the nibbles of a sub-block pair
 * and their scales unpacked once, dpbusd and dpwssd per token; qy (sum of scale x level x
 * activation) and my (sum of min x activation pairs) in four int32 lanes per row. */
static inline __attribute__((always_inline)) void q4_k_x4_sums(const q3_block_q4_k_x4 *b, const q3_block_q8_k *const *x,
                                                               int64_t i, int nt, __m256i *sums) {
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    __m128i sc_lo, sc_hi, m_lo, m_hi;
    q4_k_x4_scales(b, &sc_lo, &sc_hi, &m_lo, &m_hi);
    __m512i sc32[2] = {_mm512_cvtepu8_epi32(sc_lo), _mm512_cvtepu8_epi32(sc_hi)};
    __m512i acc0[Q3_X4_COLS], acc1[Q3_X4_COLS];
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m512i low[2], high[2];
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512i q = _mm512_loadu_si512(b->qs[2 * j + h]);
            low[h] = _mm512_and_si512(q, nibble);
            high[h] = _mm512_and_si512(_mm512_srli_epi16(q, 4), nibble);
        }
        /* Sub-blocks 2j and 2j + 1: scale bytes 2j % 4 and 2j % 4 + 1 of the lo or hi word. */
        __m512i sc = sc32[j / 2];
        __m512i sc_a = j % 2 ? _mm512_shuffle_epi32(sc, _MM_PERM_CCCC) : _mm512_shuffle_epi32(sc, _MM_PERM_AAAA);
        __m512i sc_b = j % 2 ? _mm512_shuffle_epi32(sc, _MM_PERM_DDDD) : _mm512_shuffle_epi32(sc, _MM_PERM_BBBB);
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) {
            const int8_t *y = x[t][i].qs + 64 * j;
            __m512i s_low = _mm512_dpbusd_epi32(_mm512_setzero_si512(), low[0], broadcast16(y));
            __m512i s_high = _mm512_dpbusd_epi32(_mm512_setzero_si512(), high[0], broadcast16(y + 32));
            s_low = _mm512_dpbusd_epi32(s_low, low[1], broadcast16(y + 16));
            s_high = _mm512_dpbusd_epi32(s_high, high[1], broadcast16(y + 48));
            acc0[t] = _mm512_dpwssd_epi32(acc0[t], s_low, sc_a);
            acc1[t] = _mm512_dpwssd_epi32(acc1[t], s_high, sc_b);
        }
    }
    /* Mins: rows' [m0..m7] as int16 per 128-bit lane, times the activations' pair sums. */
    __m128i m01 = _mm_unpacklo_epi32(m_lo, m_hi), m23 = _mm_unpackhi_epi32(m_lo, m_hi);
    __m512i m16 = _mm512_cvtepu8_epi16(_mm256_inserti128_si256(_mm256_castsi128_si256(m01), m23, 1));
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) {
        __m128i pairs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)x[t][i].bsums),
                                       _mm_loadu_si128((const __m128i *)(x[t][i].bsums + 8)));
        sums[t] = row_sums(_mm512_add_epi32(acc0[t], acc1[t]), _mm512_madd_epi16(m16, _mm512_broadcast_i32x4(pairs)));
    }
}

void q3_q4_k_vec_dot_rows_x4_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out) {
    q3_x86_x4_gemm(false, n, w, w_stride, nr, &x, 1, out, 0);
}

void q3_q4_k_gemm_x4_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc, float *out,
                            size_t out_stride) {
    q3_x86_x4_gemm_tokens(false, n, w, w_stride, nr, x, nc, out, out_stride);
}

/* ---- Q6_K ---- */

/* Levels 0..63 of the 16-byte groups of ql zmm k (0..3) of a half: low nibbles (sub-block
 * 8h + k) and high nibbles (8h + 4 + k), their top bits from qh zmm k % 2, bit pairs k / 2
 * and 2 + k / 2 moved to bits 4-5 (word shifts; the 0x30 mask drops what crosses bytes). */
static inline void q6_k_x4_levels(__m512i ql, __m512i qh, int k, __m512i *low, __m512i *high) {
    const __m512i nibble = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8(0x30);
    __m512i tl = k < 2 ? _mm512_slli_epi16(qh, 4) : _mm512_slli_epi16(qh, 2);
    __m512i th = k < 2 ? qh : _mm512_srli_epi16(qh, 2);
    /* ternary logic 0xF8: a | (b & c) */
    *low = _mm512_ternarylogic_epi32(_mm512_and_si512(ql, nibble), tl, top, 0xF8);
    *high = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(ql, 4), nibble), th, top, 0xF8);
}

/* Sub-block s's scale of each row as the int16 low half of its row's four int32 lanes (high
 * half zero), from w8/w16: rows' scales 0-7 / 8-15 as int16 per 128-bit lane. */
static inline __m512i q6_k_x4_scale(__m512i w8, __m512i w16, int s) {
    /* bytes 2 (s % 8), 2 (s % 8) + 1, then two zeroing indices, in every int32 lane */
    const __m512i pick = _mm512_set1_epi32((int)(0x80800000u | (uint32_t)(2 * (s % 8) + 1) << 8 | (uint32_t)(2 * (s % 8))));
    return _mm512_shuffle_epi8(s < 8 ? w8 : w16, pick);
}

/* Block i of each token against the x4 block b (dot_x4_x86.h): levels and scales unpacked once
 * for every token; sum(scale x (level - 32) x activation) in four int32 lanes per row. */
static inline __attribute__((always_inline)) void q6_k_x4_sums(const q3_block_q6_k_x4 *b, const q3_block_q8_k *const *x,
                                                               int64_t i, int nt, __m256i *sums) {
    __m512i sc = _mm512_loadu_si512(b->scales); /* row r's 16 int8 scales in lane r */
    __m512i w8 = _mm512_srai_epi16(_mm512_unpacklo_epi8(sc, sc), 8), w16 = _mm512_srai_epi16(_mm512_unpackhi_epi8(sc, sc), 8);
    __m512i acc0[Q3_X4_COLS], acc1[Q3_X4_COLS];
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m512i low, high;
            q6_k_x4_levels(_mm512_loadu_si512(b->ql[4 * h + k]), _mm512_loadu_si512(b->qh[2 * h + k % 2]), k, &low, &high);
            __m512i sc_low = q6_k_x4_scale(w8, w16, 8 * h + k), sc_high = q6_k_x4_scale(w8, w16, 8 * h + 4 + k);
#pragma GCC unroll 4
            for (int t = 0; t < nt; t++) {
                const int8_t *y = x[t][i].qs + 128 * h + 16 * k;
                __m512i s_low = _mm512_dpbusd_epi32(_mm512_setzero_si512(), low, broadcast16(y));
                __m512i s_high = _mm512_dpbusd_epi32(_mm512_setzero_si512(), high, broadcast16(y + 64));
                acc0[t] = _mm512_dpwssd_epi32(acc0[t], s_low, sc_low);
                acc1[t] = _mm512_dpwssd_epi32(acc1[t], s_high, sc_high);
            }
        }
    }
    /* 32 x sum(scale x bsums): rows 0-1 and 2-3 as int16 against the 16 sums in each half. */
    __m512i s01 = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(sc)), s23 = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(sc, 1));
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) {
        __m512i bs = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)x[t][i].bsums));
        __m512i p01 = _mm512_madd_epi16(s01, bs), p23 = _mm512_madd_epi16(s23, bs);
        __m512i corr = _mm512_add_epi32(_mm512_shuffle_i32x4(p01, p23, _MM_SHUFFLE(2, 0, 2, 0)),
                                        _mm512_shuffle_i32x4(p01, p23, _MM_SHUFFLE(3, 1, 3, 1)));
        __m512i qy = _mm512_sub_epi32(_mm512_add_epi32(acc0[t], acc1[t]), _mm512_slli_epi32(corr, 5));
        sums[t] = row_sums(qy, _mm512_setzero_si512());
    }
}

void q3_q6_k_vec_dot_rows_x4_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out) {
    q3_x86_x4_gemm(true, n, w, w_stride, nr, &x, 1, out, 0);
}

void q3_q6_k_gemm_x4_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc, float *out,
                            size_t out_stride) {
    q3_x86_x4_gemm_tokens(true, n, w, w_stride, nr, x, nc, out, out_stride);
}

#else
typedef int q3_dot_x4_avx512_unused; /* ISO C wants a declaration in every translation unit */
#endif
