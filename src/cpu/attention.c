/* Attention's per-token prologue on the CPU: each query and key head RMSNormed with the layer's
 * q_norm / k_norm and rotated by NeoX RoPE, then the token's keys and values written into the
 * paged cache in its type. One pool task per token. The attention itself is attend.c. */
#include "cpu/cpu_backend.h"
#include "cpu/ops.h"
#include "cpu/kernel_table.h"

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
    q3_cpu *c;
    const q3_layer *L;
    int layer;
    float *q, *k;
    const float *v;
} prologue_job;

static void position_task(void *ctx, int i, int thread) {
    (void)thread;
    prologue_job *j = ctx;
    const q3_model *m = j->c->base.m;
    const q3_config *cfg = &m->cfg;
    int hd = cfg->head_dim, half = hd / 2, nq = m->shard.n_q_heads, nkv = m->shard.n_kv_heads;
    const float *cs = j->c->rope_cos + (size_t)i * half, *sn = j->c->rope_sin + (size_t)i * half;
    for (int h = 0; h < nq; h++) {
        float *q = j->q + ((size_t)i * nq + h) * hd;
        q3_rmsnorm(q, q, j->L->q_norm, hd, cfg->rms_eps);
        q3_rope_apply(q, cs, sn, hd);
    }
    for (int h = 0; h < nkv; h++) {
        float *k = j->k + ((size_t)i * nkv + h) * hd;
        q3_rmsnorm(k, k, j->L->k_norm, hd, cfg->rms_eps);
        q3_rope_apply(k, cs, sn, hd);
    }
    store_token(j->c->kv, j->layer, j->c->b, i, j->k + (size_t)i * nkv * hd, j->v + (size_t)i * nkv * hd);
}

void q3_cpu_rope_store(q3_backend *be, const q3_layer *L, int layer, float *q, float *k, const float *v) {
    q3_cpu *c = (q3_cpu *)be;
    prologue_job j = {c, L, layer, q, k, v};
    q3_pool_run(c->pool, position_task, &j, c->b->n_tokens);
}
