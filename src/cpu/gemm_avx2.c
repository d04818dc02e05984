/* AVX2 tile kernels (q3_gemm_fn) for Q4_K, Q5_K and Q6_K: the matrix products of prefill on
 * CPUs without AVX-512. Built with -mavx2 -mfma -mf16c (the _avx2.c suffix) and only called
 * when the CPU has them.
 *
 * The layout of gemm_avx512.c at half the width: one weight row per 32-bit lane, eight rows
 * per register. A block's levels are unpacked and transposed once per eight rows (tile.levels[s],
 * lane r = the levels of row r's weights 4s .. 4s + 3), and every token multiplies them by its
 * four activations at 4s, broadcast to all lanes. Without VNNI the products go through maddubs
 * (u8 x s8 pairs summed into int16), two steps are added in int16, and madd applies the
 * sub-block scale, held in both halves of each lane, and widens to int32.
 *
 * Exactness: as in gemm_avx512.c, the integer sums are the ones vec_dot computes and each lane
 * runs vec_dot's float tail in block order, so every output is bit-identical to
 * q3_*_vec_dot_avx2 for its (row, token); tests/test_gemm.c checks it. */
#include "cpu/gemm.h"

#ifdef __AVX2__

#include <stddef.h>
#include "cpu/dot.h"
#include "cpu/dot_x86.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* the float tails must stay the separate roundings vec_dot does */
#endif

#define LANES 8     /* rows per register and per packed tile */
#define TILE_COLS 4 /* tokens whose accumulators a micro-tile keeps in registers (16 ymm) */
/* Below this many tokens the unpacking costs more than it saves: vec_dot per pair instead. */
#define MIN_COLS 2

/* Calls fn(args..., w) with w = nc as a constant: each width gets its own unrolled copy. */
#define FOR_EACH_WIDTH(nc, fn, ...)     \
    switch (nc) {                       \
    case 4: fn(__VA_ARGS__, 4); break;  \
    case 3: fn(__VA_ARGS__, 3); break;  \
    case 2: fn(__VA_ARGS__, 2); break;  \
    default: fn(__VA_ARGS__, 1); break; \
    }
_Static_assert(TILE_COLS == 4, "FOR_EACH_WIDTH lists the widths 1 .. TILE_COLS");

/* ---- helpers ---- */

static inline __m256i bcast32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

static inline __m256i loadu(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* v[r] holds 8 dwords of row r; afterwards v[t] holds dword t of every row (lane r). */
static inline void transpose_8x8(__m256i v[8]) {
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

/* out[k] lane r = dword k of the 16 bytes at rows[r] + off. */
static inline void load_8x4(const uint8_t *const rows[LANES], size_t off, __m256i out[4]) {
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

static inline __m256 load_halves(const uint8_t *const rows[LANES], size_t off) {
    uint16_t h[LANES];
    for (int r = 0; r < LANES; r++) memcpy(&h[r], rows[r] + off, 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}

/* The K-quant block tail of every lane: acc + ((dx * d) * qy - (dx * dmin) * my). */
static inline __m256 kdot_tail(__m256 acc, float dx, __m256 d, __m256 dmin, __m256i qy, __m256i my) {
    __m256 vdx = _mm256_set1_ps(dx);
    __m256 scaled = _mm256_mul_ps(_mm256_mul_ps(vdx, d), _mm256_cvtepi32_ps(qy));
    __m256 offset = _mm256_mul_ps(_mm256_mul_ps(vdx, dmin), _mm256_cvtepi32_ps(my));
    return _mm256_add_ps(acc, _mm256_sub_ps(scaled, offset));
}

/* A value in both int16 halves of each lane: madd against it scales a pair sum. */
static inline __m256i both_halves(__m256i v) { return _mm256_or_si256(v, _mm256_slli_epi32(v, 16)); }

/* ---- Q4_K and Q5_K ---- */

typedef struct kq32_tile {
    __m256i levels[64];   /* weights 4s .. 4s + 3 of each row */
    __m256i scales[8];    /* sub-block j's scale in both int16 halves */
    __m256i min_pairs[4]; /* mins 2i and 2i + 1 as int16 */
    __m256 d, dmin;
} kq32_tile;

static inline void kq32_pack_scales(kq32_tile *t, const uint8_t *const rows[LANES]) {
    __m256i v[4], mins[8]; /* v: d | dmin << 16, then scale bytes 0-3, 4-7, 8-11 */
    load_8x4(rows, 0, v);
    const __m256i six = _mm256_set1_epi32(63), four = _mm256_set1_epi32(15), two = _mm256_set1_epi32(3);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m256i a = _mm256_srli_epi32(v[1], 8 * j), b = _mm256_srli_epi32(v[2], 8 * j);
        __m256i c = _mm256_srli_epi32(v[3], 8 * j);
        __m256i sc_high = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(a, 6), two), 4);
        __m256i m_high = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(b, 6), two), 4);
        t->scales[j] = both_halves(_mm256_and_si256(a, six));
        t->scales[j + 4] = both_halves(_mm256_or_si256(_mm256_and_si256(c, four), sc_high));
        mins[j] = _mm256_and_si256(b, six);
        mins[j + 4] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(c, 4), four), m_high);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) t->min_pairs[i] = _mm256_or_si256(mins[2 * i], _mm256_slli_epi32(mins[2 * i + 1], 16));
    __m256i lo16 = _mm256_set1_epi32(0xFFFF);
    t->d = _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(
        _mm256_packus_epi32(_mm256_and_si256(v[0], lo16), _mm256_setzero_si256()), 0x08)));
    t->dmin = _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(
        _mm256_packus_epi32(_mm256_srli_epi32(v[0], 16), _mm256_setzero_si256()), 0x08)));
}

/* qs[32c + l] holds weight 64c + l (low nibble) and 64c + 32 + l (high): transposed dword
 * p = 8c + g gives steps 16c + g and 16c + 8 + g. */
static inline void kq32_pack_nibbles(kq32_tile *t, const uint8_t *const rows[LANES], size_t off) {
    const __m256i nibble = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 1
    for (int c = 0; c < 4; c++) {
        __m256i v[8];
        for (int r = 0; r < LANES; r++) v[r] = loadu(rows[r] + off + 32 * c);
        transpose_8x8(v);
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            t->levels[16 * c + g] = _mm256_and_si256(v[g], nibble);
            t->levels[16 * c + 8 + g] = _mm256_and_si256(_mm256_srli_epi32(v[g], 4), nibble);
        }
    }
}

static void q4_k_pack(void *tile, const uint8_t *const rows[LANES]) {
    kq32_pack_scales(tile, rows);
    kq32_pack_nibbles(tile, rows, offsetof(q3_block_q4_k, qs));
}

/* Bit 4 of Q5_K weight e is bit e / 32 of qh[e % 32]: transposed qh dword g serves steps 8b + g. */
static void q5_k_pack(void *tile, const uint8_t *const rows[LANES]) {
    kq32_tile *t = tile;
    kq32_pack_scales(t, rows);
    kq32_pack_nibbles(t, rows, offsetof(q3_block_q5_k, qs));
    __m256i h[8];
    for (int r = 0; r < LANES; r++) h[r] = loadu(rows[r] + offsetof(q3_block_q5_k, qh));
    transpose_8x8(h);
    const __m256i bit4 = _mm256_set1_epi8(0x10);
#pragma GCC unroll 8
    for (int b = 0; b < 8; b++) {
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            __m256i moved = b <= 4 ? _mm256_slli_epi32(h[g], 4 - b) : _mm256_srli_epi32(h[g], b - 4);
            t->levels[8 * b + g] = _mm256_or_si256(t->levels[8 * b + g], _mm256_and_si256(moved, bit4));
        }
    }
}

/* Sums of y over each sub-block of 32, as int16: bsums added in pairs. */
static inline void kq32_sub_block_sums(const q3_block_q8_k *x, int16_t sums[8]) {
    __m128i a = _mm_loadu_si128((const __m128i *)x->bsums), b = _mm_loadu_si128((const __m128i *)(x->bsums + 8));
    _mm_storeu_si128((__m128i *)sums, _mm_hadd_epi16(a, b));
}

/* Two steps of one token: the maddubs pair sums of levels l0 and l1 against the activations
 * at y, added in int16 (at most 2 * 2 * 63 * 128, which fits), then scaled and widened by madd. */
static inline __m256i two_steps(__m256i l0, __m256i l1, const int8_t *y, __m256i scale) {
    __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(l0, bcast32(y)), _mm256_maddubs_epi16(l1, bcast32(y + 4)));
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
            my = _mm256_add_epi32(my, _mm256_madd_epi16(t->min_pairs[i], bcast32(y_sums + 2 * i)));
        acc[c] = kdot_tail(acc[c], xb[c]->d, t->d, t->dmin, qy[c], my);
    }
}

static void kq32_dot(const void *tile, const void *const *x, int64_t i, int nc, __m256 *acc) {
    const q3_block_q8_k *xb[TILE_COLS];
    for (int c = 0; c < nc; c++) xb[c] = (const q3_block_q8_k *)x[c] + i;
    FOR_EACH_WIDTH(nc, kq32_dot_cols, tile, xb, acc);
}

/* ---- Q6_K ---- */

typedef struct q6_k_tile {
    __m256i levels[64];     /* weights 4s .. 4s + 3 of each row, 0..63 */
    __m256i scales[16];     /* sub-block j's scale in both int16 halves */
    __m256i scale_pairs[8]; /* scales 2i and 2i + 1 as int16 */
    __m256 d;
} q6_k_tile;

/* Weight 128h + 32q + 4g is step 32h + 8q + g (see gemm_avx512.c for the bit layout). */
static void q6_k_pack(void *tile, const uint8_t *const rows[LANES]) {
    q6_k_tile *t = tile;
    const __m256i nibble = _mm256_set1_epi8(0x0F), top = _mm256_set1_epi8(0x30);
#pragma GCC unroll 1
    for (int h = 0; h < 2; h++) {
        __m256i a[8], b[8], hb[8];
        for (int r = 0; r < LANES; r++) {
            a[r] = loadu(rows[r] + offsetof(q3_block_q6_k, ql) + 64 * h);
            b[r] = loadu(rows[r] + offsetof(q3_block_q6_k, ql) + 64 * h + 32);
            hb[r] = loadu(rows[r] + offsetof(q3_block_q6_k, qh) + 32 * h);
        }
        transpose_8x8(a);
        transpose_8x8(b);
        transpose_8x8(hb);
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            __m256i *out = t->levels + 32 * h + g, high = hb[g];
            out[0] = _mm256_or_si256(_mm256_and_si256(a[g], nibble), _mm256_and_si256(_mm256_slli_epi32(high, 4), top));
            out[8] = _mm256_or_si256(_mm256_and_si256(b[g], nibble), _mm256_and_si256(_mm256_slli_epi32(high, 2), top));
            out[16] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(a[g], 4), nibble),
                                      _mm256_and_si256(high, top));
            out[24] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(b[g], 4), nibble),
                                      _mm256_and_si256(_mm256_srli_epi32(high, 2), top));
        }
    }
    __m256i v[4]; /* scale bytes 4k .. 4k + 3 of each row */
    load_8x4(rows, offsetof(q3_block_q6_k, scales), v);
    const __m256i low16 = _mm256_set1_epi32(0xFFFF);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m256i s[4];
#pragma GCC unroll 4
        for (int b = 0; b < 4; b++) {
            s[b] = _mm256_srai_epi32(_mm256_slli_epi32(v[k], 24 - 8 * b), 24);
            t->scales[4 * k + b] = both_halves(_mm256_and_si256(s[b], low16));
        }
        t->scale_pairs[2 * k] = _mm256_or_si256(_mm256_and_si256(s[0], low16), _mm256_slli_epi32(s[1], 16));
        t->scale_pairs[2 * k + 1] = _mm256_or_si256(_mm256_and_si256(s[2], low16), _mm256_slli_epi32(s[3], 16));
    }
    t->d = load_halves(rows, offsetof(q3_block_q6_k, d));
}

/* Sub-block j is steps 4j .. 4j + 3; the offset term is 32 * sum_j sc_j * bsums[j], as in
 * vec_dot. */
static inline __attribute__((always_inline)) void q6_k_dot_cols(const q6_k_tile *t, const q3_block_q8_k *const *xb,
                                                                __m256 *acc, const int nc) {
    __m256i qy[TILE_COLS];
#pragma GCC unroll 4
    for (int c = 0; c < nc; c++) qy[c] = _mm256_setzero_si256();
#pragma GCC unroll 1
    for (int j = 0; j < 16; j++) {
        __m256i scale = t->scales[j];
#pragma GCC unroll 2
        for (int u = 0; u < 4; u += 2) {
            __m256i l0 = t->levels[4 * j + u], l1 = t->levels[4 * j + u + 1];
#pragma GCC unroll 4
            for (int c = 0; c < nc; c++)
                qy[c] = _mm256_add_epi32(qy[c], two_steps(l0, l1, xb[c]->qs + 16 * j + 4 * u, scale));
        }
    }
    const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int c = 0; c < nc; c++) {
        __m256i off = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
            off = _mm256_add_epi32(off, _mm256_madd_epi16(t->scale_pairs[i], bcast32(xb[c]->bsums + 2 * i)));
        __m256i sum_qy = _mm256_sub_epi32(qy[c], _mm256_slli_epi32(off, 5));
        acc[c] = kdot_tail(acc[c], xb[c]->d, t->d, zero, sum_qy, _mm256_setzero_si256());
    }
}

static void q6_k_dot(const void *tile, const void *const *x, int64_t i, int nc, __m256 *acc) {
    const q3_block_q8_k *xb[TILE_COLS];
    for (int c = 0; c < nc; c++) xb[c] = (const q3_block_q8_k *)x[c] + i;
    FOR_EACH_WIDTH(nc, q6_k_dot_cols, tile, xb, acc);
}

/* ---- the tile loop ---- */

typedef union any_tile {
    kq32_tile kq32;
    q6_k_tile q6_k;
} any_tile;

typedef struct tile_ops {
    size_t block_bytes;
    void (*pack)(void *tile, const uint8_t *const rows[LANES]);
    void (*dot)(const void *tile, const void *const *x, int64_t block, int nc, __m256 *acc);
    q3_vec_dot_fn vec_dot;
} tile_ops;

/* Row r0 + r of the tile, or for rows past nr a repeat of the last: computed, never stored. */
static void tile_rows(const void *w, size_t w_stride, int nr, size_t offset, const uint8_t *rows[LANES]) {
    for (int r = 0; r < LANES; r++) rows[r] = (const uint8_t *)w + (size_t)(r < nr ? r : nr - 1) * w_stride + offset;
}

/* The next block of the eight rows, or the first of the next eight (see gemm_avx512.c). */
static inline void prefetch_blocks(const uint8_t *const rows[LANES], size_t offset, size_t bytes) {
    for (int r = 0; r < LANES; r++)
        for (size_t b = 0; b < bytes + 64; b += 64) _mm_prefetch((const char *)rows[r] + offset + b, _MM_HINT_T0);
}

static void store_tile(const __m256 *acc, int nr, int nc, float *out, size_t out_stride) {
    for (int c = 0; c < nc; c++) {
        if (nr == LANES) {
            _mm256_storeu_ps(out + c * out_stride, acc[c]);
            continue;
        }
        float lanes[LANES];
        _mm256_storeu_ps(lanes, acc[c]);
        memcpy(out + c * out_stride, lanes, (size_t)nr * sizeof *lanes);
    }
}

/* The width of the micro-tile at token c: near-equal widths, as in gemm_avx512.c. */
static inline int tile_width(int c, int nc) {
    int tiles_left = (nc - c + TILE_COLS - 1) / TILE_COLS;
    return (nc - c + tiles_left - 1) / tiles_left;
}

/* Eight rows: block by block, unpack once, then every token TILE_COLS at a time. */
static void gemm_rows8(const tile_ops *ops, int64_t n_blocks, const void *w, size_t w_stride, int nr,
                       const void *const *x, int nc, float *out, size_t out_stride) {
    __m256 acc[Q3_GEMM_COLS];
    any_tile tile;
    const uint8_t *rows[LANES];
    for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n_blocks; i++) {
        tile_rows(w, w_stride, nr, (size_t)i * ops->block_bytes, rows);
        if (i + 1 < n_blocks) prefetch_blocks(rows, ops->block_bytes, ops->block_bytes);
        else prefetch_blocks(rows, LANES * w_stride - i * ops->block_bytes, ops->block_bytes); /* the next tile */
        ops->pack(&tile, rows);
        for (int c = 0, w = 0; c < nc; c += w) {
            w = tile_width(c, nc);
            ops->dot(&tile, x + c, i, w, acc + c);
        }
    }
    store_tile(acc, nr, nc, out, out_stride);
}

static void gemm_k(const tile_ops *ops, int64_t n, const void *w, size_t w_stride, int nr, const void *const *x,
                   int nc, float *out, size_t out_stride) {
    if (nc < MIN_COLS) {
        for (int c = 0; c < nc; c++)
            for (int r = 0; r < nr; r++)
                out[c * out_stride + r] = ops->vec_dot(n, (const char *)w + r * w_stride, x[c]);
        return;
    }
    for (int r = 0; r < nr; r += LANES)
        gemm_rows8(ops, n / Q3_QK_K, (const char *)w + r * w_stride, w_stride, nr - r < LANES ? nr - r : LANES, x, nc,
                   out + r, out_stride);
}

static const tile_ops Q4_K_OPS = {sizeof(q3_block_q4_k), q4_k_pack, kq32_dot, q3_q4_k_vec_dot_avx2};
static const tile_ops Q5_K_OPS = {sizeof(q3_block_q5_k), q5_k_pack, kq32_dot, q3_q5_k_vec_dot_avx2};
static const tile_ops Q6_K_OPS = {sizeof(q3_block_q6_k), q6_k_pack, q6_k_dot, q3_q6_k_vec_dot_avx2};

void q3_q4_k_gemm_avx2(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                       float *out, size_t out_stride) {
    gemm_k(&Q4_K_OPS, n, w, w_stride, nr, x, nc, out, out_stride);
}

void q3_q5_k_gemm_avx2(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                       float *out, size_t out_stride) {
    gemm_k(&Q5_K_OPS, n, w, w_stride, nr, x, nc, out, out_stride);
}

void q3_q6_k_gemm_avx2(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                       float *out, size_t out_stride) {
    gemm_k(&Q6_K_OPS, n, w, w_stride, nr, x, nc, out, out_stride);
}

#else
typedef int q3_gemm_avx2_unused; /* ISO C wants a declaration in every translation unit */
#endif
