/* The forward pass against Hugging Face transformers (float32 compute on the tiny random
 * Qwen3-MoE checkpoint): logits, hidden states after every layer, router logits, greedy
 * continuations through the KV cache; plus prefill == decode, batching several sequences, and
 * the same model written as GGUF by our writer. */
#include <math.h>
#include "model/export.h"
#include "model/runner.h"
#include "quant/types.h"
#include "testutil.h"

static const char *PROMPTS[] = {"p1", "p7", "p64", "p300"};

typedef struct fixture {
    q3_model *m;
    q3_st_file ref;
} fixture;

static int setup(void **state) {
    static fixture f;
    q3_error e = {0};
    if (q3_model_load(&f.m, fixture_path(0, "tiny-qwen3moe"), NULL, &e) ||
        q3_st_open(&f.ref, fixture_path(1, "tiny-qwen3moe/reference.safetensors"), &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    *state = &f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    q3_model_free(f->m);
    q3_st_close(&f->ref);
    return 0;
}

/* Runs ids through a fresh cache of kv_type, `chunk` tokens per step; logits of every position. */
static float *run_logits_on(q3_model *m, const int32_t *ids, int n, int chunk, q3_trace *trace, q3_type kv_type,
                            int threads) {
    q3_error e = {0};
    q3_kv_cache *kv;
    q3_runner *r;
    const q3_config *c = q3_model_config(m);
    assert_int_equal(q3_kv_cache_new(&kv, m, &(q3_kv_options){kv_type, 16, (n + 15) / 16 + 1, 1, n + 16}, &e), 0);
    assert_int_equal(q3_runner_new(&r, m, chunk, threads, &e), 0);
    q3_runner_set_trace(r, trace);
    float *logits = malloc((size_t)n * c->vocab_size * sizeof(float));
    int32_t *pos = malloc((size_t)n * sizeof *pos), *seq = calloc((size_t)n, sizeof *seq);
    for (int i = 0; i < n; i++) pos[i] = i;
    for (int i = 0; i < n; i += chunk) {
        int len = n - i < chunk ? n - i : chunk;
        q3_batch b = {len, ids + i, pos + i, seq + i, NULL};
        if (q3_forward(r, kv, &b, logits + (size_t)i * c->vocab_size, &e)) fail_msg("%s", e.msg);
    }
    free(pos);
    free(seq);
    q3_runner_free(r);
    q3_kv_cache_free(kv);
    return logits;
}

static float *run_logits_kv(q3_model *m, const int32_t *ids, int n, int chunk, q3_trace *trace, q3_type kv_type) {
    return run_logits_on(m, ids, n, chunk, trace, kv_type, 2);
}

static float *run_logits(q3_model *m, const int32_t *ids, int n, int chunk, q3_trace *trace) {
    return run_logits_kv(m, ids, n, chunk, trace, Q3_TYPE_F32);
}

static float max_abs(const float *x, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(x[i]));
    return m;
}

/* max |ours - ref| over rows whose routing is not a near tie, against 2e-3 * max |ref|. */
static void check_logits(const fixture *f, const char *p, const float *ours, float rel_tol) {
    const q3_tensor_view *ref = ref_tensor(&f->ref, "%s.logits", p), *gap = ref_tensor(&f->ref, "%s.route_gap", p);
    int n = (int)ref->shape[0], V = (int)ref->shape[1], skipped = 0;
    const float *r = ref->data, *g = gap->data;
    float worst = 0, scale = max_abs(r, (size_t)n * V);
    for (int t = 0; t < n; t++) {
        if (g[t] < 1e-4f) { skipped++; continue; }
        for (int v = 0; v < V; v++) worst = fmaxf(worst, fabsf(ours[(size_t)t * V + v] - r[(size_t)t * V + v]));
    }
    printf("  %-5s %3d tokens: max|diff| %.3g, max|ref| %.3g, relative %.3g (limit %.0e), %d near-tie rows skipped\n", p,
           n, worst, scale, worst / scale, rel_tol, skipped);
    assert_true(worst <= rel_tol * scale);
}

static void test_logits_match_transformers(void **state) {
    fixture *f = *state;
    for (size_t i = 0; i < sizeof PROMPTS / sizeof *PROMPTS; i++) {
        const q3_tensor_view *ids = ref_tensor(&f->ref, "%s.input_ids", PROMPTS[i]);
        int n = (int)ids->shape[0];
        float *ours = run_logits(f->m, ids->data, n, n, NULL);
        check_logits(f, PROMPTS[i], ours, 2e-3f);
        free(ours);
    }
}

static void test_decode_equals_prefill(void **state) {
    fixture *f = *state;
    const q3_tensor_view *ids = ref_tensor(&f->ref, "p64.input_ids");
    int n = (int)ids->shape[0], V = q3_model_config(f->m)->vocab_size;
    float *pre = run_logits(f->m, ids->data, n, n, NULL), *dec = run_logits(f->m, ids->data, n, 1, NULL),
          *chunked = run_logits(f->m, ids->data, n, 13, NULL);
    float scale = max_abs(pre, (size_t)n * V), d1 = 0, d2 = 0;
    for (size_t i = 0; i < (size_t)n * V; i++) {
        d1 = fmaxf(d1, fabsf(pre[i] - dec[i]));
        d2 = fmaxf(d2, fabsf(pre[i] - chunked[i]));
    }
    printf("  prefill vs decode %.3g, vs 13-token chunks %.3g (max|logit| %.3g)\n", d1, d2, scale);
    /* Every token's arithmetic is independent of how the sequence was split into steps. */
    assert_memory_equal(pre, dec, (size_t)n * V * sizeof(float));
    assert_memory_equal(pre, chunked, (size_t)n * V * sizeof(float));
    free(pre), free(dec), free(chunked);
}

/* Lossy caches against transformers over a whole prompt: the share of positions whose top token
 * agrees, and the median over positions of max |ours - ref| relative to max |ref|. (The maximum
 * says little here: rounding a key can flip this random model's routing at a few positions.) */
static void check_lossy_logits(const fixture *f, const char *p, const float *ours, double min_agree, float max_median) {
    const q3_tensor_view *ref = ref_tensor(&f->ref, "%s.logits", p);
    int n = (int)ref->shape[0], V = (int)ref->shape[1], agree = 0;
    const float *r = ref->data;
    float scale = max_abs(r, (size_t)n * V), *row_err = malloc((size_t)n * sizeof(float));
    for (int t = 0; t < n; t++) {
        int best_ours = 0, best_ref = 0;
        row_err[t] = 0;
        for (int v = 0; v < V; v++) {
            size_t i = (size_t)t * V + v;
            row_err[t] = fmaxf(row_err[t], fabsf(ours[i] - r[i]));
            if (ours[i] > ours[(size_t)t * V + best_ours]) best_ours = v;
            if (r[i] > r[(size_t)t * V + best_ref]) best_ref = v;
        }
        agree += best_ours == best_ref;
    }
    for (int i = 1; i < n; i++) /* insertion sort: n is a few hundred */
        for (int k = i; k > 0 && row_err[k] < row_err[k - 1]; k--) {
            float tmp = row_err[k];
            row_err[k] = row_err[k - 1], row_err[k - 1] = tmp;
        }
    float median = row_err[n / 2] / scale;
    printf("  %-5s %3d tokens: top-1 agreement %.3f (limit %.2f), median relative error %.3g (limit %.0e)\n", p, n,
           (double)agree / n, min_agree, median, max_median);
    assert_true(agree >= min_agree * n);
    assert_true(median <= max_median);
    free(row_err);
}

/* The cache types: p300 (two attention chunks, so prefill blocks straddle a chunk border and
 * decoding past position 256 computes chunks in parallel) in one step, token by token and in
 * 13-token steps gives the same bits; the logits stay close to transformers' (f16 within the
 * exact limit; bf16 and q8_0, which keep 8 bits of each key and value, by agreement). */
static void test_kv_cache_types(void **state) {
    fixture *f = *state;
    const q3_tensor_view *ids = ref_tensor(&f->ref, "p300.input_ids");
    int n = (int)ids->shape[0], V = q3_model_config(f->m)->vocab_size;
    const q3_type types[] = {Q3_TYPE_F16, Q3_TYPE_BF16, Q3_TYPE_Q8_0};
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        printf("  kv cache %s:\n", q3_type_name(types[k]));
        float *pre = run_logits_kv(f->m, ids->data, n, n, NULL, types[k]);
        float *dec = run_logits_kv(f->m, ids->data, n, 1, NULL, types[k]);
        float *chunked = run_logits_kv(f->m, ids->data, n, 13, NULL, types[k]);
        assert_memory_equal(pre, dec, (size_t)n * V * sizeof(float));
        assert_memory_equal(pre, chunked, (size_t)n * V * sizeof(float));
        if (types[k] == Q3_TYPE_F16) check_logits(f, "p300", pre, 2e-3f);
        else check_lossy_logits(f, "p300", pre, 0.95, 1e-2f);
        free(pre), free(dec), free(chunked);
    }
}

static void compare_rows(const char *what, const float *ours, const float *ref, size_t n, float rel_tol) {
    float worst = 0, scale = max_abs(ref, n);
    for (size_t i = 0; i < n; i++) worst = fmaxf(worst, fabsf(ours[i] - ref[i]));
    printf("  %-22s max|diff| %.3g relative %.3g\n", what, worst, worst / scale);
    assert_true(worst <= rel_tol * scale);
}

static void test_hidden_states_and_router(void **state) {
    fixture *f = *state;
    const q3_config *c = q3_model_config(f->m);
    const char *ps[] = {"p7", "p64"};
    for (int k = 0; k < 2; k++) {
        const q3_tensor_view *ids = ref_tensor(&f->ref, "%s.input_ids", ps[k]);
        int n = (int)ids->shape[0];
        q3_trace tr = {.hidden = malloc((size_t)(c->n_layers + 1) * n * c->hidden_size * sizeof(float)),
                       .router_logits = malloc((size_t)c->n_layers * n * c->n_experts * sizeof(float))};
        free(run_logits(f->m, ids->data, n, n, &tr));
        for (int l = 0; l <= c->n_layers; l++) {
            char what[64];
            snprintf(what, sizeof what, "%s hidden.%d", ps[k], l);
            compare_rows(what, tr.hidden + (size_t)l * n * c->hidden_size,
                         ref_tensor(&f->ref, "%s.hidden.%d", ps[k], l)->data, (size_t)n * c->hidden_size, 1e-4f);
        }
        for (int l = 0; l < c->n_layers; l++) {
            char what[64];
            snprintf(what, sizeof what, "%s router_logits.%d", ps[k], l);
            compare_rows(what, tr.router_logits + (size_t)l * n * c->n_experts,
                         ref_tensor(&f->ref, "%s.router_logits.%d", ps[k], l)->data, (size_t)n * c->n_experts, 1e-4f);
        }
        free(tr.hidden);
        free(tr.router_logits);
    }
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

static void test_greedy_continuation(void **state) {
    fixture *f = *state;
    const q3_config *c = q3_model_config(f->m);
    const char *ps[] = {"p7", "p64"};
    for (int k = 0; k < 2; k++) {
        const q3_tensor_view *ids = ref_tensor(&f->ref, "%s.input_ids", ps[k]);
        const int32_t *want = ref_tensor(&f->ref, "%s.greedy32", ps[k])->data;
        const float *margin = ref_tensor(&f->ref, "%s.greedy32_margin", ps[k])->data;
        int n = (int)ids->shape[0];
        q3_error e = {0};
        q3_kv_cache *kv;
        q3_runner *r;
        assert_int_equal(q3_kv_cache_new(&kv, f->m, &(q3_kv_options){Q3_TYPE_F32, 16, 16, 1, 256}, &e), 0);
        assert_int_equal(q3_runner_new(&r, f->m, n, 2, &e), 0);
        float *logits = malloc((size_t)n * c->vocab_size * sizeof(float));
        int32_t *pos = malloc((size_t)n * sizeof *pos), *seq = calloc((size_t)n, sizeof *seq);
        for (int i = 0; i < n; i++) pos[i] = i;
        q3_batch b = {n, ids->data, pos, seq, NULL};
        assert_int_equal(q3_forward(r, kv, &b, logits, &e), 0);
        int32_t tok = argmax(logits + (size_t)(n - 1) * c->vocab_size, c->vocab_size), p = n, s0 = 0;
        int checked = 0;
        for (int step = 0; step < 32; step++) {
            if (margin[step] < 1e-3f) break;
            assert_int_equal(tok, want[step]);
            checked++;
            q3_batch d = {1, &tok, &p, &s0, NULL};
            assert_int_equal(q3_forward(r, kv, &d, logits, &e), 0);
            tok = argmax(logits, c->vocab_size);
            p++;
        }
        printf("  %s: %d greedy tokens equal transformers'\n", ps[k], checked);
        assert_true(checked >= 8);
        free(logits), free(pos), free(seq);
        q3_runner_free(r);
        q3_kv_cache_free(kv);
    }
}

/* p64 and p300 in one batch as two sequences, interleaved (blocks of one or two tokens) and then
 * p300 alone in runs that cross the attention chunk border at 256: each equals its own run. */
static void test_batched_sequences_are_independent(void **state) {
    fixture *f = *state;
    const q3_config *c = q3_model_config(f->m);
    const q3_tensor_view *a = ref_tensor(&f->ref, "p64.input_ids"), *b = ref_tensor(&f->ref, "p300.input_ids");
    int na = (int)a->shape[0], nb = (int)b->shape[0], n = na + nb, V = c->vocab_size;
    float *alone_a = run_logits(f->m, a->data, na, na, NULL), *alone_b = run_logits(f->m, b->data, nb, nb, NULL);
    int32_t *tok = malloc((size_t)n * 4), *pos = malloc((size_t)n * 4), *seq = malloc((size_t)n * 4);
    int ia = 0, ib = 0; /* interleave the two sequences' tokens */
    for (int i = 0; i < n; i++) {
        bool take_a = ia < na && (ib >= nb || i % 3 == 0);
        if (take_a) { tok[i] = ((const int32_t *)a->data)[ia]; pos[i] = ia++; seq[i] = 0; }
        else { tok[i] = ((const int32_t *)b->data)[ib]; pos[i] = ib++; seq[i] = 1; }
    }
    q3_error e = {0};
    q3_kv_cache *kv;
    q3_runner *r;
    assert_int_equal(q3_kv_cache_new(&kv, f->m, &(q3_kv_options){Q3_TYPE_F32, 16, 32, 2, 320}, &e), 0);
    assert_int_equal(q3_runner_new(&r, f->m, n, 2, &e), 0);
    float *logits = malloc((size_t)n * V * sizeof(float));
    q3_batch batch = {n, tok, pos, seq, NULL};
    assert_int_equal(q3_forward(r, kv, &batch, logits, &e), 0);
    for (int i = 0; i < n; i++) {
        const float *want = seq[i] == 0 ? alone_a + (size_t)pos[i] * V : alone_b + (size_t)pos[i] * V;
        assert_memory_equal(logits + (size_t)i * V, want, (size_t)V * sizeof(float));
    }
    printf("  %d interleaved tokens of 2 sequences: logits bit-identical to separate runs\n", n);
    free(alone_a), free(alone_b), free(tok), free(pos), free(seq), free(logits);
    q3_runner_free(r);
    q3_kv_cache_free(kv);
}

static void test_gguf_round_trip(void **state) {
    fixture *f = *state;
    q3_type types[] = {Q3_TYPE_F32, Q3_TYPE_BF16};
    for (int k = 0; k < 2; k++) {
        q3_export_options o;
        q3_export_options_uniform(&o, types[k]);
        const char *path = tmp_path(0, k ? "tiny-bf16.gguf" : "tiny-f32.gguf");
        q3_error e = {0};
        if (q3_export_gguf(f->m, path, &o, &e)) fail_msg("%s", e.msg);
        q3_model *g;
        if (q3_model_load(&g, path, NULL, &e)) fail_msg("%s", e.msg);
        const q3_tensor_view *ids = ref_tensor(&f->ref, "p64.input_ids");
        int n = (int)ids->shape[0];
        float *ours = run_logits(g, ids->data, n, n, NULL), *hf = run_logits(f->m, ids->data, n, n, NULL);
        /* bf16 weights widen exactly to f32 and back: the logits must be identical. */
        assert_memory_equal(ours, hf, (size_t)n * q3_model_config(g)->vocab_size * sizeof(float));
        printf("  %s: logits identical to the safetensors checkpoint\n", path);
        free(ours), free(hf);
        q3_model_free(g);
    }
}

/* The same logits on 1, 3 and 7 threads (7 oversubscribe this machine's cores, so some threads
 * lose theirs mid-job), prefill and decode, with float weights and with Q8_0 weights (whose
 * experts' hidden rows are converted inside the MoE's one pool job, by whichever thread ends an
 * expert's gate/up last): the work's split over threads never changes a bit. */
static void test_thread_count_invariance(void **state) {
    fixture *f = *state;
    q3_export_options o;
    q3_export_options_uniform(&o, Q3_TYPE_Q8_0);
    const char *path = tmp_path(0, "tiny-q8_0.gguf");
    q3_error e = {0};
    q3_model *q8 = NULL;
    if (q3_export_gguf(f->m, path, &o, &e) || q3_model_load(&q8, path, NULL, &e)) fail_msg("%s", e.msg);
    q3_model *models[] = {f->m, q8};
    const q3_tensor_view *ids = ref_tensor(&f->ref, "p64.input_ids");
    int n = (int)ids->shape[0], threads[] = {3, 7};
    size_t bytes = (size_t)n * q3_model_config(f->m)->vocab_size * sizeof(float);
    for (int k = 0; k < 2; k++)
        for (int chunk = 1; chunk <= n; chunk += n - 1) {
            float *one = run_logits_on(models[k], ids->data, n, chunk, NULL, Q3_TYPE_F32, 1);
            for (int t = 0; t < 2; t++) {
                float *many = run_logits_on(models[k], ids->data, n, chunk, NULL, Q3_TYPE_F32, threads[t]);
                assert_memory_equal(one, many, bytes);
                free(many);
            }
            free(one);
        }
    printf("  p64, bf16 and Q8_0 weights, prefill and decode: logits on 1, 3, 7 threads bit-identical\n");
    q3_model_free(q8);
}

/* A second checkpoint of unusual shapes (one KV head, a dense layer, no top-k renormalisation,
 * rope_theta 10000, newer config.json keys) and a 1100-token prompt, straight and via GGUF. */
static void test_variant_shapes(void **state) {
    (void)state;
    q3_error e = {0};
    q3_model *m = NULL, *g = NULL;
    q3_st_file ref = {0};
    if (q3_model_load(&m, fixture_path(0, "variant-qwen3moe"), NULL, &e) ||
        q3_st_open(&ref, fixture_path(1, "variant-qwen3moe/reference.safetensors"), &e))
        fail_msg("%s", e.msg);
    q3_export_options o;
    q3_export_options_uniform(&o, Q3_TYPE_BF16);
    const char *path = tmp_path(0, "variant-bf16.gguf");
    if (q3_export_gguf(m, path, &o, &e) || q3_model_load(&g, path, NULL, &e)) fail_msg("%s", e.msg);
    const char *ps[] = {"p5", "p1100"};
    fixture f = {m, ref};
    for (int k = 0; k < 2; k++) {
        const q3_tensor_view *ids = ref_tensor(&ref, "%s.input_ids", ps[k]);
        int n = (int)ids->shape[0], V = q3_model_config(m)->vocab_size;
        float *pre = run_logits(m, ids->data, n, n, NULL), *dec = run_logits(m, ids->data, n, 1, NULL),
              *via_gguf = run_logits(g, ids->data, n, 256, NULL);
        check_logits(&f, ps[k], pre, 2e-3f);
        check_logits(&f, ps[k], dec, 2e-3f);
        assert_memory_equal(pre, via_gguf, (size_t)n * V * sizeof(float));
        free(pre), free(dec), free(via_gguf);
    }
    q3_model_free(g);
    q3_model_free(m);
    q3_st_close(&ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits_match_transformers),
        cmocka_unit_test(test_decode_equals_prefill),
        cmocka_unit_test(test_kv_cache_types),
        cmocka_unit_test(test_hidden_states_and_router),
        cmocka_unit_test(test_greedy_continuation),
        cmocka_unit_test(test_batched_sequences_are_independent),
        cmocka_unit_test(test_gguf_round_trip),
        cmocka_unit_test(test_thread_count_invariance),
        cmocka_unit_test(test_variant_shapes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
