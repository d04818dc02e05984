/* The Qwen3-MoE forward pass over one batch, top to bottom like the architecture:
 *
 *   x = embed(tokens)
 *   for each layer:  x += attention(rmsnorm(x))      q/k RMSNorm, NeoX RoPE, GQA, paged KV
 *                    x += moe_or_dense(rmsnorm(x))   softmax router, top-k, SwiGLU experts
 *   logits = lm_head(rmsnorm(x))                     only for the rows that want them
 *
 * The blocks live in src/cpu/attention.c and src/cpu/moe.c; this file owns the run state. */
#include <stdlib.h>
#include <string.h>
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "dist/dist.h"
#include "model/runner.h"
#include "quant/types.h"

static size_t max_act_bytes(const q3_model *m) {
    const q3_config *c = &m->cfg;
    size_t best = q3_act_row_bytes(m->lm_head.type, c->hidden_size);
    for (int l = 0; l < c->n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        const q3_mat *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->router, &L->dense.gate, &L->dense.down,
                                L->is_moe ? &L->experts[0].gate : NULL};
        for (size_t i = 0; i < sizeof mats / sizeof *mats; i++) {
            if (!mats[i] || !mats[i]->data) continue;
            size_t b = q3_act_row_bytes(mats[i]->type, mats[i]->cols);
            if (b > best) best = b;
        }
    }
    return best;
}

/* Bytes per row for the down projections' inputs, over every MoE and dense layer. */
static size_t max_down_act_bytes(const q3_model *m, int *ffn_dim) {
    const q3_config *c = &m->cfg;
    size_t best = 0;
    *ffn_dim = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        const q3_mat *down = L->is_moe ? &L->experts[0].down : &L->dense.down;
        size_t b = q3_act_row_bytes(down->type, down->cols);
        if (b > best) best = b;
        if (down->cols > *ffn_dim) *ffn_dim = (int)down->cols;
    }
    return best;
}

q3_status q3_runner_new(q3_runner **out, const q3_model *m, int max_tokens, int n_threads, q3_error *e) {
    *out = NULL;
    if (max_tokens <= 0) return q3_fail(e, Q3_EINVAL, "runner: max batch tokens must be positive");
    const q3_config *c = &m->cfg;
    q3_runner *r = calloc(1, sizeof *r);
    if (!r) return q3_fail(e, Q3_ENOMEM, "runner: out of memory");
    q3_status st = q3_pool_new(&r->pool, n_threads, n_threads > 0, e);
    if (st) {
        free(r);
        return st;
    }
    r->m = m;
    r->max_tokens = max_tokens;
    if (m->dist && q3_dist_rank(m->dist) == 0) {
        r->dist_id = q3_dist_next_id(m->dist);
        q3_dist_runner_new(m->dist, r->dist_id, m->dist_id, max_tokens, n_threads);
    }
    size_t T = (size_t)max_tokens, H = (size_t)c->hidden_size, qd = (size_t)c->n_heads * c->head_dim;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim, K = (size_t)(c->n_experts_used ? c->n_experts_used : 1);
    size_t E = (size_t)(c->n_experts ? c->n_experts : 1);
    int ffn_dim;
    r->act_bytes = max_act_bytes(m);
    r->h_act_bytes = max_down_act_bytes(m, &ffn_dim);
    /* Dense layers run as one "expert" per token: size the assignment buffers for both. */
    size_t A = T * K;
    r->x = malloc(T * H * sizeof(float));
    r->xn = malloc(T * H * sizeof(float));
    r->q = malloc(T * qd * sizeof(float));
    r->k = malloc(T * kvd * sizeof(float));
    r->v = malloc(T * kvd * sizeof(float));
    r->attn = malloc(T * qd * sizeof(float));
    r->out = malloc(T * H * sizeof(float));
    r->rope_cos = malloc(T * (size_t)c->head_dim / 2 * sizeof(float));
    r->rope_sin = malloc(T * (size_t)c->head_dim / 2 * sizeof(float));
    r->act = malloc(T * r->act_bytes);
    r->router = malloc(T * E * sizeof(float));
    r->top_expert = malloc(T * K * sizeof(int32_t));
    r->top_weight = malloc(T * K * sizeof(float));
    r->slot_of = malloc(T * K * sizeof(int32_t));
    r->expert_start = malloc((E + 1) * sizeof(int));
    r->assign_token = malloc(A * sizeof(int32_t));
    r->active = malloc(E * sizeof(int32_t));
    r->h = malloc(A * (size_t)ffn_dim * sizeof(float));
    r->h_act = malloc(A * r->h_act_bytes);
    r->y = malloc(A * H * sizeof(float));
    if (!r->x || !r->xn || !r->q || !r->k || !r->v || !r->attn || !r->out || !r->rope_cos || !r->rope_sin ||
        !r->act || !r->router || !r->top_expert || !r->top_weight || !r->slot_of || !r->expert_start ||
        !r->assign_token || !r->active || !r->h || !r->h_act || !r->y) {
        q3_runner_free(r);
        return q3_fail(e, Q3_ENOMEM, "runner: cannot allocate buffers for %d tokens", max_tokens);
    }
    *out = r;
    return Q3_OK;
}

void q3_runner_free(q3_runner *r) {
    if (!r) return;
    if (r->dist_id) q3_dist_runner_free(r->m->dist, r->dist_id);
    q3_pool_free(r->pool);
    void *bufs[] = {r->x, r->xn, r->q, r->k, r->v, r->attn, r->out, r->rope_cos, r->rope_sin, r->act,
                    r->attn_scratch, r->attn_chunk_start, r->attn_block_start, r->attn_partials, r->router, r->top_expert, r->top_weight, r->slot_of, r->expert_start,
                    r->assign_token, r->active, r->h, r->h_act, r->y};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(r);
}

void q3_runner_set_trace(q3_runner *r, q3_trace *t) { r->trace = t; }
void q3_runner_set_dist_id(q3_runner *r, int id) { r->dist_id = id; }

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

static void embed(q3_runner *r, const q3_batch *b) {
    const q3_mat *E = &r->m->embed;
    const q3_type_traits *tr = q3_type_get(E->type);
    int H = r->m->cfg.hidden_size, half = r->m->cfg.head_dim / 2;
    for (int i = 0; i < b->n_tokens; i++) {
        tr->to_float((const char *)E->data + (size_t)b->tokens[i] * E->row_bytes, r->x + (size_t)i * H, H);
        q3_rope_angles(r->rope_cos + (size_t)i * half, r->rope_sin + (size_t)i * half, b->pos[i],
                       r->m->cfg.head_dim, r->m->cfg.rope_theta);
    }
}

static void add_into(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

static void trace_hidden(q3_runner *r, int index, const float *src, int n) {
    if (!r->trace || !r->trace->hidden) return;
    size_t H = (size_t)r->m->cfg.hidden_size;
    memcpy(r->trace->hidden + (size_t)index * n * H, src, (size_t)n * H * sizeof(float));
}

/* Bytes each layer's attention reads for this batch: every token's cached keys and values (the
 * feed-forward blocks count their own weights as they run, src/cpu/moe.c). */
static uint64_t kv_bytes(const q3_kv_cache *kv, const q3_batch *b) {
    uint64_t n = 0;
    for (int i = 0; i < b->n_tokens; i++) n += (uint64_t)(b->pos[i] + 1) * kv->n_heads * kv->head_row_bytes * 2;
    return n;
}

/* Final norm and lm_head for the rows that want logits, packed in batch order. */
static void head(q3_runner *r, const q3_batch *b, float *logits) {
    const q3_config *c = &r->m->cfg;
    int H = c->hidden_size, rows = 0;
    for (int i = 0; i < b->n_tokens; i++) {
        if (b->want_logits && !b->want_logits[i]) continue;
        q3_rmsnorm(r->xn + (size_t)rows * H, r->x + (size_t)i * H, r->m->final_norm, H, c->rms_eps);
        rows++;
    }
    if (r->trace && !b->want_logits) trace_hidden(r, c->n_layers, r->xn, b->n_tokens);
    if (rows == 0 || !logits) return;
    q3_act_convert(r->m->lm_head.type, r->xn, H, rows, r->act);
    q3_matmul(r->pool, &r->m->lm_head, r->act, rows, logits, c->vocab_size);
}

/* A multi-process batch runs its MoE layers in slices of at least this many tokens, so that each
 * slice's sums travel while the next slice computes. Each slice reads its experts' weights again,
 * which must cost little: on the 2-core EPYC of bench/RESULTS.md, Qwen3-30B-A3B's layers at
 * Q4_K_M prefill at the same rate per token for 64, 128 and 256 tokens (648 / 653 / 629 tok/s, one
 * process) and 11% slower for 32. Decode steps (a few tokens) stay in one piece. */
#define OVERLAP_SLICE_TOKENS 64
#define OVERLAP_MAX_SLICES 4

static int overlap_slices(const q3_runner *r, int n) {
    if (q3_dist_size(r->m->dist) == 1) return 1; /* nothing to overlap: one process */
    int slices = n / OVERLAP_SLICE_TOKENS;
    return slices < 1 ? 1 : slices > OVERLAP_MAX_SLICES ? OVERLAP_MAX_SLICES : slices;
}

/* The residual add of attention's output, the FFN norm, and the feed-forward block with its sums,
 * for all n tokens at once: every rank waits while each sum travels. */
/* Rows [t0, t1): attention's summed output into the residual stream, then the FFN norm. */
static void residual_and_norm(q3_runner *r, const q3_layer *L, int t0, int t1) {
    const q3_config *c = &r->m->cfg;
    size_t H = (size_t)c->hidden_size;
    add_into(r->x + t0 * H, r->out + t0 * H, (size_t)(t1 - t0) * H);
    for (int i = t0; i < t1; i++) q3_rmsnorm(r->xn + i * H, r->x + i * H, L->ffn_norm, (int)H, c->rms_eps);
}

static void ffn_whole(q3_runner *r, const q3_layer *L, int n) {
    size_t H = (size_t)r->m->cfg.hidden_size;
    /* Each rank's heads give a partial o_proj sum; the tp group adds them up. */
    q3_dist_allreduce(r->m->dist, r->out, (size_t)n * H, Q3_GROUP_TP);
    residual_and_norm(r, L, 0, n);
    if (L->is_moe) {
        q3_moe_block(r, L, 0, n);
        /* Experts are dealt over every rank, so the whole world adds up its outputs. */
        q3_dist_allreduce(r->m->dist, r->out, (size_t)n * H, Q3_GROUP_WORLD);
    } else {
        q3_dense_ffn_block(r, &L->dense, n);
        q3_dist_allreduce(r->m->dist, r->out, (size_t)n * H, Q3_GROUP_TP);
    }
}

/* The same for an MoE layer in slices of tokens, each depending only on its own rows: all the
 * o_proj sums start at once; slice s waits for its own, adds, norms and runs its experts (turning
 * the progress engine as it goes), then starts its world sum. Slice s's experts thus hide the
 * o_proj sums of the slices after it and the world sums of those before it; only the first o_proj
 * sum and the last world sum are waited for in full. Every token's result is the same as in one
 * piece (per-token kernels, the same sums), so the slicing never changes the output. */
static void ffn_sliced(q3_runner *r, const q3_layer *L, int n, int slices) {
    size_t H = (size_t)r->m->cfg.hidden_size;
    q3_dist *d = r->m->dist;
    q3_dist_pending *attn_sum[OVERLAP_MAX_SLICES], *moe_sum[OVERLAP_MAX_SLICES];
    int start[OVERLAP_MAX_SLICES + 1];
    for (int s = 0; s <= slices; s++) start[s] = (int)((int64_t)n * s / slices);
    for (int s = 0; s < slices; s++)
        attn_sum[s] = q3_dist_allreduce_start(d, r->out + start[s] * H, (size_t)(start[s + 1] - start[s]) * H, Q3_GROUP_TP);
    for (int s = 0; s < slices; s++) {
        q3_dist_allreduce_wait(d, attn_sum[s]);
        residual_and_norm(r, L, start[s], start[s + 1]);
        q3_moe_block(r, L, start[s], start[s + 1]);
        moe_sum[s] = q3_dist_allreduce_start(d, r->out + start[s] * H, (size_t)(start[s + 1] - start[s]) * H, Q3_GROUP_WORLD);
    }
    for (int s = 0; s < slices; s++) q3_dist_allreduce_wait(d, moe_sum[s]);
}

q3_status q3_forward(q3_runner *r, q3_kv_cache *kv, const q3_batch *b, float *logits, q3_error *e) {
    const q3_config *c = &r->m->cfg;
    q3_dist_forward(r->m->dist, r->dist_id, kv->dist_id, b);
    q3_status st = check_batch(r, kv, b, e);
    if (st || (st = q3_attention_prepare(r, b, e)) || (st = reserve_cache(kv, b, e))) return st;
    int n = b->n_tokens;
    size_t H = (size_t)c->hidden_size;
    embed(r, b);
    trace_hidden(r, 0, r->x, n);
    uint64_t layer_kv_bytes = kv_bytes(kv, b);
    for (int l = 0; l < c->n_layers; l++) {
        const q3_layer *L = &r->m->layers[l];
        q3_attention_block(r, kv, l, b);
        r->bytes_read += q3_mat_bytes(&L->wq) + q3_mat_bytes(&L->wk) + q3_mat_bytes(&L->wv) + q3_mat_bytes(&L->wo) +
                         layer_kv_bytes;
        int slices = L->is_moe ? overlap_slices(r, n) : 1;
        if (slices > 1) ffn_sliced(r, L, n, slices);
        else ffn_whole(r, L, n);
        if (L->is_moe && r->trace && r->trace->router_logits)
            memcpy(r->trace->router_logits + (size_t)l * n * c->n_experts, r->router,
                   (size_t)n * c->n_experts * sizeof(float));
        add_into(r->x, r->out, (size_t)n * H);
        if (l + 1 < c->n_layers) trace_hidden(r, l + 1, r->x, n);
    }
    head(r, b, logits);
    if (logits) r->bytes_read += q3_mat_bytes(&r->m->lm_head) + (uint64_t)n * q3_row_bytes(r->m->embed.type, H);
    for (int i = 0; i < n; i++)
        if (b->pos[i] + 1 > kv->seq_len[b->seq[i]]) q3_kv_set_len(kv, b->seq[i], b->pos[i] + 1);
    return Q3_OK;
}
