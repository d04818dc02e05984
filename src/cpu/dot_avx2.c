/* AVX2 kernels (with FMA and F16C): the float dot products, the integer dot products of Q8_0
 * and the K-quants Q4_K, Q5_K, Q6_K against their activation types, and the Q8_0 / Q8_K
 * activation quantizers. Built with -mavx2 -mfma -mf16c (the _avx2.c suffix) and only called
 * when the CPU has them.
 *
 * The integer kernels multiply unsigned weight levels by signed int8 activations with
 * maddubs (pairs summed into int16, which cannot saturate for these ranges), then apply the
 * sub-block scales with madd (int16 x int16 pairs into int32). Every integer sum is exact, and
 * the float tail per block is the reference's own (q3_kdot_accumulate), so the K-quant results
 * equal the scalar ones to the bit. Q8_0 accumulates its per-block floats in vector lanes, so
 * it agrees within rounding. The quantizers round exactly as the reference does. */
#include "cpu/dot.h"

#ifdef __AVX2__

#include "cpu/dot_x86.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* keep the per-block float math identical to the reference */
#endif

/* ---- helpers ---- */

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

static inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

static inline __m256i loadu(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* A shuffle_epi8 control spreading int16 elements g and g + 1 of a 128-bit lane (present in
 * both lanes) over eight int16 lanes each: the scales of two adjacent 16-wide sub-blocks,
 * matching the int16 lanes maddubs makes of 32 consecutive weights. */
static inline __m256i scale_pair_control(int g) {
    return _mm256_set_m128i(_mm_set1_epi16((short)((2 * g + 3) << 8 | (2 * g + 2))),
                            _mm_set1_epi16((short)((2 * g + 1) << 8 | (2 * g))));
}

/* ---- float types: eight lanes, four accumulators ---- */

/* The loop of every float dot product: `widen` loads eight weights as f32. Four independent
 * accumulators hide the FMA latency; a scalar loop takes the last n % 8. */
#define FLOAT_DOT_AVX2(widen, widen_one)                                                    \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;               \
    int64_t i = 0;                                                                          \
    for (; i + 32 <= n; i += 32) {                                                          \
        acc0 = _mm256_fmadd_ps(widen(a + i), _mm256_loadu_ps(x + i), acc0);                 \
        acc1 = _mm256_fmadd_ps(widen(a + i + 8), _mm256_loadu_ps(x + i + 8), acc1);         \
        acc2 = _mm256_fmadd_ps(widen(a + i + 16), _mm256_loadu_ps(x + i + 16), acc2);       \
        acc3 = _mm256_fmadd_ps(widen(a + i + 24), _mm256_loadu_ps(x + i + 24), acc3);       \
    }                                                                                       \
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(widen(a + i), _mm256_loadu_ps(x + i), acc0); \
    float tail = 0;                                                                         \
    for (; i < n; i++) tail += widen_one(a[i]) * x[i];                                      \
    return hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3))) + tail;

static inline __m256 load_f32x8(const float *p) { return _mm256_loadu_ps(p); }
static inline float f32_one(float v) { return v; }

float q3_f32_vec_dot_avx2(int64_t n, const void *w, const void *xv) {
    const float *a = w, *x = xv;
    FLOAT_DOT_AVX2(load_f32x8, f32_one)
}

static inline __m256 load_f16x8(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

float q3_f16_vec_dot_avx2(int64_t n, const void *w, const void *xv) {
    const uint16_t *a = w;
    const float *x = xv;
    FLOAT_DOT_AVX2(load_f16x8, half_to_float)
}

/* bf16 is the top half of an f32: widen by a 16-bit shift, then FMA in f32 (exact products,
 * unlike a bf16 dot-product instruction). */
static inline __m256 load_bf16x8(const uint16_t *p) {
    __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

float q3_bf16_vec_dot_avx2(int64_t n, const void *w, const void *xv) {
    const uint16_t *a = w;
    const float *x = xv;
    FLOAT_DOT_AVX2(load_bf16x8, q3_bf16_to_f32)
}

/* ---- Q8_0 ---- */

/* sum w * x over 32 int8 pairs as 8 int32 lanes. maddubs wants unsigned x signed: |w| is
 * unsigned (128 for -128 included) and x takes w's sign; x is never -128 (activations are
 * quantized to -127..127), so negating it cannot overflow. */
static inline __m256i dot_i8x32(__m256i w, __m256i x) {
    __m256i products = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(products, _mm256_set1_epi16(1));
}

float q3_q8_0_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q8_0 *bw = w, *bx = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t nb = n / Q3_QK, i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m256i s0 = dot_i8x32(loadu(bw[i].qs), loadu(bx[i].qs));
        __m256i s1 = dot_i8x32(loadu(bw[i + 1].qs), loadu(bx[i + 1].qs));
        float d0 = half_to_float(bw[i].d) * half_to_float(bx[i].d);
        float d1 = half_to_float(bw[i + 1].d) * half_to_float(bx[i + 1].d);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(d0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_set1_ps(d1), acc1);
    }
    for (; i < nb; i++) {
        __m256i s = dot_i8x32(loadu(bw[i].qs), loadu(bx[i].qs));
        float d = half_to_float(bw[i].d) * half_to_float(bx[i].d);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d), acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* ---- Q4_0, Q5_0 (against Q8_0), Q4_1, Q5_1 (against Q8_1) ---- */

/* The 4-bit levels of a block in weight order: weight j in the low nibble of qs[j], j + 16 in
 * the high nibble. */
static inline __m256i nibbles_32(const uint8_t *qs) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

/* 16 in byte j where bit j of the block's 32-bit qh is set: the fifth bit of Q5 levels. */
static inline __m256i fifth_bits(const uint8_t *qh) {
    uint32_t bits;
    memcpy(&bits, qh, 4);
    const __m256i byte_of_bit = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit_in_byte = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), byte_of_bit);
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit_in_byte), bit_in_byte);
    return _mm256_and_si256(set, _mm256_set1_epi8(16));
}

/* sum (level - offset) * x over 32 weights as 8 int32 lanes; levels are unsigned. The int16
 * pair sums of maddubs cannot saturate: |level - offset| <= 31 and |x| <= 127. */
static inline __m256i offset_dot32(__m256i levels, const int8_t *x, int offset) {
    __m256i xv = loadu(x);
    __m256i p = _mm256_maddubs_epi16(levels, xv);
    if (offset) p = _mm256_sub_epi16(p, _mm256_maddubs_epi16(_mm256_set1_epi8((char)offset), xv));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

float q3_q4_0_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q4_0 *bw = w;
    const q3_block_q8_0 *bx = x;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        __m256i s = offset_dot32(nibbles_32(bw[i].qs), bx[i].qs, 8);
        float d = half_to_float(bw[i].d) * half_to_float(bx[i].d);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d), acc);
    }
    return hsum_ps(acc);
}

float q3_q5_0_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q5_0 *bw = w;
    const q3_block_q8_0 *bx = x;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        __m256i levels = _mm256_or_si256(nibbles_32(bw[i].qs), fifth_bits(bw[i].qh));
        __m256i s = offset_dot32(levels, bx[i].qs, 16);
        float d = half_to_float(bw[i].d) * half_to_float(bx[i].d);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d), acc);
    }
    return hsum_ps(acc);
}

/* x = d * q + m: d * dx * sum(q * y) in vector lanes, plus m * s (s = dx * sum(y), carried
 * by the Q8_1 block) per block. */
float q3_q4_1_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q4_1 *bw = w;
    const q3_block_q8_1 *bx = x;
    __m256 acc = _mm256_setzero_ps();
    float offsets = 0;
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        __m256i s = offset_dot32(nibbles_32(bw[i].qs), bx[i].qs, 0);
        float d = half_to_float(bw[i].d) * half_to_float(bx[i].d);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d), acc);
        offsets += half_to_float(bw[i].m) * half_to_float(bx[i].s);
    }
    return hsum_ps(acc) + offsets;
}

float q3_q5_1_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q5_1 *bw = w;
    const q3_block_q8_1 *bx = x;
    __m256 acc = _mm256_setzero_ps();
    float offsets = 0;
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        __m256i levels = _mm256_or_si256(nibbles_32(bw[i].qs), fifth_bits(bw[i].qh));
        __m256i s = offset_dot32(levels, bx[i].qs, 0);
        float d = half_to_float(bw[i].d) * half_to_float(bx[i].d);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d), acc);
        offsets += half_to_float(bw[i].m) * half_to_float(bx[i].s);
    }
    return hsum_ps(acc) + offsets;
}

/* ---- K-quants ---- */

/* A shuffle_epi8 control broadcasting int16 element j of each 128-bit lane to all its lanes. */
static inline __m256i word_control(int j) { return _mm256_set1_epi16((short)((2 * j + 1) << 8 | (2 * j))); }

/* The block's int32 lanes summed down to four. */
static inline __m128i fold_to_128(__m256i v) {
    return _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

/* Levels q of 32 weights (bytes 0..31, 0..31 unsigned) times activations y, scaled by the
 * int16 scale in every lane of `scale`, as int32 lanes. */
static inline __m256i scaled_dot32(__m256i q, const int8_t *y, __m256i scale) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, loadu(y)), scale);
}

float q3_q4_k_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q4_k *bw = w;
    const q3_block_q8_k *bx = x;
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        __m128i scales_mins = q3_x86_kscales(bw[i].scales);
        __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scales_mins));
        __m256i acc = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) { /* 32 bytes: sub-blocks 2c (low nibbles), 2c+1 (high) */
            __m256i q = loadu(bw[i].qs + 32 * c);
            const int8_t *y = bx[i].qs + 64 * c;
            __m256i low = _mm256_and_si256(q, nibble);
            __m256i high = _mm256_and_si256(_mm256_srli_epi16(q, 4), nibble);
            acc = _mm256_add_epi32(acc, scaled_dot32(low, y, _mm256_shuffle_epi8(scales, word_control(2 * c))));
            acc = _mm256_add_epi32(acc, scaled_dot32(high, y + 32, _mm256_shuffle_epi8(scales, word_control(2 * c + 1))));
        }
        __m128i min_terms = q3_x86_kmin_terms(scales_mins, bx[i].bsums);
        sum = q3_x86_kdot_tail(sum, bx[i].d, &bw[i].d, q3_x86_sum_pair(fold_to_128(acc), min_terms));
    }
    return sum;
}

/* 16 where bit `bit` of the qh byte is set: the fifth bit of Q5_K's levels. */
static inline __m256i high_bit(__m256i qh, int bit) {
    __m256i sel = _mm256_set1_epi8((char)(1 << bit));
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, sel), sel);
    return _mm256_and_si256(set, _mm256_set1_epi8(16));
}

float q3_q5_k_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q5_k *bw = w;
    const q3_block_q8_k *bx = x;
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        __m128i scales_mins = q3_x86_kscales(bw[i].scales);
        __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scales_mins));
        __m256i qh = loadu(bw[i].qh), acc = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i q = loadu(bw[i].qs + 32 * c);
            const int8_t *y = bx[i].qs + 64 * c;
            __m256i low = _mm256_or_si256(_mm256_and_si256(q, nibble), high_bit(qh, 2 * c));
            __m256i high = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), nibble),
                                           high_bit(qh, 2 * c + 1));
            acc = _mm256_add_epi32(acc, scaled_dot32(low, y, _mm256_shuffle_epi8(scales, word_control(2 * c))));
            acc = _mm256_add_epi32(acc, scaled_dot32(high, y + 32, _mm256_shuffle_epi8(scales, word_control(2 * c + 1))));
        }
        __m128i min_terms = q3_x86_kmin_terms(scales_mins, bx[i].bsums);
        sum = q3_x86_kdot_tail(sum, bx[i].d, &bw[i].d, q3_x86_sum_pair(fold_to_128(acc), min_terms));
    }
    return sum;
}

/* Q6_K levels are 0..63 with x = d * sc * (q - 32): the kernel sums sc * q * y with maddubs
 * (q is unsigned) and subtracts 32 * sum(sc * bsums) afterwards, the same integer. */
float q3_q6_k_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q6_k *bw = w;
    const q3_block_q8_k *bx = x;
    const __m256i nibble = _mm256_set1_epi8(0x0F), top = _mm256_set1_epi8(0x30);
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)bw[i].scales));
        __m256i acc = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = loadu(bw[i].ql + 64 * h), ql1 = loadu(bw[i].ql + 64 * h + 32);
            __m256i qh = loadu(bw[i].qh + 32 * h);
            /* Weights 128h + 0..31, +32..63, +64..95, +96..127, each with its two top bits. */
            __m256i q0 = _mm256_or_si256(_mm256_and_si256(ql0, nibble), _mm256_and_si256(_mm256_slli_epi16(qh, 4), top));
            __m256i q1 = _mm256_or_si256(_mm256_and_si256(ql1, nibble), _mm256_and_si256(_mm256_slli_epi16(qh, 2), top));
            __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), nibble), _mm256_and_si256(qh, top));
            __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), nibble),
                                         _mm256_and_si256(_mm256_srli_epi16(qh, 2), top));
            /* The 8 scales of these 128 weights (16-wide sub-blocks 8h..8h+7) in both lanes. */
            __m256i s = _mm256_broadcastsi128_si256(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
            const int8_t *y = bx[i].qs + 128 * h;
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q0, loadu(y)),
                                                          _mm256_shuffle_epi8(s, scale_pair_control(0))));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q1, loadu(y + 32)),
                                                          _mm256_shuffle_epi8(s, scale_pair_control(2))));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q2, loadu(y + 64)),
                                                          _mm256_shuffle_epi8(s, scale_pair_control(4))));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q3, loadu(y + 96)),
                                                          _mm256_shuffle_epi8(s, scale_pair_control(6))));
        }
        __m128i offset = fold_to_128(_mm256_madd_epi16(sc16, loadu(bx[i].bsums)));
        __m128i s4 = _mm_sub_epi32(fold_to_128(acc), _mm_slli_epi32(offset, 5)); /* - 32 * offset */
        int32_t sum_qy = _mm_cvtsi128_si32(q3_x86_sum_pair(s4, s4));
        sum = q3_kdot_accumulate(sum, bx[i].d, half_to_float(bw[i].d), 0, sum_qy, 0);
    }
    return sum;
}

/* Q2_K: 2-bit levels, weight 128h + 32k + l in bit pair k of qs[32h + l]: shifting one 32-byte
 * load by 2k bits gives weights 128h + 32k + 0..31, two 16-wide sub-blocks with 4-bit scales
 * (spread as in Q6_K) and mins. */
float q3_q2_k_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q2_k *bw = w;
    const q3_block_q8_k *bx = x;
    const __m256i three = _mm256_set1_epi8(3);
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        __m128i packed = _mm_loadu_si128((const __m128i *)bw[i].scales);
        __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, _mm_set1_epi8(0x0F)));
        __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F)));
        __m256i acc = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q = loadu(bw[i].qs + 32 * h);
            __m256i s = _mm256_broadcastsi128_si256(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
            const int8_t *y = bx[i].qs + 128 * h;
            acc = _mm256_add_epi32(acc, scaled_dot32(_mm256_and_si256(q, three), y, _mm256_shuffle_epi8(s, scale_pair_control(0))));
            acc = _mm256_add_epi32(acc, scaled_dot32(_mm256_and_si256(_mm256_srli_epi16(q, 2), three), y + 32,
                                                     _mm256_shuffle_epi8(s, scale_pair_control(2))));
            acc = _mm256_add_epi32(acc, scaled_dot32(_mm256_and_si256(_mm256_srli_epi16(q, 4), three), y + 64,
                                                     _mm256_shuffle_epi8(s, scale_pair_control(4))));
            acc = _mm256_add_epi32(acc, scaled_dot32(_mm256_and_si256(_mm256_srli_epi16(q, 6), three), y + 96,
                                                     _mm256_shuffle_epi8(s, scale_pair_control(6))));
        }
        __m128i min_terms = fold_to_128(_mm256_madd_epi16(m16, loadu(bx[i].bsums)));
        sum = q3_x86_kdot_tail(sum, bx[i].d, &bw[i].d, q3_x86_sum_pair(fold_to_128(acc), min_terms));
    }
    return sum;
}

/* 4 where bit `bit` of the hmask byte is set: Q3_K's level + 4 is its low bits plus this. */
static inline __m256i plus_four(__m256i hmask, int bit) {
    __m256i sel = _mm256_set1_epi8((char)(1 << bit));
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hmask, sel), sel), _mm256_set1_epi8(4));
}

/* 32 weights of Q3_K: low bits (0..3) plus 4 where hmask bit `bit` is set, times y, scaled by
 * the scales of the pair of sub-blocks at element g of s. */
static inline __m256i q3k_quarter(__m256i low, __m256i hmask, int bit, const int8_t *y, __m256i s, int g) {
    __m256i level = _mm256_or_si256(low, plus_four(hmask, bit));
    return scaled_dot32(level, y, _mm256_shuffle_epi8(s, scale_pair_control(g)));
}

/* Q3_K: as Q2_K for the low bits; the unsigned level + 4 (low bits, plus 4 where the hmask bit
 * is set) is multiplied, and 4 * sum(sc * bsums) subtracted afterwards, the same integer. */
float q3_q3_k_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q3_k *bw = w;
    const q3_block_q8_k *bx = x;
    const __m256i three = _mm256_set1_epi8(3);
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(q3_x86_q3k_scales(bw[i].scales));
        __m256i hmask = loadu(bw[i].hmask), acc = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q = loadu(bw[i].qs + 32 * h);
            __m256i s = _mm256_broadcastsi128_si256(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
            const int8_t *y = bx[i].qs + 128 * h;
            acc = _mm256_add_epi32(acc, q3k_quarter(_mm256_and_si256(q, three), hmask, 4 * h, y, s, 0));
            acc = _mm256_add_epi32(acc, q3k_quarter(_mm256_and_si256(_mm256_srli_epi16(q, 2), three), hmask, 4 * h + 1, y + 32, s, 2));
            acc = _mm256_add_epi32(acc, q3k_quarter(_mm256_and_si256(_mm256_srli_epi16(q, 4), three), hmask, 4 * h + 2, y + 64, s, 4));
            acc = _mm256_add_epi32(acc, q3k_quarter(_mm256_and_si256(_mm256_srli_epi16(q, 6), three), hmask, 4 * h + 3, y + 96, s, 6));
        }
        __m128i offset = fold_to_128(_mm256_madd_epi16(sc16, loadu(bx[i].bsums)));
        __m128i s4 = _mm_sub_epi32(fold_to_128(acc), _mm_slli_epi32(offset, 2)); /* - 4 * offset */
        int32_t sum_qy = _mm_cvtsi128_si32(q3_x86_sum_pair(s4, s4));
        sum = q3_kdot_accumulate(sum, bx[i].d, half_to_float(bw[i].d), 0, sum_qy, 0);
    }
    return sum;
}

/* ---- activation quantizers ---- */

static inline float hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

/* roundf on eight lanes: truncate, then step away from zero when the dropped fraction (exact)
 * is at least one half. */
static inline __m256 round_half_away(__m256 v) {
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 up = _mm256_cmp_ps(abs_ps(_mm256_sub_ps(v, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 step = _mm256_or_ps(_mm256_and_ps(v, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(1.0f));
    return _mm256_add_ps(t, _mm256_and_ps(up, step));
}

/* Packs 32 int32 (four vectors, in order) into 32 int8 with saturation. */
static inline __m256i pack_i32x32(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i bytes = _mm256_packs_epi16(ab, cd); /* in-lane packing interleaves 4-byte groups */
    return _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void q3_q8_0_from_float_avx2(const float *src, void *dst, int64_t n) {
    q3_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / Q3_QK; i++, src += Q3_QK) {
        __m256 v[4];
        for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(src + 8 * k);
        __m256 amax = _mm256_max_ps(_mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])),
                                    _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3])));
        float d = hmax_ps(amax) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvtps_epi32(round_half_away(_mm256_mul_ps(v[k], _mm256_set1_ps(id))));
        _mm256_storeu_si256((__m256i *)b[i].qs, pack_i32x32(q[0], q[1], q[2], q[3]));
    }
}

/* The first value whose magnitude is amax (the reference's tie rule). */
static float first_with_magnitude(const float *x, int n, float amax) {
    __m256 target = _mm256_set1_ps(amax);
    for (int k = 0; k < n; k += 8) {
        int hits = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + k)), target, _CMP_EQ_OQ));
        if (hits) return x[k + __builtin_ctz((unsigned)hits)];
    }
    return 0;
}

void q3_q8_k_from_float_avx2(const float *src, void *dst, int64_t n) {
    q3_block_q8_k *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++, src += Q3_QK_K) {
        __m256 amax = _mm256_setzero_ps();
        for (int k = 0; k < Q3_QK_K; k += 8) amax = _mm256_max_ps(amax, abs_ps(_mm256_loadu_ps(src + k)));
        float max = first_with_magnitude(src, Q3_QK_K, hmax_ps(amax));
        if (max == 0) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = -127.0f / max;
        __m256 vs = _mm256_set1_ps(iscale);
        for (int k = 0; k < Q3_QK_K; k += 32) {
            __m256i q[4]; /* round to nearest even: the default rounding mode */
            for (int j = 0; j < 4; j++) {
                __m256i r = _mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(src + k + 8 * j)));
                q[j] = _mm256_max_epi32(_mm256_min_epi32(r, _mm256_set1_epi32(127)), _mm256_set1_epi32(-128));
            }
            b[i].bsums[k / 16] = (int16_t)hsum_epi32(_mm256_add_epi32(q[0], q[1]));
            b[i].bsums[k / 16 + 1] = (int16_t)hsum_epi32(_mm256_add_epi32(q[2], q[3]));
            _mm256_storeu_si256((__m256i *)(b[i].qs + k), pack_i32x32(q[0], q[1], q[2], q[3]));
        }
        b[i].d = 1 / iscale;
    }
}

#else
typedef int q3_dot_avx2_unused; /* ISO C wants a declaration in every translation unit */
#endif
