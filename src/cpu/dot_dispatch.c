/* Runtime dispatch of the type kernels: which instruction sets this CPU runs, and which
 * kernels each one replaces in the traits table. Detection asks the CPU (cpuid, through the
 * compiler's __builtin_cpu_supports, which also checks that the OS saves the wide registers;
 * on AArch64 Linux, the kernel's hardware capability bits), so one binary runs everywhere and
 * uses the widest units it finds. */
#include "cpu/dot.h"
#include "cpu/dot_ckpt.h"
#include "cpu/gemm.h"
#include "cpu/vec.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define Q3_X86 1
#endif

#if defined(__aarch64__)
#define Q3_ARM64 1
#if defined(__linux__)
#include <sys/auxv.h>
#endif

/* The dot product instructions (SDOT/UDOT, FEAT_DotProd) are optional before ARMv8.4; Linux
 * reports them in AT_HWCAP. Elsewhere, trust the build's target. */
static bool cpu_has_dotprod(void) {
#if defined(__linux__) && defined(HWCAP_ASIMDDP)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__ARM_FEATURE_DOTPROD)
    return true;
#else
    return false;
#endif
}
#endif

#ifdef Q3_X86
/* F16C has no __builtin_cpu_supports name in every compiler; cpuid leaf 1, ECX bit 29. */
static bool cpu_has_f16c(void) {
    unsigned eax, ebx, ecx, edx;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
}
#endif

bool q3_isa_supported(q3_isa isa) {
    switch (isa) {
    case Q3_ISA_SCALAR: return true;
#ifdef Q3_X86
    case Q3_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    case Q3_ISA_AVX512:
        return q3_isa_supported(Q3_ISA_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
#endif
#ifdef Q3_ARM64
    case Q3_ISA_NEON: return true; /* Advanced SIMD is part of every AArch64 Linux ABI */
    case Q3_ISA_DOTPROD: return cpu_has_dotprod();
#endif
    default: return false;
    }
}

const char *q3_isa_name(q3_isa isa) {
    switch (isa) {
    case Q3_ISA_SCALAR: return "scalar";
    case Q3_ISA_AVX2: return "avx2";
    case Q3_ISA_AVX512: return "avx512";
    case Q3_ISA_NEON: return "neon";
    case Q3_ISA_DOTPROD: return "dotprod";
    default: return "unknown";
    }
}

#ifdef Q3_X86
static void install_avx2(q3_type_traits *t) {
    t[Q3_TYPE_F16].to_float = q3_vec_avx2_ops.f16_to_f32;
    t[Q3_TYPE_BF16].to_float = q3_vec_avx2_ops.bf16_to_f32;
    t[Q3_TYPE_F32].vec_dot = q3_f32_vec_dot_avx2;
    t[Q3_TYPE_F16].vec_dot = q3_f16_vec_dot_avx2;
    t[Q3_TYPE_BF16].vec_dot = q3_bf16_vec_dot_avx2;
    t[Q3_TYPE_Q8_0].vec_dot = q3_q8_0_vec_dot_avx2;
    t[Q3_TYPE_Q4_0].vec_dot = q3_q4_0_vec_dot_avx2;
    t[Q3_TYPE_Q4_1].vec_dot = q3_q4_1_vec_dot_avx2;
    t[Q3_TYPE_Q5_0].vec_dot = q3_q5_0_vec_dot_avx2;
    t[Q3_TYPE_Q5_1].vec_dot = q3_q5_1_vec_dot_avx2;
    t[Q3_TYPE_Q4_K].vec_dot = q3_q4_k_vec_dot_avx2;
    t[Q3_TYPE_Q5_K].vec_dot = q3_q5_k_vec_dot_avx2;
    t[Q3_TYPE_Q6_K].vec_dot = q3_q6_k_vec_dot_avx2;
    t[Q3_TYPE_Q2_K].vec_dot = q3_q2_k_vec_dot_avx2;
    t[Q3_TYPE_Q3_K].vec_dot = q3_q3_k_vec_dot_avx2;
    t[Q3_TYPE_Q8_0].from_float = q3_q8_0_from_float_avx2;
    t[Q3_TYPE_Q8_K].from_float = q3_q8_k_from_float_avx2;
    t[Q3_TYPE_Q4_K].gemm = q3_q4_k_gemm_avx2;
    t[Q3_TYPE_Q5_K].gemm = q3_q5_k_gemm_avx2;
    t[Q3_TYPE_Q6_K].gemm = q3_q6_k_gemm_avx2;
    q3_dot_ckpt_install(t, Q3_ISA_AVX2);
    q3_dot_iq_install(t, Q3_ISA_AVX2);
}

static void install_avx512(q3_type_traits *t) {
    t[Q3_TYPE_F16].to_float = q3_vec_avx512_ops.f16_to_f32;
    t[Q3_TYPE_BF16].to_float = q3_vec_avx512_ops.bf16_to_f32;
    t[Q3_TYPE_F32].vec_dot = q3_f32_vec_dot_avx512;
    t[Q3_TYPE_F16].vec_dot = q3_f16_vec_dot_avx512;
    t[Q3_TYPE_BF16].vec_dot = q3_bf16_vec_dot_avx512;
    t[Q3_TYPE_Q8_0].vec_dot = q3_q8_0_vec_dot_avx512;
    t[Q3_TYPE_Q4_0].vec_dot = q3_q4_0_vec_dot_avx512;
    t[Q3_TYPE_Q4_1].vec_dot = q3_q4_1_vec_dot_avx512;
    t[Q3_TYPE_Q5_0].vec_dot = q3_q5_0_vec_dot_avx512;
    t[Q3_TYPE_Q5_1].vec_dot = q3_q5_1_vec_dot_avx512;
    t[Q3_TYPE_Q4_K].vec_dot = q3_q4_k_vec_dot_avx512;
    t[Q3_TYPE_Q5_K].vec_dot = q3_q5_k_vec_dot_avx512;
    t[Q3_TYPE_Q6_K].vec_dot = q3_q6_k_vec_dot_avx512;
    t[Q3_TYPE_Q2_K].vec_dot = q3_q2_k_vec_dot_avx512;
    t[Q3_TYPE_Q3_K].vec_dot = q3_q3_k_vec_dot_avx512;
    t[Q3_TYPE_Q8_0].from_float = q3_q8_0_from_float_avx512;
    t[Q3_TYPE_Q8_K].from_float = q3_q8_k_from_float_avx512;
    t[Q3_TYPE_Q4_K].gemm = q3_q4_k_gemm_avx512;
    t[Q3_TYPE_Q5_K].gemm = q3_q5_k_gemm_avx512;
    t[Q3_TYPE_Q6_K].gemm = q3_q6_k_gemm_avx512;
    t[Q3_TYPE_Q8_0].gemm = q3_q8_0_gemm_avx512;
    t[Q3_TYPE_F32].gemm = q3_f32_gemm_avx512;
    t[Q3_TYPE_F16].gemm = q3_f16_gemm_avx512;
    t[Q3_TYPE_BF16].gemm = q3_bf16_gemm_avx512;
    q3_dot_ckpt_install(t, Q3_ISA_AVX512);
    q3_dot_iq_install(t, Q3_ISA_AVX512);
}
#endif

#ifdef Q3_ARM64
static void install_neon(q3_type_traits *t) {
    t[Q3_TYPE_F16].to_float = q3_vec_neon_ops.f16_to_f32;
    t[Q3_TYPE_BF16].to_float = q3_vec_neon_ops.bf16_to_f32;
    t[Q3_TYPE_F32].vec_dot = q3_f32_vec_dot_neon;
    t[Q3_TYPE_F16].vec_dot = q3_f16_vec_dot_neon;
    t[Q3_TYPE_BF16].vec_dot = q3_bf16_vec_dot_neon;
    t[Q3_TYPE_Q8_0].vec_dot = q3_q8_0_vec_dot_neon;
    t[Q3_TYPE_Q4_0].vec_dot = q3_q4_0_vec_dot_neon;
    t[Q3_TYPE_Q4_1].vec_dot = q3_q4_1_vec_dot_neon;
    t[Q3_TYPE_Q5_0].vec_dot = q3_q5_0_vec_dot_neon;
    t[Q3_TYPE_Q5_1].vec_dot = q3_q5_1_vec_dot_neon;
    t[Q3_TYPE_Q4_K].vec_dot = q3_q4_k_vec_dot_neon;
    t[Q3_TYPE_Q5_K].vec_dot = q3_q5_k_vec_dot_neon;
    t[Q3_TYPE_Q6_K].vec_dot = q3_q6_k_vec_dot_neon;
    t[Q3_TYPE_Q2_K].vec_dot = q3_q2_k_vec_dot_neon;
    t[Q3_TYPE_Q3_K].vec_dot = q3_q3_k_vec_dot_neon;
    t[Q3_TYPE_Q8_0].from_float = q3_q8_0_from_float_neon;
    t[Q3_TYPE_Q8_K].from_float = q3_q8_k_from_float_neon;
    q3_dot_ckpt_install(t, Q3_ISA_NEON);
    q3_dot_iq_install(t, Q3_ISA_NEON);
}

/* Only the integer dot products change; the float kernels and quantizers stay NEON's. */
static void install_dotprod(q3_type_traits *t) {
    t[Q3_TYPE_Q8_0].vec_dot = q3_q8_0_vec_dot_dotprod;
    t[Q3_TYPE_Q4_0].vec_dot = q3_q4_0_vec_dot_dotprod;
    t[Q3_TYPE_Q4_1].vec_dot = q3_q4_1_vec_dot_dotprod;
    t[Q3_TYPE_Q5_0].vec_dot = q3_q5_0_vec_dot_dotprod;
    t[Q3_TYPE_Q5_1].vec_dot = q3_q5_1_vec_dot_dotprod;
    t[Q3_TYPE_Q4_K].vec_dot = q3_q4_k_vec_dot_dotprod;
    t[Q3_TYPE_Q5_K].vec_dot = q3_q5_k_vec_dot_dotprod;
    t[Q3_TYPE_Q6_K].vec_dot = q3_q6_k_vec_dot_dotprod;
    t[Q3_TYPE_Q2_K].vec_dot = q3_q2_k_vec_dot_dotprod;
    t[Q3_TYPE_Q3_K].vec_dot = q3_q3_k_vec_dot_dotprod;
    q3_dot_iq_install(t, Q3_ISA_DOTPROD);
}
#endif

#if defined(Q3_X86) || defined(Q3_ARM64)
/* Runs one level's install. A tile kernel is exact only against the vec_dot it was written
 * with, so where the level replaces a vec_dot without bringing its own gemm, the gemm of the
 * level below goes (NULL: callers use vec_dot). */
static void install_level(q3_type_traits *t, void (*install)(q3_type_traits *)) {
    q3_vec_dot_fn dot_before[Q3_TYPE_COUNT];
    q3_gemm_fn gemm_before[Q3_TYPE_COUNT];
    for (int i = 0; i < Q3_TYPE_COUNT; i++) dot_before[i] = t[i].vec_dot, gemm_before[i] = t[i].gemm;
    install(t);
    for (int i = 0; i < Q3_TYPE_COUNT; i++)
        if (t[i].vec_dot != dot_before[i] && t[i].gemm == gemm_before[i]) t[i].gemm = NULL;
}
#endif

void q3_dot_install(q3_type_traits table[Q3_TYPE_COUNT], q3_isa isa) {
#ifdef Q3_X86
    /* Each level starts from the one below, so a kernel only one ISA has is kept above it. */
    if (isa >= Q3_ISA_AVX2) install_level(table, install_avx2);
    if (isa >= Q3_ISA_AVX512) install_level(table, install_avx512);
#elif defined(Q3_ARM64)
    if (isa >= Q3_ISA_NEON) install_level(table, install_neon);
    if (isa >= Q3_ISA_DOTPROD) install_level(table, install_dotprod);
#else
    (void)table;
    (void)isa;
#endif
}
