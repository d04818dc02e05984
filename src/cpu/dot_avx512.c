/* AVX-512 kernels (F, BW, VL, DQ and VNNI): the float dot products, the integer dot products of
 * Q8_0 and the K-quants Q4_K, Q5_K, Q6_K against their activation types, and the Q8_0 / Q8_K
 * activation quantizers. Built with the AVX-512 flags (the _avx512.c suffix) and only called
 * when the CPU has them.
 *
 * The K-quant kernels work on 64 weights per register. maddubs multiplies unsigned weight
 * levels by signed int8 activations into int16 pairs (which cannot saturate for these ranges)
 * and VNNI's dpwssd applies the sub-block scales, int16 x int16 pairs accumulated in int32.
 * Every integer sum is exact and the per-block float tail is the reference's own
 * (q3_kdot_accumulate), so the K-quant results equal the scalar ones to the bit. Q8_0 uses
 * dpbusd on two blocks per register and accumulates in vector lanes, so it agrees within
 * rounding. BF16 weights are widened to f32 and FMA'd: dpbf16ps would round the activations to
 * bf16 first, which is not the f32 math the reference (and transformers) does. */
#include "cpu/dot.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__)

#include "cpu/dot_x86.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* keep the per-block float math identical to the reference */
#endif

/* ---- helpers ---- */

static inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

static inline __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline __m512i loadu512(const void *p) { return _mm512_loadu_si512(p); }

/* 32 bytes at p in the low half and 32 at q in the high half. */
static inline __m512i load_2x256(const void *p, const void *q) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(p)), loadu256(q), 1);
}

/* Lane mask for the first k (0..16) of 16 lanes. */
static inline __mmask16 first_lanes(int64_t k) { return (__mmask16)((1u << k) - 1); }

/* ---- float types: sixteen lanes, four accumulators, a masked tail ---- */

float q3_f32_vec_dot_avx512(int64_t n, const void *w, const void *xv) {
    const float *a = w, *x = xv;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(x + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(x + i + 16), acc1);
        acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(x + i + 32), acc2);
        acc3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(x + i + 48), acc3);
    }
    for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(x + i), acc0);
    if (i < n) {
        __mmask16 m = first_lanes(n - i);
        acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, x + i), acc1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

static inline __m512 load_f16x16(const uint16_t *p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

float q3_f16_vec_dot_avx512(int64_t n, const void *w, const void *xv) {
    const uint16_t *a = w;
    const float *x = xv;
    const __mmask16 all = 0xFFFF;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        acc0 = _mm512_fmadd_ps(load_f16x16(a + i, all), _mm512_loadu_ps(x + i), acc0);
        acc1 = _mm512_fmadd_ps(load_f16x16(a + i + 16, all), _mm512_loadu_ps(x + i + 16), acc1);
        acc2 = _mm512_fmadd_ps(load_f16x16(a + i + 32, all), _mm512_loadu_ps(x + i + 32), acc2);
        acc3 = _mm512_fmadd_ps(load_f16x16(a + i + 48, all), _mm512_loadu_ps(x + i + 48), acc3);
    }
    for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(load_f16x16(a + i, all), _mm512_loadu_ps(x + i), acc0);
    if (i < n) {
        __mmask16 m = first_lanes(n - i);
        acc1 = _mm512_fmadd_ps(load_f16x16(a + i, m), _mm512_maskz_loadu_ps(m, x + i), acc1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

/* bf16 is the top half of an f32: widen by a 16-bit shift. */
static inline __m512 load_bf16x16(const uint16_t *p, __mmask16 m) {
    __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}

float q3_bf16_vec_dot_avx512(int64_t n, const void *w, const void *xv) {
    const uint16_t *a = w;
    const float *x = xv;
    const __mmask16 all = 0xFFFF;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        acc0 = _mm512_fmadd_ps(load_bf16x16(a + i, all), _mm512_loadu_ps(x + i), acc0);
        acc1 = _mm512_fmadd_ps(load_bf16x16(a + i + 16, all), _mm512_loadu_ps(x + i + 16), acc1);
        acc2 = _mm512_fmadd_ps(load_bf16x16(a + i + 32, all), _mm512_loadu_ps(x + i + 32), acc2);
        acc3 = _mm512_fmadd_ps(load_bf16x16(a + i + 48, all), _mm512_loadu_ps(x + i + 48), acc3);
    }
    for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(load_bf16x16(a + i, all), _mm512_loadu_ps(x + i), acc0);
    if (i < n) {
        __mmask16 m = first_lanes(n - i);
        acc1 = _mm512_fmadd_ps(load_bf16x16(a + i, m), _mm512_maskz_loadu_ps(m, x + i), acc1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

/* ---- Q8_0 ---- */

/* sum w * x over int8 pairs, four at a time into 16 int32 lanes. dpbusd wants unsigned x
 * signed: |w| is unsigned (128 for -128 included) and x takes w's sign; x is never -128
 * (activations are quantized to -127..127), so negating it cannot overflow. */
static inline __m512i dot_i8x64(__m512i w, __m512i x) {
    __m512i x_signed = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), x_signed);
}

/* Two blocks per register: block i in the low 256 bits, i + 1 in the high. */
static inline __m512 q8_0_pair(const q3_block_q8_0 *bw, const q3_block_q8_0 *bx, __m512 acc) {
    __m512i s = dot_i8x64(load_2x256(bw[0].qs, bw[1].qs), load_2x256(bx[0].qs, bx[1].qs));
    float d0 = half_to_float(bw[0].d) * half_to_float(bx[0].d);
    float d1 = half_to_float(bw[1].d) * half_to_float(bx[1].d);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d0), _mm512_set1_ps(d1)), acc);
}

float q3_q8_0_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q8_0 *bw = w, *bx = x;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t nb = n / Q3_QK, i = 0;
    for (; i + 4 <= nb; i += 4) {
        acc0 = q8_0_pair(bw + i, bx + i, acc0);
        acc1 = q8_0_pair(bw + i + 2, bx + i + 2, acc1);
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; i < nb; i++) { /* at most three blocks: 256-bit VNNI */
        __m256i wq = loadu256(bw[i].qs), xq = loadu256(bx[i].qs);
        __m256i x_signed = _mm256_mask_sub_epi8(xq, _mm256_movepi8_mask(wq), _mm256_setzero_si256(), xq);
        __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(wq), x_signed);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
        sum += (float)_mm_cvtsi128_si32(s4) * (half_to_float(bw[i].d) * half_to_float(bx[i].d));
    }
    return sum;
}

/* ---- Q4_0, Q5_0 (against Q8_0), Q4_1, Q5_1 (against Q8_1) ---- */

/* The 4-bit levels of two blocks in weight order (weight j in the low nibble of qs[j], j + 16
 * in the high nibble): block b0 in the low 256 bits, b1 in the high. */
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

/* Per-lane scales for two blocks: d0 in the low 8 lanes, d1 in the high 8. */
static inline __m512 pair_scale(float d0, float d1) {
    return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
}

/* The block loops below take blocks in pairs; an odd last block pairs with itself, its second
 * copy weighted 0. */
float q3_q4_0_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q4_0 *bw = w;
    const q3_block_q8_0 *bx = x;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0, nb = n / Q3_QK; i < nb; i += 2) {
        int64_t j = i + 1 < nb ? i + 1 : i;
        __m512i s = offset_dot(nibbles_2x32(bw[i].qs, bw[j].qs), load_2x256(bx[i].qs, bx[j].qs), 8);
        float d0 = half_to_float(bw[i].d) * half_to_float(bx[i].d);
        float d1 = j != i ? half_to_float(bw[j].d) * half_to_float(bx[j].d) : 0.0f;
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), pair_scale(d0, d1), acc);
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
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), pair_scale(d0, d1), acc);
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
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), pair_scale(d0, d1), acc);
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
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), pair_scale(d0, d1), acc);
        offsets += half_to_float(bw[i].m) * half_to_float(bx[i].s);
        if (j != i) offsets += half_to_float(bw[j].m) * half_to_float(bx[j].s);
    }
    return _mm512_reduce_add_ps(acc) + offsets;
}

/* ---- K-quants ---- */

/* Lane k of 32 int16 lanes takes element (k < 16 ? a : b) of the 8 int16 in `values`: the
 * scales of two 32-weight sub-blocks side by side, as maddubs lays out 64 weights. */
static inline __m512i spread_2x16(__m512i values, int a, int b) {
    __m512i idx = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16((short)a), _mm512_set1_epi16((short)b));
    return _mm512_permutexvar_epi16(idx, values);
}

/* The 8 scales of a Q4_K / Q5_K block (bytes 0..7 of scales_mins) as int16, spread for the
 * four 64-weight registers of the block: register r holds sub-blocks (r / 2) * 4 + r % 2 and
 * that + 2. */
static inline void kquant_scale_vectors(__m128i scales_mins, __m512i out[4]) {
    __m512i s16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(scales_mins));
    out[0] = spread_2x16(s16, 0, 2);
    out[1] = spread_2x16(s16, 1, 3);
    out[2] = spread_2x16(s16, 4, 6);
    out[3] = spread_2x16(s16, 5, 7);
}

/* The block's int32 lanes summed down to four. */
static inline __m128i fold_to_128(__m512i v) {
    __m256i half = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(half), _mm256_extracti128_si256(half, 1));
}

/* 64 bytes of Q4_K / Q5_K qs (index 64c..64c+63) give the low-nibble register (weights
 * 128c + 0..31 and 128c + 64..95) and the high-nibble one (128c + 32..63 and 128c + 96..127);
 * these are the activations in the same order. */
static inline void kquant_activations(const int8_t *y, int c, __m512i *low, __m512i *high) {
    *low = load_2x256(y + 128 * c, y + 128 * c + 64);
    *high = load_2x256(y + 128 * c + 32, y + 128 * c + 96);
}

float q3_q4_k_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q4_k *bw = w;
    const q3_block_q8_k *bx = x;
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        __m128i scales_mins = q3_x86_kscales(bw[i].scales);
        __m512i scales[4];
        kquant_scale_vectors(scales_mins, scales);
        __m512i acc_low = _mm512_setzero_si512(), acc_high = _mm512_setzero_si512();
        for (int c = 0; c < 2; c++) {
            __m512i q = loadu512(bw[i].qs + 64 * c), y_low, y_high;
            kquant_activations(bx[i].qs, c, &y_low, &y_high);
            __m512i p_low = _mm512_maddubs_epi16(_mm512_and_si512(q, nibble), y_low);
            __m512i p_high = _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(q, 4), nibble), y_high);
            acc_low = _mm512_dpwssd_epi32(acc_low, p_low, scales[2 * c]);
            acc_high = _mm512_dpwssd_epi32(acc_high, p_high, scales[2 * c + 1]);
        }
        __m512i acc = _mm512_add_epi32(acc_low, acc_high);
        __m128i min_terms = q3_x86_kmin_terms(scales_mins, bx[i].bsums);
        sum = q3_x86_kdot_tail(sum, bx[i].d, &bw[i].d, q3_x86_sum_pair(fold_to_128(acc), min_terms));
    }
    return sum;
}

/* Byte lanes 0..31 test bit `low`, lanes 32..63 bit `high`. */
static inline __m512i bit_select(int low, int high) {
    return _mm512_mask_blend_epi8(0xFFFFFFFF00000000ull, _mm512_set1_epi8((char)(1 << low)),
                                  _mm512_set1_epi8((char)(1 << high)));
}

float q3_q5_k_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q5_k *bw = w;
    const q3_block_q8_k *bx = x;
    const __m512i nibble = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16);
    /* The fifth bit of weight e is bit e / 32 of qh[e % 32]: per register, the two sub-blocks'
     * bits (see kquant_activations for which sub-blocks a register holds). */
    const __m512i bits[4] = {bit_select(0, 2), bit_select(1, 3), bit_select(4, 6), bit_select(5, 7)};
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        __m128i scales_mins = q3_x86_kscales(bw[i].scales);
        __m512i scales[4];
        kquant_scale_vectors(scales_mins, scales);
        __m512i qh = _mm512_broadcast_i64x4(loadu256(bw[i].qh)), acc = _mm512_setzero_si512();
        for (int c = 0; c < 2; c++) {
            __m512i q = loadu512(bw[i].qs + 64 * c), y_low, y_high;
            kquant_activations(bx[i].qs, c, &y_low, &y_high);
            __m512i low = _mm512_and_si512(q, nibble);
            __m512i high = _mm512_and_si512(_mm512_srli_epi16(q, 4), nibble);
            low = _mm512_mask_add_epi8(low, _mm512_test_epi8_mask(qh, bits[2 * c]), low, sixteen);
            high = _mm512_mask_add_epi8(high, _mm512_test_epi8_mask(qh, bits[2 * c + 1]), high, sixteen);
            acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(low, y_low), scales[2 * c]);
            acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(high, y_high), scales[2 * c + 1]);
        }
        __m128i min_terms = q3_x86_kmin_terms(scales_mins, bx[i].bsums);
        sum = q3_x86_kdot_tail(sum, bx[i].d, &bw[i].d, q3_x86_sum_pair(fold_to_128(acc), min_terms));
    }
    return sum;
}

/* Lane k of 32 int16 lanes -> k / 8: four 16-wide sub-blocks, each 8 int16 lanes of maddubs. */
static const int16_t Q6K_LANE_GROUP[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                           2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};

/* Q6K levels are 0..63 with x = d * sc * (q - 32): the kernel sums sc * q * y (q unsigned, so
 * maddubs applies) and subtracts 32 * sum(sc * bsums) afterwards, the same integer. In half h,
 * ql[64h .. 64h + 63] holds weights 128h + 0..63 in its low nibbles and 128h + 64..127 in its
 * high nibbles, so each 64-byte load gives two registers of consecutive weights. */
float q3_q6_k_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q6_k *bw = w;
    const q3_block_q8_k *bx = x;
    const __m512i nibble = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8(0x30);
    const __m512i lane_group = loadu512(Q6K_LANE_GROUP);
    /* Top bits of weights l, l + 32 (low-nibble register) and l + 64, l + 96 (high) sit in bit
     * pairs 0, 1, 2, 3 of qh[l]; shift each pair to bits 4-5. Word shifts are safe: the mask
     * drops what crosses between the two bytes of a word. */
    const __m512i shift_low = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(4), _mm512_set1_epi16(2));
    const __m512i shift_high = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(0), _mm512_set1_epi16(2));
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)bw[i].scales));
        __m512i sc512 = _mm512_castsi256_si512(sc16);
        __m512i acc = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512i ql = loadu512(bw[i].ql + 64 * h);
            __m512i qh = _mm512_broadcast_i64x4(loadu256(bw[i].qh + 32 * h));
            __m512i low = _mm512_or_si512(_mm512_and_si512(ql, nibble),
                                          _mm512_and_si512(_mm512_sllv_epi16(qh, shift_low), top));
            __m512i high = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), nibble),
                                           _mm512_and_si512(_mm512_srlv_epi16(qh, shift_high), top));
            const int8_t *y = bx[i].qs + 128 * h;
            __m512i s_low = _mm512_permutexvar_epi16(_mm512_add_epi16(lane_group, _mm512_set1_epi16((short)(8 * h))), sc512);
            __m512i s_high = _mm512_permutexvar_epi16(_mm512_add_epi16(lane_group, _mm512_set1_epi16((short)(8 * h + 4))), sc512);
            acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(low, loadu512(y)), s_low);
            acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(high, loadu512(y + 64)), s_high);
        }
        __m256i offset = _mm256_madd_epi16(sc16, loadu256(bx[i].bsums));
        __m128i o4 = _mm_add_epi32(_mm256_castsi256_si128(offset), _mm256_extracti128_si256(offset, 1));
        __m128i s4 = _mm_sub_epi32(fold_to_128(acc), _mm_slli_epi32(o4, 5)); /* - 32 * offset */
        int32_t sum_qy = _mm_cvtsi128_si32(q3_x86_sum_pair(s4, s4));
        sum = q3_kdot_accumulate(sum, bx[i].d, half_to_float(bw[i].d), 0, sum_qy, 0);
    }
    return sum;
}

/* Q2_K: 2-bit levels, weight 128h + 32k + l in bit pair k of qs[32h + l]. One 32-byte load,
 * shifted by 0 and 2 bits (then 4 and 6), gives weights 128h + 0..63 (then 64..127) in order;
 * 16-wide sub-blocks with 4-bit scales and mins, laid out for dpwssd as in Q6_K. */
float q3_q2_k_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q2_k *bw = w;
    const q3_block_q8_k *bx = x;
    const __m512i three = _mm512_set1_epi8(3), lane_group = loadu512(Q6K_LANE_GROUP);
    const __m512i shift_low = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(0), _mm512_set1_epi16(2));
    const __m512i shift_high = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(4), _mm512_set1_epi16(6));
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        __m128i packed = _mm_loadu_si128((const __m128i *)bw[i].scales);
        __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, _mm_set1_epi8(0x0F)));
        __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F)));
        __m512i sc512 = _mm512_castsi256_si512(sc16), acc = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512i q = _mm512_broadcast_i64x4(loadu256(bw[i].qs + 32 * h));
            __m512i low = _mm512_and_si512(_mm512_srlv_epi16(q, shift_low), three);
            __m512i high = _mm512_and_si512(_mm512_srlv_epi16(q, shift_high), three);
            const int8_t *y = bx[i].qs + 128 * h;
            __m512i s_low = _mm512_permutexvar_epi16(_mm512_add_epi16(lane_group, _mm512_set1_epi16((short)(8 * h))), sc512);
            __m512i s_high = _mm512_permutexvar_epi16(_mm512_add_epi16(lane_group, _mm512_set1_epi16((short)(8 * h + 4))), sc512);
            acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(low, loadu512(y)), s_low);
            acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(high, loadu512(y + 64)), s_high);
        }
        __m256i min_terms = _mm256_madd_epi16(m16, loadu256(bx[i].bsums));
        __m128i m4 = _mm_add_epi32(_mm256_castsi256_si128(min_terms), _mm256_extracti128_si256(min_terms, 1));
        sum = q3_x86_kdot_tail(sum, bx[i].d, &bw[i].d, q3_x86_sum_pair(fold_to_128(acc), m4));
    }
    return sum;
}

/* Q3_K: levels -4..3 are the two low bits (as Q2_K) minus 4 where the hmask bit is clear. The
 * kernel multiplies the unsigned q + 4 (low bits, plus 4 where the bit is set) and subtracts
 * 4 * sum(sc * bsums) afterwards, the same integer. */
float q3_q3_k_vec_dot_avx512(int64_t n, const void *w, const void *x) {
    const q3_block_q3_k *bw = w;
    const q3_block_q8_k *bx = x;
    const __m512i three = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4), lane_group = loadu512(Q6K_LANE_GROUP);
    const __m512i shift_low = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(0), _mm512_set1_epi16(2));
    const __m512i shift_high = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(4), _mm512_set1_epi16(6));
    /* hmask bit of weight 128h + 32k + l: bit 4h + k of hmask[l]. */
    const __m512i bits[4] = {bit_select(0, 1), bit_select(2, 3), bit_select(4, 5), bit_select(6, 7)};
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(q3_x86_q3k_scales(bw[i].scales));
        __m512i sc512 = _mm512_castsi256_si512(sc16), acc = _mm512_setzero_si512();
        __m512i hmask = _mm512_broadcast_i64x4(loadu256(bw[i].hmask));
        for (int h = 0; h < 2; h++) {
            __m512i q = _mm512_broadcast_i64x4(loadu256(bw[i].qs + 32 * h));
            __m512i low = _mm512_and_si512(_mm512_srlv_epi16(q, shift_low), three);
            __m512i high = _mm512_and_si512(_mm512_srlv_epi16(q, shift_high), three);
            low = _mm512_mask_add_epi8(low, _mm512_test_epi8_mask(hmask, bits[2 * h]), low, four);
            high = _mm512_mask_add_epi8(high, _mm512_test_epi8_mask(hmask, bits[2 * h + 1]), high, four);
            const int8_t *y = bx[i].qs + 128 * h;
            __m512i s_low = _mm512_permutexvar_epi16(_mm512_add_epi16(lane_group, _mm512_set1_epi16((short)(8 * h))), sc512);
            __m512i s_high = _mm512_permutexvar_epi16(_mm512_add_epi16(lane_group, _mm512_set1_epi16((short)(8 * h + 4))), sc512);
            acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(low, loadu512(y)), s_low);
            acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(high, loadu512(y + 64)), s_high);
        }
        __m256i offset = _mm256_madd_epi16(sc16, loadu256(bx[i].bsums));
        __m128i o4 = _mm_add_epi32(_mm256_castsi256_si128(offset), _mm256_extracti128_si256(offset, 1));
        __m128i s4 = _mm_sub_epi32(fold_to_128(acc), _mm_slli_epi32(o4, 2)); /* - 4 * offset */
        int32_t sum_qy = _mm_cvtsi128_si32(q3_x86_sum_pair(s4, s4));
        sum = q3_kdot_accumulate(sum, bx[i].d, half_to_float(bw[i].d), 0, sum_qy, 0);
    }
    return sum;
}

/* ---- activation quantizers ---- */

static inline __m512 abs_ps(__m512 v) { return _mm512_abs_ps(v); }

/* roundf on sixteen lanes: truncate, then step away from zero when the dropped fraction
 * (exact) is at least one half. */
static inline __m512 round_half_away(__m512 v) {
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __mmask16 up = _mm512_cmp_ps_mask(abs_ps(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    __m512 step = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u)),
        _mm512_castps_si512(_mm512_set1_ps(1.0f))));
    return _mm512_mask_add_ps(t, up, t, step);
}

void q3_q8_0_from_float_avx512(const float *src, void *dst, int64_t n) {
    q3_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / Q3_QK; i++, src += Q3_QK) {
        __m512 v0 = _mm512_loadu_ps(src), v1 = _mm512_loadu_ps(src + 16);
        float d = _mm512_reduce_max_ps(_mm512_max_ps(abs_ps(v0), abs_ps(v1))) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = _mm512_cvtps_epi32(round_half_away(_mm512_mul_ps(v0, vid)));
        __m512i q1 = _mm512_cvtps_epi32(round_half_away(_mm512_mul_ps(v1, vid)));
        _mm_storeu_si128((__m128i *)b[i].qs, _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(b[i].qs + 16), _mm512_cvtsepi32_epi8(q1));
    }
}

/* The first value whose magnitude is amax (the reference's tie rule). */
static float first_with_magnitude(const float *x, int n, float amax) {
    __m512 target = _mm512_set1_ps(amax);
    for (int k = 0; k < n; k += 16) {
        __mmask16 hits = _mm512_cmp_ps_mask(abs_ps(_mm512_loadu_ps(x + k)), target, _CMP_EQ_OQ);
        if (hits) return x[k + __builtin_ctz(hits)];
    }
    return 0;
}

void q3_q8_k_from_float_avx512(const float *src, void *dst, int64_t n) {
    q3_block_q8_k *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++, src += Q3_QK_K) {
        __m512 amax = _mm512_setzero_ps();
        for (int k = 0; k < Q3_QK_K; k += 16) amax = _mm512_max_ps(amax, abs_ps(_mm512_loadu_ps(src + k)));
        float max = first_with_magnitude(src, Q3_QK_K, _mm512_reduce_max_ps(amax));
        if (max == 0) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = -127.0f / max;
        __m512 vs = _mm512_set1_ps(iscale);
        for (int k = 0; k < Q3_QK_K; k += 16) {
            /* Round to nearest even (the default mode), clamp to int8 like the reference. */
            __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(vs, _mm512_loadu_ps(src + k)));
            q = _mm512_max_epi32(_mm512_min_epi32(q, _mm512_set1_epi32(127)), _mm512_set1_epi32(-128));
            b[i].bsums[k / 16] = (int16_t)_mm512_reduce_add_epi32(q);
            _mm_storeu_si128((__m128i *)(b[i].qs + k), _mm512_cvtsepi32_epi8(q));
        }
        b[i].d = 1 / iscale;
    }
}

#else
typedef int q3_dot_avx512_unused; /* ISO C wants a declaration in every translation unit */
#endif
