/* The tiled matmul of large steps (prefill, an expert's many tokens) on the int8 tensor cores,
 * llama.cpp's MMQ idea: weights unpacked to int8 per sub-block in registers, activations already
 * Q8_K / Q8_0, one mma.sync per (sub-block, 16 rows x 8 tokens) giving the sub-block's integer
 * sums, which the sub-block scales weight in int32.
 *
 * The same bits as the mat-vec and dp4a kernels (matmul.cu): a block's integer sums are exact
 * however they are formed, the block's float term is block_math.h's expression, and the terms
 * reach each output's sum in block order. tests/gpu/run.sh checks this kernel against the others
 * bit for bit; Q3_CUDA_MMA=0 falls back to the dp4a tiles.
 *
 * A thread block of four warps takes 64 rows x 16 slots; warp w owns rows 16w .. 16w + 15 and
 * both groups of 8 slots. Fragment layouts are PTX's for mma.m16n8k32 / m16n8k16 with .s8
 * operands: lane = 4 * group + t; A (16 x k, row-major) holds rows group and group + 8, columns
 * 4t .. 4t + 3 (and + 16 for k32); B (k x 8) holds rows 4t .. 4t + 3 (and + 16) of column group;
 * C holds rows group and group + 8, columns 2t and 2t + 1. */
#include "cuda/internal.cuh"

#define ROWS 64
#define WARPS 4

static __device__ __forceinline__ void mma_k32(int c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
                 : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(0), "r"(0), "r"(0), "r"(0));
}

static __device__ __forceinline__ void mma_k16(int c[4], uint32_t a0, uint32_t a1, uint32_t b0) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};\n"
                 : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
                 : "r"(a0), "r"(a1), "r"(b0), "r"(0), "r"(0), "r"(0), "r"(0));
}

/* 4-bit levels (with a fifth bit for Q5_K) of sub-block j of a Q4_K / Q5_K block, bytes 4t .. 4t + 3
 * (plus `off`, 0 or 16) as four int8. */
template <int TYPE> static __device__ __forceinline__ uint32_t kq_levels(const char *blk, int j, int at) {
    if (TYPE == Q3_TYPE_Q4_K) {
        const q3_block_q4_k *b = (const q3_block_q4_k *)blk;
        return q3hd_nibbles(q3hd_load_a4(b->qs + 32 * (j / 2) + at), j % 2);
    }
    const q3_block_q5_k *b = (const q3_block_q5_k *)blk;
    return q3hd_nibbles(q3hd_load_a4(b->qs + 32 * (j / 2) + at), j % 2) | ((q3hd_load_a4(b->qh + at) >> j) & 0x01010101u) << 4;
}

/* Q6_K levels minus 32 of sub-block u (16 weights), positions 4t .. 4t + 3 of it, as int8. */
static __device__ __forceinline__ uint32_t q6_levels(const q3_block_q6_k *b, int u, int t) {
    int h = u / 8, quarter = (u % 8) / 2, l = 16 * (u % 2) + 4 * t;
    uint32_t low = q3hd_load_a2(b->ql + 64 * h + 32 * (quarter & 1) + l), high = q3hd_load_a2(b->qh + 32 * h + l);
    uint32_t v = (quarter < 2 ? low & 0x0F0F0F0Fu : (low >> 4) & 0x0F0F0F0Fu) | ((high >> (2 * quarter)) & 0x03030303u) << 4;
    return ((v | 0x80808080u) - 0x20202020u) ^ 0x80808080u;
}

/* The min sums of Q4_K / Q5_K: sum over j of min_j * (bsums[2j] + bsums[2j + 1]). */
static __device__ __forceinline__ int32_t kq_min_sum(const uint8_t *scales, const q3_block_q8_k *x) {
    int32_t s = 0;
    for (int j = 0; j < 8; j++) {
        int sc, m;
        q3hd_kscale(scales, j, &sc, &m);
        s += m * (x->bsums[2 * j] + x->bsums[2 * j + 1]);
    }
    return s;
}

/* One K-quant block (256 weights) of rows g, g + 8 against the 16 slots: the integer sums per
 * C position [frag][i]. */
template <int TYPE>
static __device__ __forceinline__ void kq_block(const char *w0, const char *w8, const q3_block_q8_k *xs, int g, int t,
                                                int32_t qy[2][4]) {
    for (int f = 0; f < 2; f++)
        for (int i = 0; i < 4; i++) qy[f][i] = 0;
    if (TYPE == Q3_TYPE_Q6_K) {
        const q3_block_q6_k *b0 = (const q3_block_q6_k *)w0, *b8 = (const q3_block_q6_k *)w8;
        for (int u = 0; u < 16; u++) {
            uint32_t a0 = q6_levels(b0, u, t), a1 = q6_levels(b8, u, t);
            for (int f = 0; f < 2; f++) {
                int c[4];
                mma_k16(c, a0, a1, q3hd_load_a4(xs[8 * f + g].qs + 16 * u + 4 * t));
                qy[f][0] += b0->scales[u] * c[0], qy[f][1] += b0->scales[u] * c[1];
                qy[f][2] += b8->scales[u] * c[2], qy[f][3] += b8->scales[u] * c[3];
            }
        }
        return;
    }
    const uint8_t *s0 = ((const q3_block_q4_k *)w0)->scales, *s8 = ((const q3_block_q4_k *)w8)->scales; /* Q5_K: same place */
    for (int j = 0; j < 8; j++) {
        uint32_t a[4] = {kq_levels<TYPE>(w0, j, 4 * t), kq_levels<TYPE>(w8, j, 4 * t), kq_levels<TYPE>(w0, j, 4 * t + 16),
                         kq_levels<TYPE>(w8, j, 4 * t + 16)};
        int sc0, sc8, m;
        q3hd_kscale(s0, j, &sc0, &m);
        q3hd_kscale(s8, j, &sc8, &m);
        for (int f = 0; f < 2; f++) {
            const int8_t *y = xs[8 * f + g].qs + 32 * j + 4 * t;
            int c[4];
            mma_k32(c, a, q3hd_load_a4(y), q3hd_load_a4(y + 16));
            qy[f][0] += sc0 * c[0], qy[f][1] += sc0 * c[1], qy[f][2] += sc8 * c[2], qy[f][3] += sc8 * c[3];
        }
    }
}

template <int TYPE> struct mma_type;
template <> struct mma_type<Q3_TYPE_Q4_K> { typedef q3_block_q4_k W; typedef q3_block_q8_k X; enum { BLOCKS = 1 }; };
template <> struct mma_type<Q3_TYPE_Q5_K> { typedef q3_block_q5_k W; typedef q3_block_q8_k X; enum { BLOCKS = 1 }; };
template <> struct mma_type<Q3_TYPE_Q6_K> { typedef q3_block_q6_k W; typedef q3_block_q8_k X; enum { BLOCKS = 1 }; };
template <> struct mma_type<Q3_TYPE_Q8_0> { typedef q3_block_q8_0 W; typedef q3_block_q8_0 X; enum { BLOCKS = 8 }; };

/* The block's slots and weights, as matmul.cu's tiled kernel finds them. */
static __device__ __forceinline__ bool mma_tile_of(const q3_mm &j, int *slot0, int *nslot, const char **w) {
    int t = blockIdx.y;
    if (j.table) {
        if (t >= *j.n_tiles) return false;
        *slot0 = j.tile_slot0[t], *nslot = j.tile_n[t], *w = j.table[j.tile_expert[t]];
        return true;
    }
    *slot0 = t * Q3_TILE_SLOTS, *nslot = min(Q3_TILE_SLOTS, j.n_slots - *slot0), *w = j.w;
    return true;
}

template <int TYPE> __global__ void __launch_bounds__(WARPS * 32) mm_tile_mma(q3_mm j) {
    typedef mma_type<TYPE> M;
    const int WB = sizeof(typename M::W) * M::BLOCKS, XB = sizeof(typename M::X) * M::BLOCKS; /* bytes per k-step */
    __shared__ __align__(16) uint16_t sw[ROWS * WB / 2];
    __shared__ __align__(16) uint16_t sx[Q3_TILE_SLOTS * XB / 2];
    int slot0, nslot;
    const char *w;
    if (!mma_tile_of(j, &slot0, &nslot, &w)) return;
    const int64_t r0 = (int64_t)blockIdx.x * ROWS;
    const int nr = (int)min((int64_t)ROWS, j.rows - r0), warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4, row0 = 16 * warp + g, row8 = row0 + 8;
    const int nb = (int)(j.cols / (TYPE == Q3_TYPE_Q8_0 ? Q3_QK : Q3_QK_K));
    float acc[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    for (int kb = 0; kb < nb; kb += M::BLOCKS) {
        int nbk = min((int)M::BLOCKS, nb - kb);
        int wvalid = nbk * (int)sizeof(typename M::W) / 2, xvalid = nbk * (int)sizeof(typename M::X) / 2;
        for (int u = threadIdx.x; u < ROWS * WB / 2; u += blockDim.x) {
            int r = u / (WB / 2), off = u % (WB / 2);
            if (r < nr && off < wvalid) sw[u] = ((const uint16_t *)(w + (r0 + r) * j.row_bytes + (size_t)kb * sizeof(typename M::W)))[off];
        }
        for (int u = threadIdx.x; u < Q3_TILE_SLOTS * XB / 2; u += blockDim.x) {
            int s = u / (XB / 2), off = u % (XB / 2);
            if (s < nslot && off < xvalid) {
                const char *x = (const char *)j.x + (size_t)(j.x_index ? j.x_index[slot0 + s] : slot0 + s) * j.x_row_bytes;
                sx[u] = ((const uint16_t *)(x + (size_t)kb * sizeof(typename M::X)))[off];
            }
        }
        __syncthreads();
        const char *w0 = (const char *)sw + (size_t)row0 * WB, *w8 = (const char *)sw + (size_t)row8 * WB;
        if (TYPE == Q3_TYPE_Q8_0) {
            for (int b = 0; b < nbk; b++) {
                const q3_block_q8_0 *b0 = (const q3_block_q8_0 *)w0 + b, *b8 = (const q3_block_q8_0 *)w8 + b;
                uint32_t a[4] = {q3hd_load_a2(b0->qs + 4 * t), q3hd_load_a2(b8->qs + 4 * t), q3hd_load_a2(b0->qs + 4 * t + 16),
                                 q3hd_load_a2(b8->qs + 4 * t + 16)};
                for (int f = 0; f < 2; f++) {
                    const q3_block_q8_0 *xg = (const q3_block_q8_0 *)((const char *)sx + (size_t)(8 * f + g) * XB) + b;
                    int c[4];
                    mma_k32(c, a, q3hd_load_a2(xg->qs + 4 * t), q3hd_load_a2(xg->qs + 4 * t + 16));
                    for (int i = 0; i < 4; i++) {
                        const q3_block_q8_0 *wb = i < 2 ? b0 : b8;
                        const q3_block_q8_0 *xb = (const q3_block_q8_0 *)((const char *)sx + (size_t)(8 * f + 2 * t + (i & 1)) * XB) + b;
                        acc[f][i] = Q3_FADD(acc[f][i], q3hd_q8_0_term(wb->d, xb->d, c[i]));
                    }
                }
            }
        } else {
            const q3_block_q8_k *xs = (const q3_block_q8_k *)sx;
            int32_t qy[2][4];
            kq_block<TYPE>(w0, w8, xs, g, t, qy);
            for (int f = 0; f < 2; f++)
                for (int i = 0; i < 4; i++) {
                    const char *wb = i < 2 ? w0 : w8;
                    const q3_block_q8_k *xb = &xs[8 * f + 2 * t + (i & 1)];
                    const q3_block_q4_k *kb4 = (const q3_block_q4_k *)wb; /* d, dmin, scales: same place in Q5_K */
                    q3hd_isum s = {qy[f][i], TYPE == Q3_TYPE_Q6_K ? 0 : kq_min_sum(kb4->scales, xb)};
                    float term = TYPE == Q3_TYPE_Q6_K ? q3hd_kquant_term(xb->d, ((const q3_block_q6_k *)wb)->d, 0, s)
                                                      : q3hd_kquant_term(xb->d, kb4->d, kb4->dmin, s);
                    acc[f][i] = Q3_FADD(acc[f][i], term);
                }
        }
        __syncthreads();
    }
    for (int f = 0; f < 2; f++)
        for (int i = 0; i < 4; i++) {
            int r = i < 2 ? row0 : row8, s = 8 * f + 2 * t + (i & 1);
            if (r < nr && s < nslot) j.y[(size_t)(slot0 + s) * j.y_stride + r0 + r] = acc[f][i];
        }
}

bool q3_cuda_mm_mma(q3_cuda *c, const q3_mm *j) {
    unsigned tiles = j->table ? (unsigned)j->max_tiles : (unsigned)((j->n_slots + Q3_TILE_SLOTS - 1) / Q3_TILE_SLOTS);
    dim3 grid((unsigned)((j->rows + ROWS - 1) / ROWS), tiles);
    switch (j->type) {
    case Q3_TYPE_Q4_K: mm_tile_mma<Q3_TYPE_Q4_K><<<grid, WARPS * 32, 0, c->stream>>>(*j); return true;
    case Q3_TYPE_Q5_K: mm_tile_mma<Q3_TYPE_Q5_K><<<grid, WARPS * 32, 0, c->stream>>>(*j); return true;
    case Q3_TYPE_Q6_K: mm_tile_mma<Q3_TYPE_Q6_K><<<grid, WARPS * 32, 0, c->stream>>>(*j); return true;
    case Q3_TYPE_Q8_0: mm_tile_mma<Q3_TYPE_Q8_0><<<grid, WARPS * 32, 0, c->stream>>>(*j); return true;
    default: return false;
    }
}
