/* The machine's streaming-read bandwidth: how fast the given threads can read a buffer far
 * larger than the last-level cache. Decoding one token of a large model reads every weight it
 * touches once, so this figure over the bytes a token reads is the decode speed no CPU engine
 * can beat (the roofline); a benchmark compares its decode rate against it. */
#ifndef Q3_BENCH_BANDWIDTH_H
#define Q3_BENCH_BANDWIDTH_H

#include <stddef.h>
#include "base/error.h"

typedef struct q3_bandwidth {
    double gbs;          /* best run, in 1e9 bytes per second */
    size_t buffer_bytes; /* bytes read per run */
    int threads;         /* threads that read (the caller included) */
    int runs;
} q3_bandwidth;

/* Buffer size for a measurement: 1 GiB, or 8 times the last-level cache when that is larger,
 * so no run is served from cache, but at most a quarter of the memory (the model needs the
 * rest). 0 means unknown for either. Cannot fail. */
size_t q3_bandwidth_buffer_size(size_t llc_bytes, size_t ram_bytes);

/* Reads a buffer of `bytes` with n_threads threads (<= 0: every core) `runs` times and keeps the
 * best. Fails only when the buffer or the threads cannot be had. */
q3_status q3_bandwidth_measure(q3_bandwidth *out, size_t bytes, int n_threads, int runs, q3_error *e);

/* The same over memory that exists already, e.g. a model's mapped weights (read, never written;
 * whole 16 MiB slices from its first page boundary). Page-cache pages can read slower than a
 * fresh buffer (39 against 60-80 GB/s on this project's CI VM, presumably from how the
 * hypervisor backs them), and decoding reads exactly those pages. */
q3_status q3_bandwidth_measure_region(q3_bandwidth *out, const void *data, size_t bytes, int n_threads, int runs,
                                      q3_error *e);

#endif
