/* Scale searches for the K-quants: given a sub-block of weights, find the scale (and min) whose
 * rounded grid reproduces them best, and the integer levels on that grid. Straight rounding
 * against max|x| wastes levels on one outlier; these fits trade a slightly clipped extreme for
 * a finer grid everywhere else, which is what keeps 4-bit perplexity close to 16-bit. */
#ifndef Q3_KQUANT_FIT_H
#define Q3_KQUANT_FIT_H

#include <stdbool.h>
#include <stdint.h>

/* Candidate grids tried by q3_fit_scale_min: inverse scales (nmax + first + k * step) / range
 * for k = 0 .. count, each refined by weighted least squares. */
typedef struct q3_fit_grid {
    float first, step;
    int count;
    bool abs_error; /* minimise sum w |error| instead of sum w error^2 */
} q3_fit_grid;

/* Fits x[i] ~ scale * L[i] - offset with L in 0..nmax and offset >= 0 (the grid always covers
 * zero), weighting each error by w[i]. n <= 32. Returns scale (0 for a constant block, where
 * every L is 0) and stores the offset. */
float q3_fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *offset,
                       const q3_fit_grid *grid);

/* Fits x[i] ~ scale * (L[i] - nmax) with L in 0 .. 2 * nmax - 1 (the signed range -nmax ..
 * nmax - 1), weighting errors by x^2 so the large weights that matter most are kept accurate.
 * A search over candidate scales is followed by refine_passes of coordinate descent, each
 * moving single levels while that improves the fit. n <= 32. Returns the scale, 0 (and every L
 * at nmax) for an all-zero block. The scale is negative when the largest weight is positive:
 * it maps that weight to the extra negative level. */
float q3_fit_symmetric(int n, int nmax, const float *x, uint8_t *L, int refine_passes);

/* The Q4_K / Q5_K recipe for one block of 256 weights: fit each of the 8 sub-blocks of 32
 * (weighting every weight by |x| plus the sub-block's RMS: large weights matter more, small
 * ones still count), quantize the 8 scales and mins to 6-bit codes against the fp16 d and dmin
 * it returns, then round every weight to 0..nmax against the scales as stored. */
void q3_fit_k_block(const float *x, int nmax, const q3_fit_grid *grid, uint16_t *d, uint16_t *dmin,
                    uint8_t sc[8], uint8_t m[8], uint8_t L[256]);

#endif
