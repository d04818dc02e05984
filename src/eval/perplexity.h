/* Perplexity over non-overlapping windows of a token stream, as transformers-based evaluations
 * compute it: window w holds ids[w*ctx .. w*ctx+ctx] (ctx + 1 tokens), and its ctx next-token
 * predictions are all scored. Optionally the KL divergence from a base model's distribution
 * (llama-perplexity's KLD mode), to measure what quantization costs, or from llama.cpp's own
 * saved log-probabilities, to compare the two engines on one file. */
#ifndef Q3_PERPLEXITY_H
#define Q3_PERPLEXITY_H

#include <stdbool.h>
#include "formats/llama_logits.h"
#include "q3moe.h"

typedef struct q3_ppl_result {
    double ppl;          /* exp(mean negative log-likelihood) */
    double nll;          /* mean negative log-likelihood */
    double kld;          /* mean KL(base || model), when a base was given */
    double kld_max;      /* the largest KL at one position */
    int kld_max_window;  /* where it is: the window and the position in it (the predicting token) */
    int kld_max_pos;
    double kld_quantile[5]; /* KL's median, 90%, 95%, 99% and 99.9% points (llama-perplexity
                               reports the same; a mean alone can hide one outlying position) */
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

typedef struct q3_ppl_options {
    int ctx;                /* window length in tokens */
    q3_ppl_scoring scoring;
    int max_windows;        /* <= 0: every window that fits */
    int threads;            /* <= 0: the machine's cores */
    q3_type kv_type;        /* the KV cache's type: F32 (0), F16, BF16 or Q8_0 */
    void (*progress)(void *ctx, int done, int total, double ppl); /* after each window; may be NULL */
    void *progress_ctx;
} q3_ppl_options;

/* Evaluates m over ids; base may be NULL. */
q3_status q3_perplexity(const q3_model *m, const q3_model *base, const int32_t *ids, int n_ids,
                        const q3_ppl_options *o, q3_ppl_result *out, q3_error *e);

/* Evaluates m on the tokens of llama-perplexity's saved log-probabilities, in its chunks (o->ctx
 * must be the file's; o->scoring is taken as Q3_PPL_SECOND_HALF), with KL(base || m) computed as
 * llama-perplexity --kl-divergence computes it: terms whose base log-probability is -16 or
 * less are left out, the base's argmax is its first highest level. */
q3_status q3_perplexity_vs_llama(const q3_model *m, const q3_llama_logits *base, const q3_ppl_options *o,
                                 q3_ppl_result *out, q3_error *e);

#endif
