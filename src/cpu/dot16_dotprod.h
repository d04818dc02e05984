/* dot16 over SDOT, the ARMv8.2 dot product instruction, for the files that compile the shared
 * NEON kernels for CPUs with it (dot_dotprod_neon.c, dot_iq_dotprod_neon.c); see the first of
 * them for why a baseline build needs a target pragma or attribute here. Include once, inside
 * `#if defined(__aarch64__)`, after the system and shared headers (the target applies to what
 * follows), and end the file with
 *     #ifdef Q3_DOTPROD_POP_ATTRIBUTE
 *     #pragma clang attribute pop
 *     #endif */
#ifndef Q3_CPU_DOT16_DOTPROD_H
#define Q3_CPU_DOT16_DOTPROD_H

#include <arm_neon.h>

#if defined(__ARM_FEATURE_DOTPROD)
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }
#elif defined(__clang__)
#pragma clang attribute push(__attribute__((target("dotprod"))), apply_to = function)
#define Q3_DOTPROD_POP_ATTRIBUTE
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
    __asm__("sdot %0.4s, %1.16b, %2.16b" : "+w"(acc) : "w"(a), "w"(b));
    return acc;
}
#else
#pragma GCC target("arch=armv8.2-a+dotprod")
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }
#endif

#endif
