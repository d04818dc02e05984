/* Q4_0: 32 weights per block as 4-bit q with x = d * (q - 8). The scale maps the weight of
 * largest magnitude to -8 exactly (d = that weight / -8), which spends the asymmetric extra
 * level of -8..7 on the extreme value. */
#include "quant/blocks.h"
#include "quant/quants.h"

void q3_q4_0_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / Q3_QK; i++, dst += Q3_QK) {
        float d = q3_f16_to_f32(b[i].d);
        for (int j = 0; j < Q3_QK / 2; j++) {
            dst[j] = (float)((b[i].qs[j] & 0xF) - 8) * d;
            dst[j + Q3_QK / 2] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* q = trunc(x / d + 8.5): rounding half up after the offset, as the reference does. */
static uint8_t quantize_nibble(float x, float id) {
    int q = (int)(x * id + 8.5f);
    return (uint8_t)(q > 15 ? 15 : q);
}

void q3_q4_0_from_float(const float *src, void *dst, int64_t n) {
    q3_block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / Q3_QK; i++, src += Q3_QK) {
        float d = q3_signed_absmax(src, Q3_QK) / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = q3_f32_to_f16(d);
        for (int j = 0; j < Q3_QK / 2; j++)
            b[i].qs[j] = (uint8_t)(quantize_nibble(src[j], id) |
                                   quantize_nibble(src[j + Q3_QK / 2], id) << 4);
    }
}

float q3_q4_0_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q4_0 *bw = w;
    const q3_block_q8_0 *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < Q3_QK / 2; j++) {
            sumi += ((bw[i].qs[j] & 0xF) - 8) * bx[i].qs[j];
            sumi += ((bw[i].qs[j] >> 4) - 8) * bx[i].qs[j + Q3_QK / 2];
        }
        sum += (float)sumi * (q3_f16_to_f32(bw[i].d) * q3_f16_to_f32(bx[i].d));
    }
    return sum;
}
