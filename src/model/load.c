/* Opening a model: decide the source (checkpoint directory or GGUF file), read the config, bind
 * every weight as a checked view into the mapped files. Helpers shared by both binders. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "base/path.h"
#include "model/model.h"
#include "quant/types.h"

uint64_t q3_mat_bytes(const q3_mat *w) { return (uint64_t)w->rows * q3_row_bytes(w->type, w->cols); }

uint64_t q3_ffn_bytes(const q3_ffn *f) { return q3_mat_bytes(&f->gate) + q3_mat_bytes(&f->up) + q3_mat_bytes(&f->down); }

q3_status q3_mat_make(q3_mat *out, const char *name, q3_type type, const void *data, size_t nbytes,
                      int64_t rows, int64_t cols, const char *path, q3_error *e) {
    const q3_type_traits *tr = q3_type_info(type);
    if (!tr) return q3_fail(e, Q3_EUNSUPPORTED, "%s: tensor %s has an unknown type", path, name);
    if (!tr->vec_dot || !tr->to_float)
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: tensor %s has type %s, not supported yet", path, name, tr->name);
    size_t rb = q3_row_bytes(type, cols);
    if (rb == 0)
        return q3_fail(e, Q3_EFORMAT, "%s: tensor %s: row of %lld is not a whole number of %s blocks",
                       path, name, (long long)cols, tr->name);
    if (rb * (size_t)rows != nbytes)
        return q3_fail(e, Q3_EFORMAT, "%s: tensor %s: %zu bytes, shape (%lld, %lld) of %s needs %zu",
                       path, name, nbytes, (long long)rows, (long long)cols, tr->name, rb * (size_t)rows);
    *out = (q3_mat){data, type, rows, cols, rb, false};
    return Q3_OK;
}

q3_status q3_model_alloc_norms(q3_model *m, q3_error *e) {
    const q3_config *c = &m->cfg;
    size_t per_layer = 2 * (size_t)c->hidden_size + 2 * (size_t)c->head_dim;
    m->norm_storage = malloc((per_layer * (size_t)c->n_layers + (size_t)c->hidden_size) * sizeof(float));
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->norm_storage || !m->layers) return q3_fail(e, Q3_ENOMEM, "%s: out of memory", m->path);
    float *p = m->norm_storage;
    for (int l = 0; l < c->n_layers; l++) {
        q3_layer *L = &m->layers[l];
        L->attn_norm = p, p += c->hidden_size;
        L->ffn_norm = p, p += c->hidden_size;
        L->q_norm = p, p += c->head_dim;
        L->k_norm = p, p += c->head_dim;
        L->is_moe = c->is_moe[l];
        if (L->is_moe && !(L->experts = calloc((size_t)c->n_experts, sizeof *L->experts)))
            return q3_fail(e, Q3_ENOMEM, "%s: out of memory", m->path);
    }
    m->final_norm = p;
    return Q3_OK;
}

static bool is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static q3_status open_source(q3_model *m, q3_error *e) {
    if (is_directory(m->path)) {
        m->kind = Q3_SOURCE_HF;
        char cfg[4096];
        q3_status st = q3_pathf(cfg, sizeof cfg, e, "%s/config.json", m->path);
        if (st || (st = q3_config_from_json_file(&m->cfg, cfg, e))) return st;
        if ((st = q3_hf_quant_read(&m->hf_quant, cfg, e))) return st;
        if ((st = q3_st_checkpoint_open(&m->hf, m->path, e))) return st;
        m->file_bytes = q3_st_checkpoint_bytes(&m->hf);
        if ((st = q3_model_alloc_norms(m, e))) return st;
        return q3_model_bind_hf(m, e);
    }
    m->kind = Q3_SOURCE_GGUF;
    q3_status st = q3_gguf_open(&m->gguf, m->path, e);
    if (st) return st;
    m->file_bytes = m->gguf.map.size;
    if ((st = q3_config_from_gguf(&m->cfg, &m->gguf, e))) return st;
    if ((st = q3_model_alloc_norms(m, e))) return st;
    return q3_model_bind_gguf(m, e);
}

q3_status q3_model_open(q3_model **out, const char *path, const q3_load_options *opts, int rank, int tp, int ep,
                        q3_error *e) {
    *out = NULL;
    q3_model *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return q3_fail(e, Q3_ENOMEM, "%s: out of memory", path);
    }
    q3_status st = open_source(m, e);
    if (!st && opts && opts->rope_scaling.type != Q3_ROPE_SCALING_NONE)
        st = q3_config_set_rope_scaling(&m->cfg, &opts->rope_scaling, "--rope-scaling", e);
    if (!st) st = q3_model_apply_shard(m, rank, tp, ep, e);
    /* After the shard: each process places only the experts it computes. */
    if (!st) st = q3_model_apply_numa(m, opts ? opts->numa : Q3_NUMA_AUTO, opts && opts->verbose, e);
    if (st) {
        q3_model_close(m);
        return st;
    }
    *out = m;
    return Q3_OK;
}

void q3_model_close(q3_model *m) {
    if (!m) return;
    if (m->device_free) m->device_free(m->device);
    for (int l = 0; m->layers && l < m->cfg.n_layers; l++) free(m->layers[l].experts);
    free(m->layers);
    free(m->norm_storage);
    for (int i = 0; i < m->n_repacked; i++) free(m->repacked[i]);
    free(m->repacked);
    q3_st_checkpoint_close(&m->hf);
    q3_gguf_close(&m->gguf);
    free(m->path);
    free(m);
}

const q3_config *q3_model_config(const q3_model *m) { return &m->cfg; }

static int64_t mat_params(const q3_mat *w) { return w->rows * w->cols; }
static int64_t ffn_params(const q3_ffn *f) {
    return mat_params(&f->gate) + mat_params(&f->up) + mat_params(&f->down);
}

void q3_model_param_counts(const q3_model *m, int64_t *total, int64_t *active) {
    const q3_config *c = &m->cfg;
    int64_t norms = (int64_t)c->n_layers * (2 * c->hidden_size + 2 * c->head_dim) + c->hidden_size;
    int64_t shared = mat_params(&m->embed) + norms, all = 0, used = 0;
    if (!c->tied_embeddings) shared += mat_params(&m->lm_head);
    for (int l = 0; l < c->n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        shared += mat_params(&L->wq) + mat_params(&L->wk) + mat_params(&L->wv) + mat_params(&L->wo);
        if (!L->is_moe) {
            shared += ffn_params(&L->dense);
            continue;
        }
        shared += mat_params(&L->router);
        int64_t one = ffn_params(&L->experts[0]);
        all += one * c->n_experts;
        used += one * c->n_experts_used;
    }
    *total = shared + all;
    /* The embedding table is a lookup, not a matmul: a token reads one row of it. */
    *active = shared - mat_params(&m->embed) + c->hidden_size + used;
    if (c->tied_embeddings) *active += mat_params(&m->lm_head);
}
