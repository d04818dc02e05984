/* Single-sequence speed: the time to prefill a prompt and then to decode tokens one at a time,
 * greedy, through the forward pass directly (no scheduler, no sampler beyond an argmax), with a
 * KV cache sized for the longest prompt plus its generated tokens. The prompt is random token
 * ids: speed does not depend on their meaning. This is the measurement of `q3moe bench`; the
 * command adds the machine's bandwidth and the roofline. */
#ifndef Q3_BENCH_SPEED_H
#define Q3_BENCH_SPEED_H

#include "q3moe.h"

typedef struct q3_speed_options {
    int max_context; /* longest prompt + generated tokens to be measured */
    int chunk;       /* prompt tokens per forward pass */
    int threads;     /* <= 0: every core */
    q3_type kv_type; /* F32, F16 or BF16 */
} q3_speed_options;

/* Best times of a prompt length over the repeats (each the fastest of its kind). */
typedef struct q3_speed_times {
    double prefill_s;     /* the whole prompt, in chunks */
    double decode_s;      /* gen_tokens steps of one token, each with its logits and argmax */
    double decode_body_s; /* the same steps without the final norm and lm_head (when asked for) */
    bool finite;          /* every logits row read was finite */
} q3_speed_times;

typedef struct q3_speed q3_speed;

q3_status q3_speed_new(q3_speed **out, const q3_model *m, const q3_speed_options *o, q3_error *e);
void q3_speed_free(q3_speed *s);
/* Threads of the forward pass (the caller included); cannot fail. */
int q3_speed_threads(const q3_speed *s);

/* Reads every weight page once, so that the first timed run does not pay for page faults or for
 * reading the file from disk, then runs one short prefill and decode step (buffers, threads). */
q3_status q3_speed_warm_up(q3_speed *s, q3_error *e);

/* Prefills prompt_tokens, then decodes gen_tokens, `repeat` times from an empty cache, keeping
 * the best of each. with_body also times the decode steps without the head, so a model built
 * with a few layers can be projected to its full depth (head once, layers scaled). */
q3_status q3_speed_measure(q3_speed *s, int prompt_tokens, int gen_tokens, int repeat, bool with_body,
                           q3_speed_times *out, q3_error *e);

#endif
