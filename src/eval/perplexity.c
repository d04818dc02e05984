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

static q3_status run_open(model_run *mr, const q3_model *m, int ctx, int threads, q3_error *e) {
    memset(mr, 0, sizeof *mr);
    q3_kv_options ko = {Q3_TYPE_F32, 64, (ctx + 63) / 64, 1, ctx};
    q3_status st = q3_kv_cache_new(&mr->kv, m, &ko, e);
    if (!st) st = q3_runner_new(&mr->r, m, ctx, threads, e);
    if (!st && !(mr->logits = malloc((size_t)ctx * q3_model_config(m)->vocab_size * sizeof(float))))
        st = q3_fail(e, Q3_ENOMEM, "perplexity: no memory for %d rows of logits", ctx);
    return st;
}

static void run_close(model_run *mr) {
    q3_runner_free(mr->r);
    q3_kv_cache_free(mr->kv);
    free(mr->logits);
}

static q3_status run_window(model_run *mr, const int32_t *ids, const int32_t *pos, const int32_t *seq, int ctx,
                            q3_error *e) {
    q3_kv_cache_truncate(mr->kv, 0, 0);
    q3_batch b = {ctx, ids, pos, seq, NULL};
    return q3_forward(mr->r, mr->kv, &b, mr->logits, e);
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

q3_status q3_perplexity(const q3_model *m, const q3_model *base, const int32_t *ids, int n_ids, int ctx,
                        q3_ppl_scoring scoring, int max_windows, int threads,
                        void (*progress)(void *, int, int, double), void *pctx, q3_ppl_result *out, q3_error *e) {
    memset(out, 0, sizeof *out);
    bool half = scoring == Q3_PPL_SECOND_HALF;
    int V = q3_model_config(m)->vocab_size, windows = ctx > 0 ? (half ? n_ids : n_ids - 1) / ctx : 0;
    int first = half ? ctx / 2 : 0, last = half ? ctx - 1 : ctx; /* scored predictions [first, last) */
    if (windows < 1 || first >= last)
        return q3_fail(e, Q3_EINVAL, "perplexity: %d tokens are fewer than one window of %d%s", n_ids, ctx,
                       half ? "" : " + 1");
    if (base && q3_model_config(base)->vocab_size != V)
        return q3_fail(e, Q3_EINVAL, "perplexity: the base model's vocabulary differs");
    if (max_windows > 0 && max_windows < windows) windows = max_windows;
    model_run a, b = {0};
    int32_t *pos = malloc((size_t)ctx * sizeof *pos), *seq = calloc((size_t)ctx, sizeof *seq);
    double *lp = malloc((size_t)V * sizeof *lp), *lq = base ? malloc((size_t)V * sizeof *lq) : NULL;
    q3_status st = run_open(&a, m, ctx, threads, e);
    if (!st && base) st = run_open(&b, base, ctx, threads, e);
    if (!st && (!pos || !seq || !lp || (base && !lq))) st = q3_fail(e, Q3_ENOMEM, "perplexity: out of memory");
    for (int i = 0; !st && i < ctx; i++) pos[i] = i;
    double nll = 0, kld = 0;
    long agree = 0;
    for (int w = 0; !st && w < windows; w++) {
        const int32_t *win = ids + (size_t)w * ctx;
        if ((st = run_window(&a, win, pos, seq, ctx, e)) || (base && (st = run_window(&b, win, pos, seq, ctx, e))))
            break;
        for (int t = first; t < last; t++) {
            int top = log_softmax(a.logits + (size_t)t * V, V, lp);
            nll -= lp[win[t + 1]];
            if (!base) continue;
            int base_top = log_softmax(b.logits + (size_t)t * V, V, lq);
            double kl = 0;
            for (int v = 0; v < V; v++) kl += exp(lq[v]) * (lq[v] - lp[v]);
            kld += kl;
            agree += top == base_top;
        }
        out->windows = w + 1;
        out->scored = (w + 1) * (last - first);
        if (progress) progress(pctx, w + 1, windows, exp(nll / out->scored));
    }
    if (!st) {
        out->nll = nll / out->scored;
        out->ppl = exp(out->nll);
        out->kld = base ? kld / out->scored : 0;
        out->top1_agree = base ? (double)agree / out->scored : 0;
    }
    run_close(&a);
    if (base) run_close(&b);
    free(pos), free(seq), free(lp), free(lq);
    return st;
}
