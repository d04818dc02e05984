/* The tile kernels (q3_gemm_fn in quant/types.h) per instruction set: the matrix products of
 * prefill, a block of weight rows against a block of tokens at once, each (row, token) result
 * bit-identical to that ISA's vec_dot. q3_dot_install puts them into the traits table next to
 * the vec_dot they agree with. */
#ifndef Q3_CPU_GEMM_H
#define Q3_CPU_GEMM_H

#include <stddef.h>
#include <stdint.h>
#include "quant/types.h"

/* AVX2 + FMA + F16C (gemm_avx2.c). */
void q3_q4_k_gemm_avx2(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                       float *out, size_t out_stride);
void q3_q5_k_gemm_avx2(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                       float *out, size_t out_stride);
void q3_q6_k_gemm_avx2(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                       float *out, size_t out_stride);

/* AVX-512 F/BW/VL/DQ + VNNI (gemm_avx512.c). */
void q3_q4_k_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                         float *out, size_t out_stride);
void q3_q5_k_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                         float *out, size_t out_stride);
void q3_q6_k_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                         float *out, size_t out_stride);
void q3_f32_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                        float *out, size_t out_stride);
void q3_f16_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                        float *out, size_t out_stride);
void q3_bf16_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                         float *out, size_t out_stride);
void q3_q8_0_gemm_avx512(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc,
                         float *out, size_t out_stride);

#endif
