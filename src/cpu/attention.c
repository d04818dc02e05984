/* The attention block on the CPU: projections, per-head q/k RMSNorm, NeoX RoPE, keys and values
 * appended to the paged cache, then grouped-query attention of every token over its own
 * sequence's cached positions (attend.c; they include the batch's earlier tokens: causal by
 * position), and the output projection. */
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
    q3_attend(r, kv, layer, b);
    project(r, &L->wo, r->attn, n, r->out);
}
