/* The CUDA backend's operations (model/backend.h) and how they reach the GPU. Each operation
 * becomes a recorded call (calls.h); in a small step the calls wait until the step's first
 * read and then run as one CUDA graph (replayed when the same calls come again, captured when
 * they are new), otherwise each runs at once. The operations' bytes_read are counted when they
 * are called, as the CPU backend counts them, except the routed experts', which depend on the
 * router's choices on the device: a copy of the choices comes back with the step and is counted
 * at its end (q3_cuda_settle). This file also holds the small kernels: the embedding, RMSNorm
 * and the residual sum. */
#include <stdlib.h>
#include <string.h>
#include "cuda/internal.cuh"

#define FULL 0xffffffffu

bool q3_cuda_check(q3_cuda *c, cudaError_t err, const char *where) {
    if (err == cudaSuccess) return true;
    if (c->error == cudaSuccess) {
        c->error = err;
        snprintf(c->error_where, sizeof c->error_where, "%s", where);
        fprintf(stderr, "q3moe: CUDA error in %s: %s\n", where, cudaGetErrorString(err));
    }
    return false;
}

const char *q3_cuda_weights_of(q3_cuda *c, const void *host, const char *what) {
    const char *d = q3_cuda_dev(c->w, host);
    if (!d) q3_cuda_check(c, cudaErrorInvalidDevicePointer, what); /* weights the attach did not copy */
    return d;
}

/* ---- small kernels ---- */

static __device__ float element_of(int type, const char *row, int64_t e) {
    switch (type) {
    case Q3_TYPE_F32: return ((const float *)row)[e];
    case Q3_TYPE_F16: return q3hd_f16_to_f32(((const uint16_t *)row)[e]);
    case Q3_TYPE_BF16: return q3hd_bf16_to_f32(((const uint16_t *)row)[e]);
    case Q3_TYPE_Q8_0: return q3hd_q8_0_value((const q3_block_q8_0 *)row + e / Q3_QK, (int)(e % Q3_QK));
    case Q3_TYPE_Q4_K: return q3hd_q4_k_value((const q3_block_q4_k *)row + e / Q3_QK_K, (int)(e % Q3_QK_K));
    case Q3_TYPE_Q5_K: return q3hd_q5_k_value((const q3_block_q5_k *)row + e / Q3_QK_K, (int)(e % Q3_QK_K));
    default: return q3hd_q6_k_value((const q3_block_q6_k *)row + e / Q3_QK_K, (int)(e % Q3_QK_K));
    }
}

__global__ void embed_kernel(const char *table, size_t row_bytes, int type, int64_t cols, const int32_t *tokens, float *x) {
    const char *row = table + (size_t)tokens[blockIdx.x] * row_bytes;
    float *out = x + (size_t)blockIdx.x * cols;
    for (int64_t e = threadIdx.x; e < cols; e += blockDim.x) out[e] = element_of(type, row, e);
}

/* The sum over a block of 256 threads in one fixed order: lanes, butterflies, warps in turn. */
static __device__ float block_sum(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v = Q3_FADD(v, __shfl_xor_sync(FULL, v, o));
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    float s = red[0];
    for (int w = 1; w < (int)blockDim.x / 32; w++) s = Q3_FADD(s, red[w]);
    return s;
}

/* out[i] = x[row] / rms * w, rounded as cpu/ops.h's q3_rmsnorm rounds each product. */
__global__ void __launch_bounds__(256) rmsnorm_kernel(float *out, const float *x, const int32_t *rows, const float *w, int dim,
                                                      float eps) {
    __shared__ float red[8];
    const float *src = x + (size_t)(rows ? rows[blockIdx.x] : blockIdx.x) * dim;
    float *dst = out + (size_t)blockIdx.x * dim, ss = 0.0f;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) ss = Q3_FADD(ss, Q3_FMUL(src[d], src[d]));
    ss = block_sum(ss, red);
    float scale = Q3_FDIV(1.0f, sqrtf(Q3_FADD(Q3_FDIV(ss, (float)dim), eps)));
    for (int d = threadIdx.x; d < dim; d += blockDim.x) dst[d] = Q3_FMUL(w[d], Q3_FMUL(src[d], scale));
}

__global__ void add_kernel(float *x, const float *y, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = Q3_FADD(x[i], y[i]);
}

void q3_cuda_add(q3_cuda *c, float *x, const float *y, size_t n) {
    if (!n) return;
    add_kernel<<<(unsigned)((n + 255) / 256), 256, 0, c->stream>>>(x, y, n);
    q3_cuda_check(c, cudaGetLastError(), "add");
}

/* ---- executing a call ---- */

static void exec_embed(q3_cuda *c, const q3_mat *table, float *x) {
    const char *w = q3_cuda_weights_of(c, table->data, "token_embd");
    if (!w) return;
    embed_kernel<<<(unsigned)c->info.n_tokens, 256, 0, c->stream>>>(w, table->row_bytes, table->type, table->cols,
                                                                     (const int32_t *)(c->step_dev + c->layout.tokens), x);
    q3_cuda_check(c, cudaGetLastError(), "embed");
}

static void exec_rmsnorm(q3_cuda *c, float *out, const float *x, const int32_t *rows, int n, const float *w_host, int dim,
                         float eps) {
    const float *w = (const float *)q3_cuda_weights_of(c, w_host, "norm weights");
    if (!w || n <= 0) return;
    rmsnorm_kernel<<<(unsigned)n, 256, 0, c->stream>>>(out, x, rows, w, dim, eps);
    q3_cuda_check(c, cudaGetLastError(), "rmsnorm");
}

/* Matrices that take the same activation type share one conversion of x. */
static void exec_matmul(q3_cuda *c, int n_mats, const q3_mat *const *w, const float *x, int n, float *const *y) {
    for (int i = 0, j; i < n_mats; i = j) {
        q3_type act_type = q3_type_info(w[i]->type)->vec_dot_type;
        for (j = i + 1; j < n_mats && q3_type_info(w[j]->type)->vec_dot_type == act_type; j++) {}
        const void *act = q3_cuda_convert(c, w[i]->type, x, w[i]->cols, n, c->act, NULL);
        for (int k = i; k < j; k++) {
            const char *dw = q3_cuda_weights_of(c, w[k]->data, "matmul weights");
            if (!dw) continue;
            q3_mm mm = {};
            mm.type = w[k]->type, mm.w = dw, mm.row_bytes = w[k]->row_bytes, mm.rows = w[k]->rows, mm.cols = w[k]->cols;
            mm.x = act;
            mm.x_row_bytes = act == (const void *)x ? (size_t)w[k]->cols * sizeof(float) : q3_row_bytes(act_type, w[k]->cols);
            mm.y = y[k], mm.y_stride = w[k]->rows, mm.n_slots = n;
            q3_cuda_mm(c, &mm, n <= Q3_SMALL_STEP);
        }
    }
}

static void exec_experts(q3_cuda *c, const q3_ffn *experts, const float *xn, int n, const int32_t *top, const float *weight,
                         float *out, int32_t *tally) {
    const q3_config *cfg = &c->base.m->cfg;
    if (tally)
        q3_cuda_check(c, cudaMemcpyAsync(tally, top, (size_t)n * cfg->n_experts_used * sizeof *top, cudaMemcpyDeviceToHost, c->stream),
                      "experts: choices");
    int l = q3_cuda_layer_of(c->base.m, experts);
    if (l < 0) {
        q3_cuda_check(c, cudaErrorInvalidValue, "experts: not a layer of this model");
        return;
    }
    q3_cuda_run_experts(c, experts, &c->w->layers[l], xn, n, top, weight, out);
}

#define P(k) ((void *)(uintptr_t)call->p[k])

static void execute(q3_cuda *c, const q3_call *call) {
    switch (call->op) {
    case Q3_CALL_EMBED: exec_embed(c, (const q3_mat *)call->p[0], (float *)P(1)); break;
    case Q3_CALL_RMSNORM:
        exec_rmsnorm(c, (float *)P(0), (const float *)call->p[1], (const int32_t *)call->p[2], call->i[0],
                     (const float *)call->p[3], call->i[1], call->f);
        break;
    case Q3_CALL_ADD: q3_cuda_add(c, (float *)P(0), (const float *)call->p[1], call->size); break;
    case Q3_CALL_MATMUL:
        exec_matmul(c, call->i[0], (const q3_mat *const *)&call->p[2], (const float *)call->p[0], call->i[1],
                    (float *const *)&call->p[2 + Q3_BACKEND_MAX_MATS]);
        break;
    case Q3_CALL_ROPE_STORE:
        q3_cuda_rope_store(c, (const q3_layer *)call->p[0], call->i[0], (float *)P(1), (float *)P(2), (const float *)call->p[3]);
        break;
    case Q3_CALL_ATTEND: q3_cuda_attend(c, call->i[0], (const float *)call->p[0], (float *)P(1)); break;
    case Q3_CALL_ROUTE: q3_cuda_route(c, (const float *)call->p[0], call->i[0], (int32_t *)P(1), (float *)P(2)); break;
    case Q3_CALL_EXPERTS:
        exec_experts(c, (const q3_ffn *)call->p[0], (const float *)call->p[1], call->i[0], (const int32_t *)call->p[2],
                     (const float *)call->p[3], (float *)P(4), (int32_t *)P(5));
        break;
    case Q3_CALL_FFN: q3_cuda_ffn(c, (const q3_ffn *)call->p[0], (const float *)call->p[1], call->i[0], (float *)P(2)); break;
    }
}

/* ---- recorded calls and graphs ---- */

static void run_calls(q3_cuda *c) {
    for (int i = 0; i < c->pending.n; i++) execute(c, &c->pending.calls[i]);
}

/* Runs the recorded calls into a stream capture and keeps the graph; NULL (graphs then off for
 * good) when the driver refuses, and nothing has run then. */
static cudaGraphExec_t capture(q3_cuda *c) {
    if (cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        cudaGetLastError();
        c->graphs_on = false;
        return NULL;
    }
    run_calls(c);
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t err = cudaStreamEndCapture(c->stream, &graph);
    if (err == cudaSuccess) err = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (err != cudaSuccess) {
        cudaGetLastError();
        fprintf(stderr, "q3moe: CUDA graphs off (%s): each kernel launches on its own\n", cudaGetErrorString(err));
        c->graphs_on = c->deferring = false;
        return NULL;
    }
    q3_error e;
    if (q3_graph_cache_put(&c->graphs, &c->pending, exec, &e)) return NULL; /* it destroyed exec */
    return exec;
}

void q3_cuda_flush(q3_cuda *c) {
    if (!c->pending.n) return;
    cudaGraphExec_t g = (cudaGraphExec_t)q3_graph_cache_find(&c->graphs, &c->pending);
    if (!g && c->error == cudaSuccess) g = capture(c);
    if (g) q3_cuda_check(c, cudaGraphLaunch(g, c->stream), "graph launch");
    else run_calls(c);
    q3_call_list_reset(&c->pending, c->pending.n_tokens);
}

void q3_cuda_no_graphs(q3_cuda *c) {
    q3_cuda_flush(c);
    c->graphs_on = c->deferring = false;
}

static void submit(q3_cuda *c, const q3_call *call) {
    q3_error e;
    if (c->deferring && q3_call_list_push(&c->pending, call, &e) == Q3_OK) return;
    q3_cuda_flush(c); /* what came before runs first */
    execute(c, call);
}

static q3_call call_of(int op) {
    q3_call call;
    memset(&call, 0, sizeof call);
    call.op = op;
    return call;
}

/* ---- the operations ---- */

static q3_cuda *cu(q3_backend *be) { return (q3_cuda *)be; }

static void op_embed(q3_backend *be, const q3_mat *table, float *x) {
    q3_cuda *c = cu(be);
    q3_call call = call_of(Q3_CALL_EMBED);
    call.p[0] = table, call.p[1] = x;
    submit(c, &call);
    be->bytes_read += (uint64_t)c->info.n_tokens * table->row_bytes;
}

/* A host array a call carries, copied into mapped pinned memory the kernel reads: the copy
 * stays put until the step ends, and a replayed graph reads the new step's copy at the same
 * address. */
static const int32_t *carry(q3_cuda *c, const int32_t *host, int n) {
    if (c->arena_used + (size_t)n > c->arena_cap) { /* rare: wait until the GPU read the earlier ones */
        q3_cuda_flush(c);
        q3_cuda_check(c, cudaStreamSynchronize(c->stream), "rmsnorm rows");
        c->arena_used = 0;
        if ((size_t)n > c->arena_cap) return NULL;
    }
    int32_t *at = c->arena + c->arena_used;
    memcpy(at, host, (size_t)n * sizeof *at);
    c->arena_used += (size_t)n;
    return at;
}

static void op_rmsnorm(q3_backend *be, float *out, const float *x, const int32_t *rows, int n, const float *w, int dim,
                       float eps) {
    q3_cuda *c = cu(be);
    q3_call call = call_of(Q3_CALL_RMSNORM);
    call.p[0] = out, call.p[1] = x, call.p[2] = rows ? carry(c, rows, n) : NULL, call.p[3] = w;
    call.i[0] = n, call.i[1] = dim, call.f = eps;
    if (rows && !call.p[2]) {
        q3_cuda_check(c, cudaErrorMemoryAllocation, "rmsnorm rows");
        return;
    }
    submit(c, &call);
}

static void op_add(q3_backend *be, float *x, const float *y, size_t n) {
    q3_call call = call_of(Q3_CALL_ADD);
    call.p[0] = x, call.p[1] = y, call.size = n;
    submit(cu(be), &call);
}

static void op_matmul(q3_backend *be, int n_mats, const q3_mat *const *w, const float *x, int n, float *const *y) {
    q3_call call = call_of(Q3_CALL_MATMUL);
    call.i[0] = n_mats, call.i[1] = n, call.p[0] = x;
    for (int i = 0; i < n_mats; i++) {
        call.p[2 + i] = w[i], call.p[2 + Q3_BACKEND_MAX_MATS + i] = y[i];
        be->bytes_read += q3_mat_bytes(w[i]);
    }
    submit(cu(be), &call);
}

/* Calls that read the cache carry it, its pages and attention's buffers, so that a graph made
 * for another cache never replays. */
static void carry_cache(q3_cuda *c, q3_call *call) {
    call->p[Q3_CALL_PTRS - 4] = c->kv, call->p[Q3_CALL_PTRS - 3] = c->kv->k, call->p[Q3_CALL_PTRS - 2] = c->kv->v;
    call->p[Q3_CALL_PTRS - 1] = c->attn_part;
    call->i[2] = c->attn_splits, call->i[3] = c->attn_max_chunks;
}

static void op_rope_store(q3_backend *be, const q3_layer *L, int layer, float *q, float *k, const float *v) {
    q3_cuda *c = cu(be);
    q3_call call = call_of(Q3_CALL_ROPE_STORE);
    call.p[0] = L, call.i[0] = layer, call.p[1] = q, call.p[2] = k, call.p[3] = v;
    carry_cache(c, &call);
    submit(c, &call);
}

static void op_attend(q3_backend *be, int layer, const float *q, float *out) {
    q3_cuda *c = cu(be);
    q3_call call = call_of(Q3_CALL_ATTEND);
    call.i[0] = layer, call.p[0] = q, call.p[1] = out;
    carry_cache(c, &call);
    submit(c, &call);
    be->bytes_read += c->info.kv_bytes;
}

static void op_route(q3_backend *be, const float *logits, int n, int32_t *top, float *weight) {
    q3_call call = call_of(Q3_CALL_ROUTE);
    call.p[0] = logits, call.i[0] = n, call.p[1] = top, call.p[2] = weight;
    submit(cu(be), &call);
}

/* Room for a copy of n tokens' choices, to count the experts they read when the step ends. */
static int32_t *tally(q3_cuda *c, const q3_ffn *experts, int n) {
    size_t need = (size_t)n * c->base.m->cfg.n_experts_used;
    if (c->n_tallies == c->tallies_cap || c->tally_used + need > c->tally_cap) return NULL;
    int32_t *at = c->tally_host + c->tally_used;
    c->tally_used += need;
    c->tallies[c->n_tallies++] = (q3_cuda_tally){experts, at, n};
    return at;
}

static void op_experts(q3_backend *be, const q3_ffn *experts, const float *xn, int n, const int32_t *top,
                       const float *weight, float *out) {
    q3_cuda *c = cu(be);
    if (c->cpu) {
        q3_cuda_flush(c);
        q3_cuda_hybrid_experts(c, experts, xn, n, top, weight, out);
        return;
    }
    q3_call call = call_of(Q3_CALL_EXPERTS);
    call.p[0] = experts, call.p[1] = xn, call.i[0] = n, call.p[2] = top, call.p[3] = weight, call.p[4] = out;
    call.p[5] = tally(c, experts, n);
    submit(c, &call);
}

static void op_ffn(q3_backend *be, const q3_ffn *f, const float *xn, int n, float *out) {
    q3_call call = call_of(Q3_CALL_FFN);
    call.p[0] = f, call.p[1] = xn, call.i[0] = n, call.p[2] = out;
    submit(cu(be), &call);
    be->bytes_read += q3_ffn_bytes(f);
}

/* Counts the experts each tallied call read, once per call as the CPU backend counts them. */
void q3_cuda_settle(q3_cuda *c) {
    const q3_config *cfg = &c->base.m->cfg;
    int E = cfg->n_experts, k = cfg->n_experts_used;
    for (int i = 0; i < c->n_tallies; i++) {
        const q3_cuda_tally *t = &c->tallies[i];
        bool seen[Q3_CUDA_MAX_EXPERTS] = {false};
        for (int a = 0; a < t->n * k; a++) {
            int x = t->top[a];
            if (x < 0 || x >= E || seen[x] || !q3_shard_owns_expert(&c->base.m->shard, x)) continue;
            seen[x] = true;
            c->base.bytes_read += q3_ffn_bytes(&t->experts[x]);
        }
    }
    c->n_tallies = 0;
    c->tally_used = 0;
}

const q3_backend_ops Q3_CUDA_OPS = {
    "cuda", q3_cuda_alloc, q3_cuda_free, q3_cuda_read, q3_cuda_begin, op_embed, op_rmsnorm, op_add, op_matmul,
    op_rope_store, op_attend, op_route, op_experts, op_ffn, q3_cuda_destroy,
};
