/* The x86 tile kernels (q3_gemm_fn) written once for both widths: the tile driver (rows of a
 * tile, prefetch, micro-tile widths, stores), the packing of K-quant, IQ4 and lattice i-quant
 * blocks into tiles, and the float tail every lane runs. gemm_avx2.c and gemm_avx512.c include it after defining
 *
 *   Q3_X86_BITS   256 or 512 (cpu/simd_x86.h): a tile is ROWS = Q3_X86_LANES weight rows, one
 *                 per 32-bit lane
 *   TILE_COLS     tokens whose accumulators one micro-tile keeps in registers (4 or 8)
 *
 * and they define the primitives declared below (a square transpose and a 16-byte gather of
 * the tile's rows, how a sub-block scale is held, a partial store) and the integer products
 * of a packed block against a micro-tile of tokens, which differ by instruction set (maddubs +
 * madd on AVX2, vpdpbusd on AVX-512 VNNI).
 *
 * Layout: one weight row per 32-bit lane. For each block, the ROWS rows' weight levels are
 * unpacked and transposed once into a tile (levels[s], lane r = the four levels of row r's
 * weights 4s .. 4s + 3, as unsigned bytes); every token then multiplies that register by its
 * four activations at 4s, broadcast to all lanes. No horizontal sums, and the unpacking is paid
 * once per ROWS rows instead of once per (row, token).
 *
 * Exactness: every integer sum is the same integer vec_dot computes (integer addition is exact
 * in any order), and each lane then runs vec_dot's float tail for its (row, token), the same
 * IEEE operations in the same order, block after block. So each output is bit-identical to the
 * ISA's vec_dot for that pair, which tests/test_gemm.c checks. */
#ifndef Q3_CPU_GEMM_X86_H
#define Q3_CPU_GEMM_X86_H

#include <stddef.h>
#include "cpu/dot.h"
#include "cpu/simd_x86.h"
#include "quant/blocks.h"
#include "quant/iq_blocks.h"
#include "quant/iq_grids.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* the float tails must stay the separate roundings vec_dot does */
#endif

#define ROWS Q3_X86_LANES /* weight rows per tile: one per 32-bit lane */
/* Below this many tokens the unpacking costs more than it saves: vec_dot per pair instead. */
#define MIN_COLS 2

_Static_assert(ROWS <= Q3_GEMM_ROWS, "a gemm call's rows fill whole tiles");
_Static_assert(ROWS * 4 == Q3_X86_BYTES, "a register of a row's dwords transposes square");

/* Calls fn(args..., w) with w = nc as a constant, so that each micro-tile width gets its own
 * copy with the token loops unrolled and the accumulators in registers. */
#define FOR_EACH_WIDTH_4(nc, fn, ...)   \
    switch (nc) {                       \
    case 4: fn(__VA_ARGS__, 4); break;  \
    case 3: fn(__VA_ARGS__, 3); break;  \
    case 2: fn(__VA_ARGS__, 2); break;  \
    default: fn(__VA_ARGS__, 1); break; \
    }
#define FOR_EACH_WIDTH_8(nc, fn, ...)            \
    switch (nc) {                                \
    case 8: fn(__VA_ARGS__, 8); break;           \
    case 7: fn(__VA_ARGS__, 7); break;           \
    case 6: fn(__VA_ARGS__, 6); break;           \
    case 5: fn(__VA_ARGS__, 5); break;           \
    default: FOR_EACH_WIDTH_4(nc, fn, __VA_ARGS__) \
    }
#if TILE_COLS == 8
#define FOR_EACH_WIDTH FOR_EACH_WIDTH_8
#elif TILE_COLS == 4
#define FOR_EACH_WIDTH FOR_EACH_WIDTH_4
#else
#error "TILE_COLS must be 4 or 8"
#endif

/* ---- primitives each ISA's file defines ---- */

/* v[r] holds the ROWS dwords of row r; afterwards v[t] holds dword t of every row (lane r). */
static inline void transpose_rows(vi v[ROWS]);
/* out[k] lane r = dword k of the 16 bytes at rows[r] + off. */
static inline void load_rows_x4(const uint8_t *const rows[ROWS], size_t off, vi out[4]);
/* A sub-block scale (per lane, 0..63 or -32..31) as the ISA's products apply it. */
static inline vi tile_scale(vi scale);
/* The first nr < ROWS lanes of v to out. */
static inline void store_first_rows(float *out, vf v, int nr);
/* The 16 IQ4_NL levels (q3_iq4nl_values) in every 128-bit lane as the ISA's products take them
 * (AVX-512: plus 128, unsigned bytes for vpdpbusd; AVX2: as they are, maddubs gets |level| and
 * the activation its sign). */
static inline vi iq4_tile_table(void);
/* The signed levels of a lattice i-quant (|level| <= 62) as the ISA's products take them
 * (AVX-512: plus 64, unsigned bytes for vpdpbusd; AVX2: as they are). */
static inline vi lattice_tile_levels(vi levels);

/* ---- helpers ---- */

/* The ROWS fp16 values at rows[r] + off as floats. */
static inline vf load_halves(const uint8_t *const rows[ROWS], size_t off) {
    uint16_t h[ROWS];
    for (int r = 0; r < ROWS; r++) memcpy(&h[r], rows[r] + off, 2);
    return vf_load_halves(h);
}

/* The K-quant block tail of every lane: acc + ((dx * d) * qy - (dx * dmin) * my), the
 * operations of q3_kdot_accumulate (and q3_x86_kdot_tail) in their order. */
static inline vf kdot_tail(vf acc, float dx, vf d, vf dmin, vi qy, vi my) {
    vf vdx = vf_set1(dx);
    vf scaled = vf_mul(vf_mul(vdx, d), vf_from_i32(qy));
    vf offset = vf_mul(vf_mul(vdx, dmin), vf_from_i32(my));
    return vf_add(acc, vf_sub(scaled, offset));
}

/* out[d] lane r = dword d of the `bytes` bytes at rows[r] + off: whole registers of each row,
 * transposed. */
static inline __attribute__((always_inline)) void load_transposed(const uint8_t *const rows[ROWS], size_t off,
                                                                  size_t bytes, vi *out) {
#pragma GCC unroll 1
    for (size_t k = 0; k < bytes / Q3_X86_BYTES; k++) {
        vi *v = out + ROWS * k;
        for (int r = 0; r < ROWS; r++) v[r] = vi_loadu(rows[r] + off + Q3_X86_BYTES * k);
        transpose_rows(v);
    }
}

/* ---- Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins ---- */

/* Also IQ4_XS's tile (8 sub-blocks of 32 too): its levels as iq4_tile_table holds them, its
 * signed scales, in min_pairs the scales again (for the bias of the AVX-512 levels), no dmin. */
typedef struct kq32_tile {
    vi levels[64];    /* weights 4s .. 4s + 3 of each row, 0..15 (Q4_K) or 0..31 (Q5_K) */
    vi scales[8];     /* sub-block j's scale, per row, as tile_scale holds it */
    vi min_pairs[4];  /* mins 2i and 2i + 1 as int16: one pair-multiply against two bsums pair sums */
    vf d, dmin;
} kq32_tile;

/* Scales, mins, d and dmin of the tile's blocks (at rows[r]): the 16 bytes d, dmin, scales[12]
 * per row, as q3_kscale_get unpacks them, one row per lane. */
static inline void kq32_pack_scales(kq32_tile *t, const uint8_t *const rows[ROWS]) {
    vi v[4], mins[8]; /* v: d | dmin << 16, then scale bytes 0-3, 4-7, 8-11 */
    load_rows_x4(rows, 0, v);
    const vi six = vi_set1_32(63), four = vi_set1_32(15), two = vi_set1_32(3);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        vi a = vi_srl32(v[1], 8 * j), b = vi_srl32(v[2], 8 * j), c = vi_srl32(v[3], 8 * j);
        vi sc_high = vi_sll32(vi_and(vi_srl32(a, 6), two), 4);
        vi m_high = vi_sll32(vi_and(vi_srl32(b, 6), two), 4);
        t->scales[j] = tile_scale(vi_and(a, six));
        t->scales[j + 4] = tile_scale(vi_or(vi_and(c, four), sc_high));
        mins[j] = vi_and(b, six);
        mins[j + 4] = vi_or(vi_and(vi_srl32(c, 4), four), m_high);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) t->min_pairs[i] = vi_or(mins[2 * i], vi_sll32(mins[2 * i + 1], 16));
    t->d = load_halves(rows, offsetof(q3_block_q4_k, d));
    t->dmin = load_halves(rows, offsetof(q3_block_q4_k, dmin));
}

/* The nibbles of qs (128 bytes at rows[r] + off) as levels: qs[32c + l] holds weight 64c + l
 * in its low nibble and 64c + 32 + l in its high one, so transposed dword p = 8c + g gives
 * steps 16c + g (low) and 16c + 8 + g (high). */
static inline void kq32_pack_nibbles(kq32_tile *t, const uint8_t *const rows[ROWS], size_t off) {
    const vi nibble = vi_set1_8(0x0F);
#pragma GCC unroll 1
    for (int k = 0; k < 128 / Q3_X86_BYTES; k++) {
        vi v[ROWS];
        for (int r = 0; r < ROWS; r++) v[r] = vi_loadu(rows[r] + off + Q3_X86_BYTES * k);
        transpose_rows(v);
#pragma GCC unroll 16
        for (int p = 0; p < ROWS; p++) {
            int c = (ROWS * k + p) / 8, g = p % 8;
            t->levels[16 * c + g] = vi_and(v[p], nibble);
            t->levels[16 * c + 8 + g] = vi_and(vi_srl32(v[p], 4), nibble);
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
    vi h[ROWS];
    for (int r = 0; r < ROWS; r++) h[r] = vi_load32(rows[r] + offsetof(q3_block_q5_k, qh));
    transpose_rows(h);
    const vi bit4 = vi_set1_8(0x10);
#pragma GCC unroll 8
    for (int b = 0; b < 8; b++) {
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            vi moved = b <= 4 ? vi_sll32(h[g], 4 - b) : vi_srl32(h[g], b - 4);
            t->levels[8 * b + g] = vi_or(t->levels[8 * b + g], vi_and(moved, bit4));
        }
    }
}

/* The sums of y over each sub-block of 32, as int16 (|sum| <= 32 * 128): bsums added in pairs. */
static inline void kq32_sub_block_sums(const q3_block_q8_k *x, int16_t sums[8]) {
    __m128i a = _mm_loadu_si128((const __m128i *)x->bsums), b = _mm_loadu_si128((const __m128i *)(x->bsums + 8));
    _mm_storeu_si128((__m128i *)sums, _mm_hadd_epi16(a, b));
}

/* ---- Q6_K: 16 sub-blocks of 16, int8 scales, levels 0..63 standing for q - 32 ---- */

typedef struct q6_k_tile {
    vi levels[64];     /* weights 4s .. 4s + 3 of each row, 0..63 */
    vi scales[16];     /* sub-block j's scale, per row, as tile_scale holds it */
    vi scale_pairs[8]; /* scales 2i and 2i + 1 as int16: one pair-multiply against a bsums pair */
    vf d;
} q6_k_tile;

/* In each half h, ql[64h + l] holds weights l (low nibble) and l + 64 (high), ql[64h + 32 + l]
 * weights l + 32 and l + 96, and qh[32h + l] their top bits in pairs 0-1, 2-3, 4-5, 6-7. With
 * a, b, high the transposed dwords at l = 4g, weight 128h + 32q + 4g is step 32h + 8q + g. */
static inline void q6_k_pack_levels(q6_k_tile *t, const uint8_t *const rows[ROWS]) {
    const vi nibble = vi_set1_8(0x0F), top = vi_set1_8(0x30);
    vi hb[16]; /* dword 8h + g of qh: the top bits of half h, step group g */
    load_transposed(rows, offsetof(q3_block_q6_k, qh), 64, hb);
#pragma GCC unroll 1
    for (int h = 0; h < 2; h++) {
        vi ql[16];
        load_transposed(rows, offsetof(q3_block_q6_k, ql) + 64 * h, 64, ql);
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            vi a = ql[g], b = ql[8 + g], high = hb[8 * h + g];
            vi *out = t->levels + 32 * h + g;
            out[0] = vi_or(vi_and(a, nibble), vi_and(vi_sll32(high, 4), top));
            out[8] = vi_or(vi_and(b, nibble), vi_and(vi_sll32(high, 2), top));
            out[16] = vi_or(vi_and(vi_srl32(a, 4), nibble), vi_and(high, top));
            out[24] = vi_or(vi_and(vi_srl32(b, 4), nibble), vi_and(vi_srl32(high, 2), top));
        }
    }
}

static void q6_k_pack(void *tile, const uint8_t *const rows[ROWS]) {
    q6_k_tile *t = tile;
    q6_k_pack_levels(t, rows);
    vi v[4]; /* scale bytes 4k .. 4k + 3 of each row */
    load_rows_x4(rows, offsetof(q3_block_q6_k, scales), v);
    const vi low16 = vi_set1_32(0xFFFF);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        vi s[4];
#pragma GCC unroll 4
        for (int b = 0; b < 4; b++) {
            s[b] = vi_sra32(vi_sll32(v[k], 24 - 8 * b), 24);
            t->scales[4 * k + b] = tile_scale(s[b]);
        }
        t->scale_pairs[2 * k] = vi_or(vi_and(s[0], low16), vi_sll32(s[1], 16));
        t->scale_pairs[2 * k + 1] = vi_or(vi_and(s[2], low16), vi_sll32(s[3], 16));
    }
    t->d = load_halves(rows, offsetof(q3_block_q6_k, d));
}

/* ---- IQ4_XS and IQ4_NL: 4-bit indices into the IQ4_NL table of 16 levels ---- */

/* The levels of index bytes v (lane r: four bytes of row r's qs): their low nibbles to *low,
 * their high nibbles to *high. */
static inline void iq4_levels(vi v, vi table, vi *low, vi *high) {
    const vi nibble = vi_set1_8(0x0F);
    *low = vi_lookup16(table, vi_and(v, nibble));
    *high = vi_lookup16(table, vi_and(vi_srl32(v, 4), nibble));
}

/* Block: d (f16), scales_h (two high bits per sub-block), scales_l (a nibble per sub-block),
 * qs[128]: qs[16j + l] holds weight 32j + l in its low nibble and 32j + 16 + l in its high one.
 * So transposed qs dword g belongs to sub-block j = g / 4: low nibbles are step 8j + g % 4,
 * high ones step 8j + 4 + g % 4. */
static void iq4_xs_pack(void *tile, const uint8_t *const rows[ROWS]) {
    kq32_tile *t = tile;
    vi v[4], s[8]; /* v[0]: d | scales_h << 16, v[1]: scales_l */
    load_rows_x4(rows, 0, v);
    const vi four = vi_set1_32(15), two = vi_set1_32(3), low16 = vi_set1_32(0xFFFF);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        vi high = vi_and(vi_srl32(v[0], 16 + 2 * j), two);
        s[j] = vi_sub32(vi_or(vi_and(vi_srl32(v[1], 4 * j), four), vi_sll32(high, 4)), vi_set1_32(32));
        t->scales[j] = tile_scale(s[j]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) t->min_pairs[i] = vi_or(vi_and(s[2 * i], low16), vi_sll32(s[2 * i + 1], 16));
    t->d = load_halves(rows, offsetof(q3_block_iq4_xs, d));
    const vi table = iq4_tile_table();
#pragma GCC unroll 1
    for (int k = 0; k < 128 / Q3_X86_BYTES; k++) {
        vi q[ROWS];
        for (int r = 0; r < ROWS; r++) q[r] = vi_loadu(rows[r] + offsetof(q3_block_iq4_xs, qs) + Q3_X86_BYTES * k);
        transpose_rows(q);
#pragma GCC unroll 16
        for (int p = 0; p < ROWS; p++) {
            int g = ROWS * k + p, step = 8 * (g / 4) + g % 4;
            iq4_levels(q[p], table, &t->levels[step], &t->levels[step + 4]);
        }
    }
}

typedef struct iq4_nl_tile {
    vi levels[8]; /* weights 4s .. 4s + 3 of each row as iq4_tile_table holds them */
    vf d;
} iq4_nl_tile;

/* One block of 32: qs[l] holds weight l in its low nibble and l + 16 in its high one, so qs
 * dword k gives steps k and 4 + k. */
static void iq4_nl_pack(void *tile, const uint8_t *const rows[ROWS]) {
    iq4_nl_tile *t = tile;
    vi v[4];
    load_rows_x4(rows, offsetof(q3_block_iq4_nl, qs), v);
    const vi table = iq4_tile_table();
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) iq4_levels(v[k], table, &t->levels[k], &t->levels[4 + k]);
    t->d = load_halves(rows, offsetof(q3_block_iq4_nl, d));
}

/* ---- the lattice i-quants (IQ2_XXS .. IQ1_M): signed levels, a multiplier per 16 weights ----
 *
 * Q6_K's tile: 16 sub-blocks of 16 weights, each with its integer multiplier (scales, and in
 * scale_pairs for the AVX-512 bias), d per row. Where the levels come from (grid entries by
 * index, signs, IQ1's eighths) is the type's vec_dot's own code, q3_<type>_unpack_<isa>, which
 * writes a row's block as bytes in weight order; the tile transposes those as Q6_K's packing
 * transposes its stored bytes. The type's constant factor (1/8 for IQ2 ...) is tile_ops'. */

typedef uint16_t (*lattice_unpack_fn)(const void *block, int8_t levels[Q3_QK_K], int32_t mult[Q3_QK_K / 16]);

static inline __attribute__((always_inline)) void lattice_pack(void *tile, const uint8_t *const rows[ROWS],
                                                               lattice_unpack_fn unpack) {
    q6_k_tile *t = tile;
    int8_t levels[ROWS][Q3_QK_K];
    int32_t mult[ROWS][Q3_QK_K / 16];
    uint16_t d[ROWS];
    const uint8_t *level_rows[ROWS], *mult_rows[ROWS];
    for (int r = 0; r < ROWS; r++) {
        d[r] = unpack(rows[r], levels[r], mult[r]);
        level_rows[r] = (const uint8_t *)levels[r];
        mult_rows[r] = (const uint8_t *)mult[r];
    }
    load_transposed(level_rows, 0, Q3_QK_K, t->levels);
#pragma GCC unroll 8
    for (int s = 0; s < 64; s++) t->levels[s] = lattice_tile_levels(t->levels[s]);
    vi m[16]; /* m[j] lane r: row r's multiplier of weights 16j .. 16j + 15 */
    load_transposed(mult_rows, 0, sizeof mult[0], m);
    const vi low16 = vi_set1_32(0xFFFF);
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) t->scales[j] = tile_scale(m[j]);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) t->scale_pairs[i] = vi_or(vi_and(m[2 * i], low16), vi_sll32(m[2 * i + 1], 16));
    t->d = vf_load_halves(d);
}

/* The pack function of each lattice type of ISA isa: lattice_pack over its unpacker. */
#define LATTICE_PACK(isa, type) \
    static void type##_pack(void *tile, const uint8_t *const rows[ROWS]) { lattice_pack(tile, rows, q3_##type##_unpack_##isa); }
#define LATTICE_PACKS(isa)                                                                                    \
    LATTICE_PACK(isa, iq2_xxs) LATTICE_PACK(isa, iq2_xs) LATTICE_PACK(isa, iq2_s) LATTICE_PACK(isa, iq3_xxs) \
    LATTICE_PACK(isa, iq3_s) LATTICE_PACK(isa, iq1_s) LATTICE_PACK(isa, iq1_m)

/* ---- the tile driver ---- */

typedef union any_tile {
    kq32_tile kq32; /* also IQ4_XS */
    q6_k_tile q6_k; /* also the lattice i-quants */
    iq4_nl_tile iq4_nl;
} any_tile;

typedef struct tile_ops {
    int64_t block_weights;
    size_t block_bytes;
    void (*pack)(void *tile, const uint8_t *const rows[ROWS]);
    /* acc[c] += the block at index `block` of the packed rows against tokens x[c], c < nc */
    void (*dot)(const void *tile, const void *const *x, int64_t block, int nc, vf *acc);
    q3_vec_dot_fn vec_dot;
    float factor; /* what vec_dot multiplies its block sums' total by at the end (1 but for the lattice types) */
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

static void store_tile(const vf *acc, int nr, int nc, float *out, size_t out_stride) {
    for (int c = 0; c < nc; c++) {
        if (nr == ROWS) vf_storeu(out + c * out_stride, acc[c]);
        else store_first_rows(out + c * out_stride, acc[c], nr);
    }
}

/* acc[c] *= factor, the one float product vec_dot ends with (factor * sum: the same rounding). */
static void scale_tile(vf *acc, int nc, float factor) {
    if (factor == 1.0f) return;
    for (int c = 0; c < nc; c++) acc[c] = vf_mul(vf_set1(factor), acc[c]);
}

/* Asks for the next block of the tile's rows while this one is computed, and during the last
 * block for the first block of the rows after them, which callers usually want next. The
 * hardware prefetchers do not follow ROWS interleaved streams through memory; without this,
 * weights that come from DRAM (every expert, every layer) leave the kernel waiting on each
 * block's first touch (measured on AVX-512: about 25% slower on DRAM-resident weights). */
static inline void prefetch_blocks(const uint8_t *const rows[ROWS], size_t offset, size_t bytes) {
    for (int r = 0; r < ROWS; r++)
        for (size_t b = 0; b < bytes + 64; b += 64) _mm_prefetch((const char *)rows[r] + offset + b, _MM_HINT_T0);
}

/* The width of the micro-tile at token c: the nc tokens in as few micro-tiles as TILE_COLS
 * allows, of near-equal widths (33 tokens as 7, 7, 7, 6, 6 rather than 8, 8, 8, 8, 1: a narrow
 * tile leaves the multiply-adds waiting on their own latency). */
static inline int tile_width(int c, int nc) {
    int tiles_left = (nc - c + TILE_COLS - 1) / TILE_COLS;
    return (nc - c + tiles_left - 1) / tiles_left;
}

/* Block by block: unpack the tile's block once, then run every token through it TILE_COLS at
 * a time. The float accumulators wait in acc between blocks, so each lane's float tail runs in
 * block order, as vec_dot's does. */
static void gemm_tiles(const tile_ops *ops, int64_t n_blocks, const void *w, size_t w_stride, int nr,
                       const void *const *x, int nc, float *out, size_t out_stride) {
    vf acc[Q3_GEMM_COLS];
    any_tile tile;
    const uint8_t *rows[ROWS];
    for (int c = 0; c < nc; c++) acc[c] = vf_zero();
    for (int64_t i = 0; i < n_blocks; i++) {
        tile_rows(w, w_stride, nr, (size_t)i * ops->block_bytes, rows);
        if (i + 1 < n_blocks) prefetch_blocks(rows, ops->block_bytes, ops->block_bytes);
        else prefetch_blocks(rows, ROWS * w_stride - i * ops->block_bytes, ops->block_bytes); /* the next tile */
        ops->pack(&tile, rows);
        for (int c = 0, width = 0; c < nc; c += width) {
            width = tile_width(c, nc);
            ops->dot(&tile, x + c, i, width, acc + c);
        }
    }
    scale_tile(acc, nc, ops->factor);
    store_tile(acc, nr, nc, out, out_stride);
}

/* A gemm call's rows (nr <= Q3_GEMM_ROWS) in tiles of ROWS, or vec_dot per pair for too few tokens. */
static void gemm_rows(const tile_ops *ops, int64_t n, const void *w, size_t w_stride, int nr, const void *const *x,
                   int nc, float *out, size_t out_stride) {
    if (nc < MIN_COLS) {
        gemm_by_vec_dot(ops->vec_dot, n, w, w_stride, nr, x, nc, out, out_stride);
        return;
    }
    for (int r = 0; r < nr; r += ROWS)
        gemm_tiles(ops, n / ops->block_weights, (const char *)w + r * w_stride, w_stride, nr - r < ROWS ? nr - r : ROWS, x, nc,
                   out + r, out_stride);
}

/* Defines the listed gemm kernel q3_<type>_gemm_<isa> (cpu/kernels.h) over a tile_ops. */
#define Q3_X86_GEMM_KERNEL(isa, type, ops)                                                                        \
    void Q3_KERNEL_NAME(isa, type, gemm)(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, \
                                         int nc, float *out, size_t out_stride) {                                 \
        gemm_rows(&ops, n, w, w_stride, nr, x, nc, out, out_stride);                                                 \
    }

/* The seven lattice types' tile_ops and gemm kernels, over the including file's pack functions
 * (LATTICE_PACKS) and its dot, with each type's factor. */
#define LATTICE_OPS(isa, type, dot, factor) \
    static const tile_ops type##_ops = {Q3_QK_K, sizeof(q3_block_##type), type##_pack, dot, q3_##type##_vec_dot_##isa, factor}; \
    Q3_X86_GEMM_KERNEL(isa, type, type##_ops)
#define Q3_X86_LATTICE_GEMM_KERNELS(isa, dot)                                                          \
    LATTICE_OPS(isa, iq2_xxs, dot, 0.125f) LATTICE_OPS(isa, iq2_xs, dot, 0.125f)                      \
    LATTICE_OPS(isa, iq2_s, dot, 0.125f) LATTICE_OPS(isa, iq3_xxs, dot, 0.25f) LATTICE_OPS(isa, iq3_s, dot, 1.0f) \
    LATTICE_OPS(isa, iq1_s, dot, 0.125f) LATTICE_OPS(isa, iq1_m, dot, 0.125f)

#endif
