/* Long context on the tiny checkpoint with YaRN x32 over its 256-token original context (8192
 * positions), q8_0 paged cache: a prefill in chunks of 512 agrees with one in chunks of 384 whose
 * last 200 tokens are fed one at a time (the decode path at positions near 8K), and a second
 * sequence that shares the first's cached prefix (pages by reference) continues it token by
 * token with the same logits. The short form of bench/long_context.sh's 131072-token run. */
#include <math.h>
#include "engine/engine.h"
#include "model/model.h"
#include "testutil.h"

#define N_TOKENS 8192
#define TAIL 64 /* positions whose logits are compared */

static q3_model *open_long_model(void) {
    q3_error e = {0};
    q3_model *m;
    q3_load_options o = {.numa = Q3_NUMA_OFF, .rope_scaling = {.type = Q3_ROPE_SCALING_YARN, .factor = 32, .original_context = 256}};
    if (q3_model_load(&m, fixture_path(0, "tiny-qwen3moe"), &o, &e)) fail_msg("%s", e.msg);
    assert_int_equal(q3_model_config(m)->max_context, N_TOKENS);
    return m;
}

/* Feeds tokens [from, to) of seq in steps of `chunk`, keeping the logits of positions past
 * N_TOKENS - TAIL in logits[pos - (N_TOKENS - TAIL)]. */
static void feed(q3_runner *r, q3_kv_cache *kv, const int32_t *ids, int seq, int from, int to, int chunk, int vocab,
                 float *logits) {
    static int32_t pos[N_TOKENS], seqs[N_TOKENS];
    static bool want[N_TOKENS];
    q3_error e = {0};
    for (int i = from; i < to; i += chunk) {
        int n = to - i < chunk ? to - i : chunk, rows = 0;
        for (int j = 0; j < n; j++) {
            pos[j] = i + j, seqs[j] = seq, want[j] = i + j >= N_TOKENS - TAIL;
            rows += want[j];
        }
        int first = i + n - rows; /* the wanted rows are the batch's last */
        q3_batch b = {n, ids + i, pos, seqs, want};
        float *out = rows ? logits + (size_t)(first - (N_TOKENS - TAIL)) * vocab : logits;
        if (q3_forward(r, kv, &b, out, &e)) fail_msg("%s", e.msg);
    }
}

static float worst_difference(const float *a, const float *b, size_t n, float *scale) {
    float worst = 0;
    *scale = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmaxf(worst, fabsf(a[i] - b[i]));
        *scale = fmaxf(*scale, fabsf(a[i]));
    }
    return worst;
}

static void test_chunked_prefill_token_by_token_and_shared_prefix(void **state) {
    (void)state;
    q3_model *m = open_long_model();
    int V = q3_model_config(m)->vocab_size, shared = N_TOKENS - 200;
    q3_error e = {0};
    q3_kv_cache *kv = NULL;
    q3_runner *r = NULL;
    int32_t *ids = malloc(N_TOKENS * sizeof *ids);
    float *chunked = malloc((size_t)TAIL * V * 4), *single = malloc((size_t)TAIL * V * 4), *branch = malloc((size_t)TAIL * V * 4);
    for (int i = 0; i < N_TOKENS; i++) ids[i] = (int32_t)((i * 131 + 7) % V);
    if (q3_kv_cache_new(&kv, m, &(q3_kv_options){Q3_TYPE_Q8_0, 64, 2 * N_TOKENS / 64 + 8, 3, N_TOKENS}, &e) ||
        q3_runner_new(&r, m, 512, 2, &e))
        fail_msg("%s", e.msg);
    feed(r, kv, ids, 0, 0, N_TOKENS, 512, V, chunked);
    /* Sequence 1 shares all but the last 200 positions of sequence 0 and decodes the rest. */
    if (q3_kv_cache_share_prefix(kv, 1, 0, shared, &e)) fail_msg("%s", e.msg);
    int used, free_pages;
    q3_kv_cache_usage(kv, &used, &free_pages);
    assert_true(used <= N_TOKENS / 64 + 1 + 1); /* the shared pages are not copied */
    feed(r, kv, ids, 1, shared, N_TOKENS, 1, V, branch);
    /* Sequence 2 from scratch in other chunks, its last 200 tokens one per step. */
    feed(r, kv, ids, 2, 0, shared, 384, V, single);
    feed(r, kv, ids, 2, shared, N_TOKENS, 1, V, single);
    float scale, d_single = worst_difference(chunked, single, (size_t)TAIL * V, &scale),
                 d_branch = worst_difference(chunked, branch, (size_t)TAIL * V, &scale);
    print_message("%d positions, q8_0 cache: chunks of 512 vs 384 + token by token %.3g, vs a shared prefix %.3g (logit scale %.3g)\n",
                  N_TOKENS, d_single, d_branch, scale);
    assert_true(scale > 0.1f);
    assert_true(d_single <= 1e-4f * scale);
    assert_true(d_branch <= 1e-4f * scale);
    free(ids), free(chunked), free(single), free(branch);
    q3_runner_free(r);
    q3_kv_cache_free(kv);
    q3_model_free(m);
}

typedef struct outcome {
    int32_t tokens[4];
    int n, cached;
    q3_finish finish;
} outcome;

static void record(void *ctx, const q3_event *ev) {
    outcome *o = ctx;
    if (ev->token >= 0 && o->n < 4) o->tokens[o->n++] = ev->token;
    if (ev->finish) o->finish = ev->finish, o->cached = ev->cached_tokens;
}

static outcome generate(q3_engine *en, const int32_t *prompt, int n) {
    outcome o = {0};
    q3_sampling greedy = q3_sampling_defaults();
    greedy.temperature = 0;
    q3_request req = {.prompt = prompt, .n_prompt = n, .sampling = greedy, .max_tokens = 3, .ignore_eos = true,
                      .top_logprobs = -1, .on_event = record, .ctx = &o};
    q3_error e = {0};
    if (q3_engine_generate(en, &req, &e) == Q3_FINISH_ERROR) fail_msg("%s", e.msg);
    return o;
}

/* The engine's prefix cache when the pool holds one long prompt and not two: a request that
 * extends a finished one shares its pages instead of evicting them first, and continues with
 * what a fresh engine computes. */
static void test_prefix_cache_in_a_full_pool(void **state) {
    (void)state;
    q3_model *m = open_long_model();
    int32_t *ids = malloc(N_TOKENS * sizeof *ids);
    for (int i = 0; i < N_TOKENS; i++) ids[i] = (int32_t)((i * 131 + 7) % 512);
    q3_engine_options o = q3_engine_defaults();
    o.max_batch_size = 1, o.page_size = 64, o.cache_tokens = N_TOKENS + 256, o.kv_type = Q3_TYPE_Q8_0, o.threads = 2;
    q3_engine *en = NULL, *fresh = NULL;
    q3_error e = {0};
    if (q3_engine_new(&en, m, NULL, &o, &e) || q3_engine_new(&fresh, m, NULL, &o, &e)) fail_msg("%s", e.msg);
    outcome first = generate(en, ids, N_TOKENS - 300), second = generate(en, ids, N_TOKENS - 200);
    outcome want = generate(fresh, ids, N_TOKENS - 200);
    print_message("prompt of %d after one of %d: %d tokens from the prefix cache\n", N_TOKENS - 200, N_TOKENS - 300,
                  second.cached);
    assert_int_equal(first.finish, Q3_FINISH_LENGTH);
    assert_int_equal(second.finish, Q3_FINISH_LENGTH);
    assert_true(second.cached >= N_TOKENS - 300 - 64);
    assert_int_equal(want.cached, 0);
    assert_memory_equal(second.tokens, want.tokens, sizeof want.tokens);
    q3_engine_free(en);
    q3_engine_free(fresh);
    free(ids);
    q3_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_chunked_prefill_token_by_token_and_shared_prefix),
                                       cmocka_unit_test(test_prefix_cache_in_a_full_pool)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
