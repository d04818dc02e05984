/* The SIMD versions of the hot type kernels: dot products of a weight row against an
 * activation row, and the activation quantizers, per instruction set. Each agrees with its
 * scalar reference in src/quant/ (see q3_isa in quant/types.h for how closely);
 * q3_dot_install puts them into a traits table. Signatures are those of quant/types.h. */
#ifndef Q3_CPU_DOT_H
#define Q3_CPU_DOT_H

#include <stdint.h>
#include "cpu/kernel_table.h"

/* Overrides the kernels of table (indexed by type id) that isa has versions of. The caller
 * checks q3_isa_supported(isa) first. */
void q3_dot_install(q3_type_traits table[Q3_TYPE_COUNT], q3_isa isa);

/* AVX2 + FMA + F16C (dot_avx2.c). */
float q3_f32_vec_dot_avx2(int64_t n, const void *w, const void *x);
float q3_f16_vec_dot_avx2(int64_t n, const void *w, const void *x);
float q3_bf16_vec_dot_avx2(int64_t n, const void *w, const void *x);
float q3_q8_0_vec_dot_avx2(int64_t n, const void *w, const void *x);
float q3_q4_0_vec_dot_avx2(int64_t n, const void *w, const void *x);
float q3_q4_1_vec_dot_avx2(int64_t n, const void *w, const void *x);
float q3_q5_0_vec_dot_avx2(int64_t n, const void *w, const void *x);
float q3_q5_1_vec_dot_avx2(int64_t n, const void *w, const void *x);
float q3_q4_k_vec_dot_avx2(int64_t n, const void *w, const void *x);
float q3_q5_k_vec_dot_avx2(int64_t n, const void *w, const void *x);
float q3_q6_k_vec_dot_avx2(int64_t n, const void *w, const void *x);
float q3_q2_k_vec_dot_avx2(int64_t n, const void *w, const void *x);
float q3_q3_k_vec_dot_avx2(int64_t n, const void *w, const void *x);
void q3_q8_0_from_float_avx2(const float *src, void *dst, int64_t n);
void q3_q8_k_from_float_avx2(const float *src, void *dst, int64_t n);

/* AVX-512 F/BW/VL/DQ + VNNI (dot_avx512.c). */
float q3_f32_vec_dot_avx512(int64_t n, const void *w, const void *x);
float q3_f16_vec_dot_avx512(int64_t n, const void *w, const void *x);
float q3_bf16_vec_dot_avx512(int64_t n, const void *w, const void *x);
float q3_q8_0_vec_dot_avx512(int64_t n, const void *w, const void *x);
float q3_q4_0_vec_dot_avx512(int64_t n, const void *w, const void *x);
float q3_q4_1_vec_dot_avx512(int64_t n, const void *w, const void *x);
float q3_q5_0_vec_dot_avx512(int64_t n, const void *w, const void *x);
float q3_q5_1_vec_dot_avx512(int64_t n, const void *w, const void *x);
float q3_q4_k_vec_dot_avx512(int64_t n, const void *w, const void *x);
float q3_q5_k_vec_dot_avx512(int64_t n, const void *w, const void *x);
float q3_q6_k_vec_dot_avx512(int64_t n, const void *w, const void *x);
float q3_q2_k_vec_dot_avx512(int64_t n, const void *w, const void *x);
float q3_q3_k_vec_dot_avx512(int64_t n, const void *w, const void *x);
void q3_q8_0_from_float_avx512(const float *src, void *dst, int64_t n);
void q3_q8_k_from_float_avx512(const float *src, void *dst, int64_t n);

/* NEON, any AArch64 CPU (dot_neon.c). */
float q3_f32_vec_dot_neon(int64_t n, const void *w, const void *x);
float q3_f16_vec_dot_neon(int64_t n, const void *w, const void *x);
float q3_bf16_vec_dot_neon(int64_t n, const void *w, const void *x);
float q3_q8_0_vec_dot_neon(int64_t n, const void *w, const void *x);
float q3_q4_0_vec_dot_neon(int64_t n, const void *w, const void *x);
float q3_q4_1_vec_dot_neon(int64_t n, const void *w, const void *x);
float q3_q5_0_vec_dot_neon(int64_t n, const void *w, const void *x);
float q3_q5_1_vec_dot_neon(int64_t n, const void *w, const void *x);
float q3_q4_k_vec_dot_neon(int64_t n, const void *w, const void *x);
float q3_q5_k_vec_dot_neon(int64_t n, const void *w, const void *x);
float q3_q6_k_vec_dot_neon(int64_t n, const void *w, const void *x);
float q3_q2_k_vec_dot_neon(int64_t n, const void *w, const void *x);
float q3_q3_k_vec_dot_neon(int64_t n, const void *w, const void *x);
void q3_q8_0_from_float_neon(const float *src, void *dst, int64_t n);
void q3_q8_k_from_float_neon(const float *src, void *dst, int64_t n);

/* NEON + the ARMv8.2 dot product (dot_dotprod_neon.c): the integer kernels over SDOT. */
float q3_q8_0_vec_dot_dotprod(int64_t n, const void *w, const void *x);
float q3_q4_0_vec_dot_dotprod(int64_t n, const void *w, const void *x);
float q3_q4_1_vec_dot_dotprod(int64_t n, const void *w, const void *x);
float q3_q5_0_vec_dot_dotprod(int64_t n, const void *w, const void *x);
float q3_q5_1_vec_dot_dotprod(int64_t n, const void *w, const void *x);
float q3_q4_k_vec_dot_dotprod(int64_t n, const void *w, const void *x);
float q3_q5_k_vec_dot_dotprod(int64_t n, const void *w, const void *x);
float q3_q6_k_vec_dot_dotprod(int64_t n, const void *w, const void *x);
float q3_q2_k_vec_dot_dotprod(int64_t n, const void *w, const void *x);
float q3_q3_k_vec_dot_dotprod(int64_t n, const void *w, const void *x);

/* The i-quant kernels (dot_iq_avx2.c, dot_iq_avx512.c, dot_iq_neon.c, dot_iq_dotprod_neon.c), put into the table by
 * q3_dot_iq_install (dot_iq_dispatch.c) from each ISA's install. */
void q3_dot_iq_install(q3_type_traits table[Q3_TYPE_COUNT], q3_isa isa);
#define Q3_DOT_IQ_KERNELS(isa)                                                \
    float q3_iq4_nl_vec_dot_##isa(int64_t n, const void *w, const void *x);  \
    float q3_iq4_xs_vec_dot_##isa(int64_t n, const void *w, const void *x);  \
    float q3_iq3_xxs_vec_dot_##isa(int64_t n, const void *w, const void *x); \
    float q3_iq3_s_vec_dot_##isa(int64_t n, const void *w, const void *x);   \
    float q3_iq2_xxs_vec_dot_##isa(int64_t n, const void *w, const void *x); \
    float q3_iq2_xs_vec_dot_##isa(int64_t n, const void *w, const void *x);  \
    float q3_iq2_s_vec_dot_##isa(int64_t n, const void *w, const void *x);   \
    float q3_iq1_s_vec_dot_##isa(int64_t n, const void *w, const void *x);   \
    float q3_iq1_m_vec_dot_##isa(int64_t n, const void *w, const void *x);
Q3_DOT_IQ_KERNELS(avx2)
Q3_DOT_IQ_KERNELS(avx512)
Q3_DOT_IQ_KERNELS(neon)
Q3_DOT_IQ_KERNELS(dotprod)

#endif
