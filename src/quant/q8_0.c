/* Q8_0: 32 weights per block as int8 against one fp16 scale, d = max|x| / 127. The simplest
 * format and the activation type of Q4_0, Q5_0, Q8_0 and IQ4_NL weights: activations are
 * quantized with from_float, then vec_dot is an int8 dot product per block, scaled once per
 * block.
 *
 * Files and run time round differently, as llama.cpp does: its file quantizer (llama-quantize,
 * the gguf package) rounds x / d half away from zero, while the quantizer its x86 CPU backend
 * runs on activations and KV caches multiplies by 127 / max|x| and rounds half to even. The two
 * differ in a few values per row, and those steer MoE routing: a near-tie between two experts'
 * router logits resolved differently turns one position's distribution over, so run-time
 * activations take llama.cpp's run-time rounding and files keep the file rounding. */
#include <math.h>
#include "quant/blocks.h"
#include "quant/quants.h"

void q3_q8_0_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / Q3_QK; i++, dst += Q3_QK) {
        float d = q3_f16_to_f32(b[i].d);
        for (int j = 0; j < Q3_QK; j++) dst[j] = (float)b[i].qs[j] * d;
    }
}

static float block_amax(const float *x) {
    float amax = 0;
    for (int j = 0; j < Q3_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    return amax;
}

/* Activations: q = x * (127 / max|x|) rounded half to even. */
void q3_q8_0_from_float(const float *src, void *dst, int64_t n) {
    q3_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / Q3_QK; i++, src += Q3_QK) {
        float amax = block_amax(src), id = amax != 0.0f ? 127.0f / amax : 0.0f;
        b[i].d = q3_f32_to_f16(amax / 127.0f);
        for (int j = 0; j < Q3_QK; j++) b[i].qs[j] = (int8_t)q3_nearest_int(src[j] * id);
    }
}

/* Files: q = x * (1 / d) rounded half away from zero (roundf), the reference's bytes. Q8_0 has
 * no use for an importance: every value gets its nearest level. */
void q3_q8_0_quantize(const float *src, void *dst, int64_t n, const float *importance) {
    (void)importance;
    q3_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / Q3_QK; i++, src += Q3_QK) {
        float d = block_amax(src) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = q3_f32_to_f16(d);
        for (int j = 0; j < Q3_QK; j++) b[i].qs[j] = (int8_t)roundf(src[j] * id);
    }
}

float q3_q8_0_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_q8_0 *bw = w, *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < Q3_QK; j++) sumi += bw[i].qs[j] * bx[i].qs[j];
        sum += (float)sumi * (q3_f16_to_f32(bw[i].d) * q3_f16_to_f32(bx[i].d));
    }
    return sum;
}
