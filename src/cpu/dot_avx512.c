/* AVX-512 kernels (F, BW, VL, DQ and VNNI): the dot products of every weight type against its
 * activation type, and the Q8_0 / Q8_K activation quantizers. Built with the AVX-512 flags
 * (the _avx512.c suffix) and only called when the CPU has them.
 *
 * The K-quant kernels work on 64 weights per register: maddubs multiplies unsigned weight
 * levels by signed int8 activations into int16 pairs (which cannot saturate for these ranges)
 * and VNNI's dpwssd applies the sub-block scales, int16 x int16 pairs accumulated in int32.
 * Every integer sum is exact and each block ends with the reference's own float tail
 * (q3_kdot_accumulate), so the K-quant results equal the scalar ones to the bit. The 32-wide
 * formats put two blocks in a register (dpbusd: u8 x s8, four at a time, into int32) and, like
 * the float types, accumulate in vector lanes: another summation order, equal within rounding.
 * Q8_0 instead adds exact per-block sums in two float chains, the order its tile kernel
 * (gemm_avx512.c) shares.
 * BF16 weights are widened to f32 and FMA'd: dpbf16ps would round the activations to bf16
 * first, which is not the f32 math the reference (and transformers) does. */
#include "cpu/dot.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__)

#define Q3_X86_BITS 512
#include "cpu/dot_x86.h"

/* The loops over the parts of a block are unrolled (#pragma GCC unroll, which clang honours
 * too) so that their index is a constant in every shift count and shuffle control. */

/* ---- helpers ---- */

static inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

static inline __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline __m512i loadu512(const void *p) { return _mm512_loadu_si512(p); }

/* 32 bytes at p in the low half and 32 at q in the high half. */
static inline __m512i load_2x256(const void *p, const void *q) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(p)), loadu256(q), 1);
}

/* 16-bit lanes 0..15 (the low 256 bits) hold `low`, lanes 16..31 `high`. */
static inline __m512i halves_epi16(int low, int high) {
    return _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16((short)low), _mm512_set1_epi16((short)high));
}

/* Lane mask for the first k (0..16) of 16 lanes. */
static inline __mmask16 first_lanes(int64_t k) { return (__mmask16)((1u << k) - 1); }

/* ---- float types: the loop of dot_x86.h, a masked tail ---- */

/* 16 weights from element i (those of mask m) as f32. */
static inline __m512 widen_masked(const void *w, int64_t i, __mmask16 m, enum x86_float_kind kind) {
    if (kind == X86_F32) return _mm512_maskz_loadu_ps(m, (const float *)w + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i);
    if (kind == X86_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The tail goes into acc1, then one fixed reduction: the order the float tile kernels of
 * gemm_avx512.c follow. */
static inline float float_dot_end(int64_t n, int64_t i, const void *w, const float *x, enum x86_float_kind kind,
                                  __m512 acc0, __m512 acc1, __m512 acc2, __m512 acc3) {
    if (i < n) {
        __mmask16 m = first_lanes(n - i);
        acc1 = _mm512_fmadd_ps(widen_masked(w, i, m, kind), _mm512_maskz_loadu_ps(m, x + i), acc1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

float q3_f32_vec_dot_avx512(int64_t n, const void *w, const void *x) { return x86_float_dot(n, w, x, X86_F32); }
float q3_f16_vec_dot_avx512(int64_t n, const void *w, const void *x) { return x86_float_dot(n, w, x, X86_F16); }
float q3_bf16_vec_dot_avx512(int64_t n, const void *w, const void *x) { return x86_float_dot(n, w, x, X86_BF16); }

/* ---- the 32-wide formats: two blocks per register ---- */

/* Block i in the low 256 bits and block j in the high. The loops take blocks in pairs; an odd
 * last block pairs with itself (j == i), its second copy weighted 0. */
static inline __m512 pair_scale(float d0, float d1) {
    return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
}

/* acc + sum * (d0 | d1): one pair of blocks' int32 lanes and their combined scales. */
static inline __m512 scale_add(__m512i sum, float d0, float d1, __m512 acc) {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), pair_scale(d0, d1), acc);
}

/* sum w * x over int8 pairs, four at a time into 16 int32 lanes. dpbusd wants unsigned x
 * signed: |w| is unsigned (128 for -128 included) and x takes w's sign; x is never -128
 * (activations are quantized to -127..127), so negating it cannot overflow. */
static inline __m512i dot_i8x64(__m512i w, __m512i x) {
    __m512i x_signed = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), x_signed);
}

/* Q8_0 sums its blocks in an order the tile kernel (gemm_avx512.c) can follow for every (row,
 * token): each block's exact integer sum times (d_w * d_x), added to one of two float sums,
 * the even blocks' and the odd blocks' (two chains, not one: a single chain of dependent adds
 * would bound decode), and those two added at the end. The integer sums come four blocks at a
 * time: two dpbusd registers of two blocks each, eight lanes per block, folded to one lane per
 * block. */
static inline __m128i q8_0_block_sums4(__m512i s01, __m512i s23) {
    __m512i even = _mm512_shuffle_i32x4(s01, s23, _MM_SHUFFLE(1, 0, 1, 0)); /* blocks 0, 0, 2, 2 */
    __m512i odd = _mm512_shuffle_i32x4(s01, s23, _MM_SHUFFLE(3, 2, 3, 2));  /* blocks 1, 1, 3, 3 */
    __m512i t = _mm512_add_epi32(_mm512_shuffle_i32x4(even, odd, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_i32x4(even, odd, _MM_SHUFFLE(3, 1, 3, 1))); /* 0, 2, 1, 3 */
    t = _mm512_add_epi32(t, _mm512_shuffle_epi32(t, _MM_PERM_BADC));
    t = _mm512_add_epi32(t, _mm512_shuffle_epi32(t, _MM_PERM_CDAB));
    const __m512i firsts = _mm512_setr_epi32(0, 8, 4, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0); /* blocks 0 .. 3 */
    return _mm512_castsi512_si128(_mm512_permutexvar_epi32(firsts, t));
}

static inline int32_t q8_0_block_sum(const q3_block_q8_0 *w, const q3_block_q8_0 *x) {
    __m256i wq = loadu256(w->qs), xq = loadu256(x->qs);
    __m256i x_signed = _mm256_mask_sub_epi8(xq, _mm256_movepi8_mask(wq), _mm256_setzero_si256(), xq);
    __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(wq), x_signed);
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    return _mm_cvtsi128_si32(q3_x86_sum_pair(t, t));
}

float q3_q8_0_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q8_0 *bw = w, *bx = x;
    int64_t nb = n / Q3_QK, i = 0;
    float sum[2] = {0, 0}; /* even and odd blocks */
    for (; i + 4 <= nb; i += 4) {
        __m512i s01 = dot_i8x64(load_2x256(bw[i].qs, bw[i + 1].qs), load_2x256(bx[i].qs, bx[i + 1].qs));
        __m512i s23 = dot_i8x64(load_2x256(bw[i + 2].qs, bw[i + 3].qs), load_2x256(bx[i + 2].qs, bx[i + 3].qs));
        __m128 sums = _mm_cvtepi32_ps(q8_0_block_sums4(s01, s23));
        __m128 dw = _mm_cvtph_ps(_mm_setr_epi16((short)bw[i].d, (short)bw[i + 1].d, (short)bw[i + 2].d,
                                                (short)bw[i + 3].d, 0, 0, 0, 0));
        __m128 dx = _mm_cvtph_ps(_mm_setr_epi16((short)bx[i].d, (short)bx[i + 1].d, (short)bx[i + 2].d,
                                                (short)bx[i + 3].d, 0, 0, 0, 0));
        float terms[4];
        _mm_storeu_ps(terms, _mm_mul_ps(sums, _mm_mul_ps(dw, dx)));
        sum[0] += terms[0];
        sum[1] += terms[1];
        sum[0] += terms[2];
        sum[1] += terms[3];
    }
    for (; i < nb; i++)
        sum[i % 2] += (float)q8_0_block_sum(&bw[i], &bx[i]) * (half_to_float(bw[i].d) * half_to_float(bx[i].d));
    return sum[0] + sum[1];
}

/* Q8_0 blocks back to floats: attention reads a Q8_0 KV cache's value rows through this, every
 * cached value once a decoded token, so it runs at the rate the cache streams in. Each level times
 * its block's scale, one rounding, as the scalar reference does. */
void q3_q8_0_to_float_avx512(const void *src, float *dst, int64_t n) {
    const q3_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / Q3_QK; i++, dst += Q3_QK) {
        _mm_prefetch((const char *)&b[i] + Q3_X86_PREFETCH_AHEAD, _MM_HINT_T0);
        __m512 d = _mm512_set1_ps(half_to_float(b[i].d));
        __m256i q = loadu256(b[i].qs);
        __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q)));
        __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1)));
        _mm512_storeu_ps(dst, _mm512_mul_ps(lo, d));
        _mm512_storeu_ps(dst + 16, _mm512_mul_ps(hi, d));
    }
}

/* The 4-bit levels of two blocks in weight order (weight j in the low nibble of qs[j], j + 16
 * in the high nibble): block 0 in the low 256 bits, block 1 in the high. */
static inline __m512i nibbles_2x32(const uint8_t *qs0, const uint8_t *qs1) {
    const __m512i shifts = _mm512_mask_blend_epi16(0xFF00FF00u, _mm512_setzero_si512(), _mm512_set1_epi16(4));
    __m128i q0 = _mm_loadu_si128((const __m128i *)qs0), q1 = _mm_loadu_si128((const __m128i *)qs1);
    __m512i q = _mm512_inserti32x4(_mm512_castsi128_si512(q0), q0, 1);
    q = _mm512_inserti32x4(_mm512_inserti32x4(q, q1, 2), q1, 3);
    return _mm512_and_si512(_mm512_srlv_epi16(q, shifts), _mm512_set1_epi8(0x0F));
}

/* Adds 16 to the levels whose fifth bit is set: bit j of each block's 32-bit qh. */
static inline __m512i with_fifth_bits(__m512i levels, const uint8_t *qh0, const uint8_t *qh1) {
    uint32_t h0, h1;
    memcpy(&h0, qh0, 4);
    memcpy(&h1, qh1, 4);
    __mmask64 set = _cvtu64_mask64((uint64_t)h0 | (uint64_t)h1 << 32);
    return _mm512_mask_add_epi8(levels, set, levels, _mm512_set1_epi8(16));
}

/* sum level * x per 4 weights, in 16 int32 lanes; levels are unsigned. */
static inline __m512i level_dot(__m512i levels, __m512i x) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), levels, x);
}

/* sum (level - offset) * x: the offset's part is offset * sum(x), one more dpbusd. */
static inline __m512i offset_dot(__m512i levels, __m512i x, int offset) {
    __m512i x_sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)offset), x);
    return _mm512_sub_epi32(level_dot(levels, x), x_sum);
}

float q3_q4_0_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q4_0 *bw = w;
    const q3_block_q8_0 *bx = x;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0, nb = n / Q3_QK; i < nb; i += 2) {
        int64_t j = i + 1 < nb ? i + 1 : i;
        __m512i s = offset_dot(nibbles_2x32(bw[i].qs, bw[j].qs), load_2x256(bx[i].qs, bx[j].qs), 8);
        float d0 = half_to_float(bw[i].d) * half_to_float(bx[i].d);
        float d1 = j != i ? half_to_float(bw[j].d) * half_to_float(bx[j].d) : 0.0f;
        acc = scale_add(s, d0, d1, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

float q3_q5_0_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q5_0 *bw = w;
    const q3_block_q8_0 *bx = x;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0, nb = n / Q3_QK; i < nb; i += 2) {
        int64_t j = i + 1 < nb ? i + 1 : i;
        __m512i levels = with_fifth_bits(nibbles_2x32(bw[i].qs, bw[j].qs), bw[i].qh, bw[j].qh);
        __m512i s = offset_dot(levels, load_2x256(bx[i].qs, bx[j].qs), 16);
        float d0 = half_to_float(bw[i].d) * half_to_float(bx[i].d);
        float d1 = j != i ? half_to_float(bw[j].d) * half_to_float(bx[j].d) : 0.0f;
        acc = scale_add(s, d0, d1, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* x = d * q + m: d * dx * sum(q * y) in vector lanes, plus m * s (s = dx * sum(y), carried
 * by the Q8_1 block) per block. */
float q3_q4_1_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q4_1 *bw = w;
    const q3_block_q8_1 *bx = x;
    __m512 acc = _mm512_setzero_ps();
    float offsets = 0;
    for (int64_t i = 0, nb = n / Q3_QK; i < nb; i += 2) {
        int64_t j = i + 1 < nb ? i + 1 : i;
        __m512i s = level_dot(nibbles_2x32(bw[i].qs, bw[j].qs), load_2x256(bx[i].qs, bx[j].qs));
        float d0 = half_to_float(bw[i].d) * half_to_float(bx[i].d);
        float d1 = j != i ? half_to_float(bw[j].d) * half_to_float(bx[j].d) : 0.0f;
        acc = scale_add(s, d0, d1, acc);
        offsets += half_to_float(bw[i].m) * half_to_float(bx[i].s);
        if (j != i) offsets += half_to_float(bw[j].m) * half_to_float(bx[j].s);
    }
    return _mm512_reduce_add_ps(acc) + offsets;
}

float q3_q5_1_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q5_1 *bw = w;
    const q3_block_q8_1 *bx = x;
    __m512 acc = _mm512_setzero_ps();
    float offsets = 0;
    for (int64_t i = 0, nb = n / Q3_QK; i < nb; i += 2) {
        int64_t j = i + 1 < nb ? i + 1 : i;
        __m512i levels = with_fifth_bits(nibbles_2x32(bw[i].qs, bw[j].qs), bw[i].qh, bw[j].qh);
        __m512i s = level_dot(levels, load_2x256(bx[i].qs, bx[j].qs));
        float d0 = half_to_float(bw[i].d) * half_to_float(bx[i].d);
        float d1 = j != i ? half_to_float(bw[j].d) * half_to_float(bx[j].d) : 0.0f;
        acc = scale_add(s, d0, d1, acc);
        offsets += half_to_float(bw[i].m) * half_to_float(bx[i].s);
        if (j != i) offsets += half_to_float(bw[j].m) * half_to_float(bx[j].s);
    }
    return _mm512_reduce_add_ps(acc) + offsets;
}

/* ---- K-quants ---- */

/* The block's int32 lanes summed down to four. */
static inline __m128i fold_to_128(__m512i v) {
    __m256i half = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(half), _mm256_extracti128_si256(half, 1));
}

/* acc + levels (unsigned) times y, times the int16 scale of each pair of weights. */
static inline __m512i scaled_dot64(__m512i acc, __m512i levels, __m512i y, __m512i scales) {
    return _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(levels, y), scales);
}

/* Byte lanes 0..31 test bit `low`, lanes 32..63 bit `high`. */
static inline __m512i bit_select(int low, int high) {
    return _mm512_mask_blend_epi8(0xFFFFFFFF00000000ull, _mm512_set1_epi8((char)(1 << low)),
                                  _mm512_set1_epi8((char)(1 << high)));
}

/* Q4_K and Q5_K: 8 sub-blocks of 32 with unsigned 6-bit scales and mins. 64 bytes of qs
 * (64c .. 64c + 63) give the low-nibble register, weights 128c + 0..31 and 128c + 64..95
 * (sub-blocks 4c and 4c + 2), and the high-nibble one, 128c + 32..63 and 128c + 96..127
 * (4c + 1 and 4c + 3). */

/* The scales of sub-blocks a and b as the 32 int16 lanes that maddubs makes of one of those
 * registers (scale a in lanes 0..15, b in 16..31). scales: the block's unpacked bytes
 * (q3_x86_kscales) in every 128-bit lane, so an in-lane byte shuffle picks them, widening with
 * a zero byte: cheaper than a cross-lane permute of 16-bit lanes, four times a block. */
static inline __m512i kscale_pair(__m512i scales, int a, int b) {
    const __m512i pick = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16((short)(0x8000 | a)),
                                                 _mm512_set1_epi16((short)(0x8000 | b)));
    return _mm512_shuffle_epi8(scales, pick);
}

/* The activations in the order of the low- and high-nibble registers of chunk c. */
static inline __m512i k_activations_low(const int8_t *y, int c) {
    return load_2x256(y + 128 * c, y + 128 * c + 64);
}
static inline __m512i k_activations_high(const int8_t *y, int c) {
    return load_2x256(y + 128 * c + 32, y + 128 * c + 96);
}

/* The Q4_K / Q5_K block tail: the min term from the bsums, then the reference's float math. */
static inline float kquant_block_end(float sum, __m512i acc, __m128i scales_mins, const uint16_t *d_dmin,
                                     const q3_block_q8_k *x) {
    __m128i min_terms = q3_x86_kmin_terms(scales_mins, x->bsums);
    return q3_x86_kdot_tail(sum, x->d, d_dmin, q3_x86_sum_pair(fold_to_128(acc), min_terms));
}

/* The exact integer sum of levels x activations x scales of one Q4_K block, in 16 int32 lanes. */
static inline __m512i q4_k_block_sums(const q3_block_q4_k *w, const q3_block_q8_k *x, __m128i scales_mins) {
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    __m512i scales = _mm512_broadcast_i32x4(scales_mins);
    __m512i acc_low = _mm512_setzero_si512(), acc_high = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int c = 0; c < 2; c++) {
        __m512i q = loadu512(w->qs + 64 * c);
        __m512i low = _mm512_and_si512(q, nibble);
        __m512i high = _mm512_and_si512(_mm512_srli_epi16(q, 4), nibble);
        __m512i s_low = kscale_pair(scales, 4 * c, 4 * c + 2), s_high = kscale_pair(scales, 4 * c + 1, 4 * c + 3);
        acc_low = scaled_dot64(acc_low, low, k_activations_low(x->qs, c), s_low);
        acc_high = scaled_dot64(acc_high, high, k_activations_high(x->qs, c), s_high);
    }
    return _mm512_add_epi32(acc_low, acc_high);
}

/* q4_k_block_sums folded to four lanes: the primitive of dot_x86.h's Q4_K loops. */
static inline __attribute__((always_inline)) __m128i q4_k_block_folded(const q3_block_q4_k *w, const q3_block_q8_k *x, __m128i scales_mins) {
    return fold_to_128(q4_k_block_sums(w, x, scales_mins));
}

float q3_q4_k_vec_dot_avx512(int64_t n, const void *w, const void *x) { return q3_x86_q4_k_dot(n, w, x); }

void q3_q4_k_vec_dot_rows_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out) {
    q3_x86_q4_k_dot_rows(n, w, w_stride, nr, x, out, q3_q4_k_vec_dot_avx512);
}

/* The fifth bit of Q5_K weight e is bit e / 32 of qh[e % 32]. */
float q3_q5_k_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q5_k *bw = w;
    const q3_block_q8_k *bx = x;
    const __m512i nibble = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16);
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        __m128i scales_mins = q3_x86_kscales(bw[i].scales);
        __m512i scales = _mm512_broadcast_i32x4(scales_mins);
        __m512i qh = _mm512_broadcast_i64x4(loadu256(bw[i].qh));
        __m512i acc_low = _mm512_setzero_si512(), acc_high = _mm512_setzero_si512();
#pragma GCC unroll 2
        for (int c = 0; c < 2; c++) {
            __m512i q = loadu512(bw[i].qs + 64 * c);
            __m512i low = _mm512_and_si512(q, nibble);
            __m512i high = _mm512_and_si512(_mm512_srli_epi16(q, 4), nibble);
            __mmask64 low_bits = _mm512_test_epi8_mask(qh, bit_select(4 * c, 4 * c + 2));
            __mmask64 high_bits = _mm512_test_epi8_mask(qh, bit_select(4 * c + 1, 4 * c + 3));
            low = _mm512_mask_add_epi8(low, low_bits, low, sixteen);
            high = _mm512_mask_add_epi8(high, high_bits, high, sixteen);
            __m512i s_low = kscale_pair(scales, 4 * c, 4 * c + 2), s_high = kscale_pair(scales, 4 * c + 1, 4 * c + 3);
            acc_low = scaled_dot64(acc_low, low, k_activations_low(bx[i].qs, c), s_low);
            acc_high = scaled_dot64(acc_high, high, k_activations_high(bx[i].qs, c), s_high);
        }
        sum = kquant_block_end(sum, _mm512_add_epi32(acc_low, acc_high), scales_mins, &bw[i].d, &bx[i]);
    }
    return sum;
}

/* Q6_K, Q3_K, Q2_K: 16 sub-blocks of 16 weights, registers of 64 consecutive weights (half h,
 * part p: weights 128h + 64p .. + 63, sub-blocks 8h + 4p .. + 3). */

/* Lane k of 32 int16 lanes -> k / 8: the four 16-wide sub-blocks of a register, each 8 int16
 * lanes of maddubs. */
static const int16_t LANE_SUB_BLOCK[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                           2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};

/* The scales of sub-blocks first .. first + 3 (of 16 int16 in the low half of `scales16`)
 * over the 32 int16 lanes of a register. */
static inline __m512i scales_for_lanes(__m512i scales16, int first) {
    __m512i idx = _mm512_add_epi16(loadu512(LANE_SUB_BLOCK), _mm512_set1_epi16((short)first));
    return _mm512_permutexvar_epi16(idx, scales16);
}

/* The block's sum of scale * level * y, minus offset * sum(scale * bsums): these kernels
 * multiply level + offset (unsigned, as maddubs needs) and correct by the same integer. */
static inline __m128i offset_corrected4(__m512i acc, __m256i scales16, const int16_t *bsums, int offset) {
    __m256i correction = _mm256_madd_epi16(scales16, loadu256(bsums));
    __m128i c4 = _mm_add_epi32(_mm256_castsi256_si128(correction), _mm256_extracti128_si256(correction, 1));
    return _mm_sub_epi32(fold_to_128(acc), _mm_mullo_epi32(c4, _mm_set1_epi32(offset)));
}

static inline int32_t offset_corrected(__m512i acc, __m256i scales16, const int16_t *bsums, int offset) {
    __m128i s = offset_corrected4(acc, scales16, bsums, offset);
    return _mm_cvtsi128_si32(q3_x86_sum_pair(s, s));
}

/* Q6_K levels are 0..63 with x = d * sc * (q - 32). ql[64h .. 64h + 63] holds weights
 * 128h + 0..63 in its low nibbles and 128h + 64..127 in its high nibbles; the top two bits of
 * weights l, l + 32 (low-nibble register) and l + 64, l + 96 (high) sit in bit pairs 0, 1, 2, 3
 * of qh[32h + l]. Word shifts move each pair to bits 4-5; the 0x30 mask drops what crosses
 * between the bytes of a word. */
/* The block's four int32 lanes of sum(scale * level * y) - 32 * sum(scale * bsums). */
static inline __attribute__((always_inline)) __m128i q6_k_block_folded(const q3_block_q6_k *b, const q3_block_q8_k *x) {
    const __m512i nibble = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8(0x30);
    const __m512i shift_low = halves_epi16(4, 2), shift_high = halves_epi16(0, 2);
    __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    __m512i sc512 = _mm512_castsi256_si512(sc16), acc = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m512i ql = loadu512(b->ql + 64 * h);
        __m512i qh = _mm512_broadcast_i64x4(loadu256(b->qh + 32 * h));
        __m512i low = _mm512_and_si512(ql, nibble);
        __m512i high = _mm512_and_si512(_mm512_srli_epi16(ql, 4), nibble);
        low = _mm512_or_si512(low, _mm512_and_si512(_mm512_sllv_epi16(qh, shift_low), top));
        high = _mm512_or_si512(high, _mm512_and_si512(_mm512_srlv_epi16(qh, shift_high), top));
        const int8_t *y = x->qs + 128 * h;
        acc = scaled_dot64(acc, low, loadu512(y), scales_for_lanes(sc512, 8 * h));
        acc = scaled_dot64(acc, high, loadu512(y + 64), scales_for_lanes(sc512, 8 * h + 4));
    }
    return offset_corrected4(acc, sc16, x->bsums, 32);
}

float q3_q6_k_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q6_k *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        q3_x86_prefetch_ahead(bw + i, sizeof *bw);
        __m128i s = q6_k_block_folded(&bw[i], &bx[i]);
        int32_t sum_qy = _mm_cvtsi128_si32(q3_x86_sum_pair(s, s));
        sum = q3_kdot_accumulate(sum, bx[i].d, half_to_float(bw[i].d), 0, sum_qy, 0);
    }
    return sum;
}

static inline __attribute__((always_inline)) void q6_k_terms(const void *w, const q3_block_q8_k *x, __m128i *qy,
                                                             __m128i *my) {
    *qy = q6_k_block_folded(w, x);
    *my = _mm_setzero_si128();
}

void q3_q6_k_vec_dot_rows_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out) {
    q3_x86_k_dot_rows(n, w, w_stride, nr, x, out, sizeof(q3_block_q6_k), offsetof(q3_block_q6_k, d), false, q6_k_terms,
                      q3_q6_k_vec_dot_avx512);
}

/* The 2-bit levels of Q2_K / Q3_K weights 128h + 64p + 0..63 from the 32 bytes q (broadcast
 * to both halves): bit pairs 2p and 2p + 1, one per half. */
static inline __m512i two_bit_levels(__m512i q, int p) {
    __m512i shifts = p ? halves_epi16(4, 6) : halves_epi16(0, 2);
    return _mm512_and_si512(_mm512_srlv_epi16(q, shifts), _mm512_set1_epi8(3));
}

/* Q2_K: 4-bit scales (low nibble) and mins (high nibble) per 16 weights. */
float q3_q2_k_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q2_k *bw = w;
    const q3_block_q8_k *bx = x;
    const __m128i nibble = _mm_set1_epi8(0x0F);
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        __m128i packed = _mm_loadu_si128((const __m128i *)bw[i].scales);
        __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, nibble));
        __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), nibble));
        __m512i sc512 = _mm512_castsi256_si512(sc16), acc = _mm512_setzero_si512();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512i q = _mm512_broadcast_i64x4(loadu256(bw[i].qs + 32 * h));
            const int8_t *y = bx[i].qs + 128 * h;
            acc = scaled_dot64(acc, two_bit_levels(q, 0), loadu512(y), scales_for_lanes(sc512, 8 * h));
            acc = scaled_dot64(acc, two_bit_levels(q, 1), loadu512(y + 64), scales_for_lanes(sc512, 8 * h + 4));
        }
        __m256i min_terms = _mm256_madd_epi16(m16, loadu256(bx[i].bsums));
        __m128i m4 = _mm_add_epi32(_mm256_castsi256_si128(min_terms), _mm256_extracti128_si256(min_terms, 1));
        sum = q3_x86_kdot_tail(sum, bx[i].d, &bw[i].d, q3_x86_sum_pair(fold_to_128(acc), m4));
    }
    return sum;
}

/* Q3_K: levels -4..3 are the two low bits (as Q2_K) minus 4 where the hmask bit (bit e / 32
 * of hmask[e % 32]) is clear. The kernel multiplies level + 4 (the low bits, plus 4 where the
 * bit is set) and corrects by 4 * sum(sc * bsums). */
float q3_q3_k_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q3_k *bw = w;
    const q3_block_q8_k *bx = x;
    const __m512i four = _mm512_set1_epi8(4);
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(q3_x86_q3k_scales(bw[i].scales));
        __m512i sc512 = _mm512_castsi256_si512(sc16), acc = _mm512_setzero_si512();
        __m512i hmask = _mm512_broadcast_i64x4(loadu256(bw[i].hmask));
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512i q = _mm512_broadcast_i64x4(loadu256(bw[i].qs + 32 * h));
            __m512i low = two_bit_levels(q, 0), high = two_bit_levels(q, 1);
            __mmask64 low_set = _mm512_test_epi8_mask(hmask, bit_select(4 * h, 4 * h + 1));
            __mmask64 high_set = _mm512_test_epi8_mask(hmask, bit_select(4 * h + 2, 4 * h + 3));
            low = _mm512_mask_add_epi8(low, low_set, low, four);
            high = _mm512_mask_add_epi8(high, high_set, high, four);
            const int8_t *y = bx[i].qs + 128 * h;
            acc = scaled_dot64(acc, low, loadu512(y), scales_for_lanes(sc512, 8 * h));
            acc = scaled_dot64(acc, high, loadu512(y + 64), scales_for_lanes(sc512, 8 * h + 4));
        }
        int32_t sum_qy = offset_corrected(acc, sc16, bx[i].bsums, 4);
        sum = q3_kdot_accumulate(sum, bx[i].d, half_to_float(bw[i].d), 0, sum_qy, 0);
    }
    return sum;
}

/* ---- activation quantizers: the loops of dot_x86.h ---- */

static inline void store_i8x32(int8_t *dst, const __m512i *q) {
    _mm_storeu_si128((__m128i *)dst, _mm512_cvtsepi32_epi8(q[0]));
    _mm_storeu_si128((__m128i *)(dst + 16), _mm512_cvtsepi32_epi8(q[1]));
}

void q3_q8_0_from_float_avx512(const float *src, void *dst, int64_t n) { x86_q8_0_from_float(src, dst, n); }
void q3_q8_k_from_float_avx512(const float *src, void *dst, int64_t n) { x86_q8_k_from_float(src, dst, n); }

#else
typedef int q3_dot_avx512_unused; /* ISO C wants a declaration in every translation unit */
#endif
