/* The parts of the AVX2 and AVX-512 dot product kernels written once: the K-quant scale
 * unpacking, the per-block tail that turns exact integer sums into the reference's float
 * result, the Q4_K loop around an ISA's block sums, and, at the width of the including file
 * (Q3_X86_BITS, cpu/simd_x86.h), the float types' loop and the activation quantizers around a
 * few primitives each ISA defines (declared below). dot_avx2.c and dot_avx512.c include it,
 * built with at least AVX2, FMA and F16C. */
#ifndef Q3_CPU_DOT_X86_H
#define Q3_CPU_DOT_X86_H

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include "cpu/prefetch_x86.h"
#include "cpu/simd_x86.h"
#include "quant/blocks.h"
#include "quant/types.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* keep the per-block float math identical to the reference */
#endif

/* The 6-bit scales and mins of a Q4_K / Q5_K block as bytes [sc0..sc7, m0..m7] (the layout of
 * q3_kscale_get, unpacked four lanes at a time). Reads 16 bytes from packed: the 12 of the
 * scales and 4 of the block's next field. */
static inline __m128i q3_x86_kscales(const uint8_t *packed) {
    __m128i v = _mm_loadu_si128((const __m128i *)packed); /* 32-bit lanes a, b, c, - */
    __m128i low = _mm_and_si128(v, _mm_set1_epi32(0x3f3f3f3f)); /* sc0-3, m0-3 */
    __m128i c = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 2, 2, 2));
    __m128i nibbles = _mm_srlv_epi32(c, _mm_setr_epi32(0, 4, 0, 4)); /* c, c >> 4 */
    __m128i top = _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(v, 6), _mm_set1_epi32(0x03030303)), 4);
    __m128i high = _mm_or_si128(_mm_and_si128(nibbles, _mm_set1_epi32(0x0f0f0f0f)), top); /* sc4-7, m4-7 */
    return _mm_unpacklo_epi32(low, high);
}

/* The 16 signed scales of a Q3_K block as int8 (-32..31). Scale j's low four bits are the low
 * nibble of byte j (j < 8) or the high nibble of byte j - 8; its top two bits are bit pair
 * j / 4 of byte 8 + j % 4. Reads exactly the 12 bytes (the block ends 2 bytes later). */
static inline __m128i q3_x86_q3k_scales(const uint8_t *packed) {
    int64_t low_bytes;
    int32_t high_bytes;
    memcpy(&low_bytes, packed, 8);
    memcpy(&high_bytes, packed + 8, 4);
    __m128i ab = _mm_set1_epi64x(low_bytes); /* 32-bit lanes: bytes 0-3, 4-7, 0-3, 4-7 */
    __m128i low = _mm_and_si128(_mm_srlv_epi32(ab, _mm_setr_epi32(0, 0, 4, 4)), _mm_set1_epi32(0x0f0f0f0f));
    __m128i top = _mm_srlv_epi32(_mm_set1_epi32(high_bytes), _mm_setr_epi32(0, 2, 4, 6));
    top = _mm_slli_epi32(_mm_and_si128(top, _mm_set1_epi32(0x03030303)), 4);
    return _mm_sub_epi8(_mm_or_si128(low, top), _mm_set1_epi8(32));
}

/* sum m_j * (bsums[2j] + bsums[2j + 1]) in four int32 lanes (not yet summed): the min term of
 * Q4_K / Q5_K. scales_mins is q3_x86_kscales' result. */
static inline __m128i q3_x86_kmin_terms(__m128i scales_mins, const int16_t *bsums) {
    __m128i pairs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)bsums),
                                   _mm_loadu_si128((const __m128i *)(bsums + 8)));
    __m128i mins = _mm_unpackhi_epi8(scales_mins, _mm_setzero_si128());
    return _mm_madd_epi16(pairs, mins);
}

/* Sums the four lanes of qy and of my: [sum qy, sum my] in lanes 0 and 1. */
static inline __m128i q3_x86_sum_pair(__m128i qy, __m128i my) {
    __m128i h = _mm_hadd_epi32(qy, my);
    return _mm_hadd_epi32(h, h);
}

/* q3_kdot_accumulate on the two sums of q3_x86_sum_pair: acc + ((dx * d) * qy - (dx * dmin) *
 * my), the same IEEE operations in the same order, two lanes at once. d_dmin points at the
 * block's adjacent fp16 d and dmin. */
static inline float q3_x86_kdot_tail(float acc, float dx, const uint16_t *d_dmin, __m128i sums) {
    uint32_t halves;
    memcpy(&halves, d_dmin, 4);
    __m128 d = _mm_cvtph_ps(_mm_cvtsi32_si128((int)halves));
    __m128 products = _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(dx), d), _mm_cvtepi32_ps(sums));
    __m128 difference = _mm_sub_ss(products, _mm_movehdup_ps(products));
    return _mm_cvtss_f32(_mm_add_ss(_mm_set_ss(acc), difference));
}

/* q3_x86_kdot_tail for four consecutive blocks at once: qy[b] and my[b] hold block b's sums in
 * four lanes each (not yet summed); d_dmin points at the first block's fp16 d and dmin, the
 * others follow every stride bytes. The products of the four blocks are computed side by side;
 * only the running sum takes them one after another, as the reference adds. */
static inline float q3_x86_kdot_tail4(float acc, const q3_block_q8_k *x, const uint16_t *d_dmin, size_t stride,
                                      const __m128i qy[4], const __m128i my[4]) {
    __m128 sum_qy = _mm_cvtepi32_ps(_mm_hadd_epi32(_mm_hadd_epi32(qy[0], qy[1]), _mm_hadd_epi32(qy[2], qy[3])));
    __m128 sum_my = _mm_cvtepi32_ps(_mm_hadd_epi32(_mm_hadd_epi32(my[0], my[1]), _mm_hadd_epi32(my[2], my[3])));
    uint32_t h[4];
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++) memcpy(&h[b], (const unsigned char *)d_dmin + b * stride, 4);
    __m256 halves = _mm256_cvtph_ps(_mm_setr_epi32((int)h[0], (int)h[1], (int)h[2], (int)h[3]));
    __m128 lo = _mm256_castps256_ps128(halves), hi = _mm256_extractf128_ps(halves, 1);
    __m128 d = _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)), dmin = _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
    __m128 dx = _mm_setr_ps(x[0].d, x[1].d, x[2].d, x[3].d);
    __m128 diff = _mm_sub_ps(_mm_mul_ps(_mm_mul_ps(dx, d), sum_qy), _mm_mul_ps(_mm_mul_ps(dx, dmin), sum_my));
    float t[4];
    _mm_storeu_ps(t, diff);
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++) acc += t[b];
    return acc;
}

/* The ISA's exact integer sums of one Q4_K block (levels x activations x scales) folded to four
 * int32 lanes; scales_mins is q3_x86_kscales' result for the block. Defined by the including
 * file. */
static inline __attribute__((always_inline)) __m128i q4_k_block_folded(const q3_block_q4_k *w, const q3_block_q8_k *x,
                                                                      __m128i scales_mins);

/* The Q4_K dot product around the ISA's block sums: four blocks' float terms side by side, the
 * blocks left over one at a time; either way the reference's additions in its order, so every
 * ISA gives the scalar code's bits. */
static inline __attribute__((always_inline)) float q3_x86_q4_k_dot(int64_t n, const q3_block_q4_k *bw,
                                                                   const q3_block_q8_k *bx) {
    int64_t nb = n / Q3_QK_K, i = 0;
    float sum = 0;
    for (; i + 4 <= nb; i += 4) {
        __m128i qy[4], my[4];
        q3_x86_prefetch_ahead(bw + i, 4 * sizeof *bw);
#pragma GCC unroll 4
        for (int b = 0; b < 4; b++) {
            __m128i scales_mins = q3_x86_kscales(bw[i + b].scales);
            qy[b] = q4_k_block_folded(&bw[i + b], &bx[i + b], scales_mins);
            my[b] = q3_x86_kmin_terms(scales_mins, bx[i + b].bsums);
        }
        sum = q3_x86_kdot_tail4(sum, bx + i, &bw[i].d, sizeof *bw, qy, my);
    }
    for (; i < nb; i++) {
        __m128i scales_mins = q3_x86_kscales(bw[i].scales);
        __m128i min_terms = q3_x86_kmin_terms(scales_mins, bx[i].bsums);
        sum = q3_x86_kdot_tail(sum, bx[i].d, &bw[i].d, q3_x86_sum_pair(q4_k_block_folded(&bw[i], &bx[i], scales_mins), min_terms));
    }
    return sum;
}

/* The exact integer terms of one K-quant block against its Q8_K activations, folded to four
 * int32 lanes each (not yet summed): qy = sum of levels x activations x scales, my = the min
 * term (zero for the types without mins). An ISA's, always inlined into the drivers below. */
typedef void (*q3_x86_kterms_fn)(const void *w, const q3_block_q8_k *x, __m128i *qy, __m128i *my);

/* The fp16 values at p, p + stride, p + 2 stride, p + 3 stride as four floats. */
static inline __m128 q3_x86_halves4(const unsigned char *p, size_t stride) {
    uint16_t h[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) memcpy(&h[k], p + k * stride, 2);
    uint64_t bits;
    memcpy(&bits, h, 8);
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)bits));
}

/* vec_dot_rows (quant/types.h) of the K-quants around an ISA's block terms: four rows side by
 * side share each activation block, and their float tails run in the four lanes of one vector,
 * each lane the reference's operations for its row in block order (q3_kdot_accumulate): so
 * every result is the scalar code's bits. Rows left over go through vec_dot. d (and dmin right
 * after it, when has_dmin) sit at d_offset in each block. */
static inline __attribute__((always_inline)) void q3_x86_k_dot_rows(int64_t n, const void *w, size_t w_stride, int nr,
                                                                    const void *x, float *out, size_t block_bytes,
                                                                    size_t d_offset, bool has_dmin,
                                                                    q3_x86_kterms_fn terms, q3_vec_dot_fn vec_dot) {
    const q3_block_q8_k *bx = x;
    int64_t nb = n / Q3_QK_K;
    int r = 0;
    for (; r + 4 <= nr; r += 4) {
        const unsigned char *row = (const unsigned char *)w + (size_t)r * w_stride;
        __m128 acc = _mm_setzero_ps();
        for (int64_t i = 0; i < nb; i++, row += block_bytes) {
            __m128i qy[4], my[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                /* The same block of the next four rows, one pass of the row loop ahead, into L2.
                 * Four rows read side by side are four interleaved streams, which the hardware
                 * prefetchers follow poorly: from DRAM, single-threaded, on the Zen 4 of
                 * bench/RESULTS.md, 4.5 GB/s without this, 8 GB/s with it into L1 (the prefetches
                 * then wait for L1 miss buffers), 13 GB/s into L2, as fast as vec_dot's one
                 * stream. */
                const unsigned char *ahead = row + (k + 4) * w_stride;
                for (size_t l = 0; l < block_bytes + 63; l += 64) _mm_prefetch((const char *)ahead + l, _MM_HINT_T1);
                terms(row + k * w_stride, &bx[i], &qy[k], &my[k]);
            }
            __m128 sum_qy = _mm_cvtepi32_ps(_mm_hadd_epi32(_mm_hadd_epi32(qy[0], qy[1]), _mm_hadd_epi32(qy[2], qy[3])));
            __m128 sum_my = _mm_cvtepi32_ps(_mm_hadd_epi32(_mm_hadd_epi32(my[0], my[1]), _mm_hadd_epi32(my[2], my[3])));
            __m128 d = q3_x86_halves4(row + d_offset, w_stride);
            __m128 dmin = has_dmin ? q3_x86_halves4(row + d_offset + 2, w_stride) : _mm_setzero_ps();
            __m128 dx = _mm_set1_ps(bx[i].d);
            acc = _mm_add_ps(acc, _mm_sub_ps(_mm_mul_ps(_mm_mul_ps(dx, d), sum_qy), _mm_mul_ps(_mm_mul_ps(dx, dmin), sum_my)));
        }
        _mm_storeu_ps(out + r, acc);
    }
    for (; r < nr; r++) out[r] = vec_dot(n, (const unsigned char *)w + (size_t)r * w_stride, x);
}

static inline __attribute__((always_inline)) void q3_x86_q4_k_terms(const void *w, const q3_block_q8_k *x, __m128i *qy,
                                                                    __m128i *my) {
    const q3_block_q4_k *b = w;
    __m128i scales_mins = q3_x86_kscales(b->scales);
    *qy = q4_k_block_folded(b, x, scales_mins);
    *my = q3_x86_kmin_terms(scales_mins, x->bsums);
}

/* vec_dot_rows of Q4_K. */
static inline __attribute__((always_inline)) void q3_x86_q4_k_dot_rows(int64_t n, const void *w, size_t w_stride, int nr,
                                                                       const void *x, float *out, q3_vec_dot_fn vec_dot) {
    q3_x86_k_dot_rows(n, w, w_stride, nr, x, out, sizeof(q3_block_q4_k), offsetof(q3_block_q4_k, d), true,
                      q3_x86_q4_k_terms, vec_dot);
}

/* ---- written once for both widths ---- */

/* The primitives each ISA's file defines. */
enum x86_float_kind { X86_F32, X86_F16, X86_BF16 };
/* The four accumulators of x86_float_dot summed, plus the weights from i to n (fewer than a
 * register) times x: the ISA's tail and reduction. */
static inline float float_dot_end(int64_t n, int64_t i, const void *w, const float *x, enum x86_float_kind kind,
                                  vf acc0, vf acc1, vf acc2, vf acc3);
/* The 32 int32 of q[0 .. 32 / Q3_X86_LANES) saturated to int8, in order, at dst. */
static inline void store_i8x32(int8_t *dst, const vi *q);

/* Q3_X86_LANES weights of row w from element i as f32: exact widening. */
static inline vf widen(const void *w, int64_t i, const enum x86_float_kind kind) {
    if (kind == X86_F32) return vf_loadu((const float *)w + i);
    if (kind == X86_F16) return vf_load_halves((const uint16_t *)w + i);
    return vf_load_bf16((const uint16_t *)w + i); /* bf16 is the top half of an f32 */
}

/* The dot product of the float types: four independent accumulators over four-register steps
 * hide the FMA latency, single registers go into the first, and the ISA ends it. BF16 is
 * widened and FMA'd in f32 (exact products), not by a bf16 dot product instruction, which would
 * round the activations to bf16 first. */
static inline __attribute__((always_inline)) float x86_float_dot(int64_t n, const void *w, const float *x,
                                                                 const enum x86_float_kind kind) {
    const int64_t lanes = Q3_X86_LANES;
    vf acc0 = vf_zero(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    int64_t i = 0;
    for (; i + 4 * lanes <= n; i += 4 * lanes) {
        acc0 = vf_fmadd(widen(w, i, kind), vf_loadu(x + i), acc0);
        acc1 = vf_fmadd(widen(w, i + lanes, kind), vf_loadu(x + i + lanes), acc1);
        acc2 = vf_fmadd(widen(w, i + 2 * lanes, kind), vf_loadu(x + i + 2 * lanes), acc2);
        acc3 = vf_fmadd(widen(w, i + 3 * lanes, kind), vf_loadu(x + i + 3 * lanes), acc3);
    }
    for (; i + lanes <= n; i += lanes) acc0 = vf_fmadd(widen(w, i, kind), vf_loadu(x + i), acc0);
    return float_dot_end(n, i, w, x, kind, acc0, acc1, acc2, acc3);
}

#define X86_REGS_PER_32 (32 / Q3_X86_LANES)

/* Q8_0 activations: per block of 32, d = max|x| / 127 (stored as fp16) and q = x * (127 /
 * max|x|) rounded half to even (the default mode), as the reference (quant/q8_0.c). */
static inline void x86_q8_0_from_float(const float *src, void *dst, int64_t n) {
    q3_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / Q3_QK; i++, src += Q3_QK) {
        vf v[X86_REGS_PER_32], amax[X86_REGS_PER_32];
#pragma GCC unroll 4
        for (int k = 0; k < X86_REGS_PER_32; k++) amax[k] = vf_abs(v[k] = vf_loadu(src + k * Q3_X86_LANES));
#pragma GCC unroll 2
        for (int step = 1; step < X86_REGS_PER_32; step *= 2)
#pragma GCC unroll 2
            for (int k = 0; k + step < X86_REGS_PER_32; k += 2 * step) amax[k] = vf_max(amax[k], amax[k + step]);
        float max = vf_reduce_max(amax[0]), id = max != 0.0f ? 127.0f / max : 0.0f;
        b[i].d = _cvtss_sh(max / 127.0f, _MM_FROUND_TO_NEAREST_INT);
        vi q[X86_REGS_PER_32];
#pragma GCC unroll 4
        for (int k = 0; k < X86_REGS_PER_32; k++) q[k] = vf_to_i32(vf_mul(v[k], vf_set1(id)));
        store_i8x32(b[i].qs, q);
    }
}

/* The first of the n values at x whose magnitude is amax (the reference's tie rule). */
static inline float first_with_magnitude(const float *x, int n, float amax) {
    vf target = vf_set1(amax);
    for (int k = 0; k < n; k += Q3_X86_LANES) {
        unsigned hits = vf_eq_bits(vf_abs(vf_loadu(x + k)), target);
        if (hits) return x[k + __builtin_ctz(hits)];
    }
    return 0;
}

/* Q8_K: per block of 256, the value of largest magnitude m gives iscale = -127 / m; q =
 * x * iscale rounded to nearest even (the default mode) and clamped to int8, bsums the sums of
 * q per 16, all as the reference does them. */
static inline void x86_q8_k_from_float(const float *src, void *dst, int64_t n) {
    q3_block_q8_k *b = dst;
    for (int64_t i = 0; i < n / Q3_QK_K; i++, src += Q3_QK_K) {
        vf amax = vf_zero();
        for (int k = 0; k < Q3_QK_K; k += Q3_X86_LANES) amax = vf_max(amax, vf_abs(vf_loadu(src + k)));
        float max = first_with_magnitude(src, Q3_QK_K, vf_reduce_max(amax));
        if (max == 0) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = -127.0f / max;
        vf vs = vf_set1(iscale);
        for (int k = 0; k < Q3_QK_K; k += 32) {
            vi q[X86_REGS_PER_32];
#pragma GCC unroll 4
            for (int r = 0; r < X86_REGS_PER_32; r++) {
                vi rounded = vf_to_i32(vf_mul(vs, vf_loadu(src + k + r * Q3_X86_LANES)));
                q[r] = vi_max32(vi_min32(rounded, vi_set1_32(127)), vi_set1_32(-128));
            }
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                vi sum = q[h * X86_REGS_PER_32 / 2];
#pragma GCC unroll 2
                for (int r = 1; r < X86_REGS_PER_32 / 2; r++) sum = vi_add32(sum, q[h * X86_REGS_PER_32 / 2 + r]);
                b[i].bsums[k / 16 + h] = (int16_t)vi_reduce_add32(sum);
            }
            store_i8x32(b[i].qs + k, q);
        }
        b[i].d = 1 / iscale;
    }
}

#endif
