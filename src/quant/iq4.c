/* IQ4_NL and IQ4_XS: 4-bit indices into 16 non-uniform levels (q3_iq4nl_values, denser near
 * zero where most weights lie), one fp16 scale per 32 weights (IQ4_NL) or one fp16 d per 256
 * with a 6-bit signed scale per 32 (IQ4_XS, 4.25 bits a weight). IQ4_NL pairs with Q8_0
 * activations, IQ4_XS with Q8_K. Neither needs an importance matrix to quantize well; one
 * sharpens the fit where the activations are large. */
#include <math.h>
#include "quant/iq_blocks.h"
#include "quant/iq_fit.h"
#include "quant/iq_grids.h"
#include "quant/quants.h"

#define SUB 32 /* weights per scale */

/* ---- dequantization ---- */

static void levels_to_float(const uint8_t qs[SUB / 2], float dl, float *dst) {
    for (int j = 0; j < SUB / 2; j++) {
        dst[j] = dl * q3_iq4nl_values[qs[j] & 0xf];
        dst[j + SUB / 2] = dl * q3_iq4nl_values[qs[j] >> 4];
    }
}

void q3_iq4_nl_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_iq4_nl *b = src;
    for (int64_t i = 0; i < n / Q3_QK; i++, dst += Q3_QK) levels_to_float(b[i].qs, q3_f16_to_f32(b[i].d), dst);
}

void q3_iq4_xs_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_iq4_xs *b = src;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        float d = q3_f16_to_f32(b[i].d);
        for (int j = 0; j < Q3_QK_K / SUB; j++, dst += SUB)
            levels_to_float(b[i].qs + SUB / 2 * j, d * (float)q3_iq4xs_scale(&b[i], j), dst);
    }
}

/* ---- dot products ---- */

/* sum values[q] * y over 32 weights: exact in int32. */
static int32_t group_dot(const uint8_t qs[SUB / 2], const int8_t y[SUB]) {
    int32_t sum = 0;
    for (int j = 0; j < SUB / 2; j++)
        sum += q3_iq4nl_values[qs[j] & 0xf] * y[j] + q3_iq4nl_values[qs[j] >> 4] * y[j + SUB / 2];
    return sum;
}

float q3_iq4_nl_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq4_nl *bw = w;
    const q3_block_q8_0 *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK; i++)
        sum = q3_iq_accumulate(sum, q3_f16_to_f32(bx[i].d), q3_f16_to_f32(bw[i].d), group_dot(bw[i].qs, bx[i].qs));
    return sum;
}

float q3_iq4_xs_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq4_xs *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32_t sum_q = 0;
        for (int j = 0; j < Q3_QK_K / SUB; j++)
            sum_q += q3_iq4xs_scale(&bw[i], j) * group_dot(bw[i].qs + SUB / 2 * j, bx[i].qs + SUB * j);
        sum = q3_iq_accumulate(sum, bx[i].d, q3_f16_to_f32(bw[i].d), sum_q);
    }
    return sum;
}

/* ---- quantization ---- */

/* Index of the level nearest v (the levels ascend). */
static int nearest_level(float v) {
    int lo = 0, hi = 15;
    if (v <= q3_iq4nl_values[lo]) return lo;
    if (v >= q3_iq4nl_values[hi]) return hi;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (v < q3_iq4nl_values[mid]) hi = mid;
        else lo = mid;
    }
    return v - q3_iq4nl_values[lo] < q3_iq4nl_values[hi] - v ? lo : hi;
}

/* Rounds x / scale to levels; returns sum w (x - scale * level)^2. scale 0: every weight to the
 * level nearest zero. */
static float round_group(const float *x, const float *w, float scale, uint8_t L[SUB]) {
    float inv = scale != 0 ? 1 / scale : 0, err = 0;
    for (int j = 0; j < SUB; j++) {
        L[j] = (uint8_t)nearest_level(x[j] * inv);
        float diff = x[j] - scale * q3_iq4nl_values[L[j]];
        err += w[j] * diff * diff;
    }
    return err;
}

/* The weighted least-squares scale of 32 weights: candidate scales map the weight of largest
 * magnitude near the outermost level (-127), each rounding refitted; the best fit wins. */
static float fit_group_scale(const float *x, const float *w) {
    float max = q3_signed_absmax(x, SUB);
    if (max == 0) return 0;
    float best_scale = 0, best = 0;
    for (int k = -7; k <= 7; k++) {
        float inv = (q3_iq4nl_values[0] + k) / max, sum_wxv = 0, sum_wvv = 0;
        for (int j = 0; j < SUB; j++) {
            float v = q3_iq4nl_values[nearest_level(x[j] * inv)];
            sum_wxv += w[j] * x[j] * v;
            sum_wvv += w[j] * v * v;
        }
        /* The refitted scale sum_wxv / sum_wvv removes sum_wxv^2 / sum_wvv of the error. */
        if (sum_wvv > 0 && sum_wxv * sum_wxv > best * sum_wvv) {
            best = sum_wxv * sum_wxv / sum_wvv;
            best_scale = sum_wxv / sum_wvv;
        }
    }
    return best_scale;
}

static void pack_nibbles(const uint8_t L[SUB], uint8_t qs[SUB / 2]) {
    for (int j = 0; j < SUB / 2; j++) qs[j] = (uint8_t)(L[j] | L[j + SUB / 2] << 4);
}

static void quantize_nl_block(const float *x, const float *importance, q3_block_iq4_nl *b) {
    float w[SUB];
    uint8_t L[SUB];
    q3_iq_weights(x, importance, SUB, w);
    b->d = q3_f32_to_f16(fit_group_scale(x, w));
    round_group(x, w, q3_f16_to_f32(b->d), L);
    pack_nibbles(L, b->qs);
}

/* Sub-block j against the stored d: the 6-bit scale nearest its own fit, or a neighbour of it
 * where that rounds the weights better. */
static int quantize_xs_group(const float *x, const float *w, float d, float scale, uint8_t qs[SUB / 2]) {
    int ls = d != 0 ? q3_clamp_int(q3_nearest_int(scale / d), -32, 31) : 0;
    int best_ls = ls;
    uint8_t L[SUB], best_L[SUB];
    float best = round_group(x, w, d * (float)ls, best_L);
    for (int k = ls - 1; k <= ls + 1; k += 2) {
        if (k < -32 || k > 31) continue;
        float err = round_group(x, w, d * (float)k, L);
        if (err < best) {
            best = err;
            best_ls = k;
            memcpy(best_L, L, SUB);
        }
    }
    pack_nibbles(best_L, qs);
    return best_ls;
}

static void quantize_xs_block(const float *x, const float *importance, q3_block_iq4_xs *b) {
    float w[Q3_QK_K], scale[Q3_QK_K / SUB], max_scale = 0;
    q3_iq_weights(x, importance, Q3_QK_K, w);
    for (int j = 0; j < Q3_QK_K / SUB; j++) {
        scale[j] = fit_group_scale(x + SUB * j, w + SUB * j);
        if (fabsf(scale[j]) > fabsf(max_scale)) max_scale = scale[j];
    }
    /* The largest scale takes the extra negative code, -32. */
    b->d = q3_f32_to_f16(max_scale / -32);
    float d = q3_f16_to_f32(b->d);
    b->scales_h = 0;
    memset(b->scales_l, 0, sizeof b->scales_l);
    for (int j = 0; j < Q3_QK_K / SUB; j++) {
        int ls = quantize_xs_group(x + SUB * j, w + SUB * j, d, scale[j], b->qs + SUB / 2 * j) + 32;
        b->scales_l[j / 2] |= (uint8_t)((ls & 0xf) << 4 * (j % 2));
        b->scales_h |= (uint16_t)((ls >> 4) << 2 * j);
    }
}

void q3_iq4_nl_quantize(const float *src, void *dst, int64_t n, const float *importance) {
    q3_block_iq4_nl *b = dst;
    for (int64_t i = 0; i < n / Q3_QK; i++)
        quantize_nl_block(src + Q3_QK * i, importance ? importance + Q3_QK * i : NULL, &b[i]);
}

void q3_iq4_xs_quantize(const float *src, void *dst, int64_t n, const float *importance) {
    q3_block_iq4_xs *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++)
        quantize_xs_block(src + Q3_QK_K * i, importance ? importance + Q3_QK_K * i : NULL, &b[i]);
}

void q3_iq4_nl_from_float(const float *src, void *dst, int64_t n) { q3_iq4_nl_quantize(src, dst, n, NULL); }
void q3_iq4_xs_from_float(const float *src, void *dst, int64_t n) { q3_iq4_xs_quantize(src, dst, n, NULL); }
