/* AVX2 tile kernels (q3_gemm_fn) for Q4_K, Q5_K, Q6_K, the i-quants and Q8_0: the matrix products
 * of prefill on CPUs without AVX-512. Built with -mavx2 -mfma -mf16c (the _avx2.c suffix) and only called
 * when the CPU has them.
 *
 * The scaffold of gemm_x86.h at 256 bits: eight rows per tile, one per 32-bit lane. Without VNNI
 * the products go through maddubs (u8 x s8 pairs summed into int16), two steps are added in
 * int16, and madd applies the sub-block scale, held in both halves of each lane, and widens to
 * int32. The IQ4 levels are signed (-127..113): maddubs takes their magnitudes and the
 * activations with their signs, as the i-quant vec_dot does, one step per madd; the lattice
 * i-quants' levels (|level| <= 62) the same way on Q6_K's loop, two steps per madd. Every output
 * is bit-identical to q3_*_vec_dot_avx2 for its (row, token). */
#include "cpu/dot.h"

#ifdef __AVX2__

#define Q3_X86_BITS 256
#define TILE_COLS 4 /* tokens whose accumulators a micro-tile keeps in registers (16 ymm) */
#include "cpu/gemm_x86.h"

/* ---- the primitives of gemm_x86.h ---- */

static inline void transpose_rows(__m256i v[8]) {
    __m256i t[8];
#pragma GCC unroll 4
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);
    }
    /* v[4j + m], half k: rows 4j .. 4j + 3 of column 4k + m. */
#pragma GCC unroll 2
    for (int i = 0; i < 8; i += 4) {
        v[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        v[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        v[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        v[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
#pragma GCC unroll 4
    for (int m = 0; m < 4; m++) {
        t[m] = _mm256_permute2x128_si256(v[m], v[4 + m], 0x20);
        t[4 + m] = _mm256_permute2x128_si256(v[m], v[4 + m], 0x31);
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) v[i] = t[i];
}

static inline void load_rows_x4(const uint8_t *const rows[ROWS], size_t off, __m256i out[4]) {
    __m256i y[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        y[r] = _mm256_loadu2_m128i((const __m128i *)(rows[r + 4] + off), (const __m128i *)(rows[r] + off));
    __m256i t0 = _mm256_unpacklo_epi32(y[0], y[1]), t1 = _mm256_unpackhi_epi32(y[0], y[1]);
    __m256i t2 = _mm256_unpacklo_epi32(y[2], y[3]), t3 = _mm256_unpackhi_epi32(y[2], y[3]);
    out[0] = _mm256_unpacklo_epi64(t0, t2);
    out[1] = _mm256_unpackhi_epi64(t0, t2);
    out[2] = _mm256_unpacklo_epi64(t1, t3);
    out[3] = _mm256_unpackhi_epi64(t1, t3);
}

/* The scale in both int16 halves of each lane: madd against it scales a pair sum. */
static inline __m256i tile_scale(__m256i scale) {
    __m256i low = _mm256_and_si256(scale, _mm256_set1_epi32(0xFFFF));
    return _mm256_or_si256(low, _mm256_slli_epi32(low, 16));
}

/* Signed levels: maddubs' int16 pair sums would saturate on levels biased to 1..241. */
static inline __m256i iq4_tile_table(void) { return vi_bcast128(q3_iq4nl_values); }

/* Signed: the products carry the levels' signs on the activations, as the lattice vec_dot does. */
static inline __m256i lattice_tile_levels(__m256i levels) { return levels; }

static inline void store_first_rows(float *out, __m256 v, int nr) {
    float lanes[ROWS];
    _mm256_storeu_ps(lanes, v);
    memcpy(out, lanes, (size_t)nr * sizeof *lanes);
}

/* ---- Q4_K and Q5_K ---- */

/* Two steps of one token: the maddubs pair sums of levels l0 and l1 against the activations
 * at y, added in int16 (at most 2 * 2 * 63 * 128, which fits), then scaled and widened by madd. */
static inline __m256i two_steps(__m256i l0, __m256i l1, const int8_t *y, __m256i scale) {
    __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(l0, vi_bcast32(y)), _mm256_maddubs_epi16(l1, vi_bcast32(y + 4)));
    return _mm256_madd_epi16(s, scale);
}

/* nc tokens against one packed block: sub-block j is steps 8j .. 8j + 7, activations 32j ..
 * 32j + 31; the min term is sum_j m_j * (bsums[2j] + bsums[2j + 1]), two sub-blocks per madd.
 * (Longer int16 runs before the madd measured slower: more registers live.) */
static inline __attribute__((always_inline)) void kq32_dot_cols(const kq32_tile *t, const q3_block_q8_k *const *xb,
                                                                __m256 *acc, const int nc) {
    __m256i qy[TILE_COLS];
#pragma GCC unroll 4
    for (int c = 0; c < nc; c++) qy[c] = _mm256_setzero_si256();
#pragma GCC unroll 1
    for (int j = 0; j < 8; j++) {
        __m256i scale = t->scales[j];
#pragma GCC unroll 4
        for (int u = 0; u < 8; u += 2) {
            __m256i l0 = t->levels[8 * j + u], l1 = t->levels[8 * j + u + 1];
#pragma GCC unroll 4
            for (int c = 0; c < nc; c++)
                qy[c] = _mm256_add_epi32(qy[c], two_steps(l0, l1, xb[c]->qs + 32 * j + 4 * u, scale));
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < nc; c++) {
        int16_t y_sums[8];
        kq32_sub_block_sums(xb[c], y_sums);
        __m256i my = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            my = _mm256_add_epi32(my, _mm256_madd_epi16(t->min_pairs[i], vi_bcast32(y_sums + 2 * i)));
        acc[c] = kdot_tail(acc[c], xb[c]->d, t->d, t->dmin, qy[c], my);
    }
}

static void kq32_dot(const void *tile, const void *const *x, int64_t i, int nc, __m256 *acc) {
    const q3_block_q8_k *xb[TILE_COLS];
    for (int c = 0; c < nc; c++) xb[c] = (const q3_block_q8_k *)x[c] + i;
    FOR_EACH_WIDTH(nc, kq32_dot_cols, tile, xb, acc);
}

/* ---- Q6_K (unsigned levels) and the lattice i-quants (signed levels): 16 sub-blocks of 16 ---- */

/* Two steps of one token with signed levels (|level| <= 62): maddubs of their magnitudes and the
 * activations with the levels' signs (as the lattice vec_dot puts them), added in int16 (at
 * most 2 * 2 * 62 * 128, which fits), then scaled and widened by madd. */
static inline __m256i two_signed_steps(__m256i l0, __m256i m0, __m256i l1, __m256i m1, const int8_t *y,
                                       __m256i scale) {
    __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(m0, _mm256_sign_epi8(vi_bcast32(y), l0)),
                                 _mm256_maddubs_epi16(m1, _mm256_sign_epi8(vi_bcast32(y + 4), l1)));
    return _mm256_madd_epi16(s, scale);
}

/* Sub-block j is steps 4j .. 4j + 3. Q6_K: the offset term is 32 * sum_j sc_j * bsums[j], as in
 * its vec_dot. Lattice types (is_signed): no offset, and kdot_tail with dmin = 0 is their
 * vec_dot's acc + (dx * d) * sum to the bit (less a zero's sign that an accumulator starting at
 * +0 loses). */
static inline __attribute__((always_inline)) void q6_k_dot_cols(const q6_k_tile *t, const bool is_signed,
                                                                const q3_block_q8_k *const *xb, __m256 *acc,
                                                                const int nc) {
    __m256i qy[TILE_COLS];
#pragma GCC unroll 4
    for (int c = 0; c < nc; c++) qy[c] = _mm256_setzero_si256();
#pragma GCC unroll 1
    for (int j = 0; j < 16; j++) {
        __m256i scale = t->scales[j];
#pragma GCC unroll 2
        for (int u = 0; u < 4; u += 2) {
            __m256i l0 = t->levels[4 * j + u], l1 = t->levels[4 * j + u + 1];
            __m256i m0 = _mm256_sign_epi8(l0, l0), m1 = _mm256_sign_epi8(l1, l1);
#pragma GCC unroll 4
            for (int c = 0; c < nc; c++) {
                const int8_t *y = xb[c]->qs + 16 * j + 4 * u;
                qy[c] = _mm256_add_epi32(qy[c], is_signed ? two_signed_steps(l0, m0, l1, m1, y, scale)
                                                          : two_steps(l0, l1, y, scale));
            }
        }
    }
    const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int c = 0; c < nc; c++) {
        __m256i off = _mm256_setzero_si256();
        if (!is_signed) {
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++)
                off = _mm256_add_epi32(off, _mm256_madd_epi16(t->scale_pairs[i], vi_bcast32(xb[c]->bsums + 2 * i)));
        }
        __m256i sum_qy = _mm256_sub_epi32(qy[c], _mm256_slli_epi32(off, 5));
        acc[c] = kdot_tail(acc[c], xb[c]->d, t->d, zero, sum_qy, _mm256_setzero_si256());
    }
}

static void q6_k_dot(const void *tile, const void *const *x, int64_t i, int nc, __m256 *acc) {
    const q3_block_q8_k *xb[TILE_COLS];
    for (int c = 0; c < nc; c++) xb[c] = (const q3_block_q8_k *)x[c] + i;
    FOR_EACH_WIDTH(nc, q6_k_dot_cols, tile, false, xb, acc);
}

static void lattice_dot(const void *tile, const void *const *x, int64_t i, int nc, __m256 *acc) {
    const q3_block_q8_k *xb[TILE_COLS];
    for (int c = 0; c < nc; c++) xb[c] = (const q3_block_q8_k *)x[c] + i;
    FOR_EACH_WIDTH(nc, q6_k_dot_cols, tile, true, xb, acc);
}

/* ---- IQ4_XS (against Q8_K) and IQ4_NL (against Q8_0): signed levels ---- */

/* One step of one token, level * y as the i-quant vec_dot computes it (|level| <= 127 times y
 * with the level's sign, in int16 pairs), times the int16 multipliers, in int32 lanes. Pairs
 * cannot be added in int16 first: two of them reach 2 * 2 * 127 * 128. */
static inline __m256i iq4_step(__m256i levels, __m256i magnitudes, const int8_t *y, __m256i scale) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(magnitudes, _mm256_sign_epi8(vi_bcast32(y), levels)), scale);
}

/* sum_j scale_j * sum(level * y) over sub-block j (steps 8j .. 8j + 7), then vec_dot's float
 * tail, acc + (dx * d) * sum. */
static inline __attribute__((always_inline)) void iq4_xs_dot_cols(const kq32_tile *t,
                                                                  const q3_block_q8_k *const *xb, __m256 *acc,
                                                                  const int nc) {
    __m256i qy[TILE_COLS];
#pragma GCC unroll 4
    for (int c = 0; c < nc; c++) qy[c] = _mm256_setzero_si256();
#pragma GCC unroll 1
    for (int j = 0; j < 8; j++) {
        __m256i scale = t->scales[j];
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) {
            __m256i levels = t->levels[8 * j + u], magnitudes = _mm256_sign_epi8(levels, levels);
#pragma GCC unroll 4
            for (int c = 0; c < nc; c++)
                qy[c] = _mm256_add_epi32(qy[c], iq4_step(levels, magnitudes, xb[c]->qs + 32 * j + 4 * u, scale));
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < nc; c++)
        acc[c] = _mm256_add_ps(acc[c], _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(xb[c]->d), t->d),
                                                     _mm256_cvtepi32_ps(qy[c])));
}

static void iq4_xs_dot(const void *tile, const void *const *x, int64_t i, int nc, __m256 *acc) {
    const q3_block_q8_k *xb[TILE_COLS];
    for (int c = 0; c < nc; c++) xb[c] = (const q3_block_q8_k *)x[c] + i;
    FOR_EACH_WIDTH(nc, iq4_xs_dot_cols, tile, xb, acc);
}

/* One block of 32: sum(level * y), then acc + (dx * d) * sum. */
static inline __attribute__((always_inline)) void iq4_nl_dot_cols(const iq4_nl_tile *t,
                                                                  const q3_block_q8_0 *const *xb, __m256 *acc,
                                                                  const int nc) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s[TILE_COLS];
#pragma GCC unroll 4
    for (int c = 0; c < nc; c++) s[c] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int u = 0; u < 8; u++) {
        __m256i levels = t->levels[u], magnitudes = _mm256_sign_epi8(levels, levels);
#pragma GCC unroll 4
        for (int c = 0; c < nc; c++) s[c] = _mm256_add_epi32(s[c], iq4_step(levels, magnitudes, xb[c]->qs + 4 * u, ones));
    }
#pragma GCC unroll 4
    for (int c = 0; c < nc; c++) {
        __m256 dx = _mm256_set1_ps(_cvtsh_ss(xb[c]->d));
        acc[c] = _mm256_add_ps(acc[c], _mm256_mul_ps(_mm256_mul_ps(dx, t->d), _mm256_cvtepi32_ps(s[c])));
    }
}

static void iq4_nl_dot(const void *tile, const void *const *x, int64_t i, int nc, __m256 *acc) {
    const q3_block_q8_0 *xb[TILE_COLS];
    for (int c = 0; c < nc; c++) xb[c] = (const q3_block_q8_0 *)x[c] + i;
    FOR_EACH_WIDTH(nc, iq4_nl_dot_cols, tile, xb, acc);
}

static const tile_ops Q4_K_OPS = {Q3_QK_K, sizeof(q3_block_q4_k), q4_k_pack, kq32_dot, q3_q4_k_vec_dot_avx2, 1.0f};
static const tile_ops Q5_K_OPS = {Q3_QK_K, sizeof(q3_block_q5_k), q5_k_pack, kq32_dot, q3_q5_k_vec_dot_avx2, 1.0f};
static const tile_ops Q6_K_OPS = {Q3_QK_K, sizeof(q3_block_q6_k), q6_k_pack, q6_k_dot, q3_q6_k_vec_dot_avx2, 1.0f};

Q3_X86_GEMM_KERNEL(avx2, q4_k, Q4_K_OPS)
Q3_X86_GEMM_KERNEL(avx2, q5_k, Q5_K_OPS)
Q3_X86_GEMM_KERNEL(avx2, q6_k, Q6_K_OPS)

static const tile_ops IQ4_XS_OPS = {Q3_QK_K, sizeof(q3_block_iq4_xs), iq4_xs_pack, iq4_xs_dot, q3_iq4_xs_vec_dot_avx2, 1.0f};
static const tile_ops IQ4_NL_OPS = {Q3_QK, sizeof(q3_block_iq4_nl), iq4_nl_pack, iq4_nl_dot, q3_iq4_nl_vec_dot_avx2, 1.0f};

Q3_X86_GEMM_KERNEL(avx2, iq4_xs, IQ4_XS_OPS)
Q3_X86_GEMM_KERNEL(avx2, iq4_nl, IQ4_NL_OPS)

LATTICE_PACKS(avx2)
Q3_X86_LATTICE_GEMM_KERNELS(avx2, lattice_dot)

/* ---- Q8_0: vec_dot's own lanes, a row against several tokens ----
 *
 * q3_q8_0_vec_dot_avx2 keeps eight float lanes per (row, token), lane l summing dword l of each
 * block's products (even and odd blocks apart), so a tile with one row per lane cannot give its
 * bits; and its blocks need no unpacking for a tile to spread. This kernel runs the same lanes
 * for one row against TILE_COLS tokens at once instead: each weight block is loaded and its
 * magnitudes taken once for all of them, the accumulators stay in registers, and each score ends
 * with vec_dot's reduction. A Q8_0 KV cache's scores (attention, one key row against the 8 query
 * heads of its group) ran vec_dot once per score before. */

static inline float q8_0_hsum(__m256 v) { /* hsum_ps of dot_avx2.c, the same additions */
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* acc + sum(w * x) over block bw against block bx as vec_dot adds it: maddubs of |w| and x with
 * w's sign, pairs of pairs by madd, then one multiply-add by d_w * d_x. */
static inline __m256 q8_0_block_acc(__m256i w, __m256i w_abs, float dw, const q3_block_q8_0 *bx, __m256 acc) {
    __m256i x = _mm256_loadu_si256((const __m256i *)bx->qs);
    __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw * _cvtsh_ss(bx->d)), acc);
}

/* Row bw (nb blocks) against tokens xb[c], c < nc: out[c * os]. */
static inline __attribute__((always_inline)) void q8_0_row_cols(int64_t nb, const q3_block_q8_0 *bw,
                                                                const q3_block_q8_0 *const *xb, float *out,
                                                                size_t os, const int nc) {
    __m256 acc[2][TILE_COLS];
#pragma GCC unroll 4
    for (int c = 0; c < nc; c++) acc[0][c] = acc[1][c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i w = _mm256_loadu_si256((const __m256i *)bw[i].qs), w_abs = _mm256_sign_epi8(w, w);
        float dw = _cvtsh_ss(bw[i].d);
#pragma GCC unroll 4
        for (int c = 0; c < nc; c++) acc[i & 1][c] = q8_0_block_acc(w, w_abs, dw, xb[c] + i, acc[i & 1][c]);
    }
#pragma GCC unroll 4
    for (int c = 0; c < nc; c++) out[c * os] = q8_0_hsum(_mm256_add_ps(acc[0][c], acc[1][c]));
}

void q3_q8_0_gemm_avx2(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc, float *out,
                       size_t out_stride) {
    const q3_block_q8_0 *xb[Q3_GEMM_COLS];
    for (int c = 0; c < nc; c++) xb[c] = x[c];
    for (int r = 0; r < nr; r++) {
        const q3_block_q8_0 *bw = (const q3_block_q8_0 *)((const char *)w + (size_t)r * w_stride);
        for (int c = 0, width = 0; c < nc; c += width) {
            width = tile_width(c, nc);
            FOR_EACH_WIDTH(width, q8_0_row_cols, n / Q3_QK, bw, xb + c, out + (size_t)c * out_stride + r, out_stride);
        }
    }
}

#else
typedef int q3_gemm_avx2_unused; /* ISO C wants a declaration in every translation unit */
#endif
