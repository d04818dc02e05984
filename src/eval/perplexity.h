/* Perplexity over non-overlapping windows of a token stream, as transformers-based evaluations
 * compute it: window w holds ids[w*ctx .. w*ctx+ctx] (ctx + 1 tokens), and its ctx next-token
 * predictions are all scored. Optionally the KL divergence from a base model's distribution
 * (llama-perplexity's KLD mode), to measure what quantization costs. */
#ifndef Q3_PERPLEXITY_H
#define Q3_PERPLEXITY_H

#include <stdbool.h>
#include "q3moe.h"

typedef struct q3_ppl_result {
    double ppl;          /* exp(mean negative log-likelihood) */
    double nll;          /* mean negative log-likelihood */
    double kld;          /* mean KL(base || model), when a base model was given */
    double top1_agree;   /* fraction of positions where both models' argmax agree */
    int windows, scored; /* windows evaluated, tokens scored */
} q3_ppl_result;

/* Which predictions a window scores. */
typedef enum q3_ppl_scoring {
    Q3_PPL_ALL,         /* the windows above: ctx + 1 tokens, all ctx predictions scored */
    Q3_PPL_SECOND_HALF, /* llama-perplexity's chunks: back-to-back windows of ctx tokens, each
                           scoring its predictions from position ctx / 2 on (ctx / 2 - 1 of them),
                           so that every scored token has at least half a window of context */
} q3_ppl_scoring;

/* Evaluates up to max_windows windows (<= 0: all that fit). base may be NULL. progress (may be
 * NULL) is called after each window with the running perplexity. */
q3_status q3_perplexity(const q3_model *m, const q3_model *base, const int32_t *ids, int n_ids, int ctx,
                        q3_ppl_scoring scoring, int max_windows, int threads,
                        void (*progress)(void *, int, int, double), void *ctx_progress, q3_ppl_result *out,
                        q3_error *e);

#endif
