/* The rotation angles of RoPE, written once for every backend: each computes its tables of cos
 * and sin per position from here, so a scaling scheme changes one file. YaRN's attention scaling
 * is folded into those tables (cos and sin times attention_factor, as transformers does), so a
 * backend that rotates q and k by them needs nothing else. */
#ifndef Q3_ROPE_H
#define Q3_ROPE_H

#include "q3moe.h"

/* The frequencies of the head_dim / 2 dimension pairs, computed in float32 like transformers:
 * plain RoPE inv_freq[i] = 1 / theta^(2i / head_dim); YaRN blends that with inv_freq / factor
 * along its ramp. Cannot fail. */
void q3_rope_inv_freq(const q3_config *c, float *inv_freq);

/* cos and sin of position pos's angles (pos * inv_freq[i]) over head_dim / 2 frequencies, times
 * the scaling's attention factor (1 without scaling). Cannot fail. */
void q3_rope_angles(const q3_config *c, int pos, float *cos_out, float *sin_out);

/* YaRN's attention scale for a context extended by `scale`: 0.1 * mscale * ln(scale) + 1, and 1
 * when scale <= 1. Cannot fail. */
float q3_yarn_mscale(float scale, float mscale);

#endif
