/* The weight types published checkpoints are repacked into (quant/checkpoint_quants.h): e4m3
 * decoding against the format's definition, the repacking of FP8 block scales and GPTQ's packed
 * nibbles against straightforward dequantization written here, and every ISA's kernels against
 * the scalar ones. */
#include <math.h>
#include "cpu/kernel_table.h"
#include "quant/blocks.h"
#include "quant/checkpoint_quants.h"
#include "testutil.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float uniform(void) { return (float)(next_u32() & 0xFFFFFF) / (float)0x1000000; }

/* e4m3 as the OCP FP8 specification defines it: bias 7, subnormals at exponent 0, no infinity. */
static float e4m3_value(uint8_t b) {
    int e = (b >> 3) & 15, m = b & 7;
    float v = e ? ldexpf(1.0f + m / 8.0f, e - 7) : ldexpf(m / 8.0f, -6);
    return b & 0x80 ? -v : v;
}

static void test_e4m3_decoding(void **state) {
    (void)state;
    q3_block_f8_b32 b = {.d = 256.0f};
    float out[32];
    for (int base = 0; base < 256; base += 32) {
        for (int j = 0; j < 32; j++) b.q[j] = (uint8_t)(base + j);
        q3_type_get_isa(Q3_TYPE_F8_E4M3_B32, Q3_ISA_SCALAR)->to_float(&b, out, 32);
        for (int j = 0; j < 32; j++) {
            if (((base + j) & 0x7f) == 0x7f) continue; /* NaN: refused at load */
            if (out[j] != e4m3_value((uint8_t)(base + j)))
                fail_msg("e4m3 0x%02x: %g, want %g", base + j, out[j], e4m3_value((uint8_t)(base + j)));
        }
    }
}

/* An FP8 tensor whose shape is not a multiple of its 128x128 scale blocks (the checkpoint's
 * last block row and column are partial). */
static void check_fp8_repack(int64_t rows, int64_t cols, int64_t br, int64_t bc) {
    int64_t srows = (rows + br - 1) / br, scols = (cols + bc - 1) / bc;
    uint8_t *w = malloc((size_t)(rows * cols));
    float *s = malloc((size_t)(srows * scols) * sizeof *s), *row = malloc((size_t)cols * sizeof *row);
    void *packed = malloc(q3_row_bytes(Q3_TYPE_F8_E4M3_B32, cols) * (size_t)rows);
    for (int64_t i = 0; i < rows * cols; i++) {
        w[i] = (uint8_t)next_u32();
        if ((w[i] & 0x7f) == 0x7f) w[i] = 0x3c;
    }
    for (int64_t i = 0; i < srows * scols; i++) s[i] = 1e-3f * (1 + uniform());
    int64_t bad;
    assert_true(q3_fp8_repack(w, s, rows, cols, br, bc, packed, &bad));
    const q3_type_traits *tr = q3_type_get(Q3_TYPE_F8_E4M3_B32);
    for (int64_t r = 0; r < rows; r++) {
        tr->to_float((const char *)packed + r * q3_row_bytes(Q3_TYPE_F8_E4M3_B32, cols), row, cols);
        for (int64_t c = 0; c < cols; c++) {
            float want = e4m3_value(w[r * cols + c]) * s[(r / br) * scols + c / bc];
            if (row[c] != want) fail_msg("fp8 [%lld, %lld]: %g, want %g", (long long)r, (long long)c, row[c], want);
        }
    }
    w[5] = 0xff;
    assert_false(q3_fp8_repack(w, s, rows, cols, br, bc, packed, &bad));
    assert_int_equal(bad, 5);
    free(w), free(s), free(row), free(packed);
}

static void test_fp8_repack(void **state) {
    (void)state;
    check_fp8_repack(200, 96, 128, 128);
    check_fp8_repack(130, 288, 128, 128);
    check_fp8_repack(64, 64, 64, 32);
}

/* GPTQ packing written out element by element: input i of output o in bits 4 (i % 8) of
 * qweight[i / 8][o]; the zero of (group g, output o) in bits 4 (o % 8) of qzeros[g][o / 8]. */
static void check_gptq_repack(int64_t in, int64_t out, int64_t group, int zero_offset) {
    int64_t groups = in / group;
    int32_t *qw = calloc((size_t)(in / 8 * out), 4), *qz = calloc((size_t)(groups * out / 8), 4);
    uint16_t *sc = malloc((size_t)(groups * out) * 2);
    uint8_t *q = malloc((size_t)(in * out));
    for (int64_t i = 0; i < in; i++)
        for (int64_t o = 0; o < out; o++) {
            q[i * out + o] = next_u32() & 15;
            qw[(i / 8) * out + o] = (int32_t)((uint32_t)qw[(i / 8) * out + o] | (uint32_t)q[i * out + o] << (4 * (i % 8)));
        }
    for (int64_t g = 0; g < groups; g++)
        for (int64_t o = 0; o < out; o++) {
            sc[g * out + o] = q3_f32_to_f16(0.01f * (1 + uniform()));
            qz[g * (out / 8) + o / 8] = (int32_t)((uint32_t)qz[g * (out / 8) + o / 8] | (uint32_t)(8 - zero_offset) << (4 * (o % 8)));
        }
    void *packed = malloc(q3_row_bytes(Q3_TYPE_GPTQ4_B32, in) * (size_t)out);
    int64_t bg, bo;
    assert_true(q3_gptq4_repack(qw, qz, sc, in, out, group, zero_offset, packed, &bg, &bo));
    float *row = malloc((size_t)in * sizeof *row);
    for (int64_t o = 0; o < out; o++) {
        q3_type_get(Q3_TYPE_GPTQ4_B32)->to_float((const char *)packed + o * q3_row_bytes(Q3_TYPE_GPTQ4_B32, in), row, in);
        for (int64_t i = 0; i < in; i++) {
            float want = q3_f16_to_f32(sc[(i / group) * out + o]) * (float)(q[i * out + o] - 8);
            if (row[i] != want) fail_msg("gptq [%lld, %lld]: %g, want %g", (long long)o, (long long)i, row[i], want);
        }
    }
    qz[0] = (int32_t)((uint32_t)qz[0] + (1u << 4)); /* output 1 of group 0: an asymmetric zero */
    assert_false(q3_gptq4_repack(qw, qz, sc, in, out, group, zero_offset, packed, &bg, &bo));
    assert_int_equal(bg, 0);
    assert_int_equal(bo, 1);
    free(qw), free(qz), free(sc), free(q), free(packed), free(row);
}

static void test_gptq_repack(void **state) {
    (void)state;
    check_gptq_repack(256, 16, 128, 1);
    check_gptq_repack(384, 24, 128, 0);
    check_gptq_repack(96, 8, 32, 1);
}

/* Random blocks: FP8 with every byte but NaN, GPTQ with every nibble, sane scales. */
static void *random_row(q3_type t, int64_t n) {
    size_t bytes = q3_row_bytes(t, n);
    uint8_t *w = malloc(bytes);
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)next_u32();
    for (int64_t b = 0; b < n / 32; b++) {
        if (t == Q3_TYPE_F8_E4M3_B32) {
            q3_block_f8_b32 *blk = (q3_block_f8_b32 *)w + b;
            blk->d = 0.05f * (1 + uniform());
            for (int j = 0; j < 32; j++)
                if ((blk->q[j] & 0x7f) == 0x7f) blk->q[j] ^= 1;
        } else {
            ((q3_block_q4_0 *)w)[b].d = q3_f32_to_f16(0.01f * (1 + uniform()));
        }
    }
    return w;
}

static void test_isas_agree_with_scalar(void **state) {
    (void)state;
    static const q3_type types[] = {Q3_TYPE_F8_E4M3_B32, Q3_TYPE_GPTQ4_B32};
    for (int isa = Q3_ISA_AVX2; isa < Q3_ISA_COUNT; isa++) {
        if (!q3_isa_supported((q3_isa)isa)) {
            print_message("%s: not supported here, skipped\n", q3_isa_name((q3_isa)isa));
            continue;
        }
        for (size_t k = 0; k < 2; k++)
            for (int64_t blocks = 1; blocks <= 70; blocks += 3) {
                int64_t n = 32 * blocks;
                const q3_type_traits *ref = q3_type_get_isa(types[k], Q3_ISA_SCALAR), *simd = q3_type_get_isa(types[k], (q3_isa)isa);
                void *w = random_row(types[k], n);
                float *x = malloc((size_t)n * 4), *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
                double magnitude = 0;
                for (int64_t i = 0; i < n; i++) x[i] = 2 * uniform() - 1;
                ref->to_float(w, a, n);
                simd->to_float(w, b, n);
                for (int64_t i = 0; i < n; i++) {
                    magnitude += fabs((double)a[i] * x[i]);
                    if (a[i] != b[i]) fail_msg("%s %s to_float [%lld]: %g vs %g", q3_isa_name((q3_isa)isa), ref->name, (long long)i, b[i], a[i]);
                }
                float want = ref->vec_dot(n, w, x), got = simd->vec_dot(n, w, x);
                if (fabs(got - want) > 4e-7 * sqrt((double)n) * magnitude + 1e-30)
                    fail_msg("%s %s n=%lld: %.9g vs scalar %.9g", q3_isa_name((q3_isa)isa), ref->name, (long long)n, got, want);
                free(w), free(x), free(a), free(b);
            }
        print_message("%s: FP8 and GPTQ kernels agree with scalar\n", q3_isa_name((q3_isa)isa));
    }
}

/* Where an ISA brings a tile kernel for FP8 rows, every (row, token) equals its vec_dot to the
 * bit, on odd and even block counts and every tile edge. */
static void test_fp8_gemm_matches_vec_dot(void **state) {
    (void)state;
    static const int64_t blocks[] = {1, 2, 3, 8, 33};
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        const q3_type_traits *tr = q3_type_get_isa(Q3_TYPE_F8_E4M3_B32, (q3_isa)isa);
        if (!tr || !tr->gemm) continue;
        for (size_t k = 0; k < sizeof blocks / sizeof *blocks; k++) {
            int64_t n = 32 * blocks[k];
            size_t rb = q3_row_bytes(Q3_TYPE_F8_E4M3_B32, n);
            void *w = random_row(Q3_TYPE_F8_E4M3_B32, n * Q3_GEMM_ROWS);
            float *xs = malloc((size_t)(n * 5) * sizeof *xs), out[Q3_GEMM_ROWS * 5];
            const void *x[5];
            for (int64_t i = 0; i < n * 5; i++) xs[i] = 2 * uniform() - 1;
            for (int c = 0; c < 5; c++) x[c] = xs + c * n;
            for (int nr = 1; nr <= Q3_GEMM_ROWS; nr++)
                for (int nc = 1; nc <= 5; nc++) {
                    tr->gemm(n, w, rb, nr, x, nc, out, Q3_GEMM_ROWS);
                    for (int r = 0; r < nr; r++)
                        for (int c = 0; c < nc; c++) {
                            float want = tr->vec_dot(n, (const char *)w + r * rb, x[c]);
                            if (out[c * Q3_GEMM_ROWS + r] != want)
                                fail_msg("%s gemm n=%lld [%d, %d] of %dx%d: %.9g != vec_dot %.9g", q3_isa_name((q3_isa)isa),
                                         (long long)n, r, c, nr, nc, out[c * Q3_GEMM_ROWS + r], want);
                        }
                }
            free(w), free(xs);
        }
        print_message("%s: FP8 tiles equal vec_dot\n", q3_isa_name((q3_isa)isa));
    }
}

/* from_float (test and benchmark data) keeps each weight within half an e4m3 step. */
static void test_fp8_from_float(void **state) {
    (void)state;
    float x[256], y[256];
    for (int i = 0; i < 256; i++) x[i] = (2 * uniform() - 1) * (i % 32 == 0 ? 10.0f : 1.0f);
    q3_block_f8_b32 b[8];
    q3_type_get_isa(Q3_TYPE_F8_E4M3_B32, Q3_ISA_SCALAR)->from_float(x, b, 256);
    q3_type_get_isa(Q3_TYPE_F8_E4M3_B32, Q3_ISA_SCALAR)->to_float(b, y, 256);
    for (int i = 0; i < 256; i++) assert_true(fabsf(y[i] - x[i]) <= fabsf(x[i]) / 16 + b[i / 32].d / 256 * 0x1p-9f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e4m3_decoding),  cmocka_unit_test(test_fp8_repack),
        cmocka_unit_test(test_gptq_repack),    cmocka_unit_test(test_isas_agree_with_scalar),
        cmocka_unit_test(test_fp8_from_float), cmocka_unit_test(test_fp8_gemm_matches_vec_dot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
