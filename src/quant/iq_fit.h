/* The quantizer of the lattice i-quants (IQ3_XXS .. IQ1_M): fitting 256 weights to a grid of
 * 8- or 4-wide vectors (quant/iq_grids.h) under a block scale d and a small odd multiplier per
 * 16 or 32 weights. Only a fraction of the level combinations is on a grid, so a group is
 * rounded element by element and, when the result is off the grid, replaced by the best of its
 * nearest grid vectors (listed once per grid, at first use). Each sub-block tries a range of
 * scales and refits the best by weighted least squares; then d and the multipliers are
 * quantized and the groups refitted against the scales as stored.
 *
 * Importance: each weight's error counts w[i] times, w = imatrix * sqrt(sigma2 + x^2) with
 * sigma2 twice the block's mean square: the weight's own size matters (large weights carry the
 * signal) but never vanishes, and the importance matrix (mean squared activation per column,
 * from `q3moe imatrix` or llama.cpp's) says how large the inputs it meets are. Without one,
 * every column counts the same. */
#ifndef Q3_QUANT_IQ_FIT_H
#define Q3_QUANT_IQ_FIT_H

#include <stdint.h>

/* Error weights of n weights x (one block): see above. importance may be NULL. */
void q3_iq_weights(const float *x, const float *importance, int n, float *w);

typedef enum q3_iq_grid_id {
    Q3_IQ_GRID_2XXS,
    Q3_IQ_GRID_2XS,
    Q3_IQ_GRID_2S,
    Q3_IQ_GRID_3XXS,
    Q3_IQ_GRID_3S,
    Q3_IQ_GRID_1S,
    Q3_IQ_GRID_COUNT
} q3_iq_grid_id;

/* How a format spends its bits: value = d * unit * (2k + 1) * (level + shift). */
typedef struct q3_iq_spec {
    q3_iq_grid_id grid;
    int sub;       /* weights per multiplier k: 16 or 32 */
    int k_max;     /* k in 0..k_max */
    float unit;
    int shift_run; /* 0: no shift; else weights sharing one shift of +-Q3_IQ1_DELTA (8 or 32) */
    /* How far d moves from its least-squares value (0) toward the one that keeps each block's
     * projection on its own weights (1). Least squares shrinks a block by its fit's cosine, and
     * every layer's shrinkage compounds through a model: where the fit is poor (IQ1), half way
     * between measured a lower KL divergence on the demo model than either end. */
    float unbias;
} q3_iq_spec;

#define Q3_IQ_MAX_UNITS 64 /* grid vectors per block: 256 / 4 */

/* A fitted block: d, then per sub-block k, per grid vector its entry, per shift run whether
 * the shift is negative. */
typedef struct q3_iq_fit {
    float d;
    uint8_t k[16];
    uint16_t entry[Q3_IQ_MAX_UNITS];
    uint8_t shift_negative[32];
} q3_iq_fit;

/* Fits the 256 targets t (weights w) to the spec's format. Targets are signed: formats that
 * store signs pass magnitudes (a negative target is a sign the format could not store), IQ1
 * the weights themselves. fit->d is the fp16-rounded value the block stores. */
void q3_iq_fit_block(const q3_iq_spec *spec, const float *t, const float *w, q3_iq_fit *fit);

/* Splits 8 weights into magnitudes t and sign bits (bit j: weight j negative). With
 * even_signs, the formats that store 7 sign bits: an odd count of minus signs gets the sign of
 * the weight that matters least flipped (its magnitude becomes negative, so the fit sees what
 * that costs). */
uint8_t q3_iq_split_signs(const float *x, const float *w, int even_signs, float *t);

/* Block i of the row x fitted whole, as every lattice quantizer starts a block: its error
 * weights (importance: the row's, or NULL), then for the formats that store signs (signs not
 * NULL) the 32 sign bytes of its runs of 8 (even_signs as above) and the magnitudes fitted;
 * with signs NULL (IQ1) the weights themselves. */
void q3_iq_fit_row_block(const q3_iq_spec *spec, const float *x, const float *importance, int64_t i, int even_signs,
                         uint8_t *signs, q3_iq_fit *fit);

#endif
