/* The lattice tables of llama.cpp's i-quants (iq_grids.c, generated from the gguf Python
 * package by scripts/gen_iq_grids.py). An i-quant stores groups of 8 (or 4) weights as an index
 * into a fixed grid of vectors instead of one level per weight: the grid holds the vectors that
 * real weight groups come close to, so fewer bits name a group than its levels would need.
 * Entries pack their elements one byte each, element j in byte j (little-endian). */
#ifndef Q3_QUANT_IQ_GRIDS_H
#define Q3_QUANT_IQ_GRIDS_H

#include <stdint.h>

/* IQ4_NL / IQ4_XS: the 16 levels, denser near zero where weights crowd. */
extern const int8_t q3_iq4nl_values[16];

/* IQ2_XXS, IQ2_XS, IQ3_XXS store 7 sign bits per group of 8; the eighth makes the number of
 * minus signs even. q3_iq_ksigns[i] is the 8 sign bits of index i (bit j set: element j is
 * negative); q3_iq_ksign_masks[i] the same spread to bytes 0xff (minus) / 0x00 (plus). */
extern const uint8_t q3_iq_ksigns[128];
extern const uint64_t q3_iq_ksign_masks[128];

/* 8-wide grids with elements 8, 25, 43 (IQ2_XXS: 256 entries, IQ2_XS: 512, IQ2_S: 1024). */
extern const uint64_t q3_iq2xxs_grid[256];
extern const uint64_t q3_iq2xs_grid[512];
extern const uint64_t q3_iq2s_grid[1024];
/* 4-wide grids: IQ3_XXS with elements 4, 12, .., 52, 62; IQ3_S with 1, 3, .., 15. */
extern const uint32_t q3_iq3xxs_grid[256];
extern const uint32_t q3_iq3s_grid[512];
/* IQ1_S / IQ1_M: 8-wide, int8 elements -1, 0, 1 (bytes 0xff, 0x00, 0x01). */
extern const uint64_t q3_iq1s_grid[2048];

#endif
