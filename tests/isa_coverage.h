/* Which instruction sets' kernels a kernel test covers on this machine, said out loud: a test
 * run on a CPU without AVX-512 passes without having run a single AVX-512 kernel, and its log
 * must say so. cmocka tests add test_isa_coverage to their list; it prints one line per SIMD
 * ISA of this architecture, and fails when the environment variable Q3_REQUIRE_ISA (a comma-
 * or space-separated list, e.g. "avx2,avx512") names one this CPU cannot run: CI sets it where
 * a runner is expected to cover those kernels. */
#ifndef Q3_TESTS_ISA_COVERAGE_H
#define Q3_TESTS_ISA_COVERAGE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "cpu/kernel_table.h"

/* The SIMD ISAs of the architecture this test was built for, and what each needs. */
static const struct { q3_isa isa; const char *needs; } ISA_COVERAGE_LIST[] = {
#if defined(__x86_64__) || defined(__i386__)
    {Q3_ISA_AVX2, "AVX2, FMA and F16C"},
    {Q3_ISA_AVX512, "AVX-512 F, BW, VL, DQ and VNNI"},
#elif defined(__aarch64__)
    {Q3_ISA_NEON, "AArch64 Advanced SIMD"},
    {Q3_ISA_DOTPROD, "the ARMv8.2 dot product (asimddp)"},
#endif
    {Q3_ISA_SCALAR, NULL}, /* end */
};

/* Whether `name` is a word of the Q3_REQUIRE_ISA list. */
static inline bool isa_required(const char *name) {
    const char *list = getenv("Q3_REQUIRE_ISA");
    size_t len = strlen(name);
    for (const char *p = list; p && *p;) {
        p += strspn(p, ", ");
        size_t word = strcspn(p, ", ");
        if (word == len && strncmp(p, name, len) == 0) return true;
        p += word;
    }
    return false;
}

static void test_isa_coverage(void **state) {
    (void)state;
    int missing_required = 0;
    for (int i = 0; ISA_COVERAGE_LIST[i].needs; i++) {
        q3_isa isa = ISA_COVERAGE_LIST[i].isa;
        const char *name = q3_isa_name(isa);
        if (q3_isa_supported(isa)) {
            print_message("ISA %-7s kernels: tested against the scalar reference\n", name);
        } else {
            print_message("ISA %-7s kernels: NOT TESTED on this machine: the CPU lacks %s%s\n", name,
                          ISA_COVERAGE_LIST[i].needs, isa_required(name) ? " (but Q3_REQUIRE_ISA asks for it)" : "");
            missing_required += isa_required(name);
        }
    }
    if (missing_required) fail_msg("Q3_REQUIRE_ISA=%s names ISAs this CPU cannot run", getenv("Q3_REQUIRE_ISA"));
}

#endif
