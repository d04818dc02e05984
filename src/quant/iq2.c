/* IQ2_XXS, IQ2_XS and IQ2_S: about 2 bits a weight. Each run of 8 weights is a grid vector with
 * elements 8, 25, 43 (a 256-, 512- or 1024-entry grid) and 8 signs, 7 of them stored where the
 * count of minus signs must be even (XXS, XS); a 4-bit k per 32 (XXS) or 16 weights scales a
 * run by d * (2k + 1) / 8. Dot products against Q8_K sum (2k + 1) * grid * sign * q8 exactly per
 * block and apply d * dx / 8 once per block. */
#include "quant/iq_blocks.h"
#include "quant/iq_fit.h"
#include "quant/iq_grids.h"
#include "quant/iq_quants.h"

/* ---- one run of 8 ---- */

static void run_to_float(uint64_t grid, uint8_t signs, float db, float *dst) {
    for (int j = 0; j < 8; j++) dst[j] = db * (float)(uint8_t)(grid >> 8 * j) * (signs >> j & 1 ? -1.0f : 1.0f);
}

static int32_t run_dot(uint64_t grid, uint8_t signs, const int8_t *y) {
    int32_t sum = 0;
    for (int j = 0; j < 8; j++) {
        int v = (uint8_t)(grid >> 8 * j) * y[j];
        sum += signs >> j & 1 ? -v : v;
    }
    return sum;
}

/* The multiplier of k as the formats scale it: d * (0.5 + k) * 0.25. */
static float run_scale(float d, int k) { return d * (0.5f + (float)k) * 0.25f; }

/* ---- IQ2_XXS ---- */

/* Group g's two words: four grid bytes, then four 7-bit sign indices and k. */
static void xxs_words(const q3_block_iq2_xxs *b, int g, uint32_t w[2]) { memcpy(w, b->qs + 4 * g, 8); }

void q3_iq2_xxs_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_iq2_xxs *b = src;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        float d = q3_f16_to_f32(b[i].d);
        for (int g = 0; g < 8; g++) {
            uint32_t w[2];
            xxs_words(&b[i], g, w);
            float db = run_scale(d, (int)(w[1] >> 28));
            for (int l = 0; l < 4; l++, dst += 8)
                run_to_float(q3_iq2xxs_grid[(w[0] >> 8 * l) & 0xff], q3_iq_ksigns[(w[1] >> 7 * l) & 127], db, dst);
        }
    }
}

float q3_iq2_xxs_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq2_xxs *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32_t sum_q = 0;
        for (int g = 0; g < 8; g++) {
            uint32_t words[2];
            xxs_words(&bw[i], g, words);
            int32_t s = 0;
            for (int l = 0; l < 4; l++)
                s += run_dot(q3_iq2xxs_grid[(words[0] >> 8 * l) & 0xff], q3_iq_ksigns[(words[1] >> 7 * l) & 127],
                             bx[i].qs + 32 * g + 8 * l);
            sum_q += (int32_t)(2 * (words[1] >> 28) + 1) * s;
        }
        sum = q3_iq_accumulate(sum, bx[i].d, q3_f16_to_f32(bw[i].d), sum_q);
    }
    return 0.125f * sum;
}

void q3_iq2_xxs_quantize(const float *src, void *dst, int64_t n, const float *importance) {
    static const q3_iq_spec spec = {Q3_IQ_GRID_2XXS, 32, 15, 0.125f, 0, 0};
    q3_block_iq2_xxs *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        uint8_t signs[32];
        q3_iq_fit fit;
        q3_iq_fit_row_block(&spec, src, importance, i, 1, signs, &fit);
        b[i].d = q3_f32_to_f16(fit.d);
        for (int g = 0; g < 8; g++) {
            uint32_t words[2] = {0, (uint32_t)fit.k[g] << 28};
            for (int l = 0; l < 4; l++) {
                words[0] |= (uint32_t)fit.entry[4 * g + l] << 8 * l;
                words[1] |= (uint32_t)(signs[4 * g + l] & 127) << 7 * l;
            }
            memcpy(b[i].qs + 4 * g, words, 8);
        }
    }
}

/* ---- IQ2_XS ---- */

static int nibble(const uint8_t *bytes, int j) { return (bytes[j / 2] >> 4 * (j % 2)) & 0xf; }

void q3_iq2_xs_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_iq2_xs *b = src;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        float d = q3_f16_to_f32(b[i].d);
        for (int r = 0; r < 32; r++, dst += 8)
            run_to_float(q3_iq2xs_grid[b[i].qs[r] & 511], q3_iq_ksigns[b[i].qs[r] >> 9],
                         run_scale(d, nibble(b[i].scales, r / 2)), dst);
    }
}

float q3_iq2_xs_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq2_xs *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32_t sum_q = 0;
        for (int h = 0; h < 16; h++) { /* 16 weights per k: two runs */
            int32_t s = 0;
            for (int r = 2 * h; r < 2 * h + 2; r++)
                s += run_dot(q3_iq2xs_grid[bw[i].qs[r] & 511], q3_iq_ksigns[bw[i].qs[r] >> 9], bx[i].qs + 8 * r);
            sum_q += (2 * nibble(bw[i].scales, h) + 1) * s;
        }
        sum = q3_iq_accumulate(sum, bx[i].d, q3_f16_to_f32(bw[i].d), sum_q);
    }
    return 0.125f * sum;
}

void q3_iq2_xs_quantize(const float *src, void *dst, int64_t n, const float *importance) {
    static const q3_iq_spec spec = {Q3_IQ_GRID_2XS, 16, 15, 0.125f, 0, 0};
    q3_block_iq2_xs *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        uint8_t signs[32];
        q3_iq_fit fit;
        q3_iq_fit_row_block(&spec, src, importance, i, 1, signs, &fit);
        b[i].d = q3_f32_to_f16(fit.d);
        for (int r = 0; r < 32; r++) b[i].qs[r] = (uint16_t)(fit.entry[r] | (signs[r] & 127) << 9);
        for (int j = 0; j < 8; j++) b[i].scales[j] = (uint8_t)(fit.k[2 * j] | fit.k[2 * j + 1] << 4);
    }
}

/* ---- IQ2_S ---- */

static int s_index(const q3_block_iq2_s *b, int r) { return b->qs[r] | ((b->qh[r / 4] >> 2 * (r % 4)) & 3) << 8; }

void q3_iq2_s_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_iq2_s *b = src;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        float d = q3_f16_to_f32(b[i].d);
        for (int r = 0; r < 32; r++, dst += 8)
            run_to_float(q3_iq2s_grid[s_index(&b[i], r)], b[i].qs[32 + r], run_scale(d, nibble(b[i].scales, r / 2)),
                         dst);
    }
}

float q3_iq2_s_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq2_s *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32_t sum_q = 0;
        for (int h = 0; h < 16; h++) {
            int32_t s = 0;
            for (int r = 2 * h; r < 2 * h + 2; r++)
                s += run_dot(q3_iq2s_grid[s_index(&bw[i], r)], bw[i].qs[32 + r], bx[i].qs + 8 * r);
            sum_q += (2 * nibble(bw[i].scales, h) + 1) * s;
        }
        sum = q3_iq_accumulate(sum, bx[i].d, q3_f16_to_f32(bw[i].d), sum_q);
    }
    return 0.125f * sum;
}

void q3_iq2_s_quantize(const float *src, void *dst, int64_t n, const float *importance) {
    static const q3_iq_spec spec = {Q3_IQ_GRID_2S, 16, 15, 0.125f, 0, 0};
    q3_block_iq2_s *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        uint8_t signs[32];
        q3_iq_fit fit;
        q3_iq_fit_row_block(&spec, src, importance, i, 0, signs, &fit);
        b[i].d = q3_f32_to_f16(fit.d);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int r = 0; r < 32; r++) {
            b[i].qs[r] = (uint8_t)fit.entry[r];
            b[i].qs[32 + r] = signs[r];
            b[i].qh[r / 4] |= (uint8_t)((fit.entry[r] >> 8) << 2 * (r % 4));
        }
        for (int j = 0; j < 8; j++) b[i].scales[j] = (uint8_t)(fit.k[2 * j] | fit.k[2 * j + 1] << 4);
    }
}

void q3_iq2_xxs_from_float(const float *src, void *dst, int64_t n) { q3_iq2_xxs_quantize(src, dst, n, NULL); }
void q3_iq2_xs_from_float(const float *src, void *dst, int64_t n) { q3_iq2_xs_quantize(src, dst, n, NULL); }
void q3_iq2_s_from_float(const float *src, void *dst, int64_t n) { q3_iq2_s_quantize(src, dst, n, NULL); }
