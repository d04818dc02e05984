/* The CPU backend: the model's operations (model/backend.h) on the CPU kernels of this folder,
 * over a thread pool. Its state is the scratch the operations share, sized once for the largest
 * batch: converted activations, rotation angles, attention's plan and partials, and the MoE's
 * grouping of tokens by expert. The operations live beside the kernels they drive:
 * cpu_backend.c (memory, embedding, norms, matmuls), attention.c (rope_store), attend.c
 * (attend), moe.c (route, experts, ffn). */
#ifndef Q3_CPU_BACKEND_H
#define Q3_CPU_BACKEND_H

#include "base/pool.h"
#include "model/backend.h"

typedef struct q3_cpu {
    q3_backend base;
    q3_pool *pool;
    int max_tokens;
    const q3_batch *b;     /* the step begin() announced */
    q3_kv_cache *kv;

    void *act;             /* [T] rows of activations converted for a matrix's vec_dot */
    size_t act_bytes;
    float *rope_cos, *rope_sin; /* [T][head_dim / 2] this step's rotation angles */

    /* attention (attend.c) */
    float *attn_scratch;        /* [threads][attn_scratch_floats] */
    size_t attn_scratch_floats;
    int *attn_chunk_start;      /* [max_tokens + 1] */
    int *attn_block_start;      /* [max_tokens + 1] this batch's blocks of tokens */
    int attn_n_blocks, attn_partial_rows;
    bool attn_parallel;         /* this batch computes chunks in parallel, then folds */
    float *attn_partials;       /* the chunk partials of that mode */
    size_t attn_partials_floats;
    uint64_t attn_kv_bytes;     /* cache bytes one layer's attention reads in this step */

    /* MoE (moe.c): tokens grouped by expert ("assignments", T * top_k of them) */
    int32_t *slot_of;       /* [T][top_k] assignment index of (token, k), -1: another process's */
    int *expert_start;      /* [n_experts + 1] first assignment of each expert */
    int32_t *assign_token;  /* [T * top_k] token of each assignment, grouped by expert */
    int32_t *active;        /* [n_experts] experts with at least one token */
    float *h;               /* [T * top_k][ffn_dim] silu(gate) * up */
    void *h_act;            /* those rows converted for the down projection */
    size_t h_act_bytes;
    float *y;               /* [T * top_k][hidden] expert outputs */
    void *expert_sync;      /* [n_experts] each expert's progress in a fused job (moe.c) */
} q3_cpu;

/* A CPU backend for model m and batches of up to max_tokens, on n_threads threads (<= 0: one per
 * online CPU; > 0 also pins them, see q3_pool_new). */
q3_status q3_cpu_backend_new(q3_backend **out, const q3_model *m, int max_tokens, int n_threads, q3_error *e);
/* Its thread pool (tests place its threads on NUMA nodes); cannot fail for a CPU backend. */
q3_pool *q3_cpu_backend_pool(q3_backend *be);

/* The operations of the other files, for cpu_backend.c's table. */
void q3_cpu_rope_store(q3_backend *be, const q3_layer *L, int layer, float *q, float *k, const float *v);
q3_status q3_cpu_attention_plan(q3_cpu *c, q3_error *e);
void q3_cpu_attend(q3_backend *be, int layer, const float *q, float *out);
void q3_cpu_route(q3_backend *be, const float *logits, int n, int32_t *top, float *weight);
void q3_cpu_experts(q3_backend *be, const q3_ffn *experts, const float *xn, int n, const int32_t *top,
                    const float *weight, float *out);
void q3_cpu_ffn(q3_backend *be, const q3_ffn *f, const float *xn, int n, float *out);
/* Bytes of moe.c's progress record of one expert; cannot fail. */
size_t q3_cpu_expert_sync_bytes(void);

#endif
