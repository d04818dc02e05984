/* AVX2 dot products of the i-quants against their activations (Q8_K; IQ4_NL: Q8_0). Built with
 * -mavx2 -mfma -mf16c (the _avx2.c suffix) and only called when the CPU has them.
 *
 * A group of 32 weights becomes one register of 32 bytes: grid entries gathered by index (the
 * lattice types; their signs go onto the activations, y ^ m - m) or table lookups of 4-bit
 * indices (IQ4). maddubs multiplies unsigned weight bytes by signed activations into int16
 * pairs (at most 62 * 127 * 2 or, for IQ4's |level| <= 127, 127 * 127 * 2: no saturation), and
 * madd applies the group's integer multiplier into int32. Every block sum is the exact integer
 * the reference computes, and the float tail is the reference's expression, so each result
 * equals the scalar one to the bit. (Activations are -127..127; a -128 could not be negated.) */
#include "cpu/dot.h"

#ifdef __AVX2__

#include "cpu/dot_iq_x86.h"
#include "cpu/prefetch_x86.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* keep the per-block float math identical to the reference */
#endif

/* sum |grid| * (signed y) over 32 weights times an int16 multiplier per 16, as 8 int32 lanes. */
static inline __m256i grid_dot(__m256i grid, __m256i masks, const int8_t *y, __m256i scale16) {
    __m256i p = _mm256_maddubs_epi16(grid, q3_iqx_apply_signs(q3_iqx_loadu(y), masks));
    return _mm256_madd_epi16(p, scale16);
}

/* sum v * y over 32 signed weight bytes v (|v| <= 127) times the multipliers, as 8 int32 lanes. */
static inline __m256i signed_dot(__m256i v, __m256i y, __m256i scale16) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(y, v));
    return _mm256_madd_epi16(p, scale16);
}

/* ---- IQ2_XXS, IQ2_XS, IQ2_S ---- */

static inline int32_t iq2_xxs_block(const q3_block_iq2_xxs *w, const q3_block_q8_k *x) {
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int g = 0; g < 8; g++) {
        uint32_t words[2];
        memcpy(words, w->qs + 4 * g, 8);
        const uint8_t *idx = (const uint8_t *)&words[0];
        __m256i grid = q3_iqx_gather4(q3_iq2xxs_grid, idx[0], idx[1], idx[2], idx[3]);
        int m = (int)(2 * (words[1] >> 28) + 1);
        acc = _mm256_add_epi32(acc, grid_dot(grid, q3_iqx_ksign_masks(words[1]), x->qs + 32 * g, _mm256_set1_epi16((short)m)));
    }
    return q3_iqx_hsum(acc);
}

float q3_iq2_xxs_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_iq2_xxs *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        q3_x86_prefetch_ahead(bw + i, sizeof *bw);
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(bw[i].d), iq2_xxs_block(&bw[i], &bx[i]));
    }
    return 0.125f * sum;
}

static inline __m256i nibble_scales(const uint8_t *scales, int g) {
    return q3_iqx_scale_pair(2 * (scales[g] & 0xf) + 1, 2 * (scales[g] >> 4) + 1);
}

static inline int32_t iq2_xs_block(const q3_block_iq2_xs *w, const q3_block_q8_k *x) {
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int g = 0; g < 8; g++) {
        const uint16_t *q = w->qs + 4 * g;
        __m256i grid = q3_iqx_gather4(q3_iq2xs_grid, q[0] & 511, q[1] & 511, q[2] & 511, q[3] & 511);
        __m256i masks = q3_iqx_gather4(q3_iq_ksign_masks, q[0] >> 9, q[1] >> 9, q[2] >> 9, q[3] >> 9);
        acc = _mm256_add_epi32(acc, grid_dot(grid, masks, x->qs + 32 * g, nibble_scales(w->scales, g)));
    }
    return q3_iqx_hsum(acc);
}

float q3_iq2_xs_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_iq2_xs *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        q3_x86_prefetch_ahead(bw + i, sizeof *bw);
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(bw[i].d), iq2_xs_block(&bw[i], &bx[i]));
    }
    return 0.125f * sum;
}

static inline int32_t iq2_s_block(const q3_block_iq2_s *w, const q3_block_q8_k *x) {
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int g = 0; g < 8; g++) {
        const uint8_t *q = w->qs + 4 * g;
        int h = w->qh[g];
        __m256i grid = q3_iqx_gather4(q3_iq2s_grid, q[0] | (h & 3) << 8, q[1] | (h & 0xc) << 6, q[2] | (h & 0x30) << 4,
                                      q[3] | (h & 0xc0) << 2);
        __m256i masks = q3_iqx_sign_bits(w->qs + 32 + 4 * g);
        acc = _mm256_add_epi32(acc, grid_dot(grid, masks, x->qs + 32 * g, nibble_scales(w->scales, g)));
    }
    return q3_iqx_hsum(acc);
}

float q3_iq2_s_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_iq2_s *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        q3_x86_prefetch_ahead(bw + i, sizeof *bw);
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(bw[i].d), iq2_s_block(&bw[i], &bx[i]));
    }
    return 0.125f * sum;
}

/* ---- IQ3_XXS, IQ3_S ---- */

static inline int32_t iq3_xxs_block(const q3_block_iq3_xxs *w, const q3_block_q8_k *x) {
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int g = 0; g < 8; g++) {
        const uint8_t *q = w->qs + 8 * g;
        uint32_t word;
        memcpy(&word, w->qs + Q3_QK_K / 4 + 4 * g, 4);
        int idx[8] = {q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]};
        __m256i grid = q3_iqx_gather8(q3_iq3xxs_grid, idx);
        int m = (int)(2 * (word >> 28) + 1);
        acc = _mm256_add_epi32(acc, grid_dot(grid, q3_iqx_ksign_masks(word), x->qs + 32 * g, _mm256_set1_epi16((short)m)));
    }
    return q3_iqx_hsum(acc);
}

float q3_iq3_xxs_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_iq3_xxs *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        q3_x86_prefetch_ahead(bw + i, sizeof *bw);
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(bw[i].d), iq3_xxs_block(&bw[i], &bx[i]));
    }
    return 0.25f * sum;
}

static inline int32_t iq3_s_block(const q3_block_iq3_s *w, const q3_block_q8_k *x) {
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int g = 0; g < 8; g++) {
        const uint8_t *q = w->qs + 8 * g;
        int h = w->qh[g], idx[8];
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) idx[u] = q[u] | ((h >> u) & 1) << 8;
        __m256i grid = q3_iqx_gather8(q3_iq3s_grid, idx);
        int m = 2 * ((w->scales[g / 2] >> 4 * (g % 2)) & 0xf) + 1;
        acc = _mm256_add_epi32(acc, grid_dot(grid, q3_iqx_sign_bits(w->signs + 4 * g), x->qs + 32 * g,
                                             _mm256_set1_epi16((short)m)));
    }
    return q3_iqx_hsum(acc);
}

float q3_iq3_s_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_iq3_s *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        q3_x86_prefetch_ahead(bw + i, sizeof *bw);
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(bw[i].d), iq3_s_block(&bw[i], &bx[i]));
    }
    return sum;
}

/* ---- IQ1_S, IQ1_M: weights in eighths, 8 * grid +- 1 ---- */

/* 8 * grid + shift for four runs: grid bytes -1, 0, 1 scaled by sign_epi8, the shift bytes +-1. */
static inline __m256i iq1_eighths(__m256i grid, __m256i shift) {
    return _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), grid), shift);
}

static inline int32_t iq1_s_block(const q3_block_iq1_s *w, const q3_block_q8_k *x) {
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int g = 0; g < 8; g++) {
        const uint8_t *q = w->qs + 4 * g;
        int h = w->qh[g];
        __m256i grid = q3_iqx_gather4(q3_iq1s_grid, q[0] | (h & 7) << 8, q[1] | (h & 0x38) << 5,
                                      q[2] | (h & 0x1c0) << 2, q[3] | (h & 0xe00) >> 1);
        __m256i v = iq1_eighths(grid, _mm256_set1_epi8(h & 0x8000 ? -1 : 1));
        int m = 2 * ((h >> 12) & 7) + 1;
        acc = _mm256_add_epi32(acc, signed_dot(v, q3_iqx_loadu(x->qs + 32 * g), _mm256_set1_epi16((short)m)));
    }
    return q3_iqx_hsum(acc);
}

float q3_iq1_s_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_iq1_s *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        q3_x86_prefetch_ahead(bw + i, sizeof *bw);
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(bw[i].d), iq1_s_block(&bw[i], &bx[i]));
    }
    return 0.125f * sum;
}

static inline int32_t iq1_m_block(const q3_block_iq1_m *w, const q3_block_q8_k *x) {
    uint64_t words;
    memcpy(&words, w->scales, 8);
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int g = 0; g < 8; g++) {
        const uint8_t *q = w->qs + 4 * g;
        int h0 = w->qh[2 * g], h1 = w->qh[2 * g + 1];
        __m256i grid = q3_iqx_gather4(q3_iq1s_grid, q[0] | (h0 & 7) << 8, q[1] | (h0 & 0x70) << 4, q[2] | (h1 & 7) << 8,
                                      q[3] | (h1 & 0x70) << 4);
        __m256i shift = _mm256_setr_epi64x(h0 & 0x08 ? -1 : 0x0101010101010101, h0 & 0x80 ? -1 : 0x0101010101010101,
                                           h1 & 0x08 ? -1 : 0x0101010101010101, h1 & 0x80 ? -1 : 0x0101010101010101);
        int k = (int)(words >> (16 * (g / 2) + 6 * (g % 2)));
        __m256i scales = q3_iqx_scale_pair(2 * (k & 7) + 1, 2 * ((k >> 3) & 7) + 1);
        acc = _mm256_add_epi32(acc, signed_dot(iq1_eighths(grid, shift), q3_iqx_loadu(x->qs + 32 * g), scales));
    }
    return q3_iqx_hsum(acc);
}

float q3_iq1_m_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_iq1_m *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        q3_x86_prefetch_ahead(bw + i, sizeof *bw);
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(q3_iq1m_d(&bw[i])), iq1_m_block(&bw[i], &bx[i]));
    }
    return 0.125f * sum;
}

/* ---- IQ4_NL (against Q8_0), IQ4_XS ---- */

static inline __m256i iq4_levels(const uint8_t *qs, __m256i table) {
    return _mm256_shuffle_epi8(table, q3_iqx_iq4_indices(qs));
}

float q3_iq4_nl_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_iq4_nl *bw = w;
    const q3_block_q8_0 *bx = x;
    const __m256i table = q3_iqx_iq4_table(), ones = _mm256_set1_epi16(1);
    int64_t nb = n / Q3_QK, i = 0;
    float sum = 0;
    for (; i + 4 <= nb; i += 4) {
        __m256i s[4];
#pragma GCC unroll 4
        for (int b = 0; b < 4; b++) s[b] = signed_dot(iq4_levels(bw[i + b].qs, table), q3_iqx_loadu(bx[i + b].qs), ones);
        sum = q3_iqx_accumulate4(sum, q3_iqx_halves4(&bx[i].d, sizeof *bx), q3_iqx_halves4(&bw[i].d, sizeof *bw),
                                 q3_iqx_hsum4(s[0], s[1], s[2], s[3]));
    }
    for (; i < nb; i++)
        sum = q3_iq_accumulate(sum, _cvtsh_ss(bx[i].d), _cvtsh_ss(bw[i].d),
                               q3_iqx_hsum(signed_dot(iq4_levels(bw[i].qs, table), q3_iqx_loadu(bx[i].qs), ones)));
    return sum;
}

/* A block's exact sum of scale_j * level * y in 8 int32 lanes. Two sub-blocks at a time: the
 * low nibbles of their 32 bytes are weights 0-15 of each, the high nibbles weights 16-31, and the
 * activations are regrouped to match ([0-15 of both], [16-31 of both]); one int16 register holds
 * both sub-blocks' scales, one per 128-bit lane. */
static inline __m256i iq4_xs_block(const q3_block_iq4_xs *w, const q3_block_q8_k *x, __m256i table) {
    __m128i sc8 = _mm_sub_epi8(_mm_cvtsi64_si128((long long)q3_iqx_iq4xs_scales(w)), _mm_set1_epi8(32));
    __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(sc8)); /* the 8 scales, in both lanes */
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        __m256i q = q3_iqx_loadu(w->qs + 32 * p);
        __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(q, _mm256_set1_epi8(0x0f)));
        __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q, 4), _mm256_set1_epi8(0x0f)));
        __m256i y0 = q3_iqx_loadu(x->qs + 64 * p), y1 = q3_iqx_loadu(x->qs + 64 * p + 32);
        /* int16 lanes of scale 2p in the low half, 2p + 1 in the high half */
        __m256i pick = _mm256_setr_epi8(4 * p, 4 * p + 1, 4 * p, 4 * p + 1, 4 * p, 4 * p + 1, 4 * p, 4 * p + 1, 4 * p,
                                        4 * p + 1, 4 * p, 4 * p + 1, 4 * p, 4 * p + 1, 4 * p, 4 * p + 1, 4 * p + 2,
                                        4 * p + 3, 4 * p + 2, 4 * p + 3, 4 * p + 2, 4 * p + 3, 4 * p + 2, 4 * p + 3,
                                        4 * p + 2, 4 * p + 3, 4 * p + 2, 4 * p + 3, 4 * p + 2, 4 * p + 3, 4 * p + 2,
                                        4 * p + 3);
        __m256i scale = _mm256_shuffle_epi8(sc16, pick);
        acc = _mm256_add_epi32(acc, signed_dot(lo, _mm256_permute2x128_si256(y0, y1, 0x20), scale));
        acc = _mm256_add_epi32(acc, signed_dot(hi, _mm256_permute2x128_si256(y0, y1, 0x31), scale));
    }
    return acc;
}

float q3_iq4_xs_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_iq4_xs *bw = w;
    const q3_block_q8_k *bx = x;
    const __m256i table = q3_iqx_iq4_table();
    int64_t nb = n / Q3_QK_K, i = 0;
    float sum = 0;
    for (; i + 4 <= nb; i += 4) { /* four blocks' sums folded together, their tails side by side */
        q3_x86_prefetch_ahead(bw + i, 4 * sizeof *bw);
        __m256i s[4];
#pragma GCC unroll 4
        for (int b = 0; b < 4; b++) s[b] = iq4_xs_block(&bw[i + b], &bx[i + b], table);
        __m128 dx = _mm_setr_ps(bx[i].d, bx[i + 1].d, bx[i + 2].d, bx[i + 3].d);
        sum = q3_iqx_accumulate4(sum, dx, q3_iqx_halves4(&bw[i].d, sizeof *bw), q3_iqx_hsum4(s[0], s[1], s[2], s[3]));
    }
    for (; i < nb; i++)
        sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(bw[i].d), q3_iqx_hsum(iq4_xs_block(&bw[i], &bx[i], table)));
    return sum;
}

#endif
