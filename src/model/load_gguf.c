/* Binding a GGUF file in llama.cpp's qwen3moe naming (its metadata is read by config.c),
 * experts stacked in 3-D tensors (ne = [cols, rows, n_experts]) that we view one
 * expert at a time. */
#include <stdio.h>
#include <string.h>
#include "model/model.h"
#include "quant/types.h"

typedef struct binder {
    q3_model *m;
    q3_error *e;
} binder;

static const q3_gguf_tensor *find(binder *b, const char *name, int n_dims, const int64_t *ne) {
    const q3_gguf_tensor *t = q3_gguf_find_tensor(&b->m->gguf, name);
    if (!t) {
        q3_fail(b->e, Q3_EFORMAT, "%s: tensor %s is missing", b->m->path, name);
        return NULL;
    }
    bool ok = t->n_dims == n_dims;
    for (int i = 0; i < n_dims && ok; i++) ok = t->ne[i] == ne[i];
    if (!ok) {
        q3_fail(b->e, Q3_EFORMAT, "%s: tensor %s has ne [%lld, %lld, %lld], metadata implies [%lld, %lld, %lld]",
                b->m->path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                (long long)ne[0], (long long)(n_dims > 1 ? ne[1] : 1), (long long)(n_dims > 2 ? ne[2] : 1));
        return NULL;
    }
    return t;
}

static q3_status bind_mat(binder *b, q3_mat *w, const char *name, int64_t rows, int64_t cols) {
    const q3_gguf_tensor *t = find(b, name, 2, (int64_t[]){cols, rows});
    if (!t) return Q3_EFORMAT;
    return q3_mat_make(w, name, t->type, t->data, t->nbytes, rows, cols, b->m->path, b->e);
}

static q3_status bind_norm(binder *b, float *dst, const char *name, int64_t n) {
    const q3_gguf_tensor *t = find(b, name, 1, &n);
    if (!t) return Q3_EFORMAT;
    const q3_type_traits *tr = q3_type_info(t->type);
    if (!tr->to_float)
        return q3_fail(b->e, Q3_EUNSUPPORTED, "%s: tensor %s has type %s, not supported yet", b->m->path, name, tr->name);
    tr->to_float(t->data, dst, n);
    return Q3_OK;
}

/* One 3-D expert tensor, viewed as n_experts matrices of (rows, cols). */
static q3_status bind_experts(binder *b, int l, const char *what, int64_t rows, int64_t cols, size_t member) {
    const q3_config *c = &b->m->cfg;
    char name[96];
    snprintf(name, sizeof name, "blk.%d.ffn_%s_exps.weight", l, what);
    const q3_gguf_tensor *t = find(b, name, 3, (int64_t[]){cols, rows, c->n_experts});
    if (!t) return Q3_EFORMAT;
    size_t per = t->nbytes / (size_t)c->n_experts;
    for (int x = 0; x < c->n_experts; x++) {
        q3_mat *w = (q3_mat *)((char *)&b->m->layers[l].experts[x] + member);
        q3_status st = q3_mat_make(w, name, t->type, (const char *)t->data + per * (size_t)x, per, rows, cols,
                                   b->m->path, b->e);
        if (st) return st;
    }
    return Q3_OK;
}

static q3_status bind_layer(binder *b, int l) {
    const q3_config *c = &b->m->cfg;
    q3_layer *L = &b->m->layers[l];
    int64_t H = c->hidden_size, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    char name[96];
    q3_status st;
#define N(fmt) (snprintf(name, sizeof name, "blk.%d." fmt, l), name)
    if ((st = bind_norm(b, L->attn_norm, N("attn_norm.weight"), H)) ||
        (st = bind_norm(b, L->ffn_norm, N("ffn_norm.weight"), H)) ||
        (st = bind_norm(b, L->q_norm, N("attn_q_norm.weight"), c->head_dim)) ||
        (st = bind_norm(b, L->k_norm, N("attn_k_norm.weight"), c->head_dim)) ||
        (st = bind_mat(b, &L->wq, N("attn_q.weight"), qd, H)) ||
        (st = bind_mat(b, &L->wk, N("attn_k.weight"), kvd, H)) ||
        (st = bind_mat(b, &L->wv, N("attn_v.weight"), kvd, H)) ||
        (st = bind_mat(b, &L->wo, N("attn_output.weight"), H, qd)))
        return st;
    if (!L->is_moe) {
        if ((st = bind_mat(b, &L->dense.gate, N("ffn_gate.weight"), c->intermediate, H)) ||
            (st = bind_mat(b, &L->dense.up, N("ffn_up.weight"), c->intermediate, H)))
            return st;
        return bind_mat(b, &L->dense.down, N("ffn_down.weight"), H, c->intermediate);
    }
    if ((st = bind_mat(b, &L->router, N("ffn_gate_inp.weight"), c->n_experts, H))) return st;
#undef N
    int64_t I = c->moe_intermediate;
    if ((st = bind_experts(b, l, "gate", I, H, offsetof(q3_ffn, gate))) ||
        (st = bind_experts(b, l, "up", I, H, offsetof(q3_ffn, up))))
        return st;
    return bind_experts(b, l, "down", H, I, offsetof(q3_ffn, down));
}

q3_status q3_model_bind_gguf(q3_model *m, q3_error *e) {
    binder b = {m, e};
    const q3_config *c = &m->cfg;
    q3_status st = bind_mat(&b, &m->embed, "token_embd.weight", c->vocab_size, c->hidden_size);
    if (st) return st;
    for (int l = 0; l < c->n_layers; l++)
        if ((st = bind_layer(&b, l))) return st;
    if ((st = bind_norm(&b, m->final_norm, "output_norm.weight", c->hidden_size))) return st;
    if (c->tied_embeddings) {
        m->lm_head = m->embed;
        return Q3_OK;
    }
    return bind_mat(&b, &m->lm_head, "output.weight", c->vocab_size, c->hidden_size);
}
