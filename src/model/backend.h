/* The seam between the model and the hardware it runs on. The layers (attention.c, moe.c) and the
 * forward pass (forward.c) are written once against this table of operations; src/cpu/ implements
 * it with the CPU kernels and a thread pool, src/cuda/ with GPU kernels. The operations are the
 * steps of a Qwen3-MoE layer, each big enough that one call is one round of parallel work:
 *
 *   embed            rows of the token embedding table
 *   rmsnorm, add     the residual stream's norms and sums
 *   matmul           y = W x for up to Q3_BACKEND_MAX_MATS matrices that read the same x
 *   rope_store       q/k RMSNorm per head, RoPE, and the keys and values into the paged cache
 *   attend           grouped-query attention of every token over its sequence's cached positions
 *   route            softmax over the router logits, top-k, optional renormalisation
 *   experts          the routed experts over tokens grouped by expert, summed with their weights
 *   ffn              a dense SwiGLU feed-forward
 *
 * Activation buffers come from the backend (alloc) and live where it computes: host memory for
 * the CPU, device memory for a GPU. The model never touches their contents itself when
 * host_memory is false; it copies out with read. Weights are the model's q3_mat views; a device
 * backend keeps its own copies, found by the view.
 *
 * Every operation works on the step begin() announced: its batch (tokens, positions, sequences)
 * and KV cache. Results are per token and independent of the other tokens in the batch, which is
 * what makes a token's output the same however the scheduler batches it. */
#ifndef Q3_BACKEND_H
#define Q3_BACKEND_H

#include "kv/kv_cache.h"
#include "model/model.h"

#define Q3_BACKEND_MAX_MATS 8

typedef struct q3_backend q3_backend;

typedef struct q3_backend_ops {
    const char *name;
    /* Activation memory of `bytes`, or NULL when out of memory. */
    void *(*alloc)(q3_backend *be, size_t bytes);
    void (*free)(q3_backend *be, void *p);
    /* Copies bytes from backend memory src to host memory dst, after the work queued before. */
    void (*read)(q3_backend *be, void *dst, const void *src, size_t bytes);
    /* Prepares a step over batch b and cache kv (positions' rotation angles, attention's plan).
     * Fails only for want of memory. */
    q3_status (*begin)(q3_backend *be, const q3_batch *b, q3_kv_cache *kv, q3_error *e);

    /* x[i] = row tokens[i] of the embedding table, as f32. */
    void (*embed)(q3_backend *be, const q3_mat *table, float *x);
    /* out[i] = x[rows ? rows[i] : i] / rms * w over dim, for i < n (rows: host memory). */
    void (*rmsnorm)(q3_backend *be, float *out, const float *x, const int32_t *rows, int n, const float *w,
                    int dim, float eps);
    /* x += y over n floats. */
    void (*add)(q3_backend *be, float *x, const float *y, size_t n);
    /* y[i][t][r] = w[i] row r . x[t] for t < n; every w[i] has x's width (cols). */
    void (*matmul)(q3_backend *be, int n_mats, const q3_mat *const *w, const float *x, int n, float *const *y);
    /* For every token of the step: its query heads q (n_q_heads of this process) and key heads k
     * RMSNormed with the layer's q_norm / k_norm and rotated, in place; keys and values v stored
     * in the cache at the token's position. */
    void (*rope_store)(q3_backend *be, const q3_layer *L, int layer, float *q, float *k, const float *v);
    /* out[t] = softmax(q[t] K^T / sqrt(head_dim)) V per query head, over the token's sequence's
     * positions 0..pos (the cache holds this step's keys already). */
    void (*attend)(q3_backend *be, int layer, const float *q, float *out);
    /* For n tokens' router logits [n][n_experts]: their top-k experts and weights [n][k]. */
    void (*route)(q3_backend *be, const float *logits, int n, int32_t *top, float *weight);
    /* out[t] = sum over j of weight[t][j] * expert top[t][j] (xn[t]), for the experts this
     * process owns (the others add zero, as do choices of -1: experts a GPU computes beside the
     * CPU). n tokens, rows of the step's batch or a slice of them. */
    void (*experts)(q3_backend *be, const q3_ffn *experts, const float *xn, int n, const int32_t *top,
                    const float *weight, float *out);
    /* out[t] = down(silu(gate xn[t]) * up xn[t]). */
    void (*ffn)(q3_backend *be, const q3_ffn *f, const float *xn, int n, float *out);

    void (*destroy)(q3_backend *be);
} q3_backend_ops;

/* Called between pieces of long work (the experts' tasks) while sums travel between processes
 * (src/dist/): see q3_dist_progress. */
typedef void (*q3_progress_fn)(void *ctx);

/* What every backend shares; each implementation embeds it first in its own struct. */
struct q3_backend {
    const q3_backend_ops *ops;
    const q3_model *m;
    bool host_memory;       /* activations are plain host memory (the model may read them) */
    int threads;            /* CPU threads it computes with (for reports) */
    uint64_t bytes_read;    /* weights and cache bytes the operations have read so far */
    q3_progress_fn progress;/* optional, with its argument */
    void *progress_ctx;
};

#endif
