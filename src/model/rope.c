/* RoPE frequencies and angles, plain and YaRN-scaled, in the order of operations and float32
 * precision of transformers' modeling_rope_utils, so the angles agree with it to the last bit
 * but for libm's cos/sin. */
#include "model/rope.h"

#include <math.h>

float q3_yarn_mscale(float scale, float mscale) {
    return scale <= 1 ? 1.0f : (float)(0.1 * mscale * log((double)scale) + 1.0);
}

/* The dimension (pair index times 2) whose wavelength turns `rotations` times over the original
 * context, in double precision like the Python it mirrors. */
static double correction_dim(double rotations, int dim, double base, int original_context) {
    return dim * log(original_context / (rotations * 2 * M_PI)) / (2 * log(base));
}

static void yarn_inv_freq(const q3_config *c, float *inv_freq) {
    const q3_rope_scaling *s = &c->rope_scaling;
    int dim = c->head_dim;
    double low = floor(correction_dim(s->beta_fast, dim, c->rope_theta, s->original_context));
    double high = ceil(correction_dim(s->beta_slow, dim, c->rope_theta, s->original_context));
    if (low < 0) low = 0;
    if (high > dim - 1) high = dim - 1;
    if (low == high) high += 0.001; /* a one-step ramp instead of a division by zero */
    float span = (float)(high - low);
    for (int i = 0; i < dim / 2; i++) {
        float pos_freq = powf(c->rope_theta, (float)(2 * i) / (float)dim);
        float extrapolated = 1.0f / pos_freq, interpolated = 1.0f / (s->factor * pos_freq);
        float ramp = ((float)i - (float)low) / span;
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        float keep = 1.0f - ramp; /* 1: the frequency is kept (fast dimensions), 0: divided by factor */
        float a = interpolated * (1.0f - keep), b = extrapolated * keep;
        inv_freq[i] = a + b;
    }
}

void q3_rope_inv_freq(const q3_config *c, float *inv_freq) {
    if (c->rope_scaling.type == Q3_ROPE_SCALING_YARN) {
        yarn_inv_freq(c, inv_freq);
        return;
    }
    for (int i = 0; i < c->head_dim / 2; i++) inv_freq[i] = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
}

void q3_rope_angles(const q3_config *c, int pos, float *cos_out, float *sin_out) {
    float inv_freq[512]; /* head_dim <= 1024 (q3_config_validate) */
    q3_rope_inv_freq(c, inv_freq);
    float scale = c->rope_scaling.type == Q3_ROPE_SCALING_YARN ? c->rope_scaling.attention_factor : 1.0f;
    for (int i = 0; i < c->head_dim / 2; i++) {
        float angle = (float)pos * inv_freq[i];
        cos_out[i] = cosf(angle) * scale;
        sin_out[i] = sinf(angle) * scale;
    }
}
