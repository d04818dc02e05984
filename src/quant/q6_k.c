/* Q6_K: 256 weights per block in 16 sub-blocks of 16; weight = d * sc * (q - 32) with q in
 * 0..63, int8 sub-block scales and one fp16 d. Symmetric and fine-grained: Q4_K_M files use it
 * for the tensors that hurt most when quantized (attn_v, half of ffn_down, output). */
#include <math.h>
#include "quant/blocks.h"
#include "quant/kquant_fit.h"
#include "quant/quants.h"

#define SUB 16 /* weights per sub-block */

/* The 256 levels of a block in weight order, minus 32: -32..31. */
static void unpack_levels(const q3_block_q6_k *b, int8_t L[Q3_QK_K]) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        int8_t *out = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            out[l] = (int8_t)(((ql[l] & 0xF) | (qh[l] & 3) << 4) - 32);
            out[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32);
            out[l + 64] = (int8_t)(((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
            out[l + 96] = (int8_t)(((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
        }
    }
}

void q3_q6_k_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_q6_k *b = src;
    for (int64_t i = 0; i < n / Q3_QK_K; i++, dst += Q3_QK_K) {
        float d = q3_f16_to_f32(b[i].d);
        int8_t L[Q3_QK_K];
        unpack_levels(&b[i], L);
        for (int e = 0; e < Q3_QK_K; e++) dst[e] = d * b[i].scales[e / SUB] * L[e];
    }
}

static void quantize_block(const float *x, q3_block_q6_k *b) {
    float scales[Q3_QK_K / SUB];
    uint8_t L[Q3_QK_K];
    float max_scale = 0, max_abs_scale = 0;
    for (int j = 0; j < Q3_QK_K / SUB; j++) {
        scales[j] = q3_fit_symmetric(SUB, 32, x + SUB * j, L + SUB * j, 0);
        if (fabsf(scales[j]) > max_abs_scale) {
            max_abs_scale = fabsf(scales[j]);
            max_scale = scales[j];
        }
    }
    memset(b, 0, sizeof *b);
    if (max_abs_scale < 1e-15f) return; /* an all-zero block: d = 0, every level 0 */

    /* The largest scale goes to -128 (the extra negative int8 level), as the levels do. */
    float iscale = -128.0f / max_scale;
    b->d = q3_f32_to_f16(1 / iscale);
    for (int j = 0; j < Q3_QK_K / SUB; j++) {
        int s = q3_nearest_int(iscale * scales[j]);
        b->scales[j] = (int8_t)q3_clamp_int(s, -128, 127);
    }
    float d = q3_f16_to_f32(b->d);
    for (int j = 0; j < Q3_QK_K / SUB; j++) {
        float dl = d * b->scales[j];
        for (int l = 0; l < SUB; l++) {
            int q = dl != 0 ? q3_nearest_int(x[SUB * j + l] / dl) : 0;
            L[SUB * j + l] = (uint8_t)(q3_clamp_int(q, -32, 31) + 32);
        }
    }
    for (int e = 0; e < Q3_QK_K; e++) {
        int half = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
        b->ql[64 * half + 32 * (quarter % 2) + l] |= (uint8_t)((L[e] & 0xF) << (quarter < 2 ? 0 : 4));
        b->qh[32 * half + l] |= (uint8_t)((L[e] >> 4) << (2 * quarter));
    }
}

void q3_q6_k_from_float(const float *src, void *dst, int64_t n) {
    q3_block_q6_k *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) quantize_block(src + Q3_QK_K * i, &b[i]);
}

float q3_q6_k_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q6_k *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32_t sum_qy = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = bw[i].ql + 64 * h, *qh = bw[i].qh + 32 * h;
            const int8_t *y = bx[i].qs + 128 * h, *sc = bw[i].scales + 8 * h;
            for (int half = 0; half < 2; half++) { /* l in one 16-wide sub-block of each quarter */
                int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                for (int l = 16 * half; l < 16 * half + 16; l++) {
                    s0 += (((ql[l] & 0xF) | (qh[l] & 3) << 4) - 32) * y[l];
                    s1 += (((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32) * y[l + 32];
                    s2 += (((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32) * y[l + 64];
                    s3 += (((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32) * y[l + 96];
                }
                sum_qy += sc[half] * s0 + sc[2 + half] * s1 + sc[4 + half] * s2 + sc[6 + half] * s3;
            }
        }
        sum = q3_kdot_accumulate(sum, bx[i].d, q3_f16_to_f32(bw[i].d), 0, sum_qy, 0);
    }
    return sum;
}
