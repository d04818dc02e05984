/* The CPU kernels of every instruction set this CPU runs, against the scalar reference, with no
 * test framework and nothing beyond libc and libm: scripts/test_aarch64.sh cross-compiles it
 * with the kernels alone (src/quant, src/cpu/dot_*, src/cpu/vec*) and runs it under qemu-user,
 * since the whole library's dependencies are not installed for foreign architectures.
 *
 * What it checks, as tests/test_quant.c and tests/test_vec.c do natively: vec_dot on random
 * blocks (every bit pattern of levels and packed scales), exactly for the K-quants and within
 * rounding for the float types and the 32-wide formats; the activation quantizers byte for
 * byte on ordinary data and on the corner cases; the vector routines (conversions exact, value
 * mixing and scores within rounding of a double sum and row-independent, exp
 * within 1e-6, the in-place F16 and Q8_0 row kernels the float kernels' bits). Also that the ISAs the command line expects to be
 * there (--expect NAME) are detected, that those it expects to be missing (--lack NAME) are
 * not, and that the best one detected is the active one.
 *
 * Prints each failure, then "N passed, M failed"; exits non-zero when any check failed. */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cpu/vec.h"
#include "quant/blocks.h"
#include "quant/checkpoint_quants.h"
#include "cpu/kernel_table.h"
#include "quant/iq_blocks.h"
#include "../random_blocks.h"

/* ---- checks ---- */

static int passed, failed;

static bool check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool check(bool ok, const char *fmt, ...) {
    if (ok) {
        passed++;
        return true;
    }
    failed++;
    va_list ap;
    va_start(ap, fmt);
    fputs("FAIL: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    return false;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* A weight row of n elements: random bits with sane scales (quantized formats), every bit
 * pattern of levels and packed sub-block scales being fair game, or random floats. */
static void *random_weights(q3_type t, int64_t n) {
    const q3_type_traits *tr = q3_type_get_isa(t, Q3_ISA_SCALAR);
    size_t bytes = q3_row_bytes(t, n);
    uint8_t *w = xmalloc(bytes);
    if (t == Q3_TYPE_F32 || t == Q3_TYPE_F16 || t == Q3_TYPE_BF16) {
        float *wf = xmalloc((size_t)n * sizeof *wf);
        fill_gauss(wf, n, 0.05f);
        tr->from_float(wf, w, n);
        free(wf);
        return w;
    }
    if (!fill_random_blocks(t, w, n / tr->block_size)) {
        fprintf(stderr, "no random blocks for %s\n", q3_type_name(t));
        exit(1);
    }
    return w;
}

/* ---- vec_dot against the scalar reference ---- */

static const q3_type DOT_TYPES[] = {
    Q3_TYPE_F32,  Q3_TYPE_F16,  Q3_TYPE_BF16, Q3_TYPE_Q4_0, Q3_TYPE_Q4_1, Q3_TYPE_Q5_0,
    Q3_TYPE_Q5_1, Q3_TYPE_Q8_0, Q3_TYPE_Q2_K, Q3_TYPE_Q3_K, Q3_TYPE_Q4_K, Q3_TYPE_Q5_K,
    Q3_TYPE_Q6_K, Q3_TYPE_F8_E4M3_B32, Q3_TYPE_GPTQ4_B32, Q3_TYPE_IQ4_NL, Q3_TYPE_IQ4_XS, Q3_TYPE_IQ3_S,
    Q3_TYPE_IQ3_XXS, Q3_TYPE_IQ2_S, Q3_TYPE_IQ2_XS, Q3_TYPE_IQ2_XXS, Q3_TYPE_IQ1_M, Q3_TYPE_IQ1_S,
};
#define N_DOT_TYPES (sizeof DOT_TYPES / sizeof DOT_TYPES[0])

static bool is_float_type(q3_type t) { return t == Q3_TYPE_F32 || t == Q3_TYPE_F16 || t == Q3_TYPE_BF16; }

/* The K-quants and i-quants end each block with the reference's own float tail: equal to the
 * bit. */
static bool exact_across_isas(q3_type t) {
    return (t >= Q3_TYPE_Q2_K && t <= Q3_TYPE_Q6_K) || (t >= Q3_TYPE_IQ2_XXS && t <= Q3_TYPE_IQ4_XS) ||
           t == Q3_TYPE_IQ1_M;
}

/* The rounding room between two summation orders: n terms of this size, in float. */
static double float_sum_tolerance(const q3_type_traits *tr, int64_t n, const void *w, const void *act) {
    float *wd = xmalloc((size_t)n * sizeof *wd), *xd = xmalloc((size_t)n * sizeof *xd);
    tr->to_float(w, wd, n);
    q3_type_get_isa(tr->vec_dot_type, Q3_ISA_SCALAR)->to_float(act, xd, n);
    double magnitude = 0;
    for (int64_t i = 0; i < n; i++) magnitude += fabs((double)wd[i] * xd[i]);
    free(wd);
    free(xd);
    return 4e-7 * sqrt((double)n) * magnitude + 1e-30;
}

static void compare_vec_dot(q3_isa isa, q3_type t, int64_t n) {
    const q3_type_traits *ref = q3_type_get_isa(t, Q3_ISA_SCALAR), *simd = q3_type_get_isa(t, isa);
    float *x = xmalloc((size_t)n * sizeof *x);
    fill_gauss(x, n, 1.0f);
    void *w = random_weights(t, n), *act = xmalloc(q3_row_bytes(ref->vec_dot_type, n));
    q3_type_get_isa(ref->vec_dot_type, Q3_ISA_SCALAR)->from_float(x, act, n);
    float want = ref->vec_dot(n, w, act), got = simd->vec_dot(n, w, act);
    if (exact_across_isas(t)) {
        check(got == want, "%s %s n=%lld: %.9g != scalar %.9g", q3_isa_name(isa), ref->name, (long long)n,
              got, want);
    } else {
        double tol = float_sum_tolerance(ref, n, w, act);
        check(fabs(got - want) <= tol, "%s %s n=%lld: %.9g vs scalar %.9g (tolerance %.3g)",
              q3_isa_name(isa), ref->name, (long long)n, got, want, tol);
    }
    free(x);
    free(w);
    free(act);
}

static void test_vec_dot(q3_isa isa) {
    static const int64_t float_lengths[] = {1, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 1000, 4099};
    for (size_t k = 0; k < N_DOT_TYPES; k++) {
        q3_type t = DOT_TYPES[k];
        if (is_float_type(t)) {
            for (size_t l = 0; l < sizeof float_lengths / sizeof float_lengths[0]; l++)
                compare_vec_dot(isa, t, float_lengths[l]);
        } else {
            int bs = q3_type_get_isa(t, Q3_ISA_SCALAR)->block_size;
            for (int64_t blocks = 1; blocks <= 9; blocks++) compare_vec_dot(isa, t, bs * blocks);
            for (int rep = 0; rep < 20; rep++) compare_vec_dot(isa, t, bs * 64);
        }
    }
}

/* ---- quantizers: byte for byte ---- */

static const q3_type QUANT_TYPES[] = {
    Q3_TYPE_Q4_0, Q3_TYPE_Q4_1, Q3_TYPE_Q5_0, Q3_TYPE_Q5_1, Q3_TYPE_Q8_0, Q3_TYPE_Q8_1,
    Q3_TYPE_Q2_K, Q3_TYPE_Q3_K, Q3_TYPE_Q4_K, Q3_TYPE_Q5_K, Q3_TYPE_Q6_K, Q3_TYPE_Q8_K,
};

static void compare_from_float(q3_isa isa, q3_type t, const float *x, int64_t n) {
    size_t bytes = q3_row_bytes(t, n);
    uint8_t *want = xmalloc(bytes), *got = xmalloc(bytes);
    memset(want, 0xAA, bytes);
    memset(got, 0x55, bytes);
    q3_type_get_isa(t, Q3_ISA_SCALAR)->from_float(x, want, n);
    q3_type_get_isa(t, isa)->from_float(x, got, n);
    size_t first = 0;
    while (first < bytes && want[first] == got[first]) first++;
    check(first == bytes, "%s %s from_float differs from scalar at byte %zu", q3_isa_name(isa),
          q3_type_name(t), first);
    free(want);
    free(got);
}

/* Ordinary data and the corner cases: a zero block, equal magnitudes of both signs, tiny values
 * (scales that underflow fp16), integers, exact halves (rounding ties). */
static void test_quantizers(q3_isa isa) {
    const int64_t n = 256 * 32;
    float *x = xmalloc((size_t)n * sizeof *x);
    fill_gauss(x, n, 3.0f);
    for (int64_t i = 0; i < 256; i++) x[i] = 0;
    for (int64_t i = 256; i < 512; i++) x[i] = (float)((i % 9) - 4) * 0.5f;
    for (int64_t i = 512; i < 768; i++) x[i] = (i % 2 ? 1.0f : -1.0f) * (float)(i % 5);
    for (int64_t i = 768; i < 1024; i++) x[i] = 1e-30f * rng_gauss();
    for (int64_t i = 1024; i < 1280; i++) x[i] = (float)(i % 255 - 127);
    /* -127 leads every 32 values, so both quantizers scale by exactly 1: the halves are ties */
    for (int64_t i = 1280; i < 1536; i++) x[i] = i % 32 ? (i % 2 ? -0.5f : 0.5f) + (float)(i % 64 - 32) : -127;
    for (size_t f = 0; f < sizeof QUANT_TYPES / sizeof QUANT_TYPES[0]; f++)
        compare_from_float(isa, QUANT_TYPES[f], x, n);
    free(x);
}

/* The comparisons test something only when the ISA has kernels of its own. */
static void test_own_kernels(q3_isa isa) {
    static const q3_type types[] = {Q3_TYPE_Q4_K, Q3_TYPE_Q5_K, Q3_TYPE_Q6_K, Q3_TYPE_Q8_0, Q3_TYPE_IQ4_XS,
                                    Q3_TYPE_IQ2_XXS, Q3_TYPE_IQ1_M};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
        check(q3_type_get_isa(types[k], isa)->vec_dot != q3_type_get_isa(types[k], Q3_ISA_SCALAR)->vec_dot,
              "%s has no %s vec_dot of its own", q3_isa_name(isa), q3_type_name(types[k]));
    check(q3_type_get_isa(Q3_TYPE_Q8_K, isa)->from_float != q3_type_get_isa(Q3_TYPE_Q8_K, Q3_ISA_SCALAR)->from_float,
          "%s has no Q8_K quantizer of its own", q3_isa_name(isa));
}

/* ---- vector routines ---- */

#define VN 1000 /* not a multiple of any vector width: the tails run too */

static uint32_t vec_rng = 12345;
static float uniform(float lo, float hi) {
    vec_rng = vec_rng * 1664525u + 1013904223u;
    return lo + (hi - lo) * (float)(vec_rng >> 8) / (float)(1 << 24);
}

static void test_vec_routines(q3_isa isa) {
    const q3_vec_ops *v = q3_vec_isa(isa);
    if (!check(v != NULL && v != &q3_vec_scalar_ops, "%s has no vector routines of its own", q3_isa_name(isa)))
        return;
    static uint16_t h[VN], b[VN];
    static float want[VN], got[VN], x[VN], y0[VN], y[VN], e[VN], ex[VN];
    for (int i = 0; i < VN; i++) {
        h[i] = q3_f32_to_f16(uniform(-70000, 70000) * (i % 3 ? 1e-4f : 1));
        b[i] = q3_f32_to_bf16(uniform(-1e30f, 1e30f) * (i % 2 ? 1e-32f : 1));
        x[i] = uniform(-3, 3), y0[i] = uniform(-3, 3), e[i] = uniform(-80, 5);
    }
    h[0] = 0x0001, h[1] = 0x83ff, h[2] = 0x7c00, h[3] = 0x8000; /* subnormals, inf, -0 */
    q3_vec_scalar_ops.f16_to_f32(h, want, VN);
    v->f16_to_f32(h, got, VN);
    check(memcmp(want, got, sizeof want) == 0, "%s f16_to_f32 differs from scalar", q3_isa_name(isa));
    q3_vec_scalar_ops.bf16_to_f32(b, want, VN);
    v->bf16_to_f32(b, got, VN);
    check(memcmp(want, got, sizeof want) == 0, "%s bf16_to_f32 differs from scalar", q3_isa_name(isa));

    /* mix_rows: 6 outputs (a block of four and two alone) over 12 rows of 72 values (wide blocks
     * and a tail), weights from y0, rows from x */
    enum { MP = 12, MD = 72, MO = 6 };
    int bad = 0, dependent = 0;
    v->mix_rows(y, MD, y0, MP, MO, x, MP, MD);
    for (int o = 0; o < MO; o++) {
        for (int d = 0; d < MD; d++) {
            double s = 0, mag = 0;
            for (int p = 0; p < MP; p++) s += (double)y0[o * MP + p] * x[p * MD + d], mag += fabs((double)y0[o * MP + p] * x[p * MD + d]);
            bad += !(fabs(y[o * MD + d] - s) <= 1e-6 * mag + 1e-30);
        }
        v->mix_rows(got, MD, y0 + o * MP, MP, 1, x, MP, MD);
        dependent += memcmp(got, y + o * MD, MD * sizeof(float)) != 0;
    }
    check(bad == 0, "%s mix_rows: %d of %d values off", q3_isa_name(isa), bad, MO * MD);
    check(dependent == 0, "%s mix_rows: %d rows differ when computed alone", q3_isa_name(isa), dependent);

    /* dot_rows: 6 query rows of 72 (from y0) against 5 key rows (from x), each score alone too */
    enum { DK = 5 };
    bad = 0, dependent = 0;
    v->dot_rows(y, DK, y0, MO, x, DK, MD);
    for (int o = 0; o < MO; o++)
        for (int p = 0; p < DK; p++) {
            double s = 0, mag = 0;
            for (int d = 0; d < MD; d++) s += (double)y0[o * MD + d] * x[p * MD + d], mag += fabs((double)y0[o * MD + d] * x[p * MD + d]);
            bad += !(fabs(y[o * DK + p] - s) <= 1e-6 * mag + 1e-30);
            v->dot_rows(got, 1, y0 + o * MD, 1, x + p * MD, 1, MD);
            dependent += memcmp(got, y + o * DK + p, sizeof(float)) != 0;
        }
    check(bad == 0, "%s dot_rows: %d of %d scores off", q3_isa_name(isa), bad, MO * DK);
    check(dependent == 0, "%s dot_rows: %d scores differ when computed alone", q3_isa_name(isa), dependent);

    memcpy(ex, e, sizeof ex);
    float sum = v->exp_sum(ex, 2.5f, VN);
    double want_sum = 0, worst = 0;
    for (int i = 0; i < VN; i++) {
        double w = exp((double)(e[i] - 2.5f)); /* the float subtraction is part of the contract */
        want_sum += w;
        if (w > 1e-30) worst = fmax(worst, fabs(ex[i] - w) / w);
    }
    check(worst < 1e-6, "%s exp: worst relative error %.2e", q3_isa_name(isa), worst);
    check(fabs(sum - want_sum) < 1e-6 * want_sum, "%s exp_sum: relative error %.2e", q3_isa_name(isa),
          fabs(sum - want_sum) / want_sum);
}

/* The in-place row kernels (F16 and Q8_0 rows by address) against the same table's float
 * kernels on the rows the scalar to_float widens: the same bits, for rows scattered backwards
 * in memory, head sizes with and without tails, and output and row counts that do and do not
 * fill blocks. */
enum { RK_OUTS = 9, RK_KEYS = 13, RK_MAXD = 136 };

static int f16_rows_differ(const q3_vec_ops *v, int hd) {
    static uint16_t block[2 * RK_KEYS * RK_MAXD];
    static float q[RK_OUTS * RK_MAXD], w[RK_OUTS * RK_KEYS], wide[RK_KEYS * RK_MAXD], want[RK_OUTS * RK_MAXD],
        got[RK_OUTS * RK_MAXD];
    for (int i = 0; i < 2 * RK_KEYS * RK_MAXD; i++) block[i] = q3_f32_to_f16(uniform(-2, 2));
    for (int i = 0; i < RK_OUTS * RK_MAXD; i++) q[i] = uniform(-2, 2);
    for (int i = 0; i < RK_OUTS * RK_KEYS; i++) w[i] = uniform(0, 1);
    const uint16_t *rows[RK_KEYS];
    for (int p = 0; p < RK_KEYS; p++) {
        rows[p] = block + (size_t)(2 * (RK_KEYS - 1 - p)) * hd;
        q3_vec_scalar_ops.f16_to_f32(rows[p], wide + (size_t)p * hd, hd);
    }
    int bad = 0;
    for (int n_out = 1; n_out <= RK_OUTS; n_out += 4)
        for (int n = 1; n <= RK_KEYS; n += 6) {
            v->dot_rows(want, RK_KEYS, q, n_out, wide, n, hd);
            v->dot_rows_f16(got, RK_KEYS, q, n_out, rows, n, hd);
            for (int o = 0; o < n_out; o++) bad += memcmp(want + o * RK_KEYS, got + o * RK_KEYS, n * sizeof(float)) != 0;
            v->mix_rows(want, RK_MAXD, w, RK_KEYS, n_out, wide, n, hd);
            v->mix_rows_f16(got, RK_MAXD, w, RK_KEYS, n_out, rows, n, hd);
            for (int o = 0; o < n_out; o++) bad += memcmp(want + o * RK_MAXD, got + o * RK_MAXD, hd * sizeof(float)) != 0;
        }
    return bad;
}

static int q8_0_rows_differ(const q3_vec_ops *v, int hd) {
    static q3_block_q8_0 block[2 * RK_KEYS * (RK_MAXD / Q3_QK)];
    static float w[RK_OUTS * RK_KEYS], wide[RK_KEYS * RK_MAXD], want[RK_OUTS * RK_MAXD], got[RK_OUTS * RK_MAXD];
    for (size_t i = 0; i < sizeof block / sizeof *block; i++) {
        block[i].d = q3_f32_to_f16(uniform(-0.05f, 0.05f));
        for (int k = 0; k < Q3_QK; k++) block[i].qs[k] = (int8_t)(k == 0 ? -128 : k == 1 ? 127 : (int)uniform(-128, 128));
    }
    for (int i = 0; i < RK_OUTS * RK_KEYS; i++) w[i] = uniform(0, 1);
    const void *rows[RK_KEYS];
    for (int p = 0; p < RK_KEYS; p++) {
        rows[p] = block + (size_t)(2 * (RK_KEYS - 1 - p)) * (hd / Q3_QK);
        q3_type_get_isa(Q3_TYPE_Q8_0, Q3_ISA_SCALAR)->to_float(rows[p], wide + (size_t)p * hd, hd);
    }
    int bad = 0;
    for (int n_out = 1; n_out <= RK_OUTS; n_out += 4)
        for (int n = 1; n <= RK_KEYS; n += 6) {
            v->mix_rows(want, RK_MAXD, w, RK_KEYS, n_out, wide, n, hd);
            v->mix_rows_q8_0(got, RK_MAXD, w, RK_KEYS, n_out, rows, n, hd);
            for (int o = 0; o < n_out; o++) bad += memcmp(want + o * RK_MAXD, got + o * RK_MAXD, hd * sizeof(float)) != 0;
        }
    return bad;
}

static void test_row_kernels(q3_isa isa) {
    const q3_vec_ops *v = q3_vec_isa(isa);
    if (!check(v && v->dot_rows_f16 && v->mix_rows_f16 && v->mix_rows_q8_0, "%s has no in-place row kernels",
               q3_isa_name(isa)))
        return;
    static const int f16_dims[] = {128, 72, 7, 136}, q8_0_dims[] = {128, 32, 96};
    for (size_t k = 0; k < sizeof f16_dims / sizeof *f16_dims; k++) {
        int bad = f16_rows_differ(v, f16_dims[k]);
        check(bad == 0, "%s dot_rows_f16 / mix_rows_f16, hd %d: %d rows differ from the float kernels'", q3_isa_name(isa),
              f16_dims[k], bad);
    }
    for (size_t k = 0; k < sizeof q8_0_dims / sizeof *q8_0_dims; k++) {
        int bad = q8_0_rows_differ(v, q8_0_dims[k]);
        check(bad == 0, "%s mix_rows_q8_0, hd %d: %d rows differ from mix_rows'", q3_isa_name(isa), q8_0_dims[k], bad);
    }
}

/* ---- instruction set detection ---- */

static bool isa_by_name(const char *name, q3_isa *out) {
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++)
        if (strcmp(name, q3_isa_name((q3_isa)isa)) == 0) {
            *out = (q3_isa)isa;
            return true;
        }
    return false;
}

/* --expect NAME / --lack NAME pairs; returns false on a malformed command line. */
static bool test_detection(int argc, char **argv) {
    for (int i = 1; i < argc; i += 2) {
        q3_isa isa;
        bool expect = strcmp(argv[i], "--expect") == 0;
        if ((!expect && strcmp(argv[i], "--lack") != 0) || i + 1 >= argc || !isa_by_name(argv[i + 1], &isa)) {
            fprintf(stderr, "usage: %s [--expect ISA | --lack ISA]...\n", argv[0]);
            return false;
        }
        check(q3_isa_supported(isa) == expect, "%s: expected %s", argv[i + 1], expect ? "supported" : "missing");
    }
    q3_isa best = Q3_ISA_SCALAR;
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++)
        if (q3_isa_supported((q3_isa)isa)) best = (q3_isa)isa;
    if (!getenv("Q3_ISA"))
        check(q3_isa_active() == best, "active ISA %s, best supported %s", q3_isa_name(q3_isa_active()),
              q3_isa_name(best));
    return true;
}

int main(int argc, char **argv) {
    if (!test_detection(argc, argv)) return 2;
    for (int isa = Q3_ISA_SCALAR + 1; isa < Q3_ISA_COUNT; isa++) {
        if (!q3_isa_supported((q3_isa)isa)) {
            printf("%s: not supported here, skipped\n", q3_isa_name((q3_isa)isa));
            continue;
        }
        int before = failed;
        test_own_kernels((q3_isa)isa);
        test_vec_dot((q3_isa)isa);
        test_quantizers((q3_isa)isa);
        test_vec_routines((q3_isa)isa);
        test_row_kernels((q3_isa)isa);
        printf("%s: %s\n", q3_isa_name((q3_isa)isa), failed == before ? "all kernels agree with scalar" : "FAILED");
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
