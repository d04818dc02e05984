/* Sampling: penalties, temperature, top-k / top-p / min-p truncation and the draw, for one
 * sequence at a time, without allocating and without sorting the whole vocabulary.
 *
 * Three ways through, chosen by the parameters:
 *   - top-k on: one pass keeps the k best in a k-sized heap; only those k are sorted.
 *   - top-p on, top-k off: a histogram of probability mass over probability buckets finds the
 *     bucket where the nucleus ends; only the tokens in that bucket are sorted.
 *   - neither: no ranking at all; min-p is a threshold.
 * Over the whole vocabulary the draw first picks a block of tokens by the blocks' sums, then a
 * token inside it. Every ranking is total (ties go to the lowest id), so a seed fixes the tokens
 * exactly. */
#include "text/sampler.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Top-p buckets a token by its probability relative to the top token (0 < p <= 1) through the
 * float's leading bits, the exponent and 4 mantissa bits: 16 buckets per halving, 0.043 nats
 * wide. Bucket order is exactly the order of p, so every token of a better bucket outranks every
 * token of the bucket where the nucleus ends. */
#define BUCKET_SHIFT 19
#define ONE_BITS 0x3f800000u
#define N_BUCKETS ((int)(ONE_BITS >> BUCKET_SHIFT) + 1)

/* Tokens per block of the draw's first step. */
#define DRAW_BLOCK 64

/* A window longer than any context; bounds the ring buffer a request can make us allocate. */
#define PENALTY_LAST_N_MAX (1 << 24)

struct q3_sampler {
    q3_sampling p;
    int n_vocab;
    uint64_t seed;
    uint64_t rng[4];        /* xoshiro256** state */

    /* Penalty history, kept only when a penalty is on. Counts cover the window of the last
     * penalty_last_n tokens (all tokens for -1); seen lists the tokens with a count, so that
     * penalising costs the number of distinct tokens, not the vocabulary. */
    int32_t *count_all;     /* [n_vocab] occurrences in the window, prompt and output */
    int32_t *count_out;     /* [n_vocab] occurrences in the window, output only */
    int32_t *seen;          /* [n_vocab] distinct tokens with count_all > 0, in no order */
    int32_t *seen_at;       /* [n_vocab] where a token with count_all > 0 sits in seen */
    int n_seen;
    uint32_t *window;       /* [penalty_last_n] ring of token << 1 | is_output, when n > 0 */
    int window_len, window_start;
    float *saved;           /* [n_vocab] logits of seen tokens before their penalties */

    /* Scratch for one call. */
    float *prob;            /* [n_vocab] unnormalised probabilities, in vocabulary order */
    double *block_sum;      /* [n_vocab / DRAW_BLOCK, rounded up] sums of prob by block */
    float *cand_v;          /* [n_vocab] candidates' logits while ranking, then probabilities */
    int32_t *cand_id;       /* [n_vocab] candidates' ids */
    float *work;            /* [n_vocab] a copy of the logits for masked draws; NULL until needed */
    int32_t *bias_id;       /* logit_bias, n_bias entries */
    float *bias;
    int n_bias;
    double bucket_mass[N_BUCKETS];
};

/* ---- parameters ---- */

q3_sampling q3_sampling_defaults(void) {
    return (q3_sampling){
        .temperature = 1.0f,
        .top_k = 0,
        .top_p = 1.0f,
        .min_p = 0.0f,
        .repetition_penalty = 1.0f,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .penalty_last_n = -1,
        .seed = Q3_SEED_RANDOM,
    };
}

/* The tests are written as !(in range) so that NaN fails them too. */
q3_status q3_sampling_check(const q3_sampling *p, q3_error *e) {
    if (!(p->temperature >= 0 && isfinite(p->temperature)))
        return q3_fail(e, Q3_EINVAL, "temperature %g: must be a number >= 0",
                       (double)p->temperature);
    if (!(p->top_p >= 0 && p->top_p <= 1))
        return q3_fail(e, Q3_EINVAL, "top_p %g: must be in [0, 1]", (double)p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return q3_fail(e, Q3_EINVAL, "min_p %g: must be in [0, 1]", (double)p->min_p);
    if (!(p->repetition_penalty > 0 && isfinite(p->repetition_penalty)))
        return q3_fail(e, Q3_EINVAL, "repetition_penalty %g: must be a number > 0",
                       (double)p->repetition_penalty);
    if (!isfinite(p->presence_penalty))
        return q3_fail(e, Q3_EINVAL, "presence_penalty %g: must be a finite number",
                       (double)p->presence_penalty);
    if (!isfinite(p->frequency_penalty))
        return q3_fail(e, Q3_EINVAL, "frequency_penalty %g: must be a finite number",
                       (double)p->frequency_penalty);
    if (p->penalty_last_n < -1 || p->penalty_last_n > PENALTY_LAST_N_MAX)
        return q3_fail(e, Q3_EINVAL, "penalty_last_n %d: must be -1 (all), 0 (none) or up to %d",
                       p->penalty_last_n, PENALTY_LAST_N_MAX);
    return Q3_OK;
}

static bool has_penalties(const q3_sampling *p) {
    return p->penalty_last_n != 0 &&
           (p->repetition_penalty != 1 || p->presence_penalty != 0 || p->frequency_penalty != 0);
}

/* ---- random numbers ---- */

/* splitmix64 (Steele, Lea and Flood): spreads one 64-bit seed over xoshiro's 256 bits of state,
 * so that nearby seeds give unrelated streams and the state is never all zero. */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** (Blackman and Vigna): small, fast, and statistically sound for sampling. */
static uint64_t rng_next(uint64_t st[4]) {
    uint64_t result = rotl(st[1] * 5, 7) * 9;
    uint64_t t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return result;
}

/* Uniform in [0, 1): the top 53 bits, exactly representable as a double. */
static double rng_uniform(uint64_t st[4]) { return (double)(rng_next(st) >> 11) * 0x1.0p-53; }

static void rng_seed(uint64_t st[4], uint64_t seed) {
    for (int i = 0; i < 4; i++) st[i] = splitmix64(&seed);
}

static uint64_t seed_from_clock(void) {
    static atomic_uint_fast64_t calls;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    /* Samplers made within the same clock tick still get different seeds. */
    x ^= (uint64_t)atomic_fetch_add(&calls, 1) * 0xd1b54a32d192ed03ULL;
    uint64_t seed = splitmix64(&x);
    return seed == Q3_SEED_RANDOM ? 0 : seed;
}

/* ---- the sampler's lifetime ---- */

q3_status q3_sampler_new(q3_sampler **out, const q3_sampling *p, int n_vocab, q3_error *e) {
    *out = NULL;
    q3_status st = q3_sampling_check(p, e);
    if (st) return st;
    if (n_vocab <= 0) return q3_fail(e, Q3_EINVAL, "sampler: vocabulary of %d tokens", n_vocab);
    q3_sampler *s = calloc(1, sizeof *s);
    if (!s) return q3_fail(e, Q3_ENOMEM, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    size_t n = (size_t)n_vocab;
    size_t n_blocks = (n + DRAW_BLOCK - 1) / DRAW_BLOCK;
    bool ok = (s->prob = malloc(n * sizeof *s->prob)) &&
              (s->block_sum = malloc(n_blocks * sizeof *s->block_sum)) &&
              (s->cand_v = malloc(n * sizeof *s->cand_v)) &&
              (s->cand_id = malloc(n * sizeof *s->cand_id));
    if (ok && has_penalties(p)) {
        ok = (s->count_all = calloc(n, sizeof *s->count_all)) &&
             (s->count_out = calloc(n, sizeof *s->count_out)) &&
             (s->seen = malloc(n * sizeof *s->seen)) &&
             (s->seen_at = malloc(n * sizeof *s->seen_at)) &&
             (s->saved = malloc(n * sizeof *s->saved));
        if (ok && p->penalty_last_n > 0)
            ok = (s->window = malloc((size_t)p->penalty_last_n * sizeof *s->window)) != NULL;
    }
    if (!ok) {
        q3_sampler_free(s);
        return q3_fail(e, Q3_ENOMEM, "sampler: out of memory for a vocabulary of %d", n_vocab);
    }
    s->seed = p->seed == Q3_SEED_RANDOM ? seed_from_clock() : p->seed;
    rng_seed(s->rng, s->seed);
    *out = s;
    return Q3_OK;
}

void q3_sampler_free(q3_sampler *s) {
    if (!s) return;
    free(s->count_all);
    free(s->count_out);
    free(s->seen);
    free(s->seen_at);
    free(s->window);
    free(s->saved);
    free(s->prob);
    free(s->block_sum);
    free(s->cand_v);
    free(s->cand_id);
    free(s->work);
    free(s->bias_id);
    free(s->bias);
    free(s);
}

uint64_t q3_sampler_seed(const q3_sampler *s) { return s->seed; }

/* ---- penalty history ---- */

static void count_add(q3_sampler *s, int32_t t, bool is_output) {
    if (s->count_all[t]++ == 0) {
        s->seen_at[t] = s->n_seen;
        s->seen[s->n_seen++] = t;
    }
    s->count_out[t] += is_output;
}

static void count_remove(q3_sampler *s, int32_t t, bool is_output) {
    s->count_out[t] -= is_output;
    if (--s->count_all[t] == 0) {
        /* Swap-remove: order in seen does not matter, each token is penalised on its own. */
        int at = s->seen_at[t];
        int32_t moved = s->seen[--s->n_seen];
        s->seen[at] = moved;
        s->seen_at[moved] = at;
    }
}

static void record(q3_sampler *s, int32_t t, bool is_output) {
    if (!s->count_all || t < 0 || t >= s->n_vocab) return;
    if (s->window) {
        int cap = s->p.penalty_last_n;
        uint32_t entry = (uint32_t)t << 1 | is_output;
        if (s->window_len < cap) {
            s->window[(s->window_start + s->window_len++) % cap] = entry;
        } else {
            /* Full: the oldest token leaves the window and its slot takes the new one. */
            uint32_t old = s->window[s->window_start];
            count_remove(s, (int32_t)(old >> 1), old & 1);
            s->window[s->window_start] = entry;
            s->window_start = (s->window_start + 1) % cap;
        }
    }
    count_add(s, t, is_output);
}

void q3_sampler_accept_prompt(q3_sampler *s, const int32_t *tokens, int n) {
    for (int i = 0; i < n; i++) record(s, tokens[i], false);
}

void q3_sampler_accept(q3_sampler *s, int32_t token) { record(s, token, true); }

void q3_sampler_apply_penalties(const q3_sampler *s, float *logits, int n_vocab) {
    const q3_sampling *p = &s->p;
    if (!s->count_all) return;
    for (int i = 0; i < s->n_seen; i++) {
        int32_t t = s->seen[i];
        if (t >= n_vocab) continue;
        float l = logits[t];
        if (p->repetition_penalty != 1)
            l = l > 0 ? l / p->repetition_penalty : l * p->repetition_penalty;
        int n_out = s->count_out[t];
        l -= p->presence_penalty * (float)(n_out > 0) + p->frequency_penalty * (float)n_out;
        logits[t] = l;
    }
}

/* ---- ranking ---- */

/* Whether candidate a ranks below candidate b: a lower value, or the same value and a higher id.
 * Every ranking here uses it, so all are total and ties go to the lowest id. */
static inline bool ranks_below(float va, int32_t ia, float vb, int32_t ib) {
    return va < vb || (va == vb && ia > ib);
}

/* Restores the order below node i of a heap whose root is its lowest-ranked candidate. */
static void sift_down(float *v, int32_t *id, int n, int i) {
    for (;;) {
        int low = i, left = 2 * i + 1, right = left + 1;
        if (left < n && ranks_below(v[left], id[left], v[low], id[low])) low = left;
        if (right < n && ranks_below(v[right], id[right], v[low], id[low])) low = right;
        if (low == i) return;
        float tv = v[i];
        int32_t ti = id[i];
        v[i] = v[low], id[i] = id[low];
        v[low] = tv, id[low] = ti;
        i = low;
    }
}

/* Heapsort, best first: the heap's root is its lowest-ranked, moved to the end each time. */
static void sort_best_first(float *v, int32_t *id, int n) {
    for (int i = n / 2 - 1; i >= 0; i--) sift_down(v, id, n, i);
    for (int end = n - 1; end > 0; end--) {
        float tv = v[0];
        int32_t ti = id[0];
        v[0] = v[end], id[0] = id[end];
        v[end] = tv, id[end] = ti;
        sift_down(v, id, end, 0);
    }
}

/* The k best of values[0..n) (NaN skipped) into v and id, best first; returns how many, fewer
 * than k only when there are fewer. One pass against a k-sized heap whose root is the weakest
 * kept: most tokens cost one comparison with it. */
static int select_best(const float *values, int n, int k, float *v, int32_t *id) {
    if (k <= 0) return 0;
    int m = 0, i = 0;
    for (; i < n && m < k; i++) {
        if (isnan(values[i])) continue;
        v[m] = values[i];
        id[m++] = i;
    }
    for (int j = m / 2 - 1; j >= 0; j--) sift_down(v, id, m, j);
    /* Strictly greater: an equal value comes with a higher id, so it ranks below the root. */
    for (; i < n; i++)
        if (values[i] > v[0]) {
            v[0] = values[i];
            id[0] = i;
            sift_down(v, id, m, 0);
        }
    sort_best_first(v, id, m);
    return m;
}

/* The largest logit, NaN ignored. Eight running maxima keep the comparisons independent of
 * each other, so they overlap in the pipeline (or become vector instructions). */
static float max_logit(const float *logits, int n) {
    float lane[8];
    for (int j = 0; j < 8; j++) lane[j] = -INFINITY;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) lane[j] = logits[i + j] > lane[j] ? logits[i + j] : lane[j];
    float m = -INFINITY;
    for (; i < n; i++) m = logits[i] > m ? logits[i] : m;
    for (int j = 0; j < 8; j++) m = lane[j] > m ? lane[j] : m;
    return m;
}

/* The first token holding the largest logit; 0 when every logit is NaN. */
static int32_t argmax(const float *logits, int n) {
    float m = max_logit(logits, n);
    for (int i = 0; i < n; i++)
        if (logits[i] == m) return i;
    return 0;
}

/* ---- truncation and the draw ---- */

/* How many of the top-k candidates p[0..n) (best first, probabilities relative to the best one's
 * 1, summing to z) survive top-p and then min-p. Each keeps a head of the ranking, and
 * renormalising after top-p does not move the min-p line (p / p_max), so one walk that stops at
 * whichever ends first applies them in turn. The best candidate always stays. */
static int truncated_size(const float *p, int n, double z, float top_p, float min_p) {
    double target = (double)top_p * z, cum = 0;
    int kept = 0;
    while (kept < n && (kept == 0 || p[kept] >= min_p)) {
        cum += p[kept++];
        if (cum >= target) break;
    }
    return kept;
}

/* The first index where the running sum of w[0..n) (weights >= 0) passes target; the last one
 * with weight when rounding leaves target at or past the sum. A zero weight is never chosen. */
static int walk_to(const float *w, int n, double target) {
    double cum = 0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (!(w[i] > 0)) continue;
        cum += w[i];
        last = i;
        if (target < cum) return i;
    }
    return last;
}

/* Sums w[0..n) by blocks of DRAW_BLOCK into block_sum and returns the total. Eight running sums
 * per block keep the additions independent of each other. */
static double sum_blocks(const float *w, int n, double *block_sum) {
    double total = 0;
    for (int b = 0, start = 0; start < n; b++, start += DRAW_BLOCK) {
        int end = n - start > DRAW_BLOCK ? start + DRAW_BLOCK : n, i = start;
        float lane[8] = {0};
        for (; i + 8 <= end; i += 8)
            for (int j = 0; j < 8; j++) lane[j] += w[i + j];
        double sum = 0;
        for (int j = 0; j < 8; j++) sum += lane[j];
        for (; i < end; i++) sum += w[i];
        block_sum[b] = sum;
        total += sum;
    }
    return total;
}

/* An index drawn from the weights w[0..n) (summing to total > 0) with u uniform in [0, 1): the
 * block holding the target first, then the token inside it. */
static int draw_blocks(const float *w, int n, const double *block_sum, double total, double u) {
    int n_blocks = (n + DRAW_BLOCK - 1) / DRAW_BLOCK, b = 0, last = 0;
    double target = u * total, before = 0;
    for (; b < n_blocks; b++) {
        if (!(block_sum[b] > 0)) continue;
        if (target < before + block_sum[b]) break;
        last = b;
        before += block_sum[b];
    }
    double within = target - before;
    if (b == n_blocks) b = last, within = INFINITY; /* rounding: the last token with weight */
    int start = b * DRAW_BLOCK, len = n - start > DRAW_BLOCK ? DRAW_BLOCK : n - start;
    return start + walk_to(w + start, len, within);
}

/* Top-k first (a heap over the vocabulary), then top-p and min-p over the k candidates. */
static int32_t sample_top_k(q3_sampler *s, const float *logits, int n, float inv_temp, double u) {
    float *p = s->cand_v;
    int32_t *id = s->cand_id;
    int m = select_best(logits, n, s->p.top_k, p, id);
    if (m == 0 || !isfinite(p[0])) return argmax(logits, n);
    float top = p[0];
    double z = 0;
    for (int i = 0; i < m; i++) {
        p[i] = expf((p[i] - top) * inv_temp);
        z += p[i];
    }
    int kept = truncated_size(p, m, z, s->p.top_p, s->p.min_p);
    double total = 0;
    for (int i = 0; i < kept; i++) total += p[i];
    return id[walk_to(p, kept, u * total)];
}

static int bucket_of(float p) {
    uint32_t bits;
    memcpy(&bits, &p, sizeof bits);
    return (int)((ONE_BITS - (bits < ONE_BITS ? bits : ONE_BITS)) >> BUCKET_SHIFT);
}

/* Top-p over the whole vocabulary without sorting it. The probability mass is bucketed by the
 * tokens' probabilities; every bucket better than the one where the cumulative mass reaches top_p
 * lies wholly inside the nucleus, and only the tokens of that last bucket are ranked, to find the
 * cut inside it exactly. The nucleus is then everything that ranks at or above the weakest token
 * kept, and min-p a threshold on top of it. */
static int32_t sample_top_p(q3_sampler *s, const float *logits, int n, float top, float inv_temp,
                            double u) {
    float *prob = s->prob, *cand_v = s->cand_v;
    int32_t *cand_id = s->cand_id;
    double *mass = s->bucket_mass;
    memset(mass, 0, sizeof s->bucket_mass);
    for (int i = 0; i < n; i++) {
        float p = expf((logits[i] - top) * inv_temp);
        prob[i] = p = p > 0 ? p : 0; /* NaN weighs nothing */
        mass[bucket_of(p)] += p;
    }
    double z = 0;
    for (int b = 0; b < N_BUCKETS; b++) z += mass[b];
    double target = (double)s->p.top_p * z, above = 0;
    int last = 0;
    while (last < N_BUCKETS - 1 && above + mass[last] < target) above += mass[last++];

    int m = 0;
    for (int i = 0; i < n; i++)
        if (bucket_of(prob[i]) == last && prob[i] > 0) {
            cand_v[m] = prob[i];
            cand_id[m++] = i;
        }
    sort_best_first(cand_v, cand_id, m);
    double cum = above;
    int cut = 0; /* at least one: the nucleus still lacks mass when it reaches this bucket */
    while (cut < m && (cum += cand_v[cut++]) < target) {}
    float weakest = cut ? cand_v[cut - 1] : 0, min_p = s->p.min_p;
    int32_t weakest_id = cut ? cand_id[cut - 1] : n;

    /* Which tokens stay follows no pattern in id order: a multiply by 0 or 1, not a branch. */
    for (int i = 0; i < n; i++) {
        float p = prob[i];
        bool inside = (p > weakest) | ((p == weakest) & (i <= weakest_id));
        prob[i] = p * (float)(inside & (p >= min_p));
    }
    double total = sum_blocks(prob, n, s->block_sum);
    return draw_blocks(prob, n, s->block_sum, total, u);
}

/* No top-k or top-p: min-p is a plain threshold. */
static int32_t sample_full(q3_sampler *s, const float *logits, int n, float top, float inv_temp,
                           double u) {
    float min_p = s->p.min_p;
    for (int i = 0; i < n; i++) {
        float p = expf((logits[i] - top) * inv_temp);
        p = p > 0 ? p : 0; /* NaN weighs nothing */
        s->prob[i] = p * (float)(p >= min_p); /* not a branch: min-p cuts in no pattern */
    }
    double total = sum_blocks(s->prob, n, s->block_sum);
    return draw_blocks(s->prob, n, s->block_sum, total, u);
}

static int32_t pick(q3_sampler *s, const float *logits, int n) {
    const q3_sampling *p = &s->p;
    if (p->temperature == 0) return argmax(logits, n);
    /* One draw per call whatever the path, so the stream of draws depends on the calls alone. */
    double u = rng_uniform(s->rng);
    float inv_temp = 1.0f / p->temperature;
    if (!isfinite(inv_temp)) return argmax(logits, n);
    if (p->top_k > 0 && p->top_k < n) return sample_top_k(s, logits, n, inv_temp, u);
    float top = max_logit(logits, n);
    if (!isfinite(top)) return argmax(logits, n);
    if (p->top_p < 1) return sample_top_p(s, logits, n, top, inv_temp, u);
    return sample_full(s, logits, n, top, inv_temp, u);
}

int32_t q3_sampler_sample(q3_sampler *s, float *logits, int n_vocab) {
    if (n_vocab > s->n_vocab) n_vocab = s->n_vocab;
    if (n_vocab <= 0) return 0;
    bool penalise = s->count_all && s->n_seen > 0;
    if (penalise) {
        for (int i = 0; i < s->n_seen; i++)
            if (s->seen[i] < n_vocab) s->saved[i] = logits[s->seen[i]];
        q3_sampler_apply_penalties(s, logits, n_vocab);
    }
    int32_t token = pick(s, logits, n_vocab);
    if (penalise)
        for (int i = 0; i < s->n_seen; i++)
            if (s->seen[i] < n_vocab) logits[s->seen[i]] = s->saved[i];
    return token;
}

q3_status q3_sampler_set_bias(q3_sampler *s, const int32_t *ids, const float *bias, int n, q3_error *e) {
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= s->n_vocab)
            return q3_fail(e, Q3_EINVAL, "logit_bias: token %d is outside the vocabulary", ids[i]);
        if (!isfinite(bias[i])) return q3_fail(e, Q3_EINVAL, "logit_bias: the bias of token %d is not a number", ids[i]);
    }
    int32_t *id_copy = malloc((size_t)(n ? n : 1) * sizeof *id_copy);
    float *bias_copy = malloc((size_t)(n ? n : 1) * sizeof *bias_copy);
    if (!id_copy || !bias_copy) {
        free(id_copy);
        free(bias_copy);
        return q3_fail(e, Q3_ENOMEM, "sampler: out of memory for logit_bias");
    }
    memcpy(id_copy, ids, (size_t)n * sizeof *ids);
    memcpy(bias_copy, bias, (size_t)n * sizeof *bias);
    free(s->bias_id);
    free(s->bias);
    s->bias_id = id_copy;
    s->bias = bias_copy;
    s->n_bias = n;
    return Q3_OK;
}

int32_t q3_sampler_sample_masked(q3_sampler *s, const float *logits, int n_vocab, const uint64_t *allow) {
    if (n_vocab > s->n_vocab) n_vocab = s->n_vocab;
    if (n_vocab <= 0) return -1;
    if (!s->work && !(s->work = malloc((size_t)s->n_vocab * sizeof *s->work))) return -1;
    float *w = s->work;
    memcpy(w, logits, (size_t)n_vocab * sizeof *w);
    for (int i = 0; i < s->n_bias; i++)
        if (s->bias_id[i] < n_vocab) w[s->bias_id[i]] += s->bias[i];
    bool any = !allow;
    for (int word = 0; allow && word * 64 < n_vocab; word++) {
        uint64_t bits = allow[word];
        int base = word * 64, end = base + 64 < n_vocab ? base + 64 : n_vocab;
        if (bits == ~0ULL && end == base + 64) {
            any = true;
            continue;
        }
        for (int i = base; i < end; i++)
            if (!(bits >> (i - base) & 1)) w[i] = -INFINITY;
            else any = true;
    }
    if (!any) return -1;
    return q3_sampler_sample(s, w, n_vocab);
}

/* ---- log-probabilities ---- */

/* log(sum(exp(logits))), summed in double around the maximum so that nothing overflows. */
static double log_sum_exp(const float *logits, int n) {
    float top = max_logit(logits, n);
    if (!isfinite(top)) return top;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += expf(logits[i] - top);
    return (double)top + log(sum);
}

int q3_logprobs(const float *logits, int n_vocab, int32_t chosen, float *chosen_logprob, int k, int32_t *ids,
                float *logprobs) {
    double lse = log_sum_exp(logits, n_vocab); /* one pass over the vocabulary for both */
    if (chosen_logprob) *chosen_logprob = (float)((double)logits[chosen] - lse);
    if (k > n_vocab) k = n_vocab;
    int m = k > 0 ? select_best(logits, n_vocab, k, logprobs, ids) : 0;
    for (int i = 0; i < m; i++) logprobs[i] = (float)((double)logprobs[i] - lse);
    return m;
}

int q3_logprobs_top(const float *logits, int n_vocab, int k, int32_t *ids, float *logprobs) {
    return q3_logprobs(logits, n_vocab, 0, NULL, k, ids, logprobs);
}

float q3_logprob_of(const float *logits, int n_vocab, int32_t id) {
    float lp;
    q3_logprobs(logits, n_vocab, id, &lp, 0, NULL, NULL);
    return lp;
}
