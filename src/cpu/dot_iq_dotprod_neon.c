/* The i-quant dot products of dot_iq_neon.h over SDOT, the ARMv8.2 dot product instruction (see
 * dot_dotprod_neon.c for how a baseline build gets it). Compiled to nothing on other
 * architectures; only called when the CPU has the instruction. */
#include "cpu/dot.h"

#if defined(__aarch64__)

#include <arm_neon.h>
#include "quant/iq_blocks.h" /* system and shared headers first: the target applies below only */
#include "quant/iq_grids.h"

#include "cpu/dot16_dotprod.h"
#include "cpu/dot_iq_neon.h"

float q3_iq4_nl_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_iq4_nl_dot(n, w, x); }
float q3_iq4_xs_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_iq4_xs_dot(n, w, x); }
float q3_iq3_xxs_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_iq3_xxs_dot(n, w, x); }
float q3_iq3_s_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_iq3_s_dot(n, w, x); }
float q3_iq2_xxs_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_iq2_xxs_dot(n, w, x); }
float q3_iq2_xs_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_iq2_xs_dot(n, w, x); }
float q3_iq2_s_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_iq2_s_dot(n, w, x); }
float q3_iq1_s_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_iq1_s_dot(n, w, x); }
float q3_iq1_m_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_iq1_m_dot(n, w, x); }

#ifdef Q3_DOTPROD_POP_ATTRIBUTE
#pragma clang attribute pop
#endif

#else
typedef int q3_dot_iq_dotprod_neon_unused; /* ISO C wants a declaration in every translation unit */
#endif
