/* The bundled demo model (models/qwen3-moe-demo-py.gguf, Q8_0, converted by our own converter)
 * against transformers' float32 reference on the original checkpoint: perplexity over the
 * held-out windows within 1%, and the greedy continuation of the reference prompt. */
#include <math.h>
#include "eval/perplexity.h"
#include "testutil.h"

static const char *demo_path(void) {
    static char buf[4096];
    const char *root = getenv("Q3_ROOT");
    snprintf(buf, sizeof buf, "%s/models/qwen3-moe-demo-py.gguf", root ? root : ".");
    return buf;
}

typedef struct fixture {
    q3_model *m;
    q3_st_file ref;
} fixture;

static int setup(void **state) {
    static fixture f;
    q3_error e = {0};
    if (q3_model_load(&f.m, demo_path(), NULL, &e) ||
        q3_st_open(&f.ref, fixture_path(0, "demo/reference.safetensors"), &e)) {
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

static void test_perplexity_within_one_percent(void **state) {
    fixture *f = *state;
    const q3_tensor_view *ids = ref_tensor(&f->ref, "heldout.ids");
    float want = *(const float *)ref_tensor(&f->ref, "heldout.ppl")->data;
    q3_ppl_result r;
    q3_error e = {0};
    q3_ppl_options o = {.ctx = 512, .scoring = Q3_PPL_ALL};
    if (q3_perplexity(f->m, NULL, ids->data, (int)ids->shape[0], &o, &r, &e)) fail_msg("%s", e.msg);
    printf("  perplexity %.4f over %d windows; reference %.4f (%+.3f%%)\n", r.ppl, r.windows, want,
           100 * (r.ppl - want) / want);
    assert_int_equal(r.windows, 40);
    assert_true(fabs(r.ppl - want) <= 0.01 * want);
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

static void test_greedy_continuation(void **state) {
    fixture *f = *state;
    const q3_tensor_view *ids = ref_tensor(&f->ref, "prompt.ids");
    const int32_t *want = ref_tensor(&f->ref, "prompt.greedy48")->data;
    const float *margin = ref_tensor(&f->ref, "prompt.greedy48_margin")->data;
    int n = (int)ids->shape[0], V = q3_model_config(f->m)->vocab_size;
    q3_error e = {0};
    q3_kv_cache *kv;
    q3_runner *r;
    assert_int_equal(q3_kv_cache_new(&kv, f->m, &(q3_kv_options){Q3_TYPE_F16, 16, 8, 1, 128}, &e), 0);
    assert_int_equal(q3_runner_new(&r, f->m, n, 0, &e), 0);
    float *logits = malloc((size_t)n * V * sizeof(float));
    int32_t pos[64], seq[64] = {0};
    for (int i = 0; i < n; i++) pos[i] = i;
    q3_batch b = {n, ids->data, pos, seq, NULL};
    assert_int_equal(q3_forward(r, kv, &b, logits, &e), 0);
    int32_t tok = argmax(logits + (size_t)(n - 1) * V, V), p = n, s0 = 0;
    int checked = 0;
    for (int step = 0; step < 48 && margin[step] >= 1e-3f; step++, checked++) {
        assert_int_equal(tok, want[step]);
        q3_batch d = {1, &tok, &p, &s0, NULL};
        assert_int_equal(q3_forward(r, kv, &d, logits, &e), 0);
        tok = argmax(logits, V);
        p++;
    }
    printf("  %d greedy tokens equal transformers' continuation\n", checked);
    assert_true(checked >= 40);
    free(logits);
    q3_runner_free(r);
    q3_kv_cache_free(kv);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_continuation),
        cmocka_unit_test(test_perplexity_within_one_percent),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
