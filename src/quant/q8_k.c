/* Q8_K: the activation type of the K-quants. 256 int8 values against a float scale (not fp16:
 * activations vary too widely in range for fp16 to carry them losslessly), plus the sum of
 * each run of 16 values, from which the K-quant dot products take their min and offset terms. */
#include <math.h>
#include "quant/blocks.h"
#include "quant/quants.h"

void q3_q8_k_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_q8_k *b = src;
    for (int64_t i = 0; i < n / Q3_QK_K; i++, dst += Q3_QK_K)
        for (int j = 0; j < Q3_QK_K; j++) dst[j] = b[i].d * b[i].qs[j];
}

/* Maps the value of largest magnitude to -127 and rounds to nearest even, as llama.cpp's
 * reference does. */
void q3_q8_k_from_float(const float *src, void *dst, int64_t n) {
    q3_block_q8_k *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++, src += Q3_QK_K) {
        float max = q3_signed_absmax(src, Q3_QK_K);
        if (max == 0) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = -127.0f / max;
        for (int j = 0; j < Q3_QK_K; j++) {
            int q = q3_nearest_int(iscale * src[j]);
            b[i].qs[j] = (int8_t)q3_clamp_int(q, -128, 127);
        }
        for (int j = 0; j < Q3_QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += b[i].qs[16 * j + l];
            b[i].bsums[j] = (int16_t)sum;
        }
        b[i].d = 1 / iscale;
    }
}

float q3_q8_k_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q8_k *bw = w, *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < Q3_QK_K; j++) sumi += bw[i].qs[j] * bx[i].qs[j];
        sum += (float)sumi * (bw[i].d * bx[i].d);
    }
    return sum;
}
