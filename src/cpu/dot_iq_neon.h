/* The i-quant dot products of the AArch64 kernels, written once and compiled twice, like
 * dot_neon.h: by dot_iq_neon.c over the plain-NEON dot16 and by dot_iq_dotprod_neon.c over SDOT.
 *
 * Every weight becomes a signed byte: grid entries gathered by index with their signs applied
 * (g ^ m) - m (at most 62 in magnitude), IQ1's 8 * grid +- 1, IQ4's table levels (vqtbl1q). dot16
 * multiplies them by the int8 activations into int32 lanes, each group's lanes are scaled by its
 * integer multiplier (vmlaq_n), and the block's exact integer sum gets the reference's float
 * tail, so every result equals the scalar one to the bit.
 *
 * Include only inside `#if defined(__aarch64__)`, after defining dot16. */
#ifndef Q3_CPU_DOT_IQ_NEON_H
#define Q3_CPU_DOT_IQ_NEON_H

#include <arm_neon.h>
#include <string.h>
#include "quant/iq_blocks.h"
#include "quant/iq_grids.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* the per-block float math must stay the reference's */
#endif

static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b);

static inline float iq_neon_half(uint16_t h) {
    __fp16 f;
    memcpy(&f, &h, sizeof f);
    return (float)f;
}

/* Two 8-byte table entries: the weights of two runs. */
static inline int8x16_t iq_pair(const uint64_t *table, int a, int b) {
    return vreinterpretq_s8_u64(vcombine_u64(vcreate_u64(table[a]), vcreate_u64(table[b])));
}

/* Four 4-byte grid entries (IQ3): two runs of 8. */
static inline int8x16_t iq_quad(const uint32_t *table, int a, int b, int c, int d) {
    uint32_t v[4] = {table[a], table[b], table[c], table[d]};
    return vreinterpretq_s8_u32(vld1q_u32(v));
}

/* g negated where the mask byte is 0xff. */
static inline int8x16_t iq_signed(int8x16_t g, int8x16_t mask) { return vsubq_s8(veorq_s8(g, mask), mask); }

/* The sign masks of 16 weights from their 16 stored sign bits (IQ2_S, IQ3_S). */
static inline int8x16_t iq_sign_bits(const uint8_t *signs) {
    static const uint8_t bit_of_byte[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint8x16_t spread = vcombine_u8(vdup_n_u8(signs[0]), vdup_n_u8(signs[1]));
    return vreinterpretq_s8_u8(vtstq_u8(spread, vld1q_u8(bit_of_byte)));
}

/* ---- IQ2_XXS, IQ2_XS, IQ2_S: runs of 8 from 8-byte grids ---- */

static inline float neon_iq2_xxs_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq2_xxs *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int g = 0; g < 8; g++) {
            uint32_t words[2];
            memcpy(words, bw[i].qs + 4 * g, 8);
            const uint8_t *idx = (const uint8_t *)&words[0];
            uint32_t s = words[1];
            const int8_t *y = bx[i].qs + 32 * g;
            int32x4_t part = dot16(vdupq_n_s32(0), iq_signed(iq_pair(q3_iq2xxs_grid, idx[0], idx[1]),
                                                              iq_pair(q3_iq_ksign_masks, s & 127, (s >> 7) & 127)),
                                   vld1q_s8(y));
            part = dot16(part, iq_signed(iq_pair(q3_iq2xxs_grid, idx[2], idx[3]),
                                         iq_pair(q3_iq_ksign_masks, (s >> 14) & 127, (s >> 21) & 127)),
                         vld1q_s8(y + 16));
            acc = vmlaq_n_s32(acc, part, (int32_t)(2 * (s >> 28) + 1));
        }
        sum = q3_iq_accumulate(sum, bx[i].d, iq_neon_half(bw[i].d), vaddvq_s32(acc));
    }
    return 0.125f * sum;
}

static inline float neon_iq2_xs_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq2_xs *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int h = 0; h < 16; h++) { /* 16 weights per multiplier: two runs */
            const uint16_t *q = bw[i].qs + 2 * h;
            int8x16_t v = iq_signed(iq_pair(q3_iq2xs_grid, q[0] & 511, q[1] & 511),
                                    iq_pair(q3_iq_ksign_masks, q[0] >> 9, q[1] >> 9));
            int m = 2 * ((bw[i].scales[h / 2] >> 4 * (h % 2)) & 0xf) + 1;
            acc = vmlaq_n_s32(acc, dot16(vdupq_n_s32(0), v, vld1q_s8(bx[i].qs + 16 * h)), m);
        }
        sum = q3_iq_accumulate(sum, bx[i].d, iq_neon_half(bw[i].d), vaddvq_s32(acc));
    }
    return 0.125f * sum;
}

static inline float neon_iq2_s_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq2_s *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int h = 0; h < 16; h++) {
            int r = 2 * h, qh = bw[i].qh[r / 4] >> 2 * (r % 4);
            int8x16_t g = iq_pair(q3_iq2s_grid, bw[i].qs[r] | (qh & 3) << 8, bw[i].qs[r + 1] | (qh & 0xc) << 6);
            int8x16_t v = iq_signed(g, iq_sign_bits(bw[i].qs + 32 + r));
            int m = 2 * ((bw[i].scales[h / 2] >> 4 * (h % 2)) & 0xf) + 1;
            acc = vmlaq_n_s32(acc, dot16(vdupq_n_s32(0), v, vld1q_s8(bx[i].qs + 16 * h)), m);
        }
        sum = q3_iq_accumulate(sum, bx[i].d, iq_neon_half(bw[i].d), vaddvq_s32(acc));
    }
    return 0.125f * sum;
}

/* ---- IQ3_XXS, IQ3_S: runs of 8 from two 4-byte grid entries ---- */

static inline float neon_iq3_xxs_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq3_xxs *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int g = 0; g < 8; g++) {
            const uint8_t *q = bw[i].qs + 8 * g;
            uint32_t s;
            memcpy(&s, bw[i].qs + Q3_QK_K / 4 + 4 * g, 4);
            const int8_t *y = bx[i].qs + 32 * g;
            int8x16_t v0 = iq_signed(iq_quad(q3_iq3xxs_grid, q[0], q[1], q[2], q[3]),
                                     iq_pair(q3_iq_ksign_masks, s & 127, (s >> 7) & 127));
            int8x16_t v1 = iq_signed(iq_quad(q3_iq3xxs_grid, q[4], q[5], q[6], q[7]),
                                     iq_pair(q3_iq_ksign_masks, (s >> 14) & 127, (s >> 21) & 127));
            int32x4_t part = dot16(dot16(vdupq_n_s32(0), v0, vld1q_s8(y)), v1, vld1q_s8(y + 16));
            acc = vmlaq_n_s32(acc, part, (int32_t)(2 * (s >> 28) + 1));
        }
        sum = q3_iq_accumulate(sum, bx[i].d, iq_neon_half(bw[i].d), vaddvq_s32(acc));
    }
    return 0.25f * sum;
}

static inline float neon_iq3_s_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq3_s *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int g = 0; g < 8; g++) {
            const uint8_t *q = bw[i].qs + 8 * g;
            int qh = bw[i].qh[g], idx[8];
            for (int u = 0; u < 8; u++) idx[u] = q[u] | ((qh >> u) & 1) << 8;
            const int8_t *y = bx[i].qs + 32 * g;
            int8x16_t v0 = iq_signed(iq_quad(q3_iq3s_grid, idx[0], idx[1], idx[2], idx[3]),
                                     iq_sign_bits(bw[i].signs + 4 * g));
            int8x16_t v1 = iq_signed(iq_quad(q3_iq3s_grid, idx[4], idx[5], idx[6], idx[7]),
                                     iq_sign_bits(bw[i].signs + 4 * g + 2));
            int32x4_t part = dot16(dot16(vdupq_n_s32(0), v0, vld1q_s8(y)), v1, vld1q_s8(y + 16));
            acc = vmlaq_n_s32(acc, part, 2 * ((bw[i].scales[g / 2] >> 4 * (g % 2)) & 0xf) + 1);
        }
        sum = q3_iq_accumulate(sum, bx[i].d, iq_neon_half(bw[i].d), vaddvq_s32(acc));
    }
    return sum;
}

/* ---- IQ1_S, IQ1_M: weights in eighths, 8 * grid +- 1 ---- */

static inline int8x16_t iq1_eighths(int8x16_t grid, int neg0, int neg1) {
    int8x16_t shift = vcombine_s8(vdup_n_s8(neg0 ? -1 : 1), vdup_n_s8(neg1 ? -1 : 1));
    return vaddq_s8(vshlq_n_s8(grid, 3), shift);
}

static inline float neon_iq1_s_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq1_s *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int g = 0; g < 8; g++) {
            const uint8_t *q = bw[i].qs + 4 * g;
            int h = bw[i].qh[g], neg = h >> 15;
            const int8_t *y = bx[i].qs + 32 * g;
            int8x16_t v0 = iq1_eighths(iq_pair(q3_iq1s_grid, q[0] | (h & 7) << 8, q[1] | (h & 0x38) << 5), neg, neg);
            int8x16_t v1 = iq1_eighths(iq_pair(q3_iq1s_grid, q[2] | (h & 0x1c0) << 2, q[3] | (h & 0xe00) >> 1), neg, neg);
            int32x4_t part = dot16(dot16(vdupq_n_s32(0), v0, vld1q_s8(y)), v1, vld1q_s8(y + 16));
            acc = vmlaq_n_s32(acc, part, 2 * ((h >> 12) & 7) + 1);
        }
        sum = q3_iq_accumulate(sum, bx[i].d, iq_neon_half(bw[i].d), vaddvq_s32(acc));
    }
    return 0.125f * sum;
}

static inline float neon_iq1_m_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq1_m *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        uint64_t words;
        memcpy(&words, bw[i].scales, 8);
        int32x4_t acc = vdupq_n_s32(0);
        for (int h = 0; h < 16; h++) { /* 16 weights per multiplier: two runs, one qh byte */
            int qh = bw[i].qh[h];
            int8x16_t g = iq_pair(q3_iq1s_grid, bw[i].qs[2 * h] | (qh & 7) << 8, bw[i].qs[2 * h + 1] | (qh & 0x70) << 4);
            int8x16_t v = iq1_eighths(g, qh & 8, qh & 0x80);
            int m = 2 * (int)((words >> (16 * (h / 4) + 3 * (h % 4))) & 7) + 1;
            acc = vmlaq_n_s32(acc, dot16(vdupq_n_s32(0), v, vld1q_s8(bx[i].qs + 16 * h)), m);
        }
        sum = q3_iq_accumulate(sum, bx[i].d, iq_neon_half(q3_iq1m_d(&bw[i])), vaddvq_s32(acc));
    }
    return 0.125f * sum;
}

/* ---- IQ4_NL (against Q8_0), IQ4_XS: 4-bit indices into 16 levels ---- */

/* sum level * y over 32 weights (qs: their 16 bytes), in four int32 lanes. */
static inline int32x4_t iq4_dot32(int8x16_t table, const uint8_t *qs, const int8_t *y) {
    uint8x16_t q = vld1q_u8(qs);
    int8x16_t lo = vqtbl1q_s8(table, vandq_u8(q, vdupq_n_u8(0x0f))), hi = vqtbl1q_s8(table, vshrq_n_u8(q, 4));
    return dot16(dot16(vdupq_n_s32(0), lo, vld1q_s8(y)), hi, vld1q_s8(y + 16));
}

static inline float neon_iq4_nl_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq4_nl *bw = w;
    const q3_block_q8_0 *bx = x;
    const int8x16_t table = vld1q_s8(q3_iq4nl_values);
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK; i++)
        sum = q3_iq_accumulate(sum, iq_neon_half(bx[i].d), iq_neon_half(bw[i].d),
                               vaddvq_s32(iq4_dot32(table, bw[i].qs, bx[i].qs)));
    return sum;
}

static inline float neon_iq4_xs_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq4_xs *bw = w;
    const q3_block_q8_k *bx = x;
    const int8x16_t table = vld1q_s8(q3_iq4nl_values);
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int j = 0; j < 8; j++)
            acc = vmlaq_n_s32(acc, iq4_dot32(table, bw[i].qs + 16 * j, bx[i].qs + 32 * j), q3_iq4xs_scale(&bw[i], j));
        sum = q3_iq_accumulate(sum, bx[i].d, iq_neon_half(bw[i].d), vaddvq_s32(acc));
    }
    return sum;
}

#endif
