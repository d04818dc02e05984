/* The model's architecture, q3_config, from either source and checked in one place:
 *   - Hugging Face config.json. Accepts what different transformers versions write: num_experts
 *     or num_local_experts, rope_theta at the top level or under rope_parameters.
 *   - GGUF metadata in llama.cpp's `qwen3moe.*` keys, plus what the tensors say (vocabulary,
 *     tied embeddings, which layers have a router).
 * A missing required field or a wrong type is an error naming it; q3_config_validate then checks
 * the numbers against each other for both. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include "model/model.h"
#include "model/rope.h"

/* ---- config.json ---- */

typedef struct reader {
    json_t *root;
    const char *path;
    q3_error *e;
} reader;

static q3_status get_int(reader *r, const char *key, int *out, bool required, int fallback) {
    json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) {
        if (required) return q3_fail(r->e, Q3_EFORMAT, "%s: field %s is missing", r->path, key);
        *out = fallback;
        return Q3_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 30))
        return q3_fail(r->e, Q3_EFORMAT, "%s: field %s must be a non-negative integer", r->path, key);
    *out = (int)json_integer_value(v);
    return Q3_OK;
}

static q3_status get_float(reader *r, json_t *obj, const char *key, float *out, bool *found) {
    json_t *v = json_object_get(obj, key);
    *found = v && !json_is_null(v);
    if (!*found) return Q3_OK;
    if (!json_is_number(v)) return q3_fail(r->e, Q3_EFORMAT, "%s: field %s must be a number", r->path, key);
    *out = (float)json_number_value(v);
    return Q3_OK;
}

static q3_status get_bool(reader *r, const char *key, bool *out, bool fallback) {
    json_t *v = json_object_get(r->root, key);
    if (!v || json_is_null(v)) {
        *out = fallback;
        return Q3_OK;
    }
    if (!json_is_boolean(v)) return q3_fail(r->e, Q3_EFORMAT, "%s: field %s must be true or false", r->path, key);
    *out = json_is_true(v);
    return Q3_OK;
}

/* ---- RoPE and its scaling ---- */

/* rope_scaling (or, from newer writers, rope_parameters) names its kind in rope_type or, from
 * older ones, type; "default" (or none) is plain RoPE. */
static q3_status read_rope_kind(reader *r, json_t *obj, const char *where, bool *yarn) {
    json_t *type = json_object_get(obj, "rope_type");
    if (!type || json_is_null(type)) type = json_object_get(obj, "type");
    *yarn = false;
    if (!type || json_is_null(type)) return Q3_OK;
    if (!json_is_string(type)) return q3_fail(r->e, Q3_EFORMAT, "%s: %s.rope_type must be a string", r->path, where);
    const char *t = json_string_value(type);
    if (!strcmp(t, "default")) return Q3_OK;
    if (strcmp(t, "yarn"))
        return q3_fail(r->e, Q3_EUNSUPPORTED, "%s: %s.rope_type %s is not supported (only yarn and default)",
                       r->path, where, t);
    *yarn = true;
    return Q3_OK;
}

/* YaRN's fields as transformers reads them: factor (else max_position_embeddings over
 * original_max_position_embeddings), original_max_position_embeddings (else
 * max_position_embeddings), beta_fast / beta_slow, and attention_factor, else DeepSeek's
 * mscale / mscale_all_dim ratio, else 0.1 ln(factor) + 1. */
static q3_status read_yarn(reader *r, json_t *obj, const char *where, q3_config *c) {
    q3_rope_scaling s = {.type = Q3_ROPE_SCALING_YARN, .original_context = c->max_context};
    reader sub = {obj, r->path, r->e};
    bool has_factor, found;
    float mscale = 0, mscale_all = 0;
    q3_status st;
    if ((st = get_int(&sub, "original_max_position_embeddings", &s.original_context, false, c->max_context)) ||
        (st = get_float(r, obj, "factor", &s.factor, &has_factor)) ||
        (st = get_float(r, obj, "beta_fast", &s.beta_fast, &found)) ||
        (st = get_float(r, obj, "beta_slow", &s.beta_slow, &found)) ||
        (st = get_float(r, obj, "attention_factor", &s.attention_factor, &found)) ||
        (st = get_float(r, obj, "mscale", &mscale, &found)) ||
        (st = get_float(r, obj, "mscale_all_dim", &mscale_all, &found)))
        return st;
    if (!has_factor && s.original_context > 0) s.factor = (float)c->max_context / (float)s.original_context;
    json_t *truncate = json_object_get(obj, "truncate");
    if (json_is_false(truncate))
        return q3_fail(r->e, Q3_EUNSUPPORTED, "%s: %s.truncate false is not supported", r->path, where);
    if (s.attention_factor == 0 && mscale != 0 && mscale_all != 0)
        s.attention_factor = q3_yarn_mscale(s.factor, mscale) / q3_yarn_mscale(s.factor, mscale_all);
    return q3_config_set_rope_scaling(c, &s, r->path, r->e);
}

/* rope_theta at the top level or, from newer writers, under rope_parameters; the scaling in
 * rope_scaling, or in rope_parameters beside rope_theta. */
static q3_status read_rope(reader *r, q3_config *c) {
    bool found, yarn;
    json_t *rp = json_object_get(r->root, "rope_parameters"), *rs = json_object_get(r->root, "rope_scaling");
    q3_status st = get_float(r, r->root, "rope_theta", &c->rope_theta, &found);
    if (!st && !found && json_is_object(rp)) st = get_float(r, rp, "rope_theta", &c->rope_theta, &found);
    if (st) return st;
    if (!found) return q3_fail(r->e, Q3_EFORMAT, "%s: field rope_theta is missing", r->path);
    const char *where = "rope_scaling";
    if (!rs || json_is_null(rs)) rs = rp, where = "rope_parameters";
    if (!rs || json_is_null(rs)) return Q3_OK;
    if (!json_is_object(rs)) return q3_fail(r->e, Q3_EFORMAT, "%s: field %s must be an object", r->path, where);
    if ((st = read_rope_kind(r, rs, where, &yarn)) || !yarn) return st;
    return read_yarn(r, rs, where, c);
}

/* A layer is MoE unless listed in mlp_only_layers or off the decoder_sparse_step grid. */
static q3_status read_layer_kinds(reader *r, q3_config *c) {
    int step;
    q3_status st = get_int(r, "decoder_sparse_step", &step, false, 1);
    if (st) return st;
    for (int i = 0; i < c->n_layers; i++) c->is_moe[i] = c->n_experts > 0 && step > 0 && (i + 1) % step == 0;
    json_t *only = json_object_get(r->root, "mlp_only_layers");
    if (!only || json_is_null(only)) return Q3_OK;
    if (!json_is_array(only)) return q3_fail(r->e, Q3_EFORMAT, "%s: field mlp_only_layers must be a list", r->path);
    size_t i;
    json_t *v;
    json_array_foreach(only, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= c->n_layers)
            return q3_fail(r->e, Q3_EFORMAT, "%s: mlp_only_layers[%zu] is not a layer index", r->path, i);
        c->is_moe[json_integer_value(v)] = false;
    }
    return Q3_OK;
}

static q3_status read_config(reader *r, q3_config *c) {
    q3_status st;
    json_t *mt = json_object_get(r->root, "model_type");
    if (json_is_string(mt) && strcmp(json_string_value(mt), "qwen3_moe"))
        return q3_fail(r->e, Q3_EUNSUPPORTED, "%s: model_type %s is not qwen3_moe", r->path,
                       json_string_value(mt));
    if ((st = get_int(r, "vocab_size", &c->vocab_size, true, 0)) ||
        (st = get_int(r, "hidden_size", &c->hidden_size, true, 0)) ||
        (st = get_int(r, "num_hidden_layers", &c->n_layers, true, 0)) ||
        (st = get_int(r, "num_attention_heads", &c->n_heads, true, 0)) ||
        (st = get_int(r, "num_key_value_heads", &c->n_kv_heads, false, c->n_heads)) ||
        (st = get_int(r, "head_dim", &c->head_dim, false, c->n_heads ? c->hidden_size / c->n_heads : 0)) ||
        (st = get_int(r, "num_experts_per_tok", &c->n_experts_used, true, 0)) ||
        (st = get_int(r, "moe_intermediate_size", &c->moe_intermediate, true, 0)) ||
        (st = get_int(r, "intermediate_size", &c->intermediate, false, 0)) ||
        (st = get_int(r, "max_position_embeddings", &c->max_context, false, 32768)) ||
        (st = get_int(r, "bos_token_id", &c->bos_token, false, -1)) ||
        (st = get_int(r, "eos_token_id", &c->eos_token, false, -1)) ||
        (st = get_bool(r, "norm_topk_prob", &c->norm_topk_prob, false)) ||
        (st = get_bool(r, "tie_word_embeddings", &c->tied_embeddings, false)))
        return st;
    bool has_experts = json_object_get(r->root, "num_experts") != NULL;
    if ((st = get_int(r, has_experts ? "num_experts" : "num_local_experts", &c->n_experts, true, 0))) return st;
    bool found;
    if ((st = get_float(r, r->root, "rms_norm_eps", &c->rms_eps, &found))) return st;
    if (!found) c->rms_eps = 1e-6f;
    if ((st = read_rope(r, c))) return st;
    if (c->n_layers > Q3_MAX_LAYERS)
        return q3_fail(r->e, Q3_EUNSUPPORTED, "%s: num_hidden_layers %d exceeds %d", r->path, c->n_layers, Q3_MAX_LAYERS);
    return read_layer_kinds(r, c);
}

static q3_status from_json(q3_config *c, json_t *root, const char *path, q3_error *e) {
    reader r = {root, path, e};
    q3_status st = json_is_object(root) ? read_config(&r, c)
                                        : q3_fail(e, Q3_EFORMAT, "%s: not a JSON object", path);
    json_decref(root);
    return st ? st : q3_config_validate(c, path, e);
}

q3_status q3_config_from_json_file(q3_config *c, const char *path, q3_error *e) {
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        if (strstr(je.text, "unable to open"))
            return q3_fail(e, Q3_EIO, "%s: cannot open", path);
        return q3_fail(e, Q3_EFORMAT, "%s: not JSON: %s (line %d)", path, je.text, je.line);
    }
    return from_json(c, root, path, e);
}

q3_status q3_config_from_json_buffer(q3_config *c, const char *data, size_t len, const char *path, q3_error *e) {
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *root = json_loadb(data, len, 0, &je);
    if (!root) return q3_fail(e, Q3_EFORMAT, "%s: not JSON: %s (line %d)", path, je.text, je.line);
    return from_json(c, root, path, e);
}

/* ---- GGUF metadata ---- */

static q3_status gguf_int(const q3_gguf *g, const char *key, int *out, bool required, int fallback, q3_error *e) {
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

static q3_status gguf_opt_float(const q3_gguf *g, const char *key, float *out, q3_error *e) {
    double v;
    if (!q3_gguf_find_kv(g, key)) return Q3_OK;
    q3_status st = q3_gguf_get_float(g, key, &v, e);
    if (!st) *out = (float)v;
    return st;
}

/* llama.cpp's keys: rope.scaling.type ("none", "linear", "yarn", ...), .factor,
 * .original_context_length, .yarn_beta_fast / .yarn_beta_slow, and .yarn_attn_factor (or
 * .attn_factor), which llama.cpp multiplies into the 0.1 ln(factor) + 1 it derives itself. */
static q3_status gguf_rope_scaling(q3_config *c, const q3_gguf *g, q3_error *e) {
    if (!q3_gguf_find_kv(g, "qwen3moe.rope.scaling.type")) return Q3_OK;
    q3_gguf_str type;
    q3_status st = q3_gguf_get_str(g, "qwen3moe.rope.scaling.type", &type, e);
    if (st) return st;
    if (type.len == 4 && !memcmp(type.ptr, "none", 4)) return Q3_OK;
    if (type.len != 4 || memcmp(type.ptr, "yarn", 4))
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: rope scaling type %.*s is not supported (only yarn and none)", g->path,
                       (int)(type.len > 64 ? 64 : type.len), type.ptr);
    q3_rope_scaling s = {.type = Q3_ROPE_SCALING_YARN, .factor = 1};
    float attn = 1;
    if ((st = gguf_int(g, "qwen3moe.rope.scaling.original_context_length", &s.original_context, false, c->max_context, e)) ||
        (st = gguf_opt_float(g, "qwen3moe.rope.scaling.factor", &s.factor, e)) ||
        (st = gguf_opt_float(g, "qwen3moe.rope.scaling.yarn_beta_fast", &s.beta_fast, e)) ||
        (st = gguf_opt_float(g, "qwen3moe.rope.scaling.yarn_beta_slow", &s.beta_slow, e)) ||
        (st = gguf_opt_float(g, "qwen3moe.rope.scaling.attn_factor", &attn, e)) ||
        (st = gguf_opt_float(g, "qwen3moe.rope.scaling.yarn_attn_factor", &attn, e)))
        return st;
    s.attention_factor = attn * q3_yarn_mscale(s.factor, 1);
    return q3_config_set_rope_scaling(c, &s, g->path, e);
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
    if ((st = gguf_int(g, "qwen3moe.block_count", &c->n_layers, true, 0, e)) ||
        (st = gguf_int(g, "qwen3moe.embedding_length", &c->hidden_size, true, 0, e)) ||
        (st = gguf_int(g, "qwen3moe.attention.head_count", &c->n_heads, true, 0, e)) ||
        (st = gguf_int(g, "qwen3moe.attention.head_count_kv", &c->n_kv_heads, false, c->n_heads, e)) ||
        (st = gguf_int(g, "qwen3moe.attention.key_length", &c->head_dim, false,
                      c->n_heads ? c->hidden_size / c->n_heads : 0, e)) ||
        (st = gguf_int(g, "qwen3moe.expert_count", &c->n_experts, true, 0, e)) ||
        (st = gguf_int(g, "qwen3moe.expert_used_count", &c->n_experts_used, true, 0, e)) ||
        (st = gguf_int(g, "qwen3moe.expert_feed_forward_length", &c->moe_intermediate, true, 0, e)) ||
        (st = gguf_int(g, "qwen3moe.feed_forward_length", &c->intermediate, false, 0, e)) ||
        (st = gguf_int(g, "qwen3moe.context_length", &c->max_context, false, 32768, e)) ||
        (st = gguf_int(g, "tokenizer.ggml.bos_token_id", &c->bos_token, false, -1, e)) ||
        (st = gguf_int(g, "tokenizer.ggml.eos_token_id", &c->eos_token, false, -1, e)) ||
        (st = q3_gguf_get_float(g, "qwen3moe.rope.freq_base", &theta, e)) ||
        (st = q3_gguf_get_float(g, "qwen3moe.attention.layer_norm_rms_epsilon", &eps, e)))
        return st;
    c->rope_theta = (float)theta;
    c->rms_eps = (float)eps;
    if ((st = gguf_rope_scaling(c, g, e))) return st;
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

/* ---- one validation for both ---- */

q3_status q3_config_set_rope_scaling(q3_config *c, const q3_rope_scaling *s, const char *src, q3_error *e) {
    if (s->type == Q3_ROPE_SCALING_NONE) {
        c->rope_scaling = *s;
        return Q3_OK;
    }
    q3_rope_scaling y = *s;
    if (!(y.factor >= 1 && y.factor <= 1024))
        return q3_fail(e, Q3_EINVAL, "%s: YaRN factor %g must be in 1..1024", src, y.factor);
    if (y.original_context <= 0) y.original_context = c->max_context;
    if (y.original_context <= 0 || (double)y.original_context * y.factor > (double)(1 << 30))
        return q3_fail(e, Q3_EINVAL, "%s: YaRN original context %d out of range", src, y.original_context);
    if (y.beta_fast == 0) y.beta_fast = 32;
    if (y.beta_slow == 0) y.beta_slow = 1;
    if (y.attention_factor == 0) y.attention_factor = q3_yarn_mscale(y.factor, 1);
    if (!(y.beta_fast > 0 && y.beta_slow > 0 && y.attention_factor > 0 && y.attention_factor < 100))
        return q3_fail(e, Q3_EINVAL, "%s: YaRN beta_fast %g, beta_slow %g and attention_factor %g must be positive",
                       src, y.beta_fast, y.beta_slow, y.attention_factor);
    c->rope_scaling = y;
    /* The context the scaling is for: Qwen3 declares 40960 positions and YaRN x4 over 32768. */
    int extended = (int)((double)y.original_context * y.factor);
    if (extended > c->max_context) c->max_context = extended;
    return Q3_OK;
}

q3_status q3_config_validate(const q3_config *c, const char *src, q3_error *e) {
#define REQUIRE(cond, ...) \
    if (!(cond)) return q3_fail(e, Q3_EFORMAT, __VA_ARGS__)
    REQUIRE(c->vocab_size > 0, "%s: vocab_size must be positive", src);
    REQUIRE(c->hidden_size > 0, "%s: hidden_size must be positive", src);
    REQUIRE(c->n_layers > 0, "%s: num_hidden_layers must be positive", src);
    REQUIRE(c->n_heads > 0 && c->n_kv_heads > 0, "%s: head counts must be positive", src);
    REQUIRE(c->n_heads % c->n_kv_heads == 0,
            "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", src, c->n_heads,
            c->n_kv_heads);
    REQUIRE(c->head_dim > 0 && c->head_dim % 2 == 0 && c->head_dim <= 1024,
            "%s: head_dim %d must be even and positive", src, c->head_dim);
    REQUIRE(c->rms_eps > 0, "%s: rms_norm_eps must be positive", src);
    REQUIRE(c->rope_theta > 0, "%s: rope_theta must be positive", src);
    bool any_moe = false, any_dense = false;
    for (int i = 0; i < c->n_layers; i++) {
        if (c->is_moe[i]) any_moe = true;
        else any_dense = true;
    }
    if (any_moe) {
        REQUIRE(c->n_experts > 0 && c->n_experts <= 4096, "%s: num_experts %d out of range", src, c->n_experts);
        REQUIRE(c->n_experts_used > 0 && c->n_experts_used <= c->n_experts,
                "%s: num_experts_per_tok %d must be in 1..num_experts", src, c->n_experts_used);
        REQUIRE(c->moe_intermediate > 0, "%s: moe_intermediate_size must be positive", src);
    }
    if (any_dense) REQUIRE(c->intermediate > 0, "%s: intermediate_size must be positive (dense layers)", src);
    return Q3_OK;
#undef REQUIRE
}
