/* A scalar, one-token-at-a-time Qwen3-MoE forward pass, written to be read: the whole model on
 * one screen or two, in the manner of llama2.c's run.c. No batches, pages, tiles, threads or
 * backends: plain arrays and loops, each weight row through its type's portable reference kernel
 * (the scalar ISA). It is the map of the model for a newcomer and the oracle the batched engine
 * (src/model/forward.c over src/cpu/) must agree with, token by token, on the fixtures. */
#include <math.h>
#include "model/model.h"
#include "model/runner.h"
#include "cpu/kernel_table.h"
#include "testutil.h"

/* ---------------------------------------------------------------- the model, token by token */

typedef struct ref_state {
    const q3_model *m;
    int max_pos;
    float *x, *xn, *q, *k, *v, *att, *out, *logits; /* one token's activations */
    float *key_cache, *value_cache;                /* [layer][pos][n_kv_heads * head_dim] */
    float *h, *y, *probs;                          /* one expert's hidden row, its output, routing */
    unsigned char *xq;                             /* x in the weight type's activation format */
} ref_state;

/* y = W x: every row through the reference vec_dot, x first converted the way the type wants. */
static void matvec(ref_state *s, const q3_mat *w, const float *x, float *y) {
    const q3_type_traits *tr = q3_type_get_isa(w->type, Q3_ISA_SCALAR);
    const void *act = x;
    if (tr->vec_dot_type != Q3_TYPE_F32) {
        q3_type_get_isa(tr->vec_dot_type, Q3_ISA_SCALAR)->from_float(x, s->xq, w->cols);
        act = s->xq;
    }
    for (int64_t r = 0; r < w->rows; r++) y[r] = tr->vec_dot(w->cols, (const char *)w->data + r * w->row_bytes, act);
}

static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    float ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * scale);
}

/* YaRN (arXiv 2309.00071, as transformers computes it): the frequency of pair i is divided by
 * `factor` when it turns fewer than beta_slow times over the original context, kept when it turns
 * more than beta_fast times, blended linearly between (in pair indices, bounds rounded outwards);
 * cos and sin are scaled by the attention factor. */
static float yarn_freq(const q3_rope_scaling *y, int i, int d, float theta, float freq) {
    double dim_of_rotations[2], rot[2] = {y->beta_fast, y->beta_slow};
    for (int k = 0; k < 2; k++)
        dim_of_rotations[k] = d * log(y->original_context / (rot[k] * 2 * M_PI)) / (2 * log(theta));
    double lo = fmax(floor(dim_of_rotations[0]), 0), hi = fmin(ceil(dim_of_rotations[1]), d - 1);
    if (lo == hi) hi += 0.001;
    float ramp = fminf(fmaxf(((float)i - (float)lo) / (float)(hi - lo), 0), 1); /* 0: kept, 1: divided */
    float kept = 1 - ramp;
    return freq / y->factor * (1 - kept) + freq * kept;
}

/* NeoX RoPE: dimension i pairs with i + d/2, angle pos / theta^(2i/d) (scaled by YaRN if set). */
static void rope(float *v, int pos, int d, float theta, const q3_rope_scaling *y) {
    bool yarn = y->type == Q3_ROPE_SCALING_YARN;
    for (int i = 0; i < d / 2; i++) {
        float freq = 1.0f / powf(theta, (float)(2 * i) / d);
        if (yarn) freq = yarn_freq(y, i, d, theta, freq);
        float angle = pos * freq, c = cosf(angle), sn = sinf(angle);
        if (yarn) c *= y->attention_factor, sn *= y->attention_factor;
        float a = v[i], b = v[i + d / 2];
        v[i] = a * c - b * sn;
        v[i + d / 2] = b * c + a * sn;
    }
}

static float silu(float x) { return x / (1.0f + expf(-x)); }

/* y = down(silu(gate x) * up x) */
static void swiglu(ref_state *s, const q3_ffn *f, const float *x, float *y) {
    int F = (int)f->gate.rows;
    float *up = s->h + F;
    matvec(s, &f->gate, x, s->h);
    matvec(s, &f->up, x, up);
    for (int i = 0; i < F; i++) s->h[i] = silu(s->h[i]) * up[i];
    matvec(s, &f->down, s->h, y);
}

static void attention(ref_state *s, const q3_layer *L, int l, int pos) {
    const q3_config *c = &s->m->cfg;
    int hd = c->head_dim, kvd = c->n_kv_heads * hd, group = c->n_heads / c->n_kv_heads;
    matvec(s, &L->wq, s->xn, s->q);
    matvec(s, &L->wk, s->xn, s->k);
    matvec(s, &L->wv, s->xn, s->v);
    for (int h = 0; h < c->n_heads; h++) rmsnorm(s->q + h * hd, s->q + h * hd, L->q_norm, hd, c->rms_eps);
    for (int h = 0; h < c->n_kv_heads; h++) rmsnorm(s->k + h * hd, s->k + h * hd, L->k_norm, hd, c->rms_eps);
    for (int h = 0; h < c->n_heads; h++) rope(s->q + h * hd, pos, hd, c->rope_theta, &c->rope_scaling);
    for (int h = 0; h < c->n_kv_heads; h++) rope(s->k + h * hd, pos, hd, c->rope_theta, &c->rope_scaling);
    float *kc = s->key_cache + (size_t)l * s->max_pos * kvd, *vc = s->value_cache + (size_t)l * s->max_pos * kvd;
    memcpy(kc + (size_t)pos * kvd, s->k, kvd * sizeof(float));
    memcpy(vc + (size_t)pos * kvd, s->v, kvd * sizeof(float));
    for (int h = 0; h < c->n_heads; h++) {
        const float *q = s->q + h * hd;
        int kvh = h / group;
        float *score = s->probs, max = -INFINITY, sum = 0;
        for (int p = 0; p <= pos; p++) {
            float dot = 0;
            for (int i = 0; i < hd; i++) dot += q[i] * kc[(size_t)p * kvd + kvh * hd + i];
            score[p] = dot / sqrtf((float)hd);
            if (score[p] > max) max = score[p];
        }
        for (int p = 0; p <= pos; p++) sum += score[p] = expf(score[p] - max);
        float *o = s->att + h * hd;
        memset(o, 0, hd * sizeof(float));
        for (int p = 0; p <= pos; p++)
            for (int i = 0; i < hd; i++) o[i] += score[p] / sum * vc[(size_t)p * kvd + kvh * hd + i];
    }
    matvec(s, &L->wo, s->att, s->out);
}

/* softmax over all experts, the top k (ties to the lower id), renormalised if asked. */
static void moe(ref_state *s, const q3_layer *L) {
    const q3_config *c = &s->m->cfg;
    int E = c->n_experts, H = c->hidden_size;
    float *p = s->probs, max = -INFINITY, sum = 0, weight[64], total = 0;
    int top[64];
    matvec(s, &L->router, s->xn, p);
    for (int x = 0; x < E; x++) max = fmaxf(max, p[x]);
    for (int x = 0; x < E; x++) sum += p[x] = expf(p[x] - max);
    for (int j = 0; j < c->n_experts_used; j++) {
        top[j] = -1;
        for (int x = 0; x < E; x++) {
            bool taken = false;
            for (int i = 0; i < j; i++) taken |= top[i] == x;
            if (!taken && (top[j] < 0 || p[x] > p[top[j]])) top[j] = x;
        }
        total += weight[j] = p[top[j]] / sum;
    }
    memset(s->out, 0, H * sizeof(float));
    for (int j = 0; j < c->n_experts_used; j++) {
        swiglu(s, &L->experts[top[j]], s->xn, s->y);
        float w = c->norm_topk_prob ? weight[j] / total : weight[j];
        for (int i = 0; i < H; i++) s->out[i] += w * s->y[i];
    }
}

/* The logits of `token` at position `pos`, every earlier position already in the caches. */
static float *ref_forward(ref_state *s, int token, int pos) {
    const q3_model *m = s->m;
    const q3_config *c = &m->cfg;
    int H = c->hidden_size;
    q3_type_get_isa(m->embed.type, Q3_ISA_SCALAR)->to_float((const char *)m->embed.data + (size_t)token * m->embed.row_bytes, s->x, H);
    for (int l = 0; l < c->n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        rmsnorm(s->xn, s->x, L->attn_norm, H, c->rms_eps);
        attention(s, L, l, pos);
        for (int i = 0; i < H; i++) s->x[i] += s->out[i];
        rmsnorm(s->xn, s->x, L->ffn_norm, H, c->rms_eps);
        if (L->is_moe) moe(s, L);
        else swiglu(s, &L->dense, s->xn, s->out);
        for (int i = 0; i < H; i++) s->x[i] += s->out[i];
    }
    rmsnorm(s->xn, s->x, m->final_norm, H, c->rms_eps);
    matvec(s, &m->lm_head, s->xn, s->logits);
    return s->logits;
}

/* ------------------------------------------------------------------------ state and tests */

static void ref_init(ref_state *s, const q3_model *m, int max_pos) {
    const q3_config *c = &m->cfg;
    size_t H = c->hidden_size, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t F = c->moe_intermediate > c->intermediate ? c->moe_intermediate : c->intermediate;
    size_t wide = H > qd ? H : qd, probs = (size_t)(max_pos > c->n_experts ? max_pos : c->n_experts);
    *s = (ref_state){.m = m, .max_pos = max_pos};
    s->x = calloc(H, 4), s->xn = calloc(wide, 4), s->q = calloc(qd, 4), s->k = calloc(kvd, 4), s->v = calloc(kvd, 4);
    s->att = calloc(qd, 4), s->out = calloc(H, 4), s->logits = calloc(c->vocab_size, 4), s->y = calloc(H, 4);
    s->key_cache = calloc((size_t)c->n_layers * max_pos * kvd, 4);
    s->value_cache = calloc((size_t)c->n_layers * max_pos * kvd, 4);
    s->h = calloc(2 * F, 4), s->probs = calloc(probs, 4), s->xq = calloc(4 * (wide > F ? wide : F) + 1024, 1);
}

static void ref_free(ref_state *s) {
    void *p[] = {s->x, s->xn, s->q, s->k, s->v, s->att, s->out, s->logits, s->y, s->key_cache, s->value_cache, s->h,
                 s->probs, s->xq};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) free(p[i]);
}

/* The engine's logits for ids, one prefill step of `chunk` tokens at a time. */
static float *engine_logits(q3_model *m, const int32_t *ids, int n, int chunk) {
    q3_error e = {0};
    q3_kv_cache *kv;
    q3_runner *r;
    const q3_config *c = q3_model_config(m);
    if (q3_kv_cache_new(&kv, m, &(q3_kv_options){Q3_TYPE_F32, 16, n / 16 + 2, 1, n + 16}, &e) ||
        q3_runner_new(&r, m, chunk, 2, &e))
        fail_msg("%s", e.msg);
    float *logits = malloc((size_t)n * c->vocab_size * sizeof(float));
    int32_t *pos = malloc((size_t)n * sizeof *pos), *seq = calloc((size_t)n, sizeof *seq);
    for (int i = 0; i < n; i++) pos[i] = i;
    for (int i = 0; i < n; i += chunk) {
        q3_batch b = {n - i < chunk ? n - i : chunk, ids + i, pos + i, seq + i, NULL};
        if (q3_forward(r, kv, &b, logits + (size_t)i * c->vocab_size, &e)) fail_msg("%s", e.msg);
    }
    free(pos);
    free(seq);
    q3_runner_free(r);
    q3_kv_cache_free(kv);
    return logits;
}

/* The oracle against the engine (prefill in chunks of 5) and against transformers' logits, over
 * the first n tokens of the fixture's prompt; transformers' rows are <prompt>.logits from
 * position 0 or, in fixtures that keep only the end of a long prompt, <prompt>.logits_tail,
 * its last rows. opts: load options (NULL: the file as it is). */
static void agree_with(const char *model, const q3_load_options *opts, const char *reference, const char *ids_name,
                       int n, float engine_tol, float hf_tol) {
    q3_error e = {0};
    q3_model *m;
    q3_st_file ref;
    if (q3_model_load(&m, model, opts, &e) || q3_st_open(&ref, reference, &e)) fail_msg("%s", e.msg);
    char prompt[64], tail_name[96];
    snprintf(prompt, sizeof prompt, "%.*s", (int)(strchr(ids_name, '.') - ids_name), ids_name);
    snprintf(tail_name, sizeof tail_name, "%s.logits_tail", prompt);
    const q3_tensor_view *idv = ref_tensor(&ref, "%s", ids_name), *hf = q3_st_find(&ref, tail_name);
    int hf_from = hf ? n - (int)hf->shape[0] : 0;
    if (!hf) hf = ref_tensor(&ref, "%s.logits", prompt);
    if (idv->type != Q3_TYPE_I32 || idv->shape[0] < n) fail_msg("%s: %s: need %d int32 ids", reference, ids_name, n);
    int V = m->cfg.vocab_size;
    const int32_t *ids = idv->data;
    float *ours = engine_logits(m, ids, n, 5), worst_engine = 0, worst_hf = 0, scale = 0;
    ref_state s;
    ref_init(&s, m, n);
    for (int t = 0; t < n; t++) {
        const float *want = ref_forward(&s, ids[t], t), *hf_row = (const float *)hf->data + (size_t)(t - hf_from) * V;
        for (int v = 0; v < V; v++) {
            scale = fmaxf(scale, fabsf(want[v]));
            worst_engine = fmaxf(worst_engine, fabsf(ours[(size_t)t * V + v] - want[v]));
            if (t >= hf_from) worst_hf = fmaxf(worst_hf, fabsf(hf_row[v] - want[v]));
        }
    }
    print_message("%s: %d tokens, |engine - oracle| %.3g, |transformers - oracle| %.3g (logit scale %.3g)\n", model, n,
                  worst_engine, worst_hf, scale);
    assert_true(worst_engine <= engine_tol * scale);
    assert_true(worst_hf <= hf_tol * scale);
    ref_free(&s);
    free(ours);
    q3_st_close(&ref);
    q3_model_free(m);
}

static void agree(const char *model, const char *reference, const char *ids_name, int n, float engine_tol, float hf_tol) {
    agree_with(model, NULL, reference, ids_name, n, engine_tol, hf_tol);
}

/* The tiny random checkpoint in bf16: float activations, so only summation order differs. */
static void test_tiny_checkpoint(void **state) {
    (void)state;
    agree(fixture_path(0, "tiny-qwen3moe"), fixture_path(1, "tiny-qwen3moe/reference.safetensors"), "p64.input_ids", 64, 1e-5f,
          2e-3f);
}

/* The variant checkpoint: dense layers among the MoE ones, and its own options. */
static void test_variant_checkpoint(void **state) {
    (void)state;
    agree(fixture_path(0, "variant-qwen3moe"), fixture_path(1, "variant-qwen3moe/reference.safetensors"), "p1100.input_ids", 80,
          1e-5f, 2e-3f);
}

/* The bundled demo model, Q8_0 (activations quantized to Q8_0 on both sides), against its
 * transformers logits computed from the float weights before quantization. */
static void test_demo_model(void **state) {
    (void)state;
    char model[4096];
    snprintf(model, sizeof model, "%s/models/qwen3-moe-demo-py.gguf", getenv("Q3_ROOT") ? getenv("Q3_ROOT") : ".");
    agree(model, fixture_path(1, "demo/reference.safetensors"), "prompt.ids", 8, 1e-5f, 5e-2f);
}

/* YaRN declared in config.json (factor 4 over an original 256-token context): a 700-token
 * prompt, transformers' logits at its last 160 positions, all past the original context. */
static void test_yarn_checkpoint(void **state) {
    (void)state;
    agree(fixture_path(0, "yarn-qwen3moe"), fixture_path(1, "yarn-qwen3moe/reference.safetensors"), "p700.input_ids", 700,
          1e-5f, 2e-3f);
}

/* The same scaling asked for on the command line's behalf (q3_load_options) on the plain tiny
 * checkpoint, as --rope-scaling yarn --rope-scale 4 --yarn-orig-ctx 256 does. */
static void test_yarn_override(void **state) {
    (void)state;
    q3_load_options o = {.numa = Q3_NUMA_OFF, .rope_scaling = {.type = Q3_ROPE_SCALING_YARN, .factor = 4, .original_context = 256}};
    agree_with(fixture_path(0, "tiny-qwen3moe"), &o, fixture_path(1, "yarn-qwen3moe/reference.safetensors"), "p700.input_ids",
               700, 1e-5f, 2e-3f);
}

/* The tiny checkpoint as Qwen's FP8 checkpoints store it (e4m3, 128x128 block scales) and as
 * GPTQ-Int4 (tests/gen/make_quantized_fixtures.py), run directly, against transformers' logits
 * of the dequantized weights: within 5e-4 of the logit scale, under 2e-3 absolute. */
static void test_fp8_checkpoint(void **state) {
    (void)state;
    agree(fixture_path(0, "fp8-qwen3moe"), fixture_path(1, "fp8-qwen3moe/reference.safetensors"), "p64.input_ids", 64, 1e-5f,
          5e-4f);
}

static void test_gptq_checkpoint(void **state) {
    (void)state;
    agree(fixture_path(0, "gptq-qwen3moe"), fixture_path(1, "gptq-qwen3moe/reference.safetensors"), "p64.input_ids", 64,
          1e-5f, 5e-4f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp8_checkpoint),
        cmocka_unit_test(test_gptq_checkpoint),
        cmocka_unit_test(test_yarn_checkpoint),
        cmocka_unit_test(test_yarn_override),
        cmocka_unit_test(test_tiny_checkpoint),
        cmocka_unit_test(test_variant_checkpoint),
        cmocka_unit_test(test_demo_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
