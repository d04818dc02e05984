/* The parts of the AVX2 and AVX-512 i-quant kernels written once (dot_iq_avx2.c,
 * dot_iq_avx512.c, both built with at least AVX2, FMA and F16C): gathering grid vectors and
 * sign masks for runs of 8 weights, the 16 int8 levels of IQ4, the float tails that turn a
 * block's exact integer sum into the reference's result, and the whole dot products of the
 * lattice types (IQ2_XXS .. IQ1_M), with the unpacking of their blocks for the prefill tiles,
 * around a few primitives each ISA defines (declared below).
 * Include only from files built with those flags. */
#ifndef Q3_CPU_DOT_IQ_X86_H
#define Q3_CPU_DOT_IQ_X86_H

#include <immintrin.h>
#include <string.h>
#include "quant/iq_blocks.h"
#include "quant/iq_grids.h"
#include "cpu/prefetch_x86.h"

static inline __m256i q3_iqx_loadu(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Four 8-byte table entries side by side: weights 0-7, 8-15, 16-23, 24-31 of a group. */
static inline __m256i q3_iqx_gather4(const uint64_t *table, int i0, int i1, int i2, int i3) {
    return _mm256_setr_epi64x((long long)table[i0], (long long)table[i1], (long long)table[i2], (long long)table[i3]);
}

/* Eight 4-byte grid entries side by side (IQ3: a group of 32 weights). */
static inline __m256i q3_iqx_gather8(const uint32_t *table, const int idx[8]) {
    return _mm256_setr_epi32((int)table[idx[0]], (int)table[idx[1]], (int)table[idx[2]], (int)table[idx[3]],
                             (int)table[idx[4]], (int)table[idx[5]], (int)table[idx[6]], (int)table[idx[7]]);
}

/* The sign masks of 32 weights from their 32 stored sign bits (IQ2_S, IQ3_S): byte j is 0xff
 * where bit j is set. */
static inline __m256i q3_iqx_sign_bits(uint32_t bits) {
    const __m256i byte_of_bit = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit_in_byte = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), byte_of_bit);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit_in_byte), bit_in_byte);
}

/* y negated where mask is 0xff: (y ^ m) - m. */
static inline __m256i q3_iqx_apply_signs(__m256i y, __m256i mask) {
    return _mm256_sub_epi8(_mm256_xor_si256(y, mask), mask);
}

/* Two int16 multipliers for the two halves of 32 weights (lanes of 128 bits). */
static inline __m256i q3_iqx_scale_pair(int a, int b) {
    return _mm256_setr_m128i(_mm_set1_epi16((short)a), _mm_set1_epi16((short)b));
}

/* The 32 IQ4 indices of one sub-block in weight order: qs[j] low nibble is weight j, high
 * nibble weight j + 16. */
static inline __m256i q3_iqx_iq4_indices(const uint8_t *qs) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_setr_m128i(q, _mm_srli_epi16(q, 4));
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

/* The IQ4 levels (q3_iq4nl_values) in both 128-bit lanes, for vpshufb. */
static inline __m256i q3_iqx_iq4_table(void) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q3_iq4nl_values));
}

/* The eight 6-bit scales of an IQ4_XS block as stored (0..63: the scale plus 32) in the bytes
 * of a uint64, byte j for sub-block j: the nibbles of scales_l and the bit pairs of scales_h
 * spread to bytes. */
static inline uint64_t q3_iqx_iq4xs_scales(const q3_block_iq4_xs *b) {
    uint32_t l32;
    memcpy(&l32, b->scales_l, 4);
    uint64_t l = l32, h = b->scales_h;
    l = (l | l << 16) & 0x0000ffff0000ffffull;
    l = (l | l << 8) & 0x00ff00ff00ff00ffull;
    l = (l | l << 4) & 0x0f0f0f0f0f0f0f0full;
    h = (h | h << 24) & 0x000000ff000000ffull;
    h = (h | h << 12) & 0x000f000f000f000full;
    h = (h | h << 6) & 0x0303030303030303ull;
    return l | h << 4;
}

static inline int32_t q3_iqx_hsum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* The block sums of four blocks (each as 8 int32 lanes) folded to one lane each. */
static inline __m128i q3_iqx_hsum4(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* q3_iq_accumulate for four consecutive blocks: products side by side, the additions one after
 * another in block order, as the reference adds. */
static inline float q3_iqx_accumulate4(float acc, __m128 dx, __m128 dw, __m128i sums) {
    __m128 terms = _mm_mul_ps(_mm_mul_ps(dx, dw), _mm_cvtepi32_ps(sums));
    float t[4];
    _mm_storeu_ps(t, terms);
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++) acc += t[b];
    return acc;
}

/* The fp16 scales of four consecutive blocks of `stride` bytes, d first in each. */
static inline __m128 q3_iqx_halves4(const void *first, size_t stride) {
    uint16_t h[4];
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++) memcpy(&h[b], (const unsigned char *)first + b * stride, 2);
    __m128i bits = _mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], 0, 0, 0, 0);
    return _mm_cvtph_ps(bits);
}

/* ---- the lattice types (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) ----
 *
 * A group of 32 weights per 256-bit register on both ISAs: their cost is gathering grid entries
 * by index, which wider registers do not shorten. Each type says once, in its group function,
 * where a group's grid entries, signs and multipliers are (q3_iqx_group); the dot products
 * and the prefill tiles' unpacking (q3_<type>_unpack_<isa>) both read the groups through it.
 * What differs by ISA is how signs are applied and how products accumulate, the primitives
 * below; the including file defines them and then Q3_X86_IQ_LATTICE_DOTS(isa) defines
 * q3_<type>_vec_dot_<isa> and q3_<type>_unpack_<isa> for the seven types. Every block sum is the
 * reference's exact integer, and the float tail its expression. */

/* How a group's signs are stored: four 7-bit indices into the sign table, one per run of 8,
 * packed 7 bits apart (IQ2_XXS, IQ3_XXS) or in bits 9-15 of four 16-bit words (IQ2_XS); 32 sign
 * bits (IQ2_S, IQ3_S); or none, the grid bytes are signed already (IQ1's eighths). A constant
 * per type, so the branches on it fold away. */
enum { Q3_IQX_KSIGNS7, Q3_IQX_KSIGNS16, Q3_IQX_BITS, Q3_IQX_SIGNED };

typedef struct q3_iqx_group {
    __m256i grid;    /* the 32 weights' grid bytes: magnitudes (<= 62), or IQ1's signed eighths */
    uint64_t signs;  /* as the type's kind says (the words as stored: no unpacking until used) */
    __m256i scale16; /* the int16 multipliers: weights 0-15 in the low 128 bits, 16-31 in the high */
} q3_iqx_group;

/* v negated in each run of 8 bytes as the four sign indices say (IQ2_XXS, IQ2_XS, IQ3_XXS). */
static inline __m256i q3_iqx_ksigned(__m256i v, int s0, int s1, int s2, int s3);
/* v negated where bit j of bits is set. */
static inline __m256i q3_iqx_bits_signed(__m256i v, uint32_t bits);
/* acc + sum grid * sy times the int16 multipliers (one per 16 weights), in 8 int32 lanes; grid
 * bytes are unsigned (<= 62), sy the signed activations. */
static inline __m256i q3_iqx_grid_dot(__m256i acc, __m256i grid, __m256i sy, __m256i scale16);
/* acc + sum v * y times the multipliers over 32 signed weight bytes v (|v| <= 127). */
static inline __m256i q3_iqx_signed_dot(__m256i acc, __m256i v, const int8_t *y, __m256i scale16);
/* 8 * grid + 1 for four runs of 8 (grid bytes -1, 0, 1), or 8 * grid - 1 in the runs whose bit
 * is set in negative (bits 0-3). */
static inline __m256i q3_iqx_iq1_eighths(__m256i grid, int negative);

/* Sign index r of a group's signs. */
static inline int q3_iqx_ksign(uint64_t signs, int r, const int kind) {
    return (int)(kind == Q3_IQX_KSIGNS7 ? signs >> 7 * r : signs >> (16 * r + 9)) & 127;
}

/* v with the group's signs. */
static inline __m256i q3_iqx_group_signed(const q3_iqx_group *g, __m256i v, const int kind) {
    if (kind == Q3_IQX_KSIGNS7 || kind == Q3_IQX_KSIGNS16)
        return q3_iqx_ksigned(v, q3_iqx_ksign(g->signs, 0, kind), q3_iqx_ksign(g->signs, 1, kind),
                              q3_iqx_ksign(g->signs, 2, kind), q3_iqx_ksign(g->signs, 3, kind));
    if (kind == Q3_IQX_BITS) return q3_iqx_bits_signed(v, (uint32_t)g->signs);
    return v;
}

/* acc + the group's weights times the 32 activations at y, scaled. The signs go onto the
 * activations: maddubs wants the weights unsigned. */
static inline __m256i q3_iqx_group_dot(__m256i acc, const q3_iqx_group *g, const int8_t *y, const int kind) {
    if (kind == Q3_IQX_SIGNED) return q3_iqx_signed_dot(acc, g->grid, y, g->scale16);
    return q3_iqx_grid_dot(acc, g->grid, q3_iqx_group_signed(g, q3_iqx_loadu(y), kind), g->scale16);
}

static inline __m256i q3_iqx_nibble_scales(const uint8_t *scales, int g) {
    return q3_iqx_scale_pair(2 * (scales[g] & 0xf) + 1, 2 * (scales[g] >> 4) + 1);
}

static inline uint32_t q3_iqx_load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline q3_iqx_group q3_iqx_iq2_xxs_group(const q3_block_iq2_xxs *w, int g) {
    uint32_t words[2];
    memcpy(words, w->qs + 4 * g, 8);
    const uint8_t *idx = (const uint8_t *)&words[0];
    return (q3_iqx_group){.grid = q3_iqx_gather4(q3_iq2xxs_grid, idx[0], idx[1], idx[2], idx[3]), .signs = words[1],
                          .scale16 = _mm256_set1_epi16((short)(2 * (words[1] >> 28) + 1))};
}

static inline q3_iqx_group q3_iqx_iq2_xs_group(const q3_block_iq2_xs *w, int g) {
    const uint16_t *q = w->qs + 4 * g;
    uint64_t words;
    memcpy(&words, q, 8);
    return (q3_iqx_group){.grid = q3_iqx_gather4(q3_iq2xs_grid, q[0] & 511, q[1] & 511, q[2] & 511, q[3] & 511),
                          .signs = words,
                          .scale16 = q3_iqx_nibble_scales(w->scales, g)};
}

static inline q3_iqx_group q3_iqx_iq2_s_group(const q3_block_iq2_s *w, int g) {
    const uint8_t *q = w->qs + 4 * g;
    int h = w->qh[g];
    return (q3_iqx_group){.grid = q3_iqx_gather4(q3_iq2s_grid, q[0] | (h & 3) << 8, q[1] | (h & 0xc) << 6,
                                                 q[2] | (h & 0x30) << 4, q[3] | (h & 0xc0) << 2),
                          .signs = q3_iqx_load_u32(w->qs + 32 + 4 * g),
                          .scale16 = q3_iqx_nibble_scales(w->scales, g)};
}

static inline q3_iqx_group q3_iqx_iq3_xxs_group(const q3_block_iq3_xxs *w, int g) {
    const uint8_t *q = w->qs + 8 * g;
    uint32_t word = q3_iqx_load_u32(w->qs + Q3_QK_K / 4 + 4 * g);
    int idx[8] = {q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]};
    return (q3_iqx_group){.grid = q3_iqx_gather8(q3_iq3xxs_grid, idx), .signs = word,
                          .scale16 = _mm256_set1_epi16((short)(2 * (word >> 28) + 1))};
}

static inline q3_iqx_group q3_iqx_iq3_s_group(const q3_block_iq3_s *w, int g) {
    const uint8_t *q = w->qs + 8 * g;
    int h = w->qh[g], idx[8];
#pragma GCC unroll 8
    for (int u = 0; u < 8; u++) idx[u] = q[u] | ((h >> u) & 1) << 8;
    int m = 2 * ((w->scales[g / 2] >> 4 * (g % 2)) & 0xf) + 1;
    return (q3_iqx_group){.grid = q3_iqx_gather8(q3_iq3s_grid, idx), .signs = q3_iqx_load_u32(w->signs + 4 * g),
                          .scale16 = _mm256_set1_epi16((short)m)};
}

static inline q3_iqx_group q3_iqx_iq1_s_group(const q3_block_iq1_s *w, int g) {
    const uint8_t *q = w->qs + 4 * g;
    int h = w->qh[g];
    __m256i grid = q3_iqx_gather4(q3_iq1s_grid, q[0] | (h & 7) << 8, q[1] | (h & 0x38) << 5, q[2] | (h & 0x1c0) << 2,
                                  q[3] | (h & 0xe00) >> 1);
    return (q3_iqx_group){.grid = q3_iqx_iq1_eighths(grid, h & 0x8000 ? 0xf : 0),
                          .scale16 = _mm256_set1_epi16((short)(2 * ((h >> 12) & 7) + 1))};
}

static inline q3_iqx_group q3_iqx_iq1_m_group(const q3_block_iq1_m *w, int g) {
    uint64_t words;
    memcpy(&words, w->scales, 8);
    const uint8_t *q = w->qs + 4 * g;
    int h0 = w->qh[2 * g], h1 = w->qh[2 * g + 1];
    __m256i grid = q3_iqx_gather4(q3_iq1s_grid, q[0] | (h0 & 7) << 8, q[1] | (h0 & 0x70) << 4, q[2] | (h1 & 7) << 8,
                                  q[3] | (h1 & 0x70) << 4);
    int negative = (h0 >> 3 & 1) | (h0 >> 6 & 2) | (h1 >> 1 & 4) | (h1 >> 4 & 8);
    int k = (int)(words >> (16 * (g / 2) + 6 * (g % 2)));
    return (q3_iqx_group){.grid = q3_iqx_iq1_eighths(grid, negative),
                          .scale16 = q3_iqx_scale_pair(2 * (k & 7) + 1, 2 * ((k >> 3) & 7) + 1)};
}

/* The fp16 scale of a block: d, or IQ1_M's, spread over its scales' top bits. */
#define Q3_IQX_D(b) ((b)->d)
#define Q3_IQX_IQ1M_D(b) q3_iq1m_d(b)

/* q3_<type>_vec_dot_<isa>: each block's exact sum group by group, through the reference's
 * float tail, block after block, times the type's constant factor; the weights asked for ahead
 * (decode streams each row from DRAM once). */
#define Q3_IQX_VEC_DOT(isa, type, kind, d_of, factor)                                                    \
    static inline int32_t q3_iqx_##type##_block(const q3_block_##type *w, const q3_block_q8_k *x) {      \
        __m256i acc = _mm256_setzero_si256();                                                            \
        _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++) {                                            \
            q3_iqx_group group = q3_iqx_##type##_group(w, g);                                            \
            acc = q3_iqx_group_dot(acc, &group, x->qs + 32 * g, kind);                                   \
        }                                                                                                \
        return q3_iqx_hsum(acc);                                                                         \
    }                                                                                                    \
    float q3_##type##_vec_dot_##isa(int64_t n, const void *w, const void *x) {                           \
        const q3_block_##type *bw = w;                                                                   \
        const q3_block_q8_k *bx = x;                                                                     \
        float sum = 0;                                                                                   \
        for (int64_t i = 0; i < n / Q3_QK_K; i++) {                                                      \
            q3_x86_prefetch_ahead(bw + i, sizeof *bw);                                                   \
            sum = q3_iq_accumulate(sum, bx[i].d, _cvtsh_ss(d_of(&bw[i])), q3_iqx_##type##_block(&bw[i], &bx[i])); \
        }                                                                                                \
        return (factor) * sum;                                                                           \
    }

/* q3_<type>_unpack_<isa> (cpu/dot.h): the signed weight levels of a block in weight order and
 * the multiplier of each 16 weights, read through the same group function as vec_dot. */
#define Q3_IQX_UNPACK(isa, type, kind, d_of)                                                             \
    uint16_t q3_##type##_unpack_##isa(const void *block, int8_t levels[Q3_QK_K], int32_t mult[Q3_QK_K / 16]) { \
        const q3_block_##type *w = block;                                                                \
        _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++) {                                            \
            q3_iqx_group group = q3_iqx_##type##_group(w, g);                                            \
            _mm256_storeu_si256((__m256i *)(levels + 32 * g), q3_iqx_group_signed(&group, group.grid, kind)); \
            mult[2 * g] = _mm256_extract_epi16(group.scale16, 0);                                        \
            mult[2 * g + 1] = _mm256_extract_epi16(group.scale16, 8);                                    \
        }                                                                                                \
        return d_of(w);                                                                                  \
    }

#define Q3_IQX_LATTICE_TYPE(isa, type, kind, d_of, factor) \
    Q3_IQX_VEC_DOT(isa, type, kind, d_of, factor)          \
    Q3_IQX_UNPACK(isa, type, kind, d_of)

#define Q3_X86_IQ_LATTICE_DOTS(isa)                                           \
    Q3_IQX_LATTICE_TYPE(isa, iq2_xxs, Q3_IQX_KSIGNS7, Q3_IQX_D, 0.125f)       \
    Q3_IQX_LATTICE_TYPE(isa, iq2_xs, Q3_IQX_KSIGNS16, Q3_IQX_D, 0.125f)       \
    Q3_IQX_LATTICE_TYPE(isa, iq2_s, Q3_IQX_BITS, Q3_IQX_D, 0.125f)            \
    Q3_IQX_LATTICE_TYPE(isa, iq3_xxs, Q3_IQX_KSIGNS7, Q3_IQX_D, 0.25f)        \
    Q3_IQX_LATTICE_TYPE(isa, iq3_s, Q3_IQX_BITS, Q3_IQX_D, 1.0f)              \
    Q3_IQX_LATTICE_TYPE(isa, iq1_s, Q3_IQX_SIGNED, Q3_IQX_D, 0.125f)          \
    Q3_IQX_LATTICE_TYPE(isa, iq1_m, Q3_IQX_SIGNED, Q3_IQX_IQ1M_D, 0.125f)

#endif
