/* Tests of the tile kernels (q3_gemm_fn, src/cpu/gemm_*.c): on every ISA this CPU runs, every
 * type's gemm against the same ISA's vec_dot, bit for bit, for every tile edge (1..16 rows,
 * 1..64 tokens), several row lengths, padded strides and scattered token pointers. Bit-identity
 * is the contract: it is what keeps a token's output independent of its batch, which the last
 * test checks end to end on small quantized models (prefill == decode == chunked prefill). */
#include <math.h>
#include "bench/synth.h"
#include "model/runner.h"
#include "quant/blocks.h"
#include "quant/interleave.h"
#include "cpu/kernel_table.h"
#include "isa_coverage.h"
#include "random_blocks.h"
#include "testutil.h"

/* ---- random data ---- */

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static bool is_float_type(q3_type t) { return t == Q3_TYPE_F32 || t == Q3_TYPE_F16 || t == Q3_TYPE_BF16; }

/* Blocks of random bits with finite scales: every level and packed-scale pattern occurs. Float
 * types: Gaussian values, converted. */
static void fill_weight_blocks(q3_type t, uint8_t *row, int64_t n_blocks) {
    const q3_type_traits *tr = q3_type_get(t);
    if (is_float_type(t)) {
        float *x = xmalloc((size_t)n_blocks * sizeof *x);
        for (int64_t i = 0; i < n_blocks; i++) x[i] = 0.05f * rng_gauss();
        tr->from_float(x, row, n_blocks);
        free(x);
        return;
    }
    if (!fill_random_blocks(t, row, n_blocks)) fail_msg("no random blocks for %s", q3_type_name(t));
}

/* The lattice i-quants (IQ2_XXS .. IQ1_M): their vec_dots, as llama.cpp's, move each weight's
 * sign onto the activation, which -128 does not survive; the AVX-512 tiles multiply exactly. */
static bool is_lattice_type(q3_type t) {
    return t == Q3_TYPE_IQ2_XXS || t == Q3_TYPE_IQ2_XS || t == Q3_TYPE_IQ2_S || t == Q3_TYPE_IQ3_XXS ||
           t == Q3_TYPE_IQ3_S || t == Q3_TYPE_IQ1_S || t == Q3_TYPE_IQ1_M;
}

/* An activation row of n elements for weights of type t: quantized Gaussian values with
 * outliers, or (raw) Q8_K blocks of arbitrary int8 values with their sums: -128 included, but
 * for the lattice types, whose kernels agree on the levels Q8_K holds, -127..127 (checked
 * below for the quantized rows). */
static void fill_activations(q3_isa isa, q3_type t, uint8_t *act, int64_t n, bool raw) {
    const q3_type_traits *at = q3_type_get_isa(q3_type_get(t)->vec_dot_type, isa);
    if (raw && at == q3_type_get_isa(Q3_TYPE_Q8_K, isa)) {
        q3_block_q8_k *b = (q3_block_q8_k *)act;
        int lowest = is_lattice_type(t) ? -127 : -128;
        for (int64_t i = 0; i < n / Q3_QK_K; i++) {
            b[i].d = 0.01f * rng_gauss();
            for (int j = 0; j < Q3_QK_K; j++) {
                int8_t q = (int8_t)rng_next();
                b[i].qs[j] = q < lowest ? (int8_t)lowest : q;
            }
            for (int j = 0; j < Q3_QK_K / 16; j++) {
                int s = 0;
                for (int l = 0; l < 16; l++) s += b[i].qs[16 * j + l];
                b[i].bsums[j] = (int16_t)s;
            }
        }
        return;
    }
    float *x = xmalloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = rng_gauss() * (rng_next() % 32 == 0 ? 8.0f : 1.0f);
    at->from_float(x, act, n);
    free(x);
    if (at == q3_type_get_isa(Q3_TYPE_Q8_K, isa)) /* the largest magnitude maps to -127: no -128 */
        for (int64_t i = 0; i < n / Q3_QK_K; i++)
            for (int j = 0; j < Q3_QK_K; j++) assert_true(((q3_block_q8_k *)act)[i].qs[j] >= -127);
}

/* ---- the comparison ---- */

typedef struct problem {
    q3_isa isa;
    q3_type type;
    int64_t n;        /* row length */
    int rows, tokens; /* weights and activations made; a tile takes any subset */
    size_t w_stride, a_bytes;
    uint8_t *w, *act;
    const void *x[Q3_GEMM_COLS];
} problem;

/* rows x tokens of random data; rows padded to w_stride, the token pointers in scrambled order
 * with one token repeated, as the MoE's assignment lists give them. */
static void problem_make(problem *p, q3_isa isa, q3_type t, int64_t n, bool raw_act) {
    const q3_type_traits *tr = q3_type_get_isa(t, isa);
    p->isa = isa;
    p->type = t;
    p->n = n;
    p->rows = Q3_GEMM_ROWS;
    p->tokens = Q3_GEMM_COLS;
    size_t row_bytes = (size_t)(n / tr->block_size) * tr->type_size;
    p->w_stride = row_bytes + 6; /* padded, and only as aligned as the blocks need (2) */
    p->a_bytes = q3_row_bytes(tr->vec_dot_type, n);
    p->w = xmalloc(p->w_stride * p->rows);
    p->act = xmalloc(p->a_bytes * p->tokens);
    for (int r = 0; r < p->rows; r++) fill_weight_blocks(t, p->w + r * p->w_stride, n / tr->block_size);
    for (int c = 0; c < p->tokens; c++) fill_activations(isa, t, p->act + c * p->a_bytes, n, raw_act);
    for (int c = 0; c < p->tokens; c++) p->x[c] = p->act + (size_t)((c * 37 + 11) % p->tokens) * p->a_bytes;
    p->x[p->tokens - 1] = p->x[0];
}

static void problem_free(problem *p) {
    free(p->w);
    free(p->act);
}

/* gemm over rows [r0, r0 + nr) and tokens [c0, c0 + nc) equals vec_dot for every pair, bits
 * included, and writes nothing outside its nr x nc outputs. */
static void check_tile(const problem *p, int r0, int nr, int c0, int nc) {
    const q3_type_traits *tr = q3_type_get_isa(p->type, p->isa);
    const size_t out_stride = Q3_GEMM_ROWS + 3;
    const float sentinel = -12345.0f;
    float *out = xmalloc(out_stride * Q3_GEMM_COLS * sizeof *out);
    for (size_t i = 0; i < out_stride * Q3_GEMM_COLS; i++) out[i] = sentinel;
    tr->gemm(p->n, p->w + r0 * p->w_stride, p->w_stride, nr, p->x + c0, nc, out, out_stride);
    for (int c = 0; c < Q3_GEMM_COLS; c++) {
        for (size_t r = 0; r < out_stride; r++) {
            float got = out[c * out_stride + r];
            if (c >= nc || (int)r >= nr) {
                if (memcmp(&got, &sentinel, sizeof got) != 0)
                    fail_msg("%s %s gemm wrote outside its %dx%d tile at (%zu, %d)", q3_isa_name(p->isa), tr->name,
                             nr, nc, r, c);
                continue;
            }
            float want = tr->vec_dot(p->n, p->w + (r0 + r) * p->w_stride, p->x[c0 + c]);
            if (memcmp(&got, &want, sizeof got) != 0)
                fail_msg("%s %s n=%lld tile %dx%d: row %zu token %d: gemm %.9g != vec_dot %.9g", q3_isa_name(p->isa),
                         tr->name, (long long)p->n, nr, nc, r0 + r, c0 + c, got, want);
        }
    }
    free(out);
}

/* vec_dot_rows over rows [r0, r0 + nr) against token c equals vec_dot for every row, bits
 * included, and writes nothing past its nr outputs. */
static void check_rows(const problem *p, int r0, int nr, int c) {
    const q3_type_traits *tr = q3_type_get_isa(p->type, p->isa);
    const float sentinel = -12345.0f;
    float out[Q3_GEMM_ROWS + 4];
    for (size_t i = 0; i < sizeof out / sizeof *out; i++) out[i] = sentinel;
    tr->vec_dot_rows(p->n, p->w + r0 * p->w_stride, p->w_stride, nr, p->x[c], out);
    for (int r = 0; r < (int)(sizeof out / sizeof *out); r++) {
        if (r >= nr) {
            if (memcmp(&out[r], &sentinel, sizeof sentinel) != 0)
                fail_msg("%s %s vec_dot_rows of %d rows wrote out[%d]", q3_isa_name(p->isa), tr->name, nr, r);
            continue;
        }
        float want = tr->vec_dot(p->n, p->w + (r0 + r) * p->w_stride, p->x[c]);
        if (memcmp(&out[r], &want, sizeof want) != 0)
            fail_msg("%s %s n=%lld %d rows: row %d: vec_dot_rows %.9g != vec_dot %.9g", q3_isa_name(p->isa),
                     tr->name, (long long)p->n, nr, r0 + r, out[r], want);
    }
}

static const q3_type GEMM_TYPES[] = {
    Q3_TYPE_F32,    Q3_TYPE_F16,     Q3_TYPE_BF16,   Q3_TYPE_Q8_0,    Q3_TYPE_Q2_K,  Q3_TYPE_Q3_K,
    Q3_TYPE_Q4_K,   Q3_TYPE_Q5_K,    Q3_TYPE_Q6_K,   Q3_TYPE_IQ4_XS,  Q3_TYPE_IQ4_NL, Q3_TYPE_IQ2_XXS,
    Q3_TYPE_IQ2_XS, Q3_TYPE_IQ2_S,   Q3_TYPE_IQ3_XXS, Q3_TYPE_IQ3_S,  Q3_TYPE_IQ1_S, Q3_TYPE_IQ1_M};
#define N_GEMM_TYPES (sizeof GEMM_TYPES / sizeof GEMM_TYPES[0])

/* Every (nr, nc) edge on a few row lengths: 1, 2 (and for Q8_0 odd) blocks, and longer rows;
 * for the float types, lengths around their 16- and 64-element steps. */
static void check_type_on_isa(q3_isa isa, q3_type t) {
    const q3_type_traits *tr = q3_type_get_isa(t, isa);
    if (!tr->gemm) return;
    static const int cols[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64};
    static const int float_lengths[] = {1, 15, 16, 17, 64, 100, 129, 1000};
    int blocks[] = {1, 2, 3, 8, tr->block_size == Q3_QK ? 67 : 11};
    const int *lengths = is_float_type(t) ? float_lengths : blocks;
    size_t n_lengths = is_float_type(t) ? sizeof float_lengths / sizeof *float_lengths : sizeof blocks / sizeof *blocks;
    for (size_t b = 0; b < n_lengths; b++) {
        for (int raw = 0; raw < 2; raw++) {
            problem p;
            problem_make(&p, isa, t, (int64_t)lengths[b] * tr->block_size, raw);
            for (int nr = 1; nr <= Q3_GEMM_ROWS; nr++) check_tile(&p, Q3_GEMM_ROWS - nr, nr, 0, 5);
            for (size_t k = 0; k < sizeof cols / sizeof cols[0]; k++) {
                check_tile(&p, 0, Q3_GEMM_ROWS, Q3_GEMM_COLS - cols[k], cols[k]);
                check_tile(&p, 3, 13, 0, cols[k]);
            }
            problem_free(&p);
        }
    }
    print_message("%-6s %-4s gemm == vec_dot on every tile edge\n", q3_isa_name(isa), tr->name);
}

/* Every row count on a few row lengths, ordinary and raw (extreme) activations. */
static void check_rows_on_isa(q3_isa isa, q3_type t) {
    const q3_type_traits *tr = q3_type_get_isa(t, isa);
    if (!tr->vec_dot_rows) return;
    static const int blocks[] = {1, 2, 3, 8, 11};
    for (size_t b = 0; b < sizeof blocks / sizeof *blocks; b++) {
        for (int raw = 0; raw < 2; raw++) {
            problem p;
            problem_make(&p, isa, t, (int64_t)blocks[b] * tr->block_size, raw);
            for (int nr = 1; nr <= Q3_GEMM_ROWS; nr++)
                for (int c = 0; c < 3; c++) check_rows(&p, Q3_GEMM_ROWS - nr, nr, c);
            problem_free(&p);
        }
    }
    print_message("%-6s %-4s vec_dot_rows == vec_dot for 1..%d rows\n", q3_isa_name(isa), tr->name, Q3_GEMM_ROWS);
}

/* The rows of p (Q3_GEMM_ROWS of them) interleaved in groups of four at their unpadded length:
 * the layout the loader makes. Taking each row back out gives the original bytes. */
static uint8_t *interleaved_copy(const problem *p, size_t *row_bytes) {
    size_t rb = q3_row_bytes(p->type, p->n);
    uint8_t *x4 = xmalloc(rb * p->rows), *back = xmalloc(rb);
    for (int g = 0; g < p->rows / 4; g++) {
        q3_interleave_group(p->type, p->n, p->w + (size_t)4 * g * p->w_stride, p->w_stride, x4 + (size_t)4 * g * rb);
        for (int r = 0; r < 4; r++) {
            q3_deinterleave_row(p->type, p->n, x4 + (size_t)4 * g * rb, r, back);
            assert_memory_equal(back, p->w + (size_t)(4 * g + r) * p->w_stride, rb);
        }
    }
    free(back);
    *row_bytes = rb;
    return x4;
}

/* vec_dot_rows_x4 over groups [g0, g0 + nr / 4) of the interleaved rows equals vec_dot on the
 * original rows, bits included, and writes nothing past its nr outputs. */
static void check_rows_x4(const problem *p, const uint8_t *x4, size_t rb, int g0, int nr, int c) {
    const q3_type_traits *tr = q3_type_get_isa(p->type, p->isa);
    const float sentinel = -12345.0f;
    float out[Q3_GEMM_ROWS + 4];
    for (size_t i = 0; i < sizeof out / sizeof *out; i++) out[i] = sentinel;
    tr->vec_dot_rows_x4(p->n, x4 + (size_t)4 * g0 * rb, rb, nr, p->x[c], out);
    for (int r = 0; r < (int)(sizeof out / sizeof *out); r++) {
        if (r >= nr) {
            if (memcmp(&out[r], &sentinel, sizeof sentinel) != 0)
                fail_msg("%s %s vec_dot_rows_x4 of %d rows wrote out[%d]", q3_isa_name(p->isa), tr->name, nr, r);
            continue;
        }
        float want = tr->vec_dot(p->n, p->w + (4 * g0 + r) * p->w_stride, p->x[c]);
        if (memcmp(&out[r], &want, sizeof want) != 0)
            fail_msg("%s %s n=%lld %d rows: row %d: vec_dot_rows_x4 %.9g != vec_dot %.9g", q3_isa_name(p->isa),
                     tr->name, (long long)p->n, nr, 4 * g0 + r, out[r], want);
    }
}

/* gemm_x4 over groups [g0, g0 + nr / 4) of the interleaved rows and tokens [c0, c0 + nc)
 * equals vec_dot on the original rows for every pair, bits included, and writes nothing outside
 * its nr x nc outputs (a padded out_stride). */
static void check_gemm_x4(const problem *p, const uint8_t *x4, size_t rb, int g0, int nr, int c0, int nc) {
    const q3_type_traits *tr = q3_type_get_isa(p->type, p->isa);
    const size_t out_stride = Q3_GEMM_ROWS + 3;
    const float sentinel = -12345.0f;
    float out[(Q3_X4_COLS + 1) * (Q3_GEMM_ROWS + 3)];
    for (size_t i = 0; i < sizeof out / sizeof *out; i++) out[i] = sentinel;
    tr->gemm_x4(p->n, x4 + (size_t)4 * g0 * rb, rb, nr, p->x + c0, nc, out, out_stride);
    for (int c = 0; c <= Q3_X4_COLS; c++) {
        for (size_t r = 0; r < out_stride; r++) {
            float got = out[c * out_stride + r];
            if (c >= nc || (int)r >= nr) {
                if (memcmp(&got, &sentinel, sizeof got) != 0)
                    fail_msg("%s %s gemm_x4 wrote outside its %dx%d tile at (%zu, %d)", q3_isa_name(p->isa), tr->name,
                             nr, nc, r, c);
                continue;
            }
            float want = tr->vec_dot(p->n, p->w + (4 * g0 + r) * p->w_stride, p->x[c0 + c]);
            if (memcmp(&got, &want, sizeof got) != 0)
                fail_msg("%s %s n=%lld %d rows x %d tokens: row %zu token %d: gemm_x4 %.9g != vec_dot %.9g",
                         q3_isa_name(p->isa), tr->name, (long long)p->n, nr, nc, 4 * g0 + r, c0 + c, got, want);
        }
    }
}

static void check_rows_x4_on_isa(q3_isa isa, q3_type t) {
    const q3_type_traits *tr = q3_type_get_isa(t, isa);
    if (!tr->vec_dot_rows_x4) return;
    static const int blocks[] = {1, 2, 3, 8, 11};
    for (size_t b = 0; b < sizeof blocks / sizeof *blocks; b++) {
        for (int raw = 0; raw < 2; raw++) {
            problem p;
            problem_make(&p, isa, t, (int64_t)blocks[b] * tr->block_size, raw);
            size_t rb;
            uint8_t *x4 = interleaved_copy(&p, &rb);
            for (int nr = 4; nr <= Q3_GEMM_ROWS; nr += 4) {
                for (int c = 0; c < 3; c++) check_rows_x4(&p, x4, rb, (Q3_GEMM_ROWS - nr) / 4, nr, c);
                /* every token count, the last tile ending on the repeated token (x[63] == x[0]) */
                for (int nc = 1; nc <= Q3_X4_COLS && tr->gemm_x4; nc++) {
                    check_gemm_x4(&p, x4, rb, (Q3_GEMM_ROWS - nr) / 4, nr, 0, nc);
                    check_gemm_x4(&p, x4, rb, 0, nr, Q3_GEMM_COLS - nc, nc);
                }
            }
            free(x4);
            problem_free(&p);
        }
    }
    print_message("%-6s %-4s vec_dot_rows_x4 and gemm_x4 (1..%d tokens) == vec_dot for 4..%d interleaved rows\n",
                  q3_isa_name(isa), tr->name, Q3_X4_COLS, Q3_GEMM_ROWS);
}

static void test_rows_x4_match_vec_dot(void **state) {
    (void)state;
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        if (!q3_isa_supported((q3_isa)isa)) continue;
        for (size_t k = 0; k < N_GEMM_TYPES; k++) check_rows_x4_on_isa((q3_isa)isa, GEMM_TYPES[k]);
    }
}

static void test_rows_match_vec_dot(void **state) {
    (void)state;
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        if (!q3_isa_supported((q3_isa)isa)) continue;
        for (size_t k = 0; k < N_GEMM_TYPES; k++) check_rows_on_isa((q3_isa)isa, GEMM_TYPES[k]);
    }
}

static void test_gemm_matches_vec_dot(void **state) {
    (void)state;
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        if (!q3_isa_supported((q3_isa)isa)) continue;
        for (size_t k = 0; k < N_GEMM_TYPES; k++) check_type_on_isa((q3_isa)isa, GEMM_TYPES[k]);
    }
}

/* The scalar reference has no tile kernels; AVX-512 has them for the hot types. A gemm sits
 * only next to the vec_dot it was checked against (dot_dispatch.c drops stale ones). */
static void test_gemm_installed(void **state) {
    (void)state;
    for (int t = 0; t < Q3_TYPE_COUNT; t++) {
        const q3_type_traits *tr = q3_type_get_isa((q3_type)t, Q3_ISA_SCALAR);
        if (tr) assert_null(tr->gemm);
    }
    if (q3_isa_supported(Q3_ISA_AVX512)) {
        static const q3_type hot[] = {Q3_TYPE_Q4_K, Q3_TYPE_Q5_K, Q3_TYPE_Q6_K,   Q3_TYPE_Q8_0,  Q3_TYPE_F32,
                                      Q3_TYPE_F16,  Q3_TYPE_BF16, Q3_TYPE_IQ4_XS, Q3_TYPE_IQ4_NL};
        for (size_t k = 0; k < sizeof hot / sizeof hot[0]; k++)
            assert_non_null(q3_type_get_isa(hot[k], Q3_ISA_AVX512)->gemm);
    }
    /* the AVX2 tiles: the K-quants and the IQ4 types */
    if (q3_isa_supported(Q3_ISA_AVX2)) {
        static const q3_type avx2[] = {Q3_TYPE_Q4_K, Q3_TYPE_Q5_K, Q3_TYPE_Q6_K, Q3_TYPE_IQ4_XS, Q3_TYPE_IQ4_NL, Q3_TYPE_Q8_0};
        for (size_t k = 0; k < sizeof avx2 / sizeof avx2[0]; k++)
            assert_non_null(q3_type_get_isa(avx2[k], Q3_ISA_AVX2)->gemm);
    }
    /* and both x86 ISAs for the lattice i-quants */
    for (int isa = Q3_ISA_AVX2; isa <= Q3_ISA_AVX512; isa++)
        for (int t = 0; t < Q3_TYPE_COUNT && q3_isa_supported((q3_isa)isa); t++)
            if (is_lattice_type((q3_type)t)) assert_non_null(q3_type_get_isa((q3_type)t, (q3_isa)isa)->gemm);
    assert_ptr_equal(q3_type_get(Q3_TYPE_Q4_K)->gemm, q3_type_get_isa(Q3_TYPE_Q4_K, q3_isa_active())->gemm);
    /* so do the rows kernels: the x86 ISAs have them for decode's hot types */
    for (int isa = Q3_ISA_AVX2; isa <= Q3_ISA_AVX512; isa++) {
        if (!q3_isa_supported((q3_isa)isa)) continue;
        assert_non_null(q3_type_get_isa(Q3_TYPE_Q4_K, (q3_isa)isa)->vec_dot_rows);
        assert_non_null(q3_type_get_isa(Q3_TYPE_Q6_K, (q3_isa)isa)->vec_dot_rows);
    }
    for (int t = 0; t < Q3_TYPE_COUNT; t++) {
        const q3_type_traits *tr = q3_type_get_isa((q3_type)t, Q3_ISA_SCALAR);
        if (tr) assert_null(tr->vec_dot_rows);
    }
    /* The interleaved layouts' rows kernels: the portable reference, and each x86 ISA's own. */
    for (int isa = Q3_ISA_SCALAR; isa <= Q3_ISA_AVX512; isa++) {
        if (!q3_isa_supported((q3_isa)isa)) continue;
        assert_non_null(q3_type_get_isa(Q3_TYPE_Q4_K, (q3_isa)isa)->vec_dot_rows_x4);
        assert_non_null(q3_type_get_isa(Q3_TYPE_Q6_K, (q3_isa)isa)->vec_dot_rows_x4);
        assert_non_null(q3_type_get_isa(Q3_TYPE_Q4_K, (q3_isa)isa)->gemm_x4);
        assert_non_null(q3_type_get_isa(Q3_TYPE_Q6_K, (q3_isa)isa)->gemm_x4);
    }
}

/* ---- end to end: a small synthetic model per quantized file type ---- */

/* Every matrix a whole number of 256-wide blocks, so each file type keeps its own kernels. */
static const char SMALL_CONFIG[] =
    "{\"architectures\": [\"Qwen3MoeForCausalLM\"], \"model_type\": \"qwen3_moe\", \"hidden_size\": 256,"
    " \"head_dim\": 64, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"num_hidden_layers\": 2,"
    " \"intermediate_size\": 512, \"moe_intermediate_size\": 256, \"num_experts\": 8, \"num_experts_per_tok\": 2,"
    " \"norm_topk_prob\": true, \"decoder_sparse_step\": 1, \"mlp_only_layers\": [], \"vocab_size\": 512,"
    " \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"tie_word_embeddings\": false,"
    " \"max_position_embeddings\": 4096}";

/* Logits of every position of ids, `chunk` tokens per forward step, through a fresh cache. */
static float *run_logits(q3_model *m, const int32_t *ids, int n, int chunk) {
    q3_error e = {0};
    q3_kv_cache *kv;
    q3_runner *r;
    int V = q3_model_config(m)->vocab_size;
    assert_int_equal(q3_kv_cache_new(&kv, m, &(q3_kv_options){Q3_TYPE_F32, 16, (n + 15) / 16 + 1, 1, n + 16}, &e), 0);
    assert_int_equal(q3_runner_new(&r, m, chunk, 2, &e), 0);
    float *logits = xmalloc((size_t)n * V * sizeof(float));
    int32_t *pos = xmalloc((size_t)n * sizeof *pos), *seq = calloc((size_t)n, sizeof *seq);
    for (int i = 0; i < n; i++) pos[i] = i;
    for (int i = 0; i < n; i += chunk) {
        int len = n - i < chunk ? n - i : chunk;
        q3_batch b = {len, ids + i, pos + i, seq + i, NULL};
        if (q3_forward(r, kv, &b, logits + (size_t)i * V, &e)) fail_msg("%s", e.msg);
    }
    free(pos);
    free(seq);
    q3_runner_free(r);
    q3_kv_cache_free(kv);
    return logits;
}

static void test_prefill_equals_decode_quantized(void **state) {
    (void)state;
    q3_config c;
    q3_error e = {0};
    if (q3_config_from_json_buffer(&c, SMALL_CONFIG, sizeof SMALL_CONFIG - 1, "small", &e)) fail_msg("%s", e.msg);
    static const char *types[] = {"q4_k_m", "q5_k_m", "q6_k",  "q8_0",   "bf16",    "iq4_xs", "iq4_nl",
                                  "iq3_s",  "iq3_xxs", "iq2_s", "iq2_xs", "iq2_xxs", "iq1_m",  "iq1_s"};
    enum { N = 150 };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = (int32_t)(rng_next() % 512);
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        q3_synth_type t;
        assert_true(q3_synth_type_from_name(types[k], &t));
        /* named by the ISA: ctest runs this program twice at once (test_gemm, test_gemm_avx2) */
        char name[64];
        snprintf(name, sizeof name, "gemm-small-%s.gguf", q3_isa_name(q3_isa_active()));
        const char *path = tmp_path(0, name);
        q3_model *m = NULL;
        if (q3_synth_write(path, &c, &t, "small", NULL, NULL, &e) || q3_model_load(&m, path, NULL, &e))
            fail_msg("%s: %s", types[k], e.msg);
        int V = q3_model_config(m)->vocab_size;
        float *pre = run_logits(m, ids, N, N), *dec = run_logits(m, ids, N, 1), *chunked = run_logits(m, ids, N, 37);
        for (size_t i = 0; i < (size_t)N * V; i++)
            if (!isfinite(pre[i])) fail_msg("%s: logit %zu is %g", types[k], i, pre[i]);
        assert_memory_equal(pre, dec, (size_t)N * V * sizeof(float));
        assert_memory_equal(pre, chunked, (size_t)N * V * sizeof(float));
        print_message("%-6s prefill == decode == 37-token chunks over %d tokens\n", types[k], N);
        free(dec), free(chunked);
        q3_model_free(m);
        /* --repack: the same logits from the interleaved matrices, through every path */
        if (q3_model_load(&m, path, &(q3_load_options){.repack = true}, &e)) fail_msg("%s: %s", types[k], e.msg);
        int interleaved = m->layers[0].wq.interleaved + m->layers[0].experts[0].down.interleaved + m->lm_head.interleaved;
        float *pre_x4 = run_logits(m, ids, N, N), *dec_x4 = run_logits(m, ids, N, 1), *chunked_x4 = run_logits(m, ids, N, 3);
        assert_memory_equal(pre, pre_x4, (size_t)N * V * sizeof(float));
        assert_memory_equal(pre, dec_x4, (size_t)N * V * sizeof(float));
        assert_memory_equal(pre, chunked_x4, (size_t)N * V * sizeof(float));
        print_message("%-6s the same with --repack (%d of 3 sampled matrices interleaved)\n", types[k], interleaved);
        if (!strncmp(types[k], "q4_k", 4) && q3_type_get(Q3_TYPE_Q4_K)->vec_dot_rows_x4) assert_true(m->layers[0].wq.interleaved);
        free(pre), free(pre_x4), free(dec_x4), free(chunked_x4);
        q3_model_free(m);
        remove(path);
    }
}

int main(void) {
    rng_seed(0x2545F4914F6CDD1Dull);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_isa_coverage),
        cmocka_unit_test(test_gemm_installed),
        cmocka_unit_test(test_gemm_matches_vec_dot),
        cmocka_unit_test(test_rows_match_vec_dot),
        cmocka_unit_test(test_rows_x4_match_vec_dot),
        cmocka_unit_test(test_prefill_equals_decode_quantized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
