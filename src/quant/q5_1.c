/* Q5_1: Q4_1 with a fifth bit, x = d * q + m, q in 0..31; the bits are laid out as in Q5_0.
 * Its dot product runs against Q8_1 activations, whose s = d * sum(q) supplies the m term. */
#include "quant/blocks.h"
#include "quant/quants.h"

static uint32_t load_qh(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

/* The levels 0..31 of a block in weight order: the nibbles as in Q4_0, bit 4 from qh. */
static void unpack_levels(const q3_block_q5_1 *b, int L[Q3_QK]) {
    uint32_t qh = load_qh(b->qh);
    for (int j = 0; j < Q3_QK / 2; j++) {
        L[j] = (b->qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
        L[j + Q3_QK / 2] = (b->qs[j] >> 4) | (int)((qh >> (j + Q3_QK / 2)) & 1) << 4;
    }
}

void q3_q5_1_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_q5_1 *b = src;
    for (int64_t i = 0; i < n / Q3_QK; i++, dst += Q3_QK) {
        float d = q3_f16_to_f32(b[i].d), m = q3_f16_to_f32(b[i].m);
        int L[Q3_QK];
        unpack_levels(&b[i], L);
        for (int j = 0; j < Q3_QK; j++) dst[j] = (float)L[j] * d + m;
    }
}

void q3_q5_1_from_float(const float *src, void *dst, int64_t n) {
    q3_block_q5_1 *b = dst;
    for (int64_t i = 0; i < n / Q3_QK; i++, src += Q3_QK) {
        float min = src[0], max = src[0];
        for (int j = 1; j < Q3_QK; j++) {
            if (src[j] < min) min = src[j];
            if (src[j] > max) max = src[j];
        }
        float d = (max - min) / 31.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t q[Q3_QK];
        uint32_t qh = 0;
        for (int j = 0; j < Q3_QK; j++) {
            int v = (int)((src[j] - min) * id + 0.5f);
            q[j] = (uint8_t)(v > 31 ? 31 : v);
            qh |= (uint32_t)(q[j] >> 4) << j;
        }
        b[i].d = q3_f32_to_f16(d);
        b[i].m = q3_f32_to_f16(min);
        for (int j = 0; j < 4; j++) b[i].qh[j] = (uint8_t)(qh >> (8 * j));
        for (int j = 0; j < Q3_QK / 2; j++)
            b[i].qs[j] = (uint8_t)((q[j] & 0xF) | (q[j + Q3_QK / 2] & 0xF) << 4);
    }
}

float q3_q5_1_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q5_1 *bw = w;
    const q3_block_q8_1 *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        int L[Q3_QK];
        unpack_levels(&bw[i], L);
        int32_t sumi = 0;
        for (int j = 0; j < Q3_QK; j++) sumi += L[j] * bx[i].qs[j];
        float scaled = (float)sumi * (q3_f16_to_f32(bw[i].d) * q3_f16_to_f32(bx[i].d));
        sum += scaled + q3_f16_to_f32(bw[i].m) * q3_f16_to_f32(bx[i].s);
    }
    return sum;
}
