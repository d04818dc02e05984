/* The portable reference kernels of the i-quants (iq4.c, iq3.c, iq2.c, iq1.c): to_float,
 * vec_dot against Q8_0 (IQ4_NL) or Q8_K (the others), and the quantizers, with an importance
 * per weight of the row (NULL: none; see quant/iq_fit.h) or without (from_float). The SIMD
 * kernels in src/cpu/dot_iq_*.c agree with these to the bit. n is a whole number of blocks. */
#ifndef Q3_QUANT_IQ_QUANTS_H
#define Q3_QUANT_IQ_QUANTS_H

#include <stdint.h>

#define Q3_IQ_TYPE_KERNELS(name)                                                          \
    void q3_##name##_to_float(const void *src, float *dst, int64_t n);                     \
    void q3_##name##_from_float(const float *src, void *dst, int64_t n);                   \
    void q3_##name##_quantize(const float *src, void *dst, int64_t n, const float *importance); \
    float q3_##name##_vec_dot(int64_t n, const void *w, const void *x);

Q3_IQ_TYPE_KERNELS(iq4_nl)
Q3_IQ_TYPE_KERNELS(iq4_xs)
Q3_IQ_TYPE_KERNELS(iq3_xxs)
Q3_IQ_TYPE_KERNELS(iq3_s)
Q3_IQ_TYPE_KERNELS(iq2_xxs)
Q3_IQ_TYPE_KERNELS(iq2_xs)
Q3_IQ_TYPE_KERNELS(iq2_s)
Q3_IQ_TYPE_KERNELS(iq1_s)
Q3_IQ_TYPE_KERNELS(iq1_m)

#undef Q3_IQ_TYPE_KERNELS

#endif
