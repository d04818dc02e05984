#include "model/rope.h"

#include <math.h>

void q3_rope_angles(const q3_config *c, int pos, float *cos_out, float *sin_out) {
    for (int i = 0; i < c->head_dim / 2; i++) {
        float inv_freq = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
        float angle = (float)pos * inv_freq;
        cos_out[i] = cosf(angle);
        sin_out[i] = sinf(angle);
    }
}
