/* IQ1_S and IQ1_M: under 2 bits a weight. Each run of 8 weights is an entry of a 2048-vector
 * grid of -1, 0, 1, shifted by +-1/8 (one shift per 32 weights in IQ1_S, per 8 in IQ1_M) and
 * scaled by d * (2k + 1) with a 3-bit k per 32 (IQ1_S) or 16 weights (IQ1_M). There are no
 * signs: the grid holds them. Dot products against Q8_K work in eighths, so that the shift is
 * an integer: (2k + 1) * sum (8 * grid +- 1) * q8, exact per block, times d * dx / 8. */
#include "quant/iq_blocks.h"
#include "quant/iq_fit.h"
#include "quant/iq_grids.h"
#include "quant/iq_quants.h"

/* ---- one run of 8 ---- */

static void run_to_float(uint64_t grid, float dl, float delta, float *dst) {
    for (int j = 0; j < 8; j++) dst[j] = dl * ((float)(int8_t)(grid >> 8 * j) + delta);
}

/* sum (8 * grid +- 1) * y over the run: the shift's sign is negative when `negative`. */
static int32_t run_dot(uint64_t grid, int negative, const int8_t *y) {
    int32_t sum_g = 0, sum_y = 0;
    for (int j = 0; j < 8; j++) {
        sum_g += (int8_t)(grid >> 8 * j) * y[j];
        sum_y += y[j];
    }
    return 8 * sum_g + (negative ? -sum_y : sum_y);
}

/* ---- IQ1_S ---- */

static int s_index(const q3_block_iq1_s *b, int r) { return b->qs[r] | ((b->qh[r / 4] >> 3 * (r % 4)) & 7) << 8; }

void q3_iq1_s_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_iq1_s *b = src;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        float d = q3_f16_to_f32(b[i].d);
        for (int g = 0; g < 8; g++) {
            float dl = d * (float)(2 * ((b[i].qh[g] >> 12) & 7) + 1);
            float delta = b[i].qh[g] & 0x8000 ? -Q3_IQ1_DELTA : Q3_IQ1_DELTA;
            for (int r = 4 * g; r < 4 * g + 4; r++, dst += 8) run_to_float(q3_iq1s_grid[s_index(&b[i], r)], dl, delta, dst);
        }
    }
}

float q3_iq1_s_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq1_s *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32_t sum_q = 0;
        for (int g = 0; g < 8; g++) {
            int32_t s = 0;
            for (int r = 4 * g; r < 4 * g + 4; r++)
                s += run_dot(q3_iq1s_grid[s_index(&bw[i], r)], bw[i].qh[g] >> 15, bx[i].qs + 8 * r);
            sum_q += (2 * ((bw[i].qh[g] >> 12) & 7) + 1) * s;
        }
        sum = q3_iq_accumulate(sum, bx[i].d, q3_f16_to_f32(bw[i].d), sum_q);
    }
    return 0.125f * sum;
}

void q3_iq1_s_quantize(const float *src, void *dst, int64_t n, const float *importance) {
    static const q3_iq_spec spec = {Q3_IQ_GRID_1S, 32, 7, 1.0f, 32, 0.5f};
    q3_block_iq1_s *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        q3_iq_fit fit;
        q3_iq_fit_row_block(&spec, src, importance, i, 0, NULL, &fit);
        b[i].d = q3_f32_to_f16(fit.d);
        for (int g = 0; g < 8; g++) {
            uint16_t qh = (uint16_t)(fit.k[g] << 12 | fit.shift_negative[g] << 15);
            for (int l = 0; l < 4; l++) {
                b[i].qs[4 * g + l] = (uint8_t)fit.entry[4 * g + l];
                qh |= (uint16_t)((fit.entry[4 * g + l] >> 8) << 3 * l);
            }
            b[i].qh[g] = qh;
        }
    }
}

/* ---- IQ1_M ---- */

/* Run r's nibble of qh: the grid index's top 3 bits, then the shift's sign. */
static int m_nibble(const q3_block_iq1_m *b, int r) { return (b->qh[r / 2] >> 4 * (r % 2)) & 0xf; }

/* k of the 16 weights h (0..15). */
static int m_k(const q3_block_iq1_m *b, int h) {
    uint16_t word;
    memcpy(&word, b->scales + 2 * (h / 4), 2);
    return (word >> 3 * (h % 4)) & 7;
}

void q3_iq1_m_to_float(const void *src, float *dst, int64_t n) {
    const q3_block_iq1_m *b = src;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        float d = q3_f16_to_f32(q3_iq1m_d(&b[i]));
        for (int r = 0; r < 32; r++, dst += 8) {
            int nib = m_nibble(&b[i], r);
            run_to_float(q3_iq1s_grid[b[i].qs[r] | (nib & 7) << 8], d * (float)(2 * m_k(&b[i], r / 2) + 1),
                         nib & 8 ? -Q3_IQ1_DELTA : Q3_IQ1_DELTA, dst);
        }
    }
}

float q3_iq1_m_vec_dot(int64_t n, const void *w, const void *x) {
    const q3_block_iq1_m *bw = w;
    const q3_block_q8_k *bx = x;
    float sum = 0;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        int32_t sum_q = 0;
        for (int h = 0; h < 16; h++) {
            int32_t s = 0;
            for (int r = 2 * h; r < 2 * h + 2; r++) {
                int nib = m_nibble(&bw[i], r);
                s += run_dot(q3_iq1s_grid[bw[i].qs[r] | (nib & 7) << 8], nib >> 3, bx[i].qs + 8 * r);
            }
            sum_q += (2 * m_k(&bw[i], h) + 1) * s;
        }
        sum = q3_iq_accumulate(sum, bx[i].d, q3_f16_to_f32(q3_iq1m_d(&bw[i])), sum_q);
    }
    return 0.125f * sum;
}

void q3_iq1_m_quantize(const float *src, void *dst, int64_t n, const float *importance) {
    static const q3_iq_spec spec = {Q3_IQ_GRID_1S, 16, 7, 1.0f, 8, 0.5f};
    q3_block_iq1_m *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++) {
        q3_iq_fit fit;
        q3_iq_fit_row_block(&spec, src, importance, i, 0, NULL, &fit);
        uint16_t d = q3_f32_to_f16(fit.d), words[4] = {0, 0, 0, 0};
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int r = 0; r < 32; r++) {
            b[i].qs[r] = (uint8_t)fit.entry[r];
            b[i].qh[r / 2] |= (uint8_t)(((fit.entry[r] >> 8) | fit.shift_negative[r] << 3) << 4 * (r % 2));
        }
        for (int h = 0; h < 16; h++) words[h / 4] |= (uint16_t)(fit.k[h] << 3 * (h % 4));
        for (int j = 0; j < 4; j++) words[j] |= (uint16_t)(((d >> 4 * j) & 0xf) << 12);
        memcpy(b[i].scales, words, 8);
    }
}

void q3_iq1_s_from_float(const float *src, void *dst, int64_t n) { q3_iq1_s_quantize(src, dst, n, NULL); }
void q3_iq1_m_from_float(const float *src, void *dst, int64_t n) { q3_iq1_m_quantize(src, dst, n, NULL); }
