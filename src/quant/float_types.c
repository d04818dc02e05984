/* The unquantized types, F32, F16 and BF16: conversions and their dot products against f32
 * activations. Weights stay in their stored type and are widened to f32 inside the dot product,
 * which is what transformers computes for bf16 weights with float32 compute. */
#include "quant/float_types.h"

#include <string.h>
#include "base/half.h"

void q3_f32_to_float(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
void q3_f32_from_float(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }

void q3_f16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = q3_f16_to_f32(s[i]);
}
void q3_f16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = q3_f32_to_f16(src[i]);
}

void q3_bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = q3_bf16_to_f32(s[i]);
}
void q3_bf16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = q3_f32_to_bf16(src[i]);
}

/* Eight partial sums: vectorisable without -ffast-math, and a fixed order, so results are
 * reproducible whatever the batch. */
#define DOT8(load)                                                   \
    float acc[8] = {0};                                              \
    int64_t i = 0;                                                   \
    for (; i + 8 <= n; i += 8)                                       \
        for (int j = 0; j < 8; j++) acc[j] += load(i + j) * x[i + j]; \
    float s = 0;                                                     \
    for (; i < n; i++) s += load(i) * x[i];                          \
    return s + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));

float q3_f32_vec_dot(int64_t n, const void *w, const void *xv) {
    const float *a = w, *x = xv;
#define LOAD_F32(k) a[k]
    DOT8(LOAD_F32)
}

float q3_f16_vec_dot(int64_t n, const void *w, const void *xv) {
    const uint16_t *a = w;
    const float *x = xv;
#define LOAD_F16(k) q3_f16_to_f32(a[k])
    DOT8(LOAD_F16)
}

float q3_bf16_vec_dot(int64_t n, const void *w, const void *xv) {
    const uint16_t *a = w;
    const float *x = xv;
#define LOAD_BF16(k) q3_bf16_to_f32(a[k])
    DOT8(LOAD_BF16)
}
