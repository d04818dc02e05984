/* AVX2 + FMA + F16C versions of the vector routines (compiled with those flags; only called
 * when the CPU has them). exp uses the same range reduction and polynomial as vec_avx512.c. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include "cpu/kernels.h"
#include "cpu/prefetch_x86.h"
#include "cpu/vec.h"
#include "quant/blocks.h"

#define Q3_X86_BITS 256
#include "cpu/vec_x86.h"

/* Attention widens every cached F16 key and value row through this at depth, a stream the
 * hardware prefetchers lose at each page run: it asks for the bytes ahead itself. */
void q3_f16_to_float_avx2(const void *half, float *dst, int64_t n) {
    const uint16_t *src = half;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        if (i % 32 == 0) _mm_prefetch((const char *)(src + i) + Q3_X86_PREFETCH_AHEAD, _MM_HINT_T0);
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    }
    q3_vec_scalar_ops.f16_to_f32(src + i, dst + i, n - i);
}

void q3_bf16_to_float_avx2(const void *half, float *dst, int64_t n) {
    const uint16_t *src = half;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    q3_vec_scalar_ops.bf16_to_f32(src + i, dst + i, n - i);
}

/* The end of one score from its 8-lane accumulator a over columns [0, d): a fixed reduction,
 * then the last terms one at a time. */
INLINE float dot_end(__m256 a, const float *q, row_src s, int kind, int p, int d) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    float sum = _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
    for (; d < s.hd; d++) sum = fmaf(q[d], row_one(s, kind, p, d), sum);
    return sum;
}

/* One score: 8 lanes over d, then dot_end. */
INLINE float dot_one(const float *q, row_src s, int kind, int p) {
    __m256 a = _mm256_setzero_ps();
    int d = 0;
    for (; d + 8 <= s.hd; d += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), row_vec(s, kind, p, d), a);
    return dot_end(a, q, s, kind, p, d);
}

/* Four query rows by rows p, p + 1: eight scores, each dot_one's chain, side by side. One
 * score's multiply-adds wait on each other's latency; eight chains keep the FMA units busy,
 * and each key vector is widened once for four queries. */
INLINE void dot_4x2(float *out, size_t os, const float *q, row_src s, int kind, int p) {
    __m256 a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) a[i] = _mm256_setzero_ps();
    int d = 0;
    for (; d + 8 <= s.hd; d += 8) {
        __m256 k0 = row_vec(s, kind, p, d), k1 = row_vec(s, kind, p + 1, d);
#pragma GCC unroll 4
        for (int o = 0; o < 4; o++) {
            __m256 qv = _mm256_loadu_ps(q + (size_t)o * s.hd + d);
            a[2 * o] = _mm256_fmadd_ps(qv, k0, a[2 * o]);
            a[2 * o + 1] = _mm256_fmadd_ps(qv, k1, a[2 * o + 1]);
        }
    }
    for (int o = 0; o < 4; o++)
        for (int r = 0; r < 2; r++) out[o * os + p + r] = dot_end(a[2 * o + r], q + (size_t)o * s.hd, s, kind, p + r, d);
}

/* Score (o, p) takes dot_4x2 where o and p lie in whole blocks, dot_one elsewhere: the same
 * bits either way. Rows in the outer loop, so each pair runs past every query in L1. */
INLINE void dot_any(float *out, size_t os, const float *q, int n_out, row_src s, int kind, int n) {
    int p = 0;
    for (; p + 2 <= n; p += 2) {
        ask_score_rows(s, kind, p, n);
        ask_score_rows(s, kind, p + 1, n);
        int o = 0;
        for (; o + 4 <= n_out; o += 4) dot_4x2(out + (size_t)o * os, os, q + (size_t)o * s.hd, s, kind, p);
        for (; o < n_out; o++)
            for (int r = p; r < p + 2; r++) out[(size_t)o * os + r] = dot_one(q + (size_t)o * s.hd, s, kind, r);
    }
    for (; p < n; p++)
        for (int o = 0; o < n_out; o++) out[(size_t)o * os + p] = dot_one(q + (size_t)o * s.hd, s, kind, p);
}

static void dot_rows(float *out, size_t os, const float *q, int n_out, const float *k, int n, int hd) {
    dot_any(out, os, q, n_out, (row_src){k, NULL, NULL, hd}, ROW_F32, n);
}

static void dot_rows_f16(float *out, size_t os, const float *q, int n_out, const uint16_t *const *rows, int n, int hd) {
    dot_any(out, os, q, n_out, (row_src){NULL, rows, NULL, hd}, ROW_F16, n);
}

/* exp(x) = 2^k * exp(r), r = x - k ln2 in [-ln2/2, ln2/2], exp(r) by a degree-6 polynomial. */
static __m256 exp8(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f)), _mm256_set1_ps(-87.3365478515625f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static float exp_sum(float *x, float max, int n) {
    __m256 vm = _mm256_set1_ps(max), acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, v);
        acc = _mm256_add_ps(acc, v);
    }
    float lanes[8], s = 0;
    _mm256_storeu_ps(lanes, acc);
    for (int l = 0; l < 8; l++) s += lanes[l];
    return s + q3_vec_scalar_ops.exp_sum(x + i, max, n - i);
}

const q3_vec_ops q3_vec_avx2_ops = {q3_f16_to_float_avx2, q3_bf16_to_float_avx2, mix_rows, dot_rows, exp_sum,
                                   dot_rows_f16,         mix_rows_f16,          mix_rows_q8_0};
#endif
