/* The vector routines of every instruction set this CPU runs against the portable versions and
 * against double-precision math: conversions exact, axpy within one rounding, exp within a few
 * ulp (its sums within 1e-6 relative). */
#include <math.h>
#include "base/half.h"
#include "cpu/vec.h"
#include "quant/types.h"
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

static void test_axpy_and_exp(void **state) {
    (void)state;
    float x[N], y0[N], y[N], e[N];
    for (int i = 0; i < N; i++) x[i] = uniform(-3, 3), y0[i] = uniform(-3, 3), e[i] = uniform(-80, 5);
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        const q3_vec_ops *v = q3_vec_isa(isa);
        if (!v) continue;
        memcpy(y, y0, sizeof y);
        v->axpy(y, 0.37f, x, N);
        for (int i = 0; i < N; i++) assert_true(fabs(y[i] - (y0[i] + 0.37 * x[i])) <= 1e-6 * (fabs(y0[i]) + fabs(x[i]) + 1));
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
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_conversions), cmocka_unit_test(test_axpy_and_exp)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
