/* Matrix times a batch of activation rows: y[t][r] = W[r] . x[t], threaded over row blocks.
 * Activations are first converted once to the weight type's vec_dot_type (f32 for float
 * weights, Q8_0 / Q8_K for integer formats), then the type's tile kernel (gemm) computes blocks
 * of rows x tokens from them, or its vec_dot one (row, token) at a time.
 * Each output depends only on its own row and token, so results are the same whatever else is
 * in the batch (batch invariance). */
#ifndef Q3_MATMUL_H
#define Q3_MATMUL_H

#include "base/pool.h"
#include "model/model.h"

/* Bytes that n rows of `cols` activations take once converted for weights of type w_type. */
size_t q3_act_row_bytes(q3_type w_type, int64_t cols);
/* Converts n rows of x (stride cols) for weights of type w_type into dst (stride
 * q3_act_row_bytes); cannot fail for a type the model loader accepted. */
void q3_act_convert(q3_type w_type, const float *x, int64_t cols, int n, void *dst);

/* The n rows of x (stride cols) ready for weights of type w_type: x itself where those take f32
 * rows, else q3_act_convert's rows in dst, converted on the pool (a prefill batch has
 * thousands). Cannot fail for a type the model loader accepted. */
const void *q3_act_prepare(q3_pool *pool, q3_type w_type, const float *x, int64_t cols, int n, void *dst);

/* y[t * y_stride + r] = W[r] . act[t] for r in [0, rows), t in [0, n). act holds n converted rows. */
void q3_matmul(q3_pool *pool, const q3_mat *w, const void *act, int n, float *y, int64_t y_stride);

/* The same for n_mats <= Q3_MATMUL_MAX_MATS matrices that read the same activations (the same
 * vec_dot_type): one job for all, so a decode step waits for the pool once instead of once per
 * matrix. y[i] has a row of w[i]->rows per token. Cannot fail. */
#define Q3_MATMUL_MAX_MATS 8
void q3_matmul_multi(q3_pool *pool, int n_mats, const q3_mat *const *w, const void *act, int n, float *const *y);

/* The same for rows [r0, r1) only, on the calling thread (for callers that split work themselves). */
void q3_matmul_rows(const q3_mat *w, int64_t r0, int64_t r1, const void *act, int n, float *y,
                    int64_t y_stride);

/* out[t * out_stride + (r - r0)] = W[r] . x[t] for rows [r0, r1) and n <= Q3_GEMM_COLS converted
 * activation rows x[t] anywhere in memory (the MoE's tokens of one expert), on the calling
 * thread: the type's tile kernel, bit-identical to its vec_dot, which stands in where there is none. */
void q3_matmul_tile(const q3_mat *w, int64_t r0, int64_t r1, const void *const *x, int n, float *out,
                    size_t out_stride);

#endif
