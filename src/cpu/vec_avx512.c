/* AVX-512 versions of the vector routines (compiled with AVX-512 flags; only called when the CPU
 * has them). */
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdbool.h>
#include "cpu/kernels.h"
#include "cpu/prefetch_x86.h"
#include "cpu/vec.h"
#include "quant/blocks.h"

#define Q3_X86_BITS 512
#include "cpu/vec_x86.h"

/* Attention widens every cached F16 key and value row through this at depth, a stream the
 * hardware prefetchers lose at each page run: it asks for the bytes ahead itself. */
void q3_f16_to_float_avx512(const void *half, float *dst, int64_t n) {
    const uint16_t *src = half;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        if (i % 32 == 0) _mm_prefetch((const char *)(src + i) + Q3_X86_PREFETCH_AHEAD, _MM_HINT_T0);
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    }
    q3_vec_avx2_ops.f16_to_f32(src + i, dst + i, n - i);
}

void q3_bf16_to_float_avx512(const void *half, float *dst, int64_t n) {
    const uint16_t *src = half;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
    q3_vec_avx2_ops.bf16_to_f32(src + i, dst + i, n - i);
}

/* 16 values of row p from column d, lanes outside m zero (Q8_0 rows, whose hd is a multiple
 * of 32, never need the mask): the scores' masked tails. */
INLINE __m512 row16(row_src s, int kind, int p, int d, __mmask16 m) {
    if (kind == ROW_F16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, s.h[p] + d));
    if (kind == ROW_F32) return _mm512_maskz_loadu_ps(m, s.v + (size_t)p * s.hd + d);
    return row_vec(s, kind, p, d);
}

static inline __mmask16 lanes_left(int hd, int d) { return hd - d >= 16 ? 0xffff : (__mmask16)((1u << (hd - d)) - 1); }

/* Scores reduce each 16-lane accumulator by one tree: lanes i + (i + 8), then + 4, + 2, + 1.
 * sum16 does it for 16 accumulators at once (accumulator 4m + j ends in lane 4j + m), sum1 for
 * one. */
INLINE __m512 sum16(const __m512 v[16]) {
    __m512 a[8], b[4], c[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* [v lanes 0-7 + 8-15 | w lanes 0-7 + 8-15] */
        a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) /* four accumulators' lanes 0-3 + 4-7, one per 128-bit lane */
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xDD));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) /* lanes 0-1 + 2-3 */
        c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0x44), _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0xEE));
    /* lane 0 + lane 1 */
    return _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], 0x88), _mm512_shuffle_ps(c[0], c[1], 0xDD));
}

static float sum1(__m512 v) {
    float x[16], s[8], t[4];
    _mm512_storeu_ps(x, v);
    for (int i = 0; i < 8; i++) s[i] = x[i] + x[i + 8];
    for (int i = 0; i < 4; i++) t[i] = s[i] + s[i + 4];
    return (t[0] + t[2]) + (t[1] + t[3]);
}

/* One score: q . row p over hd, 16 lanes (the last step masked), reduced by sum1. */
INLINE float dot_one(const float *q, row_src s, int kind, int p) {
    __m512 acc = _mm512_setzero_ps();
    for (int d = 0; d < s.hd; d += 16) {
        __mmask16 m = lanes_left(s.hd, d);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + d), row16(s, kind, p, d, m), acc);
    }
    return sum1(acc);
}

/* Four query rows by rows p..p+3: 16 accumulators, each query and key vector loaded once for
 * four products, and one transposed reduction for the 16 scores. */
INLINE void dot_4x4(float *out, size_t os, const float *q, row_src s, int kind, int p) {
    __m512 acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    for (int d = 0; d < s.hd; d += 16) {
        __mmask16 m = lanes_left(s.hd, d);
        __m512 kv[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) kv[r] = row16(s, kind, p + r, d, m);
#pragma GCC unroll 4
        for (int o = 0; o < 4; o++) {
            __m512 qv = _mm512_maskz_loadu_ps(m, q + (size_t)o * s.hd + d);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) acc[4 * o + r] = _mm512_fmadd_ps(qv, kv[r], acc[4 * o + r]);
        }
    }
    float sums[16];
    _mm512_storeu_ps(sums, sum16(acc));
    for (int o = 0; o < 4; o++)
        for (int r = 0; r < 4; r++) out[o * os + p + r] = sums[4 * r + o];
}

/* Score (o, p) takes dot_4x4 when o and p both lie in whole blocks of four, dot_one otherwise,
 * in either loop order: rows p..p+3 run past every block of queries while they sit in L1. */
INLINE void dot_any(float *out, size_t os, const float *q, int n_out, row_src s, int kind, int n) {
    int hd = s.hd, p = 0;
    for (; p + 4 <= n; p += 4) {
        for (int r = 0; r < 4; r++)
            ask_score_rows(s, kind, p + r, n);
        int o = 0;
        for (; o + 4 <= n_out; o += 4) dot_4x4(out + o * os, os, q + (size_t)o * hd, s, kind, p);
        for (; o < n_out; o++)
            for (int r = p; r < p + 4; r++) out[o * os + r] = dot_one(q + (size_t)o * hd, s, kind, r);
    }
    for (; p < n; p++)
        for (int o = 0; o < n_out; o++) out[o * os + p] = dot_one(q + (size_t)o * hd, s, kind, p);
}

static void dot_rows(float *out, size_t os, const float *q, int n_out, const float *k, int n, int hd) {
    dot_any(out, os, q, n_out, (row_src){k, NULL, NULL, hd}, ROW_F32, n);
}

static void dot_rows_f16(float *out, size_t os, const float *q, int n_out, const uint16_t *const *rows, int n, int hd) {
    dot_any(out, os, q, n_out, (row_src){NULL, rows, NULL, hd}, ROW_F16, n);
}

static __m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f)), _mm512_set1_ps(-87.3365478515625f));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, k);
}

static float exp_sum(float *x, float max, int n) {
    __m512 vm = _mm512_set1_ps(max), acc = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(x + i, v);
        acc = _mm512_add_ps(acc, v);
    }
    return _mm512_reduce_add_ps(acc) + q3_vec_avx2_ops.exp_sum(x + i, max, n - i);
}

const q3_vec_ops q3_vec_avx512_ops = {q3_f16_to_float_avx512, q3_bf16_to_float_avx512, mix_rows, dot_rows, exp_sum,
                                     dot_rows_f16,           mix_rows_f16,            mix_rows_q8_0};
#endif
