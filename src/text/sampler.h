/* Sampling: turning one row of logits into the next token of one sequence.
 *
 * A q3_sampling holds the request's parameters; a q3_sampler applies them for one sequence and
 * owns what that needs between steps: its random number generator (seeded once, so a seed gives
 * the same tokens whatever else runs beside it), the token history the penalties look at, and
 * scratch buffers sized for the vocabulary, so that sampling allocates nothing.
 *
 * The order of operations is the one vLLM and Hugging Face users expect:
 *   1. penalties on the logits: repetition (HF: positive logits divided, negative multiplied by
 *      the penalty, for every token seen in the prompt or the output), then presence and
 *      frequency (OpenAI: logit -= presence * [count > 0] + frequency * count, over the tokens
 *      generated so far);
 *   2. temperature (0 means greedy: the argmax, ties going to the lowest id);
 *   3. top-k, then top-p (the smallest set of most likely tokens whose probability reaches
 *      top_p, at least one), then min-p (tokens with p >= min_p * p_max);
 *   4. a draw from what is left, renormalised.
 */
#ifndef Q3_SAMPLER_H
#define Q3_SAMPLER_H

#include "base/error.h"

/* A seed that asks q3_sampler_new for one taken from the clock. */
#define Q3_SEED_RANDOM UINT64_MAX

typedef struct q3_sampling {
    float temperature;        /* 0: greedy */
    int top_k;                /* <= 0: off */
    float top_p;              /* 1: off */
    float min_p;              /* 0: off */
    float repetition_penalty; /* 1: off; prompt and output tokens */
    float presence_penalty;   /* 0: off; output tokens only */
    float frequency_penalty;  /* 0: off; output tokens only */
    int penalty_last_n;       /* the penalties look at the last n tokens; -1: all, 0: none */
    uint64_t seed;            /* Q3_SEED_RANDOM: from the clock */
} q3_sampling;

/* Temperature 1, top_k off, top_p 1, min_p 0, neutral penalties over the whole history,
 * a seed from the clock. Cannot fail. */
q3_sampling q3_sampling_defaults(void);

/* Q3_EINVAL, naming the field, when a parameter is out of range: a request's parameters are
 * checked here before a sampler is made for them. */
q3_status q3_sampling_check(const q3_sampling *p, q3_error *e);

typedef struct q3_sampler q3_sampler;

/* A sampler for one sequence over a vocabulary of n_vocab tokens. */
q3_status q3_sampler_new(q3_sampler **out, const q3_sampling *p, int n_vocab, q3_error *e);
/* Frees NULL happily; cannot fail. */
void q3_sampler_free(q3_sampler *s);
/* The seed actually used (the one drawn from the clock for Q3_SEED_RANDOM); cannot fail. */
uint64_t q3_sampler_seed(const q3_sampler *s);

/* Records the prompt's tokens for the repetition penalty (presence and frequency penalties count
 * only generated tokens, as vLLM and OpenAI do). Ids outside the vocabulary are ignored: they
 * can never be sampled, so there is nothing to penalise. Cannot fail. */
void q3_sampler_accept_prompt(q3_sampler *s, const int32_t *tokens, int n);
/* Records one generated token, for all the penalties. Cannot fail. */
void q3_sampler_accept(q3_sampler *s, int32_t token);

/* Applies the penalties of the recorded history to logits[0..n_vocab) in place (what
 * q3_sampler_sample does first); for callers that want the penalised values. Cannot fail. */
void q3_sampler_apply_penalties(const q3_sampler *s, float *logits, int n_vocab);

/* The next token. logits serve as scratch for the penalties and hold the model's values again
 * on return, so logprobs read afterwards are the model's own. n_vocab may be smaller than the
 * sampler's vocabulary; logits past it are ignored. The token is not recorded: call
 * q3_sampler_accept with the token kept. Cannot fail. */
int32_t q3_sampler_sample(q3_sampler *s, float *logits, int n_vocab);

/* OpenAI's logit_bias: values added to the logits of those tokens before anything else, for
 * every later draw (-100 all but bans a token, 100 all but forces it). Ids outside the
 * vocabulary are Q3_EINVAL; the list is copied. */
q3_status q3_sampler_set_bias(q3_sampler *s, const int32_t *ids, const float *bias, int n, q3_error *e);

/* As q3_sampler_sample, with the logit bias, and drawing only among the tokens whose bit is set
 * in allow (bit i of word i / 64; NULL: all), as constrained decoding asks. Works on a copy:
 * logits are left as the model's. -1 when allow holds no token of the vocabulary. Cannot fail. */
int32_t q3_sampler_sample_masked(q3_sampler *s, const float *logits, int n_vocab, const uint64_t *allow);

/* ---- log-probabilities for the OpenAI `logprobs` / `top_logprobs` fields ---- */

/* The min(k, n_vocab) most likely tokens, most likely first (ties: lowest id first), with their
 * log-softmax values; returns how many were written. Cannot fail. */
int q3_logprobs_top(const float *logits, int n_vocab, int k, int32_t *ids, float *logprobs);
/* The log-softmax value of token id. Cannot fail for 0 <= id < n_vocab. */
float q3_logprob_of(const float *logits, int n_vocab, int32_t id);
/* Both of the above with one pass for the normaliser (a decode step asks for both): token
 * chosen's value into *chosen_logprob (skipped when NULL), and the top k as q3_logprobs_top, whose
 * count it returns. Cannot fail for 0 <= chosen < n_vocab. */
int q3_logprobs(const float *logits, int n_vocab, int32_t chosen, float *chosen_logprob, int k, int32_t *ids,
                float *logprobs);

#endif
