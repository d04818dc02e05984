/* The integer dot products of dot_neon.h over SDOT, the ARMv8.2 dot product instruction
 * (FEAT_DotProd: Cortex-A55/A76 and later, Neoverse, Kunpeng 920, Apple M1 and later), which
 * sums four int8 products into each int32 lane in one step. Compiled to nothing on other
 * architectures; only called when the CPU has the instruction (q3_isa_supported).
 *
 * A build for a CPU with it (-march=armv8.2-a+dotprod, -mcpu=native on such a machine) gets
 * the intrinsic directly. A baseline build compiles this file for the extension alone: GCC
 * through a target pragma (its arm_neon.h offers vdotq_s32 to ARMv8.2 functions), clang through
 * a target attribute on every function, with SDOT written as one instruction of inline
 * assembly, because clang before 16 declares the intrinsic only when the whole build targets
 * the extension. The rest of the binary stays baseline either way. */
#include "cpu/dot.h"

#if defined(__aarch64__)

#include <arm_neon.h>
#include "quant/blocks.h" /* system and shared headers first: the target applies below only */

#include "cpu/dot16_dotprod.h"
#include "cpu/dot_neon.h"

float q3_q8_0_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_q8_0_dot(n, w, x); }
float q3_q4_0_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_q4_0_dot(n, w, x); }
float q3_q4_1_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_q4_1_dot(n, w, x); }
float q3_q5_0_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_q5_0_dot(n, w, x); }
float q3_q5_1_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_q5_1_dot(n, w, x); }
float q3_q2_k_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_q2_k_dot(n, w, x); }
float q3_q3_k_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_q3_k_dot(n, w, x); }
float q3_q4_k_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_q4_k_dot(n, w, x); }
float q3_q5_k_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_q5_k_dot(n, w, x); }
float q3_q6_k_vec_dot_dotprod(int64_t n, const void *w, const void *x) { return neon_q6_k_dot(n, w, x); }

#ifdef Q3_DOTPROD_POP_ATTRIBUTE
#pragma clang attribute pop
#endif

#else
typedef int q3_dot_dotprod_neon_unused; /* ISO C wants a declaration in every translation unit */
#endif
