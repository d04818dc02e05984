/* AVX-512 dot products of the i-quants (F/BW/VL/DQ + VNNI): 64 weights, two groups of 32, per
 * 512-bit register. Built with the AVX-512 flags (the _avx512.c suffix) and only called when
 * the CPU has them.
 *
 * The lattice types gather their grid entries as in dot_iq_avx2.c and negate activations under
 * a 64-bit sign mask (one bit per weight, straight from the stored signs where the format keeps
 * all eight); maddubs makes int16 pairs and vpdpwssd applies the multipliers into int32. IQ4
 * looks its levels up biased by +128, so that vpdpbusd (unsigned x signed, four products into
 * int32, no int16 step) takes them directly; the bias comes off once per block as
 * 128 * sum(scale * activation) from the Q8_K sums. All integer sums are the reference's exact
 * integers and the float tails its expression: results equal the scalar ones to the bit. */
#include "cpu/dot.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)

#include "cpu/dot_iq_x86.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* keep the per-block float math identical to the reference */
#endif

static inline __m512i load64(const void *p) { return _mm512_loadu_si512(p); }

static inline int32_t hsum512(__m512i v) { return _mm512_reduce_add_epi32(v); }

/* Eight 8-byte table entries: the weights of two groups of 32. */
static inline __m512i gather8(const uint64_t *table, const int idx[8]) {
    return _mm512_setr_epi64((long long)table[idx[0]], (long long)table[idx[1]], (long long)table[idx[2]],
                             (long long)table[idx[3]], (long long)table[idx[4]], (long long)table[idx[5]],
                             (long long)table[idx[6]], (long long)table[idx[7]]);
}

/* Sixteen 4-byte grid entries (IQ3: two groups of 32). */
static inline __m512i gather16(const uint32_t *table, const int idx[16]) {
    return _mm512_setr_epi32((int)table[idx[0]], (int)table[idx[1]], (int)table[idx[2]], (int)table[idx[3]],
                             (int)table[idx[4]], (int)table[idx[5]], (int)table[idx[6]], (int)table[idx[7]],
                             (int)table[idx[8]], (int)table[idx[9]], (int)table[idx[10]], (int)table[idx[11]],
                             (int)table[idx[12]], (int)table[idx[13]], (int)table[idx[14]], (int)table[idx[15]]);
}

/* acc + sum grid * (+-y) * multiplier over 64 weights: bit j of signs set negates weight j. */
static inline __m512i grid_dot(__m512i acc, __m512i grid, uint64_t signs, const int8_t *y, __m512i scale16) {
    __m512i yv = load64(y);
    yv = _mm512_mask_sub_epi8(yv, (__mmask64)signs, _mm512_setzero_si512(), yv);
    return _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(grid, yv), scale16);
}

/* acc + sum v * y * multiplier over 64 signed weight bytes (|v| <= 127). */
static inline __m512i signed_dot(__m512i acc, __m512i v, const int8_t *y, __m512i scale16) {
    __m512i yv = load64(y);
    yv = _mm512_mask_sub_epi8(yv, _mm512_movepi8_mask(v), _mm512_setzero_si512(), yv);
    return _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(_mm512_abs_epi8(v), yv), scale16);
}

/* One int16 multiplier per 128-bit lane (16 weights). */
static inline __m512i scales4(int a, int b, int c, int d) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(q3_iqx_scale_pair(a, b)), q3_iqx_scale_pair(c, d), 1);
}

/* The 64 sign bits of two groups of four 7-bit sign indices (IQ2_XXS, IQ3_XXS). */
static inline uint64_t ksigns64(uint32_t a, uint32_t b) {
    uint64_t bits = 0;
#pragma GCC unroll 4
    for (int l = 0; l < 4; l++) {
        bits |= (uint64_t)q3_iq_ksigns[(a >> 7 * l) & 127] << 8 * l;
        bits |= (uint64_t)q3_iq_ksigns[(b >> 7 * l) & 127] << (32 + 8 * l);
    }
    return bits;
}

/* ---- IQ2_XXS, IQ2_XS, IQ2_S ---- */

static inline int32_t iq2_xxs_block(const q3_block_iq2_xxs *w, const q3_block_q8_k *x) {
    __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) { /* groups 2p, 2p + 1 */
        uint32_t words[4];
        memcpy(words, w->qs + 8 * p, 16);
        const uint8_t *a = (const uint8_t *)&words[0], *b = (const uint8_t *)&words[2];
        int idx[8] = {a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]};
        int ma = (int)(2 * (words[1] >> 28) + 1), mb = (int)(2 * (words[3] >> 28) + 1);
        acc = grid_dot(acc, gather8(q3_iq2xxs_grid, idx), ksigns64(words[1], words[3]), x->qs + 64 * p,
                       scales4(ma, ma, mb, mb));
    }
    return hsum512(acc);
}

float q3_iq2_xxs_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_iq2_xxs *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++)
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(bw[i].d), iq2_xxs_block(&bw[i], &bx[i]));
    return 0.125f * sum;
}

static inline __m512i nibble_scales4(const uint8_t *scales, int p) {
    int a = scales[2 * p], b = scales[2 * p + 1];
    return scales4(2 * (a & 0xf) + 1, 2 * (a >> 4) + 1, 2 * (b & 0xf) + 1, 2 * (b >> 4) + 1);
}

static inline int32_t iq2_xs_block(const q3_block_iq2_xs *w, const q3_block_q8_k *x) {
    __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        const uint16_t *q = w->qs + 8 * p;
        int idx[8];
        uint64_t signs = 0;
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            idx[r] = q[r] & 511;
            signs |= (uint64_t)q3_iq_ksigns[q[r] >> 9] << 8 * r;
        }
        acc = grid_dot(acc, gather8(q3_iq2xs_grid, idx), signs, x->qs + 64 * p, nibble_scales4(w->scales, p));
    }
    return hsum512(acc);
}

float q3_iq2_xs_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_iq2_xs *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++)
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(bw[i].d), iq2_xs_block(&bw[i], &bx[i]));
    return 0.125f * sum;
}

static inline int32_t iq2_s_block(const q3_block_iq2_s *w, const q3_block_q8_k *x) {
    __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        const uint8_t *q = w->qs + 8 * p;
        int idx[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) idx[r] = q[r] | ((w->qh[2 * p + r / 4] >> 2 * (r % 4)) & 3) << 8;
        uint64_t signs;
        memcpy(&signs, w->qs + 32 + 8 * p, 8);
        acc = grid_dot(acc, gather8(q3_iq2s_grid, idx), signs, x->qs + 64 * p, nibble_scales4(w->scales, p));
    }
    return hsum512(acc);
}

float q3_iq2_s_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_iq2_s *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++)
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(bw[i].d), iq2_s_block(&bw[i], &bx[i]));
    return 0.125f * sum;
}

/* ---- IQ3_XXS, IQ3_S ---- */

static inline int32_t iq3_xxs_block(const q3_block_iq3_xxs *w, const q3_block_q8_k *x) {
    __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        const uint8_t *q = w->qs + 16 * p;
        uint32_t words[2];
        memcpy(words, w->qs + Q3_QK_K / 4 + 8 * p, 8);
        int idx[16];
#pragma GCC unroll 16
        for (int u = 0; u < 16; u++) idx[u] = q[u];
        int ma = (int)(2 * (words[0] >> 28) + 1), mb = (int)(2 * (words[1] >> 28) + 1);
        acc = grid_dot(acc, gather16(q3_iq3xxs_grid, idx), ksigns64(words[0], words[1]), x->qs + 64 * p,
                       scales4(ma, ma, mb, mb));
    }
    return hsum512(acc);
}

float q3_iq3_xxs_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_iq3_xxs *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++)
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(bw[i].d), iq3_xxs_block(&bw[i], &bx[i]));
    return 0.25f * sum;
}

static inline int32_t iq3_s_block(const q3_block_iq3_s *w, const q3_block_q8_k *x) {
    __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        const uint8_t *q = w->qs + 16 * p;
        int idx[16];
#pragma GCC unroll 16
        for (int u = 0; u < 16; u++) idx[u] = q[u] | ((w->qh[2 * p + u / 8] >> (u % 8)) & 1) << 8;
        uint64_t signs;
        memcpy(&signs, w->signs + 8 * p, 8);
        int ma = 2 * (w->scales[p] & 0xf) + 1, mb = 2 * (w->scales[p] >> 4) + 1;
        acc = grid_dot(acc, gather16(q3_iq3s_grid, idx), signs, x->qs + 64 * p, scales4(ma, ma, mb, mb));
    }
    return hsum512(acc);
}

float q3_iq3_s_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_iq3_s *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++)
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(bw[i].d), iq3_s_block(&bw[i], &bx[i]));
    return sum;
}

/* ---- IQ1_S, IQ1_M: weights in eighths, 8 * grid +- 1 ---- */

/* 8 * grid + shift: grid bytes -1, 0, 1 (8 * g by a masked blend), shift bytes +-1. */
static inline __m512i iq1_eighths(__m512i grid, __m512i shift) {
    __m512i eight = _mm512_mask_blend_epi8(_mm512_movepi8_mask(grid), _mm512_set1_epi8(8), _mm512_set1_epi8(-8));
    __m512i g8 = _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(grid, grid), eight);
    return _mm512_add_epi8(g8, shift);
}

static inline long long run_shift(int negative) { return negative ? -1 : 0x0101010101010101ll; }

static inline int32_t iq1_s_block(const q3_block_iq1_s *w, const q3_block_q8_k *x) {
    __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        const uint8_t *q = w->qs + 8 * p;
        int ha = w->qh[2 * p], hb = w->qh[2 * p + 1], idx[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) idx[r] = q[r] | (((r < 4 ? ha : hb) >> 3 * (r % 4)) & 7) << 8;
        long long sa = run_shift(ha & 0x8000), sb = run_shift(hb & 0x8000);
        __m512i shift = _mm512_setr_epi64(sa, sa, sa, sa, sb, sb, sb, sb);
        int ma = 2 * ((ha >> 12) & 7) + 1, mb = 2 * ((hb >> 12) & 7) + 1;
        acc = signed_dot(acc, iq1_eighths(gather8(q3_iq1s_grid, idx), shift), x->qs + 64 * p, scales4(ma, ma, mb, mb));
    }
    return hsum512(acc);
}

float q3_iq1_s_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_iq1_s *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++)
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(bw[i].d), iq1_s_block(&bw[i], &bx[i]));
    return 0.125f * sum;
}

static inline int32_t iq1_m_block(const q3_block_iq1_m *w, const q3_block_q8_k *x) {
    uint16_t words[4];
    memcpy(words, w->scales, 8);
    __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        const uint8_t *q = w->qs + 8 * p;
        int idx[8];
        long long s[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            int nib = (w->qh[4 * p + r / 2] >> 4 * (r % 2)) & 0xf;
            idx[r] = q[r] | (nib & 7) << 8;
            s[r] = run_shift(nib & 8);
        }
        __m512i shift = _mm512_setr_epi64(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
        int k = words[p];
        __m512i scales = scales4(2 * (k & 7) + 1, 2 * ((k >> 3) & 7) + 1, 2 * ((k >> 6) & 7) + 1, 2 * ((k >> 9) & 7) + 1);
        acc = signed_dot(acc, iq1_eighths(gather8(q3_iq1s_grid, idx), shift), x->qs + 64 * p, scales);
    }
    return hsum512(acc);
}

float q3_iq1_m_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_iq1_m *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++)
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(q3_iq1m_d(&bw[i])), iq1_m_block(&bw[i], &bx[i]));
    return 0.125f * sum;
}

/* ---- IQ4_NL (against Q8_0), IQ4_XS: levels + 128 by vpdpbusd ---- */

/* The IQ4 levels plus 128 (unsigned bytes) in every 128-bit lane, for vpshufb. */
static inline __m512i biased_table(void) {
    __m128i t = _mm_add_epi8(_mm_loadu_si128((const __m128i *)q3_iq4nl_values), _mm_set1_epi8((char)0x80));
    return _mm512_broadcast_i32x4(t);
}

/* The biased levels of two sub-blocks of 32 (qs: their 2 x 16 bytes) in weight order: each
 * sub-block's 16 bytes in two 128-bit lanes, the first shifted by 0 (low nibbles: weights 0-15),
 * the second by 4 (high nibbles: weights 16-31). */
static inline __m512i biased_levels2(const uint8_t *qs, __m512i table) {
    __m512i q = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)qs));
    q = _mm512_shuffle_i64x2(q, q, _MM_SHUFFLE(1, 1, 0, 0));
    const __m512i shifts = _mm512_setr_epi64(0, 0, 0x0004000400040004, 0x0004000400040004, 0, 0,
                                             0x0004000400040004, 0x0004000400040004);
    q = _mm512_and_si512(_mm512_srlv_epi16(q, shifts), _mm512_set1_epi8(0x0f));
    return _mm512_shuffle_epi8(table, q);
}

/* Four IQ4_NL blocks' exact sums sum(level * y) in four int32 lanes. The bias adds 128 * sum(y),
 * taken off against 128 times each activation block's own sum. */
static inline __m128i iq4_nl_sums4(const q3_block_iq4_nl *w, const q3_block_q8_0 *x, __m512i table) {
    __m512i s[2], ysum[2];
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const q3_block_iq4_nl *a = w + 2 * h, *b = a + 1;
        __m128i qa = _mm_loadu_si128((const __m128i *)a->qs), qb = _mm_loadu_si128((const __m128i *)b->qs);
        __m256i q = _mm256_setr_m128i(qa, qb);
        __m256i lo = _mm256_and_si256(q, _mm256_set1_epi8(0x0f));
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), _mm256_set1_epi8(0x0f));
        __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        idx = _mm512_shuffle_i64x2(idx, idx, _MM_SHUFFLE(3, 1, 2, 0));
        __m512i y = _mm512_inserti64x4(_mm512_castsi256_si512(q3_iqx_loadu(x[2 * h].qs)), q3_iqx_loadu(x[2 * h + 1].qs), 1);
        s[h] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_shuffle_epi8(table, idx), y);
        ysum[h] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), y);
        s[h] = _mm512_sub_epi32(s[h], ysum[h]);
    }
    __m256i b0 = _mm512_castsi512_si256(s[0]), b1 = _mm512_extracti64x4_epi64(s[0], 1);
    __m256i b2 = _mm512_castsi512_si256(s[1]), b3 = _mm512_extracti64x4_epi64(s[1], 1);
    return q3_iqx_hsum4(b0, b1, b2, b3);
}

float q3_iq4_nl_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_iq4_nl *bw = w;
    const q3_block_q8_0 *bx = x;
    const __m512i table = biased_table();
    int64_t nb = n / Q3_QK, i = 0;
    float sum = 0;
    for (; i + 4 <= nb; i += 4)
        sum = q3_iqx_accumulate4(sum, q3_iqx_halves4(&bx[i].d, sizeof *bx), q3_iqx_halves4(&bw[i].d, sizeof *bw),
                                 iq4_nl_sums4(bw + i, bx + i, table));
    for (; i < nb; i++) {
        __m256i v = _mm256_shuffle_epi8(_mm512_castsi512_si256(table), q3_iqx_iq4_indices(bw[i].qs));
        __m256i y = q3_iqx_loadu(bx[i].qs);
        __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), v, y);
        s = _mm256_sub_epi32(s, _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), y));
        sum = q3_iq_accumulate(sum, _cvtsh_ss(bx[i].d), _cvtsh_ss(bw[i].d), q3_iqx_hsum(s));
    }
    return sum;
}

/* A block's sum scale_j * (level + 128) * y, less the bias 128 * sum scale_j * (its two
 * activation sums of 16) from the Q8_K bsums, spread over 16 int32 lanes (their total is the
 * block's exact sum). */
static inline __m512i iq4_xs_block(const q3_block_iq4_xs *w, const q3_block_q8_k *x, __m512i table) {
    __m128i sc8 = _mm_sub_epi8(_mm_cvtsi64_si128((long long)q3_iqx_iq4xs_scales(w)), _mm_set1_epi8(32));
    __m512i sc32 = _mm512_cvtepi8_epi32(sc8); /* lanes 0-7: the eight scales */
    __m256i pairs = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(sc8, sc8)); /* each scale twice */
    __m256i bias = _mm256_madd_epi16(pairs, _mm256_loadu_si256((const __m256i *)x->bsums));
    __m512i acc = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(bias, 7)));
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), biased_levels2(w->qs + 32 * p, table),
                                        load64(x->qs + 64 * p));
        __m512i pick = _mm512_inserti64x4(_mm512_set1_epi32(2 * p), _mm256_set1_epi32(2 * p + 1), 1);
        acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(s, _mm512_permutexvar_epi32(pick, sc32)));
    }
    return acc;
}

/* 16 lanes folded to 8. */
static inline __m256i fold512(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

float q3_iq4_xs_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_iq4_xs *bw = w;
    const q3_block_q8_k *bx = x;
    const __m512i table = biased_table();
    int64_t nb = n / Q3_QK_K, i = 0;
    float sum = 0;
    for (; i + 4 <= nb; i += 4) { /* four blocks' sums folded together, their tails side by side */
        __m256i s[4];
#pragma GCC unroll 4
        for (int b = 0; b < 4; b++) s[b] = fold512(iq4_xs_block(&bw[i + b], &bx[i + b], table));
        __m128 dx = _mm_setr_ps(bx[i].d, bx[i + 1].d, bx[i + 2].d, bx[i + 3].d);
        sum = q3_iqx_accumulate4(sum, dx, q3_iqx_halves4(&bw[i].d, sizeof *bw), q3_iqx_hsum4(s[0], s[1], s[2], s[3]));
    }
    for (; i < nb; i++)
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(bw[i].d), hsum512(iq4_xs_block(&bw[i], &bx[i], table)));
    return sum;
}

#endif
