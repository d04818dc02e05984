/* The rows attention's kernels read (cpu/vec.h: dot_rows, mix_rows and their F16 and Q8_0
 * forms), in every ISA's vec file: floats one after another (v, hd apart), F16 rows by address
 * (h[p]) or Q8_0 rows by address (b[p], hd / 32 blocks), each value widened or dequantized
 * where it is used. Each file's kernels take the kind as a constant, so every caller gets a copy
 * with one kind of load and the same arithmetic: F16 and Q8_0 rows give the bits of the float
 * rows that to_float makes of them. */
#ifndef Q3_CPU_ROW_SRC_H
#define Q3_CPU_ROW_SRC_H

#include <stdint.h>

enum { ROW_F32, ROW_F16, ROW_Q8_0 };

typedef struct row_src {
    const float *v;
    const uint16_t *const *h;
    const void *const *b;
    int hd;
} row_src;

#endif
