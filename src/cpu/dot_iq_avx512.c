/* AVX-512 dot products of the i-quants (F/BW/VL/DQ + VNNI). Built with the AVX-512 flags (the
 * _avx512.c suffix) and only called when the CPU has them.
 *
 * The lattice types are dot_iq_x86.h's loops, shared with AVX2: a group of 32 weights per
 * 256-bit register (their cost is the gathering of grid entries by index, which wider registers
 * do not shorten); this file's primitives take what AVX-512 adds at that width: the activations are negated under a
 * 32-bit mask straight from the stored sign bits (or the sign indices' table bytes), and
 * vpdpwssd applies the multipliers and accumulates in one step. IQ4 uses the full width: its
 * levels are looked up biased by +128, so that vpdpbusd (unsigned x signed, four products into
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

/* ---- the primitives of dot_iq_x86.h's lattice loops: signs as a 32-bit mask of negations ---- */

/* v negated under the mask: a masked subtraction from zero. */
static inline __m256i q3_iqx_bits_signed(__m256i v, uint32_t bits) {
    return _mm256_mask_sub_epi8(v, (__mmask32)bits, _mm256_setzero_si256(), v);
}

/* The four runs' sign bytes (q3_iq_ksigns) as one 32-bit mask. */
static inline __m256i q3_iqx_ksigned(__m256i v, int s0, int s1, int s2, int s3) {
    uint32_t bits = (uint32_t)q3_iq_ksigns[s0] | (uint32_t)q3_iq_ksigns[s1] << 8 | (uint32_t)q3_iq_ksigns[s2] << 16 |
                    (uint32_t)q3_iq_ksigns[s3] << 24;
    return q3_iqx_bits_signed(v, bits);
}

/* vpdpwssd applies the multipliers and accumulates in one step. */
static inline __m256i q3_iqx_grid_dot(__m256i acc, __m256i grid, __m256i sy, __m256i scale16) {
    return _mm256_dpwssd_epi32(acc, _mm256_maddubs_epi16(grid, sy), scale16);
}

static inline __m256i q3_iqx_signed_dot(__m256i acc, __m256i v, const int8_t *y, __m256i scale16) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(q3_iqx_loadu(y), v));
    return _mm256_dpwssd_epi32(acc, p, scale16);
}

/* grid bytes -1, 0, 1 scaled by sign_epi8; the shift bytes +1, or -1 in the runs whose bit is
 * set in negative. */
static inline __m256i q3_iqx_iq1_eighths(__m256i grid, int negative) {
    __m256i minus = _mm256_movm_epi64((__mmask8)negative); /* 0xff bytes in the negative runs */
    __m256i shift = _mm256_sub_epi8(_mm256_xor_si256(_mm256_set1_epi8(1), minus), minus);
    return _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), grid), shift);
}

Q3_X86_IQ_LATTICE_DOTS(avx512)

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
        q3_x86_prefetch_ahead(bw + i, 4 * sizeof *bw);
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
