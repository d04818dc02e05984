/* The per-block arithmetic of the CUDA kernels, written once in the subset of C that both gcc and
 * nvcc compile, so that a test built with gcc (tests/test_cuda_block_math.c) checks against the CPU
 * reference kernels exactly what the GPU kernels run: converting halves, dequantizing a block,
 * quantizing activations to the dot products' format, a block's integer dot product split into
 * the parts that the lanes of a warp compute, the float tail of a block, and the online-softmax
 * merge of attention.
 *
 * Why the GPU's dot products equal the CPU's to the bit: a K-quant or Q8_0 dot product is an
 * integer sum per block (exact in any order, so lanes may split it any way) and one float term
 * per block, added to the running sum in block order. The float operations go through Q3_FMUL /
 * Q3_FADD / Q3_FSUB, which are __fmul_rn and friends on the device: nvcc may not fuse them into a
 * multiply-add, which would round once instead of twice and change the bits. With the same
 * terms added in the same order, every (row, token) output is the CPU scalar kernel's, whatever
 * kernel (mat-vec or tiled) and whatever batch computed it.
 *
 * Q3_HD marks a function for both sides: __host__ __device__ under nvcc, nothing under gcc. */
#ifndef Q3_CUDA_BLOCK_MATH_H
#define Q3_CUDA_BLOCK_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include "q3moe.h"
#include "quant/blocks.h"

#ifdef __CUDACC__
#define Q3_HD __host__ __device__
#else
#define Q3_HD
#endif

/* ---- float operations that are never fused ---- */

#ifdef __CUDA_ARCH__
#define Q3_FMUL(a, b) __fmul_rn((a), (b))
#define Q3_FADD(a, b) __fadd_rn((a), (b))
#define Q3_FSUB(a, b) __fsub_rn((a), (b))
#define Q3_FDIV(a, b) __fdiv_rn((a), (b))
#else
/* C11 (-std=c11) does not contract a * b + c across these calls: each rounds on its own. */
static inline float q3hd_fmul(float a, float b) { return a * b; }
static inline float q3hd_fadd(float a, float b) { return a + b; }
static inline float q3hd_fsub(float a, float b) { return a - b; }
static inline float q3hd_fdiv(float a, float b) { return a / b; }
#define Q3_FMUL(a, b) q3hd_fmul((a), (b))
#define Q3_FADD(a, b) q3hd_fadd((a), (b))
#define Q3_FSUB(a, b) q3hd_fsub((a), (b))
#define Q3_FDIV(a, b) q3hd_fdiv((a), (b))
#endif

static inline Q3_HD float q3hd_as_float(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

static inline Q3_HD uint32_t q3hd_as_uint(float f) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
#endif
}

/* Four bytes at p as a little-endian word: p 4-byte aligned (a4) or only 2-byte aligned (a2,
 * the Q6_K and Q8_0 blocks, whose sizes are even but not multiples of four). */
static inline Q3_HD uint32_t q3hd_load_a4(const void *p) {
#ifdef __CUDA_ARCH__
    return *(const uint32_t *)p;
#else
    uint32_t u;
    memcpy(&u, p, 4);
    return u;
#endif
}

static inline Q3_HD uint32_t q3hd_load_a2(const void *p) {
    const uint16_t *h = (const uint16_t *)p;
    return (uint32_t)h[0] | (uint32_t)h[1] << 16;
}

/* Sum of the four signed byte products of a and b, plus c: the dp4a instruction. */
static inline Q3_HD int32_t q3hd_dp4a(uint32_t a, uint32_t b, int32_t c) {
#ifdef __CUDA_ARCH__
    return __dp4a((int)a, (int)b, c);
#else
    for (int i = 0; i < 4; i++) c += (int8_t)(a >> 8 * i) * (int8_t)(b >> 8 * i);
    return c;
#endif
}

/* ---- halves and bfloat16, as base/half.h converts them ---- */

static inline Q3_HD float q3hd_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            u = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    return q3hd_as_float(u);
}

/* Round to nearest even; overflow to infinity; NaN stays NaN. */
static inline Q3_HD uint16_t q3hd_f32_to_f16(float f) {
    uint32_t u = q3hd_as_uint(f), sign = (u >> 16) & 0x8000, man = u & 0x7fffff;
    int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    if (((u >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - exp;
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)h;
}

static inline Q3_HD float q3hd_bf16_to_f32(uint16_t h) { return q3hd_as_float((uint32_t)h << 16); }

static inline Q3_HD uint16_t q3hd_f32_to_bf16(float f) {
    uint32_t u = q3hd_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* ---- dequantizing one weight of a block (the embedding, the Q8_0 KV cache) ---- */

/* Sub-block j's 6-bit scale and min of Q4_K / Q5_K, as q3_kscale_get unpacks them. */
static inline Q3_HD void q3hd_kscale(const uint8_t *packed, int j, int *scale, int *min) {
    if (j < 4) {
        *scale = packed[j] & 63;
        *min = packed[j + 4] & 63;
    } else {
        *scale = (packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4);
        *min = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
    }
}

/* Weight e (0..255) of a Q4_K / Q5_K block: d * sc * q - dmin * m, rounded as the CPU rounds. */
static inline Q3_HD float q3hd_kquant_value(float d, float dmin, const uint8_t *scales, int e, int q) {
    int sc, m;
    q3hd_kscale(scales, e / 32, &sc, &m);
    return Q3_FSUB(Q3_FMUL(Q3_FMUL(d, (float)sc), (float)q), Q3_FMUL(dmin, (float)m));
}

static inline Q3_HD float q3hd_q4_k_value(const q3_block_q4_k *b, int e) {
    int c = e / 64, l = e % 32, high = (e % 64) >= 32;
    int q = high ? b->qs[32 * c + l] >> 4 : b->qs[32 * c + l] & 0xF;
    return q3hd_kquant_value(q3hd_f16_to_f32(b->d), q3hd_f16_to_f32(b->dmin), b->scales, e, q);
}

static inline Q3_HD float q3hd_q5_k_value(const q3_block_q5_k *b, int e) {
    int c = e / 64, l = e % 32, high = (e % 64) >= 32;
    int q = high ? b->qs[32 * c + l] >> 4 : b->qs[32 * c + l] & 0xF;
    q |= ((b->qh[l] >> (2 * c + high)) & 1) << 4;
    return q3hd_kquant_value(q3hd_f16_to_f32(b->d), q3hd_f16_to_f32(b->dmin), b->scales, e, q);
}

static inline Q3_HD float q3hd_q6_k_value(const q3_block_q6_k *b, int e) {
    int h = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
    int low = b->ql[64 * h + 32 * (quarter & 1) + l], high = b->qh[32 * h + l];
    int q = ((quarter < 2 ? low & 0xF : low >> 4) | ((high >> (2 * quarter)) & 3) << 4) - 32;
    return Q3_FMUL(Q3_FMUL(q3hd_f16_to_f32(b->d), (float)b->scales[e / 16]), (float)q);
}

static inline Q3_HD float q3hd_q8_0_value(const q3_block_q8_0 *b, int e) {
    return Q3_FMUL((float)b->qs[e], q3hd_f16_to_f32(b->d));
}

/* ---- quantizing activations: one block, as the CPU's from_float does ---- */

/* Round to nearest even through the float magic number, as q3_nearest_int. */
static inline Q3_HD int q3hd_nearest_int(float x) {
    uint32_t bits = q3hd_as_uint(Q3_FADD(x, 12582912.0f));
    return (int)(bits & 0x007fffff) - 0x00400000;
}

/* 256 floats to Q8_K: the value of largest magnitude (the first on a tie) maps to -127. */
static inline Q3_HD void q3hd_quantize_q8_k(const float *x, q3_block_q8_k *b) {
    float amax = 0, max = 0;
    for (int j = 0; j < Q3_QK_K; j++) {
        float a = fabsf(x[j]);
        if (a > amax) {
            amax = a;
            max = x[j];
        }
    }
    if (max == 0) {
        memset(b, 0, sizeof *b);
        return;
    }
    float iscale = Q3_FDIV(-127.0f, max);
    for (int j = 0; j < Q3_QK_K; j++) {
        int q = q3hd_nearest_int(Q3_FMUL(iscale, x[j]));
        b->qs[j] = (int8_t)(q < -128 ? -128 : q > 127 ? 127 : q);
    }
    for (int j = 0; j < Q3_QK_K / 16; j++) {
        int sum = 0;
        for (int l = 0; l < 16; l++) sum += b->qs[16 * j + l];
        b->bsums[j] = (int16_t)sum;
    }
    b->d = Q3_FDIV(1.0f, iscale);
}

/* 32 floats to Q8_0 as activations: d = max|x| / 127 stored as a half, q = x * (127 / max|x|)
 * rounded half to even, as the CPU's q3_q8_0_from_float. */
static inline Q3_HD void q3hd_quantize_q8_0(const float *x, q3_block_q8_0 *b) {
    float amax = 0;
    for (int j = 0; j < Q3_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    float id = amax != 0.0f ? Q3_FDIV(127.0f, amax) : 0.0f;
    b->d = q3hd_f32_to_f16(Q3_FDIV(amax, 127.0f));
    for (int j = 0; j < Q3_QK; j++) b->qs[j] = (int8_t)q3hd_nearest_int(Q3_FMUL(x[j], id));
}

/* ---- a block's dot product, in the parts the lanes of a warp take ---- */

/* The integer sums of a K-quant block against a Q8_K block: sum_qy = sum of scale * q * y, and
 * sum_my = sum of min * y (Q4_K, Q5_K; 0 for Q6_K). Every type splits a block into
 * Q3_KQ_PARTS parts whose sums add up to the block's, exactly, in any order. */
#define Q3_KQ_PARTS 8
/* Q8_0 blocks split into this many parts of 8 weights. */
#define Q3_Q8_0_PARTS 4

typedef struct q3hd_isum {
    int32_t qy, my;
} q3hd_isum;

/* Four 4-bit values (low or high nibbles of a word) with a fifth bit from hbits (bit 0 of each
 * byte): the Q5_K levels. */
static inline Q3_HD uint32_t q3hd_nibbles(uint32_t q, int high) { return high ? (q >> 4) & 0x0F0F0F0Fu : q & 0x0F0F0F0Fu; }

/* Part p = 2c + h of a Q4_K block: bytes qs[32c + 16h .. + 16], holding weights 64c + 16h + l (low
 * nibbles, sub-block 2c) and 64c + 32 + 16h + l (high nibbles, sub-block 2c + 1); and min p. */
static inline Q3_HD q3hd_isum q3hd_q4_k_part(const q3_block_q4_k *w, const q3_block_q8_k *x, int p) {
    int c = p / 2, h = p % 2, sc_lo, m_lo, sc_hi, m_hi;
    q3hd_kscale(w->scales, 2 * c, &sc_lo, &m_lo);
    q3hd_kscale(w->scales, 2 * c + 1, &sc_hi, &m_hi);
    const uint8_t *q = w->qs + 32 * c + 16 * h;
    const int8_t *y = x->qs + 64 * c + 16 * h;
    int32_t lo = 0, hi = 0;
    for (int i = 0; i < 4; i++) {
        uint32_t qw = q3hd_load_a4(q + 4 * i);
        lo = q3hd_dp4a(q3hd_nibbles(qw, 0), q3hd_load_a4(y + 4 * i), lo);
        hi = q3hd_dp4a(q3hd_nibbles(qw, 1), q3hd_load_a4(y + 32 + 4 * i), hi);
    }
    int sc, m;
    q3hd_kscale(w->scales, p, &sc, &m);
    q3hd_isum s = {sc_lo * lo + sc_hi * hi, m * (x->bsums[2 * p] + x->bsums[2 * p + 1])};
    return s;
}

/* The same for Q5_K: the fifth bit of weight 64c + 16h + l is bit 2c of qh[16h + l], of weight
 * 64c + 32 + 16h + l bit 2c + 1. */
static inline Q3_HD q3hd_isum q3hd_q5_k_part(const q3_block_q5_k *w, const q3_block_q8_k *x, int p) {
    int c = p / 2, h = p % 2, sc_lo, m_lo, sc_hi, m_hi;
    q3hd_kscale(w->scales, 2 * c, &sc_lo, &m_lo);
    q3hd_kscale(w->scales, 2 * c + 1, &sc_hi, &m_hi);
    const uint8_t *q = w->qs + 32 * c + 16 * h, *qh = w->qh + 16 * h;
    const int8_t *y = x->qs + 64 * c + 16 * h;
    int32_t lo = 0, hi = 0;
    for (int i = 0; i < 4; i++) {
        uint32_t qw = q3hd_load_a4(q + 4 * i), hw = q3hd_load_a4(qh + 4 * i);
        uint32_t vlo = q3hd_nibbles(qw, 0) | ((hw >> (2 * c)) & 0x01010101u) << 4;
        uint32_t vhi = q3hd_nibbles(qw, 1) | ((hw >> (2 * c + 1)) & 0x01010101u) << 4;
        lo = q3hd_dp4a(vlo, q3hd_load_a4(y + 4 * i), lo);
        hi = q3hd_dp4a(vhi, q3hd_load_a4(y + 32 + 4 * i), hi);
    }
    int sc, m;
    q3hd_kscale(w->scales, p, &sc, &m);
    q3hd_isum s = {sc_lo * lo + sc_hi * hi, m * (x->bsums[2 * p] + x->bsums[2 * p + 1])};
    return s;
}

/* Part p = 4h + 2half + k of a Q6_K block: in half h of 128 weights, positions
 * l = 16 half + 8k .. + 8 of its four quarters (weights l, l + 32, l + 64, l + 96), whose
 * sub-blocks have scales sc[half], sc[2 + half], sc[4 + half], sc[6 + half] (sc = scales + 8h). */
static inline Q3_HD q3hd_isum q3hd_q6_k_part(const q3_block_q6_k *w, const q3_block_q8_k *x, int p) {
    int h = p / 4, half = (p / 2) % 2, l0 = 16 * half + 8 * (p % 2);
    const uint8_t *ql = w->ql + 64 * h, *qh = w->qh + 32 * h;
    const int8_t *y = x->qs + 128 * h, *sc = w->scales + 8 * h;
    int32_t s[4] = {0, 0, 0, 0};
    for (int i = 0; i < 2; i++) {
        int l = l0 + 4 * i;
        uint32_t a = q3hd_load_a2(ql + l), b = q3hd_load_a2(ql + l + 32), hb = q3hd_load_a2(qh + l);
        uint32_t v[4] = {(a & 0x0F0F0F0Fu) | (hb & 0x03030303u) << 4, (b & 0x0F0F0F0Fu) | ((hb >> 2) & 0x03030303u) << 4,
                         ((a >> 4) & 0x0F0F0F0Fu) | ((hb >> 4) & 0x03030303u) << 4,
                         ((b >> 4) & 0x0F0F0F0Fu) | ((hb >> 6) & 0x03030303u) << 4};
        for (int k = 0; k < 4; k++) {
            /* levels 0..63 minus 32, byte by byte: no byte borrows from its neighbour */
            uint32_t centred = (v[k] | 0x80808080u) - 0x20202020u;
            centred ^= 0x80808080u;
            s[k] = q3hd_dp4a(centred, q3hd_load_a4(y + l + 32 * k), s[k]);
        }
    }
    q3hd_isum r = {sc[half] * s[0] + sc[2 + half] * s[1] + sc[4 + half] * s[2] + sc[6 + half] * s[3], 0};
    return r;
}

/* Part p of a Q8_0 block against a Q8_0 activation block: weights 8p .. 8p + 8. */
static inline Q3_HD int32_t q3hd_q8_0_part(const q3_block_q8_0 *w, const q3_block_q8_0 *x, int p) {
    int32_t s = 0;
    for (int i = 0; i < 2; i++) s = q3hd_dp4a(q3hd_load_a2(w->qs + 8 * p + 4 * i), q3hd_load_a2(x->qs + 8 * p + 4 * i), s);
    return s;
}

/* ---- a block's float term, added to the running sum in block order ---- */

/* (dx * d) * sum_qy - (dx * dmin) * sum_my: q3_kdot_accumulate's term (Q6_K: dmin 0, sum_my 0). */
static inline Q3_HD float q3hd_kquant_term(float dx, uint16_t d, uint16_t dmin, q3hd_isum s) {
    float scaled = Q3_FMUL(Q3_FMUL(dx, q3hd_f16_to_f32(d)), (float)s.qy);
    float offset = Q3_FMUL(Q3_FMUL(dx, q3hd_f16_to_f32(dmin)), (float)s.my);
    return Q3_FSUB(scaled, offset);
}

/* sum_i * (d_w * d_x): the Q8_0 dot product's term. */
static inline Q3_HD float q3hd_q8_0_term(uint16_t dw, uint16_t dx, int32_t sumi) {
    return Q3_FMUL((float)sumi, Q3_FMUL(q3hd_f16_to_f32(dw), q3hd_f16_to_f32(dx)));
}

/* Block b's whole term of a row of weight type `type` (a q3_type id: Q4_K, Q5_K, Q6_K or Q8_0)
 * against activation blocks x, its parts summed in any order: what a group of lanes computes. */
static inline Q3_HD float q3hd_block_term(int type, const void *w, const void *x, int b) {
    if (type == Q3_TYPE_Q8_0) {
        const q3_block_q8_0 *bw = (const q3_block_q8_0 *)w + b, *bx = (const q3_block_q8_0 *)x + b;
        int32_t s = 0;
        for (int p = 0; p < Q3_Q8_0_PARTS; p++) s += q3hd_q8_0_part(bw, bx, p);
        return q3hd_q8_0_term(bw->d, bx->d, s);
    }
    const q3_block_q8_k *bx = (const q3_block_q8_k *)x + b;
    q3hd_isum s = {0, 0};
    for (int p = 0; p < Q3_KQ_PARTS; p++) {
        q3hd_isum t = type == Q3_TYPE_Q4_K   ? q3hd_q4_k_part((const q3_block_q4_k *)w + b, bx, p)
                      : type == Q3_TYPE_Q5_K ? q3hd_q5_k_part((const q3_block_q5_k *)w + b, bx, p)
                                             : q3hd_q6_k_part((const q3_block_q6_k *)w + b, bx, p);
        s.qy += t.qy;
        s.my += t.my;
    }
    if (type == Q3_TYPE_Q4_K) {
        const q3_block_q4_k *bw = (const q3_block_q4_k *)w + b;
        return q3hd_kquant_term(bx->d, bw->d, bw->dmin, s);
    }
    if (type == Q3_TYPE_Q5_K) {
        const q3_block_q5_k *bw = (const q3_block_q5_k *)w + b;
        return q3hd_kquant_term(bx->d, bw->d, bw->dmin, s);
    }
    return q3hd_kquant_term(bx->d, ((const q3_block_q6_k *)w + b)->d, 0, s);
}

/* A whole row's dot product of n_blocks blocks: the terms added in block order. */
static inline Q3_HD float q3hd_row_dot(int type, const void *w, const void *x, int n_blocks) {
    float acc = 0;
    for (int b = 0; b < n_blocks; b++) acc = Q3_FADD(acc, q3hd_block_term(type, w, x, b));
    return acc;
}

/* ---- attention: the online-softmax merge ---- */

/* The online-softmax merge of a running state (max, sum of exponentials, weighted sums of
 * values) with a chunk's partial: the new max and the factors each side's sums are rescaled by,
 * exp(old max - new max). */
static inline Q3_HD void q3hd_softmax_factors(float state_max, float part_max, float *new_max, float *a, float *b) {
    float m = state_max > part_max ? state_max : part_max;
    *new_max = m;
    *a = expf(Q3_FSUB(state_max, m));
    *b = expf(Q3_FSUB(part_max, m));
}

/* x * a + y * b, each product rounded: how every sum of the state meets the partial's. */
static inline Q3_HD float q3hd_softmax_mix(float x, float a, float y, float b) { return Q3_FADD(Q3_FMUL(x, a), Q3_FMUL(y, b)); }

/* state <- state (+) part for one query row of head_dim hd, as src/cpu/attend.c's fold_row. */
static inline Q3_HD void q3hd_softmax_fold(float *state_max, float *state_sum, float *state_acc, float part_max,
                                           float part_sum, const float *part_acc, int hd) {
    float a, b;
    q3hd_softmax_factors(*state_max, part_max, state_max, &a, &b);
    *state_sum = q3hd_softmax_mix(*state_sum, a, part_sum, b);
    for (int d = 0; d < hd; d++) state_acc[d] = q3hd_softmax_mix(state_acc[d], a, part_acc[d], b);
}

/* SiLU as cpu/ops.h's q3_silu, with its same shortcuts at both ends. */
static inline Q3_HD float q3hd_silu(float x) {
    return x < -88.8f ? -0.0f : x > 88.0f ? x : Q3_FDIV(x, Q3_FADD(1.0f, expf(-x)));
}

#endif
