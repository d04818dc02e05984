/* Tests of the tensor type kernels (src/quant, src/cpu/dot_*): block sizes against the GGUF
 * layout, quantize -> dequantize error per format, vec_dot against the dot product of the
 * dequantized rows, and every SIMD kernel this CPU runs against the scalar reference: exactly
 * for the K-quants, the i-quants and the quantizers, within rounding for the float types and
 * the 32-wide legacy formats (which sum their blocks in another order). The i-quants'
 * importance weighting is checked to steer their error. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "quant/blocks.h"
#include "cpu/kernel_table.h"
#include "quant/iq_blocks.h"
#include "isa_coverage.h"
#include "random_blocks.h"

/* ---- the formats under test ---- */

/* Relative RMS error bounds of quantize -> dequantize on fill_gauss data (outliers included),
 * about 1.25x what the formats measure: Q8_0 0.7%, Q6_K 2.1%, Q5_K 4.1%, Q4_K 8.1%, Q3_K 18%,
 * Q2_K 32%; Q8_K 1.3% (one scale per 256 values); IQ4_NL 8.8%, IQ4_XS 8.9%, IQ3_S 15%,
 * IQ3_XXS 19%, IQ2_S 28%, IQ2_XS 31%, IQ2_XXS 37%, IQ1_M 46%, IQ1_S 53% (no importance matrix). */
static const struct {
    q3_type type;
    size_t block_bytes;
    int block_size;
    double max_rel_rms;
} FORMATS[] = {
    {Q3_TYPE_Q4_0, sizeof(q3_block_q4_0), Q3_QK, 0.135},
    {Q3_TYPE_Q4_1, sizeof(q3_block_q4_1), Q3_QK, 0.11},
    {Q3_TYPE_Q5_0, sizeof(q3_block_q5_0), Q3_QK, 0.068},
    {Q3_TYPE_Q5_1, sizeof(q3_block_q5_1), Q3_QK, 0.053},
    {Q3_TYPE_Q8_0, sizeof(q3_block_q8_0), Q3_QK, 0.0085},
    {Q3_TYPE_Q8_1, sizeof(q3_block_q8_1), Q3_QK, 0.0085},
    {Q3_TYPE_Q2_K, sizeof(q3_block_q2_k), Q3_QK_K, 0.40},
    {Q3_TYPE_Q3_K, sizeof(q3_block_q3_k), Q3_QK_K, 0.22},
    {Q3_TYPE_Q4_K, sizeof(q3_block_q4_k), Q3_QK_K, 0.10},
    {Q3_TYPE_Q5_K, sizeof(q3_block_q5_k), Q3_QK_K, 0.051},
    {Q3_TYPE_Q6_K, sizeof(q3_block_q6_k), Q3_QK_K, 0.027},
    {Q3_TYPE_Q8_K, sizeof(q3_block_q8_k), Q3_QK_K, 0.016},
    {Q3_TYPE_IQ4_NL, sizeof(q3_block_iq4_nl), Q3_QK, 0.11},
    {Q3_TYPE_IQ4_XS, sizeof(q3_block_iq4_xs), Q3_QK_K, 0.11},
    {Q3_TYPE_IQ3_S, sizeof(q3_block_iq3_s), Q3_QK_K, 0.185},
    {Q3_TYPE_IQ3_XXS, sizeof(q3_block_iq3_xxs), Q3_QK_K, 0.24},
    {Q3_TYPE_IQ2_S, sizeof(q3_block_iq2_s), Q3_QK_K, 0.35},
    {Q3_TYPE_IQ2_XS, sizeof(q3_block_iq2_xs), Q3_QK_K, 0.39},
    {Q3_TYPE_IQ2_XXS, sizeof(q3_block_iq2_xxs), Q3_QK_K, 0.47},
    {Q3_TYPE_IQ1_M, sizeof(q3_block_iq1_m), Q3_QK_K, 0.57},
    {Q3_TYPE_IQ1_S, sizeof(q3_block_iq1_s), Q3_QK_K, 0.66},
};
#define N_FORMATS (sizeof FORMATS / sizeof FORMATS[0])

/* Types whose vec_dot a SIMD ISA may replace, with the weights made the way the test wants. */
static const q3_type DOT_TYPES[] = {
    Q3_TYPE_F32,  Q3_TYPE_F16,  Q3_TYPE_BF16, Q3_TYPE_Q4_0, Q3_TYPE_Q4_1, Q3_TYPE_Q5_0,
    Q3_TYPE_Q5_1, Q3_TYPE_Q8_0, Q3_TYPE_Q2_K, Q3_TYPE_Q3_K, Q3_TYPE_Q4_K, Q3_TYPE_Q5_K,
    Q3_TYPE_Q6_K, Q3_TYPE_IQ4_NL, Q3_TYPE_IQ4_XS, Q3_TYPE_IQ3_S, Q3_TYPE_IQ3_XXS, Q3_TYPE_IQ2_S,
    Q3_TYPE_IQ2_XS, Q3_TYPE_IQ2_XXS, Q3_TYPE_IQ1_M, Q3_TYPE_IQ1_S,
};
#define N_DOT_TYPES (sizeof DOT_TYPES / sizeof DOT_TYPES[0])

static bool is_i_quant(q3_type t) {
    return (t >= Q3_TYPE_IQ2_XXS && t <= Q3_TYPE_IQ4_XS) || t == Q3_TYPE_IQ1_M;
}

static bool is_float_type(q3_type t) {
    return t == Q3_TYPE_F32 || t == Q3_TYPE_F16 || t == Q3_TYPE_BF16;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* ---- tests ---- */

static void test_block_sizes_match_gguf(void **state) {
    (void)state;
    for (size_t f = 0; f < N_FORMATS; f++) {
        const q3_type_traits *tr = q3_type_get(FORMATS[f].type);
        assert_non_null(tr);
        assert_int_equal(tr->type_size, FORMATS[f].block_bytes);
        assert_int_equal(tr->block_size, FORMATS[f].block_size);
        assert_non_null(tr->to_float);
        assert_non_null(tr->from_float);
        assert_non_null(tr->vec_dot);
    }
}

static double rel_rms_error(const float *ref, const float *got, int64_t n) {
    double err = 0, norm = 0;
    for (int64_t i = 0; i < n; i++) {
        err += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        norm += (double)ref[i] * ref[i];
    }
    return sqrt(err / norm);
}

static void test_roundtrip_error_within_bounds(void **state) {
    (void)state;
    const int64_t n = 256 * 256;
    float *x = xmalloc(n * sizeof *x), *y = xmalloc(n * sizeof *y);
    fill_gauss(x, n, 0.02f);
    for (size_t f = 0; f < N_FORMATS; f++) {
        const q3_type_traits *tr = q3_type_get(FORMATS[f].type);
        void *q = xmalloc(q3_row_bytes(FORMATS[f].type, n));
        tr->from_float(x, q, n);
        tr->to_float(q, y, n);
        double err = rel_rms_error(x, y, n);
        print_message("%-5s relative RMS error %.4f (bound %.3f)\n", tr->name, err, FORMATS[f].max_rel_rms);
        assert_true(err < FORMATS[f].max_rel_rms);
        free(q);
    }
    free(x);
    free(y);
}

/* An all-zero block quantizes to scale 0 and dequantizes to zeros, not NaN. */
static void test_zero_blocks_stay_zero(void **state) {
    (void)state;
    float x[Q3_QK_K] = {0}, y[Q3_QK_K];
    uint8_t q[sizeof(q3_block_q8_k)];
    for (size_t f = 0; f < N_FORMATS; f++) {
        const q3_type_traits *tr = q3_type_get(FORMATS[f].type);
        tr->from_float(x, q, tr->block_size);
        tr->to_float(q, y, tr->block_size);
        for (int i = 0; i < tr->block_size; i++) assert_true(y[i] == 0.0f);
    }
}

/* An importance per column moves the i-quants' error where it costs less: with every eighth
 * column 50 times as important, the error weighted by importance falls below that of the
 * quantization without it, and the important columns come out more accurate. */
static void test_importance_steers_i_quants(void **state) {
    (void)state;
    const int64_t n = 256 * 64;
    float *x = xmalloc(n * sizeof *x), *y = xmalloc(n * sizeof *y), *imp = xmalloc(n * sizeof *imp);
    fill_gauss(x, n, 0.02f);
    for (int64_t i = 0; i < n; i++) imp[i] = i % 8 == 0 ? 50.0f : 1.0f;
    for (size_t f = 0; f < N_FORMATS; f++) {
        const q3_type_traits *tr = q3_type_get(FORMATS[f].type);
        if (!is_i_quant(FORMATS[f].type)) continue;
        assert_non_null(tr->quantize);
        void *q = xmalloc(q3_row_bytes(FORMATS[f].type, n));
        double weighted[2], important[2];
        for (int with = 0; with < 2; with++) {
            tr->quantize(x, q, n, with ? imp : NULL);
            tr->to_float(q, y, n);
            weighted[with] = important[with] = 0;
            for (int64_t i = 0; i < n; i++) {
                double e2 = ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
                weighted[with] += imp[i] * e2;
                if (i % 8 == 0) important[with] += e2;
            }
        }
        print_message("%-7s importance-weighted error %.3g -> %.3g, important columns %.3g -> %.3g\n", tr->name,
                      weighted[0], weighted[1], important[0], important[1]);
        assert_true(weighted[1] < weighted[0]);
        assert_true(important[1] < 0.9 * important[0]);
        free(q);
    }
    free(x);
    free(y);
    free(imp);
}

/* Weights quantized from x (float types: converted), n elements, in a fresh buffer. */
static void *make_weights(q3_type t, const float *x, int64_t n) {
    void *w = xmalloc(q3_row_bytes(t, n));
    q3_type_get(t)->from_float(x, w, n);
    return w;
}

/* Q4_1 and Q5_1 take their offset term m * sum(x) from the Q8_1 block's s, which is d * sum(q)
 * rounded to fp16: room for that rounding, sum |m * s| * 2^-11. */
static double offset_rounding_room(q3_type t, const void *w, const void *act, int64_t n) {
    if (t != Q3_TYPE_Q4_1 && t != Q3_TYPE_Q5_1) return 0;
    const q3_block_q8_1 *x = act;
    double room = 0;
    for (int64_t i = 0; i < n / Q3_QK; i++) {
        uint16_t m = t == Q3_TYPE_Q4_1 ? ((const q3_block_q4_1 *)w)[i].m : ((const q3_block_q5_1 *)w)[i].m;
        room += fabs((double)q3_f16_to_f32(m) * q3_f16_to_f32(x[i].s)) / 2048;
    }
    return room;
}

/* vec_dot(w, quantize(x)) equals the double-precision dot product of the dequantized rows up to
 * float rounding, and the dot product with x itself up to the activation quantization. */
static void test_vec_dot_matches_dequantized_rows(void **state) {
    (void)state;
    const int64_t n = 4096;
    float *x = xmalloc(n * sizeof *x), *wf = xmalloc(n * sizeof *wf);
    float *wd = xmalloc(n * sizeof *wd), *xd = xmalloc(n * sizeof *xd);
    for (size_t k = 0; k < N_DOT_TYPES; k++) {
        q3_type t = DOT_TYPES[k];
        const q3_type_traits *tr = q3_type_get(t), *at = q3_type_get(tr->vec_dot_type);
        fill_gauss(wf, n, 0.05f);
        fill_gauss(x, n, 1.0f);
        void *w = make_weights(t, wf, n), *act = make_weights(tr->vec_dot_type, x, n);
        tr->to_float(w, wd, n);
        at->to_float(act, xd, n);
        double exact = 0, magnitude = 0, with_x = 0, w_norm = 0, x_norm = 0;
        for (int64_t i = 0; i < n; i++) {
            exact += (double)wd[i] * xd[i];
            magnitude += fabs((double)wd[i] * xd[i]);
            with_x += (double)wd[i] * x[i];
            w_norm += (double)wd[i] * wd[i];
            x_norm += (double)x[i] * x[i];
        }
        float got = tr->vec_dot(n, w, act);
        double tol = 2e-6 * magnitude + offset_rounding_room(t, w, act, n) + 1e-6;
        print_message("%-5s vec_dot %+.6f, dequantized %+.6f, with f32 x %+.6f\n", tr->name, got,
                      exact, with_x);
        assert_true(fabs(got - exact) <= tol);
        assert_true(fabs(got - with_x) <= 0.02 * sqrt(w_norm * x_norm));
        free(w);
        free(act);
    }
    free(x);
    free(wf);
    free(wd);
    free(xd);
}

/* Weights for the ISA comparison: random bits (integer formats) or random floats. */
static void *make_isa_weights(q3_type t, int64_t n) {
    void *w = xmalloc(q3_row_bytes(t, n));
    if (is_float_type(t)) {
        float *wf = xmalloc(n * sizeof *wf);
        fill_gauss(wf, n, 0.05f);
        q3_type_get(t)->from_float(wf, w, n);
        free(wf);
    } else {
        if (!fill_random_blocks(t, w, n / q3_type_get(t)->block_size)) fail_msg("no random blocks for %s", q3_type_name(t));
    }
    return w;
}

/* The rounding room between two summation orders: n terms of this size, in float. */
static double float_sum_tolerance(const q3_type_traits *tr, int64_t n, const void *w, const void *act) {
    float *wd = xmalloc(n * sizeof *wd), *xd = xmalloc(n * sizeof *xd);
    tr->to_float(w, wd, n);
    q3_type_get(tr->vec_dot_type)->to_float(act, xd, n);
    double magnitude = 0;
    for (int64_t i = 0; i < n; i++) magnitude += fabs((double)wd[i] * xd[i]);
    free(wd);
    free(xd);
    return 4e-7 * sqrt((double)n) * magnitude + 1e-30;
}

/* The K-quant and i-quant kernels: their integer sums and per-block float tail are the
 * reference's own. The others accumulate per-block floats in vector lanes, another summation
 * order. */
static bool exact_across_isas(q3_type t) { return (t >= Q3_TYPE_Q2_K && t <= Q3_TYPE_Q6_K) || is_i_quant(t); }

static void compare_vec_dot(q3_isa isa, q3_type t, int64_t n) {
    const q3_type_traits *ref = q3_type_get_isa(t, Q3_ISA_SCALAR), *simd = q3_type_get_isa(t, isa);
    float *x = xmalloc(n * sizeof *x);
    fill_gauss(x, n, 1.0f);
    void *w = make_isa_weights(t, n), *act = xmalloc(q3_row_bytes(ref->vec_dot_type, n));
    q3_type_get_isa(ref->vec_dot_type, Q3_ISA_SCALAR)->from_float(x, act, n);
    float want = ref->vec_dot(n, w, act), got = simd->vec_dot(n, w, act);
    if (exact_across_isas(t)) {
        if (got != want)
            fail_msg("%s %s n=%lld: %.9g != scalar %.9g", q3_isa_name(isa), ref->name, (long long)n, got, want);
    } else {
        double tol = float_sum_tolerance(ref, n, w, act);
        if (fabs(got - want) > tol)
            fail_msg("%s %s n=%lld: %.9g vs scalar %.9g (tolerance %.3g)", q3_isa_name(isa), ref->name,
                     (long long)n, got, want, tol);
    }
    free(x);
    free(w);
    free(act);
}

static void test_simd_vec_dot_agrees_with_scalar(void **state) {
    (void)state;
    static const int64_t float_lengths[] = {1, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 128, 1000, 4099};
    for (int isa = Q3_ISA_AVX2; isa < Q3_ISA_COUNT; isa++) {
        if (!q3_isa_supported((q3_isa)isa)) {
            print_message("%s: not supported here, skipped\n", q3_isa_name((q3_isa)isa));
            continue;
        }
        for (size_t k = 0; k < N_DOT_TYPES; k++) {
            q3_type t = DOT_TYPES[k];
            if (is_float_type(t)) {
                for (size_t l = 0; l < sizeof float_lengths / sizeof float_lengths[0]; l++)
                    compare_vec_dot((q3_isa)isa, t, float_lengths[l]);
            } else {
                int bs = q3_type_get(t)->block_size;
                for (int64_t blocks = 1; blocks <= 9; blocks++) compare_vec_dot((q3_isa)isa, t, bs * blocks);
                for (int rep = 0; rep < 20; rep++) compare_vec_dot((q3_isa)isa, t, bs * 64);
            }
        }
    }
}

static void compare_from_float(q3_isa isa, q3_type t, const float *x, int64_t n) {
    size_t bytes = q3_row_bytes(t, n);
    uint8_t *want = xmalloc(bytes), *got = xmalloc(bytes);
    memset(want, 0xAA, bytes);
    memset(got, 0x55, bytes);
    q3_type_get_isa(t, Q3_ISA_SCALAR)->from_float(x, want, n);
    q3_type_get_isa(t, isa)->from_float(x, got, n);
    if (memcmp(want, got, bytes) != 0)
        fail_msg("%s %s from_float differs from scalar", q3_isa_name(isa), q3_type_name(t));
    free(want);
    free(got);
}

/* The quantizers must agree byte for byte, on ordinary data and on the corner cases: zero
 * blocks, exact halves (rounding ties), equal magnitudes of both signs, tiny values. */
static void test_simd_quantizers_agree_with_scalar(void **state) {
    (void)state;
    const int64_t n = 256 * 32;
    float *x = xmalloc(n * sizeof *x);
    fill_gauss(x, n, 3.0f);
    for (int64_t i = 0; i < 256; i++) x[i] = 0;                            /* zero block */
    for (int64_t i = 256; i < 512; i++) x[i] = (float)((i % 9) - 4) * 0.5f; /* ties */
    for (int64_t i = 512; i < 768; i++) x[i] = (i % 2 ? 1.0f : -1.0f) * (float)(i % 5); /* +-max */
    for (int64_t i = 768; i < 1024; i++) x[i] = 1e-30f * rng_gauss();        /* subnormal scales */
    for (int64_t i = 1024; i < 1280; i++) x[i] = (float)(i % 255 - 127);   /* integers */
    for (int isa = Q3_ISA_AVX2; isa < Q3_ISA_COUNT; isa++) {
        if (!q3_isa_supported((q3_isa)isa)) continue;
        for (size_t f = 0; f < N_FORMATS; f++) compare_from_float((q3_isa)isa, FORMATS[f].type, x, n);
    }
    free(x);
}

/* Dequantization is exact arithmetic (a level times a scale, one rounding), so every ISA's
 * to_float must give the scalar reference's floats bit for bit: attention reads Q8_0 and F16
 * caches through these. */
static void test_simd_to_float_agrees_with_scalar(void **state) {
    (void)state;
    const int64_t n = 256 * 32;
    float *x = xmalloc(n * sizeof *x), *want = xmalloc(n * sizeof *want), *got = xmalloc(n * sizeof *got);
    fill_gauss(x, n, 3.0f);
    for (int64_t i = 0; i < 256; i++) x[i] = 0; /* zero block */
    for (int isa = Q3_ISA_AVX2; isa < Q3_ISA_COUNT; isa++) {
        if (!q3_isa_supported((q3_isa)isa)) continue;
        for (size_t f = 0; f < N_FORMATS; f++) {
            q3_type t = FORMATS[f].type;
            void *q = xmalloc(q3_row_bytes(t, n));
            q3_type_get_isa(t, Q3_ISA_SCALAR)->from_float(x, q, n);
            q3_type_get_isa(t, Q3_ISA_SCALAR)->to_float(q, want, n);
            q3_type_get_isa(t, (q3_isa)isa)->to_float(q, got, n);
            if (memcmp(want, got, (size_t)n * sizeof *got) != 0)
                fail_msg("%s %s to_float differs from scalar", q3_isa_name((q3_isa)isa), q3_type_name(t));
            free(q);
        }
    }
    free(x);
    free(want);
    free(got);
}

/* Q8_0 rounds two ways, llama.cpp's: activations (and KV caches) as its x86 CPU backend does,
 * x * (127 / max|x|) half to even; files as its file quantizer and the gguf package do,
 * x * (1 / d) half away from zero. Known answers where the two part: exact halves (block 0),
 * and a value whose product is exactly 2.5 by 127 / max and 2.5000002 by 1 / d (block 1). */
static void test_q8_rounding_known_answers(void **state) {
    (void)state;
    float x[64] = {127.0f, 2.5f, -2.5f, 3.5f, 0.5f, -0.5f};
    x[32] = 1.523f, x[33] = 0.029980316758155823f;
    static const int8_t run_time[2][6] = {{127, 2, -2, 4, 0, 0}, {127, 2}}, file[2][6] = {{127, 3, -3, 4, 1, -1}, {127, 3}};
    q3_block_q8_0 q[2];
    q3_block_q8_1 q1[2];
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        if (!q3_isa_supported((q3_isa)isa)) continue;
        q3_type_get_isa(Q3_TYPE_Q8_0, (q3_isa)isa)->from_float(x, q, 64);
        q3_type_get_isa(Q3_TYPE_Q8_1, (q3_isa)isa)->from_float(x, q1, 64);
        for (int b = 0; b < 2; b++) {
            assert_memory_equal(q[b].qs, run_time[b], 6);
            assert_memory_equal(q1[b].qs, run_time[b], 6);
        }
    }
    q3_quantize_row(q3_type_info(Q3_TYPE_Q8_0), x, q, 64, NULL);
    for (int b = 0; b < 2; b++) assert_memory_equal(q[b].qs, file[b], 6);
}

static void test_isa_selection(void **state) {
    (void)state;
    assert_true(q3_isa_supported(Q3_ISA_SCALAR));
    assert_true(q3_isa_supported(q3_isa_active()));
    assert_string_equal(q3_isa_name(Q3_ISA_AVX512), "avx512");
    assert_null(q3_type_get_isa((q3_type)5, Q3_ISA_SCALAR)); /* a GGML id that no longer exists */
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        const q3_type_traits *tr = q3_type_get_isa(Q3_TYPE_Q4_K, (q3_isa)isa);
        if (q3_isa_supported((q3_isa)isa)) {
            assert_non_null(tr);
            assert_string_equal(tr->name, "Q4_K");
        } else {
            assert_null(tr);
        }
    }
    assert_ptr_equal(q3_type_get(Q3_TYPE_Q8_0)->vec_dot,
                     q3_type_get_isa(Q3_TYPE_Q8_0, q3_isa_active())->vec_dot);
    /* The comparisons above test something: each SIMD ISA has its own hot kernels (dotprod
     * replaces only NEON's integer dot products: its quantizers are NEON's). The level below
     * is the nearest one this CPU runs (on ARM the x86 ones are absent). */
    for (int isa = Q3_ISA_AVX2; isa < Q3_ISA_COUNT; isa++) {
        if (!q3_isa_supported((q3_isa)isa)) continue;
        int below = isa - 1;
        while (!q3_isa_supported((q3_isa)below)) below--;
        assert_ptr_not_equal(q3_type_get_isa(Q3_TYPE_Q4_K, (q3_isa)isa)->vec_dot,
                             q3_type_get_isa(Q3_TYPE_Q4_K, (q3_isa)below)->vec_dot);
        assert_ptr_not_equal(q3_type_get_isa(Q3_TYPE_Q8_0, (q3_isa)isa)->from_float,
                             q3_type_get_isa(Q3_TYPE_Q8_0, Q3_ISA_SCALAR)->from_float);
    }
    print_message("active ISA: %s\n", q3_isa_name(q3_isa_active()));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_isa_coverage),
        cmocka_unit_test(test_block_sizes_match_gguf),
        cmocka_unit_test(test_roundtrip_error_within_bounds),
        cmocka_unit_test(test_zero_blocks_stay_zero),
        cmocka_unit_test(test_importance_steers_i_quants),
        cmocka_unit_test(test_vec_dot_matches_dequantized_rows),
        cmocka_unit_test(test_simd_vec_dot_agrees_with_scalar),
        cmocka_unit_test(test_simd_quantizers_agree_with_scalar),
        cmocka_unit_test(test_simd_to_float_agrees_with_scalar),
        cmocka_unit_test(test_q8_rounding_known_answers),
        cmocka_unit_test(test_isa_selection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
