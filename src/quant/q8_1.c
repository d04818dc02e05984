/* Q8_1: Q8_0 plus s = d * sum(q) per block, the activation type of Q4_1 and Q5_1. Those formats
 * dequantize as d * q + m; the m part of a block's dot product is m * sum(x) = m * s, so
 * carrying s makes the offset cost one multiply per block. Only ever an activation, so it rounds
 * as Q8_0's activations do (q8_0.c): x * (127 / max|x|), half to even. */
#include <math.h>
#include "quant/blocks.h"
#include "quant/quants.h"

void q3_q8_1_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_q8_1 *b = src;
    for (int64_t i = 0; i < n / Q3_QK; i++, dst += Q3_QK) {
        float d = q3_f16_to_f32(b[i].d);
        for (int j = 0; j < Q3_QK; j++) dst[j] = (float)b[i].qs[j] * d;
    }
}

void q3_q8_1_from_float(const float *src, void *dst, int64_t n) {
    q3_block_q8_1 *b = dst;
    for (int64_t i = 0; i < n / Q3_QK; i++, src += Q3_QK) {
        float amax = 0;
        for (int j = 0; j < Q3_QK; j++) amax = fmaxf(amax, fabsf(src[j]));
        float d = amax / 127.0f;
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < Q3_QK; j++) {
            b[i].qs[j] = (int8_t)q3_nearest_int(src[j] * id);
            sum += b[i].qs[j];
        }
        b[i].d = q3_f32_to_f16(d);
        b[i].s = q3_f32_to_f16((float)sum * d);
    }
}

float q3_q8_1_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q8_1 *bw = w, *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < Q3_QK; j++) sumi += bw[i].qs[j] * bx[i].qs[j];
        sum += (float)sumi * (q3_f16_to_f32(bw[i].d) * q3_f16_to_f32(bx[i].d));
    }
    return sum;
}
