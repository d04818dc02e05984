/* AVX-512 versions of the vector routines (compiled with AVX-512 flags; only called when the CPU
 * has them). */
#if defined(__x86_64__)
#include <immintrin.h>
#include "cpu/kernels.h"
#include "cpu/prefetch_x86.h"
#include "cpu/vec.h"

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

/* Four outputs by 64 columns: the 16 accumulators stay in registers over all n rows, and each row
 * of v is loaded once for the four. */
static void mix_4x64(float *out, size_t os, const float *w, size_t ws, const float *v, int n, int hd) {
    __m512 a[4][4];
#pragma GCC unroll 4
    for (int o = 0; o < 4; o++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) a[o][k] = _mm512_setzero_ps();
    for (int p = 0; p < n; p++) {
        const float *vp = v + (size_t)p * hd;
        __m512 x[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) x[k] = _mm512_loadu_ps(vp + 16 * k);
#pragma GCC unroll 4
        for (int o = 0; o < 4; o++) {
            __m512 wo = _mm512_set1_ps(w[o * ws + p]);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) a[o][k] = _mm512_fmadd_ps(wo, x[k], a[o][k]);
        }
    }
#pragma GCC unroll 4
    for (int o = 0; o < 4; o++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) _mm512_storeu_ps(out + o * os + 16 * k, a[o][k]);
}

/* One output, columns [d0, hd), 16 at a time (the last masked): the same sums, for the outputs
 * and columns the 4 x 64 blocks leave over. */
static void mix_rest(float *out, const float *w, const float *v, int n, int hd, int d0) {
    for (int d = d0; d < hd; d += 16) {
        __mmask16 m = hd - d >= 16 ? 0xffff : (__mmask16)((1u << (hd - d)) - 1);
        __m512 a = _mm512_setzero_ps();
        for (int p = 0; p < n; p++)
            a = _mm512_fmadd_ps(_mm512_set1_ps(w[p]), _mm512_maskz_loadu_ps(m, v + (size_t)p * hd + d), a);
        _mm512_mask_storeu_ps(out + d, m, a);
    }
}

static void mix_rows(float *out, size_t os, const float *w, size_t ws, int n_out, const float *v, int n, int hd) {
    int wide = hd / 64 * 64, o = 0;
    for (; o + 4 <= n_out; o += 4) {
        for (int d = 0; d < wide; d += 64) mix_4x64(out + o * os + d, os, w + o * ws, ws, v + d, n, hd);
        for (int k = 0; k < 4; k++) mix_rest(out + (o + k) * os, w + (o + k) * ws, v, n, hd, wide);
    }
    for (; o < n_out; o++) mix_rest(out + o * os, w + o * ws, v, n, hd, 0);
}

/* Scores reduce each 16-lane accumulator by one tree: lanes i + (i + 8), then + 4, + 2, + 1.
 * sum16 does it for 16 accumulators at once (accumulator 4m + j ends in lane 4j + m), sum1 for
 * one. */
static inline __attribute__((always_inline)) __m512 sum16(const __m512 v[16]) {
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

/* q . k over hd, 16 lanes (the last step masked) into acc: the accumulation of every score. */
static inline __m512 dot_lanes(const float *q, const float *k, int hd, __m512 acc) {
    for (int d = 0; d < hd; d += 16) {
        __mmask16 m = hd - d >= 16 ? 0xffff : (__mmask16)((1u << (hd - d)) - 1);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + d), _mm512_maskz_loadu_ps(m, k + d), acc);
    }
    return acc;
}

/* Four query rows by four key rows: 16 accumulators, each query and key vector loaded once for
 * four products, and one transposed reduction for the 16 scores. */
static void dot_4x4(float *out, size_t os, const float *q, const float *k, int hd) {
    __m512 acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    for (int d = 0; d < hd; d += 16) {
        __mmask16 m = hd - d >= 16 ? 0xffff : (__mmask16)((1u << (hd - d)) - 1);
        __m512 kv[4];
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) kv[p] = _mm512_maskz_loadu_ps(m, k + (size_t)p * hd + d);
#pragma GCC unroll 4
        for (int o = 0; o < 4; o++) {
            __m512 qv = _mm512_maskz_loadu_ps(m, q + (size_t)o * hd + d);
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) acc[4 * o + p] = _mm512_fmadd_ps(qv, kv[p], acc[4 * o + p]);
        }
    }
    float s[16];
    _mm512_storeu_ps(s, sum16(acc));
    for (int o = 0; o < 4; o++)
        for (int p = 0; p < 4; p++) out[o * os + p] = s[4 * p + o];
}

static void dot_rows(float *out, size_t os, const float *q, int n_out, const float *k, int n, int hd) {
    int o = 0;
    for (; o + 4 <= n_out; o += 4) {
        int p = 0;
        for (; p + 4 <= n; p += 4) dot_4x4(out + o * os + p, os, q + (size_t)o * hd, k + (size_t)p * hd, hd);
        for (; p < n; p++)
            for (int r = o; r < o + 4; r++)
                out[r * os + p] = sum1(dot_lanes(q + (size_t)r * hd, k + (size_t)p * hd, hd, _mm512_setzero_ps()));
    }
    for (; o < n_out; o++)
        for (int p = 0; p < n; p++)
            out[o * os + p] = sum1(dot_lanes(q + (size_t)o * hd, k + (size_t)p * hd, hd, _mm512_setzero_ps()));
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

const q3_vec_ops q3_vec_avx512_ops = {q3_f16_to_float_avx512, q3_bf16_to_float_avx512, mix_rows, dot_rows, exp_sum};
#endif
