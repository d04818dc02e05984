/* The loops of the x86 kernels over the row-interleaved layouts (quant/interleave.h), written
 * once for dot_x4_avx2.c and dot_x4_avx512.c: over the groups of four rows and their x4 blocks,
 * for 1 to Q3_X4_COLS tokens, with each block's float tail (q3_kdot_accumulate for four rows in
 * four lanes) and the stores. The including file defines how an x4 block's exact integer sums
 * are made (declared below): it unpacks a block's levels and scales once and multiplies them
 * against every token's activations, so a batched decode step of a few streams pays the
 * unpacking once instead of once per token. Integer sums are exact in any order, and the tail
 * runs the reference's float operations per token, so every token gets vec_dot's bits. */
#ifndef Q3_CPU_DOT_X4_X86_H
#define Q3_CPU_DOT_X4_X86_H

#include <immintrin.h>
#include "cpu/prefetch_x86.h"
#include "quant/interleave.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* keep the per-block float math identical to the reference */
#endif

/* Block i of the nt tokens' activations x[t] against the x4 block b: per token t, sums[t] =
 * [Q0 Q1 Q2 Q3 M0 M1 M2 M3], row r's sum of scale x level x activation and of min x
 * activation pairs (Q6_K: M = 0). Defined by the including file. */
static inline __attribute__((always_inline)) void q4_k_x4_sums(const q3_block_q4_k_x4 *b, const q3_block_q8_k *const *x,
                                                               int64_t i, int nt, __m256i *sums);
static inline __attribute__((always_inline)) void q6_k_x4_sums(const q3_block_q6_k_x4 *b, const q3_block_q8_k *const *x,
                                                               int64_t i, int nt, __m256i *sums);

/* acc + ((dx * d) * Q - (dx * dmin) * M) for four rows: q3_kdot_accumulate lane by lane. dd
 * holds d[0..3] then dmin[0..3] as floats, sums [Q0..Q3 M0..M3]. */
static inline __m128 q3_x86_x4_tail(__m128 acc, float dx, __m256 dd, __m256i sums) {
    __m256 p = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(dx), dd), _mm256_cvtepi32_ps(sums));
    return _mm_add_ps(acc, _mm_sub_ps(_mm256_castps256_ps128(p), _mm256_extractf128_ps(p, 1)));
}

/* The x4 block's sums for the nt tokens and its rows' [d0..d3 dmin0..dmin3] (Q6_K has no dmin:
 * zeros, so the min term adds 0 x 0 as the reference's accumulate does). */
static inline __attribute__((always_inline)) __m256 q3_x86_x4_block(bool q6_k, const unsigned char *block,
                                                                   const q3_block_q8_k *const *x, int64_t i, int nt,
                                                                   __m256i *sums) {
    if (!q6_k) {
        const q3_block_q4_k_x4 *b = (const q3_block_q4_k_x4 *)block;
        q4_k_x4_sums(b, x, i, nt, sums);
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->d)); /* d[4] and dmin[4] are adjacent */
    }
    const q3_block_q6_k_x4 *b = (const q3_block_q6_k_x4 *)block;
    q6_k_x4_sums(b, x, i, nt, sums);
    __m128 d = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)b->d));
    return _mm256_insertf128_ps(_mm256_castps128_ps256(d), _mm_setzero_ps(), 1);
}

/* gemm_x4 (quant/types.h) of Q4_K or Q6_K for nt tokens, nt a constant where it is inlined, so
 * the token loops unroll and the accumulators stay in registers. */
static inline __attribute__((always_inline)) void q3_x86_x4_gemm(bool q6_k, int64_t n, const void *w, size_t w_stride,
                                                                 int nr, const void *const *x, int nt, float *out,
                                                                 size_t out_stride) {
    const size_t block_bytes = q6_k ? sizeof(q3_block_q6_k_x4) : sizeof(q3_block_q4_k_x4);
    const q3_block_q8_k *bx[Q3_X4_COLS];
    for (int t = 0; t < nt; t++) bx[t] = x[t];
    const int64_t nb = n / Q3_QK_K;
    for (int g = 0; g < nr / 4; g++) {
        const unsigned char *block = (const unsigned char *)w + (size_t)g * 4 * w_stride;
        __m128 acc[Q3_X4_COLS];
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) acc[t] = _mm_setzero_ps();
        for (int64_t i = 0; i < nb; i++, block += block_bytes) {
            __m256i sums[Q3_X4_COLS];
            q3_x86_prefetch_ahead(block, block_bytes);
            __m256 dd = q3_x86_x4_block(q6_k, block, bx, i, nt, sums);
#pragma GCC unroll 4
            for (int t = 0; t < nt; t++) acc[t] = q3_x86_x4_tail(acc[t], bx[t][i].d, dd, sums[t]);
        }
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) _mm_storeu_ps(out + (size_t)t * out_stride + 4 * g, acc[t]);
    }
}

/* q3_x86_x4_gemm for any nc <= Q3_X4_COLS, one copy per token count. */
static inline __attribute__((always_inline)) void q3_x86_x4_gemm_tokens(bool q6_k, int64_t n, const void *w,
                                                                        size_t w_stride, int nr, const void *const *x,
                                                                        int nc, float *out, size_t out_stride) {
    switch (nc) {
    case 1: q3_x86_x4_gemm(q6_k, n, w, w_stride, nr, x, 1, out, out_stride); break;
    case 2: q3_x86_x4_gemm(q6_k, n, w, w_stride, nr, x, 2, out, out_stride); break;
    case 3: q3_x86_x4_gemm(q6_k, n, w, w_stride, nr, x, 3, out, out_stride); break;
    default: q3_x86_x4_gemm(q6_k, n, w, w_stride, nr, x, 4, out, out_stride); break;
    }
}

#endif
