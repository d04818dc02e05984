/* The attention block on the CPU: projections, per-head q/k RMSNorm, NeoX RoPE, keys and values
 * appended to the paged cache, then grouped-query attention of every token over its own
 * sequence's cached positions (attend.c; they include the batch's earlier tokens: causal by
 * position), and the output projection. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "model/runner.h"
#include "quant/types.h"

static void project(q3_runner *r, const q3_mat *w, const float *x, int n, float *y) {
    q3_matmul(r->pool, w, q3_act_prepare(r->pool, w->type, x, w->cols, n, r->act), n, y, w->rows);
}

/* q, k and v from the normed input: one conversion and one job when the three matrices take
 * the same activations (they usually share a type), else one after another. */
static void project_qkv(q3_runner *r, const q3_layer *L, int n) {
    q3_type t = q3_type_get(L->wq.type)->vec_dot_type;
    if (q3_type_get(L->wk.type)->vec_dot_type != t || q3_type_get(L->wv.type)->vec_dot_type != t) {
        project(r, &L->wq, r->xn, n, r->q);
        project(r, &L->wk, r->xn, n, r->k);
        project(r, &L->wv, r->xn, n, r->v);
        return;
    }
    const void *act = q3_act_prepare(r->pool, L->wq.type, r->xn, L->wq.cols, n, r->act);
    const q3_mat *w[3] = {&L->wq, &L->wk, &L->wv};
    float *y[3] = {r->q, r->k, r->v};
    q3_matmul_multi(r->pool, 3, w, act, n, y);
}

/* Token i's keys and values, head by head, into the cache in its type. */
static void store_token(const q3_kv_cache *kv, int layer, const q3_batch *b, int i, const float *k, const float *v) {
    q3_from_float_fn convert = q3_type_get(kv->type)->from_float;
    for (int h = 0; h < kv->n_heads; h++) {
        size_t off = (size_t)h * kv->head_dim;
        convert(k + off, q3_kv_head_row(kv, kv->k, layer, b->seq[i], b->pos[i], h), kv->head_dim);
        convert(v + off, q3_kv_head_row(kv, kv->v, layer, b->seq[i], b->pos[i], h), kv->head_dim);
    }
}

typedef struct prologue_job {
    q3_runner *r;
    q3_kv_cache *kv;
    const q3_batch *b;
    const q3_layer *L;
    int layer;
} prologue_job;

static void norm_task(void *ctx, int i, int thread) {
    (void)thread;
    prologue_job *j = ctx;
    const q3_config *c = &j->r->m->cfg;
    size_t H = (size_t)c->hidden_size;
    q3_rmsnorm(j->r->xn + i * H, j->r->x + i * H, j->L->attn_norm, (int)H, c->rms_eps);
}

/* Token i's query and key heads normed and rotated, its keys and values stored. */
static void position_task(void *ctx, int i, int thread) {
    (void)thread;
    prologue_job *j = ctx;
    q3_runner *r = j->r;
    const q3_config *c = &r->m->cfg;
    int hd = c->head_dim, half = hd / 2, nq = r->m->shard.n_q_heads, nkv = r->m->shard.n_kv_heads;
    const float *cs = r->rope_cos + (size_t)i * half, *sn = r->rope_sin + (size_t)i * half;
    for (int h = 0; h < nq; h++) {
        float *q = r->q + ((size_t)i * nq + h) * hd;
        q3_rmsnorm(q, q, j->L->q_norm, hd, c->rms_eps);
        q3_rope_apply(q, cs, sn, hd);
    }
    for (int h = 0; h < nkv; h++) {
        float *k = r->k + ((size_t)i * nkv + h) * hd;
        q3_rmsnorm(k, k, j->L->k_norm, hd, c->rms_eps);
        q3_rope_apply(k, cs, sn, hd);
    }
    store_token(j->kv, j->layer, j->b, i, r->k + (size_t)i * nkv * hd, r->v + (size_t)i * nkv * hd);
}

void q3_attention_block(q3_runner *r, q3_kv_cache *kv, int layer, const q3_batch *b) {
    prologue_job j = {r, kv, b, &r->m->layers[layer], layer};
    int n = b->n_tokens;
    q3_pool_run(r->pool, norm_task, &j, n); /* one token (decode) runs on this thread */
    project_qkv(r, j.L, n);
    q3_pool_run(r->pool, position_task, &j, n);
    q3_attend(r, kv, layer, b);
    project(r, &j.L->wo, r->attn, n, r->out);
}
