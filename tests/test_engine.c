/* The engine's request features beyond plain sampling, on real models:
 *   - a sequence alone in a KV cache too small for its max_tokens ends with "length" when the
 *     cache is full (it used to fail "no free page"), on the tiny fixture, also when max_tokens
 *     is INT_MAX (prompt + max_tokens used to overflow);
 *   - prompt log-probabilities (echo) equal the log-softmax of the forward pass's own logits for
 *     every prompt position, on the tiny fixture;
 *   - a grammar constrains the reply: the demo model (Python source) answers an enum schema with
 *     exactly one of its values, and a grammar without a tokenizer is refused. */
#include <limits.h>
#include <math.h>

#include "engine/engine.h"
#include "testutil.h"
#include "text/json_schema.h"

typedef struct collected {
    int n_prompt_events, n_tokens;
    int32_t prompt_tokens[64];
    float prompt_logprobs[64];
    char text[512];
    size_t text_len;
    q3_finish finish;
    int completion_tokens;
} collected;

static void collect(void *ctx, const q3_event *ev) {
    collected *c = ctx;
    if (ev->prompt) {
        c->prompt_tokens[c->n_prompt_events] = ev->token;
        c->prompt_logprobs[c->n_prompt_events++] = ev->logprob;
        return;
    }
    if (ev->token >= 0) c->n_tokens++;
    if (ev->text_len && c->text_len + ev->text_len < sizeof c->text) {
        memcpy(c->text + c->text_len, ev->text, ev->text_len);
        c->text_len += ev->text_len;
    }
    if (ev->finish != Q3_FINISH_NONE) {
        c->finish = ev->finish;
        c->completion_tokens = ev->completion_tokens;
    }
}

static q3_engine *tiny_engine(q3_model **m, int cache_tokens) {
    q3_error e = {0};
    if (q3_model_load(m, fixture_path(0, "tiny-qwen3moe"), NULL, &e)) fail_msg("%s", e.msg);
    q3_engine_options o = q3_engine_defaults();
    o.max_batch_size = 1;
    o.page_size = 16;
    o.cache_tokens = cache_tokens;
    o.threads = 2;
    q3_engine *en;
    if (q3_engine_new(&en, *m, NULL, &o, &e)) fail_msg("%s", e.msg);
    return en;
}

static void test_out_of_cache_ends_with_length(void **state) {
    (void)state;
    q3_model *m;
    q3_engine *en = tiny_engine(&m, 64);
    int32_t prompt[8] = {1, 17, 33, 49, 65, 81, 97, 113};
    collected c = {0};
    q3_request r = {.prompt = prompt, .n_prompt = 8, .sampling = q3_sampling_defaults(), .max_tokens = 200,
                    .ignore_eos = true, .top_logprobs = -1, .on_event = collect, .ctx = &c};
    r.sampling.temperature = 0;
    q3_error e = {0};
    assert_int_equal(q3_engine_generate(en, &r, &e), Q3_FINISH_LENGTH);
    assert_int_equal(c.finish, Q3_FINISH_LENGTH);
    assert_true(c.completion_tokens > 0 && 8 + c.completion_tokens <= 64 + 1);
    assert_int_equal(c.n_tokens, c.completion_tokens);
    q3_engine_free(en);
    q3_model_free(m);
}

static void test_unbounded_max_tokens_ends_with_length(void **state) {
    (void)state;
    q3_model *m;
    q3_engine *en = tiny_engine(&m, 64);
    int32_t prompt[8] = {1, 17, 33, 49, 65, 81, 97, 113};
    collected c = {0};
    q3_request r = {.prompt = prompt, .n_prompt = 8, .sampling = q3_sampling_defaults(), .max_tokens = INT_MAX,
                    .ignore_eos = true, .top_logprobs = -1, .on_event = collect, .ctx = &c};
    q3_error e = {0};
    assert_int_equal(q3_engine_generate(en, &r, &e), Q3_FINISH_LENGTH);
    assert_true(c.completion_tokens > 0 && 8 + c.completion_tokens <= 64 + 1);
    q3_engine_free(en);
    q3_model_free(m);
}

/* log-softmax of row at token */
static double log_softmax(const float *row, int n, int32_t token) {
    double top = row[0], sum = 0;
    for (int i = 1; i < n; i++) top = row[i] > top ? row[i] : top;
    for (int i = 0; i < n; i++) sum += exp((double)row[i] - top);
    return (double)row[token] - top - log(sum);
}

static void test_prompt_logprobs_match_forward(void **state) {
    (void)state;
    q3_model *m;
    q3_engine *en = tiny_engine(&m, 256);
    enum { N = 24 };
    int32_t prompt[N], pos[N], seq[N] = {0};
    for (int i = 0; i < N; i++) prompt[i] = (i * 37 + 5) % 500, pos[i] = i;
    collected c = {0};
    q3_request r = {.prompt = prompt, .n_prompt = N, .sampling = q3_sampling_defaults(), .max_tokens = 0,
                    .top_logprobs = 2, .prompt_logprobs = true, .on_event = collect, .ctx = &c};
    q3_error e = {0};
    assert_int_equal(q3_engine_generate(en, &r, &e), Q3_FINISH_LENGTH);
    assert_int_equal(c.n_prompt_events, N - 1);
    assert_int_equal(c.completion_tokens, 0);
    /* the same prompt through the forward pass directly, logits at every position */
    int vocab = q3_model_config(m)->vocab_size;
    q3_kv_cache *kv = NULL;
    q3_runner *run = NULL; /* clang cannot see that fail_msg does not return */
    float *logits = malloc((size_t)N * vocab * sizeof *logits);
    if (q3_kv_cache_new(&kv, m, &(q3_kv_options){Q3_TYPE_F16, 16, 8, 1, 128}, &e) || q3_runner_new(&run, m, N, 2, &e))
        fail_msg("%s", e.msg);
    q3_batch b = {N, prompt, pos, seq, NULL};
    if (q3_forward(run, kv, &b, logits, &e)) fail_msg("%s", e.msg);
    for (int i = 1; i < N; i++) {
        assert_int_equal(c.prompt_tokens[i - 1], prompt[i]);
        double want = log_softmax(logits + (size_t)(i - 1) * vocab, vocab, prompt[i]);
        if (fabs(c.prompt_logprobs[i - 1] - want) > 1e-4) fail_msg("position %d: %g, not %g", i, c.prompt_logprobs[i - 1], want);
    }
    free(logits);
    q3_runner_free(run);
    q3_kv_cache_free(kv);
    q3_engine_free(en);
    q3_model_free(m);
}

static void test_grammar_constrains_the_reply(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/models/qwen3-moe-demo-py.gguf", getenv("Q3_ROOT") ? getenv("Q3_ROOT") : ".");
    q3_model *m;
    q3_tokenizer *tok;
    q3_error e = {0};
    if (q3_model_load(&m, path, NULL, &e) || q3_tok_load(&tok, path, &e)) fail_msg("%s", e.msg);
    q3_engine_options o = q3_engine_defaults();
    o.threads = 2;
    q3_engine *en;
    if (q3_engine_new(&en, m, tok, &o, &e)) fail_msg("%s", e.msg);
    json_t *schema = json_loads("{\"enum\": [\"yes\", \"no\", 42]}", 0, NULL);
    q3_grammar *g;
    if (q3_json_schema_grammar(schema, &g, &e)) fail_msg("%s", e.msg);
    int32_t *prompt;
    int n;
    if (q3_tok_encode(tok, "def is_even(n):\n    return", 26, false, &prompt, &n, &e)) fail_msg("%s", e.msg);
    for (uint64_t seed = 1; seed <= 3; seed++) {
        collected c = {0};
        q3_request r = {.prompt = prompt, .n_prompt = n, .sampling = q3_sampling_defaults(), .max_tokens = 40,
                        .top_logprobs = -1, .grammar = g, .on_event = collect, .ctx = &c};
        r.sampling.seed = seed;
        assert_int_equal(q3_engine_generate(en, &r, &e), Q3_FINISH_STOP);
        c.text[c.text_len] = 0;
        char *t = c.text;
        while (*t == ' ' || *t == '\n' || *t == '\t' || *t == '\r') t++;
        size_t len = strlen(t);
        while (len && (t[len - 1] == ' ' || t[len - 1] == '\n' || t[len - 1] == '\t' || t[len - 1] == '\r')) t[--len] = 0;
        if (strcmp(t, "\"yes\"") && strcmp(t, "\"no\"") && strcmp(t, "42")) fail_msg("seed %d: %s", (int)seed, c.text);
    }
    q3_engine_free(en);
    /* no tokenizer, no grammar */
    q3_engine *bare;
    if (q3_engine_new(&bare, m, NULL, &o, &e)) fail_msg("%s", e.msg);
    q3_request r = {.prompt = prompt, .n_prompt = n, .sampling = q3_sampling_defaults(), .max_tokens = 4,
                    .top_logprobs = -1, .grammar = g, .on_event = collect, .ctx = &(collected){0}};
    assert_int_equal(q3_engine_submit(bare, &r, NULL, &e), Q3_EINVAL);
    q3_engine_free(bare);
    free(prompt);
    q3_grammar_release(g);
    json_decref(schema);
    q3_tok_free(tok);
    q3_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_of_cache_ends_with_length),
        cmocka_unit_test(test_unbounded_max_tokens_ends_with_length),
        cmocka_unit_test(test_prompt_logprobs_match_forward),
        cmocka_unit_test(test_grammar_constrains_the_reply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
