/* Q4_1: 32 weights per block as 4-bit q with x = d * q + m: the block's range [min, max] cut
 * into 15 steps. Its dot product runs against Q8_1 activations, whose per-block s = d * sum(q)
 * supplies the m term. */
#include "quant/blocks.h"
#include "quant/quants.h"

void q3_q4_1_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / Q3_QK; i++, dst += Q3_QK) {
        float d = q3_f16_to_f32(b[i].d), m = q3_f16_to_f32(b[i].m);
        for (int j = 0; j < Q3_QK / 2; j++) {
            dst[j] = (float)(b[i].qs[j] & 0xF) * d + m;
            dst[j + Q3_QK / 2] = (float)(b[i].qs[j] >> 4) * d + m;
        }
    }
}

/* q = trunc((x - min) / d + 0.5), capped at 15, as the reference does. */
static uint8_t quantize_nibble(float x, float min, float id) {
    int q = (int)((x - min) * id + 0.5f);
    return (uint8_t)(q > 15 ? 15 : q);
}

void q3_q4_1_from_float(const float *src, void *dst, int64_t n) {
    q3_block_q4_1 *b = dst;
    for (int64_t i = 0; i < n / Q3_QK; i++, src += Q3_QK) {
        float min = src[0], max = src[0];
        for (int j = 1; j < Q3_QK; j++) {
            if (src[j] < min) min = src[j];
            if (src[j] > max) max = src[j];
        }
        float d = (max - min) / 15.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = q3_f32_to_f16(d);
        b[i].m = q3_f32_to_f16(min);
        for (int j = 0; j < Q3_QK / 2; j++)
            b[i].qs[j] = (uint8_t)(quantize_nibble(src[j], min, id) |
                                   quantize_nibble(src[j + Q3_QK / 2], min, id) << 4);
    }
}

float q3_q4_1_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q4_1 *bw = w;
    const q3_block_q8_1 *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < Q3_QK / 2; j++) {
            sumi += (bw[i].qs[j] & 0xF) * bx[i].qs[j];
            sumi += (bw[i].qs[j] >> 4) * bx[i].qs[j + Q3_QK / 2];
        }
        float scaled = (float)sumi * (q3_f16_to_f32(bw[i].d) * q3_f16_to_f32(bx[i].d));
        sum += scaled + q3_f16_to_f32(bw[i].m) * q3_f16_to_f32(bx[i].s);
    }
    return sum;
}
