/* Batched matrix multiply over any weight type, through the type's tile kernel (gemm) where it
 * has one and its vec_dot otherwise. */
#include "cpu/matmul.h"

#include <string.h>
#include "quant/types.h"

/* Tokens per tile: a tile of converted activations stays in L2 while the rows run past it. */
#define TOKEN_TILE Q3_GEMM_COLS

size_t q3_act_row_bytes(q3_type w_type, int64_t cols) {
    return q3_row_bytes(q3_type_get(w_type)->vec_dot_type, cols);
}

void q3_act_convert(q3_type w_type, const float *x, int64_t cols, int n, void *dst) {
    const q3_type_traits *vt = q3_type_get(q3_type_get(w_type)->vec_dot_type);
    size_t rb = q3_row_bytes(q3_type_get(w_type)->vec_dot_type, cols);
    for (int t = 0; t < n; t++) vt->from_float(x + (size_t)t * cols, (char *)dst + (size_t)t * rb, cols);
}

void q3_matmul_tile(const q3_mat *w, int64_t r0, int64_t r1, const void *const *x, int n, float *out,
                    size_t out_stride) {
    const q3_type_traits *tr = q3_type_get(w->type);
    for (int64_t r = r0; r < r1; r += Q3_GEMM_ROWS) {
        int nr = (int)(r1 - r < Q3_GEMM_ROWS ? r1 - r : Q3_GEMM_ROWS);
        const char *wr = (const char *)w->data + (size_t)r * w->row_bytes;
        float *o = out + (r - r0);
        if (tr->gemm) {
            tr->gemm(w->cols, wr, w->row_bytes, nr, x, n, o, out_stride);
            continue;
        }
        for (int t = 0; t < n; t++)
            for (int i = 0; i < nr; i++) o[t * out_stride + i] = tr->vec_dot(w->cols, wr + i * w->row_bytes, x[t]);
    }
}

void q3_matmul_rows(const q3_mat *w, int64_t r0, int64_t r1, const void *act, int n, float *y,
                    int64_t y_stride) {
    size_t ab = q3_act_row_bytes(w->type, w->cols);
    const void *x[TOKEN_TILE];
    for (int t0 = 0; t0 < n; t0 += TOKEN_TILE) {
        int nt = n - t0 < TOKEN_TILE ? n - t0 : TOKEN_TILE;
        for (int t = 0; t < nt; t++) x[t] = (const char *)act + (size_t)(t0 + t) * ab;
        q3_matmul_tile(w, r0, r1, x, nt, y + (size_t)t0 * y_stride + r0, (size_t)y_stride);
    }
}

typedef struct matmul_job {
    const q3_mat *w;
    const void *act;
    int n;
    float *y;
    int64_t y_stride, rows_per_task;
} matmul_job;

static void matmul_task(void *ctx, int task, int thread) {
    (void)thread;
    matmul_job *j = ctx;
    int64_t r0 = (int64_t)task * j->rows_per_task, r1 = r0 + j->rows_per_task;
    if (r1 > j->w->rows) r1 = j->w->rows;
    q3_matmul_rows(j->w, r0, r1, j->act, j->n, j->y, j->y_stride);
}

void q3_matmul(q3_pool *pool, const q3_mat *w, const void *act, int n, float *y, int64_t y_stride) {
    /* About four tasks per thread balances uneven progress; whole tiles of rows a task. */
    int64_t tasks = (int64_t)q3_pool_size(pool) * 4, per = (w->rows + tasks - 1) / tasks;
    per = (per + Q3_GEMM_ROWS - 1) / Q3_GEMM_ROWS * Q3_GEMM_ROWS;
    matmul_job j = {w, act, n, y, y_stride, per};
    q3_pool_run(pool, matmul_task, &j, (int)((w->rows + per - 1) / per));
}
