/* NEON versions of the vector routines, for every AArch64 CPU (compiled to nothing elsewhere).
 * exp uses the same range reduction and polynomial as vec_avx2.c, so the ISAs agree to a few
 * ulp; conversions are exact. Tails shorter than a vector go to the portable versions. */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>
#include "base/half.h"
#include "cpu/kernels.h"
#include "cpu/row_src.h"
#include "cpu/vec.h"
#include "quant/blocks.h"

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

#define INLINE static inline __attribute__((always_inline))

/* 4 values of row p from column d (d a multiple of 4): a Q8_0 level times its block's scale, one
 * rounding, as to_float. Q8_0 levels come from the 8-byte half-block that holds them, so no load
 * reads past a block. */
INLINE float32x4_t row4(row_src s, int kind, int p, int d) {
    if (kind == ROW_F16) return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(s.h[p] + d)));
    if (kind == ROW_Q8_0) {
        const q3_block_q8_0 *blk = (const q3_block_q8_0 *)s.b[p] + d / Q3_QK;
        int16x8_t q = vmovl_s8(vld1_s8(blk->qs + d % Q3_QK / 8 * 8));
        int32x4_t l = d % 8 ? vmovl_high_s16(q) : vmovl_s16(vget_low_s16(q));
        return vmulq_n_f32(vcvtq_f32_s32(l), q3_f16_to_f32(blk->d));
    }
    return vld1q_f32(s.v + (size_t)p * s.hd + d);
}

/* One value of row p, as row4 gives it. */
INLINE float row1(row_src s, int kind, int p, int d) {
    if (kind == ROW_F16) return q3_f16_to_f32(s.h[p][d]);
    if (kind == ROW_Q8_0) {
        const q3_block_q8_0 *blk = (const q3_block_q8_0 *)s.b[p] + d / Q3_QK;
        return (float)blk->qs[d % Q3_QK] * q3_f16_to_f32(blk->d);
    }
    return s.v[(size_t)p * s.hd + d];
}

/* Four outputs by the 16 columns from d0: the 16 accumulators stay in registers over all n
 * rows. */
INLINE void mix_4x16(float *out, size_t os, const float *w, size_t ws, row_src s, int kind, int n, int d0) {
    float32x4_t a[4][4];
#pragma GCC unroll 4
    for (int o = 0; o < 4; o++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) a[o][k] = vdupq_n_f32(0);
    for (int p = 0; p < n; p++) {
        float32x4_t x[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) x[k] = row4(s, kind, p, d0 + 4 * k);
        for (int o = 0; o < 4; o++)
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) a[o][k] = vfmaq_n_f32(a[o][k], x[k], w[o * ws + p]);
    }
#pragma GCC unroll 4
    for (int o = 0; o < 4; o++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) vst1q_f32(out + o * os + d0 + 4 * k, a[o][k]);
}

/* One output, columns [d0, hd): 4 at a time, then one at a time with the same fused rounding. */
INLINE void mix_rest(float *out, const float *w, row_src s, int kind, int n, int d0) {
    int d = d0;
    for (; d + 4 <= s.hd; d += 4) {
        float32x4_t a = vdupq_n_f32(0);
        for (int p = 0; p < n; p++) a = vfmaq_n_f32(a, row4(s, kind, p, d), w[p]);
        vst1q_f32(out + d, a);
    }
    for (; d < s.hd; d++) {
        float a = 0;
        for (int p = 0; p < n; p++) a = fmaf(w[p], row1(s, kind, p, d), a);
        out[d] = a;
    }
}

INLINE void mix_any(float *out, size_t os, const float *w, size_t ws, int n_out, row_src s, int kind, int n) {
    int wide = s.hd / 16 * 16, o = 0;
    for (; o + 4 <= n_out; o += 4) {
        for (int d = 0; d < wide; d += 16) mix_4x16(out + o * os, os, w + o * ws, ws, s, kind, n, d);
        for (int k = 0; k < 4; k++) mix_rest(out + (o + k) * os, w + (o + k) * ws, s, kind, n, wide);
    }
    for (; o < n_out; o++) mix_rest(out + o * os, w + o * ws, s, kind, n, 0);
}

static void mix_rows(float *out, size_t os, const float *w, size_t ws, int n_out, const float *v, int n, int hd) {
    mix_any(out, os, w, ws, n_out, (row_src){v, NULL, NULL, hd}, ROW_F32, n);
}

static void mix_rows_f16(float *out, size_t os, const float *w, size_t ws, int n_out, const uint16_t *const *rows, int n,
                         int hd) {
    mix_any(out, os, w, ws, n_out, (row_src){NULL, rows, NULL, hd}, ROW_F16, n);
}

static void mix_rows_q8_0(float *out, size_t os, const float *w, size_t ws, int n_out, const void *const *rows, int n,
                          int hd) {
    mix_any(out, os, w, ws, n_out, (row_src){NULL, NULL, rows, hd}, ROW_Q8_0, n);
}

/* One score: 4 lanes over d, a fixed reduction, then the last d % 4 terms one at a time. */
INLINE float dot_one(const float *q, row_src s, int kind, int p) {
    float32x4_t a = vdupq_n_f32(0);
    int d = 0;
    for (; d + 4 <= s.hd; d += 4) a = vfmaq_f32(a, vld1q_f32(q + d), row4(s, kind, p, d));
    float32x2_t h = vadd_f32(vget_low_f32(a), vget_high_f32(a));
    float sum = vget_lane_f32(h, 0) + vget_lane_f32(h, 1);
    for (; d < s.hd; d++) sum = fmaf(q[d], row1(s, kind, p, d), sum);
    return sum;
}

/* Rows in the outer loop, so each row runs past every query while it sits in L1. */
INLINE void dot_any(float *out, size_t os, const float *q, int n_out, row_src s, int kind, int n) {
    for (int p = 0; p < n; p++)
        for (int o = 0; o < n_out; o++) out[(size_t)o * os + p] = dot_one(q + (size_t)o * s.hd, s, kind, p);
}

static void dot_rows(float *out, size_t os, const float *q, int n_out, const float *k, int n, int hd) {
    dot_any(out, os, q, n_out, (row_src){k, NULL, NULL, hd}, ROW_F32, n);
}

static void dot_rows_f16(float *out, size_t os, const float *q, int n_out, const uint16_t *const *rows, int n, int hd) {
    dot_any(out, os, q, n_out, (row_src){NULL, rows, NULL, hd}, ROW_F16, n);
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

const q3_vec_ops q3_vec_neon_ops = {q3_f16_to_float_neon, q3_bf16_to_float_neon, mix_rows,     dot_rows, exp_sum,
                                   dot_rows_f16,         mix_rows_f16,          mix_rows_q8_0};
#endif
