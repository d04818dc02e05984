/* The Qwen3-MoE forward pass over one batch, top to bottom like the architecture:
 *
 *   x = embed(tokens)
 *   for each layer:  x += attention(rmsnorm(x))      attention.c: q/k norm, RoPE, GQA, paged KV
 *                    x += moe_or_dense(rmsnorm(x))   moe.c: softmax router, top-k, SwiGLU experts
 *   logits = lm_head(rmsnorm(x))                     only for the rows that want them
 *
 * Every step runs on the runner's backend (model/backend.h). When the model is split over
 * several processes, each block's output is a partial sum that the processes add up (the
 * runner's collective) before the residual add. */
#include <string.h>
#include "model/runner.h"

/* Positions of each sequence must continue exactly where its cache ends. */
static q3_status check_batch(const q3_runner *r, const q3_kv_cache *kv, const q3_batch *b, q3_error *e) {
    const q3_config *c = &r->m->cfg;
    if (b->n_tokens <= 0 || b->n_tokens > r->max_tokens)
        return q3_fail(e, Q3_EINVAL, "batch: %d tokens (1..%d)", b->n_tokens, r->max_tokens);
    for (int i = 0; i < b->n_tokens; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= c->vocab_size)
            return q3_fail(e, Q3_EINVAL, "batch: token %d at index %d is outside the vocabulary of %d",
                           b->tokens[i], i, c->vocab_size);
        if (b->seq[i] < 0 || b->seq[i] >= kv->max_seqs)
            return q3_fail(e, Q3_EINVAL, "batch: sequence %d at index %d out of range", b->seq[i], i);
        int expect = kv->seq_len[b->seq[i]];
        for (int j = 0; j < i; j++)
            if (b->seq[j] == b->seq[i]) expect++;
        if (b->pos[i] != expect)
            return q3_fail(e, Q3_EINVAL, "batch: sequence %d token at position %d, expected %d", b->seq[i],
                           b->pos[i], expect);
    }
    return Q3_OK;
}

static q3_status reserve_cache(q3_kv_cache *kv, const q3_batch *b, q3_error *e) {
    for (int i = 0; i < b->n_tokens; i++) {
        q3_status st = q3_kv_reserve(kv, b->seq[i], b->pos[i] + 1, e);
        if (st) return st;
    }
    return Q3_OK;
}

/* Adds buf up over the processes of group g; nothing to do in one process. */
static void sum_over(q3_runner *r, float *buf, size_t n, q3_group g) {
    if (r->coll.size > 1) r->coll.allreduce(r->coll.ctx, buf, n, g);
}

static void trace_hidden(q3_runner *r, int index, const float *src, int n) {
    if (!r->trace || !r->trace->hidden) return;
    size_t H = (size_t)r->m->cfg.hidden_size, bytes = (size_t)n * H * sizeof(float);
    r->be->ops->read(r->be, r->trace->hidden + (size_t)index * n * H, src, bytes);
}

static void trace_router(q3_runner *r, int layer, int n) {
    if (!r->trace || !r->trace->router_logits) return;
    size_t E = (size_t)r->m->cfg.n_experts;
    r->be->ops->read(r->be, r->trace->router_logits + (size_t)layer * n * E, r->router, (size_t)n * E * sizeof(float));
}

/* A multi-process batch runs its MoE layers in slices of at least this many tokens, so that each
 * slice's sums travel while the next slice computes. Each slice reads its experts' weights again,
 * which must cost little: on the 2-core EPYC of bench/RESULTS.md, Qwen3-30B-A3B's layers at
 * Q4_K_M prefill at the same rate per token for 64, 128 and 256 tokens (648 / 653 / 629 tok/s, one
 * process) and 11% slower for 32. Decode steps (a few tokens) stay in one piece. */
#define OVERLAP_SLICE_TOKENS 64
#define OVERLAP_MAX_SLICES 4

static int overlap_slices(const q3_runner *r, int n) {
    if (r->coll.size == 1 || !r->coll.start) return 1; /* nothing to overlap: one process */
    int slices = n / OVERLAP_SLICE_TOKENS;
    return slices < 1 ? 1 : slices > OVERLAP_MAX_SLICES ? OVERLAP_MAX_SLICES : slices;
}

/* Rows [t0, t1): attention's summed output into the residual stream, then the FFN norm. */
static void residual_and_norm(q3_runner *r, const q3_layer *L, int t0, int t1) {
    const q3_config *c = &r->m->cfg;
    size_t H = (size_t)c->hidden_size;
    r->be->ops->add(r->be, r->x + t0 * H, r->out + t0 * H, (size_t)(t1 - t0) * H);
    r->be->ops->rmsnorm(r->be, r->xn + t0 * H, r->x + t0 * H, NULL, t1 - t0, L->ffn_norm, (int)H, c->rms_eps);
}

/* The feed-forward half of a layer, whole: every rank waits while each sum travels. Each rank's
 * heads give a partial o_proj sum that the tp group adds up; experts are dealt over every rank,
 * so the whole world adds up their outputs; a dense layer's rows are split over the tp group. */
static void ffn_whole(q3_runner *r, const q3_layer *L, int n) {
    size_t H = (size_t)r->m->cfg.hidden_size;
    sum_over(r, r->out, (size_t)n * H, Q3_GROUP_TP);
    residual_and_norm(r, L, 0, n);
    if (L->is_moe) {
        q3_moe_layer(r, L, 0, n);
        sum_over(r, r->out, (size_t)n * H, Q3_GROUP_WORLD);
    } else {
        q3_dense_layer(r, L, n);
        sum_over(r, r->out, (size_t)n * H, Q3_GROUP_TP);
    }
}

/* The alternative for an MoE layer of a long multi-process batch: slices of tokens, each
 * depending only on its own rows. All the o_proj sums start at once; slice s waits for its own,
 * adds, norms and runs its experts (the backend turns the progress engine as it goes), then
 * starts its world sum. Slice s's experts thus hide the o_proj sums of the slices after it and
 * the world sums of those before it; only the first o_proj sum and the last world sum are waited
 * for in full. Every token's result is the same as in one piece (per-token kernels, the same
 * sums), so the slicing never changes the output. */
static void ffn_overlapped(q3_runner *r, const q3_layer *L, int n, int slices) {
    size_t H = (size_t)r->m->cfg.hidden_size;
    q3_collective *cl = &r->coll;
    void *attn_sum[OVERLAP_MAX_SLICES], *moe_sum[OVERLAP_MAX_SLICES];
    int start[OVERLAP_MAX_SLICES + 1];
    for (int s = 0; s <= slices; s++) start[s] = (int)((int64_t)n * s / slices);
    for (int s = 0; s < slices; s++)
        attn_sum[s] = cl->start(cl->ctx, r->out + start[s] * H, (size_t)(start[s + 1] - start[s]) * H, Q3_GROUP_TP);
    r->be->progress = cl->progress;
    r->be->progress_ctx = cl->ctx;
    for (int s = 0; s < slices; s++) {
        cl->wait(cl->ctx, attn_sum[s]);
        residual_and_norm(r, L, start[s], start[s + 1]);
        q3_moe_layer(r, L, start[s], start[s + 1]);
        moe_sum[s] = cl->start(cl->ctx, r->out + start[s] * H, (size_t)(start[s + 1] - start[s]) * H, Q3_GROUP_WORLD);
    }
    r->be->progress = NULL;
    for (int s = 0; s < slices; s++) cl->wait(cl->ctx, moe_sum[s]);
}

static void layer(q3_runner *r, int l) {
    const q3_config *c = &r->m->cfg;
    const q3_layer *L = &r->m->layers[l];
    int n = r->b->n_tokens, H = c->hidden_size;
    r->be->ops->rmsnorm(r->be, r->xn, r->x, NULL, n, L->attn_norm, H, c->rms_eps);
    q3_attention_layer(r, l);
    int slices = L->is_moe ? overlap_slices(r, n) : 1;
    if (slices > 1) ffn_overlapped(r, L, n, slices);
    else ffn_whole(r, L, n);
    r->be->ops->add(r->be, r->x, r->out, (size_t)n * H);
    if (L->is_moe) trace_router(r, l, n);
    if (l + 1 < c->n_layers) trace_hidden(r, l + 1, r->x, n);
}

/* Final norm and lm_head for the rows that want logits, packed in batch order. */
static void head(q3_runner *r, float *logits) {
    const q3_config *c = &r->m->cfg;
    const q3_batch *b = r->b;
    const q3_backend_ops *op = r->be->ops;
    int H = c->hidden_size, rows = 0;
    for (int i = 0; i < b->n_tokens; i++)
        if (!b->want_logits || b->want_logits[i]) r->head_rows[rows++] = i;
    op->rmsnorm(r->be, r->xn, r->x, b->want_logits ? r->head_rows : NULL, rows, r->m->final_norm, H, c->rms_eps);
    if (r->trace && !b->want_logits) trace_hidden(r, c->n_layers, r->xn, b->n_tokens);
    if (rows == 0 || !logits) return;
    const q3_mat *w = &r->m->lm_head;
    if (r->be->host_memory) {
        op->matmul(r->be, 1, &w, r->xn, rows, &logits);
        return;
    }
    size_t V = (size_t)c->vocab_size;
    for (int t0 = 0; t0 < rows; t0 += Q3_HEAD_ROWS) {
        int nt = rows - t0 < Q3_HEAD_ROWS ? rows - t0 : Q3_HEAD_ROWS;
        op->matmul(r->be, 1, &w, r->xn + (size_t)t0 * H, nt, &r->logits);
        op->read(r->be, logits + (size_t)t0 * V, r->logits, (size_t)nt * V * sizeof(float));
    }
}

q3_status q3_runner_forward(q3_runner *r, q3_kv_cache *kv, const q3_batch *b, float *logits, q3_error *e) {
    q3_status st = check_batch(r, kv, b, e);
    if (st || (st = reserve_cache(kv, b, e)) || (st = r->be->ops->begin(r->be, b, kv, e))) return st;
    r->b = b;
    r->be->ops->embed(r->be, &r->m->embed, r->x);
    trace_hidden(r, 0, r->x, b->n_tokens);
    for (int l = 0; l < r->m->cfg.n_layers; l++) layer(r, l);
    head(r, logits);
    for (int i = 0; i < b->n_tokens; i++)
        if (b->pos[i] + 1 > kv->seq_len[b->seq[i]]) q3_kv_set_len(kv, b->seq[i], b->pos[i] + 1);
    r->b = NULL;
    return Q3_OK;
}
