/* Grouped-query attention over the paged KV cache: softmax(q K^T / sqrt(d)) V for every token of
 * a batch, over its own sequence's positions 0..pos.
 *
 * Work is cut by (token, key/value head), so each cached K and V row is read once for all the
 * query heads that share it, and, within that, by fixed chunks of CHUNK positions. Each chunk
 * gives a partial softmax (its max, its sum of exponentials, its weighted sum of V rows); the
 * partials are folded left to right. Decoding a few tokens over a long context computes the
 * chunks in parallel and folds them afterwards; a prefill batch, which has work enough, folds
 * each token's chunks as it goes. Both do the very same arithmetic in the same order, and the
 * chunking depends only on the token's own position, so a token's output is bit-identical
 * whatever else shares its batch and however its prompt was split into steps. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cpu/vec.h"
#include "model/runner.h"
#include "quant/types.h"

#define CHUNK 256
/* Partials kept for parallel decoding: beyond this the batch is big enough to fold in place. */
#define MAX_PARTIAL_FLOATS (4u << 20)

typedef struct attn_job {
    q3_runner *r;
    const q3_kv_cache *kv;
    const q3_batch *b;
    int layer;
    int group;            /* query heads per key/value head */
    int *chunk_start;     /* [n_tokens + 1] first chunk index of each token (parallel mode) */
} attn_job;

static int n_chunks(int len) { return (len + CHUNK - 1) / CHUNK; }

/* The local query heads [*h0, *h1) that read local key/value head g. */
static void heads_of(const q3_shard *s, int group, int g, int *h0, int *h1) {
    int lo = (s->kv_head0 + g) * group, hi = lo + group;
    *h0 = (lo > s->q_head0 ? lo : s->q_head0) - s->q_head0;
    *h1 = (hi < s->q_head0 + s->n_q_heads ? hi : s->q_head0 + s->n_q_heads) - s->q_head0;
}

/* Floats of one partial for one query head: max, sum, then head_dim accumulators. */
static int partial_floats(int hd) { return hd + 2; }

/* scores[t][p - p0] = K[p] . q_t for the chunk's positions: through the type's tile kernel over
 * runs of positions that are contiguous in one page (keys as its weight rows, the query heads as
 * its tokens), else one dot product at a time. Both give the same bits. */
static void score_keys(const attn_job *j, const q3_type_traits *tr, int seq, int g, int p0, int p1, const float *q,
                       int nh, float *scores) {
    const q3_kv_cache *kv = j->kv;
    int hd = j->r->m->cfg.head_dim;
    size_t head_off = (size_t)g * hd * kv->elem_size, stride = (size_t)kv->kv_dim * kv->elem_size;
    const void *qs[Q3_GEMM_COLS];
    for (int t = 0; t < nh && t < Q3_GEMM_COLS; t++) qs[t] = q + (size_t)t * hd;
    for (int p = p0; p < p1;) {
        int in_page = kv->page_size - p % kv->page_size, run = p1 - p < in_page ? p1 - p : in_page;
        if (run > Q3_GEMM_ROWS) run = Q3_GEMM_ROWS;
        const unsigned char *k = q3_kv_row(kv, kv->k, j->layer, seq, p) + head_off;
        if (tr->gemm && nh <= Q3_GEMM_COLS) {
            tr->gemm(hd, k, stride, run, qs, nh, scores + (p - p0), CHUNK);
        } else {
            for (int r = 0; r < run; r++)
                for (int t = 0; t < nh; t++)
                    scores[t * CHUNK + p - p0 + r] = tr->vec_dot(hd, k + r * stride, q + (size_t)t * hd);
        }
        p += run;
    }
}

/* Chunk c of token i over key/value head g: a partial per query head into out [nh][hd + 2].
 * scratch holds nh * CHUNK scores and one V row in f32. */
static void chunk_partial(const attn_job *j, int i, int g, int c, float *scratch, float *out) {
    const q3_config *cfg = &j->r->m->cfg;
    const q3_kv_cache *kv = j->kv;
    const q3_type_traits *tr = q3_type_get(kv->type);
    int hd = cfg->head_dim, nq = j->r->m->shard.n_q_heads, seq = j->b->seq[i], h0, h1;
    heads_of(&j->r->m->shard, j->group, g, &h0, &h1);
    int nh = h1 - h0, p0 = c * CHUNK, p1 = p0 + CHUNK < j->b->pos[i] + 1 ? p0 + CHUNK : j->b->pos[i] + 1;
    size_t head_off = (size_t)g * hd * kv->elem_size;
    const float *q = j->r->q + ((size_t)i * nq + h0) * hd;
    float *scores = scratch, *v = scratch + (size_t)nh * CHUNK, scale = 1.0f / sqrtf((float)hd);
    score_keys(j, tr, seq, g, p0, p1, q, nh, scores);
    for (int t = 0; t < nh; t++)
        for (int p = 0; p < p1 - p0; p++) scores[t * CHUNK + p] *= scale;
    int pf = partial_floats(hd);
    const q3_vec_ops *vec = q3_vec();
    for (int t = 0; t < nh; t++) {
        float *s = scores + t * CHUNK, *o = out + (size_t)t * pf, m = -INFINITY;
        for (int p = 0; p < p1 - p0; p++) m = s[p] > m ? s[p] : m;
        o[0] = m;
        o[1] = vec->exp_sum(s, m, p1 - p0);
        memset(o + 2, 0, (size_t)hd * sizeof(float));
    }
    for (int p = p0; p < p1; p++) {
        const void *row = q3_kv_row(kv, kv->v, j->layer, seq, p) + head_off;
        const float *vf = row;
        if (kv->type == Q3_TYPE_F16) vec->f16_to_f32(row, v, hd), vf = v;
        else if (kv->type == Q3_TYPE_BF16) vec->bf16_to_f32(row, v, hd), vf = v;
        for (int t = 0; t < nh; t++) vec->axpy(out + (size_t)t * pf + 2, scores[t * CHUNK + p - p0], vf, hd);
    }
}

/* state <- state (+) partial, for nh query heads: the online-softmax merge. */
static void fold(float *state, const float *part, int nh, int hd) {
    int pf = partial_floats(hd);
    for (int t = 0; t < nh; t++) {
        float *s = state + (size_t)t * pf;
        const float *p = part + (size_t)t * pf;
        float m = s[0] > p[0] ? s[0] : p[0], a = expf(s[0] - m), b = expf(p[0] - m);
        s[0] = m;
        s[1] = s[1] * a + p[1] * b;
        for (int d = 0; d < hd; d++) s[2 + d] = s[2 + d] * a + p[2 + d] * b;
    }
}

static void finish(const attn_job *j, int i, int g, const float *state) {
    int hd = j->r->m->cfg.head_dim, nq = j->r->m->shard.n_q_heads, pf = partial_floats(hd), h0, h1;
    heads_of(&j->r->m->shard, j->group, g, &h0, &h1);
    for (int t = 0; t < h1 - h0; t++) {
        const float *s = state + (size_t)t * pf;
        float *out = j->r->attn + ((size_t)i * nq + h0 + t) * hd;
        for (int d = 0; d < hd; d++) out[d] = s[2 + d] / s[1];
    }
}

static float *thread_scratch(const attn_job *j, int thread) {
    return j->r->attn_scratch + (size_t)thread * j->r->attn_scratch_floats;
}

/* Fold mode: one task per (token, kv head), chunks computed and folded in turn. */
static void fold_task(void *ctx, int task, int thread) {
    attn_job *j = ctx;
    int nkv = j->r->m->shard.n_kv_heads, i = task / nkv, g = task % nkv;
    int hd = j->r->m->cfg.head_dim, pf = partial_floats(hd);
    int h0, h1;
    heads_of(&j->r->m->shard, j->group, g, &h0, &h1);
    /* scratch: scores [group][CHUNK], a V row [hd], the running state and one partial */
    float *scratch = thread_scratch(j, thread), *state = scratch + (size_t)j->group * CHUNK + hd;
    float *part = state + (size_t)j->group * pf;
    chunk_partial(j, i, g, 0, scratch, state);
    for (int c = 1; c < n_chunks(j->b->pos[i] + 1); c++) {
        chunk_partial(j, i, g, c, scratch, part);
        fold(state, part, h1 - h0, hd);
    }
    finish(j, i, g, state);
}

/* Parallel mode: one task per (token, kv head, chunk) into the partials buffer ... */
static float *partial_at(const attn_job *j, int i, int g, int c) {
    size_t per = (size_t)j->group * partial_floats(j->r->m->cfg.head_dim);
    return j->r->attn_partials + ((size_t)(j->chunk_start[i] + c) * j->r->m->shard.n_kv_heads + g) * per;
}

static void chunk_task(void *ctx, int task, int thread) {
    attn_job *j = ctx;
    int nkv = j->r->m->shard.n_kv_heads, flat = task / nkv, g = task % nkv, i = 0;
    while (flat >= j->chunk_start[i + 1]) i++;
    int c = flat - j->chunk_start[i];
    chunk_partial(j, i, g, c, thread_scratch(j, thread), partial_at(j, i, g, c));
}

/* ... then one per (token, kv head) folds its chunks left to right. */
static void merge_task(void *ctx, int task, int thread) {
    (void)thread;
    attn_job *j = ctx;
    int nkv = j->r->m->shard.n_kv_heads, i = task / nkv, g = task % nkv, hd = j->r->m->cfg.head_dim, h0, h1;
    heads_of(&j->r->m->shard, j->group, g, &h0, &h1);
    float *state = partial_at(j, i, g, 0);
    for (int c = 1; c < n_chunks(j->b->pos[i] + 1); c++) fold(state, partial_at(j, i, g, c), h1 - h0, hd);
    finish(j, i, g, state);
}

q3_status q3_attention_prepare(q3_runner *r, const q3_batch *b, q3_error *e) {
    const q3_config *c = &r->m->cfg;
    int group = c->n_heads / c->n_kv_heads, hd = c->head_dim, pf = partial_floats(hd);
    if (!r->attn_scratch) {
        r->attn_scratch_floats = (size_t)group * (CHUNK + 2 * pf) + hd;
        r->attn_scratch = malloc(r->attn_scratch_floats * q3_pool_size(r->pool) * sizeof(float));
        r->attn_chunk_start = malloc(((size_t)r->max_tokens + 1) * sizeof(int));
        if (!r->attn_scratch || !r->attn_chunk_start) return q3_fail(e, Q3_ENOMEM, "attention: out of memory");
    }
    size_t chunks = 0;
    for (int i = 0; i < b->n_tokens; i++) chunks += (size_t)n_chunks(b->pos[i] + 1);
    size_t need = chunks * r->m->shard.n_kv_heads * group * pf;
    r->attn_parallel = need <= MAX_PARTIAL_FLOATS && b->n_tokens * r->m->shard.n_kv_heads < 4 * q3_pool_size(r->pool) &&
                       chunks > (size_t)b->n_tokens;
    if (!r->attn_parallel || need <= r->attn_partials_floats) return Q3_OK;
    float *p = realloc(r->attn_partials, need * sizeof(float));
    if (!p) return q3_fail(e, Q3_ENOMEM, "attention: out of memory for %zu partials", chunks);
    r->attn_partials = p;
    r->attn_partials_floats = need;
    return Q3_OK;
}

void q3_attend(q3_runner *r, const q3_kv_cache *kv, int layer, const q3_batch *b) {
    const q3_config *c = &r->m->cfg;
    int nkv = r->m->shard.n_kv_heads, n = b->n_tokens;
    attn_job j = {r, kv, b, layer, c->n_heads / c->n_kv_heads, r->attn_chunk_start};
    if (!r->attn_parallel) {
        q3_pool_run(r->pool, fold_task, &j, n * nkv);
        return;
    }
    j.chunk_start[0] = 0;
    for (int i = 0; i < n; i++) j.chunk_start[i + 1] = j.chunk_start[i] + n_chunks(b->pos[i] + 1);
    q3_pool_run(r->pool, chunk_task, &j, j.chunk_start[n] * nkv);
    q3_pool_run(r->pool, merge_task, &j, n * nkv);
}
