/* The SIMD versions of the type kernels, per instruction set: dot products of a weight row
 * against an activation row, tile products for batches, activation quantizers and float
 * conversions. Each agrees with its scalar reference in src/quant/ (see q3_isa in
 * cpu/kernel_table.h for how closely). cpu/kernels.h lists them (and so declares them);
 * q3_dot_install puts them into a traits table. */
#ifndef Q3_CPU_DOT_H
#define Q3_CPU_DOT_H

#include "cpu/kernel_table.h"
#include "cpu/kernels.h"

/* Overrides the kernels of table (indexed by type id) that isa and the ISAs below it have
 * versions of. The caller checks q3_isa_supported(isa) first; cannot fail. */
void q3_dot_install(q3_type_traits table[Q3_TYPE_COUNT], q3_isa isa);

/* The i-quant kernels (dot_iq_avx2.c, dot_iq_avx512.c, dot_iq_neon.c, dot_iq_dotprod_neon.c), put into the table by
 * q3_dot_iq_install (dot_iq_dispatch.c) when q3_dot_install installs each ISA level. */
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

/* The lattice i-quants' blocks (IQ2_XXS .. IQ1_M) unpacked for the x86 prefill tiles
 * (gemm_x86.h), by the group code of their vec_dot (dot_iq_x86.h): the 256 signed weight levels
 * in weight order, whose products with the activations, times the multiplier of each 16
 * weights, sum to the integer vec_dot computes for the block; returns the block's fp16 d. */
#define Q3_IQ_LATTICE_UNPACKERS(isa)                                                                     \
    uint16_t q3_iq2_xxs_unpack_##isa(const void *block, int8_t levels[256], int32_t mult[16]); \
    uint16_t q3_iq2_xs_unpack_##isa(const void *block, int8_t levels[256], int32_t mult[16]);  \
    uint16_t q3_iq2_s_unpack_##isa(const void *block, int8_t levels[256], int32_t mult[16]);   \
    uint16_t q3_iq3_xxs_unpack_##isa(const void *block, int8_t levels[256], int32_t mult[16]); \
    uint16_t q3_iq3_s_unpack_##isa(const void *block, int8_t levels[256], int32_t mult[16]);   \
    uint16_t q3_iq1_s_unpack_##isa(const void *block, int8_t levels[256], int32_t mult[16]);   \
    uint16_t q3_iq1_m_unpack_##isa(const void *block, int8_t levels[256], int32_t mult[16]);
Q3_IQ_LATTICE_UNPACKERS(avx2)
Q3_IQ_LATTICE_UNPACKERS(avx512)

#endif
