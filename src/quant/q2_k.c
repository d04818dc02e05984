/* Q2_K: 256 weights per block in 16 sub-blocks of 16; weight = d * sc * q - dmin * m with q in
 * 0..3 and a 4-bit scale and min per sub-block against the block's fp16 d and dmin. At 2.625
 * bits per weight it is the smallest K-quant; its scale search minimises absolute rather than
 * squared error, which suits four levels better. */
#include <math.h>
#include "quant/blocks.h"
#include "quant/kquant_fit.h"
#include "quant/quants.h"

#define SUB 16 /* weights per sub-block */

/* The 256 levels of a block in weight order, 0..3: byte qs[32h + l] holds weights 128h + l,
 * +32, +64, +96 in its bit pairs. */
static void unpack_levels(const q3_block_q2_k *b, int8_t L[Q3_QK_K]) {
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++)
                L[128 * h + 32 * k + l] = (int8_t)((b->qs[32 * h + l] >> (2 * k)) & 3);
}

void q3_q2_k_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_q2_k *b = src;
    for (int64_t i = 0; i < n / Q3_QK_K; i++, dst += Q3_QK_K) {
        float d = q3_f16_to_f32(b[i].d), dmin = q3_f16_to_f32(b[i].dmin);
        int8_t L[Q3_QK_K];
        unpack_levels(&b[i], L);
        for (int j = 0; j < Q3_QK_K / SUB; j++) {
            float dl = d * (b[i].scales[j] & 0xF), ml = dmin * (b[i].scales[j] >> 4);
            for (int l = 0; l < SUB; l++) dst[SUB * j + l] = dl * L[SUB * j + l] - ml;
        }
    }
}

static void quantize_block(const float *x, q3_block_q2_k *b) {
    static const q3_fit_grid grid = {.first = -0.5f, .step = 0.1f, .count = 15, .abs_error = true};
    float scales[Q3_QK_K / SUB], offsets[Q3_QK_K / SUB], w[SUB];
    uint8_t L[Q3_QK_K];
    float max_scale = 0, max_offset = 0;
    for (int j = 0; j < Q3_QK_K / SUB; j++) {
        for (int l = 0; l < SUB; l++) w[l] = fabsf(x[SUB * j + l]);
        scales[j] = q3_fit_scale_min(SUB, 3, x + SUB * j, w, L + SUB * j, &offsets[j], &grid);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (offsets[j] > max_offset) max_offset = offsets[j];
    }
    float inv_scale = max_scale > 0 ? 15 / max_scale : 0;
    float inv_offset = max_offset > 0 ? 15 / max_offset : 0;
    for (int j = 0; j < Q3_QK_K / SUB; j++) {
        uint8_t sc = (uint8_t)q3_clamp_int(q3_nearest_int(inv_scale * scales[j]), 0, 15);
        uint8_t m = (uint8_t)q3_clamp_int(q3_nearest_int(inv_offset * offsets[j]), 0, 15);
        b->scales[j] = (uint8_t)(sc | m << 4);
    }
    b->d = q3_f32_to_f16(max_scale / 15);
    b->dmin = q3_f32_to_f16(max_offset / 15);

    float d = q3_f16_to_f32(b->d), dmin = q3_f16_to_f32(b->dmin);
    for (int j = 0; j < Q3_QK_K / SUB; j++) {
        float dl = d * (b->scales[j] & 0xF), ml = dmin * (b->scales[j] >> 4);
        for (int l = 0; l < SUB; l++) {
            int q = dl != 0 ? q3_nearest_int((x[SUB * j + l] + ml) / dl) : 0;
            L[SUB * j + l] = (uint8_t)q3_clamp_int(q, 0, 3);
        }
    }
    memset(b->qs, 0, sizeof b->qs);
    for (int e = 0; e < Q3_QK_K; e++) /* bit pair (e % 128) / 32 of byte 32 * (e / 128) + e % 32 */
        b->qs[32 * (e / 128) + e % 32] |= (uint8_t)(L[e] << (2 * ((e % 128) / 32)));
}

void q3_q2_k_from_float(const float *src, void *dst, int64_t n) {
    q3_block_q2_k *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) quantize_block(src + Q3_QK_K * i, &b[i]);
}

float q3_q2_k_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q2_k *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32_t sum_qy = 0, sum_my = 0;
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++) { /* weights 128h + 32k + l: sub-blocks 8h + 2k, +1 */
                const uint8_t *q = bw[i].qs + 32 * h;
                const int8_t *y = bx[i].qs + 128 * h + 32 * k;
                int32_t s0 = 0, s1 = 0;
                for (int l = 0; l < 16; l++) {
                    s0 += ((q[l] >> (2 * k)) & 3) * y[l];
                    s1 += ((q[l + 16] >> (2 * k)) & 3) * y[l + 16];
                }
                const uint8_t *sc = bw[i].scales + 8 * h + 2 * k;
                sum_qy += (sc[0] & 0xF) * s0 + (sc[1] & 0xF) * s1;
            }
        for (int j = 0; j < Q3_QK_K / SUB; j++) sum_my += (bw[i].scales[j] >> 4) * bx[i].bsums[j];
        sum = q3_kdot_accumulate(sum, bx[i].d, q3_f16_to_f32(bw[i].d), q3_f16_to_f32(bw[i].dmin),
                                 sum_qy, sum_my);
    }
    return sum;
}
