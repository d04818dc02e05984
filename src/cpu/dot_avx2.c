/* AVX2 kernels (with FMA and F16C): the dot products of every weight type against its
 * activation type, and the Q8_0 / Q8_K activation quantizers. Built with -mavx2 -mfma -mf16c
 * (the _avx2.c suffix) and only called when the CPU has them.
 *
 * The integer kernels multiply unsigned weight levels by signed int8 activations with maddubs
 * (pairs summed into int16, which cannot saturate for these ranges) and apply sub-block scales
 * with madd (int16 x int16 pairs into int32). Every integer sum is exact; the K-quants end each
 * block with the reference's own float tail (q3_kdot_accumulate), so their results equal the
 * scalar ones to the bit. The 32-wide formats and the float types accumulate in vector lanes,
 * another summation order: they agree within rounding. The quantizers round exactly as the
 * reference does, so their bytes are the same. */
#include "cpu/dot.h"

#ifdef __AVX2__

#define Q3_X86_BITS 256
#include "cpu/dot_x86.h"

/* The loops over the parts of a block are unrolled (#pragma GCC unroll, which clang honours
 * too) so that their index is a constant in every shift count and shuffle control. */

/* ---- helpers ---- */

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The int32 lanes summed down to four. */
static inline __m128i fold_to_128(__m256i v) {
    return _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

static inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

static inline __m256i loadu(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* ---- float types: the loop of dot_x86.h, a scalar tail ---- */

static inline float float_dot_end(int64_t n, int64_t i, const void *w, const float *x, enum x86_float_kind kind,
                                  __m256 acc0, __m256 acc1, __m256 acc2, __m256 acc3) {
    float tail = 0;
    for (; i < n; i++) {
        float wi = kind == X86_F32    ? ((const float *)w)[i]
                   : kind == X86_F16 ? half_to_float(((const uint16_t *)w)[i])
                                     : q3_bf16_to_f32(((const uint16_t *)w)[i]);
        tail += wi * x[i];
    }
    __m256 acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
    return hsum_ps(acc) + tail;
}

float q3_f32_vec_dot_avx2(int64_t n, const void *w, const void *x) { return x86_float_dot(n, w, x, X86_F32); }
float q3_f16_vec_dot_avx2(int64_t n, const void *w, const void *x) { return x86_float_dot(n, w, x, X86_F16); }
float q3_bf16_vec_dot_avx2(int64_t n, const void *w, const void *x) { return x86_float_dot(n, w, x, X86_BF16); }

/* ---- Q8_0 ---- */

/* sum w * x over 32 int8 pairs as 8 int32 lanes. maddubs wants unsigned x signed: |w| is
 * unsigned (128 for -128 included) and x takes w's sign; x is never -128 (activations are
 * quantized to -127..127), so negating it cannot overflow. */
static inline __m256i dot_i8x32(__m256i w, __m256i x) {
    __m256i products = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(products, _mm256_set1_epi16(1));
}

static inline __m256 q8_0_block(const q3_block_q8_0 *bw, const q3_block_q8_0 *bx, __m256 acc) {
    __m256i s = dot_i8x32(loadu(bw->qs), loadu(bx->qs));
    float d = half_to_float(bw->d) * half_to_float(bx->d);
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d), acc);
}

float q3_q8_0_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q8_0 *bw = w, *bx = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t nb = n / Q3_QK, i = 0;
    for (; i + 2 <= nb; i += 2) {
        acc0 = q8_0_block(&bw[i], &bx[i], acc0);
        acc1 = q8_0_block(&bw[i + 1], &bx[i + 1], acc1);
    }
    if (i < nb) acc0 = q8_0_block(&bw[i], &bx[i], acc0);
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* Q8_0 blocks back to floats (a Q8_0 KV cache's value rows): each level times its block's
 * scale, one rounding, as the scalar reference does. */
void q3_q8_0_to_float_avx2(const void *src, float *dst, int64_t n) {
    const q3_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / Q3_QK; i++, dst += Q3_QK) {
        _mm_prefetch((const char *)&b[i] + Q3_X86_PREFETCH_AHEAD, _MM_HINT_T0);
        __m256 d = _mm256_set1_ps(half_to_float(b[i].d));
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m128i q = _mm_loadl_epi64((const __m128i *)(b[i].qs + 8 * k));
            _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d));
        }
    }
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
 * pair sums cannot saturate: |level - offset| <= 31 and |x| <= 127. */
static inline __m256i offset_dot32(__m256i levels, const int8_t *x, int offset) {
    __m256i xv = loadu(x);
    __m256i p = _mm256_maddubs_epi16(levels, xv);
    if (offset) p = _mm256_sub_epi16(p, _mm256_maddubs_epi16(_mm256_set1_epi8((char)offset), xv));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* acc + sum * d for one block's int32 lanes and its combined scale. */
static inline __m256 scale_add(__m256i sum, float d, __m256 acc) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(d), acc);
}

float q3_q4_0_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q4_0 *bw = w;
    const q3_block_q8_0 *bx = x;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        __m256i s = offset_dot32(nibbles_32(bw[i].qs), bx[i].qs, 8);
        acc = scale_add(s, half_to_float(bw[i].d) * half_to_float(bx[i].d), acc);
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
        acc = scale_add(s, half_to_float(bw[i].d) * half_to_float(bx[i].d), acc);
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
        acc = scale_add(s, half_to_float(bw[i].d) * half_to_float(bx[i].d), acc);
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
        acc = scale_add(s, half_to_float(bw[i].d) * half_to_float(bx[i].d), acc);
        offsets += half_to_float(bw[i].m) * half_to_float(bx[i].s);
    }
    return hsum_ps(acc) + offsets;
}

/* ---- K-quants ---- */

/* Levels q of 32 weights (unsigned) times the activations at y, times the int16 scale in each
 * lane of `scale`, as int32 lanes. */
static inline __m256i scaled_dot32(__m256i q, const int8_t *y, __m256i scale) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, loadu(y)), scale);
}

/* Scale j of the 8 int16 in each 128-bit lane of `scales`, in every lane: the scale of one
 * 32-wide sub-block. */
static inline __m256i one_scale(__m256i scales, int j) {
    return _mm256_shuffle_epi8(scales, _mm256_set1_epi16((short)((2 * j + 1) << 8 | (2 * j))));
}

/* Scales g and g + 1 of the 8 int16 in each 128-bit lane, over eight lanes each: the scales
 * of two 16-wide sub-blocks, as maddubs lays out 32 weights. */
static inline __m256i two_scales(__m256i scales, int g) {
    __m256i control = _mm256_set_m128i(_mm_set1_epi16((short)((2 * g + 3) << 8 | (2 * g + 2))),
                                       _mm_set1_epi16((short)((2 * g + 1) << 8 | (2 * g))));
    return _mm256_shuffle_epi8(scales, control);
}

/* Scales 8h..8h+7 of 16 int16 scales, in both 128-bit lanes. */
static inline __m256i half_of_scales(__m256i scales16, int h) {
    __m128i half = h ? _mm256_extracti128_si256(scales16, 1) : _mm256_castsi256_si128(scales16);
    return _mm256_broadcastsi128_si256(half);
}

/* Q4_K and Q5_K: the levels of sub-blocks 2c (from the low nibbles of 32 bytes of qs) and
 * 2c + 1 (high nibbles) times their activations and scales. The min term comes later, from
 * the activations' bsums. */
static inline __m256i q4k_pair(__m256i low, __m256i high, const int8_t *y, __m256i scales, int c) {
    __m256i s = scaled_dot32(low, y, one_scale(scales, 2 * c));
    return _mm256_add_epi32(s, scaled_dot32(high, y + 32, one_scale(scales, 2 * c + 1)));
}

/* The exact integer sum of levels x activations x scales of one Q4_K block, in 8 int32 lanes. */
static inline __m256i q4_k_block_sums(const q3_block_q4_k *w, const q3_block_q8_k *x, __m128i scales_mins) {
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scales_mins));
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m256i q = loadu(w->qs + 32 * c);
        __m256i low = _mm256_and_si256(q, nibble);
        __m256i high = _mm256_and_si256(_mm256_srli_epi16(q, 4), nibble);
        acc = _mm256_add_epi32(acc, q4k_pair(low, high, x->qs + 64 * c, scales, c));
    }
    return acc;
}

/* q4_k_block_sums folded to four lanes: the primitive of dot_x86.h's Q4_K loops. */
static inline __attribute__((always_inline)) __m128i q4_k_block_folded(const q3_block_q4_k *w, const q3_block_q8_k *x, __m128i scales_mins) {
    return fold_to_128(q4_k_block_sums(w, x, scales_mins));
}

float q3_q4_k_vec_dot_avx2(int64_t n, const void *w, const void *x) { return q3_x86_q4_k_dot(n, w, x); }

void q3_q4_k_vec_dot_rows_avx2(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out) {
    q3_x86_q4_k_dot_rows(n, w, w_stride, nr, x, out, q3_q4_k_vec_dot_avx2);
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
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i q = loadu(bw[i].qs + 32 * c);
            __m256i low = _mm256_or_si256(_mm256_and_si256(q, nibble), high_bit(qh, 2 * c));
            __m256i high = _mm256_and_si256(_mm256_srli_epi16(q, 4), nibble);
            high = _mm256_or_si256(high, high_bit(qh, 2 * c + 1));
            acc = _mm256_add_epi32(acc, q4k_pair(low, high, bx[i].qs + 64 * c, scales, c));
        }
        __m128i min_terms = q3_x86_kmin_terms(scales_mins, bx[i].bsums);
        sum = q3_x86_kdot_tail(sum, bx[i].d, &bw[i].d, q3_x86_sum_pair(fold_to_128(acc), min_terms));
    }
    return sum;
}

/* The block's sum of scale * level * y, minus offset * sum(scale * bsums): the kernels below
 * multiply level + offset (unsigned, as maddubs needs) and correct by the same integer. */
static inline __m128i offset_corrected4(__m256i acc, __m256i scales16, const int16_t *bsums, int offset) {
    __m128i correction = fold_to_128(_mm256_madd_epi16(scales16, loadu(bsums)));
    return _mm_sub_epi32(fold_to_128(acc), _mm_mullo_epi32(correction, _mm_set1_epi32(offset)));
}

static inline int32_t offset_corrected(__m256i acc, __m256i scales16, const int16_t *bsums, int offset) {
    __m128i s = offset_corrected4(acc, scales16, bsums, offset);
    return _mm_cvtsi128_si32(q3_x86_sum_pair(s, s));
}

/* Q6_K levels are 0..63 with x = d * sc * (q - 32). In half h, ql[64h + l] holds weights
 * 128h + l (low nibble) and 128h + 64 + l (high), ql[64h + 32 + l] weights 128h + 32 + l and
 * 128h + 96 + l; qh[32h + l] their top bits in pairs 0-1, 2-3, 4-5, 6-7. Word shifts are safe:
 * the 0x30 mask drops what crosses between the bytes of a word. */
/* The block's four int32 lanes of sum(scale * level * y) - 32 * sum(scale * bsums). */
static inline __attribute__((always_inline)) __m128i q6_k_block_folded(const q3_block_q6_k *b, const q3_block_q8_k *x) {
    const __m256i nibble = _mm256_set1_epi8(0x0F), top = _mm256_set1_epi8(0x30);
    __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i ql0 = loadu(b->ql + 64 * h), ql1 = loadu(b->ql + 64 * h + 32);
        __m256i qh = loadu(b->qh + 32 * h), s = half_of_scales(sc16, h);
        __m256i q0 = _mm256_and_si256(ql0, nibble), q1 = _mm256_and_si256(ql1, nibble);
        __m256i q2 = _mm256_and_si256(_mm256_srli_epi16(ql0, 4), nibble);
        __m256i q3 = _mm256_and_si256(_mm256_srli_epi16(ql1, 4), nibble);
        q0 = _mm256_or_si256(q0, _mm256_and_si256(_mm256_slli_epi16(qh, 4), top));
        q1 = _mm256_or_si256(q1, _mm256_and_si256(_mm256_slli_epi16(qh, 2), top));
        q2 = _mm256_or_si256(q2, _mm256_and_si256(qh, top));
        q3 = _mm256_or_si256(q3, _mm256_and_si256(_mm256_srli_epi16(qh, 2), top));
        const int8_t *y = x->qs + 128 * h;
        acc = _mm256_add_epi32(acc, scaled_dot32(q0, y, two_scales(s, 0)));
        acc = _mm256_add_epi32(acc, scaled_dot32(q1, y + 32, two_scales(s, 2)));
        acc = _mm256_add_epi32(acc, scaled_dot32(q2, y + 64, two_scales(s, 4)));
        acc = _mm256_add_epi32(acc, scaled_dot32(q3, y + 96, two_scales(s, 6)));
    }
    return offset_corrected4(acc, sc16, x->bsums, 32);
}

float q3_q6_k_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q6_k *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
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

void q3_q6_k_vec_dot_rows_avx2(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out) {
    q3_x86_k_dot_rows(n, w, w_stride, nr, x, out, sizeof(q3_block_q6_k), offsetof(q3_block_q6_k, d), false, q6_k_terms,
                      q3_q6_k_vec_dot_avx2);
}

/* Bit pair k of 32 bytes: the 2-bit levels of weights 128h + 32k + 0..31 in Q2_K and Q3_K. */
static inline __m256i bit_pair(__m256i q, int k) {
    return _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), _mm256_set1_epi8(3));
}

/* Q2_K: 16-wide sub-blocks with 4-bit scales (low nibble) and mins (high nibble). */
float q3_q2_k_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q2_k *bw = w;
    const q3_block_q8_k *bx = x;
    const __m128i nibble = _mm_set1_epi8(0x0F);
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        __m128i packed = _mm_loadu_si128((const __m128i *)bw[i].scales);
        __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, nibble));
        __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), nibble));
        __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i q = loadu(bw[i].qs + 32 * h), s = half_of_scales(sc16, h);
            const int8_t *y = bx[i].qs + 128 * h;
            acc = _mm256_add_epi32(acc, scaled_dot32(bit_pair(q, 0), y, two_scales(s, 0)));
            acc = _mm256_add_epi32(acc, scaled_dot32(bit_pair(q, 1), y + 32, two_scales(s, 2)));
            acc = _mm256_add_epi32(acc, scaled_dot32(bit_pair(q, 2), y + 64, two_scales(s, 4)));
            acc = _mm256_add_epi32(acc, scaled_dot32(bit_pair(q, 3), y + 96, two_scales(s, 6)));
        }
        __m128i min_terms = fold_to_128(_mm256_madd_epi16(m16, loadu(bx[i].bsums)));
        sum = q3_x86_kdot_tail(sum, bx[i].d, &bw[i].d, q3_x86_sum_pair(fold_to_128(acc), min_terms));
    }
    return sum;
}

/* Q3_K's level + 4 for weights 128h + 32k + 0..31: the low bits, plus 4 where bit 4h + k of
 * the hmask byte is set. */
static inline __m256i q3k_levels(__m256i q, __m256i hmask, int h, int k) {
    __m256i sel = _mm256_set1_epi8((char)(1 << (4 * h + k)));
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(hmask, sel), sel);
    return _mm256_or_si256(bit_pair(q, k), _mm256_and_si256(set, _mm256_set1_epi8(4)));
}

/* Q3_K: levels -4..3 against signed 6-bit scales per 16 weights. */
float q3_q3_k_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q3_k *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(q3_x86_q3k_scales(bw[i].scales));
        __m256i hmask = loadu(bw[i].hmask), acc = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i q = loadu(bw[i].qs + 32 * h), s = half_of_scales(sc16, h);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i levels = q3k_levels(q, hmask, h, k);
                const int8_t *y = bx[i].qs + 128 * h + 32 * k;
                acc = _mm256_add_epi32(acc, scaled_dot32(levels, y, two_scales(s, 2 * k)));
            }
        }
        int32_t sum_qy = offset_corrected(acc, sc16, bx[i].bsums, 4);
        sum = q3_kdot_accumulate(sum, bx[i].d, half_to_float(bw[i].d), 0, sum_qy, 0);
    }
    return sum;
}

/* ---- activation quantizers: the loops of dot_x86.h ---- */

static inline void store_i8x32(int8_t *dst, const __m256i *q) {
    __m256i ab = _mm256_packs_epi32(q[0], q[1]), cd = _mm256_packs_epi32(q[2], q[3]);
    __m256i bytes = _mm256_packs_epi16(ab, cd); /* in-lane packing interleaves 4-byte groups */
    bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)dst, bytes);
}

void q3_q8_0_from_float_avx2(const float *src, void *dst, int64_t n) { x86_q8_0_from_float(src, dst, n); }
void q3_q8_k_from_float_avx2(const float *src, void *dst, int64_t n) { x86_q8_k_from_float(src, dst, n); }

#else
typedef int q3_dot_avx2_unused; /* ISO C wants a declaration in every translation unit */
#endif
