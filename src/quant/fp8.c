/* FP8 (e4m3, block-scaled) checkpoint weights: the repacking at load and the reference kernels
 * of Q3_TYPE_F8_E4M3_B32 (layout and the f16 trick in checkpoint_quants.h). */
#include "quant/checkpoint_quants.h"

void q3_f8_b32_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_f8_b32 *b = src;
    for (int64_t i = 0; i < n / Q3_FP8_BLOCK; i++, dst += Q3_FP8_BLOCK)
        for (int j = 0; j < Q3_FP8_BLOCK; j++) dst[j] = q3_f16_to_f32(q3_e4m3_to_f16_bits(b[i].q[j])) * b[i].d;
}

float q3_f8_b32_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_f8_b32 *b = w;
    const float *y = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_FP8_BLOCK; i++, y += Q3_FP8_BLOCK) {
        float block = 0;
        for (int j = 0; j < Q3_FP8_BLOCK; j++) block += q3_f16_to_f32(q3_e4m3_to_f16_bits(b[i].q[j])) * y[j];
        sum += block * b[i].d;
    }
    return sum;
}

bool q3_fp8_repack(const uint8_t *weight, const float *scale_inv, int64_t rows, int64_t cols, int64_t block_rows,
                   int64_t block_cols, void *dst, int64_t *bad) {
    q3_block_f8_b32 *out = dst;
    int64_t scale_cols = (cols + block_cols - 1) / block_cols;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *row = weight + r * cols;
        const float *scales = scale_inv + (r / block_rows) * scale_cols;
        for (int64_t c = 0; c < cols; c += Q3_FP8_BLOCK, out++) {
            out->d = scales[c / block_cols] * 256.0f;
            for (int j = 0; j < Q3_FP8_BLOCK; j++) {
                uint8_t v = row[c + j];
                if ((v & 0x7f) == 0x7f) {
                    *bad = r * cols + c + j;
                    return false;
                }
                out->q[j] = v;
            }
        }
    }
    return true;
}
