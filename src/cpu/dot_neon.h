/* The integer dot products of the AArch64 kernels, written once and compiled twice: by
 * dot_neon.c for any AArch64 CPU and by dot_dotprod_neon.c for CPUs with the ARMv8.2 dot
 * product instructions. The two differ only in dot16, the one primitive every kernel here
 * is built from, which the including file defines (widening multiplies and pairwise adds in
 * the first, SDOT in the second). Everything in this header is static inline, so each file
 * gets its own copy compiled for its own target.
 *
 * Levels are unpacked to int8 (every format's levels fit: at most 0..63 unsigned or -32..31
 * signed) and multiplied by the int8 activations. dot16 leaves its sum of 16 products spread
 * over four int32 lanes, grouped differently by the two variants; no kernel depends on the
 * grouping, only on the total, which is exact. The K-quants scale whole lanes by their
 * sub-block scales, sum them and end each block with the reference's own float tail
 * (q3_kdot_accumulate), so they return the scalar result to the bit. The 32-wide formats and
 * Q8_0 accumulate their per-block floats in vector lanes: within rounding of the reference.
 *
 * Include only inside `#if defined(__aarch64__)`, after defining dot16. */
#ifndef Q3_CPU_DOT_NEON_H
#define Q3_CPU_DOT_NEON_H

#include <arm_neon.h>
#include <string.h>
#include "quant/blocks.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* the per-block float math must stay the reference's */
#endif

/* acc + the sum of a[i] * b[i] over 16 int8 pairs, in four int32 lanes (which lane holds which
 * products is the including file's business). Defined by the file that includes this one. */
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b);

/* ---- helpers ---- */

/* fp16 -> f32 by the hardware conversion: exact, like q3_f16_to_f32. */
static inline float neon_half(uint16_t h) {
    __fp16 f;
    memcpy(&f, &h, sizeof f);
    return (float)f;
}

/* sum w * y over 32 int8 pairs, in four int32 lanes. */
static inline int32x4_t dot32(int8x16_t w0, int8x16_t w1, const int8_t *y) {
    return dot16(dot16(vdupq_n_s32(0), w0, vld1q_s8(y)), w1, vld1q_s8(y + 16));
}

static inline int8x16_t as_s8(uint8x16_t v) { return vreinterpretq_s8_u8(v); }

static inline uint8x16_t low_nibbles(uint8x16_t q) { return vandq_u8(q, vdupq_n_u8(0x0F)); }

/* `value` in byte j where bit j of `bits` is set, for j = 0..15: the fifth bit of Q5_0 / Q5_1
 * levels. */
static inline uint8x16_t bits_to_bytes(uint32_t bits, uint8_t value) {
    static const uint8_t bit_of_byte[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint8x16_t spread = vcombine_u8(vdup_n_u8((uint8_t)bits), vdup_n_u8((uint8_t)(bits >> 8)));
    return vandq_u8(vtstq_u8(spread, vld1q_u8(bit_of_byte)), vdupq_n_u8(value));
}

/* ---- Q8_0 and the 32-wide formats ---- */

static inline float neon_q8_0_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q8_0 *bw = w, *bx = x;
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        int32x4_t s = dot32(vld1q_s8(bw[i].qs), vld1q_s8(bw[i].qs + 16), bx[i].qs);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), neon_half(bw[i].d) * neon_half(bx[i].d));
    }
    return vaddvq_f32(acc);
}

/* The 4-bit levels of a 32-wide block minus `offset`: weights 0..15 in the low nibbles of qs,
 * 16..31 in the high ones; fifth0 / fifth1 add the fifth bit of Q5 levels (zero for Q4). */
static inline int32x4_t dot_levels32(const uint8_t *qs, uint8x16_t fifth0, uint8x16_t fifth1,
                                     uint8_t offset, const int8_t *y) {
    uint8x16_t q = vld1q_u8(qs);
    uint8x16_t w0 = vorrq_u8(low_nibbles(q), fifth0), w1 = vorrq_u8(vshrq_n_u8(q, 4), fifth1);
    return dot32(as_s8(vsubq_u8(w0, vdupq_n_u8(offset))), as_s8(vsubq_u8(w1, vdupq_n_u8(offset))), y);
}

static inline uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline float neon_q4_0_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q4_0 *bw = w;
    const q3_block_q8_0 *bx = x;
    const uint8x16_t none = vdupq_n_u8(0);
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        int32x4_t s = dot_levels32(bw[i].qs, none, none, 8, bx[i].qs);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), neon_half(bw[i].d) * neon_half(bx[i].d));
    }
    return vaddvq_f32(acc);
}

static inline float neon_q5_0_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q5_0 *bw = w;
    const q3_block_q8_0 *bx = x;
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        uint32_t qh = load_u32(bw[i].qh);
        int32x4_t s = dot_levels32(bw[i].qs, bits_to_bytes(qh, 16), bits_to_bytes(qh >> 16, 16), 16, bx[i].qs);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), neon_half(bw[i].d) * neon_half(bx[i].d));
    }
    return vaddvq_f32(acc);
}

/* x = d * q + m: d * dx * sum(q * y) in vector lanes, plus m * s per block (s = dx * sum(y),
 * carried by the Q8_1 block). */
static inline float neon_q4_1_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q4_1 *bw = w;
    const q3_block_q8_1 *bx = x;
    const uint8x16_t none = vdupq_n_u8(0);
    float32x4_t acc = vdupq_n_f32(0);
    float offsets = 0;
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        int32x4_t s = dot_levels32(bw[i].qs, none, none, 0, bx[i].qs);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), neon_half(bw[i].d) * neon_half(bx[i].d));
        offsets += neon_half(bw[i].m) * neon_half(bx[i].s);
    }
    return vaddvq_f32(acc) + offsets;
}

static inline float neon_q5_1_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q5_1 *bw = w;
    const q3_block_q8_1 *bx = x;
    float32x4_t acc = vdupq_n_f32(0);
    float offsets = 0;
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        uint32_t qh = load_u32(bw[i].qh);
        int32x4_t s = dot_levels32(bw[i].qs, bits_to_bytes(qh, 16), bits_to_bytes(qh >> 16, 16), 0, bx[i].qs);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), neon_half(bw[i].d) * neon_half(bx[i].d));
        offsets += neon_half(bw[i].m) * neon_half(bx[i].s);
    }
    return vaddvq_f32(acc) + offsets;
}

/* ---- K-quants ---- */

/* sum m_j * (bsums[2j] + bsums[2j + 1]) over the 8 sub-blocks of Q4_K / Q5_K. The pair sums
 * (at most 32 * 128) fit int16. */
static inline int32_t kmin_term(const uint8_t mins[8], const int16_t *bsums) {
    int16x8_t pairs = vpaddq_s16(vld1q_s16(bsums), vld1q_s16(bsums + 8));
    int16x8_t m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mins)));
    int32x4_t terms = vmull_s16(vget_low_s16(pairs), vget_low_s16(m));
    return vaddvq_s32(vmlal_high_s16(terms, pairs, m));
}

/* The block's sum of sc * q * y for Q4_K / Q5_K. Byte l of the 32 at qs + 32c holds weight
 * 64c + l (low nibble) and 64c + 32 + l (high); qh0 / qh1 (zero for Q4_K) carry the fifth bits of
 * both in bits 2c and 2c + 1, and are shifted down by two per c so that the bits wanted are
 * always bits 0 and 1. */
static inline int32_t k32_levels_dot(const uint8_t *qs, uint8x16_t qh0, uint8x16_t qh1,
                                      const uint8_t scales[8], const int8_t *y) {
    const uint8x16_t one = vdupq_n_u8(1), two = vdupq_n_u8(2);
    int32x4_t total = vdupq_n_s32(0);
    for (int c = 0; c < 4; c++, qs += 32, y += 64) {
        uint8x16_t q0 = vld1q_u8(qs), q1 = vld1q_u8(qs + 16);
        uint8x16_t l0 = vorrq_u8(low_nibbles(q0), vshlq_n_u8(vandq_u8(qh0, one), 4));
        uint8x16_t l1 = vorrq_u8(low_nibbles(q1), vshlq_n_u8(vandq_u8(qh1, one), 4));
        uint8x16_t h0 = vorrq_u8(vshrq_n_u8(q0, 4), vshlq_n_u8(vandq_u8(qh0, two), 3));
        uint8x16_t h1 = vorrq_u8(vshrq_n_u8(q1, 4), vshlq_n_u8(vandq_u8(qh1, two), 3));
        total = vmlaq_n_s32(total, dot32(as_s8(l0), as_s8(l1), y), scales[2 * c]);
        total = vmlaq_n_s32(total, dot32(as_s8(h0), as_s8(h1), y + 32), scales[2 * c + 1]);
        qh0 = vshrq_n_u8(qh0, 2);
        qh1 = vshrq_n_u8(qh1, 2);
    }
    return vaddvq_s32(total);
}

static inline float neon_q4_k_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q4_k *bw = w;
    const q3_block_q8_k *bx = x;
    const uint8x16_t none = vdupq_n_u8(0);
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        uint8_t sc[8], m[8];
        q3_kscale_unpack(bw[i].scales, sc, m);
        int32_t sum_qy = k32_levels_dot(bw[i].qs, none, none, sc, bx[i].qs);
        int32_t sum_my = kmin_term(m, bx[i].bsums);
        sum = q3_kdot_accumulate(sum, bx[i].d, neon_half(bw[i].d), neon_half(bw[i].dmin), sum_qy, sum_my);
    }
    return sum;
}

static inline float neon_q5_k_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q5_k *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        uint8_t sc[8], m[8];
        q3_kscale_unpack(bw[i].scales, sc, m);
        uint8x16_t qh0 = vld1q_u8(bw[i].qh), qh1 = vld1q_u8(bw[i].qh + 16);
        int32_t sum_qy = k32_levels_dot(bw[i].qs, qh0, qh1, sc, bx[i].qs);
        int32_t sum_my = kmin_term(m, bx[i].bsums);
        sum = q3_kdot_accumulate(sum, bx[i].d, neon_half(bw[i].d), neon_half(bw[i].dmin), sum_qy, sum_my);
    }
    return sum;
}

/* One 16-wide sub-block's levels (int8) times its activations, times its scale, added to acc. */
static inline int32x4_t scaled_dot16(int32x4_t acc, int8x16_t levels, const int8_t *y, int32_t scale) {
    return vmlaq_n_s32(acc, dot16(vdupq_n_s32(0), levels, vld1q_s8(y)), scale);
}

/* Q6_K, x = d * sc * (q - 32). In each half of 128 weights, for l in 0..31: ql[l] holds weights
 * l (low nibble) and 64 + l (high), ql[32 + l] weights 32 + l and 96 + l; qh[l] their top two bits
 * in bit pairs 0-1, 2-3, 4-5, 6-7. The loop takes l in two runs of 16, one sub-block of each
 * quarter per run. */
static inline int32_t q6k_half_dot(const uint8_t *ql, const uint8_t *qh, const int8_t *sc, const int8_t *y) {
    const uint8x16_t top = vdupq_n_u8(0x30), bias = vdupq_n_u8(32);
    int32x4_t total = vdupq_n_s32(0);
    for (int k = 0; k < 2; k++, ql += 16, qh += 16, y += 16, sc++) {
        uint8x16_t a = vld1q_u8(ql), b = vld1q_u8(ql + 32), h = vld1q_u8(qh);
        uint8x16_t q0 = vorrq_u8(low_nibbles(a), vandq_u8(vshlq_n_u8(h, 4), top));
        uint8x16_t q1 = vorrq_u8(low_nibbles(b), vandq_u8(vshlq_n_u8(h, 2), top));
        uint8x16_t q2 = vorrq_u8(vshrq_n_u8(a, 4), vandq_u8(h, top));
        uint8x16_t q3 = vorrq_u8(vshrq_n_u8(b, 4), vandq_u8(vshrq_n_u8(h, 2), top));
        total = scaled_dot16(total, as_s8(vsubq_u8(q0, bias)), y, sc[0]);
        total = scaled_dot16(total, as_s8(vsubq_u8(q1, bias)), y + 32, sc[2]);
        total = scaled_dot16(total, as_s8(vsubq_u8(q2, bias)), y + 64, sc[4]);
        total = scaled_dot16(total, as_s8(vsubq_u8(q3, bias)), y + 96, sc[6]);
    }
    return vaddvq_s32(total);
}

static inline float neon_q6_k_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q6_k *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32_t sum_qy = 0;
        for (int h = 0; h < 2; h++)
            sum_qy += q6k_half_dot(bw[i].ql + 64 * h, bw[i].qh + 32 * h, bw[i].scales + 8 * h,
                                   bx[i].qs + 128 * h);
        sum = q3_kdot_accumulate(sum, bx[i].d, neon_half(bw[i].d), 0, sum_qy, 0);
    }
    return sum;
}

/* Q2_K and Q3_K share the layout of the low two bits: in each half of 128 weights, bit pair k
 * of byte l (l in 0..31) is weight 32k + l, of sub-block 2k + l / 16 of the half. The loops shift
 * the bytes down by two per k so that the pair wanted is always bits 0-1. Q2_K's half: `packed`
 * points at its 8 scale bytes (scale in the low nibble; the mins are q2k_min_term's). */
static inline int32_t q2k_half_dot(const uint8_t *qs, const uint8_t *packed, const int8_t *y) {
    const uint8x16_t three = vdupq_n_u8(3);
    uint8x16_t q0 = vld1q_u8(qs), q1 = vld1q_u8(qs + 16);
    int32x4_t total = vdupq_n_s32(0);
    for (int k = 0; k < 4; k++, y += 32, packed += 2) {
        total = scaled_dot16(total, as_s8(vandq_u8(q0, three)), y, packed[0] & 0xF);
        total = scaled_dot16(total, as_s8(vandq_u8(q1, three)), y + 16, packed[1] & 0xF);
        q0 = vshrq_n_u8(q0, 2);
        q1 = vshrq_n_u8(q1, 2);
    }
    return vaddvq_s32(total);
}

/* sum m_j * bsums[j] over Q2_K's 16 sub-blocks; m_j is the high nibble of scales[j]. */
static inline int32_t q2k_min_term(const uint8_t packed[16], const int16_t *bsums) {
    uint8x16_t m = vshrq_n_u8(vld1q_u8(packed), 4);
    int16x8_t m0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(m)));
    int16x8_t m1 = vreinterpretq_s16_u16(vmovl_high_u8(m));
    int16x8_t b0 = vld1q_s16(bsums), b1 = vld1q_s16(bsums + 8);
    int32x4_t terms = vmull_s16(vget_low_s16(m0), vget_low_s16(b0));
    terms = vmlal_high_s16(terms, m0, b0);
    terms = vmlal_s16(terms, vget_low_s16(m1), vget_low_s16(b1));
    return vaddvq_s32(vmlal_high_s16(terms, m1, b1));
}

static inline float neon_q2_k_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q2_k *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32_t sum_qy = q2k_half_dot(bw[i].qs, bw[i].scales, bx[i].qs) +
                         q2k_half_dot(bw[i].qs + 32, bw[i].scales + 8, bx[i].qs + 128);
        int32_t sum_my = q2k_min_term(bw[i].scales, bx[i].bsums);
        sum = q3_kdot_accumulate(sum, bx[i].d, neon_half(bw[i].d), neon_half(bw[i].dmin), sum_qy, sum_my);
    }
    return sum;
}

/* Q3_K's 16 scales, -32..31. Scale j's low four bits are the low nibble of byte j (j < 8) or the
 * high nibble of byte j - 8; its top two bits are bit pair j / 4 of byte 8 + j % 4. Four scales
 * per 32-bit word: j = 4g .. 4g + 3 take their nibbles from word g % 2 (shifted by 4 for g >= 2)
 * and their top bits from the last word, shifted by 2g. */
static inline void q3k_scales(const uint8_t packed[12], int8_t scales[16]) {
    uint32_t nibbles[2] = {load_u32(packed), load_u32(packed + 4)}, tops = load_u32(packed + 8);
    for (int g = 0; g < 4; g++) {
        uint32_t low = (nibbles[g % 2] >> (g < 2 ? 0 : 4)) & 0x0F0F0F0Fu;
        uint32_t word = low | ((tops >> (2 * g)) & 0x03030303u) << 4;
        memcpy(scales + 4 * g, &word, 4);
    }
    int8x16_t v = vsubq_s8(vld1q_s8(scales), vdupq_n_s8(32));
    vst1q_s8(scales, v);
}

/* Q3_K's half: levels -4..3 are the low two bits, minus 4 where the hmask bit is clear.
 * high0 / high1 hold the hmask bytes shifted so that bit 0 is the bit of k = 0 (bit 4h + k of
 * hmask[l] belongs to weight 128h + 32k + l); they shift down by one per k. */
static inline int32_t q3k_half_dot(const uint8_t *qs, uint8x16_t high0, uint8x16_t high1,
                                   const int8_t *scales, const int8_t *y) {
    const uint8x16_t three = vdupq_n_u8(3), one = vdupq_n_u8(1), four = vdupq_n_u8(4);
    uint8x16_t q0 = vld1q_u8(qs), q1 = vld1q_u8(qs + 16);
    int32x4_t total = vdupq_n_s32(0);
    for (int k = 0; k < 4; k++, y += 32, scales += 2) {
        uint8x16_t l0 = vorrq_u8(vandq_u8(q0, three), vshlq_n_u8(vandq_u8(high0, one), 2));
        uint8x16_t l1 = vorrq_u8(vandq_u8(q1, three), vshlq_n_u8(vandq_u8(high1, one), 2));
        total = scaled_dot16(total, as_s8(vsubq_u8(l0, four)), y, scales[0]);
        total = scaled_dot16(total, as_s8(vsubq_u8(l1, four)), y + 16, scales[1]);
        q0 = vshrq_n_u8(q0, 2);
        q1 = vshrq_n_u8(q1, 2);
        high0 = vshrq_n_u8(high0, 1);
        high1 = vshrq_n_u8(high1, 1);
    }
    return vaddvq_s32(total);
}

static inline float neon_q3_k_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q3_k *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int8_t scales[16];
        q3k_scales(bw[i].scales, scales);
        uint8x16_t hm0 = vld1q_u8(bw[i].hmask), hm1 = vld1q_u8(bw[i].hmask + 16);
        int32_t sum_qy = q3k_half_dot(bw[i].qs, hm0, hm1, scales, bx[i].qs);
        /* the second half's bits are 4..7 of the same hmask bytes */
        sum_qy += q3k_half_dot(bw[i].qs + 32, vshrq_n_u8(hm0, 4), vshrq_n_u8(hm1, 4), scales + 8,
                               bx[i].qs + 128);
        sum = q3_kdot_accumulate(sum, bx[i].d, neon_half(bw[i].d), 0, sum_qy, 0);
    }
    return sum;
}

#endif
