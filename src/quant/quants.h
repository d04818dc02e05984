/* The portable reference kernels of the quantized formats: for each type, to_float
 * (dequantize), from_float (quantize) and vec_dot (against the type's vec_dot_type). Each
 * format lives in its own file (q4_0.c, q4_k.c, ...); the SIMD kernels in src/cpu/ must agree
 * with these. n is always a whole number of blocks. */
#ifndef Q3_QUANTS_H
#define Q3_QUANTS_H

#include <stdint.h>

/* Legacy weight formats: 32 weights per block; vec_dot takes Q8_0 activations (Q4_0, Q5_0,
 * Q8_0) or Q8_1 (Q4_1, Q5_1). */
void q3_q4_0_to_float(const void *src, float *dst, int64_t n);
void q3_q4_0_from_float(const float *src, void *dst, int64_t n);
float q3_q4_0_vec_dot(int64_t n, const void *w, const void *x);
void q3_q4_1_to_float(const void *src, float *dst, int64_t n);
void q3_q4_1_from_float(const float *src, void *dst, int64_t n);
float q3_q4_1_vec_dot(int64_t n, const void *w, const void *x);
void q3_q5_0_to_float(const void *src, float *dst, int64_t n);
void q3_q5_0_from_float(const float *src, void *dst, int64_t n);
float q3_q5_0_vec_dot(int64_t n, const void *w, const void *x);
void q3_q5_1_to_float(const void *src, float *dst, int64_t n);
void q3_q5_1_from_float(const float *src, void *dst, int64_t n);
float q3_q5_1_vec_dot(int64_t n, const void *w, const void *x);
void q3_q8_0_to_float(const void *src, float *dst, int64_t n);
void q3_q8_0_from_float(const float *src, void *dst, int64_t n);
void q3_q8_0_quantize(const float *src, void *dst, int64_t n, const float *importance);
float q3_q8_0_vec_dot(int64_t n, const void *w, const void *x);

/* K-quants: 256 weights per block; vec_dot takes Q8_K activations. */
void q3_q2_k_to_float(const void *src, float *dst, int64_t n);
void q3_q2_k_from_float(const float *src, void *dst, int64_t n);
float q3_q2_k_vec_dot(int64_t n, const void *w, const void *x);
void q3_q3_k_to_float(const void *src, float *dst, int64_t n);
void q3_q3_k_from_float(const float *src, void *dst, int64_t n);
float q3_q3_k_vec_dot(int64_t n, const void *w, const void *x);
void q3_q4_k_to_float(const void *src, float *dst, int64_t n);
void q3_q4_k_from_float(const float *src, void *dst, int64_t n);
float q3_q4_k_vec_dot(int64_t n, const void *w, const void *x);
void q3_q5_k_to_float(const void *src, float *dst, int64_t n);
void q3_q5_k_from_float(const float *src, void *dst, int64_t n);
float q3_q5_k_vec_dot(int64_t n, const void *w, const void *x);
void q3_q6_k_to_float(const void *src, float *dst, int64_t n);
void q3_q6_k_from_float(const float *src, void *dst, int64_t n);
float q3_q6_k_vec_dot(int64_t n, const void *w, const void *x);

/* Activation formats. Their vec_dot (against their own type) is there for completeness and
 * tests. */
void q3_q8_1_to_float(const void *src, float *dst, int64_t n);
void q3_q8_1_from_float(const float *src, void *dst, int64_t n);
float q3_q8_1_vec_dot(int64_t n, const void *w, const void *x);
void q3_q8_k_to_float(const void *src, float *dst, int64_t n);
void q3_q8_k_from_float(const float *src, void *dst, int64_t n);
float q3_q8_k_vec_dot(int64_t n, const void *w, const void *x);

#endif
