/* The parts of the AVX2 and AVX-512 vector routines written once: how attention's kernels read
 * a row (floats one after another, F16 rows by address widened in registers, Q8_0 rows by
 * address dequantized in registers), the prefetch of cached rows ahead, and the value sums
 * (mix_rows, mix_rows_f16, mix_rows_q8_0) at the width of the including file (Q3_X86_BITS,
 * cpu/simd_x86.h). vec_avx2.c and vec_avx512.c include it, built with at least AVX2, FMA and
 * F16C; their scores (dot_rows) reduce lanes in an order of their own and stay in their files.
 *
 * Every value sum is a chain of fused multiply-adds in order of position, one per term and lane,
 * so its bits depend neither on the vector width nor on how outputs and columns are blocked:
 * the blocking below is chosen for speed alone. */
#ifndef Q3_CPU_VEC_X86_H
#define Q3_CPU_VEC_X86_H

#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include "cpu/simd_x86.h"
#include "cpu/row_src.h"
#include "quant/blocks.h"

#define INLINE static inline __attribute__((always_inline))

/* Q3_X86_LANES int8 levels at q as floats (exact). */
INLINE vf levels_to_float(const int8_t *q) {
#if Q3_X86_BITS == 512
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q)));
#else
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q)));
#endif
}

/* Q3_X86_LANES values of row p from column d (d a multiple of Q3_X86_LANES for Q8_0 rows, so
 * they lie in one block): each level times its block's scale, one rounding, as to_float. */
INLINE vf row_vec(row_src s, int kind, int p, int d) {
    if (kind == ROW_F16) return vf_load_halves(s.h[p] + d);
    if (kind == ROW_Q8_0) {
        const q3_block_q8_0 *blk = (const q3_block_q8_0 *)s.b[p] + d / Q3_QK;
        return vf_mul(levels_to_float(blk->qs + d % Q3_QK), vf_set1(_cvtsh_ss(blk->d)));
    }
    return vf_loadu(s.v + (size_t)p * s.hd + d);
}

/* One value of row p, as row_vec gives it. */
INLINE float row_one(row_src s, int kind, int p, int d) {
    if (kind == ROW_F16) return _cvtsh_ss(s.h[p][d]);
    if (kind == ROW_Q8_0) {
        const q3_block_q8_0 *blk = (const q3_block_q8_0 *)s.b[p] + d / Q3_QK;
        return (float)blk->qs[d % Q3_QK] * _cvtsh_ss(blk->d);
    }
    return s.v[(size_t)p * s.hd + d];
}

/* Cached rows come from DRAM at depth, a page run at a time, and the hardware prefetchers do
 * not run far enough ahead: the kernels ask for the lines of rows ahead themselves. The scores
 * ask for whole rows SCORE_AHEAD rows ahead into L1; the value sums, which pass over a chunk's
 * rows a stripe of columns at a time with less arithmetic per line, ask for the stripe's lines
 * MIX_AHEAD rows ahead into L2 (prefetcht1), and near a stripe's last rows for the next
 * stripe's first rows. (Measured on Zen 4, one thread over a depth-8192 F16 cache: the value
 * sums took 4.2 ms a token asking 16 rows ahead into L1, 2.9 ms as here, 2.5 ms with the cache
 * in L2; the scores gained nothing from either change.) */
#define SCORE_AHEAD 16
#define MIX_AHEAD 64

/* Asks for the lines of row p that hold columns [d0, d0 + cols), into L2 or L1. */
INLINE void ask_row(row_src s, int kind, int p, int d0, int cols, bool to_l2) {
    for (int d = d0; d < d0 + cols && d < s.hd; d += 32) { /* 32 columns: an F16 line, a Q8_0 block */
        const char *at = kind == ROW_F16 ? (const char *)(s.h[p] + d)
                                         : (const char *)((const q3_block_q8_0 *)s.b[p] + d / Q3_QK);
        if (to_l2) _mm_prefetch(at, _MM_HINT_T1);
        else _mm_prefetch(at, _MM_HINT_T0);
        if (kind == ROW_Q8_0) { /* 34-byte blocks: up to two lines */
            if (to_l2) _mm_prefetch(at + sizeof(q3_block_q8_0) - 1, _MM_HINT_T1);
            else _mm_prefetch(at + sizeof(q3_block_q8_0) - 1, _MM_HINT_T0);
        }
    }
}

/* The scores' prefetch while row p of n is used: all of row p + SCORE_AHEAD. */
INLINE void ask_score_rows(row_src s, int kind, int p, int n) {
    if (kind != ROW_F32 && p + SCORE_AHEAD < n) ask_row(s, kind, p + SCORE_AHEAD, 0, s.hd, false);
}

/* The value sums' prefetch while row p of n is used in a pass over columns [d0, d0 + cols):
 * the pass that starts a 32-column line asks for its lines MIX_AHEAD rows on, or past the last
 * row for the first rows of the next line's pass. */
INLINE void ask_mix_rows(row_src s, int kind, int p, int n, int d0, int cols) {
    if (kind == ROW_F32 || d0 % 32) return;
    int span = cols < 32 ? 32 : cols, ahead = p + MIX_AHEAD;
    if (ahead < n) ask_row(s, kind, ahead, d0, span, true);
    else if (ahead - n < n && d0 + span < s.hd) ask_row(s, kind, ahead - n, d0 + span, span, true);
}

/* ---- value sums: out[o][d] = sum over p of w[o][p] * row p[d] ---- */

/* Accumulators a block of outputs keeps in registers: half the register file, the rest for a
 * row's vectors and the broadcast weights. */
#define MIX_ACCS (Q3_X86_BITS == 512 ? 16 : 8)

/* n_out outputs (1, 4 or 8) by the k vectors of columns from d0, over all n rows: each row's
 * columns are loaded, and widened or dequantized, once for all the outputs. A pass of 8 outputs
 * covers every query head of a Qwen3 key/value head (GQA 32/4) at once, so each cached value
 * is widened once a token (in blocks of 4 outputs it was widened twice, and each row's line
 * fetched twice). */
INLINE void mix_block(float *out, size_t os, const float *w, size_t ws, row_src s, int kind, int n, int d0,
                      const int n_out, const int k) {
    vf a[MIX_ACCS];
#pragma GCC unroll 16
    for (int i = 0; i < n_out * k; i++) a[i] = vf_zero();
    for (int p = 0; p < n; p++) {
        ask_mix_rows(s, kind, p, n, d0, k * Q3_X86_LANES);
        vf x[MIX_ACCS];
#pragma GCC unroll 16
        for (int j = 0; j < k; j++) x[j] = row_vec(s, kind, p, d0 + Q3_X86_LANES * j);
#pragma GCC unroll 8
        for (int o = 0; o < n_out; o++) {
            vf wo = vf_set1(w[o * ws + p]);
#pragma GCC unroll 16
            for (int j = 0; j < k; j++) a[o * k + j] = vf_fmadd(wo, x[j], a[o * k + j]);
        }
    }
#pragma GCC unroll 8
    for (int o = 0; o < n_out; o++)
#pragma GCC unroll 16
        for (int j = 0; j < k; j++) vf_storeu(out + o * os + d0 + Q3_X86_LANES * j, a[o * k + j]);
}

/* n_out outputs over all columns: blocks as wide as the accumulators allow (at most 4 vectors),
 * then one vector at a time, then one column at a time with the same fused rounding. */
INLINE void mix_outputs(float *out, size_t os, const float *w, size_t ws, row_src s, int kind, int n, const int n_out) {
    const int k = MIX_ACCS / n_out < 4 ? MIX_ACCS / n_out : 4, step = k * Q3_X86_LANES;
    int d = 0;
    for (; d + step <= s.hd; d += step) mix_block(out, os, w, ws, s, kind, n, d, n_out, k);
    for (; d + Q3_X86_LANES <= s.hd; d += Q3_X86_LANES) mix_block(out, os, w, ws, s, kind, n, d, n_out, 1);
    for (int o = 0; o < n_out; o++)
        for (int c = d; c < s.hd; c++) {
            float a = 0;
            for (int p = 0; p < n; p++) a = fmaf(w[o * ws + p], row_one(s, kind, p, c), a);
            out[o * os + c] = a;
        }
}

INLINE void mix_any(float *out, size_t os, const float *w, size_t ws, int n_out, row_src s, int kind, int n) {
    int o = 0;
    for (; o + 8 <= n_out; o += 8) mix_outputs(out + o * os, os, w + o * ws, ws, s, kind, n, 8);
    for (; o + 4 <= n_out; o += 4) mix_outputs(out + o * os, os, w + o * ws, ws, s, kind, n, 4);
    for (; o < n_out; o++) mix_outputs(out + o * os, os, w + o * ws, ws, s, kind, n, 1);
}

static void mix_rows(float *out, size_t os, const float *w, size_t ws, int n_out, const float *v, int n, int hd) {
    mix_any(out, os, w, ws, n_out, (row_src){v, NULL, NULL, hd}, ROW_F32, n);
}

static void mix_rows_f16(float *out, size_t os, const float *w, size_t ws, int n_out, const uint16_t *const *rows, int n,
                         int hd) {
    mix_any(out, os, w, ws, n_out, (row_src){NULL, rows, NULL, hd}, ROW_F16, n);
}

static void mix_rows_q8_0(float *out, size_t os, const float *w, size_t ws, int n_out, const void *const *rows, int n,
                          int hd) {
    mix_any(out, os, w, ws, n_out, (row_src){NULL, NULL, rows, hd}, ROW_Q8_0, n);
}

#endif
