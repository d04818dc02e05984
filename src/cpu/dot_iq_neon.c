/* NEON i-quant dot products for any AArch64 CPU: the kernels of dot_iq_neon.h over the
 * plain-NEON dot16 (widening multiplies, pairwise adds). CPUs with SDOT get the same kernels
 * from dot_iq_dotprod_neon.c. Compiled to nothing on other architectures. */
#include "cpu/dot.h"

#if defined(__aarch64__)

#include <arm_neon.h>

static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}

#include "cpu/dot_iq_neon.h"

float q3_iq4_nl_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_iq4_nl_dot(n, w, x); }
float q3_iq4_xs_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_iq4_xs_dot(n, w, x); }
float q3_iq3_xxs_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_iq3_xxs_dot(n, w, x); }
float q3_iq3_s_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_iq3_s_dot(n, w, x); }
float q3_iq2_xxs_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_iq2_xxs_dot(n, w, x); }
float q3_iq2_xs_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_iq2_xs_dot(n, w, x); }
float q3_iq2_s_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_iq2_s_dot(n, w, x); }
float q3_iq1_s_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_iq1_s_dot(n, w, x); }
float q3_iq1_m_vec_dot_neon(int64_t n, const void *w, const void *x) { return neon_iq1_m_dot(n, w, x); }

#else
typedef int q3_dot_iq_neon_unused; /* ISO C wants a declaration in every translation unit */
#endif
