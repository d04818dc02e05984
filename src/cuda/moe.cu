/* The feed-forward half of a layer on the GPU.
 *
 *   route:   a warp per token: softmax over the experts in float32, then top-k by rounds of a
 *            warp-wide arg-max (ties to the lower expert id, as src/cpu/moe.c route_token), then
 *            the optional renormalisation, summed in choice order;
 *   group:   one thread block sorts the (token, expert) assignments by expert into slots, with
 *            the tiles each expert's tiled matmul takes; all on the device, so that a decode step
 *            never waits for the host and can be replayed from a CUDA graph;
 *   experts: gate and up over each expert's slots (matmul.cu), h = silu(gate) * up, h quantized
 *            for the down projection, down, then each token's outputs summed with its weights
 *            in the order of its choices;
 *   ffn:     a dense SwiGLU, the same steps with every token its own slot.
 *
 * A slot's arithmetic depends only on its token's row and its expert, and the order of slots
 * within an expert (which atomics choose) changes no value: a token's output is the same in any
 * batch. */
#include "cuda/internal.cuh"

#define FULL 0xffffffffu
#define ROUTE_WARPS 4

/* ---- route ---- */

__global__ void __launch_bounds__(ROUTE_WARPS * 32)
    route_kernel(const float *logits, int n, int E, int k, bool renorm, int32_t *top, float *weight) {
    __shared__ float prob[ROUTE_WARPS][Q3_CUDA_MAX_EXPERTS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = blockIdx.x * ROUTE_WARPS + warp;
    if (t >= n) return;
    const float *l = logits + (size_t)t * E;
    float *p = prob[warp], max = -INFINITY, sum = 0.0f;
    for (int x = lane; x < E; x += 32) max = fmaxf(max, l[x]);
    for (int o = 16; o > 0; o >>= 1) max = fmaxf(max, __shfl_xor_sync(FULL, max, o));
    for (int x = lane; x < E; x += 32) {
        float z = Q3_FSUB(l[x], max), e = z < -104.0f ? 0.0f : expf(z); /* as the CPU: expf is 0 there */
        p[x] = e;
        sum = Q3_FADD(sum, e);
    }
    for (int o = 16; o > 0; o >>= 1) sum = Q3_FADD(sum, __shfl_xor_sync(FULL, sum, o));
    __syncwarp();
    for (int x = lane; x < E; x += 32) p[x] = Q3_FDIV(p[x], sum);
    __syncwarp();
    float chosen[32], total = 0.0f;
    for (int j = 0; j < k; j++) {
        float best = -1.0f; /* taken experts hold -1; probabilities are >= 0 */
        int at = E;
        for (int x = lane; x < E; x += 32)
            if (p[x] > best) best = p[x], at = x;
        for (int o = 16; o > 0; o >>= 1) {
            float ob = __shfl_xor_sync(FULL, best, o);
            int oa = __shfl_xor_sync(FULL, at, o);
            if (ob > best || (ob == best && oa < at)) best = ob, at = oa;
        }
        chosen[j] = best;
        if (lane == 0) top[(size_t)t * k + j] = at;
        __syncwarp();
        if (lane == 0) p[at] = -1.0f;
        __syncwarp();
    }
    if (lane != 0) return;
    if (renorm) {
        for (int j = 0; j < k; j++) total = Q3_FADD(total, chosen[j]);
        for (int j = 0; j < k; j++) chosen[j] = Q3_FDIV(chosen[j], total);
    }
    for (int j = 0; j < k; j++) weight[(size_t)t * k + j] = chosen[j];
}

void q3_cuda_route(q3_cuda *c, const float *logits, int n, int32_t *top, float *weight) {
    const q3_config *cfg = &c->base.m->cfg;
    unsigned blocks = (unsigned)((n + ROUTE_WARPS - 1) / ROUTE_WARPS);
    route_kernel<<<blocks, ROUTE_WARPS * 32, 0, c->stream>>>(logits, n, cfg->n_experts, cfg->n_experts_used,
                                                             cfg->norm_topk_prob, top, weight);
    q3_cuda_check(c, cudaGetLastError(), "route");
}

/* ---- grouping by expert ---- */

/* counters[0]: slots in use; counters[1]: tiles. */
__global__ void __launch_bounds__(1024)
    group_kernel(const int32_t *top, int n, int k, int E, const char *const *gate, int32_t *slot_of, int32_t *slot_token,
                 int32_t *slot_expert, int32_t *expert_start, int32_t *tile_expert, int32_t *tile_slot0, int32_t *tile_n,
                 int32_t *counters) {
    __shared__ int32_t count[Q3_CUDA_MAX_EXPERTS], fill[Q3_CUDA_MAX_EXPERTS];
    const int A = n * k;
    for (int x = threadIdx.x; x < E; x += blockDim.x) count[x] = 0;
    __syncthreads();
    for (int a = threadIdx.x; a < A; a += blockDim.x) {
        int x = top[a];
        if (x >= 0 && x < E && gate[x]) atomicAdd(&count[x], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int s = 0;
        for (int x = 0; x < E; x++) expert_start[x] = fill[x] = s, s += count[x];
        expert_start[E] = counters[0] = s;
    }
    __syncthreads();
    for (int a = threadIdx.x; a < A; a += blockDim.x) {
        int x = top[a];
        if (x < 0 || x >= E || !gate[x]) {
            slot_of[a] = -1; /* another process's expert, or the CPU's */
            continue;
        }
        int slot = atomicAdd(&fill[x], 1);
        slot_of[a] = slot;
        slot_token[slot] = a / k;
        slot_expert[slot] = x;
    }
    if (threadIdx.x == 0) counters[1] = q3hd_expert_tiles(expert_start, E, Q3_TILE_SLOTS, tile_expert, tile_slot0, tile_n);
}

/* ---- the SwiGLU pieces ---- */

/* h = silu(gate) * up over rows < *count (NULL: all n). */
__global__ void silu_mul_kernel(const float *gate, const float *up, float *h, int n, int F, const int32_t *count) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)n * F || (count && i / F >= *count)) return;
    h[i] = Q3_FMUL(q3hd_silu(gate[i]), up[i]);
}

/* Bytes between the rows an input conversion gave: f32 rows when act is x itself. */
static size_t input_row_bytes(q3_type w_type, const void *act, const float *x, int64_t cols) {
    return act == (const void *)x ? (size_t)cols * sizeof(float) : q3_row_bytes(q3_type_info(w_type)->vec_dot_type, cols);
}

/* The n hidden rows (F wide) ready for a down projection of type down_type, and their stride:
 * h itself for float weights. */
static const void *down_input(q3_cuda *c, q3_type down_type, int n, int F, const int32_t *count, size_t *row_bytes) {
    const void *in = q3_cuda_convert(c, down_type, c->h, F, n, c->h_act, count);
    *row_bytes = input_row_bytes(down_type, in, c->h, F);
    return in;
}

/* out[t][d] = sum over j of weight[t][j] * y[slot_of[t][j]][d], in choice order, skipping -1. */
__global__ void weighted_sum_kernel(const float *y, const int32_t *slot_of, const float *weight, int n, int k, int H,
                                    float *out) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)n * H) return;
    int t = (int)(i / H), d = (int)(i % H);
    float o = 0.0f;
    for (int j = 0; j < k; j++) {
        int s = slot_of[t * k + j];
        if (s >= 0) o = Q3_FADD(o, Q3_FMUL(weight[t * k + j], y[(size_t)s * H + d]));
    }
    out[i] = o;
}

/* ---- the operations ---- */

/* The first expert whose weights this GPU holds: every expert of a layer shares its shapes. */
static const q3_ffn *some_expert(const q3_ffn *experts, const q3_cuda_experts *t, int E) {
    for (int x = 0; x < E; x++)
        if (t->host[x]) return &experts[x];
    return NULL;
}

void q3_cuda_run_experts(q3_cuda *c, const q3_ffn *experts, const q3_cuda_experts *t, const float *xn, int n,
                         const int32_t *top, const float *weight, float *out) {
    const q3_config *cfg = &c->base.m->cfg;
    int E = cfg->n_experts, k = cfg->n_experts_used, H = cfg->hidden_size;
    const q3_ffn *f = some_expert(experts, t, E);
    if (!f) { /* nothing of this layer on the GPU: its share is zero */
        q3_cuda_check(c, cudaMemsetAsync(out, 0, (size_t)n * H * sizeof(float), c->stream), "experts");
        return;
    }
    int32_t *count = c->counters, *n_tiles = c->counters + 1;
    group_kernel<<<1, 1024, 0, c->stream>>>(top, n, k, E, t->dev, c->slot_of, c->slot_token, c->slot_expert,
                                            c->expert_start, c->tile_expert, c->tile_slot0, c->tile_n, c->counters);
    int F = (int)f->gate.rows, slots = n * k;
    bool small = n <= Q3_SMALL_STEP;
    const void *act = q3_cuda_convert(c, f->gate.type, xn, H, n, c->act, NULL);
    q3_mm j = {};
    j.type = f->gate.type, j.table = t->dev, j.row_bytes = f->gate.row_bytes, j.rows = F, j.cols = H;
    j.x = act, j.x_row_bytes = input_row_bytes(f->gate.type, act, xn, H);
    j.x_index = c->slot_token, j.y = c->gate, j.y_stride = F, j.n_slots = slots;
    j.slot_expert = c->slot_expert, j.slot_count = count;
    j.tile_expert = c->tile_expert, j.tile_slot0 = c->tile_slot0, j.tile_n = c->tile_n, j.n_tiles = n_tiles;
    j.max_tiles = q3hd_max_tiles(slots, E, Q3_TILE_SLOTS);
    q3_cuda_mm(c, &j, small);
    j.type = f->up.type, j.table = t->dev + E, j.row_bytes = f->up.row_bytes, j.y = c->up;
    q3_cuda_mm(c, &j, small);
    silu_mul_kernel<<<(unsigned)(((int64_t)slots * F + 255) / 256), 256, 0, c->stream>>>(c->gate, c->up, c->h, slots, F, count);
    size_t h_bytes;
    const void *h_in = down_input(c, f->down.type, slots, F, count, &h_bytes);
    j.type = f->down.type, j.table = t->dev + 2 * E, j.row_bytes = f->down.row_bytes, j.rows = H, j.cols = F;
    j.x = h_in, j.x_row_bytes = h_bytes, j.x_index = NULL, j.y = c->y, j.y_stride = H;
    q3_cuda_mm(c, &j, small);
    weighted_sum_kernel<<<(unsigned)(((int64_t)n * H + 255) / 256), 256, 0, c->stream>>>(c->y, c->slot_of, weight, n, k, H, out);
    q3_cuda_check(c, cudaGetLastError(), "experts");
}

void q3_cuda_ffn(q3_cuda *c, const q3_ffn *f, const float *xn, int n, float *out) {
    int H = c->base.m->cfg.hidden_size, F = (int)f->gate.rows;
    bool small = n <= Q3_SMALL_STEP;
    const char *gate = q3_cuda_weights_of(c, f->gate.data, "ffn gate"), *up = q3_cuda_weights_of(c, f->up.data, "ffn up");
    const char *down = q3_cuda_weights_of(c, f->down.data, "ffn down");
    if (!gate || !up || !down) return;
    const void *act = q3_cuda_convert(c, f->gate.type, xn, H, n, c->act, NULL);
    q3_mm j = {};
    j.type = f->gate.type, j.w = gate, j.row_bytes = f->gate.row_bytes, j.rows = F, j.cols = H;
    j.x = act, j.x_row_bytes = input_row_bytes(f->gate.type, act, xn, H);
    j.y = c->gate, j.y_stride = F, j.n_slots = n;
    q3_cuda_mm(c, &j, small);
    j.type = f->up.type, j.w = up, j.row_bytes = f->up.row_bytes, j.y = c->up;
    q3_cuda_mm(c, &j, small);
    silu_mul_kernel<<<(unsigned)(((int64_t)n * F + 255) / 256), 256, 0, c->stream>>>(c->gate, c->up, c->h, n, F, NULL);
    size_t h_bytes;
    const void *h_in = down_input(c, f->down.type, n, F, NULL, &h_bytes);
    j.type = f->down.type, j.w = down, j.row_bytes = f->down.row_bytes, j.rows = H, j.cols = F;
    j.x = h_in, j.x_row_bytes = h_bytes, j.y = out, j.y_stride = H;
    q3_cuda_mm(c, &j, small);
    q3_cuda_check(c, cudaGetLastError(), "ffn");
}
