/* Perplexity and KL divergence over token windows. Log-softmax in double: a 151936-way sum in
 * float loses the digits the comparison with the reference needs. */
#include "eval/perplexity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "base/error.h"

typedef struct model_run {
    q3_kv_cache *kv;
    q3_runner *r;
    float *logits;
} model_run;

static q3_status run_open(model_run *mr, const q3_model *m, const q3_ppl_options *o, q3_error *e) {
    memset(mr, 0, sizeof *mr);
    q3_kv_options ko = {o->kv_type, 64, (o->ctx + 63) / 64, 1, o->ctx};
    q3_status st = q3_kv_cache_new(&mr->kv, m, &ko, e);
    if (!st) st = q3_runner_new(&mr->r, m, o->ctx, o->threads, e);
    if (!st && !(mr->logits = malloc((size_t)o->ctx * q3_model_config(m)->vocab_size * sizeof(float))))
        st = q3_fail(e, Q3_ENOMEM, "perplexity: no memory for %d rows of logits", o->ctx);
    return st;
}

static void run_close(model_run *mr) {
    q3_runner_free(mr->r);
    q3_kv_cache_free(mr->kv);
    free(mr->logits);
}

/* The window's logits: ctx tokens at positions 0.. in one batch, on an empty cache. */
static q3_status run_window(model_run *mr, const int32_t *ids, int ctx, q3_error *e) {
    int32_t *pos = malloc((size_t)ctx * sizeof *pos), *seq = calloc((size_t)ctx, sizeof *seq);
    q3_status st = pos && seq ? Q3_OK : q3_fail(e, Q3_ENOMEM, "perplexity: out of memory");
    for (int i = 0; !st && i < ctx; i++) pos[i] = i;
    q3_kv_cache_truncate(mr->kv, 0, 0);
    q3_batch b = {ctx, ids, pos, seq, NULL};
    if (!st) st = q3_forward(mr->r, mr->kv, &b, mr->logits, e);
    free(pos), free(seq);
    return st;
}

/* log-softmax of row into lp (double), returning the argmax. */
static int log_softmax(const float *row, int n, double *lp) {
    int best = 0;
    for (int i = 1; i < n; i++) if (row[i] > row[best]) best = i;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)row[i] - row[best]);
    double lse = row[best] + log(sum);
    for (int i = 0; i < n; i++) lp[i] = row[i] - lse;
    return best;
}

/* Running sums over the scored positions, and every position's KL for the quantiles. */
typedef struct tally {
    double nll, kld, kld_max;
    int max_window, max_pos;
    long agree;
    double *kls; /* one per scored position, NULL without a base */
    long n_kl;
} tally;

static q3_status tally_open(tally *t, long positions, bool with_base, q3_error *e) {
    memset(t, 0, sizeof *t);
    t->kld_max = -INFINITY;
    if (with_base && !(t->kls = malloc((size_t)positions * sizeof *t->kls)))
        return q3_fail(e, Q3_ENOMEM, "perplexity: no memory for %ld KL values", positions);
    return Q3_OK;
}

static void add_kl(tally *t, double kl, bool same_top, int window, int pos) {
    t->kld += kl;
    if (kl > t->kld_max) t->kld_max = kl, t->max_window = window, t->max_pos = pos;
    t->agree += same_top;
    t->kls[t->n_kl++] = kl;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The quantiles of the KL values, each the sorted value at rank q * (n - 1), halves rounded up. */
static void kl_quantiles(tally *t, double out[5]) {
    static const double q[5] = {0.5, 0.9, 0.95, 0.99, 0.999};
    qsort(t->kls, (size_t)t->n_kl, sizeof *t->kls, cmp_double);
    for (int i = 0; i < 5; i++) out[i] = t->kls[lround(q[i] * (double)(t->n_kl - 1))];
}

static void finish(q3_ppl_result *out, tally *t, bool with_base) {
    out->nll = t->nll / out->scored;
    out->ppl = exp(out->nll);
    if (!with_base || t->n_kl == 0) return;
    out->kld = t->kld / out->scored;
    out->kld_max = t->kld_max;
    out->kld_max_window = t->max_window;
    out->kld_max_pos = t->max_pos;
    out->top1_agree = (double)t->agree / out->scored;
    kl_quantiles(t, out->kld_quantile);
}

static void window_done(const q3_ppl_options *o, q3_ppl_result *out, const tally *t, int w, int windows, int per) {
    out->windows = w + 1;
    out->scored = (w + 1) * per;
    if (o->progress) o->progress(o->progress_ctx, w + 1, windows, exp(t->nll / out->scored));
}

q3_status q3_perplexity(const q3_model *m, const q3_model *base, const int32_t *ids, int n_ids,
                        const q3_ppl_options *o, q3_ppl_result *out, q3_error *e) {
    memset(out, 0, sizeof *out);
    bool half = o->scoring == Q3_PPL_SECOND_HALF;
    int ctx = o->ctx, V = q3_model_config(m)->vocab_size, windows = ctx > 0 ? (half ? n_ids : n_ids - 1) / ctx : 0;
    int first = half ? ctx / 2 : 0, last = half ? ctx - 1 : ctx; /* scored predictions [first, last) */
    if (windows < 1 || first >= last)
        return q3_fail(e, Q3_EINVAL, "perplexity: %d tokens are fewer than one window of %d%s", n_ids, ctx,
                       half ? "" : " + 1");
    if (base && q3_model_config(base)->vocab_size != V)
        return q3_fail(e, Q3_EINVAL, "perplexity: the base model's vocabulary differs");
    if (o->max_windows > 0 && o->max_windows < windows) windows = o->max_windows;
    model_run a, b = {0};
    double *lp = malloc((size_t)V * sizeof *lp), *lq = base ? malloc((size_t)V * sizeof *lq) : NULL;
    q3_status st = run_open(&a, m, o, e);
    if (!st && base) st = run_open(&b, base, o, e);
    if (!st && (!lp || (base && !lq))) st = q3_fail(e, Q3_ENOMEM, "perplexity: out of memory");
    tally t = {0};
    if (!st) st = tally_open(&t, (long)windows * (last - first), base != NULL, e);
    for (int w = 0; !st && w < windows; w++) {
        const int32_t *win = ids + (size_t)w * ctx;
        if ((st = run_window(&a, win, ctx, e)) || (base && (st = run_window(&b, win, ctx, e)))) break;
        for (int i = first; i < last; i++) {
            int top = log_softmax(a.logits + (size_t)i * V, V, lp);
            t.nll -= lp[win[i + 1]];
            if (!base) continue;
            int base_top = log_softmax(b.logits + (size_t)i * V, V, lq);
            double kl = 0;
            for (int v = 0; v < V; v++) kl += exp(lq[v]) * (lq[v] - lp[v]);
            add_kl(&t, kl, top == base_top, w, i);
        }
        window_done(o, out, &t, w, windows, last - first);
    }
    if (!st) finish(out, &t, base != NULL);
    free(t.kls);
    run_close(&a);
    if (base) run_close(&b);
    free(lp), free(lq);
    return st;
}

q3_status q3_perplexity_vs_llama(const q3_model *m, const q3_llama_logits *base, const q3_ppl_options *o,
                                 q3_ppl_result *out, q3_error *e) {
    memset(out, 0, sizeof *out);
    int ctx = base->ctx, V = q3_model_config(m)->vocab_size, first = ctx / 2, windows = base->chunks;
    if (o->ctx != ctx)
        return q3_fail(e, Q3_EINVAL, "%s: saved with n_ctx %d, asked for windows of %d", base->map.path, ctx, o->ctx);
    if (base->vocab != V)
        return q3_fail(e, Q3_EINVAL, "%s: n_vocab %d, the model's vocabulary is %d", base->map.path, base->vocab, V);
    if (o->max_windows > 0 && o->max_windows < windows) windows = o->max_windows;
    model_run a;
    double *lp = malloc((size_t)V * sizeof *lp);
    float *lq = malloc((size_t)V * sizeof *lq);
    int32_t *win = malloc((size_t)ctx * sizeof *win);
    q3_status st = run_open(&a, m, o, e);
    if (!st && (!lp || !lq || !win)) st = q3_fail(e, Q3_ENOMEM, "perplexity: out of memory");
    tally t = {0};
    if (!st) st = tally_open(&t, (long)windows * (ctx - 1 - first), true, e);
    for (int w = 0; !st && w < windows; w++) {
        for (int i = 0; i < ctx; i++) win[i] = q3_llama_logits_token(base, (size_t)w * ctx + i);
        for (int i = 0; !st && i < ctx; i++)
            if (win[i] < 0 || win[i] >= V)
                st = q3_fail(e, Q3_EFORMAT, "%s: token %d of chunk %d is %d, outside the vocabulary", base->map.path,
                             i, w, win[i]);
        if (st || (st = run_window(&a, win, ctx, e))) break;
        for (int i = first; i < ctx - 1; i++) {
            int top = log_softmax(a.logits + (size_t)i * V, V, lp);
            t.nll -= lp[win[i + 1]];
            int base_top = q3_llama_logits_row(base, w, i - first, lq);
            double kl = 0;
            for (int v = 0; v < V; v++)
                if (lq[v] > -16.f) kl += exp(lq[v]) * (lq[v] - lp[v]);
            add_kl(&t, kl, top == base_top, w, i);
        }
        window_done(o, out, &t, w, windows, ctx - 1 - first);
    }
    if (!st) finish(out, &t, true);
    free(t.kls);
    run_close(&a);
    free(lp), free(lq), free(win);
    return st;
}
