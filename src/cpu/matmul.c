/* Batched matrix multiply over any weight type, through the type's tile kernel (gemm) where it
 * has one and its vec_dot otherwise. */
#include "cpu/matmul.h"

#include <string.h>
#include "cpu/kernel_table.h"
#include "quant/interleave.h"

/* Tokens per tile: a tile of converted activations stays in L2 while the rows run past it. */
#define TOKEN_TILE Q3_GEMM_COLS
/* Elements below which activations are converted on the calling thread: a few microseconds of
 * work, about what a pool round costs (decode's 8 expert rows of 768, 4 tokens of 2048). */
#define ACT_PREPARE_ON_POOL 8192

size_t q3_act_row_bytes(q3_type w_type, int64_t cols) {
    return q3_row_bytes(q3_type_get(w_type)->vec_dot_type, cols);
}

void q3_act_convert(q3_type w_type, const float *x, int64_t cols, int n, void *dst) {
    const q3_type_traits *vt = q3_type_get(q3_type_get(w_type)->vec_dot_type);
    size_t rb = q3_row_bytes(q3_type_get(w_type)->vec_dot_type, cols);
    for (int t = 0; t < n; t++) vt->from_float(x + (size_t)t * cols, (char *)dst + (size_t)t * rb, cols);
}

/* Rows [r0, r1) of rows laid out one after another from w (row r at w + r * row_bytes). */
static void plain_tile(const q3_type_traits *tr, int64_t cols, const char *w, size_t row_bytes, int64_t r0, int64_t r1,
                       const void *const *x, int n, float *out, size_t out_stride) {
    for (int64_t r = r0; r < r1; r += Q3_GEMM_ROWS) {
        int nr = (int)(r1 - r < Q3_GEMM_ROWS ? r1 - r : Q3_GEMM_ROWS);
        const char *wr = w + (size_t)r * row_bytes;
        float *o = out + (r - r0);
        if (n == 1 && tr->vec_dot_rows) { /* decode: rows side by side against one token */
            tr->vec_dot_rows(cols, wr, row_bytes, nr, x[0], o);
            continue;
        }
        if (tr->gemm) {
            tr->gemm(cols, wr, row_bytes, nr, x, n, o, out_stride);
            continue;
        }
        for (int t = 0; t < n; t++)
            for (int i = 0; i < nr; i++) o[t * out_stride + i] = tr->vec_dot(cols, wr + i * row_bytes, x[t]);
    }
}

/* Rows [r0, r1) of an interleaved matrix in the type's own layout, one after another at dst. */
static void take_rows(const q3_mat *w, int64_t r0, int64_t r1, unsigned char *dst) {
    const int64_t grouped = w->rows / Q3_INTERLEAVE_ROWS * Q3_INTERLEAVE_ROWS;
    const char *base = w->data;
    for (int64_t i = r0; i < r1; i++, dst += w->row_bytes) {
        int64_t g0 = i / Q3_INTERLEAVE_ROWS * Q3_INTERLEAVE_ROWS;
        if (i >= grouped)
            memcpy(dst, base + (size_t)i * w->row_bytes, w->row_bytes);
        else
            q3_deinterleave_row(w->type, w->cols, base + (size_t)g0 * w->row_bytes, (int)(i - g0), dst);
    }
}

/* Rows [r0, r1) of an interleaved matrix: the whole groups of four through the interleaved
 * kernel for up to Q3_X4_COLS tokens (a group's blocks unpacked once in registers for all of
 * them, faster than the tile kernel on so few); more tokens, a group partly asked for, or an ISA
 * without that kernel take the rows out of their groups for the ordinary kernels. Every path
 * gives vec_dot's bits. */
static void interleaved_tile(const q3_type_traits *tr, const q3_mat *w, int64_t r0, int64_t r1, const void *const *x,
                             int n, float *out, size_t out_stride) {
    const int64_t grouped = w->rows / Q3_INTERLEAVE_ROWS * Q3_INTERLEAVE_ROWS;
    const char *base = w->data;
    unsigned char rows[Q3_GEMM_ROWS * Q3_INTERLEAVE_MAX_ROW_BYTES];
    for (int64_t r = r0; r < r1;) {
        if (r >= grouped) { /* past the last group: the type's own layout */
            plain_tile(tr, w->cols, base, w->row_bytes, r, r1, x, n, out + (r - r0), out_stride);
            return;
        }
        int64_t g0 = r / Q3_INTERLEAVE_ROWS * Q3_INTERLEAVE_ROWS, end = g0 + Q3_GEMM_ROWS;
        if (end > grouped) end = grouped;
        if (end > r1) end = r1;
        int64_t whole = end / Q3_INTERLEAVE_ROWS * Q3_INTERLEAVE_ROWS;
        const char *group = base + (size_t)g0 * w->row_bytes;
        if (g0 == r && whole > r && n <= Q3_X4_COLS && tr->gemm_x4) {
            tr->gemm_x4(w->cols, group, w->row_bytes, (int)(whole - r), x, n, out + (r - r0), out_stride);
            r = whole;
            continue;
        }
        take_rows(w, r, end, rows);
        plain_tile(tr, w->cols, (const char *)rows, w->row_bytes, 0, end - r, x, n, out + (r - r0), out_stride);
        r = end;
    }
}

void q3_matmul_tile(const q3_mat *w, int64_t r0, int64_t r1, const void *const *x, int n, float *out,
                    size_t out_stride) {
    const q3_type_traits *tr = q3_type_get(w->type);
    if (w->interleaved)
        interleaved_tile(tr, w, r0, r1, x, n, out, out_stride);
    else
        plain_tile(tr, w->cols, w->data, w->row_bytes, r0, r1, x, n, out, out_stride);
}

/* The tokens' pointers of token tile t0 (nt tokens) of act, rows ab bytes apart. */
static void token_tile(const void *act, size_t ab, int t0, int nt, const void **x) {
    for (int t = 0; t < nt; t++) x[t] = (const char *)act + (size_t)(t0 + t) * ab;
}

/* A batch through an interleaved matrix: Q3_GEMM_ROWS rows at a time taken out of their groups
 * once for every token tile (prefill's tiles would otherwise each take them out again). */
static void interleaved_rows(const q3_mat *w, int64_t r0, int64_t r1, const void *act, int n, float *y,
                             int64_t y_stride) {
    const q3_type_traits *tr = q3_type_get(w->type);
    size_t ab = q3_act_row_bytes(w->type, w->cols);
    const void *x[TOKEN_TILE];
    unsigned char rows[Q3_GEMM_ROWS * Q3_INTERLEAVE_MAX_ROW_BYTES];
    for (int64_t r = r0; r < r1; r += Q3_GEMM_ROWS) {
        int64_t end = r + Q3_GEMM_ROWS < r1 ? r + Q3_GEMM_ROWS : r1;
        take_rows(w, r, end, rows);
        for (int t0 = 0; t0 < n; t0 += TOKEN_TILE) {
            int nt = n - t0 < TOKEN_TILE ? n - t0 : TOKEN_TILE;
            token_tile(act, ab, t0, nt, x);
            plain_tile(tr, w->cols, (const char *)rows, w->row_bytes, 0, end - r, x, nt, y + (size_t)t0 * y_stride + r,
                       (size_t)y_stride);
        }
    }
}

void q3_matmul_rows(const q3_mat *w, int64_t r0, int64_t r1, const void *act, int n, float *y,
                    int64_t y_stride) {
    if (w->interleaved && n > Q3_X4_COLS) {
        interleaved_rows(w, r0, r1, act, n, y, y_stride);
        return;
    }
    size_t ab = q3_act_row_bytes(w->type, w->cols);
    const void *x[TOKEN_TILE];
    for (int t0 = 0; t0 < n; t0 += TOKEN_TILE) {
        int nt = n - t0 < TOKEN_TILE ? n - t0 : TOKEN_TILE;
        token_tile(act, ab, t0, nt, x);
        q3_matmul_tile(w, r0, r1, x, nt, y + (size_t)t0 * y_stride + r0, (size_t)y_stride);
    }
}

typedef struct convert_job {
    q3_type w_type;
    const float *x;
    int64_t cols;
    void *dst;
    size_t row_bytes;
} convert_job;

static void convert_task(void *ctx, int t, int thread) {
    (void)thread;
    convert_job *j = ctx;
    q3_act_convert(j->w_type, j->x + (size_t)t * j->cols, j->cols, 1, (char *)j->dst + (size_t)t * j->row_bytes);
}

const void *q3_act_prepare(q3_pool *pool, q3_type w_type, const float *x, int64_t cols, int n, void *dst) {
    if (q3_type_get(w_type)->vec_dot_type == Q3_TYPE_F32) return x; /* the rows as they are */
    if ((int64_t)n * cols < ACT_PREPARE_ON_POOL) { /* not worth a pool round */
        q3_act_convert(w_type, x, cols, n, dst);
        return dst;
    }
    convert_job j = {w_type, x, cols, dst, q3_act_row_bytes(w_type, cols)};
    q3_pool_run(pool, convert_task, &j, n);
    return dst;
}

typedef struct matmul_job {
    int n_mats;
    const q3_mat *const *w;
    const void *act;
    int n;
    float *const *y;
    const int64_t *y_stride;
    int64_t rows_per_task;
    int first_task[Q3_MATMUL_MAX_MATS + 1]; /* matrix i's tasks are [first_task[i], first_task[i + 1]) */
} matmul_job;

static void matmul_task(void *ctx, int task, int thread) {
    (void)thread;
    matmul_job *j = ctx;
    int i = 0;
    while (task >= j->first_task[i + 1]) i++;
    const q3_mat *w = j->w[i];
    int64_t r0 = (int64_t)(task - j->first_task[i]) * j->rows_per_task, r1 = r0 + j->rows_per_task;
    if (r1 > w->rows) r1 = w->rows;
    q3_matmul_rows(w, r0, r1, j->act, j->n, j->y[i], j->y_stride[i]);
}

/* One job over every matrix's rows, in blocks of about a quarter of a thread's share (uneven
 * progress balances out), whole tiles of rows a task. */
static void run_matmul(q3_pool *pool, matmul_job *j) {
    int64_t rows = 0;
    for (int i = 0; i < j->n_mats; i++) rows += j->w[i]->rows;
    int64_t tasks = (int64_t)q3_pool_size(pool) * 4, per = (rows + tasks - 1) / tasks;
    j->rows_per_task = (per + Q3_GEMM_ROWS - 1) / Q3_GEMM_ROWS * Q3_GEMM_ROWS;
    j->first_task[0] = 0;
    for (int i = 0; i < j->n_mats; i++)
        j->first_task[i + 1] = j->first_task[i] + (int)((j->w[i]->rows + j->rows_per_task - 1) / j->rows_per_task);
    q3_pool_run(pool, matmul_task, j, j->first_task[j->n_mats]);
}

void q3_matmul(q3_pool *pool, const q3_mat *w, const void *act, int n, float *y, int64_t y_stride) {
    matmul_job j = {1, &w, act, n, &y, &y_stride, 0, {0}};
    run_matmul(pool, &j);
}

void q3_matmul_multi(q3_pool *pool, int n_mats, const q3_mat *const *w, const void *act, int n, float *const *y) {
    int64_t strides[Q3_MATMUL_MAX_MATS];
    for (int i = 0; i < n_mats; i++) strides[i] = w[i]->rows;
    matmul_job j = {n_mats, w, act, n, y, strides, 0, {0}};
    run_matmul(pool, &j);
}
