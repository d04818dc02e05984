/* The K-quant scale searches (see kquant_fit.h). Both follow the recipe llama.cpp describes for
 * its reference quantizers: round with a few candidate scales around the naive one, refit the
 * scale (and min) of each rounding by weighted least squares, and keep the best fit. */
#include "quant/kquant_fit.h"

#include <math.h>
#include "quant/blocks.h"

#define FIT_MAX_N 32
#define FIT_EPS 1e-15f /* below this the block is zero for all purposes */

/* Weighted error of the fit x ~ scale * L + min. */
static float fit_error(int n, const float *x, const float *w, const uint8_t *L, float scale,
                       float min, bool abs_error) {
    float err = 0;
    for (int i = 0; i < n; i++) {
        float diff = scale * L[i] + min - x[i];
        err += w[i] * (abs_error ? fabsf(diff) : diff * diff);
    }
    return err;
}

/* Rounds (x - min) * iscale to levels 0..nmax. */
static void round_levels(int n, int nmax, const float *x, float min, float iscale, uint8_t *L) {
    for (int i = 0; i < n; i++) L[i] = (uint8_t)q3_clamp_int(q3_nearest_int(iscale * (x[i] - min)), 0, nmax);
}

/* Least-squares scale and min for fixed levels L: minimises sum w (scale * L + min - x)^2 with
 * min <= 0. Returns false when the levels are all equal (no scale to fit). */
static bool refit_scale_min(int n, const float *x, const float *w, const uint8_t *L, float sum_w,
                            float sum_wx, float *scale, float *min) {
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; i++) {
        sum_l += w[i] * L[i];
        sum_l2 += w[i] * L[i] * L[i];
        sum_xl += w[i] * L[i] * x[i];
    }
    float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det <= 0) return false;
    *scale = (sum_w * sum_xl - sum_wx * sum_l) / det;
    *min = (sum_l2 * sum_wx - sum_l * sum_xl) / det;
    if (*min > 0) { /* the grid must reach zero: refit the scale alone with min = 0 */
        *min = 0;
        *scale = sum_xl / sum_l2;
    }
    return true;
}

float q3_fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *offset,
                       const q3_fit_grid *grid) {
    float min = x[0], max = x[0], sum_w = 0, sum_wx = 0;
    for (int i = 0; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_wx += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *offset = -min;
        return 0;
    }
    /* Start from the plain min/max grid, then try the candidates. */
    float iscale = nmax / (max - min), scale = 1 / iscale;
    round_levels(n, nmax, x, min, iscale, L);
    float best = fit_error(n, x, w, L, scale, min, grid->abs_error);
    for (int k = 0; k <= grid->count; k++) {
        uint8_t trial[FIT_MAX_N];
        float trial_scale, trial_min;
        round_levels(n, nmax, x, min, (nmax + grid->first + grid->step * k) / (max - min), trial);
        if (!refit_scale_min(n, x, w, trial, sum_w, sum_wx, &trial_scale, &trial_min)) continue;
        float err = fit_error(n, x, w, trial, trial_scale, trial_min, grid->abs_error);
        if (err < best) {
            best = err;
            scale = trial_scale;
            min = trial_min;
            for (int i = 0; i < n; i++) L[i] = trial[i];
        }
    }
    *offset = -min;
    return scale;
}

/* Signed levels -nmax..nmax-1 of x * iscale, with the x^2-weighted sums sum w x l, sum w l^2. */
static void round_signed(int n, int nmax, const float *x, float iscale, int *l, float *sum_xl,
                         float *sum_l2) {
    *sum_xl = *sum_l2 = 0;
    for (int i = 0; i < n; i++) {
        float w = x[i] * x[i];
        l[i] = q3_clamp_int(q3_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        *sum_xl += w * x[i] * l[i];
        *sum_l2 += w * l[i] * l[i];
    }
}

/* Moves single levels to where the current fit puts them, keeping a move only when it raises
 * sum_xl^2 / sum_l2 (for a least-squares scale, the error is sum w x^2 minus that quotient).
 * Returns whether any level moved. */
static bool refine_levels(int n, int nmax, const float *x, int *l, float *sum_xl, float *sum_l2) {
    bool changed = false;
    for (int i = 0; i < n; i++) {
        float w = x[i] * x[i];
        float xl_without = *sum_xl - w * x[i] * l[i], l2_without = *sum_l2 - w * l[i] * l[i];
        if (xl_without == 0 || l2_without <= 0) continue;
        int moved = q3_clamp_int(q3_nearest_int(x[i] * l2_without / xl_without), -nmax, nmax - 1);
        if (moved == l[i]) continue;
        float xl = xl_without + w * x[i] * moved, l2 = l2_without + w * moved * moved;
        if (l2 > 0 && xl * xl * *sum_l2 > *sum_xl * *sum_xl * l2) {
            l[i] = moved;
            *sum_xl = xl;
            *sum_l2 = l2;
            changed = true;
        }
    }
    return changed;
}

float q3_fit_symmetric(int n, int nmax, const float *x, uint8_t *L, int refine_passes) {
    float max = q3_signed_absmax(x, n);
    if (fabsf(max) < FIT_EPS) {
        for (int i = 0; i < n; i++) L[i] = (uint8_t)nmax;
        return 0;
    }
    int best_l[FIT_MAX_N], trial[FIT_MAX_N];
    float best_xl, best_l2;
    round_signed(n, nmax, x, -nmax / max, best_l, &best_xl, &best_l2);
    /* Candidate scales a tenth of a level apart on either side of the naive one. */
    for (int k = -9; k <= 9; k++) {
        float xl, l2;
        if (k == 0) continue;
        round_signed(n, nmax, x, -(nmax + 0.1f * k) / max, trial, &xl, &l2);
        if (l2 > 0 && xl * xl * best_l2 > best_xl * best_xl * l2) {
            best_xl = xl;
            best_l2 = l2;
            for (int i = 0; i < n; i++) best_l[i] = trial[i];
        }
    }
    for (int pass = 0; pass < refine_passes; pass++)
        if (!refine_levels(n, nmax, x, best_l, &best_xl, &best_l2)) break;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)(best_l[i] + nmax);
    return best_l2 > 0 ? best_xl / best_l2 : 0;
}


/* The largest value of v[0..n), at least 0. */
static float max_of(const float *v, int n) {
    float max = 0;
    for (int i = 0; i < n; i++)
        if (v[i] > max) max = v[i];
    return max;
}

void q3_fit_k_block(const float *x, int nmax, const q3_fit_grid *grid, uint16_t *d, uint16_t *dmin,
                    uint8_t sc[8], uint8_t m[8], uint8_t L[256]) {
    enum { SUB = 32 };
    float scales[8], offsets[8], w[SUB];
    for (int j = 0; j < 8; j++) {
        const float *xs = x + SUB * j;
        float sum_x2 = 0;
        for (int l = 0; l < SUB; l++) sum_x2 += xs[l] * xs[l];
        float rms = sqrtf(sum_x2 / SUB);
        for (int l = 0; l < SUB; l++) w[l] = rms + fabsf(xs[l]);
        scales[j] = q3_fit_scale_min(SUB, nmax, xs, w, L + SUB * j, &offsets[j], grid);
    }
    float max_scale = max_of(scales, 8), max_offset = max_of(offsets, 8);
    float inv_scale = max_scale > 0 ? 63 / max_scale : 0;
    float inv_offset = max_offset > 0 ? 63 / max_offset : 0;
    for (int j = 0; j < 8; j++) {
        sc[j] = (uint8_t)q3_clamp_int(q3_nearest_int(inv_scale * scales[j]), 0, 63);
        m[j] = (uint8_t)q3_clamp_int(q3_nearest_int(inv_offset * offsets[j]), 0, 63);
    }
    *d = q3_f32_to_f16(max_scale / 63);
    *dmin = q3_f32_to_f16(max_offset / 63);

    /* Re-round every weight against the scales as stored. */
    float d_stored = q3_f16_to_f32(*d), dmin_stored = q3_f16_to_f32(*dmin);
    for (int j = 0; j < 8; j++) {
        float dl = d_stored * sc[j], ml = dmin_stored * m[j];
        for (int l = 0; l < SUB; l++) {
            int q = dl != 0 ? q3_nearest_int((x[SUB * j + l] + ml) / dl) : 0;
            L[SUB * j + l] = (uint8_t)q3_clamp_int(q, 0, nmax);
        }
    }
}
