/* Runtime dispatch of the type kernels: which instruction sets this CPU runs, and which
 * kernels each one replaces in the traits table. Detection asks the CPU (cpuid, through the
 * compiler's __builtin_cpu_supports, which also checks that the OS saves the wide registers;
 * on AArch64 Linux, the kernel's hardware capability bits), so one binary runs everywhere and
 * uses the widest units it finds. */
#include "cpu/dot.h"
#include "cpu/dot_ckpt.h"

#include <string.h>

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

#if defined(Q3_X86) || defined(Q3_ARM64)
/* Puts the kernels cpu/kernels.h lists for isa into the table, over what is there. */
static void install_listed(q3_type_traits *t, q3_isa isa) {
#define Q3_INSTALL_KERNEL(name, TYPE, type, kind) \
    if (isa == Q3_ISA_ID_##name) t[Q3_TYPE_##TYPE].kind = Q3_KERNEL_NAME(name, type, kind);
#ifdef Q3_X86
    Q3_KERNELS_X86(Q3_INSTALL_KERNEL)
#else
    Q3_KERNELS_ARM(Q3_INSTALL_KERNEL)
#endif
#undef Q3_INSTALL_KERNEL
}

/* Installs one level. A tile or rows kernel is exact only against the vec_dot it was written
 * with, so where the level replaces a vec_dot without bringing its own, the one of the level
 * below goes (NULL: callers use vec_dot). */
static void install_level(q3_type_traits *t, q3_isa isa) {
    q3_type_traits before[Q3_TYPE_COUNT];
    memcpy(before, t, sizeof before);
    install_listed(t, isa);
    q3_dot_ckpt_install(t, isa);
    q3_dot_iq_install(t, isa);
    for (int i = 0; i < Q3_TYPE_COUNT; i++) {
        if (t[i].vec_dot == before[i].vec_dot) continue;
        if (t[i].gemm == before[i].gemm) t[i].gemm = NULL;
        if (t[i].vec_dot_rows == before[i].vec_dot_rows) t[i].vec_dot_rows = NULL;
        if (t[i].vec_dot_rows_x4 == before[i].vec_dot_rows_x4) t[i].vec_dot_rows_x4 = NULL;
        if (t[i].gemm_x4 == before[i].gemm_x4) t[i].gemm_x4 = NULL;
    }
}
#endif

void q3_dot_install(q3_type_traits table[Q3_TYPE_COUNT], q3_isa isa) {
    /* Each level starts from the one below, so a kernel only a lower ISA has is kept above it. */
#if defined(Q3_X86)
    for (int level = Q3_ISA_AVX2; level <= (int)isa && level <= Q3_ISA_AVX512; level++)
        install_level(table, (q3_isa)level);
#elif defined(Q3_ARM64)
    for (int level = Q3_ISA_NEON; level <= (int)isa && level <= Q3_ISA_DOTPROD; level++)
        install_level(table, (q3_isa)level);
#else
    (void)table;
    (void)isa;
#endif
}
