/* Tests of sampling, log-probabilities and generation defaults. Each check is against a reference
 * written here independently, in double precision: distributions by a chi-square goodness-of-fit
 * test at p = 0.001 over seeded draws (the seed fixes the outcome, so a pass is reproducible),
 * truncation by applying top-k, top-p and min-p one after another with renormalisation in
 * between, penalties and log-softmax by hand. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "text/genconfig.h"
#include "text/sampler.h"

/* ---- a test-side generator for logits, unrelated to the sampler's ---- */

static uint64_t test_rng = 88172645463325252ULL;

static double test_uniform(void) {
    test_rng = test_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)((test_rng >> 11) + 1) * 0x1.0p-53; /* (0, 1] */
}

static double test_gaussian(void) {
    return sqrt(-2 * log(test_uniform())) * cos(2 * M_PI * test_uniform());
}

/* ---- the reference distribution ---- */

typedef struct ranked {
    double p;
    int id;
} ranked;

static int by_probability(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id;
}

static void normalise(double *p, int n) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += p[i];
    for (int i = 0; i < n; i++) p[i] /= sum;
}

/* The distribution the sampler should draw from: softmax at the temperature, then top-k, top-p
 * and min-p in turn, each followed by renormalisation. */
static void reference_distribution(const float *logits, int n, const q3_sampling *sp, double *p) {
    double top = -INFINITY;
    for (int i = 0; i < n; i++) top = fmax(top, logits[i]);
    for (int i = 0; i < n; i++) p[i] = exp(((double)logits[i] - top) / sp->temperature);
    normalise(p, n);
    ranked *r = malloc((size_t)n * sizeof *r);
    for (int i = 0; i < n; i++) r[i] = (ranked){p[i], i};
    qsort(r, (size_t)n, sizeof *r, by_probability);
    if (sp->top_k > 0)
        for (int i = sp->top_k; i < n; i++) p[r[i].id] = 0;
    normalise(p, n);
    double cum = 0;
    for (int i = 0; i < n; i++) {
        if (cum >= sp->top_p && i > 0) p[r[i].id] = 0;
        cum += p[r[i].id];
    }
    normalise(p, n);
    double p_max = p[r[0].id];
    for (int i = 0; i < n; i++)
        if (p[i] < sp->min_p * p_max) p[i] = 0;
    normalise(p, n);
    free(r);
}

/* The chi-square quantile at p = 0.001: tabulated up to 30 degrees of freedom, Wilson-Hilferty
 * above (within 0.2% there, on the conservative side). */
static double chi_square_critical(int df) {
    static const double table[31] = {
        0,      10.828, 13.816, 16.266, 18.467, 20.515, 22.458, 24.322, 26.124, 27.877, 29.588,
        31.264, 32.909, 34.528, 36.123, 37.697, 39.252, 40.790, 42.312, 43.820, 45.315,
        46.797, 48.268, 49.728, 51.179, 52.620, 54.052, 55.476, 56.892, 58.301, 59.703};
    if (df <= 30) return table[df];
    double a = 2.0 / (9.0 * df);
    return df * pow(1 - a + 3.0902 * sqrt(a), 3);
}

/* Draws n_draws tokens and compares their histogram with the reference distribution. Tokens the
 * reference gives no mass must never appear; every expected count must be at least 5 for the
 * test to be valid, which is checked too. */
static void check_distribution(const float *logits, int n, const q3_sampling *sp, int n_draws) {
    double *expected = malloc((size_t)n * sizeof *expected);
    int *counts = calloc((size_t)n, sizeof *counts);
    reference_distribution(logits, n, sp, expected);
    q3_sampler *s;
    q3_error err;
    assert_int_equal(q3_sampler_new(&s, sp, n, &err), Q3_OK);
    float *scratch = malloc((size_t)n * sizeof *scratch);
    for (int d = 0; d < n_draws; d++) {
        memcpy(scratch, logits, (size_t)n * sizeof *scratch);
        int32_t t = q3_sampler_sample(s, scratch, n);
        assert_true(t >= 0 && t < n);
        counts[t]++;
    }
    double chi2 = 0;
    int categories = 0;
    for (int i = 0; i < n; i++) {
        if (expected[i] == 0) {
            if (counts[i]) fail_msg("token %d drawn %d times but has no mass", i, counts[i]);
            continue;
        }
        double want = expected[i] * n_draws;
        assert_true(want >= 5);
        chi2 += (counts[i] - want) * (counts[i] - want) / want;
        categories++;
    }
    if (categories > 1) {
        double limit = chi_square_critical(categories - 1);
        if (chi2 > limit)
            fail_msg("chi-square %.2f > %.2f for %d degrees of freedom", chi2, limit,
                     categories - 1);
    }
    q3_sampler_free(s);
    free(scratch);
    free(counts);
    free(expected);
}

static const float small_logits[16] = {1.0f, 2.5f, 0.3f, -1.0f, 3.0f, 2.0f, 0.0f, 1.7f,
                                       -0.5f, 2.8f, 1.3f, 0.8f, -2.0f, 2.2f, 0.5f, 1.5f};

static q3_sampling seeded(float temperature, uint64_t seed) {
    q3_sampling sp = q3_sampling_defaults();
    sp.temperature = temperature;
    sp.seed = seed;
    return sp;
}

static void test_temperature_distribution(void **state) {
    (void)state;
    q3_sampling sp = seeded(0.7f, 1);
    check_distribution(small_logits, 16, &sp, 40000);
    sp = seeded(1.6f, 2);
    check_distribution(small_logits, 16, &sp, 40000);
}

static void test_top_k_distribution(void **state) {
    (void)state;
    q3_sampling sp = seeded(0.7f, 3);
    sp.top_k = 5;
    check_distribution(small_logits, 16, &sp, 40000);
    sp.top_k = 1; /* only the argmax survives */
    check_distribution(small_logits, 16, &sp, 2000);
}

/* The boundary of a top-p nucleus must not sit within rounding of top_p, or float and double
 * may disagree about where it is; this checks the test's choice of top_p. */
static void assert_clear_top_p(const float *logits, int n, float temperature, float top_p) {
    q3_sampling sp = seeded(temperature, 0);
    double *p = malloc((size_t)n * sizeof *p);
    reference_distribution(logits, n, &sp, p);
    ranked *r = malloc((size_t)n * sizeof *r);
    for (int i = 0; i < n; i++) r[i] = (ranked){p[i], i};
    qsort(r, (size_t)n, sizeof *r, by_probability);
    double before = 0;
    int i = 0;
    while (i < n - 1 && before + r[i].p < top_p) before += r[i++].p;
    assert_true(top_p - before > 1e-5 && before + r[i].p - top_p > 1e-5);
    free(r);
    free(p);
}

static void test_top_p_distribution(void **state) {
    (void)state;
    assert_clear_top_p(small_logits, 16, 0.7f, 0.8f);
    q3_sampling sp = seeded(0.7f, 4);
    sp.top_p = 0.8f;
    check_distribution(small_logits, 16, &sp, 40000);
    sp.top_p = 0.0f; /* keeps at least one token */
    check_distribution(small_logits, 16, &sp, 2000);
}

static void test_min_p_distribution(void **state) {
    (void)state;
    q3_sampling sp = seeded(0.7f, 5);
    sp.min_p = 0.1f;
    check_distribution(small_logits, 16, &sp, 40000);
    /* Binding after top-k and after top-p, which take other paths through the sampler. */
    sp.top_k = 12;
    check_distribution(small_logits, 16, &sp, 40000);
    sp.top_k = 0;
    sp.top_p = 0.99f;
    assert_clear_top_p(small_logits, 16, 0.7f, 0.99f);
    check_distribution(small_logits, 16, &sp, 40000);
}

static void test_combined_distribution(void **state) {
    (void)state;
    assert_clear_top_p(small_logits, 16, 0.9f, 0.9f);
    q3_sampling sp = seeded(0.9f, 6);
    sp.top_k = 10;
    sp.top_p = 0.9f;
    sp.min_p = 0.08f;
    check_distribution(small_logits, 16, &sp, 40000);
}

/* A larger vocabulary, so that top-p without top-k finds its nucleus among many tokens: the
 * nucleus spans several of the sampler's probability buckets and is cut inside a group of tied
 * tokens (ties rank by id). */
static void test_top_p_distribution_wide(void **state) {
    (void)state;
    enum { N = 4096 };
    float *logits = malloc(N * sizeof *logits);
    for (int i = 0; i < N; i++) logits[i] = (float)test_gaussian();
    for (int i = 0; i < 40; i++) logits[(i * 97) % N] = 4.0f + (float)(i % 10) * 0.3f;
    assert_clear_top_p(logits, N, 1.0f, 0.5f);
    q3_sampling sp = seeded(1.0f, 7);
    sp.top_p = 0.5f;
    check_distribution(logits, N, &sp, 40000);
    free(logits);
}

/* At the real vocabulary size: every draw must fall inside the reference's support. */
static void test_truncation_full_vocab(void **state) {
    (void)state;
    enum { N = 151936 };
    float *logits = malloc(N * sizeof *logits), *scratch = malloc(N * sizeof *scratch);
    double *p = malloc(N * sizeof *p);
    for (int i = 0; i < N; i++) logits[i] = (float)test_gaussian();
    for (int i = 0; i < 30; i++) logits[(i * 4999 + 17) % N] = 10.0f + (float)i * 0.1f;
    q3_sampling configs[3] = {seeded(0.8f, 8), seeded(0.8f, 9), seeded(1.0f, 10)};
    configs[0].top_k = 40;
    configs[1].top_p = 0.9f;
    configs[2].min_p = 0.05f;
    for (int c = 0; c < 3; c++) {
        reference_distribution(logits, N, &configs[c], p);
        q3_sampler *s;
        assert_int_equal(q3_sampler_new(&s, &configs[c], N, NULL), Q3_OK);
        for (int d = 0; d < 300; d++) {
            memcpy(scratch, logits, N * sizeof *scratch);
            int32_t t = q3_sampler_sample(s, scratch, N);
            if (!(t >= 0 && t < N && p[t] > 0))
                fail_msg("config %d: token %d outside the support", c, t);
        }
        q3_sampler_free(s);
    }
    free(p);
    free(scratch);
    free(logits);
}

static void test_greedy_is_argmax(void **state) {
    (void)state;
    q3_sampling sp = seeded(0.0f, 11);
    sp.top_k = 3; /* ignored by greedy */
    q3_sampler *s;
    assert_int_equal(q3_sampler_new(&s, &sp, 1000, NULL), Q3_OK);
    float logits[1000];
    for (int round = 0; round < 20; round++) {
        int best = 0;
        for (int i = 0; i < 1000; i++) {
            logits[i] = (float)test_gaussian();
            if (logits[i] > logits[best]) best = i;
        }
        assert_int_equal(q3_sampler_sample(s, logits, 1000), best);
    }
    float ties[6] = {1.0f, 5.0f, -INFINITY, 5.0f, 2.0f, 5.0f};
    assert_int_equal(q3_sampler_sample(s, ties, 6), 1);
    q3_sampler_free(s);
}

/* Draws n tokens from fixed random logits with sampler parameters sp. */
static void draw_sequence(const q3_sampling *sp, const float *logits, int n_vocab, int n,
                          int32_t *out) {
    q3_sampler *s;
    assert_int_equal(q3_sampler_new(&s, sp, n_vocab, NULL), Q3_OK);
    float *scratch = malloc((size_t)n_vocab * sizeof *scratch);
    for (int i = 0; i < n; i++) {
        memcpy(scratch, logits, (size_t)n_vocab * sizeof *scratch);
        out[i] = q3_sampler_sample(s, scratch, n_vocab);
    }
    free(scratch);
    q3_sampler_free(s);
}

static void test_seed_determinism(void **state) {
    (void)state;
    enum { V = 2000, N = 300 };
    static float logits[V];
    for (int i = 0; i < V; i++) logits[i] = (float)test_gaussian() * 2;
    static int32_t a[N], b[N], c[N];
    q3_sampling sp = seeded(1.0f, 12345);
    sp.top_p = 0.95f;
    draw_sequence(&sp, logits, V, N, a);
    draw_sequence(&sp, logits, V, N, b);
    assert_memory_equal(a, b, sizeof a);
    sp.seed = 12346;
    draw_sequence(&sp, logits, V, N, c);
    assert_memory_not_equal(a, c, sizeof a);

    /* Seeds from the clock differ between samplers, and one is recorded for replay. */
    q3_sampling random = q3_sampling_defaults();
    q3_sampler *s1, *s2;
    assert_int_equal(q3_sampler_new(&s1, &random, V, NULL), Q3_OK);
    assert_int_equal(q3_sampler_new(&s2, &random, V, NULL), Q3_OK);
    assert_true(q3_sampler_seed(s1) != q3_sampler_seed(s2));
    assert_true(q3_sampler_seed(s1) != Q3_SEED_RANDOM);
    q3_sampler_free(s1);
    q3_sampler_free(s2);
}

/* ---- penalties ---- */

static void test_penalties_by_hand(void **state) {
    (void)state;
    q3_sampling sp = seeded(0.0f, 1);
    sp.repetition_penalty = 1.5f;
    sp.presence_penalty = 0.25f;
    sp.frequency_penalty = 0.5f;
    q3_sampler *s;
    assert_int_equal(q3_sampler_new(&s, &sp, 8, NULL), Q3_OK);
    const int32_t prompt[3] = {0, 1, 1};
    q3_sampler_accept_prompt(s, prompt, 3);
    q3_sampler_accept(s, 3);
    q3_sampler_accept(s, 3);
    q3_sampler_accept(s, 4);
    q3_sampler_accept(s, -1);  /* ignored */
    q3_sampler_accept(s, 99);  /* ignored */
    float logits[8] = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f, 0.0f, 4.0f};
    q3_sampler_apply_penalties(s, logits, 8);
    /* prompt tokens: repetition only; output tokens: all three */
    const float want[8] = {
        2.0f / 1.5f,                    /* prompt once */
        -1.0f * 1.5f,                   /* prompt twice */
        0.5f,                           /* unseen */
        3.0f / 1.5f - 0.25f - 0.5f * 2, /* output twice */
        -2.0f * 1.5f - 0.25f - 0.5f,    /* output once */
        1.0f, 0.0f, 4.0f};
    for (int i = 0; i < 8; i++) assert_float_equal(logits[i], want[i], 1e-6);
    q3_sampler_free(s);
}

static void test_penalty_window(void **state) {
    (void)state;
    q3_sampling sp = seeded(0.0f, 1);
    sp.repetition_penalty = 1.5f;
    sp.presence_penalty = 0.25f;
    sp.frequency_penalty = 0.5f;
    sp.penalty_last_n = 3;
    q3_sampler *s;
    assert_int_equal(q3_sampler_new(&s, &sp, 8, NULL), Q3_OK);
    const int32_t prompt[3] = {0, 1, 1};
    q3_sampler_accept_prompt(s, prompt, 3);
    q3_sampler_accept(s, 3);
    q3_sampler_accept(s, 3);
    q3_sampler_accept(s, 4); /* the window now holds 3 3 4: the prompt has left it */
    float logits[8] = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f, 0.0f, 4.0f};
    q3_sampler_apply_penalties(s, logits, 8);
    assert_float_equal(logits[0], 2.0f, 1e-6);
    assert_float_equal(logits[1], -1.0f, 1e-6);
    assert_float_equal(logits[3], 3.0f / 1.5f - 0.25f - 1.0f, 1e-6);
    q3_sampler_accept(s, 5); /* 3 4 5 */
    float again[8] = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f, 0.0f, 4.0f};
    q3_sampler_apply_penalties(s, again, 8);
    assert_float_equal(again[3], 3.0f / 1.5f - 0.25f - 0.5f, 1e-6);
    assert_float_equal(again[5], 1.0f / 1.5f - 0.25f - 0.5f, 1e-6);
    assert_float_equal(again[4], -2.0f * 1.5f - 0.25f - 0.5f, 1e-6);
    q3_sampler_free(s);
}

/* Sampling applies the penalties to choose but hands the model's logits back unchanged. */
static void test_sample_penalises_and_restores(void **state) {
    (void)state;
    q3_sampling sp = seeded(0.0f, 1);
    sp.frequency_penalty = 1.0f;
    q3_sampler *s;
    assert_int_equal(q3_sampler_new(&s, &sp, 4, NULL), Q3_OK);
    const float model[4] = {1.0f, 3.0f, 2.5f, 0.0f};
    float logits[4];
    memcpy(logits, model, sizeof logits);
    assert_int_equal(q3_sampler_sample(s, logits, 4), 1);
    q3_sampler_accept(s, 1); /* 3 - 1 = 2 < 2.5 */
    assert_int_equal(q3_sampler_sample(s, logits, 4), 2);
    assert_memory_equal(logits, model, sizeof logits);
    q3_sampler_free(s);
}

static void test_parameter_checks(void **state) {
    (void)state;
    q3_sampling good = q3_sampling_defaults();
    assert_int_equal(q3_sampling_check(&good, NULL), Q3_OK);
    q3_sampling bad[7];
    for (int i = 0; i < 7; i++) bad[i] = good;
    bad[0].temperature = -0.1f;
    bad[1].top_p = 1.5f;
    bad[2].min_p = NAN;
    bad[3].repetition_penalty = 0;
    bad[4].presence_penalty = INFINITY;
    bad[5].penalty_last_n = -2;
    bad[6].temperature = NAN;
    for (int i = 0; i < 7; i++) {
        q3_error err = {0};
        q3_sampler *s = (q3_sampler *)&err;
        assert_int_equal(q3_sampler_new(&s, &bad[i], 10, &err), Q3_EINVAL);
        assert_null(s);
        assert_true(strlen(err.msg) > 0);
    }
    q3_sampler *s;
    assert_int_equal(q3_sampler_new(&s, &good, 0, NULL), Q3_EINVAL);
}

/* ---- log-probabilities ---- */

static void test_logprobs(void **state) {
    (void)state;
    enum { V = 2000, K = 10 };
    static float logits[V];
    for (int i = 0; i < V; i++) logits[i] = (float)(test_gaussian() * 3);
    logits[7] = logits[8] = 12.0f; /* a tie: the lower id first */
    double top = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) top = fmax(top, logits[i]);
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - top);
    double lse = top + log(sum);
    ranked r[V];
    for (int i = 0; i < V; i++) r[i] = (ranked){logits[i], i};
    qsort(r, V, sizeof *r, by_probability);

    int32_t ids[K];
    float lp[K];
    assert_int_equal(q3_logprobs_top(logits, V, K, ids, lp), K);
    for (int i = 0; i < K; i++) {
        assert_int_equal(ids[i], r[i].id);
        assert_float_equal(lp[i], r[i].p - lse, 1e-5);
    }
    assert_int_equal(ids[0], 7);
    assert_int_equal(ids[1], 8);

    double total = 0;
    for (int i = 0; i < V; i++) {
        float l = q3_logprob_of(logits, V, i);
        assert_float_equal(l, logits[i] - lse, 1e-5);
        total += exp((double)l);
    }
    assert_float_equal(total, 1.0, 1e-5);

    /* k past the vocabulary gives the whole vocabulary, best first. */
    float three[3] = {0.0f, 1.0f, -1.0f};
    int32_t all_ids[5];
    float all_lp[5];
    assert_int_equal(q3_logprobs_top(three, 3, 5, all_ids, all_lp), 3);
    assert_int_equal(all_ids[0], 1);
    assert_int_equal(all_ids[2], 2);
}

/* ---- generation defaults ---- */

static const char *tmp_dir(void) {
    const char *t = getenv("Q3_TMP");
    return t ? t : "/tmp";
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A fresh directory under Q3_TMP holding generation_config.json with the given text (none for
 * NULL). */
static void make_model_dir(char *dir, size_t cap, const char *name, const char *json) {
    snprintf(dir, cap, "%s/sampler_%s", tmp_dir(), name);
    mkdir(dir, 0755);
    char path[1024];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    remove(path);
    if (json) write_file(path, json);
}

static void test_genconfig_demo_model(void **state) {
    (void)state;
    const char *root = getenv("Q3_ROOT");
    const char *const candidates[2] = {"%s/models/qwen3-moe-demo-py",
                                       "%s/../shared/models/qwen3-moe-demo-py"};
    char dir[1024], file[1100];
    bool found = false;
    for (int i = 0; i < 2 && root && !found; i++) {
        snprintf(dir, sizeof dir, candidates[i], root);
        snprintf(file, sizeof file, "%s/generation_config.json", dir);
        found = access(file, R_OK) == 0;
    }
    if (!found) skip();
    q3_sampling sp = q3_sampling_defaults();
    q3_error err;
    assert_int_equal(q3_genconfig_load(dir, &sp, &err), Q3_OK);
    /* {"do_sample": true, "temperature": 0.7, "top_k": 20, "top_p": 0.8} */
    assert_float_equal(sp.temperature, 0.7f, 1e-7);
    assert_int_equal(sp.top_k, 20);
    assert_float_equal(sp.top_p, 0.8f, 1e-7);
    assert_float_equal(sp.min_p, 0.0f, 0);
    assert_float_equal(sp.repetition_penalty, 1.0f, 0);
}

static void test_genconfig_values(void **state) {
    (void)state;
    char dir[1024];
    make_model_dir(dir, sizeof dir, "greedy",
                   "{\"do_sample\": false, \"temperature\": 0.6, \"top_k\": 40.0, "
                   "\"min_p\": 0.05, \"repetition_penalty\": 1.1, \"top_p\": null}");
    q3_sampling sp = q3_sampling_defaults();
    assert_int_equal(q3_genconfig_load(dir, &sp, NULL), Q3_OK);
    assert_float_equal(sp.temperature, 0.0f, 0);
    assert_int_equal(sp.top_k, 40);
    assert_float_equal(sp.top_p, 1.0f, 0);
    assert_float_equal(sp.min_p, 0.05f, 1e-7);
    assert_float_equal(sp.repetition_penalty, 1.1f, 1e-7);
}

static void test_genconfig_absent(void **state) {
    (void)state;
    char dir[1024];
    make_model_dir(dir, sizeof dir, "absent", NULL);
    q3_sampling sp = q3_sampling_defaults(), before = sp;
    assert_int_equal(q3_genconfig_load(dir, &sp, NULL), Q3_OK);
    assert_memory_equal(&sp, &before, sizeof sp);
    /* A file (a GGUF, say) is not a checkpoint directory. */
    char file[1100];
    snprintf(file, sizeof file, "%s/model.gguf", dir);
    write_file(file, "GGUF");
    assert_int_equal(q3_genconfig_load(file, &sp, NULL), Q3_OK);
    assert_memory_equal(&sp, &before, sizeof sp);
}

static void test_genconfig_malformed(void **state) {
    (void)state;
    const char *cases[4][2] = {
        {"truncated", "{\"temperature\": 0.7, \"top_k\": "},
        {"wrongtype", "{\"top_k\": \"20\"}"},
        {"outofrange", "{\"top_p\": 1.5}"},
        {"notobject", "[0.7]"},
    };
    for (int i = 0; i < 4; i++) {
        char dir[1024];
        make_model_dir(dir, sizeof dir, cases[i][0], cases[i][1]);
        q3_sampling sp = q3_sampling_defaults(), before = sp;
        q3_error err = {0};
        assert_int_equal(q3_genconfig_load(dir, &sp, &err), Q3_EFORMAT);
        if (!strstr(err.msg, "generation_config.json"))
            fail_msg("message without the file: %s", err.msg);
        assert_memory_equal(&sp, &before, sizeof sp);
    }
}

static void test_genconfig_gguf_round_trip(void **state) {
    (void)state;
    q3_sampling written = seeded(0.6f, 1);
    written.top_k = 20;
    written.top_p = 0.95f;
    written.min_p = 0.02f;
    written.repetition_penalty = 1.05f;
    q3_gguf_writer *w;
    q3_error err;
    assert_int_equal(q3_gguf_writer_new(&w, &err), Q3_OK);
    assert_int_equal(q3_genconfig_to_gguf(w, &written, &err), Q3_OK);
    char path[1024];
    snprintf(path, sizeof path, "%s/sampler_genconfig.gguf", tmp_dir());
    if (q3_gguf_write(w, path, NULL, NULL, &err)) fail_msg("%s", err.msg);
    q3_gguf_writer_free(w);

    q3_gguf g;
    if (q3_gguf_open(&g, path, &err)) fail_msg("%s", err.msg);
    q3_sampling read = q3_sampling_defaults();
    assert_int_equal(q3_genconfig_from_gguf(&g, &read, &err), Q3_OK);
    assert_float_equal(read.temperature, 0.6f, 0);
    assert_int_equal(read.top_k, 20);
    assert_float_equal(read.top_p, 0.95f, 0);
    assert_float_equal(read.min_p, 0.02f, 0);
    assert_float_equal(read.repetition_penalty, 1.05f, 0);
    assert_int_equal(read.penalty_last_n, -1);
    q3_gguf_close(&g);

    /* A GGUF without the keys leaves the parameters alone. */
    assert_int_equal(q3_gguf_writer_new(&w, &err), Q3_OK);
    assert_int_equal(q3_gguf_set_str(w, "general.architecture", "qwen3moe"), Q3_OK);
    assert_int_equal(q3_gguf_write(w, path, NULL, NULL, &err), Q3_OK);
    q3_gguf_writer_free(w);
    assert_int_equal(q3_gguf_open(&g, path, &err), Q3_OK);
    q3_sampling untouched = q3_sampling_defaults(), before = untouched;
    assert_int_equal(q3_genconfig_from_gguf(&g, &untouched, &err), Q3_OK);
    assert_memory_equal(&untouched, &before, sizeof before);
    q3_gguf_close(&g);

    /* A key of the wrong type is an error that names it. */
    assert_int_equal(q3_gguf_writer_new(&w, &err), Q3_OK);
    assert_int_equal(q3_gguf_set_str(w, "general.sampling.top_k", "twenty"), Q3_OK);
    assert_int_equal(q3_gguf_write(w, path, NULL, NULL, &err), Q3_OK);
    q3_gguf_writer_free(w);
    assert_int_equal(q3_gguf_open(&g, path, &err), Q3_OK);
    assert_int_equal(q3_genconfig_from_gguf(&g, &untouched, &err), Q3_EFORMAT);
    assert_non_null(strstr(err.msg, "general.sampling.top_k"));
    q3_gguf_close(&g);
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_temperature_distribution),
        cmocka_unit_test(test_top_k_distribution),
        cmocka_unit_test(test_top_p_distribution),
        cmocka_unit_test(test_min_p_distribution),
        cmocka_unit_test(test_combined_distribution),
        cmocka_unit_test(test_top_p_distribution_wide),
        cmocka_unit_test(test_truncation_full_vocab),
        cmocka_unit_test(test_greedy_is_argmax),
        cmocka_unit_test(test_seed_determinism),
        cmocka_unit_test(test_penalties_by_hand),
        cmocka_unit_test(test_penalty_window),
        cmocka_unit_test(test_sample_penalises_and_restores),
        cmocka_unit_test(test_parameter_checks),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_genconfig_demo_model),
        cmocka_unit_test(test_genconfig_values),
        cmocka_unit_test(test_genconfig_absent),
        cmocka_unit_test(test_genconfig_malformed),
        cmocka_unit_test(test_genconfig_gguf_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
