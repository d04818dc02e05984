/* F32, F16, BF16 rows of the traits table. */
#ifndef Q3_FLOAT_TYPES_H
#define Q3_FLOAT_TYPES_H

#include <stdint.h>

void q3_f32_to_float(const void *src, float *dst, int64_t n);
void q3_f32_from_float(const float *src, void *dst, int64_t n);
float q3_f32_vec_dot(int64_t n, const void *w, const void *x);
void q3_f16_to_float(const void *src, float *dst, int64_t n);
void q3_f16_from_float(const float *src, void *dst, int64_t n);
float q3_f16_vec_dot(int64_t n, const void *w, const void *x);
void q3_bf16_to_float(const void *src, float *dst, int64_t n);
void q3_bf16_from_float(const float *src, void *dst, int64_t n);
float q3_bf16_vec_dot(int64_t n, const void *w, const void *x);

#endif
