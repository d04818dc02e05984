/* What a GPU step needs from the host, packed into one buffer that goes to the device in one copy
 * when the step begins: the batch's tokens and positions, each token's RoPE angles (from
 * model/rope.c), the page tables of the sequences in the batch (one row per sequence, indexed per
 * token), and attention's blocks (runs of consecutive positions of one sequence). Plain C, so
 * the packing is tested without a GPU (tests/test_cuda_plan.c).
 *
 * The layout is fixed by capacities, not by the step: every array sits at the same offset in
 * every step, so kernels captured in a CUDA graph read the next step's data from the same
 * addresses. Only the used prefix travels (upload_bytes). */
#ifndef Q3_CUDA_STEP_PLAN_H
#define Q3_CUDA_STEP_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include "kv/kv_cache.h"

/* Byte offsets of each array in the step buffer, for capacities of max_tokens tokens, max_rows
 * sequences and page-table rows of `stride` pages. */
typedef struct q3_step_layout {
    int max_tokens, max_rows, stride, half; /* half: head_dim / 2 angles per token */
    size_t tokens;      /* int32 [max_tokens] */
    size_t pos;         /* int32 [max_tokens] */
    size_t token_row;   /* int32 [max_tokens]: the page-table row of each token's sequence */
    size_t block_start; /* int32 [max_tokens + 1]: attention blocks' first tokens, then n_tokens */
    size_t cos, sin;    /* float [max_tokens][half] */
    size_t seqs;        /* int32 [max_rows]: the sequence of each page-table row */
    size_t pages;       /* int32 [max_rows][stride]: last, so that a step copies only its rows */
    size_t bytes;
} q3_step_layout;

/* What begin() learns about the step while packing it. */
typedef struct q3_step_info {
    int n_tokens, n_rows, n_blocks;
    int widest_block;    /* tokens of the longest attention block */
    int max_chunks;      /* attention chunks of the longest context in the step */
    size_t upload_bytes; /* the prefix of the buffer this step fills */
    uint64_t kv_bytes;   /* cache bytes one layer's attention reads (as the CPU backend counts) */
} q3_step_info;

/* The layout for these capacities; cannot fail. */
void q3_step_layout_init(q3_step_layout *l, int max_tokens, int max_rows, int stride, int head_dim);

/* Fills dst (l->bytes) with batch b over cache kv: tokens, positions, angles of config c, the page
 * table rows of its sequences, and attention blocks of at most block_tokens tokens, each of
 * consecutive positions of one sequence (block_tokens 1: a block per token). chunk: attention's
 * positions per chunk, for max_chunks. Q3_EINVAL when the batch exceeds the layout's
 * capacities. */
q3_status q3_step_pack(const q3_step_layout *l, const q3_config *c, const q3_batch *b, const q3_kv_cache *kv,
                       int block_tokens, int chunk, void *dst, q3_step_info *info, q3_error *e);

#endif
