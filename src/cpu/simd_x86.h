/* One vocabulary of vector operations for the AVX2 and AVX-512 kernels, so that code written
 * once (the tile driver of gemm_x86.h, the shared loops of dot_x86.h) compiles at either width.
 * The including file defines Q3_X86_BITS (256 or 512) first and is built with that ISA's flags;
 * everything here is static inline, so each file gets its own copy for its own target.
 *
 *   vi / vf        an integer / float register of the width
 *   Q3_X86_LANES   32-bit lanes per register: 8 or 16, also the rows of a gemm tile
 *   Q3_X86_BYTES   bytes per register
 *
 * Only operations whose results are the same at both widths (lane for lane) belong here; what
 * differs between the ISAs (the multiply-add instructions, transposes, masks) stays in their files. */
#ifndef Q3_CPU_SIMD_X86_H
#define Q3_CPU_SIMD_X86_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#if !defined(Q3_X86_BITS)
#error "define Q3_X86_BITS (256 or 512) before including cpu/simd_x86.h"
#endif

#define Q3_X86_BYTES (Q3_X86_BITS / 8)
#define Q3_X86_LANES (Q3_X86_BITS / 32)

#if Q3_X86_BITS == 512

typedef __m512i vi;
typedef __m512 vf;

static inline vi vi_zero(void) { return _mm512_setzero_si512(); }
static inline vi vi_loadu(const void *p) { return _mm512_loadu_si512(p); }
/* 32 bytes at p in the low half, zeros above (the whole register at 256 bits). */
static inline vi vi_load32(const void *p) { return _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)p)); }
static inline vi vi_set1_8(char v) { return _mm512_set1_epi8(v); }
static inline vi vi_set1_32(int v) { return _mm512_set1_epi32(v); }
static inline vi vi_and(vi a, vi b) { return _mm512_and_si512(a, b); }
static inline vi vi_or(vi a, vi b) { return _mm512_or_si512(a, b); }
static inline vi vi_add32(vi a, vi b) { return _mm512_add_epi32(a, b); }
static inline vi vi_sub32(vi a, vi b) { return _mm512_sub_epi32(a, b); }
static inline vi vi_srl32(vi a, int n) { return _mm512_srli_epi32(a, (unsigned)n); }
static inline vi vi_sll32(vi a, int n) { return _mm512_slli_epi32(a, (unsigned)n); }
static inline vi vi_sra32(vi a, int n) { return _mm512_srai_epi32(a, (unsigned)n); }
/* The 16 bytes at p in every 128-bit lane (a table for vi_lookup16). */
static inline vi vi_bcast128(const void *p) { return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)p)); }
/* Byte k = byte idx[k] (0..15) of table's 128-bit lane: a 16-entry table lookup when every lane
 * holds the same table. */
static inline vi vi_lookup16(vi table, vi idx) { return _mm512_shuffle_epi8(table, idx); }

static inline vf vf_zero(void) { return _mm512_setzero_ps(); }
static inline vf vf_set1(float v) { return _mm512_set1_ps(v); }
static inline vf vf_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vf_from_i32(vi a) { return _mm512_cvtepi32_ps(a); }
static inline void vf_storeu(float *p, vf v) { _mm512_storeu_ps(p, v); }
/* The Q3_X86_LANES fp16 values at p as floats (exact). */
static inline vf vf_load_halves(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline vf vf_loadu(const float *p) { return _mm512_loadu_ps(p); }
/* The Q3_X86_LANES bfloat16 values at p as floats (the top halves of f32s: exact). */
static inline vf vf_load_bf16(const uint16_t *p) {
    __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
static inline vf vf_fmadd(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline vf vf_abs(vf a) { return _mm512_abs_ps(a); }
static inline vf vf_max(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline float vf_reduce_max(vf a) { return _mm512_reduce_max_ps(a); }
/* Bit k set where lane k of a equals lane k of b. */
static inline unsigned vf_eq_bits(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
/* To int32 in the current rounding mode (nearest even by default). */
static inline vi vf_to_i32(vf a) { return _mm512_cvtps_epi32(a); }
static inline vi vi_min32(vi a, vi b) { return _mm512_min_epi32(a, b); }
static inline vi vi_max32(vi a, vi b) { return _mm512_max_epi32(a, b); }
static inline int32_t vi_reduce_add32(vi a) { return _mm512_reduce_add_epi32(a); }

#elif Q3_X86_BITS == 256

typedef __m256i vi;
typedef __m256 vf;

static inline vi vi_zero(void) { return _mm256_setzero_si256(); }
static inline vi vi_loadu(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline vi vi_load32(const void *p) { return vi_loadu(p); }
static inline vi vi_set1_8(char v) { return _mm256_set1_epi8(v); }
static inline vi vi_set1_32(int v) { return _mm256_set1_epi32(v); }
static inline vi vi_and(vi a, vi b) { return _mm256_and_si256(a, b); }
static inline vi vi_or(vi a, vi b) { return _mm256_or_si256(a, b); }
static inline vi vi_add32(vi a, vi b) { return _mm256_add_epi32(a, b); }
static inline vi vi_sub32(vi a, vi b) { return _mm256_sub_epi32(a, b); }
static inline vi vi_srl32(vi a, int n) { return _mm256_srli_epi32(a, n); }
static inline vi vi_sll32(vi a, int n) { return _mm256_slli_epi32(a, n); }
static inline vi vi_sra32(vi a, int n) { return _mm256_srai_epi32(a, n); }
static inline vi vi_bcast128(const void *p) { return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p)); }
static inline vi vi_lookup16(vi table, vi idx) { return _mm256_shuffle_epi8(table, idx); }

static inline vf vf_zero(void) { return _mm256_setzero_ps(); }
static inline vf vf_set1(float v) { return _mm256_set1_ps(v); }
static inline vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vf_from_i32(vi a) { return _mm256_cvtepi32_ps(a); }
static inline void vf_storeu(float *p, vf v) { _mm256_storeu_ps(p, v); }
static inline vf vf_load_halves(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline vf vf_loadu(const float *p) { return _mm256_loadu_ps(p); }
static inline vf vf_load_bf16(const uint16_t *p) {
    __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
static inline vf vf_fmadd(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vf_abs(vf a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
static inline vf vf_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline float vf_reduce_max(vf a) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}
static inline unsigned vf_eq_bits(vf a, vf b) { return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_EQ_OQ)); }
static inline vi vf_to_i32(vf a) { return _mm256_cvtps_epi32(a); }
static inline vi vi_min32(vi a, vi b) { return _mm256_min_epi32(a, b); }
static inline vi vi_max32(vi a, vi b) { return _mm256_max_epi32(a, b); }
static inline int32_t vi_reduce_add32(vi a) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 1)));
}

#else
#error "Q3_X86_BITS must be 256 or 512"
#endif

/* The int32 at p (any alignment) in every lane. */
static inline vi vi_bcast32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return vi_set1_32(v);
}

#endif
