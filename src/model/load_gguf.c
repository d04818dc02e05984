/* Binding a GGUF file in llama.cpp's qwen3moe naming: hyper-parameters from `qwen3moe.*`
 * metadata, experts stacked in 3-D tensors (ne = [cols, rows, n_experts]) that we view one
 * expert at a time. */
#include <stdio.h>
#include <string.h>
#include "model/model.h"
#include "quant/types.h"

static q3_status get_int(const q3_gguf *g, const char *key, int *out, bool required, int fallback, q3_error *e) {
    int64_t v;
    if (!q3_gguf_find_kv(g, key) && !required) {
        *out = fallback;
        return Q3_OK;
    }
    q3_status st = q3_gguf_get_int(g, key, &v, e);
    if (st) return st;
    if (v < 0 || v > (1 << 30)) return q3_fail(e, Q3_EFORMAT, "%s: metadata %s = %lld out of range", g->path, key, (long long)v);
    *out = (int)v;
    return Q3_OK;
}

q3_status q3_config_from_gguf(q3_config *c, const q3_gguf *g, q3_error *e) {
    memset(c, 0, sizeof *c);
    q3_gguf_str arch;
    q3_status st = q3_gguf_get_str(g, "general.architecture", &arch, e);
    if (st) return st;
    if (arch.len != 8 || memcmp(arch.ptr, "qwen3moe", 8))
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: architecture %.*s is not qwen3moe", g->path,
                       (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    double theta, eps;
    if ((st = get_int(g, "qwen3moe.block_count", &c->n_layers, true, 0, e)) ||
        (st = get_int(g, "qwen3moe.embedding_length", &c->hidden_size, true, 0, e)) ||
        (st = get_int(g, "qwen3moe.attention.head_count", &c->n_heads, true, 0, e)) ||
        (st = get_int(g, "qwen3moe.attention.head_count_kv", &c->n_kv_heads, false, c->n_heads, e)) ||
        (st = get_int(g, "qwen3moe.attention.key_length", &c->head_dim, false,
                      c->n_heads ? c->hidden_size / c->n_heads : 0, e)) ||
        (st = get_int(g, "qwen3moe.expert_count", &c->n_experts, true, 0, e)) ||
        (st = get_int(g, "qwen3moe.expert_used_count", &c->n_experts_used, true, 0, e)) ||
        (st = get_int(g, "qwen3moe.expert_feed_forward_length", &c->moe_intermediate, true, 0, e)) ||
        (st = get_int(g, "qwen3moe.feed_forward_length", &c->intermediate, false, 0, e)) ||
        (st = get_int(g, "qwen3moe.context_length", &c->max_context, false, 32768, e)) ||
        (st = get_int(g, "tokenizer.ggml.bos_token_id", &c->bos_token, false, -1, e)) ||
        (st = get_int(g, "tokenizer.ggml.eos_token_id", &c->eos_token, false, -1, e)) ||
        (st = q3_gguf_get_float(g, "qwen3moe.rope.freq_base", &theta, e)) ||
        (st = q3_gguf_get_float(g, "qwen3moe.attention.layer_norm_rms_epsilon", &eps, e)))
        return st;
    c->rope_theta = (float)theta;
    c->rms_eps = (float)eps;
    /* llama.cpp's qwen3moe always renormalises the top-k weights; our writer records a false. */
    const q3_gguf_kv *norm = q3_gguf_find_kv(g, "qwen3moe.expert_weights_norm");
    c->norm_topk_prob = norm ? norm->v.u != 0 : true;
    if (c->n_layers > Q3_MAX_LAYERS)
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: %d layers exceed %d", g->path, c->n_layers, Q3_MAX_LAYERS);
    /* A layer is dense when it has no router tensor. */
    for (int l = 0; l < c->n_layers; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.weight", l);
        c->is_moe[l] = q3_gguf_find_tensor(g, name) != NULL;
    }
    const q3_gguf_tensor *embd = q3_gguf_find_tensor(g, "token_embd.weight");
    if (!embd) return q3_fail(e, Q3_EFORMAT, "%s: tensor token_embd.weight is missing", g->path);
    c->vocab_size = (int)embd->ne[1];
    c->tied_embeddings = q3_gguf_find_tensor(g, "output.weight") == NULL;
    return q3_config_validate(c, g->path, e);
}

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
    const q3_type_traits *tr = q3_type_get(t->type);
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
