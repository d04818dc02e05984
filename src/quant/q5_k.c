/* Q5_K: Q4_K with a fifth bit per weight, q in 0..31: weight = d * sc * q - dmin * m over 8
 * sub-blocks of 32, the same packed 6-bit scales and mins, and bit 4 of weight e in bit e / 32
 * of qh[e % 32]. */
#include "quant/blocks.h"
#include "quant/kquant_fit.h"
#include "quant/quants.h"

#define SUB 32 /* weights per sub-block */

/* The 256 levels of a block in weight order, 0..31. */
static void unpack_levels(const q3_block_q5_k *b, int8_t L[Q3_QK_K]) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            L[64 * c + l] = (int8_t)((b->qs[32 * c + l] & 0xF) | ((b->qh[l] >> (2 * c)) & 1) << 4);
            L[64 * c + 32 + l] = (int8_t)((b->qs[32 * c + l] >> 4) | ((b->qh[l] >> (2 * c + 1)) & 1) << 4);
        }
}

void q3_q5_k_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_q5_k *b = src;
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

static void quantize_block(const float *x, q3_block_q5_k *b) {
    static const q3_fit_grid grid = {.first = -0.5f, .step = 0.1f, .count = 15};
    uint8_t sc[8], m[8], L[Q3_QK_K];
    q3_fit_k_block(x, 31, &grid, &b->d, &b->dmin, sc, m, L);
    q3_kscale_pack(sc, m, b->scales);
    memset(b->qh, 0, sizeof b->qh);
    memset(b->qs, 0, sizeof b->qs);
    for (int e = 0; e < Q3_QK_K; e++) {
        int j = e / SUB, l = e % SUB;
        b->qs[32 * (j / 2) + l] |= (uint8_t)((L[e] & 0xF) << (4 * (j % 2)));
        b->qh[l] |= (uint8_t)((L[e] >> 4) << j);
    }
}

void q3_q5_k_from_float(const float *src, void *dst, int64_t n) {
    q3_block_q5_k *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) quantize_block(src + Q3_QK_K * i, &b[i]);
}

float q3_q5_k_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q5_k *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        uint8_t sc[8], m[8];
        q3_kscale_unpack(bw[i].scales, sc, m);
        int32_t sum_qy = 0, sum_my = 0;
        const uint8_t *qh = bw[i].qh;
        for (int c = 0; c < 4; c++) { /* 32 bytes: sub-blocks 2c (low nibbles) and 2c + 1 */
            const uint8_t *q = bw[i].qs + 32 * c;
            const int8_t *y = bx[i].qs + 64 * c;
            int32_t s_low = 0, s_high = 0;
            for (int l = 0; l < 32; l++) {
                s_low += ((q[l] & 0xF) | ((qh[l] >> (2 * c)) & 1) << 4) * y[l];
                s_high += ((q[l] >> 4) | ((qh[l] >> (2 * c + 1)) & 1) << 4) * y[l + 32];
            }
            sum_qy += sc[2 * c] * s_low + sc[2 * c + 1] * s_high;
        }
        for (int j = 0; j < 8; j++) sum_my += m[j] * (bx[i].bsums[2 * j] + bx[i].bsums[2 * j + 1]);
        sum = q3_kdot_accumulate(sum, bx[i].d, q3_f16_to_f32(bw[i].d), q3_f16_to_f32(bw[i].dmin),
                                 sum_qy, sum_my);
    }
    return sum;
}
