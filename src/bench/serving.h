/* Serving benchmarks through the engine: concurrent streams' aggregate decode rate against the
 * bandwidth bound of the bytes their steps read, and a long prompt's time to first token idle
 * and while other streams decode. */
#ifndef Q3_BENCH_SERVING_H
#define Q3_BENCH_SERVING_H

#include "q3moe.h"

typedef struct q3_bench_serving_options {
    int streams;        /* concurrent decoding streams */
    int prompt;         /* their prompt tokens */
    int gen_tokens;     /* tokens each decodes */
    int long_prompt;    /* the prompt whose time to first token is measured */
    int chunk_size;     /* prefill tokens per engine step */
    int threads;
    double bandwidth_gbs; /* the machine's measured streaming-read bandwidth */
} q3_bench_serving_options;

typedef struct q3_bench_serving_result {
    double aggregate_tok_s;  /* tokens per second of all streams together while decoding */
    double bytes_per_token;  /* weights + KV read per decoded token in those steps */
    double bound_tok_s;      /* bandwidth / bytes_per_token */
    int decode_tokens;
    double ttft_idle_s;      /* long prompt alone */
    double ttft_loaded_s;    /* long prompt while loaded_streams decode */
    int loaded_streams;
} q3_bench_serving_result;

q3_status q3_bench_serving(const q3_model *m, const q3_bench_serving_options *o, q3_bench_serving_result *out,
                           q3_error *e);

#endif
