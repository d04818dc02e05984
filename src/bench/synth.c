/* The synthetic GGUF writer. A plan lists the tensors in the reference writer's order (embedding,
 * then per layer attention, norms, router and stacked experts, then the final norm and head);
 * the GGUF writer asks for each tensor's bytes when it reaches it, so memory holds one tensor at
 * a time and the file goes out in large writes. Random bytes come from a splitmix64 stream
 * seeded per tensor: the file is the same on every run. */
#include "bench/synth.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "base/half.h"
#include "model/export.h"
#include "cpu/kernel_table.h"
#include "quant/iq_blocks.h"

static const q3_synth_type TYPES[] = {
    {"q4_k_m", Q3_TYPE_Q4_K, Q3_TYPE_Q6_K, 15}, /* llama.cpp's MOSTLY_Q4_K_M */
    {"q5_k_m", Q3_TYPE_Q5_K, Q3_TYPE_Q6_K, 17}, /* MOSTLY_Q5_K_M */
    {"q6_k", Q3_TYPE_Q6_K, Q3_TYPE_Q6_K, 18},
    {"q8_0", Q3_TYPE_Q8_0, Q3_TYPE_Q8_0, 7},
    {"bf16", Q3_TYPE_BF16, Q3_TYPE_BF16, 32},
    {"iq4_xs", Q3_TYPE_IQ4_XS, Q3_TYPE_Q6_K, 30}, /* MOSTLY_IQ4_XS */
    {"iq4_nl", Q3_TYPE_IQ4_NL, Q3_TYPE_Q6_K, 25}, /* MOSTLY_IQ4_NL */
    {"iq3_xxs", Q3_TYPE_IQ3_XXS, Q3_TYPE_Q6_K, 23}, /* MOSTLY_IQ3_XXS */
    {"iq2_xxs", Q3_TYPE_IQ2_XXS, Q3_TYPE_Q6_K, 19}, /* MOSTLY_IQ2_XXS */
    {"iq3_s", Q3_TYPE_IQ3_S, Q3_TYPE_Q6_K, 26},     /* MOSTLY_IQ3_S */
    {"iq2_s", Q3_TYPE_IQ2_S, Q3_TYPE_Q6_K, 28},     /* MOSTLY_IQ2_S */
    {"iq2_xs", Q3_TYPE_IQ2_XS, Q3_TYPE_Q6_K, 20},   /* MOSTLY_IQ2_XS */
    {"iq1_m", Q3_TYPE_IQ1_M, Q3_TYPE_Q6_K, 31},     /* MOSTLY_IQ1_M */
    {"iq1_s", Q3_TYPE_IQ1_S, Q3_TYPE_Q6_K, 24},     /* MOSTLY_IQ1_S */
};

bool q3_synth_type_from_name(const char *name, q3_synth_type *out) {
    for (size_t i = 0; i < sizeof TYPES / sizeof *TYPES; i++) {
        if (strcasecmp(name, TYPES[i].name) == 0) {
            *out = TYPES[i];
            return true;
        }
    }
    return false;
}

const char *q3_synth_type_names(void) {
    return "q4_k_m, q5_k_m, q6_k, q8_0, bf16, iq4_xs, iq4_nl, iq3_s, iq3_xxs, iq2_s, iq2_xs, iq2_xxs, iq1_m, iq1_s";
}

/* ---- the plan ---- */

typedef enum fill_kind { FILL_MATRIX, FILL_NORM, FILL_ROUTER } fill_kind;

typedef struct synth_tensor {
    char name[64];
    q3_type type;
    int n_dims;
    int64_t ne[3]; /* ne[0] is the row length */
    fill_kind kind;
} synth_tensor;

typedef struct synth_plan {
    synth_tensor *tensors;
    int n;
} synth_plan;

static void plan_add(synth_plan *p, fill_kind kind, q3_type type, int n_dims, int64_t ne0, int64_t ne1, int64_t ne2,
                     const char *fmt, int layer) {
    synth_tensor *t = &p->tensors[p->n++];
    snprintf(t->name, sizeof t->name, fmt, layer);
    /* A row that is not a whole number of blocks falls back as llama.cpp's quantizer does. */
    t->type = kind == FILL_MATRIX ? q3_export_fallback_type(type, ne0) : Q3_TYPE_F32;
    t->n_dims = n_dims;
    t->ne[0] = ne0, t->ne[1] = ne1, t->ne[2] = ne2;
    t->kind = kind;
}

static void plan_layer(synth_plan *p, const q3_config *c, q3_type mat, int l) {
    int64_t H = c->hidden_size, hd = c->head_dim, q = (int64_t)c->n_heads * hd, kv = (int64_t)c->n_kv_heads * hd;
    plan_add(p, FILL_NORM, Q3_TYPE_F32, 1, H, 1, 1, "blk.%d.attn_norm.weight", l);
    plan_add(p, FILL_MATRIX, mat, 2, H, q, 1, "blk.%d.attn_q.weight", l);
    plan_add(p, FILL_MATRIX, mat, 2, H, kv, 1, "blk.%d.attn_k.weight", l);
    plan_add(p, FILL_MATRIX, mat, 2, H, kv, 1, "blk.%d.attn_v.weight", l);
    plan_add(p, FILL_MATRIX, mat, 2, q, H, 1, "blk.%d.attn_output.weight", l);
    plan_add(p, FILL_NORM, Q3_TYPE_F32, 1, hd, 1, 1, "blk.%d.attn_q_norm.weight", l);
    plan_add(p, FILL_NORM, Q3_TYPE_F32, 1, hd, 1, 1, "blk.%d.attn_k_norm.weight", l);
    plan_add(p, FILL_NORM, Q3_TYPE_F32, 1, H, 1, 1, "blk.%d.ffn_norm.weight", l);
    if (!c->is_moe[l]) {
        int64_t F = c->intermediate;
        plan_add(p, FILL_MATRIX, mat, 2, H, F, 1, "blk.%d.ffn_gate.weight", l);
        plan_add(p, FILL_MATRIX, mat, 2, H, F, 1, "blk.%d.ffn_up.weight", l);
        plan_add(p, FILL_MATRIX, mat, 2, F, H, 1, "blk.%d.ffn_down.weight", l);
        return;
    }
    int64_t E = c->n_experts, F = c->moe_intermediate;
    plan_add(p, FILL_ROUTER, Q3_TYPE_F32, 2, H, E, 1, "blk.%d.ffn_gate_inp.weight", l);
    plan_add(p, FILL_MATRIX, mat, 3, H, F, E, "blk.%d.ffn_gate_exps.weight", l);
    plan_add(p, FILL_MATRIX, mat, 3, H, F, E, "blk.%d.ffn_up_exps.weight", l);
    plan_add(p, FILL_MATRIX, mat, 3, F, H, E, "blk.%d.ffn_down_exps.weight", l);
}

static q3_status plan_make(synth_plan *p, const q3_config *c, const q3_synth_type *t) {
    p->n = 0;
    p->tensors = calloc(3 + (size_t)c->n_layers * 12, sizeof *p->tensors);
    if (!p->tensors) return Q3_ENOMEM;
    int64_t H = c->hidden_size, V = c->vocab_size;
    plan_add(p, FILL_MATRIX, t->matrix, 2, H, V, 1, "token_embd.weight", 0);
    for (int l = 0; l < c->n_layers; l++) plan_layer(p, c, t->matrix, l);
    plan_add(p, FILL_NORM, Q3_TYPE_F32, 1, H, 1, 1, "output_norm.weight", 0);
    if (!c->tied_embeddings) plan_add(p, FILL_MATRIX, t->head, 2, H, V, 1, "output.weight", 0);
    return Q3_OK;
}

static size_t tensor_bytes(const synth_tensor *t) {
    return q3_row_bytes(t->type, t->ne[0]) * (size_t)t->ne[1] * (size_t)t->ne[2];
}

uint64_t q3_synth_file_bytes(const q3_config *c, const q3_synth_type *t) {
    synth_plan p;
    /* Without memory for the plan, an estimate from the largest type is still a safe answer. */
    if (plan_make(&p, c, t)) return UINT64_MAX;
    uint64_t bytes = (uint64_t)1 << 20; /* header and metadata: a few KiB, generously */
    for (int i = 0; i < p.n; i++) bytes += (tensor_bytes(&p.tensors[i]) + 31) / 32 * 32;
    free(p.tensors);
    return bytes;
}

/* ---- the bytes ---- */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-half_width, half_width). */
static float uniform(uint64_t *state, float half_width) {
    return ((float)(splitmix64(state) >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * half_width;
}

static void random_bytes(uint64_t *state, unsigned char *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t r = splitmix64(state);
        memcpy(dst + i, &r, 8);
    }
    uint64_t r = splitmix64(state);
    memcpy(dst + i, &r, n - i);
}

/* The fp16 fields of a block that scale its quants: byte offsets and the values they get.
 * Small values keep every weight, and so every activation, far from fp16/f32 overflow. */
typedef struct block_scales {
    int n;
    int offset[2];
    float value[2];
} block_scales;

static bool scales_of(q3_type t, block_scales *s) {
    switch (t) {
    case Q3_TYPE_Q4_0: case Q3_TYPE_Q5_0: case Q3_TYPE_Q8_0:
        *s = (block_scales){1, {0, 0}, {0.002f, 0}};
        return true;
    case Q3_TYPE_Q4_1: case Q3_TYPE_Q5_1: case Q3_TYPE_Q4_K: case Q3_TYPE_Q5_K:
        *s = (block_scales){2, {0, 2}, {0.002f, 0.001f}}; /* d, then the min's scale */
        return true;
    case Q3_TYPE_Q6_K:
        *s = (block_scales){1, {208, 0}, {0.002f, 0}}; /* d sits after ql, qh and scales */
        return true;
    /* i-quants: d leads the block; its size keeps weights within +-2 like the K-quants' */
    case Q3_TYPE_IQ4_NL: *s = (block_scales){1, {0, 0}, {0.01f, 0}}; return true;
    case Q3_TYPE_IQ4_XS: *s = (block_scales){1, {0, 0}, {0.0005f, 0}}; return true;
    case Q3_TYPE_IQ3_XXS: *s = (block_scales){1, {0, 0}, {0.004f, 0}}; return true;
    case Q3_TYPE_IQ2_XXS: case Q3_TYPE_IQ2_XS: case Q3_TYPE_IQ2_S:
        *s = (block_scales){1, {0, 0}, {0.01f, 0}};
        return true;
    case Q3_TYPE_IQ3_S: *s = (block_scales){1, {0, 0}, {0.004f, 0}}; return true;
    case Q3_TYPE_IQ1_S: *s = (block_scales){1, {0, 0}, {0.1f, 0}}; return true;
    case Q3_TYPE_IQ1_M: *s = (block_scales){0, {0, 0}, {0.1f, 0}}; return true; /* d: set_iq1m_d */
    default:
        return false;
    }
}

/* IQ1_M keeps its fp16 d in the top nibbles of its four 16-bit scale words, word k nibble k
 * (q3_iq1m_d reads it back). */
static void set_iq1m_d(unsigned char *block, uint16_t d) {
    unsigned char *scales = block + offsetof(q3_block_iq1_m, scales);
    uint16_t w[4];
    memcpy(w, scales, sizeof w);
    for (int k = 0; k < 4; k++) w[k] = (uint16_t)((w[k] & 0x0fff) | ((d >> 4 * k) & 0xf) << 12);
    memcpy(scales, w, sizeof w);
}

static q3_status fill_quantized(uint64_t *state, const synth_tensor *t, unsigned char *dst, size_t nbytes,
                                q3_error *e) {
    block_scales s;
    if (!scales_of(t->type, &s))
        return q3_fail(e, Q3_EUNSUPPORTED, "synthetic model: tensor %s: no random fill for type %s", t->name,
                       q3_type_name(t->type));
    random_bytes(state, dst, nbytes);
    size_t block = q3_type_get(t->type)->type_size;
    uint16_t half[2] = {q3_f32_to_f16(s.value[0]), q3_f32_to_f16(s.value[1])};
    for (size_t o = 0; o + block <= nbytes; o += block) {
        for (int i = 0; i < s.n; i++) memcpy(dst + o + s.offset[i], &half[i], 2);
        if (t->type == Q3_TYPE_IQ1_M) set_iq1m_d(dst + o, half[0]);
    }
    return Q3_OK;
}

/* Float matrices get small uniform values: random bits would hold NaNs and infinities. */
static void fill_float_matrix(uint64_t *state, q3_type type, void *dst, size_t count) {
    const float width = 0.05f;
    for (size_t i = 0; i < count; i++) {
        float v = uniform(state, width);
        if (type == Q3_TYPE_F32) ((float *)dst)[i] = v;
        else ((uint16_t *)dst)[i] = type == Q3_TYPE_BF16 ? q3_f32_to_bf16(v) : q3_f32_to_f16(v);
    }
}

typedef struct synth_ctx {
    const synth_plan *plan;
} synth_ctx;

static q3_status fill_tensor(void *ctx, int index, void *dst, size_t nbytes, q3_error *e) {
    const synth_tensor *t = &((synth_ctx *)ctx)->plan->tensors[index];
    uint64_t state = 0x5eed0000ull + (uint64_t)index;
    const q3_type_traits *tr = q3_type_get(t->type);
    size_t count = nbytes / tr->type_size;
    float *f = dst;
    switch (t->kind) {
    case FILL_NORM: /* near 1, as trained RMSNorm weights are */
        for (size_t i = 0; i < count; i++) f[i] = 1.0f + uniform(&state, 0.1f);
        return Q3_OK;
    case FILL_ROUTER: /* small, so the softmax is flat-ish and the top-k differs by token */
        for (size_t i = 0; i < count; i++) f[i] = uniform(&state, 0.05f);
        return Q3_OK;
    case FILL_MATRIX:
        break;
    }
    if (tr->block_size > 1) return fill_quantized(&state, t, dst, nbytes, e);
    if (t->type != Q3_TYPE_F32 && t->type != Q3_TYPE_F16 && t->type != Q3_TYPE_BF16)
        return q3_fail(e, Q3_EUNSUPPORTED, "synthetic model: tensor %s: no random fill for type %s", t->name,
                       q3_type_name(t->type));
    fill_float_matrix(&state, t->type, dst, count);
    return Q3_OK;
}

q3_status q3_synth_write(const char *path, const q3_config *c, const q3_synth_type *t, const char *name,
                         void (*progress)(void *ctx, int done, int total), void *progress_ctx, q3_error *e) {
    synth_plan plan = {0};
    q3_gguf_writer *w = NULL;
    q3_status st = plan_make(&plan, c, t);
    if (!st) st = q3_gguf_writer_new(&w, e);
    if (!st) st = q3_export_add_metadata(w, c, t->file_type, name);
    if (!st && c->bos_token >= 0) st = q3_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos_token);
    if (!st && c->eos_token >= 0) st = q3_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)c->eos_token);
    if (st) {
        q3_fail(e, st, "synthetic model %s: out of memory", path);
        goto done;
    }
    synth_ctx ctx = {&plan};
    for (int i = 0; i < plan.n && !st; i++) {
        const synth_tensor *s = &plan.tensors[i];
        st = q3_gguf_add_tensor(w, s->name, s->type, s->n_dims, s->ne, NULL, fill_tensor, &ctx, e);
    }
    if (!st) st = q3_gguf_write(w, path, progress, progress_ctx, e);
done:
    q3_gguf_writer_free(w);
    free(plan.tensors);
    return st;
}
