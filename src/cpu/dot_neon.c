/* NEON kernels for any AArch64 CPU (ARMv8.0 Advanced SIMD): the dot products of every weight
 * type against its activation type, and the Q8_0 / Q8_K activation quantizers. Compiled to
 * nothing on other architectures.
 *
 * The integer dot products are those of dot_neon.h over the plain-NEON dot16 below; CPUs with
 * the ARMv8.2 dot product instructions get the same kernels over SDOT from dot_dotprod_neon.c.
 * The float types widen their weights to f32 and accumulate with fused multiply-adds in vector
 * lanes: another summation order than the reference, so they agree within rounding. The
 * quantizers round exactly as the reference does (FCVTAS is roundf, FCVTNS round-to-even, the
 * saturating narrows are the clamps), so their bytes are the same. */
#include "cpu/dot.h"

#if defined(__aarch64__)

#include <arm_neon.h>

/* Widening multiplies into int16 (an int8 product is at most 128 * 128, which fits), then
 * pairwise adds into the int32 lanes. */
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}

#include "cpu/dot_neon.h"

/* ---- integer formats: the shared kernels over the widening dot16 ---- */

float q3_q8_0_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_q8_0_dot(n, w, x); }
float q3_q4_0_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_q4_0_dot(n, w, x); }
float q3_q4_1_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_q4_1_dot(n, w, x); }
float q3_q5_0_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_q5_0_dot(n, w, x); }
float q3_q5_1_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_q5_1_dot(n, w, x); }
float q3_q2_k_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_q2_k_dot(n, w, x); }
float q3_q3_k_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_q3_k_dot(n, w, x); }
float q3_q4_k_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_q4_k_dot(n, w, x); }
float q3_q5_k_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_q5_k_dot(n, w, x); }
float q3_q6_k_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_q6_k_dot(n, w, x); }

/* ---- float types: four lanes, four accumulators ---- */

/* The loop of every float dot product: `widen` loads four weights as f32, `widen_one` one.
 * Four independent accumulators hide the FMA latency; a scalar loop takes the last n % 4. */
#define FLOAT_DOT_NEON(widen, widen_one)                                            \
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = acc0, acc2 = acc0, acc3 = acc0;       \
    int64_t i = 0;                                                                  \
    for (; i + 16 <= n; i += 16) {                                                  \
        acc0 = vfmaq_f32(acc0, widen(a + i), vld1q_f32(x + i));                     \
        acc1 = vfmaq_f32(acc1, widen(a + i + 4), vld1q_f32(x + i + 4));             \
        acc2 = vfmaq_f32(acc2, widen(a + i + 8), vld1q_f32(x + i + 8));             \
        acc3 = vfmaq_f32(acc3, widen(a + i + 12), vld1q_f32(x + i + 12));           \
    }                                                                               \
    for (; i + 4 <= n; i += 4) acc0 = vfmaq_f32(acc0, widen(a + i), vld1q_f32(x + i)); \
    float tail = 0;                                                                 \
    for (; i < n; i++) tail += widen_one(a[i]) * x[i];                              \
    return vaddvq_f32(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3))) + tail;

static inline float32x4_t load_f32x4(const float *p) { return vld1q_f32(p); }
static inline float f32_one(float v) { return v; }

float q3_f32_vec_dot_neon(int64_t n, const void *w, const void *xv) {
    const float *a = w, *x = xv;
    FLOAT_DOT_NEON(load_f32x4, f32_one)
}

static inline float32x4_t load_f16x4(const uint16_t *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

float q3_f16_vec_dot_neon(int64_t n, const void *w, const void *xv) {
    const uint16_t *a = w;
    const float *x = xv;
    FLOAT_DOT_NEON(load_f16x4, neon_half)
}

/* bf16 is the top half of an f32: widen by a 16-bit shift (exact products, as the reference). */
static inline float32x4_t load_bf16x4(const uint16_t *p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

float q3_bf16_vec_dot_neon(int64_t n, const void *w, const void *xv) {
    const uint16_t *a = w;
    const float *x = xv;
    FLOAT_DOT_NEON(load_bf16x4, q3_bf16_to_f32)
}

/* ---- activation quantizers ---- */

/* Saturating narrows of 16 int32 (four vectors, in order) to 16 int8: the reference's clamp to
 * -128..127 (Q8_K) or a plain cast of values already in range (Q8_0). */
static inline int8x16_t narrow_16(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d) {
    int16x8_t ab = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
    int16x8_t cd = vcombine_s16(vqmovn_s32(c), vqmovn_s32(d));
    return vcombine_s8(vqmovn_s16(ab), vqmovn_s16(cd));
}

static inline float abs_max(const float *x, int n) {
    float32x4_t m = vdupq_n_f32(0);
    for (int k = 0; k < n; k += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + k)));
    return vmaxvq_f32(m);
}

/* scale * x rounded half to even (FCVTNS, as q3_nearest_int) for 16 values, saturated to int8:
 * Q8_0's activations and Q8_K. */
static inline int8x16_t round_even_16(const float *x, float scale) {
    int32x4_t q[4];
    for (int k = 0; k < 4; k++) q[k] = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 4 * k), scale));
    return narrow_16(q[0], q[1], q[2], q[3]);
}

void q3_q8_0_from_float_neon(const float *src, void *dst, int64_t n) {
    q3_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / Q3_QK; i++, src += Q3_QK) {
        float max = abs_max(src, Q3_QK), id = max != 0.0f ? 127.0f / max : 0.0f;
        __fp16 h = (__fp16)(max / 127.0f); /* FCVT rounds to nearest even, as q3_f32_to_f16 */
        memcpy(&b[i].d, &h, sizeof h);
        vst1q_s8(b[i].qs, round_even_16(src, id));
        vst1q_s8(b[i].qs + 16, round_even_16(src + 16, id));
    }
}

/* The first value whose magnitude is amax (the reference's tie rule), four lanes at a time. */
static float first_with_magnitude(const float *x, int n, float amax) {
    float32x4_t target = vdupq_n_f32(amax);
    for (int k = 0; k < n; k += 4) {
        if (vmaxvq_u32(vceqq_f32(vabsq_f32(vld1q_f32(x + k)), target)) == 0) continue;
        for (int l = k; l < k + 4; l++)
            if (fabsf(x[l]) == amax) return x[l];
    }
    return 0;
}

void q3_q8_k_from_float_neon(const float *src, void *dst, int64_t n) {
    q3_block_q8_k *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++, src += Q3_QK_K) {
        float max = first_with_magnitude(src, Q3_QK_K, abs_max(src, Q3_QK_K));
        if (max == 0) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = -127.0f / max;
        for (int j = 0; j < Q3_QK_K / 16; j++) {
            int8x16_t q = round_even_16(src + 16 * j, iscale);
            vst1q_s8(b[i].qs + 16 * j, q);
            b[i].bsums[j] = vaddlvq_s8(q);
        }
        b[i].d = 1 / iscale;
    }
}

#else
typedef int q3_dot_neon_unused; /* ISO C wants a declaration in every translation unit */
#endif
