/* Packing a step's host data for the GPU: see step_plan.h. */
#include "cuda/step_plan.h"

#include <string.h>
#include "model/rope.h"

static size_t take(size_t *at, size_t bytes) {
    size_t here = *at;
    *at += (bytes + 255) & ~(size_t)255; /* each array on its own 256-byte line */
    return here;
}

void q3_step_layout_init(q3_step_layout *l, int max_tokens, int max_rows, int stride, int head_dim) {
    size_t T = (size_t)max_tokens, at = 0, half = (size_t)head_dim / 2;
    l->max_tokens = max_tokens;
    l->max_rows = max_rows;
    l->stride = stride;
    l->half = head_dim / 2;
    l->tokens = take(&at, T * 4);
    l->pos = take(&at, T * 4);
    l->token_row = take(&at, T * 4);
    l->block_start = take(&at, (T + 1) * 4);
    l->cos = take(&at, T * half * 4);
    l->sin = take(&at, T * half * 4);
    l->seqs = take(&at, (size_t)max_rows * 4);
    l->pages = take(&at, (size_t)max_rows * (size_t)stride * 4);
    l->bytes = at;
}

/* The row of sequence seq among rows[0..n), added when new; -1 when the layout has no room. */
static int row_of(int32_t *rows, int *n, int max_rows, int seq) {
    for (int r = 0; r < *n; r++)
        if (rows[r] == seq) return r;
    if (*n == max_rows) return -1;
    rows[*n] = seq;
    return (*n)++;
}

/* Blocks: runs of one sequence's consecutive positions, at most per_block long (as the CPU's
 * attention cuts them). */
static int make_blocks(const q3_batch *b, int per_block, int32_t *start, int *widest) {
    int n = 0;
    *widest = 0;
    for (int i = 0; i < b->n_tokens; i++) {
        bool joins = i > 0 && i - start[n - 1] < per_block && b->seq[i] == b->seq[i - 1] && b->pos[i] == b->pos[i - 1] + 1;
        if (!joins) start[n++] = i;
    }
    start[n] = b->n_tokens;
    for (int k = 0; k < n; k++)
        if (start[k + 1] - start[k] > *widest) *widest = start[k + 1] - start[k];
    return n;
}

q3_status q3_step_pack(const q3_step_layout *l, const q3_config *c, const q3_batch *b, const q3_kv_cache *kv,
                       int block_tokens, int chunk, void *dst, q3_step_info *info, q3_error *e) {
    int T = b->n_tokens;
    if (T <= 0 || T > l->max_tokens)
        return q3_fail(e, Q3_EINVAL, "cuda step: %d tokens, the plan holds 1..%d", T, l->max_tokens);
    if (kv->max_pages_per_seq > l->stride)
        return q3_fail(e, Q3_EINVAL, "cuda step: page tables of %d pages, the plan holds %d", kv->max_pages_per_seq,
                       l->stride);
    unsigned char *base = dst;
    int32_t *tokens = (int32_t *)(base + l->tokens), *pos = (int32_t *)(base + l->pos);
    int32_t *token_row = (int32_t *)(base + l->token_row), *pages = (int32_t *)(base + l->pages);
    int32_t *seqs = (int32_t *)(base + l->seqs);
    int n_rows = 0, longest = 0;
    info->kv_bytes = 0;
    for (int i = 0; i < T; i++) {
        tokens[i] = b->tokens[i];
        pos[i] = b->pos[i];
        if ((token_row[i] = row_of(seqs, &n_rows, l->max_rows, b->seq[i])) < 0)
            return q3_fail(e, Q3_EINVAL, "cuda step: more than %d sequences in one batch", l->max_rows);
        q3_rope_angles(c, b->pos[i], (float *)(base + l->cos) + (size_t)i * l->half,
                       (float *)(base + l->sin) + (size_t)i * l->half);
        if (b->pos[i] + 1 > longest) longest = b->pos[i] + 1;
        info->kv_bytes += (uint64_t)(b->pos[i] + 1) * kv->n_heads * kv->head_row_bytes * 2;
    }
    for (int r = 0; r < n_rows; r++)
        memcpy(pages + (size_t)r * l->stride, kv->page_table + (size_t)seqs[r] * kv->max_pages_per_seq,
               (size_t)kv->max_pages_per_seq * sizeof *pages);
    info->n_tokens = T;
    info->n_rows = n_rows;
    info->n_blocks = make_blocks(b, block_tokens, (int32_t *)(base + l->block_start), &info->widest_block);
    info->max_chunks = (longest + chunk - 1) / chunk;
    info->upload_bytes = l->pages + (size_t)n_rows * l->stride * sizeof *pages;
    return Q3_OK;
}
