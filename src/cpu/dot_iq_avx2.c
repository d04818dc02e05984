/* AVX2 dot products of the i-quants against their activations (Q8_K; IQ4_NL: Q8_0). Built with
 * -mavx2 -mfma -mf16c (the _avx2.c suffix) and only called when the CPU has them.
 *
 * A group of 32 weights becomes one register of 32 bytes: grid entries gathered by index (the
 * lattice types; their signs go onto the activations, y ^ m - m) or table lookups of 4-bit
 * indices (IQ4). maddubs multiplies unsigned weight bytes by signed activations into int16
 * pairs (at most 62 * 127 * 2 or, for IQ4's |level| <= 127, 127 * 127 * 2: no saturation), and
 * madd applies the group's integer multiplier into int32. Every block sum is the exact integer
 * the reference computes, and the float tail is the reference's expression, so each result
 * equals the scalar one to the bit. (Activations are -127..127; a -128 could not be negated.)
 * The lattice types' loops are dot_iq_x86.h's, over this file's primitives; IQ4 is here. */
#include "cpu/dot.h"

#ifdef __AVX2__

#include "cpu/dot_iq_x86.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* keep the per-block float math identical to the reference */
#endif

/* sum v * y over 32 signed weight bytes v (|v| <= 127) times the multipliers, as 8 int32 lanes. */
static inline __m256i signed_dot(__m256i v, __m256i y, __m256i scale16) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(y, v));
    return _mm256_madd_epi16(p, scale16);
}

/* ---- the primitives of dot_iq_x86.h's lattice loops: signs as 0xff byte masks, y ^ m - m ---- */

static inline __m256i q3_iqx_ksigned(__m256i v, int s0, int s1, int s2, int s3) {
    return q3_iqx_apply_signs(v, q3_iqx_gather4(q3_iq_ksign_masks, s0, s1, s2, s3));
}

static inline __m256i q3_iqx_bits_signed(__m256i v, uint32_t bits) { return q3_iqx_apply_signs(v, q3_iqx_sign_bits(bits)); }

static inline __m256i q3_iqx_grid_dot(__m256i acc, __m256i grid, __m256i sy, __m256i scale16) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(grid, sy), scale16));
}

static inline __m256i q3_iqx_signed_dot(__m256i acc, __m256i v, const int8_t *y, __m256i scale16) {
    return _mm256_add_epi32(acc, signed_dot(v, q3_iqx_loadu(y), scale16));
}

/* grid bytes -1, 0, 1 scaled by sign_epi8; the shift bytes +1, or -1 where a run's bit is set. */
static inline __m256i q3_iqx_iq1_eighths(__m256i grid, int negative) {
    const __m256i run_bit = _mm256_setr_epi64x(1, 2, 4, 8);
    __m256i minus = _mm256_cmpeq_epi64(_mm256_and_si256(_mm256_set1_epi64x(negative), run_bit), run_bit);
    __m256i shift = _mm256_sub_epi8(_mm256_xor_si256(_mm256_set1_epi8(1), minus), minus);
    return _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), grid), shift);
}

Q3_X86_IQ_LATTICE_DOTS(avx2)

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
