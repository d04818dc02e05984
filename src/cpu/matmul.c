/* Batched matrix multiply over any weight type, through the type's vec_dot. */
#include "cpu/matmul.h"

#include <string.h>
#include "quant/types.h"

/* Tokens per tile: a tile of converted activations stays in L2 while a weight row is reused. */
#define TOKEN_TILE 16

size_t q3_act_row_bytes(q3_type w_type, int64_t cols) {
    return q3_row_bytes(q3_type_get(w_type)->vec_dot_type, cols);
}

void q3_act_convert(q3_type w_type, const float *x, int64_t cols, int n, void *dst) {
    const q3_type_traits *vt = q3_type_get(q3_type_get(w_type)->vec_dot_type);
    size_t rb = q3_row_bytes(q3_type_get(w_type)->vec_dot_type, cols);
    for (int t = 0; t < n; t++) vt->from_float(x + (size_t)t * cols, (char *)dst + (size_t)t * rb, cols);
}

void q3_matmul_rows(const q3_mat *w, int64_t r0, int64_t r1, const void *act, int n, float *y,
                    int64_t y_stride) {
    const q3_type_traits *tr = q3_type_get(w->type);
    size_t ab = q3_act_row_bytes(w->type, w->cols);
    for (int t0 = 0; t0 < n; t0 += TOKEN_TILE) {
        int t1 = t0 + TOKEN_TILE < n ? t0 + TOKEN_TILE : n;
        for (int64_t r = r0; r < r1; r++) {
            const void *wr = (const char *)w->data + (size_t)r * w->row_bytes;
            for (int t = t0; t < t1; t++)
                y[(size_t)t * y_stride + r] = tr->vec_dot(w->cols, wr, (const char *)act + (size_t)t * ab);
        }
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
    /* About four tasks per thread balances uneven progress; never below 8 rows a task. */
    int64_t tasks = (int64_t)q3_pool_size(pool) * 4, per = (w->rows + tasks - 1) / tasks;
    if (per < 8) per = 8;
    matmul_job j = {w, act, n, y, y_stride, per};
    q3_pool_run(pool, matmul_task, &j, (int)((w->rows + per - 1) / per));
}
