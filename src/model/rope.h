/* The rotation angles of RoPE, written once for every backend: each computes its tables of cos
 * and sin per position from here, so a scaling scheme changes one file. */
#ifndef Q3_ROPE_H
#define Q3_ROPE_H

#include "q3moe.h"

/* cos and sin of position pos's angles over head_dim / 2 frequencies, computed in float32 like
 * transformers' default RoPE: inv_freq[i] = 1 / theta^(2i / head_dim), angle = pos * inv_freq[i].
 * Cannot fail. */
void q3_rope_angles(const q3_config *c, int pos, float *cos_out, float *sin_out);

#endif
