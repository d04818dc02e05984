/* The vector routines of every instruction set this CPU runs against the portable versions and
 * against double-precision math: conversions exact, value mixing within float rounding of a
 * double sum and independent of the rows beside it, exp within a few ulp (its sums within 1e-6
 * relative). */
#include <math.h>
#include "base/half.h"
#include "cpu/vec.h"
#include "cpu/kernel_table.h"
#include "quant/blocks.h"
#include "quant/types.h"
#include "isa_coverage.h"
#include "testutil.h"

#define N 1000 /* not a multiple of any vector width: the tails run too */

static uint32_t rng = 12345;
static float uniform(float lo, float hi) {
    rng = rng * 1664525u + 1013904223u;
    return lo + (hi - lo) * (float)(rng >> 8) / (float)(1 << 24);
}

static void test_conversions(void **state) {
    (void)state;
    uint16_t h[N], b[N];
    float want[N], got[N];
    for (int i = 0; i < N; i++) {
        h[i] = q3_f32_to_f16(uniform(-70000, 70000) * (i % 3 ? 1e-4f : 1));
        b[i] = q3_f32_to_bf16(uniform(-1e30f, 1e30f) * (i % 2 ? 1e-32f : 1));
    }
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        const q3_vec_ops *v = q3_vec_isa(isa);
        if (!v) continue;
        q3_vec_scalar_ops.f16_to_f32(h, want, N);
        v->f16_to_f32(h, got, N);
        assert_memory_equal(want, got, sizeof want);
        q3_vec_scalar_ops.bf16_to_f32(b, want, N);
        v->bf16_to_f32(b, got, N);
        assert_memory_equal(want, got, sizeof want);
        printf("  %s conversions: exact\n", q3_isa_name((q3_isa)isa));
    }
}

/* mix_rows for head sizes that take the wide blocks and the tails, and output counts that do
 * and do not fill blocks of four: against a double sum, and each output row computed alone must
 * give the same bits as computed beside the others. */
static void test_mix_rows(void **state) {
    (void)state;
    enum { P = 37, OUTS = 19, STRIDE = 41, MAXD = 200 };
    static float w[OUTS * STRIDE], v[P * MAXD], out[OUTS * (MAXD + 3)], one[MAXD + 3];
    for (int i = 0; i < OUTS * STRIDE; i++) w[i] = uniform(0, 1);
    for (int i = 0; i < P * MAXD; i++) v[i] = uniform(-2, 2);
    const int dims[] = {128, 64, 200, 7, 48};
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        const q3_vec_ops *vo = q3_vec_isa(isa);
        if (!vo) continue;
        for (size_t k = 0; k < sizeof dims / sizeof *dims; k++) {
            int hd = dims[k];
            size_t os = (size_t)hd + 3;
            for (int n_out = 1; n_out <= OUTS; n_out += 3) {
                vo->mix_rows(out, os, w, STRIDE, n_out, v, P, hd);
                for (int o = 0; o < n_out; o++) {
                    for (int d = 0; d < hd; d++) {
                        double want = 0, mag = 0;
                        for (int p = 0; p < P; p++) {
                            want += (double)w[o * STRIDE + p] * v[p * hd + d];
                            mag += fabs((double)w[o * STRIDE + p] * v[p * hd + d]);
                        }
                        assert_true(fabs(out[o * os + d] - want) <= 1e-6 * mag + 1e-30);
                    }
                    vo->mix_rows(one, os, w + o * STRIDE, STRIDE, 1, v, P, hd);
                    assert_memory_equal(one, out + o * os, (size_t)hd * sizeof(float));
                }
            }
        }
        printf("  %s mix_rows: within rounding, rows independent\n", q3_isa_name((q3_isa)isa));
    }
}

/* dot_rows the same way: against a double sum, and each score alone equal to it beside others. */
static void test_dot_rows(void **state) {
    (void)state;
    enum { OUTS = 11, KEYS = 19, MAXD = 200 };
    static float q[OUTS * MAXD], k[KEYS * MAXD], out[OUTS * (KEYS + 2)], one[4];
    for (int i = 0; i < OUTS * MAXD; i++) q[i] = uniform(-2, 2);
    for (int i = 0; i < KEYS * MAXD; i++) k[i] = uniform(-2, 2);
    const int dims[] = {128, 64, 200, 7, 48};
    size_t os = KEYS + 2;
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        const q3_vec_ops *vo = q3_vec_isa(isa);
        if (!vo) continue;
        for (size_t t = 0; t < sizeof dims / sizeof *dims; t++) {
            int hd = dims[t];
            for (int n_out = 1; n_out <= OUTS; n_out += 3)
                for (int n = 1; n <= KEYS; n += 6) {
                    vo->dot_rows(out, os, q, n_out, k, n, hd);
                    for (int o = 0; o < n_out; o++)
                        for (int p = 0; p < n; p++) {
                            double want = 0, mag = 0;
                            for (int d = 0; d < hd; d++) {
                                want += (double)q[o * hd + d] * k[p * hd + d];
                                mag += fabs((double)q[o * hd + d] * k[p * hd + d]);
                            }
                            assert_true(fabs(out[o * os + p] - want) <= 1e-6 * mag + 1e-30);
                            vo->dot_rows(one, 1, q + o * hd, 1, k + p * hd, 1, hd);
                            assert_memory_equal(one, out + o * os + p, sizeof(float));
                        }
                }
        }
        printf("  %s dot_rows: within rounding, scores independent\n", q3_isa_name((q3_isa)isa));
    }
}

/* The F16 row kernels against the same table's float kernels on the widened rows: the same bits,
 * for rows scattered in memory (every third row of a block, backwards, as a paged cache's runs
 * may lie), head sizes with and without tails, and counts that do and do not fill blocks. */
static void test_f16_rows(void **state) {
    (void)state;
    enum { OUTS = 19, KEYS = 37, MAXD = 200 };
    static uint16_t block[3 * KEYS * MAXD];
    static float q[OUTS * MAXD], w[OUTS * KEYS], wide[KEYS * MAXD], want[OUTS * MAXD], got[OUTS * MAXD];
    for (int i = 0; i < 3 * KEYS * MAXD; i++) block[i] = q3_f32_to_f16(uniform(-2, 2));
    for (int i = 0; i < OUTS * MAXD; i++) q[i] = uniform(-2, 2);
    for (int i = 0; i < OUTS * KEYS; i++) w[i] = uniform(0, 1);
    const int dims[] = {128, 64, 200, 7, 48};
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        const q3_vec_ops *vo = q3_vec_isa(isa);
        if (!vo || !vo->dot_rows_f16) continue;
        for (size_t t = 0; t < sizeof dims / sizeof *dims; t++) {
            int hd = dims[t];
            const uint16_t *rows[KEYS];
            for (int p = 0; p < KEYS; p++) {
                rows[p] = block + (size_t)(3 * (KEYS - 1 - p)) * hd;
                q3_vec_scalar_ops.f16_to_f32(rows[p], wide + (size_t)p * hd, hd);
            }
            for (int n_out = 1; n_out <= OUTS; n_out += 3)
                for (int n = 1; n <= KEYS; n += 6) {
                    vo->dot_rows(want, KEYS, q, n_out, wide, n, hd);
                    vo->dot_rows_f16(got, KEYS, q, n_out, rows, n, hd);
                    for (int o = 0; o < n_out; o++) assert_memory_equal(want + o * KEYS, got + o * KEYS, n * sizeof(float));
                    vo->mix_rows(want, MAXD, w, KEYS, n_out, wide, n, hd);
                    vo->mix_rows_f16(got, MAXD, w, KEYS, n_out, rows, n, hd);
                    for (int o = 0; o < n_out; o++) assert_memory_equal(want + o * MAXD, got + o * MAXD, hd * sizeof(float));
                }
        }
        printf("  %s dot_rows_f16, mix_rows_f16: the float kernels' bits\n", q3_isa_name((q3_isa)isa));
    }
}

/* mix_rows_q8_0 against the same table's mix_rows on the rows Q8_0's scalar to_float gives:
 * the same bits, for scattered rows, extreme levels (-128, 127) and scales of either sign. */
static void test_q8_0_rows(void **state) {
    (void)state;
    enum { OUTS = 19, KEYS = 37, MAXB = 6 };
    static q3_block_q8_0 block[2 * KEYS * MAXB];
    static float w[OUTS * KEYS], wide[KEYS * MAXB * Q3_QK], want[OUTS * MAXB * Q3_QK], got[OUTS * MAXB * Q3_QK];
    for (int i = 0; i < 2 * KEYS * MAXB; i++) {
        block[i].d = q3_f32_to_f16(uniform(-0.05f, 0.05f));
        for (int k = 0; k < Q3_QK; k++) block[i].qs[k] = (int8_t)(k == 0 ? -128 : k == 1 ? 127 : (int)uniform(-128, 128));
    }
    for (int i = 0; i < OUTS * KEYS; i++) w[i] = uniform(0, 1);
    const int dims[] = {128, 64, 192, 32};
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        const q3_vec_ops *vo = q3_vec_isa(isa);
        if (!vo || !vo->mix_rows_q8_0) continue;
        for (size_t t = 0; t < sizeof dims / sizeof *dims; t++) {
            int hd = dims[t], os = MAXB * Q3_QK;
            const void *rows[KEYS];
            for (int p = 0; p < KEYS; p++) {
                rows[p] = block + (size_t)(2 * (KEYS - 1 - p)) * (hd / Q3_QK);
                q3_type_get_isa(Q3_TYPE_Q8_0, Q3_ISA_SCALAR)->to_float(rows[p], wide + (size_t)p * hd, hd);
            }
            for (int n_out = 1; n_out <= OUTS; n_out += 3)
                for (int n = 1; n <= KEYS; n += 6) {
                    vo->mix_rows(want, os, w, KEYS, n_out, wide, n, hd);
                    vo->mix_rows_q8_0(got, os, w, KEYS, n_out, rows, n, hd);
                    for (int o = 0; o < n_out; o++) assert_memory_equal(want + o * os, got + o * os, hd * sizeof(float));
                }
        }
        printf("  %s mix_rows_q8_0: mix_rows' bits on the dequantized rows\n", q3_isa_name((q3_isa)isa));
    }
}

static void test_exp(void **state) {
    (void)state;
    float e[N];
    for (int i = 0; i < N; i++) e[i] = uniform(-80, 5);
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        const q3_vec_ops *v = q3_vec_isa(isa);
        if (!v) continue;
        float ex[N];
        memcpy(ex, e, sizeof ex);
        double want_sum = 0, worst = 0;
        float sum = v->exp_sum(ex, 2.5f, N);
        for (int i = 0; i < N; i++) {
            double want = exp((double)(e[i] - 2.5f)); /* the float subtraction is part of the contract */
            want_sum += want;
            if (want > 1e-30) worst = fmax(worst, fabs(ex[i] - want) / want);
        }
        printf("  %s exp: worst relative error %.2e, sum error %.2e\n", q3_isa_name((q3_isa)isa), worst,
               fabs(sum - want_sum) / want_sum);
        assert_true(worst < 1e-6);
        assert_true(fabs(sum - want_sum) < 1e-6 * want_sum);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_isa_coverage), cmocka_unit_test(test_conversions),
                                       cmocka_unit_test(test_mix_rows), cmocka_unit_test(test_dot_rows),
                                       cmocka_unit_test(test_f16_rows), cmocka_unit_test(test_q8_0_rows),
                                       cmocka_unit_test(test_exp)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
