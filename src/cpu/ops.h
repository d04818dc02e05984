/* The small element-wise ops of the forward pass, on f32 rows. */
#ifndef Q3_OPS_H
#define Q3_OPS_H

#include <math.h>
#include <stdint.h>

/* out = x / sqrt(mean(x^2) + eps) * w, as transformers' RMSNorm computes it in float32. */
static inline void q3_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    float ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * scale);
}

/* NeoX ("rotate half") RoPE over a whole head: pairs (i, i + d/2), angles from model/rope.h. */
static inline void q3_rope_apply(float *x, const float *c, const float *s, int head_dim) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = a * c[i] - b * s[i];
        x[i + half] = b * c[i] + a * s[i];
    }
}

/* Both ends skip libm's slow error paths with the same bits: below -88.8, expf(-x) overflows to
 * infinity and the result is -0 anyway; above 88, expf(-x) < 2^-126 vanishes beside 1 (as it
 * does from x = 17 on), so x / (1 + expf(-x)) is x itself. */
static inline float q3_silu(float x) { return x < -88.8f ? -0.0f : x > 88.0f ? x : x / (1.0f + expf(-x)); }

#endif
