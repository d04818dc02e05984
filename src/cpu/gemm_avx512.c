/* AVX-512 tile kernels (q3_gemm_fn): 16 weight rows against up to 64 tokens for Q4_K, Q5_K,
 * Q6_K, Q8_0 and the float types, the matrix products of prefill. Built with the AVX-512 flags
 * (the _avx512.c suffix) and only called when the CPU has them.
 *
 * Layout: one weight row per 32-bit lane. For each block, the 16 rows' weight levels are
 * unpacked and transposed once into a tile (tile.levels[s], lane r = the four levels of row r's
 * weights 4s .. 4s + 3, as unsigned bytes); then for every token, vpdpbusd multiplies that
 * register by the token's four activations at 4s, broadcast to all lanes from memory, and adds
 * each lane's four products into its int32. 16 rows x 4 products per instruction, no
 * horizontal sums, and the unpacking is paid once per 16 rows instead of once per (row, token).
 * A micro-tile holds TILE_COLS tokens' accumulators in registers; sub-block scales are applied
 * per 16 rows with vpmulld, mins and offsets against the Q8_K bsums with vpdpwssd.
 *
 * Exactness: every integer sum here is the same integer vec_dot computes (integer addition is
 * exact in any order), and each lane then runs vec_dot's float tail for its (row, token), the
 * same IEEE operations in the same order, block after block. So each output is bit-identical
 * to q3_*_vec_dot_avx512 for that pair, which tests/test_gemm.c checks. (The float types keep
 * vec_dot's own lane layout instead; see their section.) */
#include "cpu/gemm.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__)

#include <stddef.h>
#include "cpu/dot.h"
#include "cpu/dot_x86.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* the float tails must stay the separate roundings vec_dot does */
#endif

#define ROWS Q3_GEMM_ROWS /* one row per int32 / float lane */
/* Tokens whose accumulators a micro-tile keeps in registers: eight independent vpdpbusd chains
 * cover the instruction's latency (4, 6 and 8 measured; 8 was fastest) in 3 x 8 + 2 of the 32
 * registers. */
#define TILE_COLS 8
/* Below this many tokens the unpacking costs more than it saves: vec_dot per pair instead. */
#define MIN_COLS 2

_Static_assert(ROWS == 16, "one row per 32-bit lane of a 512-bit register");

/* ---- helpers ---- */

/* Calls fn(args..., w) with w = nc as a constant, so that each micro-tile width gets its own
 * copy with the token loops unrolled and the accumulators in registers. */
#define FOR_EACH_WIDTH(nc, fn, ...)     \
    switch (nc) {                       \
    case 8: fn(__VA_ARGS__, 8); break;  \
    case 7: fn(__VA_ARGS__, 7); break;  \
    case 6: fn(__VA_ARGS__, 6); break;  \
    case 5: fn(__VA_ARGS__, 5); break;  \
    case 4: fn(__VA_ARGS__, 4); break;  \
    case 3: fn(__VA_ARGS__, 3); break;  \
    case 2: fn(__VA_ARGS__, 2); break;  \
    default: fn(__VA_ARGS__, 1); break; \
    }
_Static_assert(TILE_COLS == 8, "FOR_EACH_WIDTH lists the widths 1 .. TILE_COLS");

static inline __m512i bcast32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

static inline __m512i load_2x256(const void *p, const void *q) {
    __m256i lo = _mm256_loadu_si256((const __m256i *)p), hi = _mm256_loadu_si256((const __m256i *)q);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* [a.lane(i), a.lane(j), b.lane(k), b.lane(l)] of 128-bit lanes. */
#define LANES(a, b, i, j, k, l) _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(l, k, j, i))

/* v[r] holds 16 dwords of row r; afterwards v[t] holds dword t of every row (lane r). Two
 * rounds of in-lane unpacks make 4 x 4 blocks, two rounds of lane shuffles place them. */
static inline void transpose_16x16(__m512i v[16]) {
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
        __m512i p0 = LANES(v[m], v[4 + m], 0, 1, 0, 1), p1 = LANES(v[m], v[4 + m], 2, 3, 2, 3);
        __m512i q0 = LANES(v[8 + m], v[12 + m], 0, 1, 0, 1), q1 = LANES(v[8 + m], v[12 + m], 2, 3, 2, 3);
        t[m] = LANES(p0, q0, 0, 2, 0, 2);
        t[4 + m] = LANES(p0, q0, 1, 3, 1, 3);
        t[8 + m] = LANES(p1, q1, 0, 2, 0, 2);
        t[12 + m] = LANES(p1, q1, 1, 3, 1, 3);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) v[i] = t[i];
}

/* out[k] lane r = dword k of the 16 bytes at rows[r] + off: four rows per register, each
 * register's dwords regrouped by k, then the four registers' lanes interleaved. */
static inline void load_16x4(const uint8_t *const rows[ROWS], size_t off, __m512i out[4]) {
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
    __m512i a = LANES(p[0], p[1], 0, 1, 0, 1), b = LANES(p[0], p[1], 2, 3, 2, 3);
    __m512i c = LANES(p[2], p[3], 0, 1, 0, 1), d = LANES(p[2], p[3], 2, 3, 2, 3);
    out[0] = LANES(a, c, 0, 2, 0, 2);
    out[1] = LANES(a, c, 1, 3, 1, 3);
    out[2] = LANES(b, d, 0, 2, 0, 2);
    out[3] = LANES(b, d, 1, 3, 1, 3);
}

/* The 16 fp16 values at rows[r] + off as floats. */
static inline __m512 load_halves(const uint8_t *const rows[ROWS], size_t off) {
    uint16_t h[ROWS];
    for (int r = 0; r < ROWS; r++) memcpy(&h[r], rows[r] + off, 2);
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h));
}

/* The K-quant block tail of every lane: acc + ((dx * d) * qy - (dx * dmin) * my), the
 * operations of q3_kdot_accumulate (and q3_x86_kdot_tail) in their order. */
static inline __m512 kdot_tail(__m512 acc, float dx, __m512 d, __m512 dmin, __m512i qy, __m512i my) {
    __m512 vdx = _mm512_set1_ps(dx);
    __m512 scaled = _mm512_mul_ps(_mm512_mul_ps(vdx, d), _mm512_cvtepi32_ps(qy));
    __m512 offset = _mm512_mul_ps(_mm512_mul_ps(vdx, dmin), _mm512_cvtepi32_ps(my));
    return _mm512_add_ps(acc, _mm512_sub_ps(scaled, offset));
}

/* ---- Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins ---- */

typedef struct kq32_tile {
    __m512i levels[64]; /* weights 4s .. 4s + 3 of each row, 0..15 (Q4_K) or 0..31 (Q5_K) */
    __m512i scales[8];  /* sub-block j's scale, per row */
    __m512i min_pairs[4]; /* mins 2i and 2i + 1 as int16: one vpdpwssd against two bsums pair sums */
    __m512 d, dmin;
} kq32_tile;

/* Scales, mins, d and dmin of the 16 rows' blocks (at rows[r]): the 16 bytes d, dmin,
 * scales[12] per row, as q3_kscale_get unpacks them, one row per lane. */
static inline void kq32_pack_scales(kq32_tile *t, const uint8_t *const rows[ROWS]) {
    __m512i v[4], mins[8]; /* v: d | dmin << 16, then scale bytes 0-3, 4-7, 8-11 */
    load_16x4(rows, 0, v);
    const __m512i six = _mm512_set1_epi32(63), four = _mm512_set1_epi32(15), two = _mm512_set1_epi32(3);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m512i a = _mm512_srli_epi32(v[1], 8 * j), b = _mm512_srli_epi32(v[2], 8 * j);
        __m512i c = _mm512_srli_epi32(v[3], 8 * j);
        __m512i sc_high = _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(a, 6), two), 4);
        __m512i m_high = _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(b, 6), two), 4);
        __m512i m_low = _mm512_and_si512(b, six);
        __m512i m_up = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(c, 4), four), m_high);
        t->scales[j] = _mm512_and_si512(a, six);
        t->scales[j + 4] = _mm512_or_si512(_mm512_and_si512(c, four), sc_high);
        mins[j] = m_low;
        mins[j + 4] = m_up;
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) t->min_pairs[i] = _mm512_or_si512(mins[2 * i], _mm512_slli_epi32(mins[2 * i + 1], 16));
    t->d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v[0]));
    t->dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v[0], 16)));
}

/* The nibbles of qs (128 bytes at rows[r] + off) as levels: qs[32c + l] holds weight 64c + l
 * in its low nibble and 64c + 32 + l in its high one, so transposed dword p = 8c + g gives
 * steps 16c + g (low) and 16c + 8 + g (high). */
static inline void kq32_pack_nibbles(kq32_tile *t, const uint8_t *const rows[ROWS], size_t off) {
    const __m512i nibble = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 1
    for (int half = 0; half < 2; half++) {
        __m512i v[16];
        for (int r = 0; r < ROWS; r++) v[r] = _mm512_loadu_si512(rows[r] + off + 64 * half);
        transpose_16x16(v);
#pragma GCC unroll 16
        for (int p = 0; p < 16; p++) {
            int c = 2 * half + p / 8, g = p % 8;
            t->levels[16 * c + g] = _mm512_and_si512(v[p], nibble);
            t->levels[16 * c + 8 + g] = _mm512_and_si512(_mm512_srli_epi32(v[p], 4), nibble);
        }
    }
}

static void q4_k_pack(void *tile, const uint8_t *const rows[ROWS]) {
    kq32_tile *t = tile;
    kq32_pack_scales(t, rows);
    kq32_pack_nibbles(t, rows, offsetof(q3_block_q4_k, qs));
}

/* Q5_K: bit 4 of weight e is bit e / 32 of qh[e % 32]; transposed qh dword g serves weights
 * 4g + 32b, that is steps 8b + g. */
static void q5_k_pack(void *tile, const uint8_t *const rows[ROWS]) {
    kq32_tile *t = tile;
    kq32_pack_scales(t, rows);
    kq32_pack_nibbles(t, rows, offsetof(q3_block_q5_k, qs));
    __m512i h[16];
    for (int r = 0; r < ROWS; r++)
        h[r] = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(rows[r] + offsetof(q3_block_q5_k, qh))));
    transpose_16x16(h);
    const __m512i bit4 = _mm512_set1_epi8(0x10);
#pragma GCC unroll 8
    for (int b = 0; b < 8; b++) {
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            __m512i moved = b <= 4 ? _mm512_slli_epi32(h[g], 4 - b) : _mm512_srli_epi32(h[g], b - 4);
            t->levels[8 * b + g] = _mm512_or_si512(t->levels[8 * b + g], _mm512_and_si512(moved, bit4));
        }
    }
}

/* The sums of y over each sub-block of 32, as int16 (|sum| <= 32 * 128): bsums added in pairs. */
static inline void kq32_sub_block_sums(const q3_block_q8_k *x, int16_t sums[8]) {
    __m128i a = _mm_loadu_si128((const __m128i *)x->bsums), b = _mm_loadu_si128((const __m128i *)(x->bsums + 8));
    _mm_storeu_si128((__m128i *)sums, _mm_hadd_epi16(a, b));
}

/* nc tokens (a constant once inlined) against one packed block: sub-block j is steps 8j ..
 * 8j + 7, activations 32j .. 32j + 31; its int32 sums are scaled per row, and the min term is
 * sum_j m_j * (bsums[2j] + bsums[2j + 1]), two sub-blocks per vpdpwssd. */
static inline __attribute__((always_inline)) void kq32_dot_cols(const kq32_tile *t, const q3_block_q8_k *const *xb,
                                                                __m512 *acc, const int nc) {
    int16_t y_sums[TILE_COLS][8];
#pragma GCC unroll 8
    for (int c = 0; c < nc; c++) kq32_sub_block_sums(xb[c], y_sums[c]);
    __m512i qy[TILE_COLS], my[TILE_COLS];
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
            for (int c = 0; c < nc; c++) s[c] = _mm512_dpbusd_epi32(s[c], levels, bcast32(xb[c]->qs + 32 * j + 4 * u));
        }
        __m512i scale = t->scales[j];
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) qy[c] = _mm512_add_epi32(qy[c], _mm512_mullo_epi32(s[c], scale));
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m512i mins = t->min_pairs[i];
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) my[c] = _mm512_dpwssd_epi32(my[c], mins, bcast32(y_sums[c] + 2 * i));
    }
#pragma GCC unroll 8
    for (int c = 0; c < nc; c++) acc[c] = kdot_tail(acc[c], xb[c]->d, t->d, t->dmin, qy[c], my[c]);
}

static void kq32_dot(const void *tile, const void *const *x, int64_t i, int nc, __m512 *acc) {
    const q3_block_q8_k *xb[TILE_COLS];
    for (int c = 0; c < nc; c++) xb[c] = (const q3_block_q8_k *)x[c] + i;
    FOR_EACH_WIDTH(nc, kq32_dot_cols, tile, xb, acc);
}

/* ---- Q6_K: 16 sub-blocks of 16, int8 scales, levels 0..63 standing for q - 32 ---- */

typedef struct q6_k_tile {
    __m512i levels[64];     /* weights 4s .. 4s + 3 of each row, 0..63 */
    __m512i scales[16];     /* sub-block j's scale, per row */
    __m512i scale_pairs[8]; /* scales 2i and 2i + 1 as int16: one vpdpwssd against a bsums pair */
    __m512 d;
} q6_k_tile;

/* In each half h, ql[64h + l] holds weights l (low nibble) and l + 64 (high), ql[64h + 32 + l]
 * weights l + 32 and l + 96, and qh[32h + l] their top bits in pairs 0-1, 2-3, 4-5, 6-7. With
 * a, b, hb the transposed dwords at l = 4g, weight 128h + 32q + 4g is step 32h + 8q + g. */
static inline void q6_k_pack_levels(q6_k_tile *t, const uint8_t *const rows[ROWS]) {
    const __m512i nibble = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8(0x30);
    __m512i hb[16];
    for (int r = 0; r < ROWS; r++) hb[r] = _mm512_loadu_si512(rows[r] + offsetof(q3_block_q6_k, qh));
    transpose_16x16(hb);
#pragma GCC unroll 1
    for (int h = 0; h < 2; h++) {
        __m512i ql[16];
        for (int r = 0; r < ROWS; r++) ql[r] = _mm512_loadu_si512(rows[r] + offsetof(q3_block_q6_k, ql) + 64 * h);
        transpose_16x16(ql);
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            __m512i a = ql[g], b = ql[8 + g], high = h ? hb[8 + g] : hb[g];
            __m512i *out = t->levels + 32 * h + g;
            out[0] = _mm512_or_si512(_mm512_and_si512(a, nibble), _mm512_and_si512(_mm512_slli_epi32(high, 4), top));
            out[8] = _mm512_or_si512(_mm512_and_si512(b, nibble), _mm512_and_si512(_mm512_slli_epi32(high, 2), top));
            out[16] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(a, 4), nibble), _mm512_and_si512(high, top));
            out[24] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(b, 4), nibble),
                                      _mm512_and_si512(_mm512_srli_epi32(high, 2), top));
        }
    }
}

static void q6_k_pack(void *tile, const uint8_t *const rows[ROWS]) {
    q6_k_tile *t = tile;
    q6_k_pack_levels(t, rows);
    __m512i v[4]; /* scale bytes 4k .. 4k + 3 of each row */
    load_16x4(rows, offsetof(q3_block_q6_k, scales), v);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
#pragma GCC unroll 4
        for (int b = 0; b < 4; b++) t->scales[4 * k + b] = _mm512_srai_epi32(_mm512_slli_epi32(v[k], 24 - 8 * b), 24);
        __m512i even = _mm512_srai_epi16(_mm512_slli_epi16(v[k], 8), 8); /* bytes 0, 2 as int16 */
        __m512i odd = _mm512_srai_epi16(v[k], 8);                          /* bytes 1, 3 */
        t->scale_pairs[2 * k] = _mm512_mask_blend_epi16(0xAAAAAAAAu, even, _mm512_slli_epi32(odd, 16));
        t->scale_pairs[2 * k + 1] = _mm512_mask_blend_epi16(0xAAAAAAAAu, _mm512_srli_epi32(even, 16), odd);
    }
    t->d = load_halves(rows, offsetof(q3_block_q6_k, d));
}

/* sum_j sc_j * sum(q * y) over sub-block j (steps 4j .. 4j + 3), minus 32 * sum_j sc_j *
 * bsums[j]: the integer vec_dot gets from its offset_corrected. */
static inline __attribute__((always_inline)) void q6_k_dot_cols(const q6_k_tile *t, const q3_block_q8_k *const *xb,
                                                                __m512 *acc, const int nc) {
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
            for (int c = 0; c < nc; c++) s[c] = _mm512_dpbusd_epi32(s[c], levels, bcast32(xb[c]->qs + 16 * j + 4 * u));
        }
        __m512i scale = t->scales[j];
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) qy[c] = _mm512_add_epi32(qy[c], _mm512_mullo_epi32(s[c], scale));
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        __m512i pair = t->scale_pairs[i];
#pragma GCC unroll 8
        for (int c = 0; c < nc; c++) off[c] = _mm512_dpwssd_epi32(off[c], pair, bcast32(xb[c]->bsums + 2 * i));
    }
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int c = 0; c < nc; c++) {
        __m512i sum_qy = _mm512_sub_epi32(qy[c], _mm512_slli_epi32(off[c], 5));
        acc[c] = kdot_tail(acc[c], xb[c]->d, t->d, zero, sum_qy, _mm512_setzero_si512());
    }
}

static void q6_k_dot(const void *tile, const void *const *x, int64_t i, int nc, __m512 *acc) {
    const q3_block_q8_k *xb[TILE_COLS];
    for (int c = 0; c < nc; c++) xb[c] = (const q3_block_q8_k *)x[c] + i;
    FOR_EACH_WIDTH(nc, q6_k_dot_cols, tile, xb, acc);
}

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
    transpose_16x16(v);
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
        for (int c = 0; c < nc; c++) s[c] = _mm512_dpbusd_epi32(s[c], levels, bcast32(xb[c]->qs + 4 * u));
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

/* ---- the tile loop ---- */

typedef union any_tile {
    kq32_tile kq32;
    q6_k_tile q6_k;
    q8_0_tile q8_0;
} any_tile;

typedef struct tile_ops {
    size_t block_bytes;
    void (*pack)(void *tile, const uint8_t *const rows[ROWS]);
    void (*dot)(const void *tile, const void *const *x, int64_t block, int nc, __m512 *acc);
    q3_vec_dot_fn vec_dot;
} tile_ops;

/* Row r of the tile, or for r >= nr a repeat of the last row: its lanes compute a valid
 * product that is never stored. */
static void tile_rows(const void *w, size_t w_stride, int nr, size_t offset, const uint8_t *rows[ROWS]) {
    for (int r = 0; r < ROWS; r++) rows[r] = (const uint8_t *)w + (size_t)(r < nr ? r : nr - 1) * w_stride + offset;
}

static void gemm_by_vec_dot(q3_vec_dot_fn vec_dot, int64_t n, const void *w, size_t w_stride, int nr,
                            const void *const *x, int nc, float *out, size_t out_stride) {
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < nr; r++) out[c * out_stride + r] = vec_dot(n, (const char *)w + r * w_stride, x[c]);
}

/* Masked stores are slow on some CPUs (AMD's Zen 4 among them): only a partial tile takes them. */
static void store_tile(const __m512 *acc, int nr, int nc, float *out, size_t out_stride) {
    __mmask16 rows = (__mmask16)((1u << nr) - 1);
    if (nr == ROWS)
        for (int c = 0; c < nc; c++) _mm512_storeu_ps(out + c * out_stride, acc[c]);
    else
        for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(out + c * out_stride, rows, acc[c]);
}

/* Asks for the next block of the 16 rows while this one is computed, and during the last
 * block for the first block of the 16 rows after them, which callers usually want next. The
 * hardware prefetchers do not follow 16 interleaved streams through memory; without this,
 * weights that come from DRAM (every expert, every layer) leave the kernel waiting on each
 * block's first touch (measured: about 25% slower on DRAM-resident weights). */
static inline void prefetch_blocks(const uint8_t *const rows[ROWS], size_t offset, size_t bytes) {
    for (int r = 0; r < ROWS; r++)
        for (size_t b = 0; b < bytes + 64; b += 64) _mm_prefetch((const char *)rows[r] + offset + b, _MM_HINT_T0);
}

/* The tokens [c, c + width) of the next micro-tile: the nc tokens in as few micro-tiles as
 * TILE_COLS allows, of near-equal widths (33 tokens as 7, 7, 7, 6, 6 rather than 8, 8, 8, 8, 1:
 * a narrow tile leaves vpdpbusd waiting on its own latency). */
static inline int tile_width(int c, int nc) {
    int tiles_left = (nc - c + TILE_COLS - 1) / TILE_COLS;
    return (nc - c + tiles_left - 1) / tiles_left;
}

/* Block by block: unpack the 16 rows' block once, then run every token through it TILE_COLS
 * at a time. The float accumulators wait in acc between blocks, so each lane's float tail
 * runs in block order, as vec_dot's does. */
static void gemm_tiles(const tile_ops *ops, int64_t n_blocks, const void *w, size_t w_stride, int nr,
                       const void *const *x, int nc, float *out, size_t out_stride) {
    __m512 acc[Q3_GEMM_COLS];
    any_tile tile;
    const uint8_t *rows[ROWS];
    for (int c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n_blocks; i++) {
        tile_rows(w, w_stride, nr, (size_t)i * ops->block_bytes, rows);
        if (i + 1 < n_blocks) prefetch_blocks(rows, ops->block_bytes, ops->block_bytes);
        else prefetch_blocks(rows, ROWS * w_stride - i * ops->block_bytes, ops->block_bytes); /* the next tile */
        ops->pack(&tile, rows);
        for (int c = 0, w = 0; c < nc; c += w) {
            w = tile_width(c, nc);
            ops->dot(&tile, x + c, i, w, acc + c);
        }
    }
    store_tile(acc, nr, nc, out, out_stride);
}

static const tile_ops Q4_K_OPS = {sizeof(q3_block_q4_k), q4_k_pack, kq32_dot, q3_q4_k_vec_dot_avx512};
static const tile_ops Q5_K_OPS = {sizeof(q3_block_q5_k), q5_k_pack, kq32_dot, q3_q5_k_vec_dot_avx512};
static const tile_ops Q6_K_OPS = {sizeof(q3_block_q6_k), q6_k_pack, q6_k_dot, q3_q6_k_vec_dot_avx512};

static void gemm_k(const tile_ops *ops, int64_t n, const void *w, size_t w_stride, int nr, const void *const *x,
                   int nc, float *out, size_t out_stride) {
    if (nc < MIN_COLS) gemm_by_vec_dot(ops->vec_dot, n, w, w_stride, nr, x, nc, out, out_stride);
    else gemm_tiles(ops, n / Q3_QK_K, w, w_stride, nr, x, nc, out, out_stride);
}

void q3_q4_k_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                         float *out, size_t out_stride) {
    gemm_k(&Q4_K_OPS, n, w, w_stride, nr, x, nc, out, out_stride);
}

void q3_q5_k_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                         float *out, size_t out_stride) {
    gemm_k(&Q5_K_OPS, n, w, w_stride, nr, x, nc, out, out_stride);
}

void q3_q6_k_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                         float *out, size_t out_stride) {
    gemm_k(&Q6_K_OPS, n, w, w_stride, nr, x, nc, out, out_stride);
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
