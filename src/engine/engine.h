/* The engine: requests in, tokens and text out, with continuous batching.
 *
 * One engine thread runs the loop: admit queued requests (first come, first served) while the
 * paged KV cache has room, build one batch per step from every running sequence's next decode
 * token plus chunks of prompt prefill (at most chunk_size prompt tokens a step), run the
 * forward pass, sample each sequence's next token (from the tokens its grammar allows, when it
 * has one: constraint.h), detokenize it, hold back text that could be the start of a stop
 * string, and report it through the request's callback.
 *
 *   request -> q3_engine_submit -> queue -> scheduler (engine.c) -> q3_batch -> q3_forward
 *           -> logits -> sampler -> detokenizer -> stop strings -> on_event(callback)
 *
 * Callbacks run on the engine thread: they must be quick (copy the event, signal a waiter) and
 * must not call back into the engine except q3_engine_cancel. */
#ifndef Q3_ENGINE_H
#define Q3_ENGINE_H

#include "q3moe.h"
#include "text/grammar.h"
#include "text/sampler.h"
#include "text/tokenizer.h"

typedef struct q3_engine q3_engine;

typedef struct q3_engine_options {
    int max_batch_size;  /* sequences running at once */
    int chunk_size;      /* prompt tokens prefilled per step, over all sequences */
    int page_size;       /* KV cache tokens per page */
    int cache_tokens;    /* KV cache tokens shared by all sequences */
    int max_queue;       /* requests waiting for admission; beyond it submit says Q3_EFULL */
    int max_context;     /* prompt + generated tokens of one sequence; 0: the model's */
    int threads;         /* worker threads; 0: all cores */
    q3_type kv_type;     /* F32, F16 or BF16 */
    bool prefix_cache;   /* reuse cached pages of earlier requests' identical prompt prefixes */
} q3_engine_options;

/* Sensible defaults for one user on this machine; cannot fail. */
q3_engine_options q3_engine_defaults(void);

typedef enum q3_finish {
    Q3_FINISH_NONE = 0,  /* still running */
    Q3_FINISH_STOP,      /* an end-of-sequence token or a stop string */
    Q3_FINISH_LENGTH,    /* max_tokens or the context limit */
    Q3_FINISH_CANCELLED, /* q3_engine_cancel */
    Q3_FINISH_ERROR,
} q3_finish;

#define Q3_MAX_TOP_LOGPROBS 20

typedef struct q3_event {
    uint64_t id;              /* the request */
    /* a generated token (token >= 0) and the text it completes (may be empty: held back), or
     * with prompt set, a prompt token (from the second on) with its log-probabilities */
    bool prompt;
    int32_t token;
    const char *text;
    size_t text_len;
    float logprob;            /* of token, when the request asked for logprobs */
    int n_top;                /* top alternatives, when asked for */
    int32_t top_ids[Q3_MAX_TOP_LOGPROBS];
    float top_logprobs[Q3_MAX_TOP_LOGPROBS];
    /* set on the last event of a request */
    q3_finish finish;
    int stop_index;           /* which stop string matched, or -1 */
    int prompt_tokens, completion_tokens, cached_tokens;
    double ttft_s;            /* time from submit to the first token */
    const char *error;        /* Q3_FINISH_ERROR only */
} q3_event;

typedef void (*q3_event_fn)(void *ctx, const q3_event *ev);

/* How a grammar meets a reasoning model's think block. */
typedef enum q3_grammar_reasoning {
    Q3_GRAMMAR_AT_ONCE,       /* the grammar holds from the first token */
    Q3_GRAMMAR_AFTER_THINK,   /* the first token may open <think>; the grammar holds after </think> */
    Q3_GRAMMAR_THINKING,      /* the prompt opened <think>: the grammar holds after </think> */
} q3_grammar_reasoning;

typedef struct q3_request {
    const int32_t *prompt;    /* copied by submit */
    int n_prompt;
    q3_sampling sampling;
    int max_tokens;           /* > 0; or 0 with prompt_logprobs (score the prompt only) */
    const char *const *stop;  /* stop strings, copied by submit */
    int n_stop;
    bool ignore_eos;          /* keep going past end-of-sequence tokens */
    int top_logprobs;         /* -1: no logprobs; 0..Q3_MAX_TOP_LOGPROBS: the token's, plus that many alternatives */
    bool prompt_logprobs;     /* also report each prompt token after the first (event.prompt) with its
                               * log-probability and top_logprobs (>= 0) alternatives: OpenAI's echo */
    q3_grammar *grammar;      /* NULL: free text; else the reply must be a sentence of it (submit takes a
                               * reference): tokens are drawn from a mask, the end comes when it may */
    q3_grammar_reasoning grammar_reasoning;
    const int32_t *bias_ids;  /* logit_bias: n_bias token ids and the values added to their logits, copied */
    const float *bias;
    int n_bias;
    q3_event_fn on_event;
    void *ctx;
} q3_request;

/* Starts the engine thread. The model and tokenizer must outlive the engine. tok may be NULL for
 * callers that only want tokens (benchmarks): events then carry no text. */
q3_status q3_engine_new(q3_engine **out, const q3_model *m, const q3_tokenizer *tok,
                        const q3_engine_options *o, q3_error *e);
/* Cancels everything still running (their callbacks see Q3_FINISH_CANCELLED), stops the
 * thread, frees. Cannot fail. */
void q3_engine_free(q3_engine *en);

/* Queues a request. Q3_EINVAL for bad parameters or a prompt that leaves no room to generate
 * in the context; Q3_EFULL when the queue is full (a server answers 503). */
q3_status q3_engine_submit(q3_engine *en, const q3_request *req, uint64_t *id, q3_error *e);
/* Stops a request and frees its pages; its last event says Q3_FINISH_CANCELLED. Unknown or
 * finished ids are ignored. Cannot fail. */
void q3_engine_cancel(q3_engine *en, uint64_t id);

typedef struct q3_engine_stats {
    int queued, running;
    int kv_pages_used, kv_pages_free, page_size;
    uint64_t prompt_tokens, generated_tokens, cached_prompt_tokens;
    uint64_t steps;
    uint64_t bytes_read;      /* weights and KV the forward passes read (for rooflines) */
} q3_engine_stats;

/* A snapshot of the counters; cannot fail. */
void q3_engine_stats_get(q3_engine *en, q3_engine_stats *s);

/* ---- the simple case: one request, waited for ---- */

/* Runs req to the end on the calling thread's behalf (the engine thread still does the work)
 * and returns how it finished; req->on_event still sees every event. */
q3_finish q3_engine_generate(q3_engine *en, const q3_request *req, q3_error *e);

#endif
