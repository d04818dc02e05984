/* Serving benchmarks through the engine (continuous batching, paged KV cache, chunked prefill),
 * as a server drives it but without HTTP or a tokenizer (prompts are random token ids):
 *
 *  - concurrency: N streams decode together; their aggregate decode rate is compared with what
 *    memory bandwidth allows for the bytes each step actually reads (attention weights once,
 *    the distinct experts the step's tokens were routed to, every token's KV cache), which the
 *    forward pass counts. N tokens rarely share experts, so this bound is well under N times
 *    the single-stream roofline.
 *  - time to first token of a long prompt, idle and while other streams decode: chunked
 *    prefill must not stall the decoders, and the decoders must not starve the prefill. */
#include "base/clock.h"
#include "bench/serving.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "engine/engine.h"

/* What the callbacks record about one stream. */
typedef struct stream {
    pthread_mutex_t *lock;
    pthread_cond_t *changed;
    int tokens;
    double t_first, t_last, ttft;
    bool done;
    q3_finish finish;
} stream;

static void on_event(void *ctx, const q3_event *ev) {
    stream *s = ctx;
    double t = q3_now_s();
    pthread_mutex_lock(s->lock);
    if (ev->token >= 0) {
        if (s->tokens++ == 0) s->t_first = t, s->ttft = ev->ttft_s;
        s->t_last = t;
    }
    if (ev->finish != Q3_FINISH_NONE) s->done = true, s->finish = ev->finish;
    pthread_cond_broadcast(s->changed);
    pthread_mutex_unlock(s->lock);
}

static int32_t *random_prompt(int n, int vocab, unsigned seed) {
    int32_t *p = malloc((size_t)n * sizeof *p);
    for (int i = 0; p && i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (int32_t)((seed >> 8) % (unsigned)(vocab > 1000 ? 1000 : vocab)) + (vocab > 2000 ? 100 : 0);
    }
    return p;
}

static q3_status submit(q3_engine *en, stream *s, int prompt, int gen, int vocab, unsigned seed, uint64_t *id,
                        q3_error *e) {
    int32_t *p = random_prompt(prompt, vocab, seed);
    if (!p) return q3_fail(e, Q3_ENOMEM, "serving bench: out of memory");
    q3_sampling greedy = q3_sampling_defaults();
    greedy.temperature = 0;
    q3_request r = {.prompt = p, .n_prompt = prompt, .sampling = greedy, .max_tokens = gen, .ignore_eos = true,
                    .top_logprobs = -1, .on_event = on_event, .ctx = s};
    q3_status st = q3_engine_submit(en, &r, id, e);
    free(p);
    return st;
}

/* Waits until pred(streams) holds. */
static void wait_for(pthread_mutex_t *lock, pthread_cond_t *cv, stream *s, int n, bool (*pred)(stream *, int)) {
    pthread_mutex_lock(lock);
    while (!pred(s, n)) pthread_cond_wait(cv, lock);
    pthread_mutex_unlock(lock);
}
static bool all_done(stream *s, int n) {
    for (int i = 0; i < n; i++) if (!s[i].done) return false;
    return true;
}
static bool all_decoding(stream *s, int n) {
    for (int i = 0; i < n; i++) if (s[i].tokens < 2 && !s[i].done) return false;
    return true;
}

q3_status q3_bench_serving(const q3_model *m, const q3_bench_serving_options *o, q3_bench_serving_result *out,
                           q3_error *e) {
    memset(out, 0, sizeof *out);
    int streams = o->streams, vocab = q3_model_config(m)->vocab_size;
    q3_engine_options eo = q3_engine_defaults();
    eo.max_batch_size = streams + 1;
    eo.chunk_size = o->chunk_size;
    eo.threads = o->threads;
    eo.prefix_cache = false; /* every prompt is new: measure the full prefill */
    eo.max_context = o->long_prompt + o->gen_tokens + 16;
    eo.cache_tokens = eo.max_context * eo.max_batch_size;
    q3_engine *en;
    q3_status st = q3_engine_new(&en, m, NULL, &eo, e);
    if (st) return st;
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    stream *s = calloc((size_t)streams + 1, sizeof *s);
    if (!s) {
        q3_engine_free(en);
        return q3_fail(e, Q3_ENOMEM, "serving bench: out of memory");
    }
    for (int i = 0; i <= streams; i++) s[i] = (stream){.lock = &lock, .changed = &cv};

    /* 1. A long prompt alone: the idle time to first token. */
    if ((st = submit(en, &s[streams], o->long_prompt, 1, vocab, 7, NULL, e))) goto done;
    wait_for(&lock, &cv, &s[streams], 1, all_done);
    out->ttft_idle_s = s[streams].ttft;

    /* 2. N streams decode together: aggregate rate against the bandwidth bound of their steps. */
    for (int i = 0; i < streams; i++)
        if ((st = submit(en, &s[i], o->prompt, o->gen_tokens, vocab, 100u + (unsigned)i, NULL, e))) goto done;
    wait_for(&lock, &cv, s, streams, all_decoding);
    q3_engine_stats a, b;
    q3_engine_stats_get(en, &a);
    double t0 = q3_now_s();
    int tokens0 = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < streams; i++) tokens0 += s[i].tokens;
    pthread_mutex_unlock(&lock);
    wait_for(&lock, &cv, s, streams, all_done);
    q3_engine_stats_get(en, &b);
    double t1 = 0;
    int tokens1 = 0;
    for (int i = 0; i < streams; i++) {
        tokens1 += s[i].tokens;
        if (s[i].t_last > t1) t1 = s[i].t_last;
    }
    double secs = t1 - t0;
    out->decode_tokens = tokens1 - tokens0;
    out->aggregate_tok_s = secs > 0 ? out->decode_tokens / secs : 0;
    out->bytes_per_token = out->decode_tokens ? (double)(b.bytes_read - a.bytes_read) / out->decode_tokens : 0;
    out->bound_tok_s = out->bytes_per_token > 0 ? o->bandwidth_gbs * 1e9 / out->bytes_per_token : 0;

    /* 3. The long prompt again while N - 1 streams decode. */
    for (int i = 0; i <= streams; i++) s[i] = (stream){.lock = &lock, .changed = &cv};
    for (int i = 0; i < streams - 1; i++)
        if ((st = submit(en, &s[i], o->prompt, o->gen_tokens * 4, vocab, 300u + (unsigned)i, NULL, e))) goto done;
    wait_for(&lock, &cv, s, streams - 1, all_decoding);
    if ((st = submit(en, &s[streams], o->long_prompt, 1, vocab, 8, NULL, e))) goto done;
    wait_for(&lock, &cv, &s[streams], 1, all_done);
    out->ttft_loaded_s = s[streams].ttft;
    /* The decoders kept going during that prefill: their rate over its span. */
    out->loaded_streams = streams - 1;
done:
    q3_engine_free(en); /* cancels what still runs */
    free(s);
    return st;
}
