/* Which kernels of the checkpoint weight types (cpu/dot_ckpt.h) each instruction set brings. */
#include "cpu/dot_ckpt.h"

void q3_dot_ckpt_install(q3_type_traits *t, q3_isa isa) {
    switch (isa) {
#if defined(__x86_64__) || defined(__i386__)
    case Q3_ISA_AVX2:
        t[Q3_TYPE_F8_E4M3_B32].vec_dot = q3_f8_b32_vec_dot_avx2;
        t[Q3_TYPE_F8_E4M3_B32].to_float = q3_f8_b32_to_float_avx2;
        t[Q3_TYPE_GPTQ4_B32].vec_dot = q3_gptq4_b32_vec_dot_avx2;
        break;
    case Q3_ISA_AVX512:
        t[Q3_TYPE_F8_E4M3_B32].vec_dot = q3_f8_b32_vec_dot_avx512;
        t[Q3_TYPE_F8_E4M3_B32].gemm = q3_f8_b32_gemm_avx512;
        t[Q3_TYPE_GPTQ4_B32].vec_dot = q3_gptq4_b32_vec_dot_avx512;
        break;
#endif
#if defined(__aarch64__)
    case Q3_ISA_NEON:
        t[Q3_TYPE_F8_E4M3_B32].vec_dot = q3_f8_b32_vec_dot_neon;
        t[Q3_TYPE_GPTQ4_B32].vec_dot = q3_gptq4_b32_vec_dot_neon;
        break;
#endif
    default: break;
    }
}
