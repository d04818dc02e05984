/* Binding a Hugging Face checkpoint's tensors (transformers' Qwen3-MoE names, experts stored
 * one tensor per expert as published) to the model's weight views. */
#include <stdio.h>
#include "model/model.h"
#include "quant/types.h"

typedef struct binder {
    q3_model *m;
    q3_error *e;
} binder;

static const q3_tensor_view *find(binder *b, const char *name) {
    const q3_tensor_view *t = q3_st_checkpoint_find(&b->m->hf, name);
    if (!t) q3_fail(b->e, Q3_EFORMAT, "%s: tensor %s is missing", b->m->path, name);
    return t;
}

static q3_status bind_mat(binder *b, q3_mat *w, const char *name, int64_t rows, int64_t cols) {
    const q3_tensor_view *t = find(b, name);
    if (!t) return Q3_EFORMAT;
    if (t->n_dims != 2 || t->shape[0] != rows || t->shape[1] != cols)
        return q3_fail(b->e, Q3_EFORMAT, "%s: tensor %s has shape %s, config.json implies [%lld, %lld]",
                       b->m->path, name, t->n_dims == 2 ? "of another size" : "of another rank",
                       (long long)rows, (long long)cols);
    return q3_mat_make(w, name, t->type, t->data, t->nbytes, rows, cols, b->m->path, b->e);
}

static q3_status bind_norm(binder *b, float *dst, const char *name, int64_t n) {
    const q3_tensor_view *t = find(b, name);
    if (!t) return Q3_EFORMAT;
    if (t->n_dims != 1 || t->shape[0] != n)
        return q3_fail(b->e, Q3_EFORMAT, "%s: tensor %s should have shape [%lld]", b->m->path, name, (long long)n);
    const q3_type_traits *tr = q3_type_info(t->type);
    if (!tr->to_float)
        return q3_fail(b->e, Q3_EUNSUPPORTED, "%s: tensor %s has type %s", b->m->path, name, tr->name);
    tr->to_float(t->data, dst, n);
    return Q3_OK;
}

static q3_status bind_ffn(binder *b, q3_ffn *f, const char *prefix, int64_t hidden, int64_t width) {
    char name[256];
    q3_status st;
    snprintf(name, sizeof name, "%s.gate_proj.weight", prefix);
    if ((st = bind_mat(b, &f->gate, name, width, hidden))) return st;
    snprintf(name, sizeof name, "%s.up_proj.weight", prefix);
    if ((st = bind_mat(b, &f->up, name, width, hidden))) return st;
    snprintf(name, sizeof name, "%s.down_proj.weight", prefix);
    return bind_mat(b, &f->down, name, hidden, width);
}

static q3_status bind_layer(binder *b, int l) {
    const q3_config *c = &b->m->cfg;
    q3_layer *L = &b->m->layers[l];
    int64_t H = c->hidden_size, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    char p[128], name[256];
    snprintf(p, sizeof p, "model.layers.%d", l);
    q3_status st;
#define N(fmt) (snprintf(name, sizeof name, "%s." fmt, p), name)
    if ((st = bind_norm(b, L->attn_norm, N("input_layernorm.weight"), H)) ||
        (st = bind_norm(b, L->ffn_norm, N("post_attention_layernorm.weight"), H)) ||
        (st = bind_norm(b, L->q_norm, N("self_attn.q_norm.weight"), c->head_dim)) ||
        (st = bind_norm(b, L->k_norm, N("self_attn.k_norm.weight"), c->head_dim)) ||
        (st = bind_mat(b, &L->wq, N("self_attn.q_proj.weight"), qd, H)) ||
        (st = bind_mat(b, &L->wk, N("self_attn.k_proj.weight"), kvd, H)) ||
        (st = bind_mat(b, &L->wv, N("self_attn.v_proj.weight"), kvd, H)) ||
        (st = bind_mat(b, &L->wo, N("self_attn.o_proj.weight"), H, qd)))
        return st;
    if (!L->is_moe) return bind_ffn(b, &L->dense, N("mlp"), H, c->intermediate);
    if ((st = bind_mat(b, &L->router, N("mlp.gate.weight"), c->n_experts, H))) return st;
    for (int x = 0; x < c->n_experts; x++) {
        char ep[160];
        snprintf(ep, sizeof ep, "%s.mlp.experts.%d", p, x);
        if ((st = bind_ffn(b, &L->experts[x], ep, H, c->moe_intermediate))) return st;
    }
#undef N
    return Q3_OK;
}

q3_status q3_model_bind_hf(q3_model *m, q3_error *e) {
    binder b = {m, e};
    const q3_config *c = &m->cfg;
    q3_status st = bind_mat(&b, &m->embed, "model.embed_tokens.weight", c->vocab_size, c->hidden_size);
    if (st) return st;
    for (int l = 0; l < c->n_layers; l++)
        if ((st = bind_layer(&b, l))) return st;
    if ((st = bind_norm(&b, m->final_norm, "model.norm.weight", c->hidden_size))) return st;
    if (c->tied_embeddings) {
        m->lm_head = m->embed;
        return Q3_OK;
    }
    return bind_mat(&b, &m->lm_head, "lm_head.weight", c->vocab_size, c->hidden_size);
}
