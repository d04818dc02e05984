/* Q3_K: 256 weights per block in 16 sub-blocks of 16; weight = d * sc * q with q in -4..3 and
 * signed 6-bit sub-block scales against one fp16 d. The low two bits of each q are packed as in
 * Q2_K; the third sits in hmask, set meaning "no -4 offset". */
#include <math.h>
#include "quant/blocks.h"
#include "quant/kquant_fit.h"
#include "quant/quants.h"

#define SUB 16 /* weights per sub-block */

/* The 16 scales (-32..31). Bytes 0-7 hold the low nibbles, scales 0-7 in the low halves and
 * 8-15 in the high halves; bytes 8-11 hold the top two bits, scale j in byte 8 + j % 4 at bit
 * pair j / 4. */
static void unpack_scales(const uint8_t packed[12], int scales[16]) {
    for (int j = 0; j < 16; j++) {
        int low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
        int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        scales[j] = (low | high << 4) - 32;
    }
}

static void pack_scales(const int scales[16], uint8_t packed[12]) {
    memset(packed, 0, 12);
    for (int j = 0; j < 16; j++) {
        int biased = scales[j] + 32;
        packed[j % 8] |= (uint8_t)((biased & 0xF) << (j < 8 ? 0 : 4));
        packed[8 + j % 4] |= (uint8_t)((biased >> 4) << (2 * (j / 4)));
    }
}

/* The 256 levels of a block in weight order, -4..3: low bits as in Q2_K, and the level drops
 * by 4 where weight e's bit (e / 32 of hmask[e % 32]) is clear. */
static void unpack_levels(const q3_block_q3_k *b, int8_t L[Q3_QK_K]) {
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                int low = (b->qs[32 * h + l] >> (2 * k)) & 3;
                int high_set = (b->hmask[l] >> (4 * h + k)) & 1;
                L[128 * h + 32 * k + l] = (int8_t)(low - (high_set ? 0 : 4));
            }
}

void q3_q3_k_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_q3_k *b = src;
    for (int64_t i = 0; i < n / Q3_QK_K; i++, dst += Q3_QK_K) {
        float d = q3_f16_to_f32(b[i].d);
        int scales[16];
        int8_t L[Q3_QK_K];
        unpack_scales(b[i].scales, scales);
        unpack_levels(&b[i], L);
        for (int j = 0; j < Q3_QK_K / SUB; j++) {
            float dl = d * scales[j];
            for (int l = 0; l < SUB; l++) dst[SUB * j + l] = dl * L[SUB * j + l];
        }
    }
}

static void quantize_block(const float *x, q3_block_q3_k *b) {
    float scales[Q3_QK_K / SUB];
    uint8_t L[Q3_QK_K];
    float max_scale = 0, max_abs_scale = 0;
    for (int j = 0; j < Q3_QK_K / SUB; j++) {
        scales[j] = q3_fit_symmetric(SUB, 4, x + SUB * j, L + SUB * j, 5);
        if (fabsf(scales[j]) > max_abs_scale) {
            max_abs_scale = fabsf(scales[j]);
            max_scale = scales[j];
        }
    }
    memset(b, 0, sizeof *b);
    int qscales[16] = {0};
    if (max_abs_scale >= 1e-15f) {
        float iscale = -32.0f / max_scale; /* the largest scale goes to -32 */
        for (int j = 0; j < 16; j++) {
            int s = q3_nearest_int(iscale * scales[j]);
            qscales[j] = q3_clamp_int(s, -32, 31);
        }
        b->d = q3_f32_to_f16(1 / iscale);
    }
    pack_scales(qscales, b->scales);

    float d = q3_f16_to_f32(b->d);
    for (int j = 0; j < Q3_QK_K / SUB; j++) {
        float dl = d * qscales[j];
        for (int l = 0; l < SUB; l++) {
            int q = dl != 0 ? q3_nearest_int(x[SUB * j + l] / dl) : 0;
            L[SUB * j + l] = (uint8_t)(q3_clamp_int(q, -4, 3) + 4);
        }
    }
    for (int e = 0; e < Q3_QK_K; e++) {
        int level = L[e];
        if (level > 3) {
            b->hmask[e % 32] |= (uint8_t)(1 << (e / 32));
            level -= 4;
        }
        b->qs[32 * (e / 128) + e % 32] |= (uint8_t)(level << (2 * ((e % 128) / 32)));
    }
}

void q3_q3_k_from_float(const float *src, void *dst, int64_t n) {
    q3_block_q3_k *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) quantize_block(src + Q3_QK_K * i, &b[i]);
}

float q3_q3_k_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q3_k *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int scales[16];
        unpack_scales(bw[i].scales, scales);
        int32_t sum_qy = 0;
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++) { /* weights 128h + 32k + l: sub-blocks 8h + 2k, +1 */
                const uint8_t *q = bw[i].qs + 32 * h, *hm = bw[i].hmask;
                const int8_t *y = bx[i].qs + 128 * h + 32 * k;
                int bit = 4 * h + k;
                int32_t s0 = 0, s1 = 0;
                for (int l = 0; l < 16; l++) {
                    s0 += (((q[l] >> (2 * k)) & 3) + (((hm[l] >> bit) & 1) << 2) - 4) * y[l];
                    s1 += (((q[l + 16] >> (2 * k)) & 3) + (((hm[l + 16] >> bit) & 1) << 2) - 4) * y[l + 16];
                }
                sum_qy += scales[8 * h + 2 * k] * s0 + scales[8 * h + 2 * k + 1] * s1;
            }
        sum = q3_kdot_accumulate(sum, bx[i].d, q3_f16_to_f32(bw[i].d), 0, sum_qy, 0);
    }
    return sum;
}
