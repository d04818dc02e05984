/* GPTQ-Int4 checkpoint weights: the repacking at load into Q4_0's blocks and the reference
 * kernels of Q3_TYPE_GPTQ4_B32, which reads those blocks against float activations (see
 * checkpoint_quants.h for why). */
#include "quant/blocks.h"
#include "quant/checkpoint_quants.h"

void q3_gptq4_b32_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / Q3_QK; i++, dst += Q3_QK) {
        float d = q3_f16_to_f32(b[i].d);
        for (int j = 0; j < Q3_QK / 2; j++) {
            dst[j] = (float)((b[i].qs[j] & 0xF) - 8) * d;
            dst[j + Q3_QK / 2] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

float q3_gptq4_b32_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q4_0 *b = w;
    const float *y = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK; i++, y += Q3_QK) {
        float block = 0;
        for (int j = 0; j < Q3_QK / 2; j++)
            block += (float)((b[i].qs[j] & 0xF) - 8) * y[j] + (float)((b[i].qs[j] >> 4) - 8) * y[j + Q3_QK / 2];
        sum += block * q3_f16_to_f32(b[i].d);
    }
    return sum;
}

static int nibble(const int32_t *packed, int64_t index) { return (int)(((uint32_t)packed[index / 8] >> (4 * (index % 8))) & 15); }

bool q3_gptq4_repack(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales, int64_t in, int64_t out,
                     int64_t group, int zero_offset, void *dst, int64_t *bad_group, int64_t *bad_out) {
    q3_block_q4_0 *b = dst;
    int64_t groups = in / group;
    for (int64_t g = 0; g < groups; g++)
        for (int64_t o = 0; o < out; o++)
            if (nibble(qzeros + g * (out / 8), o) + zero_offset != 8) {
                *bad_group = g, *bad_out = o;
                return false;
            }
    for (int64_t o = 0; o < out; o++) {
        for (int64_t i0 = 0; i0 < in; i0 += Q3_QK, b++) {
            b->d = scales[(i0 / group) * out + o];
            for (int j = 0; j < Q3_QK / 2; j++) {
                /* input i of output o: nibble i % 8 of qweight[i / 8][o] */
                int64_t lo = i0 + j, hi = i0 + j + Q3_QK / 2;
                int ql = (int)(((uint32_t)qweight[(lo / 8) * out + o] >> (4 * (lo % 8))) & 15);
                int qh = (int)(((uint32_t)qweight[(hi / 8) * out + o] >> (4 * (hi % 8))) & 15);
                b->qs[j] = (uint8_t)(ql | qh << 4);
            }
        }
    }
    return true;
}
