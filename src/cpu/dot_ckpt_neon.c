/* NEON kernels of the checkpoint weight types (cpu/dot_ckpt.h): e4m3 through f16 as on x86
 * (vcvt_f32_f16), GPTQ's nibbles widened to int32 and converted; four lanes. */
#include "cpu/dot_ckpt.h"

#if defined(__aarch64__)

#include <arm_neon.h>
#include "quant/blocks.h"
#include "quant/checkpoint_quants.h"

/* Eight e4m3 bytes as the f16 bits of their values / 256. */
static inline uint16x8_t e4m3_to_f16(uint8x8_t bytes) {
    uint16x8_t w = vmovl_u8(bytes);
    uint16x8_t magnitude = vshlq_n_u16(vandq_u16(w, vdupq_n_u16(0x7f)), 7);
    return vorrq_u16(magnitude, vshlq_n_u16(vandq_u16(w, vdupq_n_u16(0x80)), 8));
}

static inline float32x4_t f8_fma8(float32x4_t acc, uint8x8_t bytes, const float *y) {
    float16x8_t h = vreinterpretq_f16_u16(e4m3_to_f16(bytes));
    acc = vfmaq_f32(acc, vcvt_f32_f16(vget_low_f16(h)), vld1q_f32(y));
    return vfmaq_f32(acc, vcvt_high_f32_f16(h), vld1q_f32(y + 4));
}

float q3_f8_b32_vec_dot_neon(int64_t n, const void *w, const void *x) {
    const q3_block_f8_b32 *b = w;
    const float *y = x;
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / Q3_FP8_BLOCK; i++, y += Q3_FP8_BLOCK) {
        uint8x16_t q0 = vld1q_u8(b[i].q), q1 = vld1q_u8(b[i].q + 16);
        float32x4_t s = vdupq_n_f32(0);
        s = f8_fma8(s, vget_low_u8(q0), y);
        s = f8_fma8(s, vget_high_u8(q0), y + 8);
        s = f8_fma8(s, vget_low_u8(q1), y + 16);
        s = f8_fma8(s, vget_high_u8(q1), y + 24);
        acc = vfmaq_n_f32(acc, s, b[i].d);
    }
    return vaddvq_f32(acc);
}

/* Eight 4-bit levels minus 8, as two float vectors, times y. */
static inline float32x4_t levels_fma8(float32x4_t acc, uint8x8_t levels, const float *y) {
    int16x8_t v = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(levels)), vdupq_n_s16(8));
    acc = vfmaq_f32(acc, vcvtq_f32_s32(vmovl_s16(vget_low_s16(v))), vld1q_f32(y));
    return vfmaq_f32(acc, vcvtq_f32_s32(vmovl_high_s16(v)), vld1q_f32(y + 4));
}

float q3_gptq4_b32_vec_dot_neon(int64_t n, const void *w, const void *x) {
    const q3_block_q4_0 *b = w;
    const float *y = x;
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / Q3_QK; i++, y += Q3_QK) {
        uint8x16_t qs = vld1q_u8(b[i].qs);
        uint8x16_t lo = vandq_u8(qs, vdupq_n_u8(0xF)), hi = vshrq_n_u8(qs, 4);
        float32x4_t s = vdupq_n_f32(0);
        s = levels_fma8(s, vget_low_u8(lo), y);
        s = levels_fma8(s, vget_high_u8(lo), y + 8);
        s = levels_fma8(s, vget_low_u8(hi), y + 16);
        s = levels_fma8(s, vget_high_u8(hi), y + 24);
        acc = vfmaq_n_f32(acc, s, q3_f16_to_f32(b[i].d));
    }
    return vaddvq_f32(acc);
}

#endif
