/* IQ3_XXS and IQ3_S: about 3 bits a weight. Each run of 4 weights is a grid vector (IQ3_XXS:
 * 256 entries of 4, 12, .., 52, 62; IQ3_S: 512 of 1, 3, .., 15), each run of 8 has 8 signs (7
 * stored, even count of minus signs, for XXS), and a 4-bit k per 32 weights scales them by
 * d * (2k + 1) / 4 (XXS) or d * (2k + 1) (S). Dot products against Q8_K sum
 * (2k + 1) * grid * sign * q8 exactly per block and scale once per block. */
#include "quant/iq_blocks.h"
#include "quant/iq_fit.h"
#include "quant/iq_grids.h"
#include "quant/iq_quants.h"

/* ---- one run of 8: two grid vectors and one sign byte ---- */

static void run_to_float(uint32_t g0, uint32_t g1, uint8_t signs, float db, float *dst) {
    uint64_t grid = g0 | (uint64_t)g1 << 32;
    for (int j = 0; j < 8; j++) dst[j] = db * (float)(uint8_t)(grid >> 8 * j) * (signs >> j & 1 ? -1.0f : 1.0f);
}

static int32_t run_dot(uint32_t g0, uint32_t g1, uint8_t signs, const int8_t *y) {
    uint64_t grid = g0 | (uint64_t)g1 << 32;
    int32_t sum = 0;
    for (int j = 0; j < 8; j++) {
        int v = (uint8_t)(grid >> 8 * j) * y[j];
        sum += signs >> j & 1 ? -v : v;
    }
    return sum;
}

/* ---- IQ3_XXS ---- */

/* Group g's word: four 7-bit sign indices and k. */
static uint32_t xxs_word(const q3_block_iq3_xxs *b, int g) {
    uint32_t w;
    memcpy(&w, b->qs + Q3_QK_K / 4 + 4 * g, 4);
    return w;
}

void q3_iq3_xxs_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_iq3_xxs *b = src;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        float d = q3_f16_to_f32(b[i].d);
        for (int g = 0; g < 8; g++) {
            uint32_t word = xxs_word(&b[i], g);
            float db = d * (0.5f + (float)(word >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++, dst += 8) {
                const uint8_t *q = b[i].qs + 8 * g + 2 * l;
                run_to_float(q3_iq3xxs_grid[q[0]], q3_iq3xxs_grid[q[1]], q3_iq_ksigns[(word >> 7 * l) & 127], db, dst);
            }
        }
    }
}

float q3_iq3_xxs_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq3_xxs *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32_t sum_q = 0;
        for (int g = 0; g < 8; g++) {
            uint32_t word = xxs_word(&bw[i], g);
            int32_t s = 0;
            for (int l = 0; l < 4; l++) {
                const uint8_t *q = bw[i].qs + 8 * g + 2 * l;
                s += run_dot(q3_iq3xxs_grid[q[0]], q3_iq3xxs_grid[q[1]], q3_iq_ksigns[(word >> 7 * l) & 127],
                             bx[i].qs + 32 * g + 8 * l);
            }
            sum_q += (int32_t)(2 * (word >> 28) + 1) * s;
        }
        sum = q3_iq_accumulate(sum, bx[i].d, q3_f16_to_f32(bw[i].d), sum_q);
    }
    return 0.25f * sum;
}

void q3_iq3_xxs_quantize(const float *src, void *dst, int64_t n, const float *importance) {
    static const q3_iq_spec spec = {Q3_IQ_GRID_3XXS, 32, 15, 0.25f, 0, 0};
    q3_block_iq3_xxs *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        uint8_t signs[32];
        q3_iq_fit fit;
        q3_iq_fit_row_block(&spec, src, importance, i, 1, signs, &fit);
        b[i].d = q3_f32_to_f16(fit.d);
        for (int u = 0; u < 64; u++) b[i].qs[u] = (uint8_t)fit.entry[u];
        for (int g = 0; g < 8; g++) {
            uint32_t word = (uint32_t)fit.k[g] << 28;
            for (int l = 0; l < 4; l++) word |= (uint32_t)(signs[4 * g + l] & 127) << 7 * l;
            memcpy(b[i].qs + Q3_QK_K / 4 + 4 * g, &word, 4);
        }
    }
}

/* ---- IQ3_S ---- */

static int s_index(const q3_block_iq3_s *b, int u) { return b->qs[u] | ((b->qh[u / 8] >> (u % 8)) & 1) << 8; }

void q3_iq3_s_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_iq3_s *b = src;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        float d = q3_f16_to_f32(b[i].d);
        for (int g = 0; g < 8; g++) {
            float db = d * (float)(1 + 2 * ((b[i].scales[g / 2] >> 4 * (g % 2)) & 0xf));
            for (int l = 0; l < 4; l++, dst += 8) {
                int r = 4 * g + l;
                run_to_float(q3_iq3s_grid[s_index(&b[i], 2 * r)], q3_iq3s_grid[s_index(&b[i], 2 * r + 1)],
                             b[i].signs[r], db, dst);
            }
        }
    }
}

float q3_iq3_s_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq3_s *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32_t sum_q = 0;
        for (int g = 0; g < 8; g++) {
            int32_t s = 0;
            for (int r = 4 * g; r < 4 * g + 4; r++)
                s += run_dot(q3_iq3s_grid[s_index(&bw[i], 2 * r)], q3_iq3s_grid[s_index(&bw[i], 2 * r + 1)],
                             bw[i].signs[r], bx[i].qs + 8 * r);
            sum_q += (1 + 2 * ((bw[i].scales[g / 2] >> 4 * (g % 2)) & 0xf)) * s;
        }
        sum = q3_iq_accumulate(sum, bx[i].d, q3_f16_to_f32(bw[i].d), sum_q);
    }
    return sum;
}

void q3_iq3_s_quantize(const float *src, void *dst, int64_t n, const float *importance) {
    static const q3_iq_spec spec = {Q3_IQ_GRID_3S, 32, 15, 1.0f, 0, 0};
    q3_block_iq3_s *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        uint8_t signs[32];
        q3_iq_fit fit;
        q3_iq_fit_row_block(&spec, src, importance, i, 0, signs, &fit);
        b[i].d = q3_f32_to_f16(fit.d);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int u = 0; u < 64; u++) {
            b[i].qs[u] = (uint8_t)fit.entry[u];
            b[i].qh[u / 8] |= (uint8_t)((fit.entry[u] >> 8) << (u % 8));
        }
        memcpy(b[i].signs, signs, 32);
        for (int j = 0; j < 4; j++) b[i].scales[j] = (uint8_t)(fit.k[2 * j] | fit.k[2 * j + 1] << 4);
    }
}

void q3_iq3_xxs_from_float(const float *src, void *dst, int64_t n) { q3_iq3_xxs_quantize(src, dst, n, NULL); }
void q3_iq3_s_from_float(const float *src, void *dst, int64_t n) { q3_iq3_s_quantize(src, dst, n, NULL); }
