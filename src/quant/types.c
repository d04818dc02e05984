/* The traits table: every tensor type q3moe reads, indexed by its GGML id, with its portable
 * reference kernels. src/cpu/kernel_table.c makes one copy per instruction set with that ISA's
 * kernels put in. */
#include "quant/types.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "quant/checkpoint_quants.h"
#include "quant/float_types.h"
#include "quant/interleave.h"
#include "quant/iq_quants.h"
#include "quant/quants.h"

/* Every GGML type id with its block geometry, so a file of any llama.cpp type can be measured and
 * named; the kernels (to_float, vec_dot) are filled in for the types q3moe computes with. The
 * reference has no tile or rows kernels (gemm, vec_dot_rows NULL): the SIMD ISAs bring them; its
 * interleaved rows kernels (vec_dot_rows_x4, gemm_x4, quant/interleave.c) are the reference for
 * theirs. */
static const q3_type_traits TRAITS[Q3_TYPE_COUNT] = {
    [Q3_TYPE_F32] = {"F32", 1, 4, q3_f32_to_float, q3_f32_from_float, q3_f32_vec_dot, Q3_TYPE_F32, NULL, NULL, NULL,
                     NULL, NULL},
    [Q3_TYPE_F16] = {"F16", 1, 2, q3_f16_to_float, q3_f16_from_float, q3_f16_vec_dot, Q3_TYPE_F32, NULL, NULL, NULL,
                     NULL, NULL},
    [Q3_TYPE_BF16] = {"BF16", 1, 2, q3_bf16_to_float, q3_bf16_from_float, q3_bf16_vec_dot,
                      Q3_TYPE_F32, NULL, NULL, NULL, NULL, NULL},
    [Q3_TYPE_Q4_0] = {"Q4_0", 32, 18, q3_q4_0_to_float, q3_q4_0_from_float,
                      q3_q4_0_vec_dot, Q3_TYPE_Q8_0, NULL, NULL, NULL, NULL, NULL},
    [Q3_TYPE_Q4_1] = {"Q4_1", 32, 20, q3_q4_1_to_float, q3_q4_1_from_float,
                      q3_q4_1_vec_dot, Q3_TYPE_Q8_1, NULL, NULL, NULL, NULL, NULL},
    [Q3_TYPE_Q5_0] = {"Q5_0", 32, 22, q3_q5_0_to_float, q3_q5_0_from_float,
                      q3_q5_0_vec_dot, Q3_TYPE_Q8_0, NULL, NULL, NULL, NULL, NULL},
    [Q3_TYPE_Q5_1] = {"Q5_1", 32, 24, q3_q5_1_to_float, q3_q5_1_from_float,
                      q3_q5_1_vec_dot, Q3_TYPE_Q8_1, NULL, NULL, NULL, NULL, NULL},
    [Q3_TYPE_Q8_0] = {"Q8_0", 32, 34, q3_q8_0_to_float, q3_q8_0_from_float,
                      q3_q8_0_vec_dot, Q3_TYPE_Q8_0, NULL, q3_q8_0_quantize, NULL, NULL, NULL},
    [Q3_TYPE_Q8_1] = {"Q8_1", 32, 36, q3_q8_1_to_float, q3_q8_1_from_float,
                      q3_q8_1_vec_dot, Q3_TYPE_Q8_1, NULL, NULL, NULL, NULL, NULL},
    [Q3_TYPE_Q2_K] = {"Q2_K", 256, 84, q3_q2_k_to_float, q3_q2_k_from_float,
                      q3_q2_k_vec_dot, Q3_TYPE_Q8_K, NULL, NULL, NULL, NULL, NULL},
    [Q3_TYPE_Q3_K] = {"Q3_K", 256, 110, q3_q3_k_to_float, q3_q3_k_from_float,
                      q3_q3_k_vec_dot, Q3_TYPE_Q8_K, NULL, NULL, NULL, NULL, NULL},
    [Q3_TYPE_Q4_K] = {"Q4_K", 256, 144, q3_q4_k_to_float, q3_q4_k_from_float,
                      q3_q4_k_vec_dot, Q3_TYPE_Q8_K, NULL, NULL, NULL, q3_q4_k_vec_dot_rows_x4,
                      q3_q4_k_gemm_x4},
    [Q3_TYPE_Q5_K] = {"Q5_K", 256, 176, q3_q5_k_to_float, q3_q5_k_from_float,
                      q3_q5_k_vec_dot, Q3_TYPE_Q8_K, NULL, NULL, NULL, NULL, NULL},
    [Q3_TYPE_Q6_K] = {"Q6_K", 256, 210, q3_q6_k_to_float, q3_q6_k_from_float,
                      q3_q6_k_vec_dot, Q3_TYPE_Q8_K, NULL, NULL, NULL, q3_q6_k_vec_dot_rows_x4,
                      q3_q6_k_gemm_x4},
    [Q3_TYPE_Q8_K] = {"Q8_K", 256, 292, q3_q8_k_to_float, q3_q8_k_from_float,
                      q3_q8_k_vec_dot, Q3_TYPE_Q8_K, NULL, NULL, NULL, NULL, NULL},
    [Q3_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66, q3_iq2_xxs_to_float, q3_iq2_xxs_from_float, q3_iq2_xxs_vec_dot,
                      Q3_TYPE_Q8_K, NULL, q3_iq2_xxs_quantize, NULL, NULL, NULL},
    [Q3_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74, q3_iq2_xs_to_float, q3_iq2_xs_from_float, q3_iq2_xs_vec_dot,
                      Q3_TYPE_Q8_K, NULL, q3_iq2_xs_quantize, NULL, NULL, NULL},
    [Q3_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98, q3_iq3_xxs_to_float, q3_iq3_xxs_from_float, q3_iq3_xxs_vec_dot,
                      Q3_TYPE_Q8_K, NULL, q3_iq3_xxs_quantize, NULL, NULL, NULL},
    [Q3_TYPE_IQ1_S] = {"IQ1_S", 256, 50, q3_iq1_s_to_float, q3_iq1_s_from_float, q3_iq1_s_vec_dot,
                      Q3_TYPE_Q8_K, NULL, q3_iq1_s_quantize, NULL, NULL, NULL},
    [Q3_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18, q3_iq4_nl_to_float, q3_iq4_nl_from_float, q3_iq4_nl_vec_dot,
                      Q3_TYPE_Q8_0, NULL, q3_iq4_nl_quantize, NULL, NULL, NULL},
    [Q3_TYPE_IQ3_S] = {"IQ3_S", 256, 110, q3_iq3_s_to_float, q3_iq3_s_from_float, q3_iq3_s_vec_dot,
                      Q3_TYPE_Q8_K, NULL, q3_iq3_s_quantize, NULL, NULL, NULL},
    [Q3_TYPE_IQ2_S] = {"IQ2_S", 256, 82, q3_iq2_s_to_float, q3_iq2_s_from_float, q3_iq2_s_vec_dot,
                      Q3_TYPE_Q8_K, NULL, q3_iq2_s_quantize, NULL, NULL, NULL},
    [Q3_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136, q3_iq4_xs_to_float, q3_iq4_xs_from_float, q3_iq4_xs_vec_dot,
                      Q3_TYPE_Q8_K, NULL, q3_iq4_xs_quantize, NULL, NULL, NULL},
    [24] = {"I8", 1, 1, NULL, NULL, NULL, 24, NULL, NULL, NULL, NULL, NULL},
    [25] = {"I16", 1, 2, NULL, NULL, NULL, 25, NULL, NULL, NULL, NULL, NULL},
    [Q3_TYPE_I32] = {"I32", 1, 4, NULL, NULL, NULL, Q3_TYPE_I32, NULL, NULL, NULL, NULL, NULL},
    [27] = {"I64", 1, 8, NULL, NULL, NULL, 27, NULL, NULL, NULL, NULL, NULL},
    [28] = {"F64", 1, 8, NULL, NULL, NULL, 28, NULL, NULL, NULL, NULL, NULL},
    [Q3_TYPE_IQ1_M] = {"IQ1_M", 256, 56, q3_iq1_m_to_float, q3_iq1_m_from_float, q3_iq1_m_vec_dot,
                      Q3_TYPE_Q8_K, NULL, q3_iq1_m_quantize, NULL, NULL, NULL},
    [34] = {"TQ1_0", 256, 54, NULL, NULL, NULL, Q3_TYPE_Q8_K, NULL, NULL, NULL, NULL, NULL},
    [35] = {"TQ2_0", 256, 66, NULL, NULL, NULL, Q3_TYPE_Q8_K, NULL, NULL, NULL, NULL, NULL},
    [39] = {"MXFP4", 32, 17, NULL, NULL, NULL, Q3_TYPE_Q8_0, NULL, NULL, NULL, NULL, NULL},
    /* Published checkpoints' formats (checkpoint_quants.h): the raw safetensors dtype, and the
     * rows they are repacked into at load (never written to a file: export.c refuses them). */
    [Q3_TYPE_F8_E4M3] = {"F8_E4M3", 1, 1, NULL, NULL, NULL, Q3_TYPE_F8_E4M3, NULL, NULL, NULL, NULL, NULL},
    [Q3_TYPE_F8_E4M3_B32] = {"F8_E4M3_B32", 32, 36, q3_f8_b32_to_float, q3_f8_b32_from_float, q3_f8_b32_vec_dot,
                             Q3_TYPE_F32, NULL, NULL, NULL, NULL, NULL},
    [Q3_TYPE_GPTQ4_B32] = {"GPTQ4_B32", 32, 18, q3_gptq4_b32_to_float, q3_q4_0_from_float, q3_gptq4_b32_vec_dot,
                           Q3_TYPE_F32, NULL, NULL, NULL, NULL, NULL},
};

const q3_type_traits *q3_type_info(q3_type t) {
    return (unsigned)t < Q3_TYPE_COUNT && TRAITS[t].name ? &TRAITS[t] : NULL;
}

bool q3_type_from_name(const char *name, q3_type *out) {
    for (int t = 0; t < Q3_TYPE_COUNT; t++) {
        if (TRAITS[t].name && strcasecmp(TRAITS[t].name, name) == 0) {
            *out = (q3_type)t;
            return true;
        }
    }
    return false;
}

size_t q3_row_bytes(q3_type t, int64_t n) {
    const q3_type_traits *tr = q3_type_info(t);
    if (!tr || n % tr->block_size) return 0;
    return (size_t)(n / tr->block_size) * tr->type_size;
}

const char *q3_type_name(q3_type t) {
    static _Thread_local char buf[32];
    const q3_type_traits *tr = q3_type_info(t);
    if (tr) return tr->name;
    snprintf(buf, sizeof buf, "unknown(%d)", (int)t);
    return buf;
}
