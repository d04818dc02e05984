/* isa_present NAME: exits 0 when this CPU runs the kernels of instruction set NAME (so the kernel
 * tests covered them), 77 (CTest's "skipped") when it cannot, 2 for a name it does not know.
 * tests/CMakeLists.txt runs it once per SIMD ISA of the architecture, so that a machine without
 * AVX-512, say, lists "kernels_avx512 ... Skipped" in every test run instead of passing quietly. */
#include <stdio.h>
#include <strings.h>
#include "cpu/kernel_table.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: isa_present avx2|avx512|neon|dotprod\n");
        return 2;
    }
    for (int isa = 0; isa < Q3_ISA_COUNT; isa++) {
        if (strcasecmp(argv[1], q3_isa_name((q3_isa)isa)) != 0) continue;
        if (q3_isa_supported((q3_isa)isa)) {
            printf("%s: this CPU runs these kernels; the kernel tests checked them\n", argv[1]);
            return 0;
        }
        printf("%s: this CPU cannot run these kernels; the kernel tests did NOT check them here\n", argv[1]);
        return 77;
    }
    fprintf(stderr, "isa_present: unknown instruction set %s\n", argv[1]);
    return 2;
}
