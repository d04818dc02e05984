/* Attention on the GPU: the per-token prologue (q/k RMSNorm per head, RoPE, keys and values into
 * the paged cache) and grouped-query attention over the cache's pages.
 *
 * Positions go in fixed chunks of Q3_ATTN_CHUNK, as on the CPU. A chunk gives each query row a
 * partial softmax (its max, its sum of exponentials, its weighted sum of values), and a row's
 * partials are folded left to right. Two kernels share the chunk's arithmetic:
 *
 *   split-K (small steps: decode): a thread block per (token, kv head, split) computes the
 *     token's chunks split, split + S, ... into a buffer; a second kernel folds them in order;
 *   folding (prefill): a thread block per (block of a sequence's consecutive tokens, kv head)
 *     walks the chunks in order, the block's keys and values staged once for all its rows.
 *
 * Why a row's output does not depend on its batch or on which kernel ran it: every score is one
 * thread's dot product over d in order; a row's max is exact; its sum of exponentials is 32 lane
 * sums over the positions lane, lane + 32, ... it sees, folded in a butterfly; each value sum is
 * one thread's, over the positions it sees in order; and the folds go chunk by chunk with the
 * same two expressions (block_math.h) in both kernels. Positions past a row's own are never
 * read, so the other rows of a block change nothing. */
#include <cuda_fp16.h>
#include "cuda/internal.cuh"

#define FULL 0xffffffffu
#define CHUNK Q3_ATTN_CHUNK
#define THREADS 256
#define ACC_MAX (Q3_ATTN_ROWS * 256 / THREADS) /* (row, d) pairs per thread: rows <= 32, hd <= 256 */
#define TILE 32                                /* positions staged at once */

/* ---- the prologue: q/k norm, RoPE, the cache ---- */

typedef struct rope_args {
    float *q, *k;
    const float *v;
    const float *q_norm, *k_norm;
    int n_q, n_kv, hd, half;
    float eps;
    const int32_t *pos, *token_row, *pages;
    const float *cos, *sin;
    int stride;
    unsigned char *kc, *vc;
    int type, n_pages, page_size, layer;
    size_t head_row_bytes, page_bytes;
} rope_args;

static __device__ unsigned char *cache_slot(unsigned char *base, int layer, int n_pages, size_t page_bytes, int page_size,
                                            size_t head_row_bytes, const int32_t *table, int p, int head) {
    int page = table[p / page_size];
    return base + ((size_t)layer * n_pages + page) * page_bytes + ((size_t)head * page_size + p % page_size) * head_row_bytes;
}

/* Stores vals[hd] at row in the cache's type; Q8_0 blocks by one thread each. */
static __device__ void store_row(const rope_args &a, const float *vals, unsigned char *row) {
    if (a.type == Q3_TYPE_Q8_0) {
        __syncthreads();
        for (int b = threadIdx.x; b < a.hd / Q3_QK; b += blockDim.x)
            q3hd_quantize_q8_0(vals + b * Q3_QK, (q3_block_q8_0 *)row + b);
        return;
    }
    for (int d = threadIdx.x; d < a.hd; d += blockDim.x) {
        if (a.type == Q3_TYPE_F32) ((float *)row)[d] = vals[d];
        else if (a.type == Q3_TYPE_F16) ((uint16_t *)row)[d] = q3hd_f32_to_f16(vals[d]);
        else ((uint16_t *)row)[d] = q3hd_f32_to_bf16(vals[d]);
    }
}

/* Sum over the block (128 threads) in one fixed order: lane sums, butterflies, warps in turn. */
static __device__ float block_sum(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v = Q3_FADD(v, __shfl_xor_sync(FULL, v, o));
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    float s = red[0];
    for (int w = 1; w < (int)blockDim.x / 32; w++) s = Q3_FADD(s, red[w]);
    __syncthreads();
    return s;
}

/* Block (token i, head hh): hh < n_q a query head, then the key heads, then the value heads. */
__global__ void __launch_bounds__(128) rope_store_kernel(rope_args a) {
    __shared__ float vals[256], rot[256], red[4];
    const int i = blockIdx.x, hh = blockIdx.y, hd = a.hd;
    const bool is_q = hh < a.n_q, is_v = hh >= a.n_q + a.n_kv;
    const int head = is_q ? hh : is_v ? hh - a.n_q - a.n_kv : hh - a.n_q;
    float *row = is_q ? a.q + ((size_t)i * a.n_q + head) * hd : is_v ? NULL : a.k + ((size_t)i * a.n_kv + head) * hd;
    const float *src = is_v ? a.v + ((size_t)i * a.n_kv + head) * hd : row;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) vals[d] = src[d];
    __syncthreads();
    if (!is_v) {
        float ss = 0.0f;
        for (int d = threadIdx.x; d < hd; d += blockDim.x) ss = Q3_FADD(ss, Q3_FMUL(vals[d], vals[d]));
        ss = block_sum(ss, red);
        float scale = Q3_FDIV(1.0f, sqrtf(Q3_FADD(Q3_FDIV(ss, (float)hd), a.eps)));
        const float *w = is_q ? a.q_norm : a.k_norm;
        for (int d = threadIdx.x; d < hd; d += blockDim.x) vals[d] = Q3_FMUL(w[d], Q3_FMUL(vals[d], scale));
        __syncthreads();
        const float *cs = a.cos + (size_t)i * a.half, *sn = a.sin + (size_t)i * a.half;
        for (int d = threadIdx.x; d < a.half; d += blockDim.x) {
            float x0 = vals[d], x1 = vals[d + a.half];
            rot[d] = Q3_FSUB(Q3_FMUL(x0, cs[d]), Q3_FMUL(x1, sn[d]));
            rot[d + a.half] = Q3_FADD(Q3_FMUL(x1, cs[d]), Q3_FMUL(x0, sn[d]));
        }
        __syncthreads();
        for (int d = threadIdx.x; d < hd; d += blockDim.x) row[d] = rot[d];
        if (is_q) return;
    }
    const int32_t *table = a.pages + (size_t)a.token_row[i] * a.stride;
    unsigned char *base = is_v ? a.vc : a.kc;
    store_row(a, is_v ? vals : rot,
              cache_slot(base, a.layer, a.n_pages, a.page_bytes, a.page_size, a.head_row_bytes, table, a.pos[i], head));
}

void q3_cuda_rope_store(q3_cuda *c, const q3_layer *L, int layer, float *q, float *k, const float *v) {
    const q3_model *m = c->base.m;
    const q3_kv_cache *kv = c->kv;
    const q3_step_layout *l = &c->layout;
    rope_args a;
    a.q = q, a.k = k, a.v = v;
    a.q_norm = (const float *)q3_cuda_weights_of(c, L->q_norm, "q_norm");
    a.k_norm = (const float *)q3_cuda_weights_of(c, L->k_norm, "k_norm");
    a.n_q = m->shard.n_q_heads, a.n_kv = m->shard.n_kv_heads, a.hd = m->cfg.head_dim, a.half = a.hd / 2;
    a.eps = m->cfg.rms_eps;
    a.pos = (const int32_t *)(c->step_dev + l->pos);
    a.token_row = (const int32_t *)(c->step_dev + l->token_row);
    a.pages = (const int32_t *)(c->step_dev + l->pages);
    a.cos = (const float *)(c->step_dev + l->cos);
    a.sin = (const float *)(c->step_dev + l->sin);
    a.stride = l->stride;
    a.kc = kv->k, a.vc = kv->v, a.type = kv->type, a.n_pages = kv->n_pages, a.page_size = kv->page_size;
    a.layer = layer, a.head_row_bytes = kv->head_row_bytes, a.page_bytes = kv->page_bytes;
    if (!a.q_norm || !a.k_norm) return;
    dim3 grid((unsigned)c->info.n_tokens, (unsigned)(a.n_q + 2 * a.n_kv));
    rope_store_kernel<<<grid, 128, 0, c->stream>>>(a);
    q3_cuda_check(c, cudaGetLastError(), "rope_store");
}

/* ---- attention ---- */

typedef struct attn_args {
    const float *q;
    float *out;
    int n_q, n_kv, hd, group, q_head0, kv_head0;
    const unsigned char *kc, *vc;
    int type, n_pages, page_size, layer;
    size_t head_row_bytes, page_bytes;
    const int32_t *pos, *token_row, *pages, *block_start;
    int stride;
    float scale;
    float *part; /* split-K partials */
    int max_chunks, splits, rows_cap;
} attn_args;

/* A block of tokens [t0, t0 + n_tok) of one sequence against kv head g: its query rows are
 * row = t * nh + h for local query heads h0 + h. */
typedef struct attn_view {
    int t0, n_tok, g, h0, nh, rows, table_row;
} attn_view;

static __device__ attn_view view_of(const attn_args &a, int blk, int g) {
    attn_view v;
    v.t0 = a.block_start[blk];
    v.n_tok = a.block_start[blk + 1] - v.t0;
    v.g = g;
    int lo = (a.kv_head0 + g) * a.group, hi = lo + a.group;
    v.h0 = max(lo, a.q_head0) - a.q_head0;
    v.nh = min(hi, a.q_head0 + a.n_q) - a.q_head0 - v.h0;
    v.rows = v.n_tok * v.nh;
    v.table_row = a.token_row[v.t0];
    return v;
}

/* Shared memory: the block's queries, a tile of keys or values, the chunk's scores, and per row
 * the chunk's max and sum and the fold's two factors. */
typedef struct attn_smem {
    float *q, *tile, *scores, *m, *l, *fa, *fb;
} attn_smem;

static __host__ __device__ size_t smem_floats(int rows, int hd) {
    return (size_t)rows * hd + (size_t)TILE * (hd + 1) + (size_t)rows * CHUNK + 4 * (size_t)rows;
}

static __device__ attn_smem carve(float *base, int rows, int hd) {
    attn_smem s;
    s.q = base;
    s.tile = s.q + (size_t)rows * hd;
    s.scores = s.tile + (size_t)TILE * (hd + 1);
    s.m = s.scores + (size_t)rows * CHUNK;
    s.l = s.m + rows;
    s.fa = s.l + rows;
    s.fb = s.fa + rows;
    return s;
}

static __device__ float cache_value(int type, const unsigned char *row, int d) {
    if (type == Q3_TYPE_F32) return ((const float *)row)[d];
    if (type == Q3_TYPE_F16) return __half2float(__ushort_as_half(((const uint16_t *)row)[d]));
    if (type == Q3_TYPE_BF16) return __uint_as_float((uint32_t)((const uint16_t *)row)[d] << 16);
    return q3hd_q8_0_value((const q3_block_q8_0 *)row + d / Q3_QK, d % Q3_QK);
}

/* Positions [p, p + n) of kv head g from base (keys or values) into tile[n][hd + 1] as floats. */
static __device__ void load_tile(const attn_args &a, const unsigned char *base, const attn_view &v, int p, int n,
                                 float *tile) {
    const int32_t *table = a.pages + (size_t)v.table_row * a.stride;
    for (int u = threadIdx.x; u < n * a.hd; u += THREADS) {
        int pp = u / a.hd, d = u % a.hd, at = p + pp;
        const unsigned char *row = base + ((size_t)a.layer * a.n_pages + table[at / a.page_size]) * a.page_bytes +
                                   ((size_t)v.g * a.page_size + at % a.page_size) * a.head_row_bytes;
        tile[pp * (a.hd + 1) + d] = cache_value(a.type, row, d);
    }
}

/* Positions of chunk [p0, p_end) that row r sees: those up to its own token's. */
static __device__ int seen_of(const attn_args &a, const attn_view &v, int r, int p0, int p_end) {
    int end = min(a.pos[v.t0 + r / v.nh] + 1, p_end);
    return end > p0 ? end - p0 : 0;
}

static __device__ int chunks_of(const attn_args &a, int token) { return (a.pos[token] + CHUNK) / CHUNK; }

/* Chunk c of the block: per row its max and sum into s.m, s.l, and this thread's value sums
 * acc[jj] for pairs (row, d) = divmod(threadIdx.x + jj * THREADS, hd). Queries already in s.q. */
static __device__ void chunk_partial(const attn_args &a, const attn_view &v, int c, const attn_smem &s,
                                     float acc[ACC_MAX]) {
    const int hd = a.hd, p0 = c * CHUNK, p_end = min(p0 + CHUNK, a.pos[v.t0 + v.n_tok - 1] + 1);
    for (int p = p0; p < p_end; p += TILE) {
        int n = min(TILE, p_end - p);
        load_tile(a, a.kc, v, p, n, s.tile);
        __syncthreads();
        for (int u = threadIdx.x; u < v.rows * TILE; u += THREADS) {
            int r = u / TILE, pp = u % TILE;
            if (pp >= n) continue;
            const float *qr = s.q + (size_t)r * hd, *kr = s.tile + (size_t)pp * (hd + 1);
            float dot = 0.0f;
            for (int d = 0; d < hd; d++) dot = fmaf(qr[d], kr[d], dot);
            s.scores[(size_t)r * CHUNK + (p - p0) + pp] = Q3_FMUL(dot, a.scale);
        }
        __syncthreads();
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int r = warp; r < v.rows; r += THREADS / 32) {
        int seen = seen_of(a, v, r, p0, p_end);
        float *sr = s.scores + (size_t)r * CHUNK, m = -INFINITY, sum = 0.0f;
        for (int p = lane; p < seen; p += 32) m = fmaxf(m, sr[p]);
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(FULL, m, o));
        for (int p = lane; p < seen; p += 32) {
            float e = expf(Q3_FSUB(sr[p], m));
            sr[p] = e;
            sum = Q3_FADD(sum, e);
        }
        for (int o = 16; o > 0; o >>= 1) sum = Q3_FADD(sum, __shfl_xor_sync(FULL, sum, o));
        if (lane == 0) s.m[r] = m, s.l[r] = sum;
    }
#pragma unroll
    for (int jj = 0; jj < ACC_MAX; jj++) acc[jj] = 0.0f;
    for (int p = p0; p < p_end; p += TILE) {
        int n = min(TILE, p_end - p);
        __syncthreads();
        load_tile(a, a.vc, v, p, n, s.tile);
        __syncthreads();
#pragma unroll
        for (int jj = 0; jj < ACC_MAX; jj++) {
            int idx = threadIdx.x + jj * THREADS;
            if (idx < v.rows * hd) {
                int r = idx / hd, d = idx % hd, upto = min(n, seen_of(a, v, r, p0, p_end) - (p - p0));
                const float *e = s.scores + (size_t)r * CHUNK + (p - p0);
                for (int pp = 0; pp < upto; pp++) acc[jj] = fmaf(e[pp], s.tile[pp * (hd + 1) + d], acc[jj]);
            }
        }
    }
    __syncthreads();
}

static __device__ void load_queries(const attn_args &a, const attn_view &v, float *q) {
    for (int u = threadIdx.x; u < v.rows * a.hd; u += THREADS) {
        int r = u / a.hd, d = u % a.hd, t = r / v.nh, h = r % v.nh;
        q[u] = a.q[((size_t)(v.t0 + t) * a.n_q + v.h0 + h) * a.hd + d];
    }
    __syncthreads();
}

static __device__ float *out_of(const attn_args &a, const attn_view &v, int r) {
    return a.out + ((size_t)(v.t0 + r / v.nh) * a.n_q + v.h0 + r % v.nh) * a.hd;
}

/* Split-K: block (token, kv head g, split) writes the partials of chunks split, split + S, ...
 * as [m, l, acc[hd]] per row. */
static __device__ float *partial_at(const attn_args &a, int t, int g, int c) {
    return a.part + (((size_t)t * a.n_kv + g) * a.max_chunks + c) * (size_t)a.rows_cap * (a.hd + 2);
}

__global__ void __launch_bounds__(THREADS) attn_split_kernel(attn_args a) {
    extern __shared__ float smem[];
    const int t = blockIdx.x, g = blockIdx.y, split = blockIdx.z;
    attn_view v = view_of(a, t, g);
    const int n_chunks = chunks_of(a, v.t0);
    if (split >= n_chunks || v.nh <= 0) return;
    attn_smem s = carve(smem, a.rows_cap, a.hd);
    load_queries(a, v, s.q);
    float acc[ACC_MAX];
    for (int c = split; c < n_chunks; c += a.splits) {
        chunk_partial(a, v, c, s, acc);
        float *P = partial_at(a, t, g, c);
#pragma unroll
        for (int jj = 0; jj < ACC_MAX; jj++) {
            int idx = threadIdx.x + jj * THREADS;
            if (idx < v.rows * a.hd) P[(size_t)(idx / a.hd) * (a.hd + 2) + 2 + idx % a.hd] = acc[jj];
        }
        for (int r = threadIdx.x; r < v.rows; r += THREADS) P[(size_t)r * (a.hd + 2)] = s.m[r], P[(size_t)r * (a.hd + 2) + 1] = s.l[r];
        __syncthreads();
    }
}

/* ... then block (token, kv head) folds the chunks in order and divides. */
__global__ void __launch_bounds__(THREADS) attn_merge_kernel(attn_args a) {
    const int t = blockIdx.x, g = blockIdx.y;
    attn_view v = view_of(a, t, g);
    const int n_chunks = chunks_of(a, v.t0), pf = a.hd + 2;
    for (int idx = threadIdx.x; idx < v.rows * a.hd; idx += THREADS) {
        int r = idx / a.hd, d = idx % a.hd;
        const float *P = partial_at(a, t, g, 0) + (size_t)r * pf;
        float m = P[0], l = P[1], acc = P[2 + d];
        for (int c = 1; c < n_chunks; c++) {
            P = partial_at(a, t, g, c) + (size_t)r * pf;
            float fa, fb;
            q3hd_softmax_factors(m, P[0], &m, &fa, &fb);
            l = q3hd_softmax_mix(l, fa, P[1], fb);
            acc = q3hd_softmax_mix(acc, fa, P[2 + d], fb);
        }
        out_of(a, v, r)[d] = Q3_FDIV(acc, l);
    }
}

/* Folding: block (block of tokens, kv head) walks its chunks in order. */
__global__ void __launch_bounds__(THREADS) attn_fold_kernel(attn_args a) {
    extern __shared__ float smem[];
    const int blk = blockIdx.x, g = blockIdx.y, hd = a.hd;
    attn_view v = view_of(a, blk, g);
    if (v.nh <= 0) return;
    attn_smem s = carve(smem, Q3_ATTN_ROWS, hd);
    load_queries(a, v, s.q);
    const int n_chunks = chunks_of(a, v.t0 + v.n_tok - 1);
    float acc[ACC_MAX], state[ACC_MAX];
    __shared__ float row_m[Q3_ATTN_ROWS], row_l[Q3_ATTN_ROWS];
    for (int c = 0; c < n_chunks; c++) {
        chunk_partial(a, v, c, s, acc);
        for (int r = threadIdx.x; r < v.rows; r += THREADS) {
            if (c == 0) {
                row_m[r] = s.m[r], row_l[r] = s.l[r];
            } else if (c < chunks_of(a, v.t0 + r / v.nh)) {
                float fa, fb;
                q3hd_softmax_factors(row_m[r], s.m[r], &row_m[r], &fa, &fb);
                row_l[r] = q3hd_softmax_mix(row_l[r], fa, s.l[r], fb);
                s.fa[r] = fa, s.fb[r] = fb;
            }
        }
        __syncthreads();
#pragma unroll
        for (int jj = 0; jj < ACC_MAX; jj++) {
            int idx = threadIdx.x + jj * THREADS, r = idx / hd;
            if (idx >= v.rows * hd) continue;
            if (c == 0) state[jj] = acc[jj];
            else if (c < chunks_of(a, v.t0 + r / v.nh)) state[jj] = q3hd_softmax_mix(state[jj], s.fa[r], acc[jj], s.fb[r]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int jj = 0; jj < ACC_MAX; jj++) {
        int idx = threadIdx.x + jj * THREADS;
        if (idx < v.rows * hd) out_of(a, v, idx / hd)[idx % hd] = Q3_FDIV(state[jj], row_l[idx / hd]);
    }
}

static size_t smem_bytes(int rows, int hd) { return smem_floats(rows, hd) * sizeof(float); }

bool q3_cuda_attention_init(q3_cuda *c, q3_error *e) {
    int hd = c->base.m->cfg.head_dim, limit = c->w->prop.sharedMemPerBlockOptin;
    size_t fold = smem_bytes(Q3_ATTN_ROWS, hd);
    if (fold > (size_t)limit) {
        q3_fail(e, Q3_EUNSUPPORTED, "cuda: attention over head_dim %d needs %zu bytes of shared memory, the GPU has %d", hd,
                fold, limit);
        return false;
    }
    cudaError_t err = cudaFuncSetAttribute(attn_fold_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)fold);
    if (!err) err = cudaFuncSetAttribute(attn_split_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)fold);
    if (err) {
        q3_fail(e, Q3_EUNSUPPORTED, "cuda: attention's shared memory: %s", cudaGetErrorString(err));
        return false;
    }
    return true;
}

void q3_cuda_attend(q3_cuda *c, int layer, const float *q, float *out) {
    const q3_model *m = c->base.m;
    const q3_kv_cache *kv = c->kv;
    const q3_step_layout *l = &c->layout;
    attn_args a;
    a.q = q, a.out = out;
    a.n_q = m->shard.n_q_heads, a.n_kv = m->shard.n_kv_heads, a.hd = m->cfg.head_dim;
    a.group = m->cfg.n_heads / m->cfg.n_kv_heads, a.q_head0 = m->shard.q_head0, a.kv_head0 = m->shard.kv_head0;
    a.kc = kv->k, a.vc = kv->v, a.type = kv->type, a.n_pages = kv->n_pages, a.page_size = kv->page_size;
    a.layer = layer, a.head_row_bytes = kv->head_row_bytes, a.page_bytes = kv->page_bytes;
    a.pos = (const int32_t *)(c->step_dev + l->pos);
    a.token_row = (const int32_t *)(c->step_dev + l->token_row);
    a.pages = (const int32_t *)(c->step_dev + l->pages);
    a.block_start = (const int32_t *)(c->step_dev + l->block_start);
    a.stride = l->stride;
    a.scale = 1.0f / sqrtf((float)a.hd);
    a.part = c->attn_part, a.max_chunks = c->attn_max_chunks, a.splits = c->attn_splits, a.rows_cap = a.group;
    int T = c->info.n_tokens;
    if (T <= Q3_SMALL_STEP) {
        dim3 grid((unsigned)T, (unsigned)a.n_kv, (unsigned)a.splits);
        attn_split_kernel<<<grid, THREADS, smem_bytes(a.rows_cap, a.hd), c->stream>>>(a);
        attn_merge_kernel<<<dim3((unsigned)T, (unsigned)a.n_kv), THREADS, 0, c->stream>>>(a);
    } else {
        dim3 grid((unsigned)c->info.n_blocks, (unsigned)a.n_kv);
        attn_fold_kernel<<<grid, THREADS, smem_bytes(Q3_ATTN_ROWS, a.hd), c->stream>>>(a);
    }
    q3_cuda_check(c, cudaGetLastError(), "attention");
}
