/* The CUDA kernels' per-block arithmetic (src/cuda/block_math.h), compiled here by gcc, against
 * the CPU's reference kernels (src/quant, q3_type_get_isa(t, Q3_ISA_SCALAR)), exactly: half and
 * bfloat16 conversions over every half and many floats, the dequantized weights of random
 * Q4_K / Q5_K / Q6_K / Q8_0 blocks, activations quantized to Q8_K and Q8_0 (ties of the largest
 * magnitude included), whole-row dot products over odd numbers of blocks summed from the parts
 * the GPU's lanes take, SiLU, and the online-softmax merge. What the GPU adds on top (which lane
 * takes which part, the order terms reach the sum) is checked on a device by tests/gpu/run.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include "cpu/kernel_table.h"
#include "cpu/ops.h"
#include "cuda/block_math.h"
#include "random_blocks.h"

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Blocks of random bits (every pattern of levels and packed scales) with finite scales. */
static void random_blocks(q3_type t, void *buf, int n_blocks) {
    if (!fill_random_blocks(t, buf, n_blocks)) fail_msg("no random blocks for %s", q3_type_name(t));
}

static const q3_type WEIGHT_TYPES[] = {Q3_TYPE_Q4_K, Q3_TYPE_Q5_K, Q3_TYPE_Q6_K, Q3_TYPE_Q8_0};

static float block_value(q3_type t, const void *blocks, int e) {
    switch (t) {
    case Q3_TYPE_Q4_K: return q3hd_q4_k_value((const q3_block_q4_k *)blocks + e / 256, e % 256);
    case Q3_TYPE_Q5_K: return q3hd_q5_k_value((const q3_block_q5_k *)blocks + e / 256, e % 256);
    case Q3_TYPE_Q6_K: return q3hd_q6_k_value((const q3_block_q6_k *)blocks + e / 256, e % 256);
    default: return q3hd_q8_0_value((const q3_block_q8_0 *)blocks + e / 32, e % 32);
    }
}

static void test_half_conversions_match_base(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        assert_int_equal(bits_of(q3hd_f16_to_f32((uint16_t)h)), bits_of(q3_f16_to_f32((uint16_t)h)));
        assert_int_equal(bits_of(q3hd_bf16_to_f32((uint16_t)h)), bits_of(q3_bf16_to_f32((uint16_t)h)));
    }
    /* random bit patterns cover NaNs, infinities, subnormals and the rounding ties */
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)rng_next();
        if (i % 4 == 0) u &= 0xffffe000u | 0x1000u; /* exact half-way cases */
        float f;
        memcpy(&f, &u, 4);
        assert_int_equal(q3hd_f32_to_f16(f), q3_f32_to_f16(f));
        assert_int_equal(q3hd_f32_to_bf16(f), q3_f32_to_bf16(f));
    }
}

/* Every weight of random blocks, one at a time, against the scalar to_float of whole rows. */
static void test_dequantized_weights_match_reference(void **state) {
    (void)state;
    for (size_t t = 0; t < sizeof WEIGHT_TYPES / sizeof *WEIGHT_TYPES; t++) {
        q3_type type = WEIGHT_TYPES[t];
        const q3_type_traits *tr = q3_type_info(type);
        int n_blocks = 7, n = n_blocks * tr->block_size;
        void *blocks = malloc((size_t)n_blocks * tr->type_size);
        float *ref = malloc((size_t)n * sizeof *ref);
        for (int round = 0; round < 50; round++) {
            random_blocks(type, blocks, n_blocks);
            tr->to_float(blocks, ref, n);
            for (int e = 0; e < n; e++)
                if (bits_of(block_value(type, blocks, e)) != bits_of(ref[e]))
                    fail_msg("%s weight %d: %.9g, reference %.9g", tr->name, e, block_value(type, blocks, e), ref[e]);
        }
        free(blocks);
        free(ref);
    }
}

/* Activation rows with the cases the quantizers must agree on: zeros, a largest magnitude
 * that appears with both signs (the first one decides the sign of the scale), huge and tiny
 * ranges, and values on the rounding ties. */
static void fill_activation_case(float *x, int n, int which) {
    fill_gauss(x, n, which % 3 == 0 ? 1e-3f : which % 3 == 1 ? 1.0f : 300.0f);
    switch (which % 5) {
    case 0: memset(x, 0, (size_t)n * sizeof *x); break;
    case 1: x[3] = -9000.0f, x[200 % n] = 9000.0f; break;
    case 2: x[5] = 4.0f, x[n - 1] = -4.0f; break;
    case 3: for (int i = 0; i < n; i++) x[i] = (float)(i % 7) - 3.0f; break;
    default: break;
    }
}

static void test_quantized_activations_match_reference(void **state) {
    (void)state;
    const q3_type_traits *k = q3_type_get_isa(Q3_TYPE_Q8_K, Q3_ISA_SCALAR), *z = q3_type_get_isa(Q3_TYPE_Q8_0, Q3_ISA_SCALAR);
    const q3_type_traits *k_active = q3_type_get(Q3_TYPE_Q8_K), *z_active = q3_type_get(Q3_TYPE_Q8_0);
    float x[256];
    for (int which = 0; which < 400; which++) {
        fill_activation_case(x, 256, which);
        q3_block_q8_k ours, ref, active;
        memset(&ours, 0x55, sizeof ours);
        q3hd_quantize_q8_k(x, &ours);
        k->from_float(x, &ref, 256);
        k_active->from_float(x, &active, 256);
        assert_memory_equal(&ours, &ref, sizeof ours);
        assert_memory_equal(&ours, &active, sizeof ours);
        for (int b = 0; b < 8; b++) {
            q3_block_q8_0 o, r, a;
            q3hd_quantize_q8_0(x + 32 * b, &o);
            z->from_float(x + 32 * b, &r, 32);
            z_active->from_float(x + 32 * b, &a, 32);
            assert_memory_equal(&o, &r, sizeof o);
            assert_memory_equal(&o, &a, sizeof o);
        }
    }
}

/* Rows of blocks from real quantization (gaussian weights) and from random bits (extreme
 * levels and scales), against activation rows quantized by the CPU: the row dot products of
 * the GPU's parts, in block order, equal the scalar kernels' to the bit, over odd lengths. */
static void check_row_dots(q3_type type, bool random_bits) {
    const q3_type_traits *tr = q3_type_info(type), *scalar = q3_type_get_isa(type, Q3_ISA_SCALAR);
    const q3_type_traits *act = q3_type_info(tr->vec_dot_type);
    static const int LENGTHS[] = {1, 2, 3, 5, 8, 11, 16};
    for (size_t li = 0; li < sizeof LENGTHS / sizeof *LENGTHS; li++) {
        int nb = LENGTHS[li], n = nb * tr->block_size;
        float *wf = malloc((size_t)n * sizeof *wf), *xf = malloc((size_t)n * sizeof *xf);
        void *w = malloc((size_t)nb * tr->type_size), *x = malloc(q3_row_bytes(tr->vec_dot_type, n));
        for (int round = 0; round < 20; round++) {
            if (random_bits) {
                random_blocks(type, w, nb);
            } else {
                fill_gauss(wf, n, 0.02f);
                tr->from_float(wf, w, n);
            }
            fill_gauss(xf, n, round % 2 ? 1.0f : 40.0f);
            act->from_float(xf, x, n);
            float ours = q3hd_row_dot((int)type, w, x, nb), ref = scalar->vec_dot(n, w, x);
            if (bits_of(ours) != bits_of(ref))
                fail_msg("%s, %d blocks (%s): %.9g, scalar kernel %.9g", tr->name, nb, random_bits ? "random bits" : "gaussian",
                         ours, ref);
            if (type != Q3_TYPE_Q8_0) /* the SIMD K-quant kernels agree with the scalar one exactly too */
                assert_int_equal(bits_of(ours), bits_of(q3_type_get(type)->vec_dot(n, w, x)));
        }
        free(wf), free(xf), free(w), free(x);
    }
}

static void test_row_dots_match_scalar_kernels(void **state) {
    (void)state;
    for (size_t t = 0; t < sizeof WEIGHT_TYPES / sizeof *WEIGHT_TYPES; t++) {
        check_row_dots(WEIGHT_TYPES[t], false);
        check_row_dots(WEIGHT_TYPES[t], true);
    }
}

/* The parts of a block sum to the same integers in any order: reversed here, as lanes may. */
static void test_block_parts_are_order_free(void **state) {
    (void)state;
    q3_block_q4_k w;
    q3_block_q8_k x;
    float xf[256];
    for (int round = 0; round < 100; round++) {
        random_blocks(Q3_TYPE_Q4_K, &w, 1);
        fill_gauss(xf, 256, 3.0f);
        q3hd_quantize_q8_k(xf, &x);
        q3hd_isum fwd = {0, 0}, rev = {0, 0};
        for (int p = 0; p < Q3_KQ_PARTS; p++) {
            q3hd_isum a = q3hd_q4_k_part(&w, &x, p), b = q3hd_q4_k_part(&w, &x, Q3_KQ_PARTS - 1 - p);
            fwd.qy += a.qy, fwd.my += a.my, rev.qy += b.qy, rev.my += b.my;
        }
        assert_int_equal(fwd.qy, rev.qy);
        assert_int_equal(fwd.my, rev.my);
        /* and they are the block's sums: sum_qy over the dequantized levels */
        int32_t qy = 0;
        for (int e = 0; e < 256; e++) {
            int sc, m, c = e / 64, l = e % 32, q;
            q3hd_kscale(w.scales, e / 32, &sc, &m);
            q = (e % 64) >= 32 ? w.qs[32 * c + l] >> 4 : w.qs[32 * c + l] & 0xF;
            qy += sc * q * x.qs[e];
        }
        assert_int_equal(fwd.qy, qy);
    }
}

static void test_silu_matches_cpu(void **state) {
    (void)state;
    for (int i = 0; i < 200000; i++) {
        float x = (rng_uniform() - 0.5f) * (i % 2 ? 40.0f : 400.0f);
        assert_int_equal(bits_of(q3hd_silu(x)), bits_of(q3_silu(x)));
    }
}

/* The merge as src/cpu/attend.c's fold_row writes it, and the softmax it must build: folding a
 * row's chunks left to right gives softmax(s) . V over all of them. */
static void test_softmax_fold(void **state) {
    (void)state;
    enum { HD = 8, CHUNKS = 5, LEN = 7 };
    float s[CHUNKS * LEN], v[CHUNKS * LEN][HD];
    fill_gauss(s, CHUNKS * LEN, 3.0f);
    for (int p = 0; p < CHUNKS * LEN; p++) fill_gauss(v[p], HD, 1.0f);
    float part[CHUNKS][HD + 2];
    for (int c = 0; c < CHUNKS; c++) {
        float m = -INFINITY, sum = 0;
        for (int p = 0; p < LEN; p++) m = fmaxf(m, s[c * LEN + p]);
        memset(part[c] + 2, 0, HD * sizeof(float));
        for (int p = 0; p < LEN; p++) {
            float e = expf(s[c * LEN + p] - m);
            sum += e;
            for (int d = 0; d < HD; d++) part[c][2 + d] += e * v[c * LEN + p][d];
        }
        part[c][0] = m, part[c][1] = sum;
    }
    float st[HD + 2], ref[HD + 2];
    memcpy(st, part[0], sizeof st);
    memcpy(ref, part[0], sizeof ref);
    for (int c = 1; c < CHUNKS; c++) {
        q3hd_softmax_fold(&st[0], &st[1], st + 2, part[c][0], part[c][1], part[c] + 2, HD);
        float m = ref[0] > part[c][0] ? ref[0] : part[c][0], a = expf(ref[0] - m), b = expf(part[c][0] - m);
        ref[0] = m;
        ref[1] = ref[1] * a + part[c][1] * b;
        for (int d = 0; d < HD; d++) ref[2 + d] = ref[2 + d] * a + part[c][2 + d] * b;
        assert_memory_equal(st, ref, sizeof st);
    }
    double m = -INFINITY, sum = 0, acc[HD] = {0};
    for (int p = 0; p < CHUNKS * LEN; p++) m = fmax(m, s[p]);
    for (int p = 0; p < CHUNKS * LEN; p++) {
        double e = exp(s[p] - m);
        sum += e;
        for (int d = 0; d < HD; d++) acc[d] += e * v[p][d];
    }
    for (int d = 0; d < HD; d++) assert_true(fabs(st[2 + d] / st[1] - acc[d] / sum) < 1e-5);
}

int main(void) {
    rng_seed(0x243F6A8885A308D3ull);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_conversions_match_base),
        cmocka_unit_test(test_dequantized_weights_match_reference),
        cmocka_unit_test(test_quantized_activations_match_reference),
        cmocka_unit_test(test_row_dots_match_scalar_kernels),
        cmocka_unit_test(test_block_parts_are_order_free),
        cmocka_unit_test(test_silu_matches_cpu),
        cmocka_unit_test(test_softmax_fold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
