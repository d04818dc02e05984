/* Matrix products on the GPU: activations quantized per row as the CPU quantizes them (Q8_K for
 * the K-quants, Q8_0 for Q8_0, f32 for the float types), then
 *
 *   mat-vec (small steps): a warp per (row, slot); its lanes split each block into parts
 *     (block_math.h), add the parts' integer sums with shuffles, and add the blocks' float terms
 *     to the row's sum in block order;
 *   tiled (prefill, grouped experts): 16 rows x 16 slots per thread block, weight and activation
 *     blocks staged in shared memory, then per (row, slot) exactly the mat-vec arithmetic.
 *
 * Why both give every (row, slot) the same bits, which is the batch invariance: a block's
 * integer sum is exact in any order, its float term is one expression (no fused multiply-add),
 * and the terms reach the sum in block order in both kernels. For the K-quants and Q8_0 that is
 * also the CPU scalar kernel's sum, so the GPU's matmuls equal the CPU reference to the bit. The
 * float types (f32, f16, bf16 weights) have one order of their own: lane l of a warp sums the
 * columns l, l + 32, ... with fused multiply-adds, then the lanes fold in a butterfly; the tiled
 * kernel keeps the same 32 stripes per output and folds them the same way. */
#include <cuda_fp16.h>
#include "cuda/internal.cuh"

#define FULL 0xffffffffu

static __device__ __forceinline__ float f16_value(uint16_t h) { return __half2float(__ushort_as_half(h)); }

/* ---- activations ---- */

template <int ACT>
__global__ void quantize_rows(const float *x, int64_t cols, int n, char *dst, size_t row_bytes, const int32_t *count) {
    const int bs = ACT == Q3_TYPE_Q8_K ? Q3_QK_K : Q3_QK;
    int64_t nb = cols / bs, i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)n * nb) return;
    int row = (int)(i / nb), b = (int)(i % nb);
    if (count && row >= *count) return;
    const float *src = x + (size_t)row * cols + (size_t)b * bs;
    if (ACT == Q3_TYPE_Q8_K) q3hd_quantize_q8_k(src, (q3_block_q8_k *)(dst + (size_t)row * row_bytes) + b);
    else q3hd_quantize_q8_0(src, (q3_block_q8_0 *)(dst + (size_t)row * row_bytes) + b);
}

const void *q3_cuda_convert(q3_cuda *c, q3_type w_type, const float *x, int64_t cols, int n, void *dst,
                            const int32_t *count) {
    q3_type act = q3_type_info(w_type)->vec_dot_type;
    if (act == Q3_TYPE_F32) return x;
    size_t row_bytes = q3_row_bytes(act, cols);
    int64_t blocks = (int64_t)n * (cols / q3_type_info(act)->block_size);
    unsigned grid = (unsigned)((blocks + 127) / 128);
    if (act == Q3_TYPE_Q8_K) quantize_rows<Q3_TYPE_Q8_K><<<grid, 128, 0, c->stream>>>(x, cols, n, (char *)dst, row_bytes, count);
    else quantize_rows<Q3_TYPE_Q8_0><<<grid, 128, 0, c->stream>>>(x, cols, n, (char *)dst, row_bytes, count);
    q3_cuda_check(c, cudaGetLastError(), "quantize activations");
    return dst;
}

/* ---- the quantized types: their blocks, parts and terms ---- */

template <int TYPE> struct qtype;

template <> struct qtype<Q3_TYPE_Q4_K> {
    typedef q3_block_q4_k W;
    typedef q3_block_q8_k X;
    enum { PARTS = Q3_KQ_PARTS, BLOCK = Q3_QK_K };
    static __device__ q3hd_isum part(const W *w, const X *x, int p) { return q3hd_q4_k_part(w, x, p); }
    static __device__ float term(const W *w, const X *x, q3hd_isum s) { return q3hd_kquant_term(x->d, w->d, w->dmin, s); }
};

template <> struct qtype<Q3_TYPE_Q5_K> {
    typedef q3_block_q5_k W;
    typedef q3_block_q8_k X;
    enum { PARTS = Q3_KQ_PARTS, BLOCK = Q3_QK_K };
    static __device__ q3hd_isum part(const W *w, const X *x, int p) { return q3hd_q5_k_part(w, x, p); }
    static __device__ float term(const W *w, const X *x, q3hd_isum s) { return q3hd_kquant_term(x->d, w->d, w->dmin, s); }
};

template <> struct qtype<Q3_TYPE_Q6_K> {
    typedef q3_block_q6_k W;
    typedef q3_block_q8_k X;
    enum { PARTS = Q3_KQ_PARTS, BLOCK = Q3_QK_K };
    static __device__ q3hd_isum part(const W *w, const X *x, int p) { return q3hd_q6_k_part(w, x, p); }
    static __device__ float term(const W *w, const X *x, q3hd_isum s) { return q3hd_kquant_term(x->d, w->d, 0, s); }
};

template <> struct qtype<Q3_TYPE_Q8_0> {
    typedef q3_block_q8_0 W;
    typedef q3_block_q8_0 X;
    enum { PARTS = Q3_Q8_0_PARTS, BLOCK = Q3_QK };
    static __device__ q3hd_isum part(const W *w, const X *x, int p) {
        q3hd_isum s = {q3hd_q8_0_part(w, x, p), 0};
        return s;
    }
    static __device__ float term(const W *w, const X *x, q3hd_isum s) { return q3hd_q8_0_term(w->d, x->d, s.qy); }
};

/* The integer sums of the PARTS lanes of a group (an aligned run of lanes): exact. */
template <int PARTS> static __device__ __forceinline__ q3hd_isum group_sum(q3hd_isum s) {
#pragma unroll
    for (int o = PARTS / 2; o > 0; o >>= 1) {
        s.qy += __shfl_xor_sync(FULL, s.qy, o);
        s.my += __shfl_xor_sync(FULL, s.my, o);
    }
    return s;
}

/* The slot's weights and activation row. */
static __device__ __forceinline__ const char *slot_weights(const q3_mm &j, int slot) {
    return j.table ? j.table[j.slot_expert[slot]] : j.w;
}

static __device__ __forceinline__ const char *slot_x(const q3_mm &j, int slot) {
    return (const char *)j.x + (size_t)(j.x_index ? j.x_index[slot] : slot) * j.x_row_bytes;
}

/* ---- mat-vec: a warp per (row, slot), four rows per block ---- */

template <int TYPE> __global__ void __launch_bounds__(128) mmv_quant(q3_mm j) {
    typedef qtype<TYPE> Q;
    const int BPW = 32 / Q::PARTS; /* blocks per warp pass */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, slot = blockIdx.y;
    const int64_t row = (int64_t)blockIdx.x * 4 + warp;
    if ((j.slot_count && slot >= *j.slot_count) || row >= j.rows) return;
    const typename Q::W *w = (const typename Q::W *)(slot_weights(j, slot) + row * j.row_bytes);
    const typename Q::X *x = (const typename Q::X *)slot_x(j, slot);
    const int nb = (int)(j.cols / Q::BLOCK), part = lane % Q::PARTS, sub = lane / Q::PARTS;
    float acc = 0.0f;
    for (int b0 = 0; b0 < nb; b0 += BPW) {
        int b = b0 + sub;
        q3hd_isum s = {0, 0};
        if (b < nb) s = Q::part(w + b, x + b, part);
        s = group_sum<Q::PARTS>(s);
        float term = b < nb ? Q::term(w + b, x + b, s) : 0.0f;
        for (int k = 0; k < BPW && b0 + k < nb; k++) acc = Q3_FADD(acc, __shfl_sync(FULL, term, k * Q::PARTS));
    }
    if (lane == 0) j.y[(size_t)slot * j.y_stride + row] = acc;
}

/* ---- tiled: 16 rows x 16 slots, eight warps; lane i of warp w owns row 2w + i / 16, slot i % 16 ---- */

/* The block's slots [*slot0, + *nslot) and weights; false when the block has no tile. */
static __device__ __forceinline__ bool tile_of(const q3_mm &j, int *slot0, int *nslot, const char **w) {
    int t = blockIdx.y;
    if (j.table) {
        if (t >= *j.n_tiles) return false;
        *slot0 = j.tile_slot0[t];
        *nslot = j.tile_n[t];
        *w = j.table[j.tile_expert[t]];
        return true;
    }
    *slot0 = t * Q3_TILE_SLOTS;
    *nslot = min(Q3_TILE_SLOTS, j.n_slots - *slot0);
    *w = j.w;
    return true;
}

/* Copies the first `valid` of each row's per_row 16-bit units into shared memory: row r from
 * src_of(r) at byte offset `from`, for rows r < n_rows (the tile's rows or slots). Units past a
 * row's last block are never read, so the last row of a matrix is never overrun. */
template <typename F>
static __device__ __forceinline__ void stage(uint16_t *dst, int per_row, int valid, int n_rows, size_t from, F src_of) {
    for (int u = threadIdx.x; u < Q3_TILE_SLOTS * per_row; u += blockDim.x) {
        int r = u / per_row, off = u % per_row;
        if (r < n_rows && off < valid) dst[u] = ((const uint16_t *)(src_of(r) + from))[off];
    }
}

template <int TYPE> __global__ void __launch_bounds__(256) mm_tile_quant(q3_mm j) {
    typedef qtype<TYPE> Q;
    const int BPW = 32 / Q::PARTS, WB = sizeof(typename Q::W), XB = sizeof(typename Q::X);
    __shared__ __align__(16) uint16_t sw[Q3_TILE_SLOTS * BPW * WB / 2];
    __shared__ __align__(16) uint16_t sx[Q3_TILE_SLOTS * BPW * XB / 2];
    int slot0, nslot;
    const char *w;
    if (!tile_of(j, &slot0, &nslot, &w)) return;
    const int64_t r0 = (int64_t)blockIdx.x * 16;
    const int nr = (int)min((int64_t)16, j.rows - r0), nb = (int)(j.cols / Q::BLOCK);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, part = lane % Q::PARTS, sub = lane / Q::PARTS;
    float acc = 0.0f;
    for (int kb = 0; kb < nb; kb += BPW) {
        int nbk = min(BPW, nb - kb);
        stage(sw, BPW * WB / 2, nbk * WB / 2, nr, (size_t)kb * WB, [&](int r) { return w + (r0 + r) * j.row_bytes; });
        stage(sx, BPW * XB / 2, nbk * XB / 2, nslot, (size_t)kb * XB, [&](int s) { return slot_x(j, slot0 + s); });
        __syncthreads();
        for (int i = 0; i < 32; i++) {
            int r = 2 * warp + i / 16, s = i % 16;
            const typename Q::W *wb = (const typename Q::W *)((const char *)sw + (size_t)(r * BPW + sub) * WB);
            const typename Q::X *xb = (const typename Q::X *)((const char *)sx + (size_t)(s * BPW + sub) * XB);
            q3hd_isum is = {0, 0};
            bool live = sub < nbk && r < nr && s < nslot;
            if (live) is = Q::part(wb, xb, part);
            is = group_sum<Q::PARTS>(is);
            float term = live ? Q::term(wb, xb, is) : 0.0f;
            for (int k = 0; k < nbk; k++) {
                float v = __shfl_sync(FULL, term, k * Q::PARTS);
                if (lane == i) acc = Q3_FADD(acc, v);
            }
        }
        __syncthreads();
    }
    int r = 2 * warp + lane / 16, s = lane % 16;
    if (r < nr && s < nslot) j.y[(size_t)(slot0 + s) * j.y_stride + r0 + r] = acc;
}

/* ---- float weights ---- */

template <int FT> static __device__ __forceinline__ float weight_value(const char *row, int64_t k) {
    if (FT == Q3_TYPE_F32) return ((const float *)row)[k];
    if (FT == Q3_TYPE_F16) return f16_value(((const uint16_t *)row)[k]);
    return __uint_as_float((uint32_t)((const uint16_t *)row)[k] << 16);
}

static __device__ __forceinline__ float butterfly_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = Q3_FADD(v, __shfl_xor_sync(FULL, v, o));
    return v;
}

template <int FT> __global__ void __launch_bounds__(128) mmv_float(q3_mm j) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, slot = blockIdx.y;
    const int64_t row = (int64_t)blockIdx.x * 4 + warp;
    if ((j.slot_count && slot >= *j.slot_count) || row >= j.rows) return;
    const char *w = slot_weights(j, slot) + row * j.row_bytes;
    const float *x = (const float *)slot_x(j, slot);
    float acc = 0.0f;
    for (int64_t k = lane; k < j.cols; k += 32) acc = fmaf(weight_value<FT>(w, k), x[k], acc);
    acc = butterfly_sum(acc);
    if (lane == 0) j.y[(size_t)slot * j.y_stride + row] = acc;
}

template <int FT> __global__ void __launch_bounds__(256) mm_tile_float(q3_mm j) {
    __shared__ float sw[16][33], sx[16][33];
    int slot0, nslot;
    const char *w;
    if (!tile_of(j, &slot0, &nslot, &w)) return;
    const int64_t r0 = (int64_t)blockIdx.x * 16;
    const int nr = (int)min((int64_t)16, j.rows - r0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float acc[32];
#pragma unroll
    for (int i = 0; i < 32; i++) acc[i] = 0.0f;
    for (int64_t k0 = 0; k0 < j.cols; k0 += 32) {
        for (int u = threadIdx.x; u < 16 * 32; u += 256) {
            int r = u / 32, k = u % 32;
            if (k0 + k < j.cols && r < nr) sw[r][k] = weight_value<FT>(w + (r0 + r) * j.row_bytes, k0 + k);
            if (k0 + k < j.cols && r < nslot) sx[r][k] = ((const float *)slot_x(j, slot0 + r))[k0 + k];
        }
        __syncthreads();
        if (k0 + lane < j.cols) {
#pragma unroll
            for (int i = 0; i < 32; i++) acc[i] = fmaf(sw[2 * warp + i / 16][lane], sx[i % 16][lane], acc[i]);
        }
        __syncthreads();
    }
    float mine = 0.0f;
#pragma unroll
    for (int i = 0; i < 32; i++) {
        float v = butterfly_sum(acc[i]);
        if (lane == i) mine = v;
    }
    int r = 2 * warp + lane / 16, s = lane % 16;
    if (r < nr && s < nslot) j.y[(size_t)(slot0 + s) * j.y_stride + r0 + r] = mine;
}

/* ---- dispatch ---- */

template <int TYPE> static void launch_quant(q3_cuda *c, const q3_mm *j, bool small) {
    if (!small && c->mma && q3_cuda_mm_mma(c, j)) return;
    if (small) {
        dim3 grid((unsigned)((j->rows + 3) / 4), (unsigned)j->n_slots);
        mmv_quant<TYPE><<<grid, 128, 0, c->stream>>>(*j);
    } else {
        unsigned tiles = j->table ? (unsigned)j->max_tiles : (unsigned)((j->n_slots + Q3_TILE_SLOTS - 1) / Q3_TILE_SLOTS);
        dim3 grid((unsigned)((j->rows + 15) / 16), tiles);
        mm_tile_quant<TYPE><<<grid, 256, 0, c->stream>>>(*j);
    }
}

template <int FT> static void launch_float(q3_cuda *c, const q3_mm *j, bool small) {
    if (small) {
        dim3 grid((unsigned)((j->rows + 3) / 4), (unsigned)j->n_slots);
        mmv_float<FT><<<grid, 128, 0, c->stream>>>(*j);
    } else {
        unsigned tiles = j->table ? (unsigned)j->max_tiles : (unsigned)((j->n_slots + Q3_TILE_SLOTS - 1) / Q3_TILE_SLOTS);
        dim3 grid((unsigned)((j->rows + 15) / 16), tiles);
        mm_tile_float<FT><<<grid, 256, 0, c->stream>>>(*j);
    }
}

void q3_cuda_mm(q3_cuda *c, const q3_mm *j, bool small) {
    if (j->n_slots <= 0 || j->rows <= 0) return;
    switch (j->type) {
    case Q3_TYPE_Q4_K: launch_quant<Q3_TYPE_Q4_K>(c, j, small); break;
    case Q3_TYPE_Q5_K: launch_quant<Q3_TYPE_Q5_K>(c, j, small); break;
    case Q3_TYPE_Q6_K: launch_quant<Q3_TYPE_Q6_K>(c, j, small); break;
    case Q3_TYPE_Q8_0: launch_quant<Q3_TYPE_Q8_0>(c, j, small); break;
    case Q3_TYPE_F32: launch_float<Q3_TYPE_F32>(c, j, small); break;
    case Q3_TYPE_F16: launch_float<Q3_TYPE_F16>(c, j, small); break;
    case Q3_TYPE_BF16: launch_float<Q3_TYPE_BF16>(c, j, small); break;
    default: q3_cuda_check(c, cudaErrorInvalidValue, "matmul: a weight type the GPU kernels do not take"); return;
    }
    q3_cuda_check(c, cudaGetLastError(), "matmul");
}
