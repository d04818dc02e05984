/* The row-interleaved layouts of Q4_K and Q6_K (quant/interleave.h): moving one block of each
 * of four rows into an x4 block and back, and the portable rows kernels over them. */
#include "quant/interleave.h"

#include <string.h>
#include "quant/quants.h"

bool q3_interleave_supported(q3_type t) { return t == Q3_TYPE_Q4_K || t == Q3_TYPE_Q6_K; }

/* One x4 block from block i of rows[0..3], or (back) block i of row r from an x4 block. */
static void q4_k_pack(const q3_block_q4_k *const rows[4], q3_block_q4_k_x4 *g) {
    for (int r = 0; r < 4; r++) {
        g->d[r] = rows[r]->d;
        g->dmin[r] = rows[r]->dmin;
        for (int k = 0; k < 3; k++) memcpy(&g->scales[k][4 * r], rows[r]->scales + 4 * k, 4);
        for (int c = 0; c < 8; c++) memcpy(&g->qs[c][16 * r], rows[r]->qs + 16 * c, 16);
    }
}

static void q4_k_unpack(const q3_block_q4_k_x4 *g, int r, q3_block_q4_k *b) {
    b->d = g->d[r];
    b->dmin = g->dmin[r];
    for (int k = 0; k < 3; k++) memcpy(b->scales + 4 * k, &g->scales[k][4 * r], 4);
    for (int c = 0; c < 8; c++) memcpy(b->qs + 16 * c, &g->qs[c][16 * r], 16);
}

static void q6_k_pack(const q3_block_q6_k *const rows[4], q3_block_q6_k_x4 *g) {
    for (int r = 0; r < 4; r++) {
        g->d[r] = rows[r]->d;
        memcpy(g->scales[r], rows[r]->scales, 16);
        for (int c = 0; c < 8; c++) memcpy(&g->ql[c][16 * r], rows[r]->ql + 16 * c, 16);
        for (int c = 0; c < 4; c++) memcpy(&g->qh[c][16 * r], rows[r]->qh + 16 * c, 16);
    }
}

static void q6_k_unpack(const q3_block_q6_k_x4 *g, int r, q3_block_q6_k *b) {
    b->d = g->d[r];
    memcpy(b->scales, g->scales[r], 16);
    for (int c = 0; c < 8; c++) memcpy(b->ql + 16 * c, &g->ql[c][16 * r], 16);
    for (int c = 0; c < 4; c++) memcpy(b->qh + 16 * c, &g->qh[c][16 * r], 16);
}

void q3_interleave_group(q3_type t, int64_t cols, const void *src, size_t row_bytes, void *dst) {
    int64_t nb = cols / Q3_QK_K;
    const unsigned char *s = src;
    for (int64_t i = 0; i < nb; i++) {
        if (t == Q3_TYPE_Q4_K) {
            const q3_block_q4_k *rows[4];
            for (int r = 0; r < 4; r++) rows[r] = (const q3_block_q4_k *)(s + r * row_bytes) + i;
            q4_k_pack(rows, (q3_block_q4_k_x4 *)dst + i);
        } else {
            const q3_block_q6_k *rows[4];
            for (int r = 0; r < 4; r++) rows[r] = (const q3_block_q6_k *)(s + r * row_bytes) + i;
            q6_k_pack(rows, (q3_block_q6_k_x4 *)dst + i);
        }
    }
}

/* Block i of row r of an x4 group of type t, back in the file's layout, into dst. */
static void unpack_block(q3_type t, const void *group, int64_t i, int r, void *dst) {
    if (t == Q3_TYPE_Q4_K)
        q4_k_unpack((const q3_block_q4_k_x4 *)group + i, r, dst);
    else
        q6_k_unpack((const q3_block_q6_k_x4 *)group + i, r, dst);
}

void q3_deinterleave_row(q3_type t, int64_t cols, const void *group, int r, void *dst) {
    size_t block_bytes = t == Q3_TYPE_Q4_K ? sizeof(q3_block_q4_k) : sizeof(q3_block_q6_k);
    for (int64_t i = 0; i < cols / Q3_QK_K; i++) unpack_block(t, group, i, r, (char *)dst + (size_t)i * block_bytes);
}

/* vec_dot's sum over blocks is ((0 + t_0) + t_1) + ...: one block's vec_dot is 0 + t_i = t_i,
 * so adding those in block order repeats it to the bit. */
static void rows_x4_reference(q3_type t, float (*vec_dot)(int64_t, const void *, const void *), int64_t n,
                              const void *w, size_t w_stride, int nr, const void *x, float *out) {
    const q3_block_q8_k *bx = x;
    for (int g = 0; g < nr / 4; g++) {
        const void *group = (const char *)w + (size_t)g * 4 * w_stride;
        for (int r = 0; r < 4; r++) {
            float sum = 0;
            for (int64_t i = 0; i < n / Q3_QK_K; i++) {
                union {
                    q3_block_q4_k q4_k;
                    q3_block_q6_k q6_k;
                } b;
                unpack_block(t, group, i, r, &b);
                sum += vec_dot(Q3_QK_K, &b, &bx[i]);
            }
            out[4 * g + r] = sum;
        }
    }
}

void q3_q4_k_vec_dot_rows_x4(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out) {
    rows_x4_reference(Q3_TYPE_Q4_K, q3_q4_k_vec_dot, n, w, w_stride, nr, x, out);
}

void q3_q6_k_vec_dot_rows_x4(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out) {
    rows_x4_reference(Q3_TYPE_Q6_K, q3_q6_k_vec_dot, n, w, w_stride, nr, x, out);
}

void q3_q4_k_gemm_x4(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc, float *out,
                     size_t out_stride) {
    for (int t = 0; t < nc; t++) q3_q4_k_vec_dot_rows_x4(n, w, w_stride, nr, x[t], out + (size_t)t * out_stride);
}

void q3_q6_k_gemm_x4(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc, float *out,
                     size_t out_stride) {
    for (int t = 0; t < nc; t++) q3_q6_k_vec_dot_rows_x4(n, w, w_stride, nr, x[t], out + (size_t)t * out_stride);
}
