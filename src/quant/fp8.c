/* FP8 (e4m3, block-scaled) checkpoint weights: the repacking at load and the reference kernels
 * of Q3_TYPE_F8_E4M3_B32 (layout and the f16 trick in checkpoint_quants.h). */
#include "quant/checkpoint_quants.h"

#include <math.h>

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

/* The e4m3 byte nearest to f16 value h (|h| <= 448 / 256): h's bits rounded to nearest even
 * at bit 7, through f16 first (so a tie at f32 precision may round twice). */
static uint8_t f16_to_e4m3(uint16_t h) {
    uint16_t magnitude = h & 0x7fff;
    uint16_t rounded = (uint16_t)((magnitude + 0x3f + ((magnitude >> 7) & 1)) >> 7);
    if (rounded > 0x7e) rounded = 0x7e; /* 448, the largest finite e4m3 */
    return (uint8_t)(rounded | ((h >> 8) & 0x80));
}

void q3_f8_b32_from_float(const float *src, void *dst, int64_t n) {
    q3_block_f8_b32 *b = dst;
    for (int64_t i = 0; i < n / Q3_FP8_BLOCK; i++, src += Q3_FP8_BLOCK) {
        float amax = 0;
        for (int j = 0; j < Q3_FP8_BLOCK; j++) amax = fmaxf(amax, fabsf(src[j]));
        float scale = amax / 448.0f; /* the largest weight maps to e4m3's 448 */
        b[i].d = scale * 256.0f;
        float inv = scale > 0 ? 1.0f / b[i].d : 0.0f;
        for (int j = 0; j < Q3_FP8_BLOCK; j++) b[i].q[j] = f16_to_e4m3(q3_f32_to_f16(src[j] * inv));
    }
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
