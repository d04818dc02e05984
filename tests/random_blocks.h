/* Random test data shared by the kernel tests (test_quant, test_gemm, test_cuda_block_math and
 * the framework-free cross/test_kernels): a xorshift generator, Gaussian values with outliers like
 * real weights and activations, and blocks of random bits whose scale fields are set to sane
 * values, so that every bit pattern of levels and packed sub-block scales is exercised while the
 * dequantized values stay finite. Header-only and free of the test framework, so each test stays
 * one program. */
#ifndef Q3_RANDOM_BLOCKS_H
#define Q3_RANDOM_BLOCKS_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include "base/half.h"
#include "quant/blocks.h"
#include "quant/checkpoint_quants.h"
#include "quant/iq_blocks.h"
#include "quant/types.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static inline void rng_seed(uint64_t seed) { rng_state = seed ? seed : 1; }

static inline uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Uniform in (0, 1), never 0, so logf of it stays finite. */
static inline float rng_uniform(void) { return (float)((rng_next() >> 40) + 0.5) / (float)(1 << 24); }

static inline float rng_gauss(void) {
    return sqrtf(-2.0f * logf(rng_uniform())) * cosf(6.2831853f * rng_uniform());
}

/* Gaussian values with one in 64 four times larger. */
static inline void fill_gauss(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = scale * rng_gauss() * (rng_next() % 64 == 0 ? 4.0f : 1.0f);
}

/* A positive fp16 scale in [lo, 2 lo). */
static inline uint16_t random_scale(float lo) { return q3_f32_to_f16(lo * (1.0f + rng_uniform())); }

/* IQ1_M keeps its fp16 d in the top nibbles of its four scale words. */
static inline void set_iq1m_d(q3_block_iq1_m *b, uint16_t d) {
    uint16_t w[4];
    memcpy(w, b->scales, 8);
    for (int j = 0; j < 4; j++) w[j] = (uint16_t)((w[j] & 0x0fff) | ((d >> 4 * j) & 0xf) << 12);
    memcpy(b->scales, w, 8);
}

/* Sets the scale fields of one block of type t; false for a type this does not know. */
static inline bool set_block_scales(q3_type t, void *b) {
    switch (t) {
    case Q3_TYPE_Q4_0: ((q3_block_q4_0 *)b)->d = random_scale(0.01f); return true;
    case Q3_TYPE_Q5_0: ((q3_block_q5_0 *)b)->d = random_scale(0.01f); return true;
    case Q3_TYPE_Q8_0: ((q3_block_q8_0 *)b)->d = random_scale(0.001f); return true;
    case Q3_TYPE_Q4_1:
        ((q3_block_q4_1 *)b)->d = random_scale(0.01f);
        ((q3_block_q4_1 *)b)->m = q3_f32_to_f16(-0.1f * rng_uniform());
        return true;
    case Q3_TYPE_Q5_1:
        ((q3_block_q5_1 *)b)->d = random_scale(0.01f);
        ((q3_block_q5_1 *)b)->m = q3_f32_to_f16(-0.1f * rng_uniform());
        return true;
    case Q3_TYPE_Q2_K:
        ((q3_block_q2_k *)b)->d = random_scale(0.01f);
        ((q3_block_q2_k *)b)->dmin = random_scale(0.01f);
        return true;
    case Q3_TYPE_Q3_K: ((q3_block_q3_k *)b)->d = random_scale(0.001f); return true;
    case Q3_TYPE_Q4_K:
        ((q3_block_q4_k *)b)->d = random_scale(0.001f);
        ((q3_block_q4_k *)b)->dmin = random_scale(0.001f);
        return true;
    case Q3_TYPE_Q5_K:
        ((q3_block_q5_k *)b)->d = random_scale(0.001f);
        ((q3_block_q5_k *)b)->dmin = random_scale(0.001f);
        return true;
    case Q3_TYPE_Q6_K: ((q3_block_q6_k *)b)->d = random_scale(0.0001f); return true;
    case Q3_TYPE_F8_E4M3_B32: ((q3_block_f8_b32 *)b)->d = 0.01f * (1.0f + rng_uniform()); return true;
    case Q3_TYPE_GPTQ4_B32: ((q3_block_q4_0 *)b)->d = random_scale(0.01f); return true;
    case Q3_TYPE_IQ1_M: set_iq1m_d((q3_block_iq1_m *)b, random_scale(0.001f)); return true;
    case Q3_TYPE_IQ4_NL: case Q3_TYPE_IQ4_XS: case Q3_TYPE_IQ3_XXS: case Q3_TYPE_IQ3_S:
    case Q3_TYPE_IQ2_XXS: case Q3_TYPE_IQ2_XS: case Q3_TYPE_IQ2_S: case Q3_TYPE_IQ1_S:
        memcpy(b, &(uint16_t){random_scale(0.001f)}, 2); /* d leads these blocks */
        return true;
    default: return false;
    }
}

/* n_blocks blocks of type t: random bits, then sane scales; false for a type without a known
 * scale layout. */
static inline bool fill_random_blocks(q3_type t, void *buf, int64_t n_blocks) {
    size_t block_bytes = q3_type_info(t)->type_size;
    uint8_t *bytes = buf;
    for (size_t i = 0; i < (size_t)n_blocks * block_bytes; i++) bytes[i] = (uint8_t)rng_next();
    for (int64_t i = 0; i < n_blocks; i++)
        if (!set_block_scales(t, bytes + (size_t)i * block_bytes)) return false;
    return true;
}

#endif
