/* The CUDA backend's shared state, for its .cu files only: the weights' device copy (weights.cu),
 * the backend (backend.cu: memory, steps, recorded calls and graphs, embedding, norms), and the
 * kernel launchers of matmul.cu, attention.cu and moe.cu, hybrid.cu (routed experts on the CPU)
 * and nccl.cu (sums between GPU processes).
 *
 * Every launcher queues work on the backend's stream and returns at once; nothing here waits for
 * the GPU except begin() and read(). Kernels are static to their file; launchers are the only
 * way in. */
#ifndef Q3_CUDA_INTERNAL_CUH
#define Q3_CUDA_INTERNAL_CUH

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#ifndef _Static_assert /* the C headers' layout checks, in C++ */
#define _Static_assert static_assert
#endif
extern "C" {
#include "cpu/cpu_backend.h"
#include "cuda/calls.h"
#include "cuda/cuda_api.h"
#include "cuda/step_plan.h"
#include "quant/types.h"
}
#include "cuda/block_math.h"
#include "cuda/moe_plan.h"

/* Attention's fixed chunk of positions (as the CPU's): results never depend on the batch. */
#define Q3_ATTN_CHUNK 256
/* Query rows one attention block of a prefill step holds (tokens x heads of one kv head). */
#define Q3_ATTN_ROWS 32
/* Steps of at most this many tokens take the mat-vec kernels, split-K attention and graphs. */
#define Q3_SMALL_STEP 16
/* The largest split-K fan-out of a decode step's attention. */
#define Q3_ATTN_MAX_SPLITS 32
/* Slots of a tiled matmul block (tokens, or an expert's tokens). */
#define Q3_TILE_SLOTS 16
/* Routed experts per layer the GPU kernels take (the router's softmax sits in shared memory). */
#define Q3_CUDA_MAX_EXPERTS 512

/* ---- the weights' copy (weights.cu) ---- */

/* One run of host bytes copied to the device as it is. */
typedef struct q3_cuda_range {
    const char *host;
    size_t bytes;
    char *dev;
} q3_cuda_range;

/* Per MoE layer: device pointers of each expert's gate, up and down weights ([3][n_experts], in
 * device memory for the kernels and on the host for bookkeeping); NULL where the expert is not
 * on this GPU (another process's, or the CPU's under --cpu-experts). */
typedef struct q3_cuda_experts {
    const char **dev;  /* device array [3 * n_experts] */
    const char **host; /* its host copy */
} q3_cuda_experts;

typedef struct q3_cuda_weights {
    int device;
    cudaDeviceProp prop;
    bool cpu_experts;
    int gpu_experts;              /* --gpu-experts N */
    q3_cuda_range *ranges;        /* sorted by host address */
    int n_ranges;
    char *arena;                  /* one allocation behind every range */
    size_t arena_bytes;
    q3_cuda_experts *layers;      /* [n_layers] (MoE layers only) */
    char *hot;                    /* the hot experts' weights (hybrid) */
    size_t hot_bytes;
    bool hot_placed;
    uint64_t *route_counts;       /* [n_layers][n_experts] tokens routed so far (hybrid) */
    int64_t routed_tokens;
    int routed_steps;
    const q3_model *m;
} q3_cuda_weights;

/* The device address of host weight bytes (a q3_mat's data, a norm vector), or NULL when they
 * were not copied. */
const char *q3_cuda_dev(const q3_cuda_weights *w, const void *host);
/* Layer index of an experts array (L->experts), or -1. */
int q3_cuda_layer_of(const q3_model *m, const q3_ffn *experts);
/* Copies the hot experts of every MoE layer to the GPU (hybrid, once enough tokens were routed). */
q3_status q3_cuda_place_hot_experts(q3_cuda_weights *w, q3_error *e);

/* ---- the backend (backend.cu) ---- */

typedef struct q3_cuda_nccl q3_cuda_nccl;

/* A D2H copy of one experts call's choices, counted at the next sync (bytes_read). */
typedef struct q3_cuda_tally {
    const q3_ffn *experts;
    const int32_t *top; /* pinned host copy [n * k] */
    int n;
} q3_cuda_tally;

typedef struct q3_cuda {
    q3_backend base;
    q3_cuda_weights *w;
    cudaStream_t stream, copy_stream;
    cudaEvent_t inputs_ready, inputs_copied;
    int max_tokens;
    const q3_batch *b;
    q3_kv_cache *kv;

    /* the step's data (step_plan.h): packed in pinned memory, copied to step_dev */
    q3_step_layout layout;
    unsigned char *step_host, *step_dev;
    q3_step_info info;
    const q3_kv_cache *layout_kv;
    int attn_splits, attn_max_chunks;
    float *attn_part;             /* decode partials [SMALL_STEP][kv heads][max chunks][group][hd + 2] */

    /* scratch */
    void *act;                    /* [max_tokens] converted activation rows */
    size_t act_row_bytes;
    int32_t *slot_of, *slot_token, *slot_expert, *expert_start, *tile_expert, *tile_slot0, *tile_n, *counters;
    float *gate, *up, *h, *y;     /* [slots][ffn_dim] x3, [slots][hidden] */
    void *h_act;
    size_t h_act_row_bytes;
    int max_slots, ffn_dim;

    /* recorded calls and graphs (calls.h) */
    q3_call_list pending;
    q3_graph_cache graphs;
    bool graphs_on, deferring;
    int32_t *arena;               /* mapped pinned memory for host arrays a call carries */
    size_t arena_used, arena_cap; /* in int32 */
    q3_cuda_tally *tallies;
    int n_tallies, tallies_cap;
    int32_t *tally_host;          /* pinned [tally_cap] */
    size_t tally_used, tally_cap;

    /* hybrid: the CPU backend for the routed experts and its pinned buffers */
    q3_backend *cpu;
    float *pin_x, *pin_w, *pin_out, *gpu_out;
    int32_t *pin_top;

    q3_cuda_nccl *nccl;
    bool mma;                     /* tiled matmuls on the tensor cores (mma.cu); false: dp4a tiles */
    cudaError_t error;            /* the first CUDA error, reported by the next begin() */
    char error_where[96];
} q3_cuda;

/* The operations table (ops.cu) and the memory, step and lifetime functions behind it (backend.cu). */
extern const q3_backend_ops Q3_CUDA_OPS;
void *q3_cuda_alloc(q3_backend *be, size_t bytes);
void q3_cuda_free(q3_backend *be, void *p);
void q3_cuda_read(q3_backend *be, void *dst, const void *src, size_t bytes);
q3_status q3_cuda_begin(q3_backend *be, const q3_batch *b, q3_kv_cache *kv, q3_error *e);
void q3_cuda_destroy(q3_backend *be);
/* Counts the bytes of the experts the step's tallied calls read (after the stream synchronized). */
void q3_cuda_settle(q3_cuda *c);

/* Records err (the first one sticks) with where it happened; true when err is cudaSuccess. */
bool q3_cuda_check(q3_cuda *c, cudaError_t err, const char *where);
/* The device address of weights, recording an error (and returning NULL) if they are absent. */
const char *q3_cuda_weights_of(q3_cuda *c, const void *host, const char *what);
/* Executes every recorded call now (replaying or capturing a graph when it can). */
void q3_cuda_flush(q3_cuda *c);
/* Ends graph recording for the rest of the backend's life (a collective takes part). */
void q3_cuda_no_graphs(q3_cuda *c);

/* ---- matmul.cu ---- */

/* n rows of x (cols floats apart) converted for weights of type w_type into dst (rows of
 * q3_row_bytes(vec_dot_type, cols)), rows < *count only (count: a device counter, or NULL);
 * f32 weights take x as it is (returns x). */
const void *q3_cuda_convert(q3_cuda *c, q3_type w_type, const float *x, int64_t cols, int n, void *dst,
                            const int32_t *count);

/* One matmul over slots: slot s multiplies activation row (x_index ? x_index[s] : s) by the
 * matrix (w, or table[slot_expert[s]] for grouped experts) into y + s * y_stride. Slots beyond
 * *slot_count (a device counter, NULL: none) are skipped. Tiled launches with a table take
 * their tiles from tile_expert / tile_slot0 / tile_n and *n_tiles. */
typedef struct q3_mm {
    q3_type type;
    const char *w;
    const char *const *table;
    size_t row_bytes;
    int64_t rows, cols;
    const void *x;
    size_t x_row_bytes;
    const int32_t *x_index;
    float *y;
    int64_t y_stride;
    int n_slots;
    const int32_t *slot_expert, *slot_count;
    const int32_t *tile_expert, *tile_slot0, *tile_n, *n_tiles;
    int max_tiles;
} q3_mm;

/* Launches j: mat-vec kernels for small steps (n_slots <= Q3_SMALL_STEP * top-k), tiled ones
 * otherwise (on the tensor cores when c->mma and the type has an mma kernel); all give every
 * (row, slot) the same bits. */
void q3_cuda_mm(q3_cuda *c, const q3_mm *j, bool small);
/* The tensor-core tiled kernel for j (mma.cu); false when j's type has none. */
bool q3_cuda_mm_mma(q3_cuda *c, const q3_mm *j);

/* ---- attention.cu ---- */

void q3_cuda_rope_store(q3_cuda *c, const q3_layer *L, int layer, float *q, float *k, const float *v);
void q3_cuda_attend(q3_cuda *c, int layer, const float *q, float *out);
/* Shared memory the attention kernels need, opted into once per device. */
bool q3_cuda_attention_init(q3_cuda *c, q3_error *e);

/* ---- moe.cu ---- */

void q3_cuda_route(q3_cuda *c, const float *logits, int n, int32_t *top, float *weight);
/* The experts of `experts` whose table entries are set, for n tokens; out = their weighted sum. */
void q3_cuda_run_experts(q3_cuda *c, const q3_ffn *experts, const q3_cuda_experts *t, const float *xn, int n,
                         const int32_t *top, const float *weight, float *out);
void q3_cuda_ffn(q3_cuda *c, const q3_ffn *f, const float *xn, int n, float *out);

/* ---- backend.cu kernels shared with hybrid.cu ---- */

void q3_cuda_add(q3_cuda *c, float *x, const float *y, size_t n);

/* ---- hybrid.cu ---- */

/* The routed experts on the CPU backend (and the hot ones on the GPU beside them). */
void q3_cuda_hybrid_experts(q3_cuda *c, const q3_ffn *experts, const float *xn, int n, const int32_t *top,
                            const float *weight, float *out);

/* ---- nccl.cu ---- */

void q3_cuda_nccl_free(q3_cuda_nccl *n);

#endif
