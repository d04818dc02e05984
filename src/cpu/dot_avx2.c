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

#include <immintrin.h>
#include "quant/blocks.h"

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

/* Eight int16 lanes of `low` then eight of `high`: the scales of two adjacent 16-wide
 * sub-blocks, matching the int16 lanes maddubs makes of 32 consecutive weights. */
static inline __m256i scale_pair(int low, int high) {
    return _mm256_set_m128i(_mm_set1_epi16((short)high), _mm_set1_epi16((short)low));
}

/* ---- float types: eight lanes, four accumulators ---- */

float q3_f32_vec_dot_avx2(int64_t n, const void *w, const void *xv) {
    const float *a = w, *x = xv;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++)
            acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8 * k), _mm256_loadu_ps(x + i + 8 * k), acc[k]);
    for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(x + i), acc[0]);
    float tail = 0;
    for (; i < n; i++) tail += a[i] * x[i];
    return hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))) + tail;
}

float q3_f16_vec_dot_avx2(int64_t n, const void *w, const void *xv) {
    const uint16_t *a = w;
    const float *x = xv;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++) {
            __m256 wf = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8 * k)));
            acc[k] = _mm256_fmadd_ps(wf, _mm256_loadu_ps(x + i + 8 * k), acc[k]);
        }
    for (; i + 8 <= n; i += 8)
        acc[0] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i))),
                                 _mm256_loadu_ps(x + i), acc[0]);
    float tail = 0;
    for (; i < n; i++) tail += half_to_float(a[i]) * x[i];
    return hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))) + tail;
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
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++)
            acc[k] = _mm256_fmadd_ps(load_bf16x8(a + i + 8 * k), _mm256_loadu_ps(x + i + 8 * k), acc[k]);
    for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(load_bf16x8(a + i), _mm256_loadu_ps(x + i), acc[0]);
    float tail = 0;
    for (; i < n; i++) tail += q3_bf16_to_f32(a[i]) * x[i];
    return hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))) + tail;
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

/* ---- K-quants ---- */

/* sum m_j * (bsums[2j] + bsums[2j + 1]): the min term of Q4_K / Q5_K over 8 sub-blocks of 32. */
static inline int32_t kquant_min_term(const uint32_t mins[2], const int16_t *bsums) {
    __m256i bs = loadu(bsums);
    __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    __m128i m = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)mins[1], (int)mins[0]));
    __m128i s = _mm_madd_epi16(pairs, m);
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* One 32-weight sub-block: levels q (bytes 0..31) times y, scaled by sc, as int32 lanes. */
static inline __m256i scaled_dot32(__m256i q, const int8_t *y, int sc) {
    __m256i p = _mm256_maddubs_epi16(q, loadu(y));
    return _mm256_madd_epi16(p, _mm256_set1_epi16((short)sc));
}

float q3_q4_k_vec_dot_avx2(int64_t n, const void *w, const void *x) {
    const q3_block_q4_k *bw = w;
    const q3_block_q8_k *bx = x;
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        uint32_t scw[2], mw[2];
        q3_kscale_unpack_words(bw[i].scales, scw, mw);
        uint8_t sc[8];
        memcpy(sc, scw, 8);
        __m256i acc = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) { /* 32 bytes: sub-blocks 2c (low nibbles), 2c+1 (high) */
            __m256i q = loadu(bw[i].qs + 32 * c);
            const int8_t *y = bx[i].qs + 64 * c;
            acc = _mm256_add_epi32(acc, scaled_dot32(_mm256_and_si256(q, nibble), y, sc[2 * c]));
            acc = _mm256_add_epi32(acc, scaled_dot32(_mm256_and_si256(_mm256_srli_epi16(q, 4), nibble),
                                                     y + 32, sc[2 * c + 1]));
        }
        sum = q3_kdot_accumulate(sum, bx[i].d, half_to_float(bw[i].d), half_to_float(bw[i].dmin),
                                 hsum_epi32(acc), kquant_min_term(mw, bx[i].bsums));
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
        uint32_t scw[2], mw[2];
        q3_kscale_unpack_words(bw[i].scales, scw, mw);
        uint8_t sc[8];
        memcpy(sc, scw, 8);
        __m256i qh = loadu(bw[i].qh), acc = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i q = loadu(bw[i].qs + 32 * c);
            const int8_t *y = bx[i].qs + 64 * c;
            __m256i low = _mm256_or_si256(_mm256_and_si256(q, nibble), high_bit(qh, 2 * c));
            __m256i high = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), nibble),
                                           high_bit(qh, 2 * c + 1));
            acc = _mm256_add_epi32(acc, scaled_dot32(low, y, sc[2 * c]));
            acc = _mm256_add_epi32(acc, scaled_dot32(high, y + 32, sc[2 * c + 1]));
        }
        sum = q3_kdot_accumulate(sum, bx[i].d, half_to_float(bw[i].d), half_to_float(bw[i].dmin),
                                 hsum_epi32(acc), kquant_min_term(mw, bx[i].bsums));
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
        const int8_t *sc = bw[i].scales;
        __m256i acc = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = loadu(bw[i].ql + 64 * h), ql1 = loadu(bw[i].ql + 64 * h + 32);
            __m256i qh = loadu(bw[i].qh + 32 * h);
            /* Weights 128h + 0..31, +32..63, +64..95, +96..127, each with its two top bits. */
            __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, nibble), _mm256_and_si256(_mm256_slli_epi16(qh, 4), top)),
                _mm256_or_si256(_mm256_and_si256(ql1, nibble), _mm256_and_si256(_mm256_slli_epi16(qh, 2), top)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), nibble), _mm256_and_si256(qh, top)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), nibble),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), top)),
            };
            for (int k = 0; k < 4; k++) {
                int g = 8 * h + 2 * k; /* the two 16-wide sub-blocks of these 32 weights */
                __m256i p = _mm256_maddubs_epi16(q[k], loadu(bx[i].qs + 128 * h + 32 * k));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scale_pair(sc[g], sc[g + 1])));
            }
        }
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
        int32_t offset = hsum_epi32(_mm256_madd_epi16(sc16, loadu(bx[i].bsums)));
        sum = q3_kdot_accumulate(sum, bx[i].d, half_to_float(bw[i].d), 0, hsum_epi32(acc) - 32 * offset, 0);
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
