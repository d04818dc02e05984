/* The lattice i-quant quantizer (see iq_fit.h): the grids' lookup structures, the nearest grid
 * vector of a group, the scale search of a sub-block and the quantization of a block's scales. */
#include "quant/iq_fit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "quant/iq_blocks.h"
#include "quant/iq_grids.h"

/* ---- grids ---- */

#define MAX_DIM 8
#define MAX_NEIGHBOURS 48

/* A grid with its levels and, for every combination of levels (a key: the level indices as
 * digits in base n_levels), the grid entry it is or the entries nearest to it. */
typedef struct iq_grid {
    int dim, n_levels, n_entries;
    float level[8];
    uint8_t *entry_level; /* [n_entries][dim]: level index of each element */
    int32_t *key;         /* >= 0: the entry with these levels; < 0: -1 - start of its list */
    uint16_t *lists;      /* per off-grid key: a count, then the nearest entries */
} iq_grid;

typedef struct grid_source {
    int dim, n_levels, n_entries;
    float level[8];
    const void *table; /* uint64_t entries (dim 8) or uint32_t (dim 4) */
    int slack;         /* an off-grid key lists the entries up to this far beyond its nearest */
} grid_source;

static const grid_source SOURCES[Q3_IQ_GRID_COUNT] = {
    [Q3_IQ_GRID_2XXS] = {8, 3, 256, {8, 25, 43}, q3_iq2xxs_grid, 2},
    [Q3_IQ_GRID_2XS] = {8, 3, 512, {8, 25, 43}, q3_iq2xs_grid, 2},
    [Q3_IQ_GRID_2S] = {8, 3, 1024, {8, 25, 43}, q3_iq2s_grid, 2},
    [Q3_IQ_GRID_3XXS] = {4, 8, 256, {4, 12, 20, 28, 36, 44, 52, 62}, q3_iq3xxs_grid, 2},
    [Q3_IQ_GRID_3S] = {4, 8, 512, {1, 3, 5, 7, 9, 11, 13, 15}, q3_iq3s_grid, 2},
    [Q3_IQ_GRID_1S] = {8, 3, 2048, {-1, 0, 1}, q3_iq1s_grid, 2},
};

static iq_grid grids[Q3_IQ_GRID_COUNT];
static pthread_once_t grids_once = PTHREAD_ONCE_INIT;

static int level_index(const grid_source *s, int8_t byte) {
    for (int l = 0; l < s->n_levels; l++)
        if (s->level[l] == (float)byte) return l;
    return -1; /* not a level: the tables are generated, so never */
}

static int key_of_levels(const iq_grid *g, const uint8_t *levels) {
    int key = 0;
    for (int i = g->dim - 1; i >= 0; i--) key = key * g->n_levels + levels[i];
    return key;
}

/* Squared distance, in level steps, between a key's levels and an entry's. */
static int level_distance(const iq_grid *g, const uint8_t *a, const uint8_t *b) {
    int dist = 0;
    for (int i = 0; i < g->dim; i++) dist += (a[i] - b[i]) * (a[i] - b[i]);
    return dist;
}

/* The entries nearest to an off-grid key, nearest first, appended to g->lists at *used. */
static void list_neighbours(iq_grid *g, const uint8_t *levels, int slack, size_t *used) {
    int dist[2048], best = 1 << 30;
    for (int e = 0; e < g->n_entries; e++) {
        dist[e] = level_distance(g, levels, g->entry_level + (size_t)e * g->dim);
        if (dist[e] < best) best = dist[e];
    }
    uint16_t *list = g->lists + *used, count = 0;
    for (int d = best; d <= best + slack; d++)
        for (int e = 0; e < g->n_entries && count < MAX_NEIGHBOURS; e++)
            if (dist[e] == d) list[1 + count++] = (uint16_t)e;
    list[0] = count;
    *used += 1 + (size_t)count;
}

static void build_grid(iq_grid *g, const grid_source *s) {
    g->dim = s->dim;
    g->n_levels = s->n_levels;
    g->n_entries = s->n_entries;
    memcpy(g->level, s->level, sizeof g->level);
    int n_keys = 1;
    for (int i = 0; i < g->dim; i++) n_keys *= g->n_levels;
    g->entry_level = malloc((size_t)g->n_entries * g->dim);
    g->key = malloc((size_t)n_keys * sizeof *g->key);
    g->lists = malloc((size_t)n_keys * (1 + MAX_NEIGHBOURS) * sizeof *g->lists);
    if (!g->entry_level || !g->key || !g->lists) abort(); /* a few hundred KiB, once */
    for (int k = 0; k < n_keys; k++) g->key[k] = INT32_MIN;
    for (int e = 0; e < g->n_entries; e++) {
        uint64_t bits = g->dim == 8 ? ((const uint64_t *)s->table)[e] : ((const uint32_t *)s->table)[e];
        for (int i = 0; i < g->dim; i++) g->entry_level[e * g->dim + i] = (uint8_t)level_index(s, (int8_t)(bits >> 8 * i));
        g->key[key_of_levels(g, g->entry_level + e * g->dim)] = e;
    }
    size_t used = 0;
    for (int k = 0; k < n_keys; k++) {
        if (g->key[k] != INT32_MIN) continue;
        uint8_t levels[MAX_DIM];
        for (int i = 0, rest = k; i < g->dim; i++, rest /= g->n_levels) levels[i] = (uint8_t)(rest % g->n_levels);
        g->key[k] = -1 - (int32_t)used;
        list_neighbours(g, levels, s->slack, &used);
    }
    uint16_t *fitted = realloc(g->lists, used * sizeof *g->lists);
    if (fitted) g->lists = fitted;
}

static void build_grids(void) {
    for (int i = 0; i < Q3_IQ_GRID_COUNT; i++) build_grid(&grids[i], &SOURCES[i]);
}

/* Index of the level nearest u. */
static int nearest_level(const iq_grid *g, float u) {
    int l = 0;
    while (l + 1 < g->n_levels && u > 0.5f * (g->level[l] + g->level[l + 1])) l++;
    return l;
}

static float entry_error(const iq_grid *g, int e, const float *u, const float *w) {
    const uint8_t *levels = g->entry_level + (size_t)e * g->dim;
    float err = 0;
    for (int i = 0; i < g->dim; i++) {
        float diff = u[i] - g->level[levels[i]];
        err += w[i] * diff * diff;
    }
    return err;
}

/* The entry nearest to u (in level units) under weights w: the rounded levels when they are on
 * the grid (then no entry is nearer), else the best of the key's listed neighbours. */
static int nearest_entry(const iq_grid *g, const float *u, const float *w) {
    uint8_t levels[MAX_DIM];
    for (int i = 0; i < g->dim; i++) levels[i] = (uint8_t)nearest_level(g, u[i]);
    int32_t k = g->key[key_of_levels(g, levels)];
    if (k >= 0) return k;
    const uint16_t *list = g->lists + (-1 - k);
    int best = list[1];
    float best_err = entry_error(g, best, u, w);
    for (int n = 2; n <= list[0]; n++) {
        float err = entry_error(g, list[n], u, w);
        if (err < best_err) best_err = err, best = list[n];
    }
    return best;
}

/* ---- weights and signs ---- */

void q3_iq_weights(const float *x, const float *importance, int n, float *w) {
    float sum_x2 = 0, sum_w = 0;
    for (int i = 0; i < n; i++) sum_x2 += x[i] * x[i];
    float sigma2 = 2 * sum_x2 / (float)n;
    if (importance) {
        for (int i = 0; i < n; i++) sum_w += w[i] = importance[i] * sqrtf(sigma2 + x[i] * x[i]);
        if (sum_w > 0) return;
    }
    /* No importance, or none for these columns (an expert no token reached): every column as
     * important as the next. */
    for (int i = 0; i < n; i++) w[i] = sqrtf(sigma2 + x[i] * x[i]);
}

uint8_t q3_iq_split_signs(const float *x, const float *w, int even_signs, float *t) {
    uint8_t signs = 0;
    int least = 0;
    for (int i = 0; i < 8; i++) {
        t[i] = fabsf(x[i]);
        if (x[i] < 0) signs |= (uint8_t)(1u << i);
        if (w[i] * x[i] * x[i] < w[least] * x[least] * x[least]) least = i;
    }
    if (even_signs && __builtin_parity(signs)) {
        signs ^= (uint8_t)(1u << least);
        t[least] = -t[least];
    }
    return signs;
}

/* ---- fitting ---- */

typedef struct sums {
    float err;    /* sum w (t - scale * v)^2 */
    float tv, vv; /* sum w t v and sum w v^2, v the grid values: the least-squares scale's parts */
} sums;

/* n targets (a multiple of the grid's width) at scale S > 0 with one shift: each group's
 * nearest entry, and the sums of the fit. */
static sums assign_run(const iq_grid *g, const float *t, const float *w, int n, float S, float shift,
                       uint16_t *entry) {
    sums r = {0, 0, 0};
    float u[MAX_DIM], inv = 1 / S;
    for (int o = 0; o < n; o += g->dim) {
        for (int i = 0; i < g->dim; i++) u[i] = t[o + i] * inv - shift;
        int e = nearest_entry(g, u, w + o);
        entry[o / g->dim] = (uint16_t)e;
        for (int i = 0; i < g->dim; i++) {
            float v = g->level[g->entry_level[e * g->dim + i]] + shift, diff = t[o + i] - S * v;
            r.err += w[o + i] * diff * diff;
            r.tv += w[o + i] * t[o + i] * v;
            r.vv += w[o + i] * v * v;
        }
    }
    return r;
}

/* A sub-block at scale S: every shift run with the better of its two shifts (or none). */
static sums assign_sub(const q3_iq_spec *s, const iq_grid *g, const float *t, const float *w, float S,
                       uint16_t *entry, uint8_t *negative) {
    if (!s->shift_run) return assign_run(g, t, w, s->sub, S, 0, entry);
    sums total = {0, 0, 0};
    for (int o = 0; o < s->sub; o += s->shift_run) {
        uint16_t alt[Q3_IQ_MAX_UNITS];
        uint16_t *mine = entry + o / g->dim;
        sums plus = assign_run(g, t + o, w + o, s->shift_run, S, Q3_IQ1_DELTA, mine);
        sums minus = assign_run(g, t + o, w + o, s->shift_run, S, -Q3_IQ1_DELTA, alt);
        negative[o / s->shift_run] = minus.err < plus.err;
        if (minus.err < plus.err) {
            memcpy(mine, alt, (size_t)(s->shift_run / g->dim) * sizeof *alt);
            plus = minus;
        }
        total.err += plus.err, total.tv += plus.tv, total.vv += plus.vv;
    }
    return total;
}

/* Candidate scales map a sub-block's largest target to 0.7 .. 2.3 times the top level, in
 * geometric steps: the few-level grids fit best when their top level clips the extremes. */
#define N_SCALE_TRIALS 24
static float scale_trial(int k) { return 0.7f * powf(2.3f / 0.7f, (float)k / N_SCALE_TRIALS); }

/* The scale of one sub-block: candidates map its largest target to 0.7 .. 1.4 of the top
 * level; the least-squares refit of the best rounding wins, then is rounded again at its own
 * scale. Returns 0 for a sub-block without weight. */
static float fit_sub(const q3_iq_spec *s, const iq_grid *g, const float *t, const float *w, uint16_t *entry,
                     uint8_t *negative) {
    float tmax = 0, total = 0;
    for (int i = 0; i < s->sub; i++) {
        if (fabsf(t[i]) > tmax) tmax = fabsf(t[i]);
        total += w[i] * t[i] * t[i];
    }
    if (tmax == 0 || total == 0) {
        memset(entry, 0, (size_t)(s->sub / g->dim) * sizeof *entry);
        return 0;
    }
    float top = g->level[g->n_levels - 1] + (s->shift_run ? Q3_IQ1_DELTA : 0);
    float best_err = total, best_S = 0;
    for (int k = 0; k <= N_SCALE_TRIALS; k++) {
        uint16_t trial[Q3_IQ_MAX_UNITS];
        uint8_t neg[32];
        sums r = assign_sub(s, g, t, w, tmax / (top * scale_trial(k)), trial, neg);
        if (r.tv <= 0 || r.vv <= 0) continue;
        float err = total - r.tv * r.tv / r.vv; /* the error at the refitted scale */
        if (err < best_err) best_err = err, best_S = r.tv / r.vv;
    }
    if (best_S == 0) return 0;
    for (int pass = 0; pass < 2; pass++) {
        sums r = assign_sub(s, g, t, w, best_S, entry, negative);
        if (r.tv <= 0 || r.vv <= 0) break;
        best_S = r.tv / r.vv;
    }
    assign_sub(s, g, t, w, best_S, entry, negative);
    return best_S;
}

/* Sub-block j against the stored d: the multiplier nearest its own scale, or a neighbour of it
 * where the rounding fits better. Returns the sums of the fit (for the refit of d). */
static sums quantize_sub(const q3_iq_spec *s, const iq_grid *g, const float *t, const float *w, float d,
                         float scale, int j, q3_iq_fit *fit) {
    int units = s->sub / g->dim, runs = s->shift_run ? s->sub / s->shift_run : 0;
    uint16_t *entry = fit->entry + j * units;
    uint8_t *negative = fit->shift_negative + j * runs;
    int k0 = q3_clamp_int(q3_nearest_int((scale / (d * s->unit) - 1) / 2), 0, s->k_max);
    sums best = {INFINITY, 0, 0};
    for (int k = k0 - 1; k <= k0 + 1; k++) {
        if (k < 0 || k > s->k_max) continue;
        uint16_t trial[Q3_IQ_MAX_UNITS];
        uint8_t neg[32];
        sums r = assign_sub(s, g, t, w, d * s->unit * (float)(2 * k + 1), trial, neg);
        if (r.err < best.err) {
            best = r;
            fit->k[j] = (uint8_t)k;
            memcpy(entry, trial, (size_t)units * sizeof *trial);
            if (runs) memcpy(negative, neg, (size_t)runs);
        }
    }
    return best;
}

void q3_iq_fit_block(const q3_iq_spec *s, const float *t, const float *w, q3_iq_fit *fit) {
    pthread_once(&grids_once, build_grids);
    const iq_grid *g = &grids[s->grid];
    int n_sub = Q3_QK_K / s->sub, units = s->sub / g->dim, runs = s->shift_run ? s->sub / s->shift_run : 0;
    float scale[16], max_scale = 0;
    memset(fit, 0, sizeof *fit);
    for (int j = 0; j < n_sub; j++) {
        scale[j] = fit_sub(s, g, t + s->sub * j, w + s->sub * j, fit->entry + j * units,
                           fit->shift_negative + j * runs);
        if (scale[j] > max_scale) max_scale = scale[j];
    }
    float d = q3_f16_to_f32(q3_f32_to_f16(max_scale / (s->unit * (float)(2 * s->k_max + 1))));
    if (d == 0) return;
    /* Multipliers against the stored d, then d refitted to them by least squares. */
    float tv = 0, vv = 0;
    for (int j = 0; j < n_sub; j++) {
        sums r = quantize_sub(s, g, t + s->sub * j, w + s->sub * j, d, scale[j], j, fit);
        float m = s->unit * (float)(2 * fit->k[j] + 1);
        tv += m * r.tv, vv += m * m * r.vv;
    }
    if (tv > 0 && vv > 0) {
        float tt = 0;
        for (int i = 0; i < Q3_QK_K; i++) tt += w[i] * t[i] * t[i];
        float least_squares = tv / vv, unbiased = tt / tv;
        d = q3_f16_to_f32(q3_f32_to_f16(least_squares + s->unbias * (unbiased - least_squares)));
    }
    if (d == 0) return;
    for (int j = 0; j < n_sub; j++)
        assign_sub(s, g, t + s->sub * j, w + s->sub * j, d * s->unit * (float)(2 * fit->k[j] + 1),
                   fit->entry + j * units, fit->shift_negative + j * runs);
    fit->d = d;
}

void q3_iq_fit_row_block(const q3_iq_spec *spec, const float *x, const float *importance, int64_t i, int even_signs,
                         uint8_t *signs, q3_iq_fit *fit) {
    const float *block = x + Q3_QK_K * i;
    float w[Q3_QK_K], t[Q3_QK_K];
    q3_iq_weights(block, importance ? importance + Q3_QK_K * i : NULL, Q3_QK_K, w);
    if (signs)
        for (int r = 0; r < 32; r++) signs[r] = q3_iq_split_signs(block + 8 * r, w + 8 * r, even_signs, t + 8 * r);
    q3_iq_fit_block(spec, signs ? t : block, w, fit);
}
