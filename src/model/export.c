/* GGUF export: metadata from the model's config (llama.cpp's qwen3moe keys), tokenizer metadata
 * carried over, and every tensor converted row by row from its source type to its target type
 * while the file is written, so memory holds one output tensor at a time. */
#include "model/export.h"

#include "base/path.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "model/rope.h"
#include "formats/imatrix.h"
#include "quant/types.h"
#include "text/genconfig.h"
#include "text/tokenizer_gguf.h"

void q3_export_options_uniform(q3_export_options *o, q3_type t) {
    memset(o, 0, sizeof *o);
    for (int r = 0; r < Q3_ROLE_COUNT; r++) o->type[r] = t;
    o->type[Q3_ROLE_ROUTER] = Q3_TYPE_F32;
    for (int l = 0; l < Q3_MAX_LAYERS; l++) o->expert_down_layer[l] = o->attn_v_layer[l] = Q3_TYPE_COUNT;
    switch (t) {
    case Q3_TYPE_F32: o->file_type = 0; break;
    case Q3_TYPE_F16: o->file_type = 1; break;
    case Q3_TYPE_Q4_0: o->file_type = 2; break;
    case Q3_TYPE_Q4_1: o->file_type = 3; break;
    case Q3_TYPE_Q8_0: o->file_type = 7; break;
    case Q3_TYPE_Q5_0: o->file_type = 8; break;
    case Q3_TYPE_Q5_1: o->file_type = 9; break;
    case Q3_TYPE_Q2_K: o->file_type = 10; break;
    case Q3_TYPE_Q3_K: o->file_type = 11; break;
    case Q3_TYPE_Q4_K: o->file_type = 14; break;
    case Q3_TYPE_Q5_K: o->file_type = 16; break;
    case Q3_TYPE_Q6_K: o->file_type = 18; break;
    case Q3_TYPE_IQ2_XXS: o->file_type = 19; break;
    case Q3_TYPE_IQ2_XS: o->file_type = 20; break;
    case Q3_TYPE_IQ3_XXS: o->file_type = 23; break;
    case Q3_TYPE_IQ1_S: o->file_type = 24; break;
    case Q3_TYPE_IQ4_NL: o->file_type = 25; break;
    case Q3_TYPE_IQ3_S: o->file_type = 26; break;
    case Q3_TYPE_IQ2_S: o->file_type = 28; break;
    case Q3_TYPE_IQ4_XS: o->file_type = 30; break;
    case Q3_TYPE_IQ1_M: o->file_type = 31; break;
    case Q3_TYPE_BF16: o->file_type = 32; break;
    default: o->file_type = 0; break;
    }
}

q3_type q3_export_fallback_type(q3_type want, int64_t cols) {
    const q3_type_traits *tr = q3_type_info(want);
    if (tr && cols % tr->block_size == 0) return want;
    q3_type next;
    switch (want) {
    case Q3_TYPE_Q2_K: case Q3_TYPE_Q3_K: next = Q3_TYPE_Q4_0; break;
    case Q3_TYPE_Q4_K: next = Q3_TYPE_Q5_0; break;
    case Q3_TYPE_Q5_K: next = Q3_TYPE_Q5_1; break;
    case Q3_TYPE_Q6_K: next = Q3_TYPE_Q8_0; break;
    case Q3_TYPE_IQ4_XS: case Q3_TYPE_IQ3_S: case Q3_TYPE_IQ3_XXS: case Q3_TYPE_IQ2_S: case Q3_TYPE_IQ2_XS:
    case Q3_TYPE_IQ2_XXS: case Q3_TYPE_IQ1_M: case Q3_TYPE_IQ1_S: next = Q3_TYPE_IQ4_NL; break;
    default: next = Q3_TYPE_F16; break;
    }
    return cols % q3_type_info(next)->block_size == 0 ? next : Q3_TYPE_F16;
}

/* ---- tensors ---- */

/* One output tensor: its source matrices (one, or one per expert) or an f32 vector. */
typedef struct out_tensor {
    char name[96];       /* the GGUF name: what an importance matrix is looked up by */
    const q3_mat *mats;  /* n_mats matrices laid one after another */
    const q3_mat *const *mat_list; /* or: pointers, for experts stored in q3_ffn structs */
    int n_mats;
    const float *vec;    /* a norm vector instead */
    int64_t vec_len;
    q3_type type;
} out_tensor;

typedef struct exporter {
    const q3_model *m;
    const q3_export_options *o;
    out_tensor *tensors;
    int n;
    const q3_mat **expert_ptrs; /* storage for mat_list */
    int n_ptrs;
} exporter;

static const q3_mat *source_mat(const out_tensor *t, int i) { return t->mat_list ? t->mat_list[i] : &t->mats[i]; }

/* GPTQ weights are repacked at load into Q4_0's blocks (quant/checkpoint_quants.h): written as
 * Q4_0 they are copied, not requantized, so the file holds the checkpoint's exact values. */
static bool same_blocks(q3_type from, q3_type to) { return from == Q3_TYPE_GPTQ4_B32 && to == Q3_TYPE_Q4_0; }
/* The importance of matrix i's columns from the options' imatrix, when the target type can use
 * one and the file has this tensor; else NULL (quantize without). */
static const float *importance(const exporter *x, const out_tensor *t, int i, int64_t cols, float *buf) {
    if (!x->o->imatrix || !q3_type_info(t->type)->quantize) return NULL;
    return q3_imatrix_importance(x->o->imatrix, t->name, i, cols, buf) ? buf : NULL;
}

/* Converts every row of the source(s) into the target type. */
static q3_status fill_tensor(void *ctx, int index, void *dst, size_t nbytes, q3_error *e) {
    exporter *x = ctx;
    const out_tensor *t = &x->tensors[index];
    if (t->vec) {
        memcpy(dst, t->vec, nbytes);
        return Q3_OK;
    }
    const q3_type_traits *out = q3_type_info(t->type);
    int64_t cols = source_mat(t, 0)->cols;
    float *row = malloc(2 * (size_t)cols * sizeof(float));
    if (!row) return q3_fail(e, Q3_ENOMEM, "export: out of memory");
    size_t out_row = q3_row_bytes(t->type, cols);
    char *p = dst;
    for (int i = 0; i < t->n_mats; i++) {
        const q3_mat *w = source_mat(t, i);
        const q3_type_traits *in = q3_type_info(w->type);
        const float *imp = importance(x, t, i, cols, row + cols);
        for (int64_t r = 0; r < w->rows; r++, p += out_row) {
            const char *src = (const char *)w->data + (size_t)r * w->row_bytes;
            if (w->type == t->type || same_blocks(w->type, t->type)) {
                memcpy(p, src, out_row);
                continue;
            }
            in->to_float(src, row, cols);
            q3_quantize_row(out, row, p, cols, imp);
        }
    }
    free(row);
    return Q3_OK;
}

static q3_status add(exporter *x, q3_gguf_writer *w, const char *name, out_tensor t, int n_dims,
                     const int64_t *ne, q3_error *e) {
    if (!t.vec) {
        t.type = q3_export_fallback_type(t.type, ne[0]);
        if (!q3_type_info(t.type)->from_float || t.type >= Q3_TYPE_GGML_END)
            return q3_fail(e, Q3_EUNSUPPORTED, "export: tensor %s: cannot write type %s", name, q3_type_name(t.type));
    }
    snprintf(t.name, sizeof t.name, "%s", name);
    x->tensors[x->n] = t;
    q3_status st = q3_gguf_add_tensor(w, name, t.vec ? Q3_TYPE_F32 : t.type, n_dims, ne, NULL, fill_tensor, x, e);
    if (!st) x->n++;
    return st;
}

static q3_status add_mat(exporter *x, q3_gguf_writer *w, const char *name, const q3_mat *m, q3_type t, q3_error *e) {
    return add(x, w, name, (out_tensor){.mats = m, .n_mats = 1, .type = t}, 2, (int64_t[]){m->cols, m->rows}, e);
}

static q3_status add_vec(exporter *x, q3_gguf_writer *w, const char *name, const float *v, int64_t n, q3_error *e) {
    return add(x, w, name, (out_tensor){.vec = v, .vec_len = n}, 1, &n, e);
}

static q3_status add_experts(exporter *x, q3_gguf_writer *w, int l, const char *what, size_t member, q3_type t,
                             q3_error *e) {
    const q3_layer *L = &x->m->layers[l];
    int E = x->m->cfg.n_experts;
    const q3_mat **list = x->expert_ptrs + x->n_ptrs;
    for (int i = 0; i < E; i++) list[i] = (const q3_mat *)((const char *)&L->experts[i] + member);
    x->n_ptrs += E;
    char name[96];
    snprintf(name, sizeof name, "blk.%d.ffn_%s_exps.weight", l, what);
    return add(x, w, name, (out_tensor){.mat_list = list, .n_mats = E, .type = t}, 3,
               (int64_t[]){list[0]->cols, list[0]->rows, E}, e);
}

static q3_type layer_type(q3_type over, q3_type base) { return over == Q3_TYPE_COUNT ? base : over; }

static q3_status add_layer(exporter *x, q3_gguf_writer *w, int l, q3_error *e) {
    const q3_layer *L = &x->m->layers[l];
    const q3_export_options *o = x->o;
    int H = x->m->cfg.hidden_size, hd = x->m->cfg.head_dim;
    char n[96];
    q3_status st;
#define N(fmt) (snprintf(n, sizeof n, "blk.%d." fmt, l), n)
    if ((st = add_vec(x, w, N("attn_norm.weight"), L->attn_norm, H, e)) ||
        (st = add_mat(x, w, N("attn_q.weight"), &L->wq, o->type[Q3_ROLE_ATTN_QKV], e)) ||
        (st = add_mat(x, w, N("attn_k.weight"), &L->wk, o->type[Q3_ROLE_ATTN_QKV], e)) ||
        (st = add_mat(x, w, N("attn_v.weight"), &L->wv, layer_type(o->attn_v_layer[l], o->type[Q3_ROLE_ATTN_V]), e)) ||
        (st = add_mat(x, w, N("attn_output.weight"), &L->wo, o->type[Q3_ROLE_ATTN_OUT], e)) ||
        (st = add_vec(x, w, N("attn_q_norm.weight"), L->q_norm, hd, e)) ||
        (st = add_vec(x, w, N("attn_k_norm.weight"), L->k_norm, hd, e)) ||
        (st = add_vec(x, w, N("ffn_norm.weight"), L->ffn_norm, H, e)))
        return st;
    if (!L->is_moe) {
        q3_type t = o->type[Q3_ROLE_DENSE];
        if ((st = add_mat(x, w, N("ffn_gate.weight"), &L->dense.gate, t, e)) ||
            (st = add_mat(x, w, N("ffn_up.weight"), &L->dense.up, t, e)))
            return st;
        return add_mat(x, w, N("ffn_down.weight"), &L->dense.down, t, e);
    }
    if ((st = add_mat(x, w, N("ffn_gate_inp.weight"), &L->router, o->type[Q3_ROLE_ROUTER], e))) return st;
#undef N
    q3_type gu = o->type[Q3_ROLE_EXPERT_GATE_UP];
    q3_type down = layer_type(o->expert_down_layer[l], o->type[Q3_ROLE_EXPERT_DOWN]);
    if ((st = add_experts(x, w, l, "gate", offsetof(q3_ffn, gate), gu, e)) ||
        (st = add_experts(x, w, l, "up", offsetof(q3_ffn, up), gu, e)))
        return st;
    return add_experts(x, w, l, "down", offsetof(q3_ffn, down), down, e);
}

/* ---- metadata ---- */

q3_status q3_export_add_metadata(q3_gguf_writer *w, const q3_config *c, int file_type, const char *name) {
    q3_status st = 0;
    st |= q3_gguf_set_str(w, "general.architecture", "qwen3moe");
    st |= q3_gguf_set_str(w, "general.name", name);
    st |= q3_gguf_set_u32(w, "general.file_type", (uint32_t)file_type);
    st |= q3_gguf_set_u32(w, "general.quantization_version", 2);
    st |= q3_gguf_set_u32(w, "qwen3moe.block_count", (uint32_t)c->n_layers);
    st |= q3_gguf_set_u32(w, "qwen3moe.context_length", (uint32_t)c->max_context);
    st |= q3_gguf_set_u32(w, "qwen3moe.embedding_length", (uint32_t)c->hidden_size);
    st |= q3_gguf_set_u32(w, "qwen3moe.feed_forward_length", (uint32_t)c->intermediate);
    st |= q3_gguf_set_u32(w, "qwen3moe.attention.head_count", (uint32_t)c->n_heads);
    st |= q3_gguf_set_u32(w, "qwen3moe.attention.head_count_kv", (uint32_t)c->n_kv_heads);
    st |= q3_gguf_set_f32(w, "qwen3moe.rope.freq_base", c->rope_theta);
    st |= q3_gguf_set_f32(w, "qwen3moe.attention.layer_norm_rms_epsilon", c->rms_eps);
    st |= q3_gguf_set_u32(w, "qwen3moe.expert_used_count", (uint32_t)c->n_experts_used);
    st |= q3_gguf_set_u32(w, "qwen3moe.expert_count", (uint32_t)c->n_experts);
    st |= q3_gguf_set_u32(w, "qwen3moe.attention.key_length", (uint32_t)c->head_dim);
    st |= q3_gguf_set_u32(w, "qwen3moe.attention.value_length", (uint32_t)c->head_dim);
    st |= q3_gguf_set_u32(w, "qwen3moe.expert_feed_forward_length", (uint32_t)c->moe_intermediate);
    const q3_rope_scaling *y = &c->rope_scaling;
    if (y->type == Q3_ROPE_SCALING_YARN) { /* llama.cpp's keys, as its converter writes them */
        st |= q3_gguf_set_str(w, "qwen3moe.rope.scaling.type", "yarn");
        st |= q3_gguf_set_f32(w, "qwen3moe.rope.scaling.factor", y->factor);
        st |= q3_gguf_set_u32(w, "qwen3moe.rope.scaling.original_context_length", (uint32_t)y->original_context);
        if (y->beta_fast != 32) st |= q3_gguf_set_f32(w, "qwen3moe.rope.scaling.yarn_beta_fast", y->beta_fast);
        if (y->beta_slow != 1) st |= q3_gguf_set_f32(w, "qwen3moe.rope.scaling.yarn_beta_slow", y->beta_slow);
        /* llama.cpp multiplies this into the 0.1 ln(factor) + 1 it derives itself */
        float derived = q3_yarn_mscale(y->factor, 1);
        if (y->attention_factor != derived)
            st |= q3_gguf_set_f32(w, "qwen3moe.rope.scaling.yarn_attn_factor", y->attention_factor / derived);
    }
    /* llama.cpp assumes renormalised top-k for qwen3moe; say so explicitly when it is not. */
    if (!c->norm_topk_prob) st |= q3_gguf_set_bool(w, "qwen3moe.expert_weights_norm", false);
    return st ? Q3_ENOMEM : Q3_OK;
}

static q3_status add_config(q3_gguf_writer *w, const q3_model *m, const q3_export_options *o) {
    char name[256];
    const char *base = strrchr(m->path, '/');
    snprintf(name, sizeof name, "%s", o->name ? o->name : base && base[1] ? base + 1 : m->path);
    return q3_export_add_metadata(w, &m->cfg, o->file_type, name);
}

/* The tokenizer: a tokenizer.json given by the caller, else the source's own (tokenizer.* keys
 * of a GGUF, or the checkpoint directory's tokenizer.json). */
static q3_status add_tokenizer(q3_gguf_writer *w, const q3_model *m, const char *given, q3_error *e) {
    struct stat st;
    char tj[4096], tc[4096];
    const char *dir = given ? given : m->path;
    if (given && stat(given, &st) == 0 && S_ISREG(st.st_mode)) {
        const char *slash = strrchr(given, '/');
        q3_status err = q3_pathf(tj, sizeof tj, e, "%s", given);
        if (err || (err = q3_pathf(tc, sizeof tc, e, "%.*stokenizer_config.json", slash ? (int)(slash - given + 1) : 0, given)))
            return err;
    } else if (given || m->kind == Q3_SOURCE_HF) {
        q3_status err = q3_pathf(tj, sizeof tj, e, "%s/tokenizer.json", dir);
        if (err || (err = q3_pathf(tc, sizeof tc, e, "%s/tokenizer_config.json", dir))) return err;
    } else {
        for (int64_t i = 0; i < m->gguf.n_kv; i++) {
            const char *k = m->gguf.kv[i].key;
            if ((!strncmp(k, "tokenizer.", 10) || !strncmp(k, "general.sampling.", 17)) && q3_gguf_copy_kv(w, &m->gguf.kv[i]))
                return q3_fail(e, Q3_ENOMEM, "export: out of memory");
        }
        return Q3_OK;
    }
    if (stat(tj, &st) != 0) {
        if (given) return q3_fail(e, Q3_EIO, "%s: no tokenizer.json there", given);
        return Q3_OK; /* a bare checkpoint: weights only */
    }
    return q3_tokenizer_json_to_gguf(w, tj, stat(tc, &st) == 0 ? tc : NULL, m->cfg.vocab_size, m->cfg.bos_token, e);
}

static bool has_generation_config(const char *dir) {
    char p[4096];
    struct stat st;
    return q3_pathf(p, sizeof p, NULL, "%s/generation_config.json", dir) == Q3_OK && stat(p, &st) == 0;
}

q3_status q3_export_gguf(const q3_model *m, const char *out_path, const q3_export_options *o, q3_error *e) {
    const q3_config *c = &m->cfg;
    exporter x = {m, o, NULL, 0, NULL, 0};
    size_t max_tensors = 3 + (size_t)c->n_layers * 13;
    x.tensors = calloc(max_tensors, sizeof *x.tensors);
    x.expert_ptrs = calloc((size_t)c->n_layers * 3 * (c->n_experts ? c->n_experts : 1), sizeof *x.expert_ptrs);
    q3_gguf_writer *w = NULL;
    q3_status st = Q3_ENOMEM;
    if (!x.tensors || !x.expert_ptrs || (st = q3_gguf_writer_new(&w, e))) {
        q3_fail(e, Q3_ENOMEM, "export: out of memory");
        goto done;
    }
    if ((st = add_config(w, m, o))) {
        q3_fail(e, st, "export: out of memory");
        goto done;
    }
    if ((st = add_tokenizer(w, m, o->tokenizer, e))) goto done;
    if (m->kind == Q3_SOURCE_HF && has_generation_config(m->path)) { /* its sampling defaults travel along */
        q3_sampling s = q3_sampling_defaults();
        if ((st = q3_genconfig_load(m->path, &s, e)) || (st = q3_genconfig_to_gguf(w, &s, e))) goto done;
    }
    if ((st = add_mat(&x, w, "token_embd.weight", &m->embed, o->type[Q3_ROLE_EMBED], e))) goto done;
    for (int l = 0; l < c->n_layers; l++)
        if ((st = add_layer(&x, w, l, e))) goto done;
    if ((st = add_vec(&x, w, "output_norm.weight", m->final_norm, c->hidden_size, e))) goto done;
    if (!c->tied_embeddings && (st = add_mat(&x, w, "output.weight", &m->lm_head, o->type[Q3_ROLE_HEAD], e)))
        goto done;
    st = q3_gguf_write(w, out_path, o->progress, o->progress_ctx, e);
done:
    q3_gguf_writer_free(w);
    free(x.tensors);
    free(x.expert_ptrs);
    return st;
}
