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
#include <stddef.h>
#include "cpu/simd_x86.h"
#include "quant/blocks.h"

#define INLINE static inline __attribute__((always_inline))

/* Rows a call reads: floats one after another (v, hd apart), F16 rows by address (h[p]), or
 * Q8_0 rows by address (b[p], hd / 32 blocks). The kernels take the kind as a constant, so each
 * caller gets a copy with one kind of load and the same arithmetic: F16 and Q8_0 rows give the
 * bits of the float rows that to_float makes of them. */
enum { ROW_F32, ROW_F16, ROW_Q8_0 };
typedef struct row_src {
    const float *v;
    const uint16_t *const *h;
    const void *const *b;
    int hd;
} row_src;

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

/* Cached rows come from DRAM at depth, a page run at a time: while row p is used, ask for the
 * lines of row p + ROWS_AHEAD that hold columns [d0, d0 + cols) (a prefetch past the rows is
 * skipped). */
#define ROWS_AHEAD 16
INLINE void ask_ahead(row_src s, int kind, int p, int n, int d0, int cols) {
    if (kind == ROW_F32 || p + ROWS_AHEAD >= n) return;
    if (kind == ROW_F16) {
        for (int d = d0; d < d0 + cols && d < s.hd; d += 32) _mm_prefetch((const char *)(s.h[p + ROWS_AHEAD] + d), _MM_HINT_T0);
        return;
    }
    for (int d = d0 - d0 % Q3_QK; d < d0 + cols && d < s.hd; d += Q3_QK) { /* 34-byte blocks: up to two lines */
        const char *at = (const char *)((const q3_block_q8_0 *)s.b[p + ROWS_AHEAD] + d / Q3_QK);
        _mm_prefetch(at, _MM_HINT_T0);
        _mm_prefetch(at + sizeof(q3_block_q8_0) - 1, _MM_HINT_T0);
    }
}

/* ---- value sums: out[o][d] = sum over p of w[o][p] * row p[d] ---- */

/* Four outputs by the 4 * Q3_X86_LANES columns from d0: the 16 accumulators stay in registers
 * over all n rows, and each row's columns are loaded once for the four. */
INLINE void mix_4x4(float *out, size_t os, const float *w, size_t ws, row_src s, int kind, int n, int d0) {
    vf a[4][4];
#pragma GCC unroll 4
    for (int o = 0; o < 4; o++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) a[o][k] = vf_zero();
    for (int p = 0; p < n; p++) {
        ask_ahead(s, kind, p, n, d0, 4 * Q3_X86_LANES);
        vf x[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) x[k] = row_vec(s, kind, p, d0 + Q3_X86_LANES * k);
#pragma GCC unroll 4
        for (int o = 0; o < 4; o++) {
            vf wo = vf_set1(w[o * ws + p]);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) a[o][k] = vf_fmadd(wo, x[k], a[o][k]);
        }
    }
#pragma GCC unroll 4
    for (int o = 0; o < 4; o++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) vf_storeu(out + o * os + d0 + Q3_X86_LANES * k, a[o][k]);
}

/* One output, columns [d0, hd): a vector at a time, then one at a time with the same fused
 * rounding. */
INLINE void mix_rest(float *out, const float *w, row_src s, int kind, int n, int d0) {
    int d = d0;
    for (; d + Q3_X86_LANES <= s.hd; d += Q3_X86_LANES) {
        vf a = vf_zero();
        for (int p = 0; p < n; p++) a = vf_fmadd(vf_set1(w[p]), row_vec(s, kind, p, d), a);
        vf_storeu(out + d, a);
    }
    for (; d < s.hd; d++) {
        float a = 0;
        for (int p = 0; p < n; p++) a = fmaf(w[p], row_one(s, kind, p, d), a);
        out[d] = a;
    }
}

INLINE void mix_any(float *out, size_t os, const float *w, size_t ws, int n_out, row_src s, int kind, int n) {
    int step = 4 * Q3_X86_LANES, wide = s.hd / step * step, o = 0;
    for (; o + 4 <= n_out; o += 4) {
        for (int d = 0; d < wide; d += step) mix_4x4(out + o * os, os, w + o * ws, ws, s, kind, n, d);
        for (int k = 0; k < 4; k++) mix_rest(out + (o + k) * os, w + (o + k) * ws, s, kind, n, wide);
    }
    for (; o < n_out; o++) mix_rest(out + o * os, w + o * ws, s, kind, n, 0);
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
