/* GET /metrics: the server's state in the Prometheus text exposition format (version 0.0.4).
 *
 * Counters: HTTP requests by status code, prompt and generated tokens, prompt tokens served from
 * the prefix cache, engine steps. Gauges: requests waiting and running, KV cache pages used and
 * free. Histograms: time to first token, inter-token latency, request duration. The names follow
 * vLLM's (vllm:time_to_first_token_seconds, ...) with a q3moe_ prefix, so dashboards map over. */
#include <stdlib.h>

#include "server/internal.h"

static const double BOUNDS[Q3_METRICS_BUCKETS] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                  0.5,   1,     2.5,  5,     10,  30,  60};

void metrics_init(q3_metrics *m) {
    *m = (q3_metrics){0};
    pthread_mutex_init(&m->lock, NULL);
}

void metrics_destroy(q3_metrics *m) { pthread_mutex_destroy(&m->lock); }

void metrics_count_response(q3_metrics *m, int status) {
    if (status < 0 || status >= (int)(sizeof m->responses / sizeof *m->responses)) return;
    pthread_mutex_lock(&m->lock);
    m->responses[status]++;
    pthread_mutex_unlock(&m->lock);
}

void metrics_observe(q3_metrics *m, q3_histogram *h, double seconds) {
    int b = 0;
    while (b < Q3_METRICS_BUCKETS && seconds > BOUNDS[b]) b++;
    pthread_mutex_lock(&m->lock);
    h->counts[b]++;
    h->n++;
    h->sum += seconds;
    pthread_mutex_unlock(&m->lock);
}

static void family(q3_buf *b, const char *name, const char *type, const char *help) {
    q3_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(q3_buf *b, const char *name, const char *type, const char *help, double v) {
    family(b, name, type, help);
    q3_buf_printf(b, "%s %.17g\n", name, v);
}

static void histogram(q3_buf *b, const char *name, const char *help, const q3_histogram *h) {
    family(b, name, "histogram", help);
    uint64_t below = 0;
    for (int i = 0; i < Q3_METRICS_BUCKETS; i++) {
        below += h->counts[i];
        q3_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, BOUNDS[i], (unsigned long long)below);
    }
    q3_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->n);
    q3_buf_printf(b, "%s_sum %.17g\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->n);
}

bool metrics_render(q3_metrics *m, const q3_engine_stats *s, char **out, size_t *len) {
    q3_buf b = {0};
    pthread_mutex_lock(&m->lock);
    q3_metrics snap = *m;
    pthread_mutex_unlock(&m->lock);

    family(&b, "q3moe_http_requests_total", "counter", "HTTP requests answered, by status code.");
    for (int code = 0; code < (int)(sizeof snap.responses / sizeof *snap.responses); code++)
        if (snap.responses[code])
            q3_buf_printf(&b, "q3moe_http_requests_total{code=\"%d\"} %llu\n", code,
                        (unsigned long long)snap.responses[code]);
    scalar(&b, "q3moe_prompt_tokens_total", "counter", "Prompt tokens submitted.", (double)s->prompt_tokens);
    scalar(&b, "q3moe_generation_tokens_total", "counter", "Tokens generated.", (double)s->generated_tokens);
    scalar(&b, "q3moe_prefix_cache_hit_tokens_total", "counter", "Prompt tokens taken from the prefix cache.",
           (double)s->cached_prompt_tokens);
    scalar(&b, "q3moe_engine_steps_total", "counter", "Forward passes run.", (double)s->steps);
    scalar(&b, "q3moe_requests_waiting", "gauge", "Requests queued for admission.", s->queued);
    scalar(&b, "q3moe_requests_running", "gauge", "Sequences in the running batch.", s->running);
    scalar(&b, "q3moe_kv_pages_used", "gauge", "KV cache pages in use (prefix cache included).", s->kv_pages_used);
    scalar(&b, "q3moe_kv_pages_free", "gauge", "KV cache pages free.", s->kv_pages_free);
    scalar(&b, "q3moe_kv_page_size_tokens", "gauge", "Tokens per KV cache page.", s->page_size);
    histogram(&b, "q3moe_time_to_first_token_seconds", "Time from submission to the first generated token.",
              &snap.ttft);
    histogram(&b, "q3moe_inter_token_latency_seconds", "Time between a request's successive tokens.", &snap.itl);
    histogram(&b, "q3moe_request_duration_seconds", "Time from submission to the end of a request.", &snap.e2e);
    if (b.failed) {
        q3_buf_free(&b);
        return false;
    }
    *out = b.data;
    *len = b.len;
    return true;
}

http_reply metrics_page(const http_request *r) {
    q3_engine_stats s;
    q3_engine_stats_get(r->srv->engine, &s);
    http_reply reply = {.status = 200, .content_type = "text/plain; version=0.0.4; charset=utf-8"};
    if (!metrics_render(&r->srv->metrics, &s, &reply.body, &reply.body_len)) {
        api_error err;
        api_fail(&err, 500, NULL, "", "out of memory");
        return reply_error(&err);
    }
    return reply;
}
