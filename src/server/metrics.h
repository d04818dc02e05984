/* The server's counters and latency histograms, and their Prometheus text form (GET /metrics).
 * Updated from the HTTP threads and the engine thread at once, under one mutex: each update is a
 * few additions. */
#ifndef Q3_SERVER_METRICS_H
#define Q3_SERVER_METRICS_H

#include <pthread.h>
#include <stdint.h>

#include "engine/engine.h"

#define Q3_METRICS_BUCKETS 14

typedef struct q3_histogram {
    uint64_t counts[Q3_METRICS_BUCKETS + 1]; /* per bucket, the last one past every bound */
    uint64_t n;
    double sum;
} q3_histogram;

typedef struct q3_metrics {
    pthread_mutex_t lock;
    uint64_t responses[600];  /* by HTTP status */
    q3_histogram ttft;        /* seconds from submit to the first token */
    q3_histogram itl;         /* seconds between a request's successive tokens */
    q3_histogram e2e;         /* seconds from submit to the last event */
} q3_metrics;

void metrics_init(q3_metrics *m);
void metrics_destroy(q3_metrics *m);
void metrics_count_response(q3_metrics *m, int status);
void metrics_observe(q3_metrics *m, q3_histogram *h, double seconds);
/* The whole exposition text, with the engine's gauges and token counters from s; *out is the
 * caller's to free. False without memory. */
bool metrics_render(q3_metrics *m, const q3_engine_stats *s, char **out, size_t *len);

#endif
