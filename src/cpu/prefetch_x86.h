/* Software prefetch for the x86 dot products that stream weights from DRAM (K-quants in
 * dot_x86.h, i-quants in dot_iq_avx2.c / dot_iq_avx512.c): one definition of how far ahead. */
#ifndef Q3_CPU_PREFETCH_X86_H
#define Q3_CPU_PREFETCH_X86_H

#include <immintrin.h>
#include <stddef.h>

/* Decode streams each weight row from DRAM once. The hardware prefetchers lose the stream at
 * every 4 KiB page and at each task's start, so the K-quant loops ask for the bytes this far
 * ahead themselves: measured on the 2-core EPYC of bench/RESULTS.md, 1.2 to 4.6 KiB ahead
 * decoded a Qwen3-30B-A3B Q4_K_M 8% faster than none (beyond a row's end it reaches into the
 * next row, or touches nothing: a prefetch never faults). */
#define Q3_X86_PREFETCH_AHEAD 2304

/* Asks for the `bytes` bytes that lie Q3_X86_PREFETCH_AHEAD after p. */
static inline void q3_x86_prefetch_ahead(const void *p, size_t bytes) {
    for (size_t l = 0; l < bytes; l += 64) _mm_prefetch((const char *)p + Q3_X86_PREFETCH_AHEAD + l, _MM_HINT_T0);
}

#endif
