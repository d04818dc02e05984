/* NEON versions of the vector routines, for every AArch64 CPU (compiled to nothing elsewhere).
 * exp uses the same range reduction and polynomial as vec_avx2.c, so the ISAs agree to a few
 * ulp; conversions are exact. Tails shorter than a vector go to the portable versions. */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>
#include "cpu/kernels.h"
#include "cpu/vec.h"

/* FCVTL widens IEEE halves exactly, subnormals included (the default FPCR keeps them). */
void q3_f16_to_float_neon(const void *half, float *dst, int64_t n) {
    const uint16_t *src = half;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(src + i));
        vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(dst + i + 4, vcvt_high_f32_f16(h));
    }
    q3_vec_scalar_ops.f16_to_f32(src + i, dst + i, n - i);
}

/* bf16 is the top half of an f32: a widening shift by 16. */
void q3_bf16_to_float_neon(const void *half, float *dst, int64_t n) {
    const uint16_t *src = half;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16x8_t b = vld1q_u16(src + i);
        vst1q_f32(dst + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(b), 16)));
        vst1q_f32(dst + i + 4, vreinterpretq_f32_u32(vshll_high_n_u16(b, 16)));
    }
    q3_vec_scalar_ops.bf16_to_f32(src + i, dst + i, n - i);
}

/* Four outputs by 16 columns: the 16 accumulators stay in registers over all n rows. */
static void mix_4x16(float *out, size_t os, const float *w, size_t ws, const float *v, int n, int hd) {
    float32x4_t a[4][4];
#pragma GCC unroll 4
    for (int o = 0; o < 4; o++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) a[o][k] = vdupq_n_f32(0);
    for (int p = 0; p < n; p++) {
        const float *vp = v + (size_t)p * hd;
        float32x4_t x[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) x[k] = vld1q_f32(vp + 4 * k);
        for (int o = 0; o < 4; o++)
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) a[o][k] = vfmaq_n_f32(a[o][k], x[k], w[o * ws + p]);
    }
#pragma GCC unroll 4
    for (int o = 0; o < 4; o++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) vst1q_f32(out + o * os + 4 * k, a[o][k]);
}

/* One output, columns [d0, hd): 4 at a time, then one at a time with the same fused rounding. */
static void mix_rest(float *out, const float *w, const float *v, int n, int hd, int d0) {
    int d = d0;
    for (; d + 4 <= hd; d += 4) {
        float32x4_t a = vdupq_n_f32(0);
        for (int p = 0; p < n; p++) a = vfmaq_n_f32(a, vld1q_f32(v + (size_t)p * hd + d), w[p]);
        vst1q_f32(out + d, a);
    }
    for (; d < hd; d++) {
        float a = 0;
        for (int p = 0; p < n; p++) a = fmaf(w[p], v[(size_t)p * hd + d], a);
        out[d] = a;
    }
}

static void mix_rows(float *out, size_t os, const float *w, size_t ws, int n_out, const float *v, int n, int hd) {
    int wide = hd / 16 * 16, o = 0;
    for (; o + 4 <= n_out; o += 4) {
        for (int d = 0; d < wide; d += 16) mix_4x16(out + o * os + d, os, w + o * ws, ws, v + d, n, hd);
        for (int k = 0; k < 4; k++) mix_rest(out + (o + k) * os, w + (o + k) * ws, v, n, hd, wide);
    }
    for (; o < n_out; o++) mix_rest(out + o * os, w + o * ws, v, n, hd, 0);
}

/* One score: 4 lanes over d, a fixed reduction, then the last d % 4 terms one at a time. */
static float dot_one(const float *q, const float *k, int hd) {
    float32x4_t a = vdupq_n_f32(0);
    int d = 0;
    for (; d + 4 <= hd; d += 4) a = vfmaq_f32(a, vld1q_f32(q + d), vld1q_f32(k + d));
    float32x2_t h = vadd_f32(vget_low_f32(a), vget_high_f32(a));
    float s = vget_lane_f32(h, 0) + vget_lane_f32(h, 1);
    for (; d < hd; d++) s = fmaf(q[d], k[d], s);
    return s;
}

static void dot_rows(float *out, size_t out_stride, const float *q, int n_out, const float *k, int n, int hd) {
    for (int o = 0; o < n_out; o++)
        for (int p = 0; p < n; p++) out[(size_t)o * out_stride + p] = dot_one(q + (size_t)o * hd, k + (size_t)p * hd, hd);
}

/* exp(x) = 2^k * exp(r), r = x - k ln2 in [-ln2/2, ln2/2] (ln2 in two parts, so r is exact to a
 * few ulp), exp(r) by a degree-6 polynomial, 2^k built in the exponent bits. The clamp keeps k
 * within the normal exponents. */
static float32x4_t exp4(float32x4_t x) {
    x = vmaxq_f32(vminq_f32(x, vdupq_n_f32(88.3762626647949f)), vdupq_n_f32(-87.3365478515625f));
    float32x4_t k = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, k, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, k, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(k), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

static float exp_sum(float *x, float max, int n) {
    float32x4_t vm = vdupq_n_f32(max), acc = vdupq_n_f32(0);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = exp4(vsubq_f32(vld1q_f32(x + i), vm));
        vst1q_f32(x + i, v);
        acc = vaddq_f32(acc, v);
    }
    return vaddvq_f32(acc) + q3_vec_scalar_ops.exp_sum(x + i, max, n - i);
}

/* No F16 row kernels yet: attention widens the cached rows first (vec.h). */
const q3_vec_ops q3_vec_neon_ops = {q3_f16_to_float_neon, q3_bf16_to_float_neon, mix_rows, dot_rows, exp_sum, NULL, NULL, NULL};
#endif
