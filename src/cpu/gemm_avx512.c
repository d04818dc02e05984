/* AVX-512 tile kernels (q3_gemm_fn): 16 weight rows against up to 64 tokens for Q4_K, Q5_K,
 * Q6_K, the i-quants, Q8_0 and the float types, the matrix products of prefill. Built with the
 * AVX-512 flags (the _avx512.c suffix) and only called when the CPU has them.
 *
 * The K-quants and IQ4 types are the scaffold of gemm_x86.h at 512 bits: 16 rows per tile, one
 * per 32-bit lane; vpdpbusd multiplies a tile register by a token's four activations broadcast
 * from memory and adds each lane's four products into its int32. Sub-block scales are applied
 * per 16 rows with vpmulld, mins and offsets against the Q8_K bsums with vpdpwssd. The IQ4 tiles
 * hold the table's levels plus 128 (unsigned, for vpdpbusd) and take 128 * sum(y) off again
 * (IQ4_XS: scaled, from the bsums; IQ4_NL: per block, as Q8_0 does). The lattice i-quants
 * (IQ2_XXS .. IQ1_M) run Q6_K's products on their signed levels plus 64. Q8_0 and the float types
 * have their own tiles below. Every output is bit-identical to q3_*_vec_dot_avx512 for its
 * (row, token), which tests/test_gemm.c checks. */
#include "cpu/dot.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__)

#define Q3_X86_BITS 512
/* Tokens whose accumulators a micro-tile keeps in registers: eight independent vpdpbusd chains
 * cover the instruction's latency (4, 6 and 8 measured; 8 was fastest) in 3 x 8 + 2 of the 32
 * registers. */
#define TILE_COLS 8
#include "cpu/gemm_x86.h"

static inline __m512i load_2x256(const void *p, const void *q) {
    __m256i lo = _mm256_loadu_si256((const __m256i *)p), hi = _mm256_loadu_si256((const __m256i *)q);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* ---- the primitives of gemm_x86.h ---- */

/* [a.lane(i), a.lane(j), b.lane(k), b.lane(l)] of 128-bit lanes. */
#define SHUFFLE_128(a, b, i, j, k, l) _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(l, k, j, i))

/* Two rounds of in-lane unpacks make 4 x 4 blocks, two rounds of 128-bit lane shuffles place
 * them. */
static inline void transpose_rows(__m512i v[16]) {
    __m512i t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    }
    /* v[4j + m], lane k: rows 4j .. 4j + 3 of column 4k + m. */
#pragma GCC unroll 4
    for (int i = 0; i < 16; i += 4) {
        v[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        v[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        v[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        v[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
#pragma GCC unroll 4
    for (int m = 0; m < 4; m++) {
        __m512i p0 = SHUFFLE_128(v[m], v[4 + m], 0, 1, 0, 1), p1 = SHUFFLE_128(v[m], v[4 + m], 2, 3, 2, 3);
        __m512i q0 = SHUFFLE_128(v[8 + m], v[12 + m], 0, 1, 0, 1), q1 = SHUFFLE_128(v[8 + m], v[12 + m], 2, 3, 2, 3);
        t[m] = SHUFFLE_128(p0, q0, 0, 2, 0, 2);
        t[4 + m] = SHUFFLE_128(p0, q0, 1, 3, 1, 3);
        t[8 + m] = SHUFFLE_128(p1, q1, 0, 2, 0, 2);
        t[12 + m] = SHUFFLE_128(p1, q1, 1, 3, 1, 3);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) v[i] = t[i];
}

/* out[k] lane r = dword k of the 16 bytes at rows[r] + off: four rows per register, each
 * register's dwords regrouped by k, then the four registers' lanes interleaved. */
static inline void load_rows_x4(const uint8_t *const rows[ROWS], size_t off, __m512i out[4]) {
    const __m512i by_dword = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    __m512i p[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
        __m512i z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rows[4 * q] + off)));
        z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(rows[4 * q + 1] + off)), 1);
        z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(rows[4 * q + 2] + off)), 2);
        z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(rows[4 * q + 3] + off)), 3);
        p[q] = _mm512_permutexvar_epi32(by_dword, z);
    }
    __m512i a = SHUFFLE_128(p[0], p[1], 0, 1, 0, 1), b = SHUFFLE_128(p[0], p[1], 2, 3, 2, 3);
    __m512i c = SHUFFLE_128(p[2], p[3], 0, 1, 0, 1), d = SHUFFLE_128(p[2], p[3], 2, 3, 2, 3);
    out[0] = SHUFFLE_128(a, c, 0, 2, 0, 2);
    out[1] = SHUFFLE_128(a, c, 1, 3, 1, 3);
    out[2] = SHUFFLE_128(b, d, 0, 2, 0, 2);
    out[3] = SHUFFLE_128(b, d, 1, 3, 1, 3);
}

static inline __m512i tile_scale(__m512i scale) { return scale; } /* vpmulld takes int32 lanes */

/* Biased to unsigned bytes (1..241) for vpdpbusd; the dot products take 128 * sum(y) off. */
static inline __m512i iq4_tile_table(void) {
    return _mm512_add_epi8(vi_bcast128(q3_iq4nl_values), _mm512_set1_epi8((char)0x80));
}

/* Biased to unsigned bytes (2..126) for vpdpbusd, as Q6_K's levels are by 32; the dot products
 * take 64 * sum_j mult_j * bsums[j] off. */
static inline __m512i lattice_tile_levels(__m512i levels) { return _mm512_add_epi8(levels, _mm512_set1_epi8(64)); }

/* Masked stores are slow on some CPUs (AMD's Zen 4 among them): only a partial tile takes them. */
static inline void store_first_rows(float *out, __m512 v, int nr) {
    _mm512_mask_storeu_ps(out, (__mmask16)((1u << nr) - 1), v);
}

/* ---- Q4_K and Q5_K ---- */

/* The integer sums of nc tokens (a constant once inlined) against one packed block: sub-block
 * j is steps 8j .. 8j + 7, activations 32j .. 32j + 31, its int32 sums scaled per row into qy;
 * and into my sum_j p_j * (bsums[2j] + bsums[2j + 1]) for the tile's min_pairs p, two sub-blocks
 * per vpdpwssd. */
static inline __attribute__((always_inline)) void kq32_sums(const kq32_tile *t, const q3_block_q8_k *const *xb,
                                                            __m512i *qy, __m512i *my, const int nc) {
    int16_t y_sums[TILE_COLS][8];
#pragma GCC unroll 8
    for (int c = 0; c < nc; c++) kq32_sub_block_sums(xb[c], y_sums[c]);
#pragma GCC unroll 8
    for (int c = 0; c < nc; c++) qy[c] = my[c] = _mm512_setzero_si512();
#pragma GCC unroll 1
    for (int j = 0; j < 8; j++) {
        __m512i s[TILE_COLS];
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) s[c] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) {
            __m512i levels = t->levels[8 * j + u];
#pragma GCC unroll 8
            for (int c = 0; c < nc; c++) s[c] = _mm512_dpbusd_epi32(s[c], levels, vi_bcast32(xb[c]->qs + 32 * j + 4 * u));
        }
        __m512i scale = t->scales[j];
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) qy[c] = _mm512_add_epi32(qy[c], _mm512_mullo_epi32(s[c], scale));
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m512i pairs = t->min_pairs[i];
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) my[c] = _mm512_dpwssd_epi32(my[c], pairs, vi_bcast32(y_sums[c] + 2 * i));
    }
}

/* Q4_K and Q5_K: the min term my is taken off in the float tail, as vec_dot does. */
static inline __attribute__((always_inline)) void kq32_dot_cols(const kq32_tile *t, const q3_block_q8_k *const *xb,
                                                                __m512 *acc, const int nc) {
    __m512i qy[TILE_COLS], my[TILE_COLS];
    kq32_sums(t, xb, qy, my, nc);
#pragma GCC unroll 8
    for (int c = 0; c < nc; c++) acc[c] = kdot_tail(acc[c], xb[c]->d, t->d, t->dmin, qy[c], my[c]);
}

static void kq32_dot(const void *tile, const void *const *x, int64_t i, int nc, __m512 *acc) {
    const q3_block_q8_k *xb[TILE_COLS];
    for (int c = 0; c < nc; c++) xb[c] = (const q3_block_q8_k *)x[c] + i;
    FOR_EACH_WIDTH(nc, kq32_dot_cols, tile, xb, acc);
}

/* ---- Q6_K ---- */

/* ---- Q6_K and the lattice i-quants: 16 sub-blocks of 16, levels biased by 2^bias_shift ---- */

/* sum_j sc_j * sum(q * y) over sub-block j (steps 4j .. 4j + 3), minus 2^bias_shift * sum_j
 * sc_j * bsums[j]: for Q6_K (bias 32) the integer its vec_dot gets from its offset_corrected,
 * for the lattice types (bias 64) their vec_dot's exact block sum. */
static inline __attribute__((always_inline)) void q6_k_dot_cols(const q6_k_tile *t, const int bias_shift,
                                                                const q3_block_q8_k *const *xb, __m512 *acc,
                                                                const int nc) {
    __m512i qy[TILE_COLS], off[TILE_COLS];
#pragma GCC unroll 8
    for (int c = 0; c < nc; c++) qy[c] = off[c] = _mm512_setzero_si512();
#pragma GCC unroll 1
    for (int j = 0; j < 16; j++) {
        __m512i s[TILE_COLS];
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) s[c] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) {
            __m512i levels = t->levels[4 * j + u];
#pragma GCC unroll 8
            for (int c = 0; c < nc; c++) s[c] = _mm512_dpbusd_epi32(s[c], levels, vi_bcast32(xb[c]->qs + 16 * j + 4 * u));
        }
        __m512i scale = t->scales[j];
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) qy[c] = _mm512_add_epi32(qy[c], _mm512_mullo_epi32(s[c], scale));
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        __m512i pair = t->scale_pairs[i];
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) off[c] = _mm512_dpwssd_epi32(off[c], pair, vi_bcast32(xb[c]->bsums + 2 * i));
    }
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int c = 0; c < nc; c++) {
        __m512i sum_qy = _mm512_sub_epi32(qy[c], _mm512_slli_epi32(off[c], (unsigned)bias_shift));
        acc[c] = kdot_tail(acc[c], xb[c]->d, t->d, zero, sum_qy, _mm512_setzero_si512());
    }
}

static void q6_k_dot(const void *tile, const void *const *x, int64_t i, int nc, __m512 *acc) {
    const q3_block_q8_k *xb[TILE_COLS];
    for (int c = 0; c < nc; c++) xb[c] = (const q3_block_q8_k *)x[c] + i;
    FOR_EACH_WIDTH(nc, q6_k_dot_cols, tile, 5, xb, acc);
}

/* The lattice vec_dot's tail is acc + (dx * d) * sum, which kdot_tail with dmin = 0 computes
 * to the same bits (less a zero's sign that an accumulator starting at +0 loses). */
static void lattice_dot(const void *tile, const void *const *x, int64_t i, int nc, __m512 *acc) {
    const q3_block_q8_k *xb[TILE_COLS];
    for (int c = 0; c < nc; c++) xb[c] = (const q3_block_q8_k *)x[c] + i;
    FOR_EACH_WIDTH(nc, q6_k_dot_cols, tile, 6, xb, acc);
}

static const tile_ops Q4_K_OPS = {Q3_QK_K, sizeof(q3_block_q4_k), q4_k_pack, kq32_dot, q3_q4_k_vec_dot_avx512, 1.0f};
static const tile_ops Q5_K_OPS = {Q3_QK_K, sizeof(q3_block_q5_k), q5_k_pack, kq32_dot, q3_q5_k_vec_dot_avx512, 1.0f};
static const tile_ops Q6_K_OPS = {Q3_QK_K, sizeof(q3_block_q6_k), q6_k_pack, q6_k_dot, q3_q6_k_vec_dot_avx512, 1.0f};

Q3_X86_GEMM_KERNEL(avx512, q4_k, Q4_K_OPS)
Q3_X86_GEMM_KERNEL(avx512, q5_k, Q5_K_OPS)
Q3_X86_GEMM_KERNEL(avx512, q6_k, Q6_K_OPS)

/* ---- Q8_0: blocks of 32 int8 weights, taken two at a time ---- */

typedef struct q8_0_tile {
    __m512i levels[16]; /* weights 4s .. 4s + 3 of each row, plus 128: unsigned for vpdpbusd */
    __m512 d[2];
} q8_0_tile;

static void q8_0_pack(void *tile, const uint8_t *const rows[ROWS], const uint8_t *const next[ROWS]) {
    q8_0_tile *t = tile;
    __m512i v[16];
    for (int r = 0; r < ROWS; r++)
        v[r] = load_2x256(rows[r] + offsetof(q3_block_q8_0, qs), next[r] + offsetof(q3_block_q8_0, qs));
    transpose_rows(v);
    const __m512i bias = _mm512_set1_epi8((char)0x80);
#pragma GCC unroll 16
    for (int s = 0; s < 16; s++) t->levels[s] = _mm512_xor_si512(v[s], bias);
    t->d[0] = load_halves(rows, offsetof(q3_block_q8_0, d));
    t->d[1] = load_halves(next, offsetof(q3_block_q8_0, d));
}

/* -128 * sum(y) over a block: what the +128 on the weights adds, taken off up front. */
static inline __m512i q8_0_bias_correction(const int8_t *y) {
    __m256i u = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)y), _mm256_set1_epi8((char)0x80));
    __m256i s = _mm256_sad_epu8(u, _mm256_setzero_si256()); /* four sums of y + 128 */
    __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi64(t, _mm_unpackhi_epi64(t, t));
    int32_t sum = _mm_cvtsi128_si32(t) - 32 * 128;
    return _mm512_set1_epi32(-128 * sum);
}

/* Block b of the tile for nc tokens: acc[b] + (float)sum(w * y) * (d_w * d_y) in every lane;
 * acc[0] sums the even blocks and acc[1] the odd ones, as q3_q8_0_vec_dot_avx512 does. */
static inline __attribute__((always_inline)) void q8_0_dot_cols(const q8_0_tile *t, int b,
                                                                const q3_block_q8_0 *const *xb, __m512 *acc,
                                                                const int nc) {
    __m512i s[TILE_COLS];
#pragma GCC unroll 8
    for (int c = 0; c < nc; c++) s[c] = q8_0_bias_correction(xb[c]->qs);
#pragma GCC unroll 8
    for (int u = 0; u < 8; u++) {
        __m512i levels = t->levels[8 * b + u];
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) s[c] = _mm512_dpbusd_epi32(s[c], levels, vi_bcast32(xb[c]->qs + 4 * u));
    }
#pragma GCC unroll 8
    for (int c = 0; c < nc; c++) {
        __m512 scale = _mm512_mul_ps(t->d[b], _mm512_set1_ps(_cvtsh_ss(xb[c]->d)));
        acc[c] = _mm512_add_ps(acc[c], _mm512_mul_ps(_mm512_cvtepi32_ps(s[c]), scale));
    }
}

static void q8_0_dot(const q8_0_tile *t, int b, const void *const *x, int64_t i, int nc, __m512 *acc) {
    const q3_block_q8_0 *xb[TILE_COLS];
    for (int c = 0; c < nc; c++) xb[c] = (const q3_block_q8_0 *)x[c] + i;
    FOR_EACH_WIDTH(nc, q8_0_dot_cols, t, b, xb, acc);
}

/* ---- IQ4_XS (against Q8_K) and IQ4_NL (against Q8_0): biased levels ---- */

/* sum_j scale_j * sum((level + 128) * y) over sub-block j, less 128 * sum_j scale_j * (its
 * activations' sum, the bsums pairs against the scale pairs): vec_dot's exact integer per (row,
 * token); then its float tail, acc + (dx * d) * sum. */
static inline __attribute__((always_inline)) void iq4_xs_dot_cols(const kq32_tile *t,
                                                                  const q3_block_q8_k *const *xb, __m512 *acc,
                                                                  const int nc) {
    __m512i qy[TILE_COLS], by[TILE_COLS];
    kq32_sums(t, xb, qy, by, nc);
#pragma GCC unroll 8
    for (int c = 0; c < nc; c++) {
        __m512i sum = _mm512_sub_epi32(qy[c], _mm512_slli_epi32(by[c], 7));
        acc[c] = _mm512_add_ps(acc[c], _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(xb[c]->d), t->d),
                                                     _mm512_cvtepi32_ps(sum)));
    }
}

static void iq4_xs_dot(const void *tile, const void *const *x, int64_t i, int nc, __m512 *acc) {
    const q3_block_q8_k *xb[TILE_COLS];
    for (int c = 0; c < nc; c++) xb[c] = (const q3_block_q8_k *)x[c] + i;
    FOR_EACH_WIDTH(nc, iq4_xs_dot_cols, tile, xb, acc);
}

/* One block of 32: sum((level + 128) * y) - 128 * sum(y), then acc + (dx * d) * sum. */
static inline __attribute__((always_inline)) void iq4_nl_dot_cols(const iq4_nl_tile *t,
                                                                  const q3_block_q8_0 *const *xb, __m512 *acc,
                                                                  const int nc) {
    __m512i s[TILE_COLS];
#pragma GCC unroll 8
    for (int c = 0; c < nc; c++) s[c] = q8_0_bias_correction(xb[c]->qs);
#pragma GCC unroll 8
    for (int u = 0; u < 8; u++) {
        __m512i levels = t->levels[u];
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) s[c] = _mm512_dpbusd_epi32(s[c], levels, vi_bcast32(xb[c]->qs + 4 * u));
    }
#pragma GCC unroll 8
    for (int c = 0; c < nc; c++) {
        __m512 dx = _mm512_set1_ps(_cvtsh_ss(xb[c]->d));
        acc[c] = _mm512_add_ps(acc[c], _mm512_mul_ps(_mm512_mul_ps(dx, t->d), _mm512_cvtepi32_ps(s[c])));
    }
}

static void iq4_nl_dot(const void *tile, const void *const *x, int64_t i, int nc, __m512 *acc) {
    const q3_block_q8_0 *xb[TILE_COLS];
    for (int c = 0; c < nc; c++) xb[c] = (const q3_block_q8_0 *)x[c] + i;
    FOR_EACH_WIDTH(nc, iq4_nl_dot_cols, tile, xb, acc);
}

static const tile_ops IQ4_XS_OPS = {Q3_QK_K, sizeof(q3_block_iq4_xs), iq4_xs_pack, iq4_xs_dot,
                                    q3_iq4_xs_vec_dot_avx512, 1.0f};
static const tile_ops IQ4_NL_OPS = {Q3_QK, sizeof(q3_block_iq4_nl), iq4_nl_pack, iq4_nl_dot,
                                    q3_iq4_nl_vec_dot_avx512, 1.0f};

Q3_X86_GEMM_KERNEL(avx512, iq4_xs, IQ4_XS_OPS)
Q3_X86_GEMM_KERNEL(avx512, iq4_nl, IQ4_NL_OPS)

LATTICE_PACKS(avx512)
Q3_X86_LATTICE_GEMM_KERNELS(avx512, lattice_dot)

/* ---- float weights (F32, F16, BF16) against f32 activations ---- */

/* vec_dot's order per (row, token): four 16-lane accumulators over 64-element steps, then
 * 16-element steps into the first, a masked tail into the second, and one fixed reduction.
 * The tile keeps those four accumulators for 2 rows x 2 tokens (16 registers) and loads each
 * weight and activation vector once for two products instead of once for each: vec_dot is
 * bound by its two loads per FMA, the tile by the FMAs. */

enum float_kind { KIND_F32, KIND_F16, KIND_BF16 };

/* 16 weights from element i (those of mask m) as f32, as vec_dot's loaders widen them. */
static inline __m512 widen16(const void *w, int64_t i, __mmask16 m, const enum float_kind kind) {
    if (kind == KIND_F32) return _mm512_maskz_loadu_ps(m, (const float *)w + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i);
    if (kind == KIND_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* acc[r][c] = fma(w, x, acc) for every pair of the tile (unrolled: the accumulators must stay
 * in registers). */
#define EACH_PAIR(body)                             \
    _Pragma("GCC unroll 2") for (int r = 0; r < nr; r++) \
        _Pragma("GCC unroll 2") for (int c = 0; c < nc; c++) body

/* nr x nc (each 1 or 2, constants once inlined) dot products of length n. */
static inline __attribute__((always_inline)) void float_tile(int64_t n, const void *const *w, const float *const *x,
                                                             float *out, size_t out_stride, const int nr, const int nc,
                                                             const enum float_kind kind) {
    const __mmask16 all = 0xFFFF;
    __m512 acc[2][2][4];
    EACH_PAIR(acc[r][c][0] = acc[r][c][1] = acc[r][c][2] = acc[r][c][3] = _mm512_setzero_ps();)
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            __m512 wv[2], xv[2];
#pragma GCC unroll 2
            for (int r = 0; r < nr; r++) wv[r] = widen16(w[r], i + 16 * q, all, kind);
#pragma GCC unroll 2
            for (int c = 0; c < nc; c++) xv[c] = _mm512_loadu_ps(x[c] + i + 16 * q);
            EACH_PAIR(acc[r][c][q] = _mm512_fmadd_ps(wv[r], xv[c], acc[r][c][q]);)
        }
    }
    for (; i + 16 <= n; i += 16)
        EACH_PAIR(acc[r][c][0] = _mm512_fmadd_ps(widen16(w[r], i, all, kind), _mm512_loadu_ps(x[c] + i), acc[r][c][0]);)
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        EACH_PAIR(acc[r][c][1] =
                      _mm512_fmadd_ps(widen16(w[r], i, m, kind), _mm512_maskz_loadu_ps(m, x[c] + i), acc[r][c][1]);)
    }
    EACH_PAIR({
        __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[r][c][0], acc[r][c][1]),
                                   _mm512_add_ps(acc[r][c][2], acc[r][c][3]));
        out[c * out_stride + r] = _mm512_reduce_add_ps(sum);
    })
}

static inline __attribute__((always_inline)) void float_gemm(const enum float_kind kind, int64_t n, const void *w,
                                                             size_t w_stride, int nr, const void *const *x, int nc,
                                                             float *out, size_t out_stride) {
    for (int r = 0; r < nr; r += 2) {
        const void *rows[2] = {(const char *)w + r * w_stride, (const char *)w + (r + 1 < nr ? r + 1 : r) * w_stride};
        for (int c = 0; c < nc; c += 2) {
            const float *xs[2] = {x[c], x[c + 1 < nc ? c + 1 : c]};
            float *o = out + c * out_stride + r;
            if (r + 1 < nr && c + 1 < nc) float_tile(n, rows, xs, o, out_stride, 2, 2, kind);
            else if (r + 1 < nr) float_tile(n, rows, xs, o, out_stride, 2, 1, kind);
            else if (c + 1 < nc) float_tile(n, rows, xs, o, out_stride, 1, 2, kind);
            else float_tile(n, rows, xs, o, out_stride, 1, 1, kind);
        }
    }
}

void q3_f32_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc, float *out,
                        size_t out_stride) {
    float_gemm(KIND_F32, n, w, w_stride, nr, x, nc, out, out_stride);
}

void q3_f16_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc, float *out,
                        size_t out_stride) {
    float_gemm(KIND_F16, n, w, w_stride, nr, x, nc, out, out_stride);
}

void q3_bf16_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc, float *out,
                         size_t out_stride) {
    float_gemm(KIND_BF16, n, w, w_stride, nr, x, nc, out, out_stride);
}

/* Q8_0 blocks go two to a tile (32 weights fill only 8 steps), the even block and the odd one,
 * each with its own float sums; an odd last block is packed twice and used once. */
void q3_q8_0_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                         float *out, size_t out_stride) {
    if (nc < MIN_COLS) {
        gemm_by_vec_dot(q3_q8_0_vec_dot_avx512, n, w, w_stride, nr, x, nc, out, out_stride);
        return;
    }
    __m512 acc[2][Q3_GEMM_COLS];
    q8_0_tile tile;
    const uint8_t *rows[ROWS], *next[ROWS];
    for (int c = 0; c < nc; c++) acc[0][c] = acc[1][c] = _mm512_setzero_ps();
    int64_t nb = n / Q3_QK;
    for (int64_t i = 0; i < nb; i += 2) {
        int blocks = i + 1 < nb ? 2 : 1;
        tile_rows(w, w_stride, nr, (size_t)i * sizeof(q3_block_q8_0), rows);
        tile_rows(w, w_stride, nr, (size_t)(i + blocks - 1) * sizeof(q3_block_q8_0), next);
        if (i + 2 < nb) prefetch_blocks(rows, 2 * sizeof(q3_block_q8_0), 2 * sizeof(q3_block_q8_0));
        else prefetch_blocks(rows, ROWS * w_stride - i * sizeof(q3_block_q8_0), 2 * sizeof(q3_block_q8_0));
        q8_0_pack(&tile, rows, next);
        for (int b = 0; b < blocks; b++)
            for (int c = 0, w = 0; c < nc; c += w) {
                w = tile_width(c, nc);
                q8_0_dot(&tile, b, x + c, i + b, w, acc[b] + c);
            }
    }
    for (int c = 0; c < nc; c++) acc[0][c] = _mm512_add_ps(acc[0][c], acc[1][c]);
    store_tile(acc[0], nr, nc, out, out_stride);
}

#else
typedef int q3_gemm_avx512_unused; /* ISO C wants a declaration in every translation unit */
#endif
