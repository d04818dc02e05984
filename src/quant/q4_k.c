/* Q4_K: 256 weights per block in 8 sub-blocks of 32; weight = d * sc * q - dmin * m with q in
 * 0..15 and per-sub-block 6-bit sc and m, themselves quantized against the block's fp16 d and
 * dmin. The workhorse of Q4_K_M files. Its dot product against Q8_K activations splits into
 * sum(sc * q * y) and sum(m * y), the second read off the activations' 16-wide sums. */
#include "quant/blocks.h"
#include "quant/kquant_fit.h"
#include "quant/quants.h"

#define SUB 32 /* weights per sub-block */

/* The 256 levels of a block in weight order, 0..15. */
static void unpack_levels(const q3_block_q4_k *b, int8_t L[Q3_QK_K]) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            L[64 * c + l] = (int8_t)(b->qs[32 * c + l] & 0xF);
            L[64 * c + 32 + l] = (int8_t)(b->qs[32 * c + l] >> 4);
        }
}

void q3_q4_k_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_q4_k *b = src;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        float d = q3_f16_to_f32(b[i].d), dmin = q3_f16_to_f32(b[i].dmin);
        int8_t L[Q3_QK_K];
        unpack_levels(&b[i], L);
        for (int j = 0; j < Q3_QK_K / SUB; j++, dst += SUB) {
            uint8_t sc, m;
            q3_kscale_get(b[i].scales, j, &sc, &m);
            float dl = d * sc, ml = dmin * m;
            for (int l = 0; l < SUB; l++) dst[l] = dl * L[SUB * j + l] - ml;
        }
    }
}

static void quantize_block(const float *x, q3_block_q4_k *b) {
    static const q3_fit_grid grid = {.first = -1.0f, .step = 0.1f, .count = 20};
    uint8_t sc[8], m[8], L[Q3_QK_K];
    q3_fit_k_block(x, 15, &grid, &b->d, &b->dmin, sc, m, L);
    q3_kscale_pack(sc, m, b->scales);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            b->qs[32 * c + l] = (uint8_t)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
}

void q3_q4_k_from_float(const float *src, void *dst, int64_t n) {
    q3_block_q4_k *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) quantize_block(src + Q3_QK_K * i, &b[i]);
}

float q3_q4_k_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q4_k *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        uint8_t sc[8], m[8];
        q3_kscale_unpack(bw[i].scales, sc, m);
        int32_t sum_qy = 0, sum_my = 0;
        for (int c = 0; c < 4; c++) { /* 32 bytes: sub-blocks 2c (low nibbles) and 2c + 1 */
            const uint8_t *q = bw[i].qs + 32 * c;
            const int8_t *y = bx[i].qs + 64 * c;
            int32_t s_low = 0, s_high = 0;
            for (int l = 0; l < 32; l++) {
                s_low += (q[l] & 0xF) * y[l];
                s_high += (q[l] >> 4) * y[l + 32];
            }
            sum_qy += sc[2 * c] * s_low + sc[2 * c + 1] * s_high;
        }
        for (int j = 0; j < 8; j++) sum_my += m[j] * (bx[i].bsums[2 * j] + bx[i].bsums[2 * j + 1]);
        sum = q3_kdot_accumulate(sum, bx[i].d, q3_f16_to_f32(bw[i].d), q3_f16_to_f32(bw[i].dmin),
                                 sum_qy, sum_my);
    }
    return sum;
}
