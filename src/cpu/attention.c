/* The attention block on the CPU: projections, per-head q/k RMSNorm, NeoX RoPE, keys and values
 * appended to the paged cache, then grouped-query attention of every token over its own
 * sequence's cached positions (which include the batch's earlier tokens: causal by position). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/half.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "model/runner.h"

static void project(q3_runner *r, const q3_mat *w, const float *x, int n, float *y) {
    q3_act_convert(w->type, x, w->cols, n, r->act);
    q3_matmul(r->pool, w, r->act, n, y, w->rows);
}

static void store_row(const q3_kv_cache *kv, unsigned char *dst, const float *src) {
    if (kv->type == Q3_TYPE_F32) {
        memcpy(dst, src, (size_t)kv->kv_dim * sizeof(float));
        return;
    }
    uint16_t *d = (uint16_t *)dst;
    for (int i = 0; i < kv->kv_dim; i++) d[i] = kv->type == Q3_TYPE_F16 ? q3_f32_to_f16(src[i]) : q3_f32_to_bf16(src[i]);
}

static float dot_cached(const q3_kv_cache *kv, const unsigned char *row, const float *q, int n) {
    float s = 0;
    if (kv->type == Q3_TYPE_F32) {
        const float *k = (const float *)row;
        for (int i = 0; i < n; i++) s += q[i] * k[i];
    } else if (kv->type == Q3_TYPE_F16) {
        const uint16_t *k = (const uint16_t *)row;
        for (int i = 0; i < n; i++) s += q[i] * q3_f16_to_f32(k[i]);
    } else {
        const uint16_t *k = (const uint16_t *)row;
        for (int i = 0; i < n; i++) s += q[i] * q3_bf16_to_f32(k[i]);
    }
    return s;
}

static void axpy_cached(const q3_kv_cache *kv, float *acc, float w, const unsigned char *row, int n) {
    if (kv->type == Q3_TYPE_F32) {
        const float *v = (const float *)row;
        for (int i = 0; i < n; i++) acc[i] += w * v[i];
    } else if (kv->type == Q3_TYPE_F16) {
        const uint16_t *v = (const uint16_t *)row;
        for (int i = 0; i < n; i++) acc[i] += w * q3_f16_to_f32(v[i]);
    } else {
        const uint16_t *v = (const uint16_t *)row;
        for (int i = 0; i < n; i++) acc[i] += w * q3_bf16_to_f32(v[i]);
    }
}

typedef struct attn_job {
    q3_runner *r;
    const q3_kv_cache *kv;
    const q3_batch *b;
    int layer;
} attn_job;

/* One (token, query head): softmax(q K^T / sqrt(d)) V over positions 0..pos. */
static void attend(void *ctx, int task, int thread) {
    attn_job *j = ctx;
    const q3_config *c = &j->r->m->cfg;
    const q3_shard *sh = &j->r->m->shard;
    int nq = sh->n_q_heads, i = task / nq, h = task % nq, hd = c->head_dim;
    /* Local query head h is global head q_head0 + h; its key/value head, local index kvh. */
    int kvh = (sh->q_head0 + h) / (c->n_heads / c->n_kv_heads) - sh->kv_head0;
    int seq = j->b->seq[i], len = j->b->pos[i] + 1;
    const float *q = j->r->q + ((size_t)i * nq + h) * hd;
    float *scores = j->r->scores + (size_t)thread * j->r->scores_cap;
    float *out = j->r->attn + ((size_t)i * nq + h) * hd;
    size_t head_off = (size_t)kvh * hd * j->kv->elem_size;
    float scale = 1.0f / sqrtf((float)hd), max = -INFINITY;
    for (int p = 0; p < len; p++) {
        scores[p] = dot_cached(j->kv, q3_kv_row(j->kv, j->kv->k, j->layer, seq, p) + head_off, q, hd) * scale;
        if (scores[p] > max) max = scores[p];
    }
    float sum = 0;
    for (int p = 0; p < len; p++) sum += (scores[p] = expf(scores[p] - max));
    for (int d = 0; d < hd; d++) out[d] = 0;
    for (int p = 0; p < len; p++)
        axpy_cached(j->kv, out, scores[p] / sum, q3_kv_row(j->kv, j->kv->v, j->layer, seq, p) + head_off, hd);
}

/* Scores need one float per cached position per thread; grown (rarely) to the longest sequence. */
q3_status q3_attention_prepare(q3_runner *r, const q3_batch *b, q3_error *e) {
    int need = 0;
    for (int i = 0; i < b->n_tokens; i++)
        if (b->pos[i] + 1 > need) need = b->pos[i] + 1;
    if (need <= r->scores_cap) return Q3_OK;
    int cap = need < 4096 ? 4096 : need * 2;
    float *s = realloc(r->scores, (size_t)cap * q3_pool_size(r->pool) * sizeof(float));
    if (!s) return q3_fail(e, Q3_ENOMEM, "attention: no memory for %d positions", cap);
    r->scores = s;
    r->scores_cap = cap;
    return Q3_OK;
}

void q3_attention_block(q3_runner *r, q3_kv_cache *kv, int layer, const q3_batch *b) {
    const q3_config *c = &r->m->cfg;
    const q3_layer *L = &r->m->layers[layer];
    int n = b->n_tokens, H = c->hidden_size, hd = c->head_dim, half = hd / 2;
    int nq = r->m->shard.n_q_heads, nkv = r->m->shard.n_kv_heads;
    for (int i = 0; i < n; i++) q3_rmsnorm(r->xn + (size_t)i * H, r->x + (size_t)i * H, L->attn_norm, H, c->rms_eps);
    project(r, &L->wq, r->xn, n, r->q);
    project(r, &L->wk, r->xn, n, r->k);
    project(r, &L->wv, r->xn, n, r->v);
    for (int i = 0; i < n; i++) {
        const float *cs = r->rope_cos + (size_t)i * half, *sn = r->rope_sin + (size_t)i * half;
        for (int h = 0; h < nq; h++) {
            float *q = r->q + ((size_t)i * nq + h) * hd;
            q3_rmsnorm(q, q, L->q_norm, hd, c->rms_eps);
            q3_rope_apply(q, cs, sn, hd);
        }
        for (int h = 0; h < nkv; h++) {
            float *k = r->k + ((size_t)i * nkv + h) * hd;
            q3_rmsnorm(k, k, L->k_norm, hd, c->rms_eps);
            q3_rope_apply(k, cs, sn, hd);
        }
        store_row(kv, q3_kv_row(kv, kv->k, layer, b->seq[i], b->pos[i]), r->k + (size_t)i * kv->kv_dim);
        store_row(kv, q3_kv_row(kv, kv->v, layer, b->seq[i], b->pos[i]), r->v + (size_t)i * kv->kv_dim);
    }
    attn_job j = {r, kv, b, layer};
    q3_pool_run(r->pool, attend, &j, n * nq);
    project(r, &L->wo, r->attn, n, r->out);
}
