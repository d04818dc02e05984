/* The run state: activations allocated once from the backend for the largest batch. */
#include <stdlib.h>
#include "model/runner.h"

static void *take(q3_runner *r, size_t count, size_t size, bool *ok) {
    void *p = r->be->ops->alloc(r->be, count * size);
    if (!p) *ok = false;
    return p;
}

q3_status q3_runner_create(q3_runner **out, const q3_model *m, q3_backend *be, int max_tokens,
                           const q3_collective *coll, q3_error *e) {
    *out = NULL;
    if (max_tokens <= 0) {
        be->ops->destroy(be);
        return q3_fail(e, Q3_EINVAL, "runner: max batch tokens must be positive");
    }
    q3_runner *r = calloc(1, sizeof *r);
    if (!r) {
        be->ops->destroy(be);
        return q3_fail(e, Q3_ENOMEM, "runner: out of memory");
    }
    const q3_config *c = &m->cfg;
    const q3_shard *s = &m->shard;
    r->m = m;
    r->be = be;
    r->coll = coll ? *coll : (q3_collective){.size = 1};
    r->max_tokens = max_tokens;
    size_t T = (size_t)max_tokens, H = (size_t)c->hidden_size, hd = (size_t)c->head_dim;
    size_t K = (size_t)(c->n_experts_used ? c->n_experts_used : 1), E = (size_t)(c->n_experts ? c->n_experts : 1);
    bool ok = true;
    r->x = take(r, T * H, sizeof(float), &ok);
    r->xn = take(r, T * H, sizeof(float), &ok);
    r->q = take(r, T * s->n_q_heads * hd, sizeof(float), &ok);
    r->k = take(r, T * s->n_kv_heads * hd, sizeof(float), &ok);
    r->v = take(r, T * s->n_kv_heads * hd, sizeof(float), &ok);
    r->attn = take(r, T * s->n_q_heads * hd, sizeof(float), &ok);
    r->out = take(r, T * H, sizeof(float), &ok);
    r->router = take(r, T * E, sizeof(float), &ok);
    r->top_expert = take(r, T * K, sizeof(int32_t), &ok);
    r->top_weight = take(r, T * K, sizeof(float), &ok);
    if (!be->host_memory) r->logits = take(r, Q3_HEAD_ROWS * (size_t)c->vocab_size, sizeof(float), &ok);
    if (!(r->head_rows = malloc(T * sizeof(int32_t)))) ok = false;
    if (!ok) {
        q3_runner_destroy(r);
        return q3_fail(e, Q3_ENOMEM, "runner: cannot allocate activations for %d tokens on %s", max_tokens,
                       be->ops->name);
    }
    *out = r;
    return Q3_OK;
}

void q3_runner_destroy(q3_runner *r) {
    if (!r) return;
    void *bufs[] = {r->x, r->xn, r->q, r->k, r->v, r->attn, r->out, r->router, r->top_expert, r->top_weight, r->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i]) r->be->ops->free(r->be, bufs[i]);
    r->be->ops->destroy(r->be);
    free(r->head_rows);
    free(r);
}

void q3_runner_set_trace(q3_runner *r, q3_trace *t) { r->trace = t; }
uint64_t q3_runner_bytes_read(const q3_runner *r) { return r->be->bytes_read; }
int q3_runner_threads(const q3_runner *r) { return r->be->threads; }
