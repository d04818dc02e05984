/* The run state of the forward pass: the backend it computes on, the sums across processes it
 * takes part in, and the activations of one step, sized once for the largest batch so the token
 * loop never allocates. Internal to the engine and its tests. */
#ifndef Q3_RUNNER_H
#define Q3_RUNNER_H

#include "kv/kv_cache.h"
#include "model/backend.h"
#include "model/model.h"

/* Receives the n rows (cols floats each, host memory) entering weight tensor `tensor` (its GGUF
 * name, "blk.3.attn_q.weight"); for a stacked expert tensor, the rows of expert `expert` of
 * n_experts, else expert 0 of 1. */
typedef void (*q3_matmul_input_fn)(void *ctx, const char *tensor, int expert, int n_experts, const float *x, int n,
                                   int64_t cols);

/* Optional copies of intermediate values, for parity tests against transformers, and the inputs
 * of every weight matrix, for importance matrices (src/eval/imatrix.c). */
typedef struct q3_trace {
    float *hidden;        /* [n_layers + 1][n_tokens][hidden]: embeddings, each layer's output,
                             and last the final norm's output (as transformers' hidden_states) */
    float *router_logits; /* [n_layers][n_tokens][n_experts] (MoE layers only) */
    q3_matmul_input_fn matmul_input; /* NULL: none; only on backends with host memory, one process */
    void *matmul_input_ctx;
    float *input_scratch; /* with matmul_input: max_tokens * (hidden + 2 * the largest ffn_dim)
                             floats, for the recomputed feed-forward inputs */
} q3_trace;

/* Which processes a sum runs over: experts are dealt over all of them, attention heads and
 * dense layers split over the ranks of one tensor-parallel group. */
typedef enum q3_group { Q3_GROUP_WORLD, Q3_GROUP_TP } q3_group;

/* Sums over the processes the model is split over, provided from outside (src/dist/). With
 * size 1 (one process) the forward pass calls none of them. start/wait are the non-blocking
 * pair (start may return NULL: nothing to wait for); progress lets sums in flight advance and
 * is called from the thread that started them. */
typedef struct q3_collective {
    int size;
    void *ctx;
    void (*allreduce)(void *ctx, float *buf, size_t n, q3_group g);
    void *(*start)(void *ctx, float *buf, size_t n, q3_group g);
    void (*wait)(void *ctx, void *pending);
    void (*progress)(void *ctx);
} q3_collective;

/* Rows of logits a device backend computes at once before copying them out. */
#define Q3_HEAD_ROWS 64

struct q3_runner {
    const q3_model *m;
    q3_backend *be;        /* owned */
    q3_collective coll;
    int max_tokens;
    q3_trace *trace;
    int replica_id;        /* the handle followers know this runner by (src/dist/); 0 alone */
    const q3_batch *b;     /* the step being computed */

    /* activations, in the backend's memory */
    float *x;              /* [T][hidden] the residual stream */
    float *xn;             /* [T][hidden] normed input of a block */
    float *q;              /* [T][n_q_heads * head_dim] of this process's heads */
    float *k, *v;          /* [T][n_kv_heads * head_dim] of this process's heads */
    float *attn;           /* [T][n_q_heads * head_dim] attention output */
    float *out;            /* [T][hidden] a block's output before the residual add */
    float *router;         /* [T][n_experts] router logits */
    int32_t *top_expert;   /* [T][top_k] */
    float *top_weight;     /* [T][top_k] */
    float *logits;         /* [Q3_HEAD_ROWS][vocab] lm_head output when the backend's memory is not the host's */
    int32_t *head_rows;    /* [T] host: the batch rows that want logits */
};

/* Makes a runner over backend be (taking ownership, also on failure) for batches of up to
 * max_tokens tokens; coll NULL: one process. */
q3_status q3_runner_create(q3_runner **out, const q3_model *m, q3_backend *be, int max_tokens,
                           const q3_collective *coll, q3_error *e);
/* Frees the runner and its backend; NULL is fine. */
void q3_runner_destroy(q3_runner *r);
/* The forward pass of this process alone (q3_forward is it, replicated under mpirun). */
q3_status q3_runner_forward(q3_runner *r, q3_kv_cache *kv, const q3_batch *b, float *logits, q3_error *e);

void q3_runner_set_trace(q3_runner *r, q3_trace *t);
/* Weights and KV cache bytes the forward passes have read so far; cannot fail. */
uint64_t q3_runner_bytes_read(const q3_runner *r);
/* The CPU threads the backend computes with; cannot fail. */
int q3_runner_threads(const q3_runner *r);

/* The layers (attention.c, moe.c): read r->xn, leave their output in r->out. Tokens [t0, t1)
 * of the batch for the MoE block, so that a batch can run in slices. */
void q3_attention_layer(q3_runner *r, int layer);
void q3_moe_layer(q3_runner *r, const q3_layer *L, int t0, int t1);
void q3_dense_layer(q3_runner *r, const q3_layer *L, int n);

/* The trace's matmul_input (when set) for a layer's matrices (trace_inputs.c): the attention's
 * q/k/v (their shared input xn) and output (its input attn); the feed-forward's router, experts
 * or dense matrices, whose inner inputs (silu(gate x) * up x) are recomputed for the purpose. */
void q3_trace_attention_inputs(q3_runner *r, const q3_layer *L, const float *xn, const float *attn, int n);
void q3_trace_ffn_inputs(q3_runner *r, const q3_layer *L, const float *xn, int n, const int32_t *top);

#endif
