/* Narrowing the weight views to one process's shard. Row slices (query/key/value heads, an
 * expert's gate and up rows) are contiguous; column slices (o_proj over heads, down over the
 * intermediate dimension) keep the full row stride and start part-way into each row, so they
 * must start and end on quantization block boundaries. Views of experts this process does not
 * own are left alone and never read, so their pages are never loaded. */
#include "model/model.h"
#include "quant/types.h"

static q3_status row_slice(q3_mat *w, int64_t r0, int64_t n) {
    w->data = (const char *)w->data + (size_t)r0 * w->row_bytes;
    w->rows = n;
    return Q3_OK;
}

static q3_status col_slice(q3_mat *w, int64_t c0, int64_t n, const char *what, int layer, q3_error *e) {
    const q3_type_traits *tr = q3_type_info(w->type);
    if (c0 % tr->block_size || n % tr->block_size)
        return q3_fail(e, Q3_EUNSUPPORTED,
                       "layer %d %s: columns [%lld, %lld) do not fall on %s block boundaries (%d); use fewer tp ranks",
                       layer, what, (long long)c0, (long long)(c0 + n), tr->name, tr->block_size);
    w->data = (const char *)w->data + q3_row_bytes(w->type, c0);
    w->cols = n;
    return Q3_OK;
}

static void split(int total, int parts, int index, int *begin, int *end) {
    *begin = (int)((int64_t)total * index / parts);
    *end = (int)((int64_t)total * (index + 1) / parts);
}

static q3_status check_split(const q3_config *c, int tp, int ep, int size, q3_error *e) {
    if (tp < 1 || ep < 1 || tp * ep != size)
        return q3_fail(e, Q3_EINVAL, "--tp %d x --ep %d must equal the %d processes", tp, ep, size);
    if (c->n_heads % tp)
        return q3_fail(e, Q3_EINVAL, "%d attention heads cannot be split over --tp %d", c->n_heads, tp);
    if (c->n_kv_heads % tp && tp % c->n_kv_heads)
        return q3_fail(e, Q3_EINVAL, "%d key/value heads cannot be split over --tp %d", c->n_kv_heads, tp);
    if (c->n_experts && c->n_experts < ep)
        return q3_fail(e, Q3_EINVAL, "%d experts cannot be dealt over --ep %d", c->n_experts, ep);
    return Q3_OK;
}

static void plan(q3_shard *s, const q3_config *c, int rank, int tp, int ep, int size) {
    *s = (q3_shard){.rank = rank, .size = size, .tp = tp, .ep = ep, .tp_rank = rank % tp, .ep_rank = rank / tp};
    int group = c->n_heads / c->n_kv_heads;
    s->n_q_heads = c->n_heads / tp;
    s->q_head0 = s->tp_rank * s->n_q_heads;
    s->kv_head0 = s->q_head0 / group;
    s->n_kv_heads = (s->q_head0 + s->n_q_heads - 1) / group - s->kv_head0 + 1;
    split(c->moe_intermediate, tp, s->tp_rank, &s->moe_i0, &s->moe_i1);
    split(c->intermediate, tp, s->tp_rank, &s->dense_i0, &s->dense_i1);
}

static q3_status slice_ffn(q3_ffn *f, int i0, int i1, int layer, q3_error *e) {
    row_slice(&f->gate, i0, i1 - i0);
    row_slice(&f->up, i0, i1 - i0);
    return col_slice(&f->down, i0, i1 - i0, "ffn_down", layer, e);
}

q3_status q3_model_apply_shard(q3_model *m, int rank, int tp, int ep, q3_error *e) {
    const q3_config *c = &m->cfg;
    int size = tp * ep;
    q3_status st = check_split(c, tp, ep, size, e);
    if (st) return st;
    plan(&m->shard, c, rank, tp, ep, size);
    const q3_shard *s = &m->shard;
    if (size == 1) return Q3_OK;
    int hd = c->head_dim;
    for (int l = 0; l < c->n_layers; l++) {
        q3_layer *L = &m->layers[l];
        row_slice(&L->wq, (int64_t)s->q_head0 * hd, (int64_t)s->n_q_heads * hd);
        row_slice(&L->wk, (int64_t)s->kv_head0 * hd, (int64_t)s->n_kv_heads * hd);
        row_slice(&L->wv, (int64_t)s->kv_head0 * hd, (int64_t)s->n_kv_heads * hd);
        if ((st = col_slice(&L->wo, (int64_t)s->q_head0 * hd, (int64_t)s->n_q_heads * hd, "attn_output", l, e)))
            return st;
        if (!L->is_moe) {
            if ((st = slice_ffn(&L->dense, s->dense_i0, s->dense_i1, l, e))) return st;
            continue;
        }
        for (int x = 0; x < c->n_experts; x++)
            if (q3_shard_owns_expert(s, x) && (st = slice_ffn(&L->experts[x], s->moe_i0, s->moe_i1, l, e))) return st;
    }
    return Q3_OK;
}
