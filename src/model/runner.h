/* The run state of the forward pass: every buffer one step needs, sized once for the largest
 * batch, so the token loop never allocates. Internal to the engine and its tests. */
#ifndef Q3_RUNNER_H
#define Q3_RUNNER_H

#include "base/pool.h"
#include "kv/kv_cache.h"
#include "model/model.h"

/* Optional copies of intermediate values, for parity tests against transformers. */
typedef struct q3_trace {
    float *hidden;        /* [n_layers + 1][n_tokens][hidden]: embeddings, each layer's output,
                             and last the final norm's output (as transformers' hidden_states) */
    float *router_logits; /* [n_layers][n_tokens][n_experts] (MoE layers only) */
} q3_trace;

struct q3_runner {
    const q3_model *m;
    q3_pool *pool;
    int max_tokens;
    q3_trace *trace;
    int dist_id;       /* handle among the processes the model is split over */
    uint64_t bytes_read; /* weights and KV cache read so far (the roofline's numerator) */

    float *x;          /* [T][hidden] the residual stream */
    float *xn;         /* [T][hidden] normed input of a block */
    float *q;          /* [T][n_heads * head_dim] */
    float *k, *v;      /* [T][n_kv_heads * head_dim] of this process's heads */
    float *attn;       /* [T][n_heads * head_dim] attention output */
    float *out;        /* [T][hidden] a block's output before the residual add */
    float *rope_cos, *rope_sin; /* [T][head_dim / 2] */
    void *act;         /* [T] rows of activations converted for a matrix's vec_dot */
    size_t act_bytes;

    /* attention (src/cpu/attend.c) */
    float *attn_scratch;        /* [threads][attn_scratch_floats] */
    size_t attn_scratch_floats;
    int *attn_chunk_start;      /* [max_tokens + 1] */
    int *attn_block_start;      /* [max_tokens + 1] this batch's blocks of tokens (attend.c) */
    int attn_n_blocks, attn_partial_rows;
    bool attn_parallel;         /* this batch computes chunks in parallel, then folds */
    float *attn_partials;       /* the chunk partials of that mode */
    size_t attn_partials_floats;

    /* MoE: routing and tokens grouped by expert ("assignments", T * top_k of them). */
    float *router;          /* [T][n_experts] */
    int32_t *top_expert;    /* [T][top_k] */
    float *top_weight;      /* [T][top_k] */
    int32_t *slot_of;       /* [T][top_k] assignment index of (token, k) */
    int *expert_start;      /* [n_experts + 1] first assignment of each expert */
    int32_t *assign_token;  /* [T * top_k] token of each assignment, grouped by expert */
    int32_t *active;        /* [n_experts] experts with at least one token */
    float *h;               /* [T * top_k][ffn_dim] silu(gate) * up */
    void *h_act;            /* those rows converted for the down projection */
    size_t h_act_bytes;
    float *y;               /* [T * top_k][hidden] expert outputs */
};

void q3_runner_set_trace(q3_runner *r, q3_trace *t);
/* For followers: the handle rank 0 gave this runner. Cannot fail. */
void q3_runner_set_dist_id(q3_runner *r, int id);

/* The blocks of a layer (attention.c, moe.c): read r->x, leave their output in r->out. */
/* Sizes the attention scratch for the batch and picks how to split its work (attend.c). */
q3_status q3_attention_prepare(q3_runner *r, const q3_batch *b, q3_error *e);
/* Attention of every batch token over its sequence's cached positions: r->q -> r->attn. */
void q3_attend(q3_runner *r, const q3_kv_cache *kv, int layer, const q3_batch *b);
void q3_attention_block(q3_runner *r, q3_kv_cache *kv, int layer, const q3_batch *b);
/* Tokens [t0, t1) of the batch (rows of r->xn -> rows of r->out). */
void q3_moe_block(q3_runner *r, const q3_layer *L, int t0, int t1);
void q3_dense_ffn_block(q3_runner *r, const q3_ffn *f, int n);

#endif
