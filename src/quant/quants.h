/* The portable reference kernels of the quantized formats: for each type, to_float
 * (dequantize), from_float (quantize) and vec_dot (against the type's vec_dot_type). Each
 * format lives in its own file (q4_0.c, q4_k.c, ...); SIMD versions in src/cpu/ must agree
 * with these. n is always a whole number of blocks. */
#ifndef Q3_QUANTS_H
#define Q3_QUANTS_H

#include <stdint.h>

#define Q3_DECLARE_QUANT_KERNELS(name)                                     \
    void q3_##name##_to_float(const void *src, float *dst, int64_t n);     \
    void q3_##name##_from_float(const float *src, void *dst, int64_t n);   \
    float q3_##name##_vec_dot(int64_t n, const void *w, const void *x);

/* Weight formats, with the activation type their vec_dot takes. */
Q3_DECLARE_QUANT_KERNELS(q4_0) /* x: Q8_0 */
Q3_DECLARE_QUANT_KERNELS(q4_1) /* x: Q8_1 */
Q3_DECLARE_QUANT_KERNELS(q5_0) /* x: Q8_0 */
Q3_DECLARE_QUANT_KERNELS(q5_1) /* x: Q8_1 */
Q3_DECLARE_QUANT_KERNELS(q8_0) /* x: Q8_0 */
Q3_DECLARE_QUANT_KERNELS(q2_k) /* x: Q8_K */
Q3_DECLARE_QUANT_KERNELS(q3_k) /* x: Q8_K */
Q3_DECLARE_QUANT_KERNELS(q4_k) /* x: Q8_K */
Q3_DECLARE_QUANT_KERNELS(q5_k) /* x: Q8_K */
Q3_DECLARE_QUANT_KERNELS(q6_k) /* x: Q8_K */
/* Activation formats; their vec_dot (against themselves) exists for completeness and tests. */
Q3_DECLARE_QUANT_KERNELS(q8_1)
Q3_DECLARE_QUANT_KERNELS(q8_k)

#undef Q3_DECLARE_QUANT_KERNELS

#endif
