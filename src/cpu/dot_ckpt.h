/* SIMD kernels of the weight types that published Hugging Face checkpoints are repacked into at
 * load (quant/checkpoint_quants.h): FP8 e4m3 blocks and GPTQ's Q4_0-layout blocks, both against
 * float32 activations. They agree with the scalar references within float rounding (another
 * summation order). q3_dot_ckpt_install puts them into a traits table for one ISA. */
#ifndef Q3_CPU_DOT_CKPT_H
#define Q3_CPU_DOT_CKPT_H

#include <stddef.h>
#include <stdint.h>
#include "cpu/kernel_table.h"

/* Installs isa's kernels for these types into table; called by each ISA's install in
 * dot_dispatch.c. Cannot fail. */
void q3_dot_ckpt_install(q3_type_traits *table, q3_isa isa);

float q3_f8_b32_vec_dot_avx2(int64_t n, const void *w, const void *x);
float q3_gptq4_b32_vec_dot_avx2(int64_t n, const void *w, const void *x);
void q3_f8_b32_to_float_avx2(const void *src, float *dst, int64_t n);
float q3_f8_b32_vec_dot_avx512(int64_t n, const void *w, const void *x);
void q3_f8_b32_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc, float *out,
                           size_t out_stride);
float q3_gptq4_b32_vec_dot_avx512(int64_t n, const void *w, const void *x);
float q3_f8_b32_vec_dot_neon(int64_t n, const void *w, const void *x);
float q3_gptq4_b32_vec_dot_neon(int64_t n, const void *w, const void *x);

#endif
