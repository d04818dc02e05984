/* Binding a Hugging Face checkpoint's tensors (transformers' Qwen3-MoE names, experts stored
 * one tensor per expert as published) to the model's weight views. Float weights are views into
 * the mapped files; the quantized weights of FP8 and GPTQ checkpoints are repacked into blocks
 * the kernels read (quant/checkpoint_quants.h), in buffers the model owns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/model.h"
#include "quant/checkpoint_quants.h"
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

/* A buffer of `bytes` that lives as long as the model. */
static void *own(binder *b, size_t bytes) {
    q3_model *m = b->m;
    if (m->n_repacked == m->cap_repacked) {
        int cap = m->cap_repacked ? 2 * m->cap_repacked : 256;
        void **grown = realloc(m->repacked, (size_t)cap * sizeof *grown);
        if (!grown) return NULL;
        m->repacked = grown, m->cap_repacked = cap;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (p) m->repacked[m->n_repacked++] = p;
    return p;
}

static q3_status check_shape(binder *b, const q3_tensor_view *t, const char *name, int64_t rows, int64_t cols) {
    if (t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols) return Q3_OK;
    return q3_fail(b->e, Q3_EFORMAT, "%s: tensor %s has shape %s, expected [%lld, %lld]", b->m->path, name,
                   t->n_dims == 2 ? "of another size" : "of another rank", (long long)rows, (long long)cols);
}

/* A tensor the repacking reads, of one type and shape. */
static const q3_tensor_view *find_as(binder *b, const char *name, q3_type type, int64_t rows, int64_t cols) {
    const q3_tensor_view *t = find(b, name);
    if (!t) return NULL;
    if (t->type != type) {
        q3_fail(b->e, Q3_EFORMAT, "%s: tensor %s has dtype %s, expected %s", b->m->path, name, q3_type_name(t->type),
                q3_type_name(type));
        return NULL;
    }
    return check_shape(b, t, name, rows, cols) ? NULL : t;
}

static q3_status repacked(binder *b, q3_mat *w, const char *name, q3_type type, const void *data, int64_t rows,
                          int64_t cols) {
    size_t bytes = q3_row_bytes(type, cols) * (size_t)rows;
    b->m->hf_quant.n_repacked++;
    b->m->hf_quant.repacked_bytes += bytes;
    return q3_mat_make(w, name, type, data, bytes, rows, cols, b->m->path, b->e);
}

/* FP8: X.weight in e4m3 with X.weight_scale_inv, one float per weight_block_size block. */
static q3_status bind_fp8(binder *b, q3_mat *w, const q3_tensor_view *t, const char *name, int64_t rows, int64_t cols) {
    const q3_hf_quant *q = &b->m->hf_quant;
    if (q->method != Q3_HF_QUANT_FP8)
        return q3_fail(b->e, Q3_EFORMAT, "%s: tensor %s is F8_E4M3 but config.json declares no fp8 quantization_config",
                       b->m->path, name);
    if (cols % Q3_FP8_BLOCK)
        return q3_fail(b->e, Q3_EUNSUPPORTED, "%s: tensor %s: %lld columns is not a multiple of %d", b->m->path, name,
                       (long long)cols, Q3_FP8_BLOCK);
    char scale_name[320];
    snprintf(scale_name, sizeof scale_name, "%s_scale_inv", name);
    int64_t srows = (rows + q->block_rows - 1) / q->block_rows, scols = (cols + q->block_cols - 1) / q->block_cols;
    const q3_tensor_view *s = find(b, scale_name);
    if (!s || check_shape(b, s, scale_name, srows, scols)) return b->e->code ? b->e->code : Q3_EFORMAT;
    const q3_type_traits *st = q3_type_info(s->type);
    if (!st->to_float) return q3_fail(b->e, Q3_EFORMAT, "%s: tensor %s has dtype %s", b->m->path, scale_name, st->name);
    float *scales = malloc((size_t)(srows * scols) * sizeof(float));
    void *dst = own(b, q3_row_bytes(Q3_TYPE_F8_E4M3_B32, cols) * (size_t)rows);
    if (!scales || !dst) {
        free(scales);
        return q3_fail(b->e, Q3_ENOMEM, "%s: out of memory repacking %s", b->m->path, name);
    }
    st->to_float(s->data, scales, srows * scols);
    int64_t bad;
    bool ok = q3_fp8_repack(t->data, scales, rows, cols, q->block_rows, q->block_cols, dst, &bad);
    free(scales);
    if (!ok)
        return q3_fail(b->e, Q3_EFORMAT, "%s: tensor %s: element %lld is NaN (e4m3 0x7f/0xff)", b->m->path, name,
                       (long long)bad);
    return repacked(b, w, name, Q3_TYPE_F8_E4M3_B32, dst, rows, cols);
}

/* GPTQ: X.qweight, X.qzeros, X.scales (and X.g_idx, which must be the plain grouping) in place
 * of X.weight. */
static q3_status bind_gptq(binder *b, q3_mat *w, const char *name, int64_t rows, int64_t cols) {
    const q3_hf_quant *q = &b->m->hf_quant;
    char base[300], qn[320];
    size_t len = strlen(name);
    snprintf(base, sizeof base, "%.*s", (int)(len > 7 && !strcmp(name + len - 7, ".weight") ? len - 7 : len), name);
    snprintf(qn, sizeof qn, "%s.qweight", base);
    if (q->method != Q3_HF_QUANT_GPTQ || !q3_st_checkpoint_find(&b->m->hf, qn)) {
        find(b, name); /* neither X.weight nor X.qweight: the error names X.weight */
        return Q3_EFORMAT;
    }
    int64_t group = q->group_size, in = cols, out = rows;
    if (in % group || out % 8)
        return q3_fail(b->e, Q3_EFORMAT, "%s: tensor %s: %lld inputs x %lld outputs do not pack into groups of %lld "
                       "inputs and 8 outputs", b->m->path, qn, (long long)in, (long long)out, (long long)group);
    const q3_tensor_view *qw = find_as(b, qn, Q3_TYPE_I32, in / 8, out);
    snprintf(qn, sizeof qn, "%s.qzeros", base);
    const q3_tensor_view *qz = qw ? find_as(b, qn, Q3_TYPE_I32, in / group, out / 8) : NULL;
    snprintf(qn, sizeof qn, "%s.scales", base);
    const q3_tensor_view *sc = qz ? find_as(b, qn, Q3_TYPE_F16, in / group, out) : NULL;
    if (!sc) return b->e->code ? b->e->code : Q3_EFORMAT;
    snprintf(qn, sizeof qn, "%s.g_idx", base);
    const q3_tensor_view *gi = q3_st_checkpoint_find(&b->m->hf, qn);
    for (int64_t i = 0; gi && i < in; i++)
        if (gi->type != Q3_TYPE_I32 || gi->n_dims != 1 || gi->shape[0] != in || ((const int32_t *)gi->data)[i] != i / group)
            return q3_fail(b->e, Q3_EUNSUPPORTED, "%s: tensor %s is not input / group_size (act-order is not supported)",
                           b->m->path, qn);
    void *dst = own(b, q3_row_bytes(Q3_TYPE_GPTQ4_B32, cols) * (size_t)rows);
    if (!dst) return q3_fail(b->e, Q3_ENOMEM, "%s: out of memory repacking %s", b->m->path, base);
    int64_t bad_group, bad_out;
    if (!q3_gptq4_repack(qw->data, qz->data, sc->data, in, out, group, q->zero_offset, dst, &bad_group, &bad_out))
        return q3_fail(b->e, Q3_EUNSUPPORTED, "%s: tensor %s.qzeros: group %lld of output %lld has a zero point other than 8 "
                       "(only symmetric GPTQ is supported)", b->m->path, base, (long long)bad_group, (long long)bad_out);
    return repacked(b, w, base, Q3_TYPE_GPTQ4_B32, dst, rows, cols);
}

static q3_status bind_mat(binder *b, q3_mat *w, const char *name, int64_t rows, int64_t cols) {
    const q3_tensor_view *t = q3_st_checkpoint_find(&b->m->hf, name);
    if (!t) return bind_gptq(b, w, name, rows, cols);
    q3_status st = check_shape(b, t, name, rows, cols);
    if (st) return st;
    if (t->type == Q3_TYPE_F8_E4M3) return bind_fp8(b, w, t, name, rows, cols);
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
