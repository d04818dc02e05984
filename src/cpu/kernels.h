/* The list of every SIMD type kernel: which instruction set has which kernel of which type. One
 * X-macro line per kernel, X(isa, TYPE, type, kind), names the function q3_<type>_<kind>_<isa>
 * (q3_q4_k_vec_dot_avx2) and the traits slot it fills (table[Q3_TYPE_<TYPE>].<kind>). From this
 * list dot.h declares the functions and dot_dispatch.c installs them, so a new kernel is its
 * function plus one line here.
 *
 * kind is one of the q3_type_traits slots (quant/types.h): vec_dot, vec_dot_rows,
 * vec_dot_rows_x4, gemm_x4, from_float, to_float, gemm.
 * The x86 list is built on x86 and the Arm list on AArch64: the other architecture's files
 * compile to nothing there, so only this build's list may be installed. Within a list, the order
 * of ISAs is the order of installation (each ISA starts from the table of the one below). */
#ifndef Q3_CPU_KERNELS_H
#define Q3_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* The ISA enum value (cpu/kernel_table.h) of each kernel-name suffix. */
#define Q3_ISA_ID_avx2 Q3_ISA_AVX2
#define Q3_ISA_ID_avx512 Q3_ISA_AVX512
#define Q3_ISA_ID_neon Q3_ISA_NEON
#define Q3_ISA_ID_dotprod Q3_ISA_DOTPROD

/* AVX2 + FMA + F16C: *_avx2.c. AVX-512 F/BW/VL/DQ + VNNI: *_avx512.c. */
#define Q3_KERNELS_X86(X)                   \
    X(avx2, F16, f16, to_float)             \
    X(avx2, BF16, bf16, to_float)           \
    X(avx2, F32, f32, vec_dot)              \
    X(avx2, F16, f16, vec_dot)              \
    X(avx2, BF16, bf16, vec_dot)            \
    X(avx2, Q8_0, q8_0, vec_dot)            \
    X(avx2, Q4_0, q4_0, vec_dot)            \
    X(avx2, Q4_1, q4_1, vec_dot)            \
    X(avx2, Q5_0, q5_0, vec_dot)            \
    X(avx2, Q5_1, q5_1, vec_dot)            \
    X(avx2, Q4_K, q4_k, vec_dot)            \
    X(avx2, Q5_K, q5_k, vec_dot)            \
    X(avx2, Q6_K, q6_k, vec_dot)            \
    X(avx2, Q2_K, q2_k, vec_dot)            \
    X(avx2, Q3_K, q3_k, vec_dot)            \
    X(avx2, Q4_K, q4_k, vec_dot_rows)       \
    X(avx2, Q6_K, q6_k, vec_dot_rows)       \
    X(avx2, Q4_K, q4_k, vec_dot_rows_x4)    \
    X(avx2, Q4_K, q4_k, gemm_x4)            \
    X(avx2, Q6_K, q6_k, vec_dot_rows_x4)    \
    X(avx2, Q6_K, q6_k, gemm_x4)            \
    X(avx2, Q8_0, q8_0, from_float)         \
    X(avx2, Q8_0, q8_0, to_float)           \
    X(avx2, Q8_K, q8_k, from_float)         \
    X(avx2, Q4_K, q4_k, gemm)               \
    X(avx2, Q5_K, q5_k, gemm)               \
    X(avx2, Q6_K, q6_k, gemm)               \
    X(avx2, IQ4_XS, iq4_xs, gemm)           \
    X(avx2, IQ4_NL, iq4_nl, gemm)           \
    X(avx2, Q8_0, q8_0, gemm)               \
    X(avx2, IQ2_XXS, iq2_xxs, gemm)         \
    X(avx2, IQ2_XS, iq2_xs, gemm)           \
    X(avx2, IQ2_S, iq2_s, gemm)             \
    X(avx2, IQ3_XXS, iq3_xxs, gemm)         \
    X(avx2, IQ3_S, iq3_s, gemm)             \
    X(avx2, IQ1_S, iq1_s, gemm)             \
    X(avx2, IQ1_M, iq1_m, gemm)             \
    X(avx512, F16, f16, to_float)           \
    X(avx512, BF16, bf16, to_float)         \
    X(avx512, F32, f32, vec_dot)            \
    X(avx512, F16, f16, vec_dot)            \
    X(avx512, BF16, bf16, vec_dot)          \
    X(avx512, Q8_0, q8_0, vec_dot)          \
    X(avx512, Q4_0, q4_0, vec_dot)          \
    X(avx512, Q4_1, q4_1, vec_dot)          \
    X(avx512, Q5_0, q5_0, vec_dot)          \
    X(avx512, Q5_1, q5_1, vec_dot)          \
    X(avx512, Q4_K, q4_k, vec_dot)          \
    X(avx512, Q5_K, q5_k, vec_dot)          \
    X(avx512, Q6_K, q6_k, vec_dot)          \
    X(avx512, Q2_K, q2_k, vec_dot)          \
    X(avx512, Q3_K, q3_k, vec_dot)          \
    X(avx512, Q4_K, q4_k, vec_dot_rows)     \
    X(avx512, Q6_K, q6_k, vec_dot_rows)     \
    X(avx512, Q4_K, q4_k, vec_dot_rows_x4)  \
    X(avx512, Q4_K, q4_k, gemm_x4)          \
    X(avx512, Q6_K, q6_k, vec_dot_rows_x4)  \
    X(avx512, Q6_K, q6_k, gemm_x4)          \
    X(avx512, Q8_0, q8_0, from_float)       \
    X(avx512, Q8_0, q8_0, to_float)         \
    X(avx512, Q8_K, q8_k, from_float)       \
    X(avx512, Q4_K, q4_k, gemm)             \
    X(avx512, Q5_K, q5_k, gemm)             \
    X(avx512, Q6_K, q6_k, gemm)             \
    X(avx512, IQ4_XS, iq4_xs, gemm)         \
    X(avx512, IQ4_NL, iq4_nl, gemm)         \
    X(avx512, IQ2_XXS, iq2_xxs, gemm)       \
    X(avx512, IQ2_XS, iq2_xs, gemm)         \
    X(avx512, IQ2_S, iq2_s, gemm)           \
    X(avx512, IQ3_XXS, iq3_xxs, gemm)       \
    X(avx512, IQ3_S, iq3_s, gemm)           \
    X(avx512, IQ1_S, iq1_s, gemm)           \
    X(avx512, IQ1_M, iq1_m, gemm)           \
    X(avx512, Q8_0, q8_0, gemm)             \
    X(avx512, F32, f32, gemm)               \
    X(avx512, F16, f16, gemm)               \
    X(avx512, BF16, bf16, gemm)

/* NEON (any AArch64 CPU): *_neon.c. NEON + the ARMv8.2 dot product (SDOT): dot_dotprod_neon.c,
 * the integer dot products only (its float kernels and quantizers stay NEON's). */
#define Q3_KERNELS_ARM(X)                   \
    X(neon, F16, f16, to_float)             \
    X(neon, BF16, bf16, to_float)           \
    X(neon, F32, f32, vec_dot)              \
    X(neon, F16, f16, vec_dot)              \
    X(neon, BF16, bf16, vec_dot)            \
    X(neon, Q8_0, q8_0, vec_dot)            \
    X(neon, Q4_0, q4_0, vec_dot)            \
    X(neon, Q4_1, q4_1, vec_dot)            \
    X(neon, Q5_0, q5_0, vec_dot)            \
    X(neon, Q5_1, q5_1, vec_dot)            \
    X(neon, Q4_K, q4_k, vec_dot)            \
    X(neon, Q5_K, q5_k, vec_dot)            \
    X(neon, Q6_K, q6_k, vec_dot)            \
    X(neon, Q2_K, q2_k, vec_dot)            \
    X(neon, Q3_K, q3_k, vec_dot)            \
    X(neon, Q8_0, q8_0, from_float)         \
    X(neon, Q8_K, q8_k, from_float)         \
    X(dotprod, Q8_0, q8_0, vec_dot)         \
    X(dotprod, Q4_0, q4_0, vec_dot)         \
    X(dotprod, Q4_1, q4_1, vec_dot)         \
    X(dotprod, Q5_0, q5_0, vec_dot)         \
    X(dotprod, Q5_1, q5_1, vec_dot)         \
    X(dotprod, Q4_K, q4_k, vec_dot)         \
    X(dotprod, Q5_K, q5_k, vec_dot)         \
    X(dotprod, Q6_K, q6_k, vec_dot)         \
    X(dotprod, Q2_K, q2_k, vec_dot)         \
    X(dotprod, Q3_K, q3_k, vec_dot)

/* The function name of a list entry. */
#define Q3_KERNEL_NAME(isa, type, kind) q3_##type##_##kind##_##isa

/* The prototype of each kind: the traits' function types (quant/types.h) spelled out. */
#define Q3_KERNEL_PROTO_vec_dot(name) float name(int64_t n, const void *w, const void *x);
#define Q3_KERNEL_PROTO_vec_dot_rows(name) \
    void name(int64_t n, const void *w, size_t w_stride, int nr, const void *x, float *out);
#define Q3_KERNEL_PROTO_vec_dot_rows_x4(name) Q3_KERNEL_PROTO_vec_dot_rows(name)
#define Q3_KERNEL_PROTO_gemm_x4(name) Q3_KERNEL_PROTO_gemm(name)
#define Q3_KERNEL_PROTO_from_float(name) void name(const float *src, void *dst, int64_t n);
#define Q3_KERNEL_PROTO_to_float(name) void name(const void *src, float *dst, int64_t n);
#define Q3_KERNEL_PROTO_gemm(name)                                                                         \
    void name(int64_t n, const void *w, size_t w_stride, int nr, const void *const *x, int nc, float *out, \
              size_t out_stride);

#define Q3_KERNEL_DECLARE(isa, TYPE, type, kind) Q3_KERNEL_PROTO_##kind(Q3_KERNEL_NAME(isa, type, kind))

Q3_KERNELS_X86(Q3_KERNEL_DECLARE)
Q3_KERNELS_ARM(Q3_KERNEL_DECLARE)

#endif
