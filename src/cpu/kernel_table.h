/* The traits table with this CPU's kernels: one copy of the reference table (quant/types.c) per
 * instruction set the CPU runs, with that ISA's SIMD kernels put in (dot_dispatch.c), and the
 * choice of which one the engine uses. */
#ifndef Q3_KERNEL_TABLE_H
#define Q3_KERNEL_TABLE_H

#include "quant/types.h"

/* ---- instruction sets: the kernels behind the table are chosen once per process ---- */

/* Instruction sets with their own kernels, from the portable reference up. Every ISA's kernels
 * agree with the scalar ones: exactly for the K-quants and the quantizers, within float rounding
 * (another summation order) for the float types and the 32-wide formats (Q4_0 .. Q8_0). */
typedef enum q3_isa {
    Q3_ISA_SCALAR, /* portable C: the reference */
    Q3_ISA_AVX2,   /* AVX2 + FMA + F16C (Haswell and later) */
    Q3_ISA_AVX512, /* AVX-512 F/BW/VL/DQ + VNNI (Ice Lake, Zen 4 and later) */
    Q3_ISA_NEON,   /* AArch64 Advanced SIMD (every ARMv8-A CPU) */
    Q3_ISA_DOTPROD, /* NEON + the ARMv8.2 dot product, SDOT (Kunpeng 920, Neoverse, Apple M) */
    Q3_ISA_COUNT,
} q3_isa;

/* Traits of t with the kernels of the active instruction set (q3_isa_active), or NULL for an id
 * we do not know. The kernels of every row agree with q3_type_info's reference ones. */
const q3_type_traits *q3_type_get(q3_type t);

/* Chooses the kernels: the best ISA this CPU runs, or the one the environment variable
 * Q3_ISA=scalar|avx2|avx512|neon|dotprod names (for tests and benchmarks; an ISA the CPU lacks
 * falls back to the best it has, with a warning on stderr). Thread-safe, idempotent, and called
 * by every function here, so calling it is optional. */
void q3_quant_init(void);
/* The ISA whose kernels q3_type_get returns; cannot fail. */
q3_isa q3_isa_active(void);
/* Whether this CPU (and this build) runs isa; cannot fail. */
bool q3_isa_supported(q3_isa isa);
/* "scalar", "avx2", "avx512", "neon", "dotprod"; "unknown" for other values. */
const char *q3_isa_name(q3_isa isa);
/* Traits of t with isa's kernels, whatever the active ISA: lets tests and benchmarks compare
 * ISAs in one process. NULL when t is unknown or this CPU cannot run isa. */
const q3_type_traits *q3_type_get_isa(q3_type t, q3_isa isa);

#endif
