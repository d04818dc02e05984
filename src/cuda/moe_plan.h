/* The MoE's bookkeeping on the GPU, in the C subset both compilers take: which tiles of tokens
 * each expert's tile kernel runs (made on the device from the experts' token counts, so that no
 * step waits for the host), how many tiles there can be at most (the launch size, known on the
 * host), and which experts stay on the GPU under --gpu-experts N. Tested with gcc in
 * tests/test_cuda_plan.c. */
#ifndef Q3_CUDA_MOE_PLAN_H
#define Q3_CUDA_MOE_PLAN_H

#include <stdint.h>
#include "cuda/block_math.h"

/* Cuts each expert's slots [start[x], start[x + 1]) into tiles of at most `tile` slots, experts in
 * order: tile k is expert tile_expert[k]'s slots [tile_slot0[k], + tile_n[k]). Returns the number
 * of tiles (at most q3hd_max_tiles). */
static inline Q3_HD int q3hd_expert_tiles(const int32_t *start, int n_experts, int tile, int32_t *tile_expert,
                                          int32_t *tile_slot0, int32_t *tile_n) {
    int n = 0;
    for (int x = 0; x < n_experts; x++)
        for (int s = start[x]; s < start[x + 1]; s += tile) {
            tile_expert[n] = x;
            tile_slot0[n] = s;
            tile_n[n] = start[x + 1] - s < tile ? start[x + 1] - s : tile;
            n++;
        }
    return n;
}

/* Tiles that `assignments` (token, expert) pairs can make over n_experts experts: each active
 * expert adds at most one partial tile. */
static inline Q3_HD int q3hd_max_tiles(int assignments, int n_experts, int tile) {
    int active = assignments < n_experts ? assignments : n_experts;
    return assignments / tile + active;
}

/* The n experts with the most routed tokens (counts[n_experts]), ties to the lower id, in
 * ascending id order into out[n]; n is clamped to n_experts. Returns how many were chosen. */
#ifdef __cplusplus
extern "C"
#endif
int q3_hot_experts(const uint64_t *counts, int n_experts, int n, int32_t *out);

#endif
