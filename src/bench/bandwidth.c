/* Streaming-read bandwidth. The memory is cut into slices that the thread pool hands out; every
 * run reads all slices once with wide loads folded into a few independent accumulators: the loads
 * never wait on arithmetic, so memory is the only limit. The folded value is kept, so the
 * compiler cannot drop the reads. A fresh buffer is first written by the same threads (so its
 * pages are mapped, and placed near the thread on NUMA machines).
 *
 * The width of the loads matters: 16-byte SSE loads cannot keep up with memory on recent cores
 * (about 33 GB/s against 44 GB/s with 32-byte loads on two Zen 5 cores), and the kernels read
 * weights with AVX2 or AVX-512, so the AVX2 build of the loop runs wherever the CPU has it. */
#include "base/clock.h"
#include "bench/bandwidth.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "base/pool.h"
#include "cpu/kernel_table.h"

#define SLICE_BYTES ((size_t)16 << 20)

/* 32 bytes: one AVX register where the build targets AVX, two SSE registers otherwise. */
typedef uint64_t wide_word __attribute__((vector_size(32)));

typedef struct read_job {
    const unsigned char *data; /* 32-byte aligned */
    size_t bytes;              /* a whole number of slices */
    uint64_t (*fold)(const unsigned char *p, size_t bytes);
    uint64_t sink[64];         /* one folded value per thread, read after the runs */
} read_job;

/* Inlined into both builds below, so it is written once. */
static inline __attribute__((always_inline)) uint64_t fold_slice(const unsigned char *p, size_t bytes) {
    const wide_word *w = (const wide_word *)p;
    size_t n = bytes / sizeof(wide_word);
    wide_word a = {0}, b = {0}, c = {0}, d = {0};
    for (size_t i = 0; i + 4 <= n; i += 4) {
        a ^= w[i];
        b ^= w[i + 1];
        c ^= w[i + 2];
        d ^= w[i + 3];
    }
    wide_word x = a ^ b ^ c ^ d;
    return x[0] ^ x[1] ^ x[2] ^ x[3];
}

static uint64_t fold_slice_generic(const unsigned char *p, size_t bytes) { return fold_slice(p, bytes); }

#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t fold_slice_avx2(const unsigned char *p, size_t bytes) {
    return fold_slice(p, bytes);
}
#endif

static void read_task(void *ctx, int task, int thread) {
    read_job *job = ctx;
    job->sink[thread % 64] ^= job->fold(job->data + (size_t)task * SLICE_BYTES, SLICE_BYTES);
}

static void write_task(void *ctx, int task, int thread) {
    (void)thread;
    memset((unsigned char *)ctx + (size_t)task * SLICE_BYTES, task & 0xff, SLICE_BYTES);
}

/* The best of `runs` reads of job's memory, in bytes per second. */
static double best_of_runs(q3_pool *pool, read_job *job, int runs) {
    job->fold = fold_slice_generic;
#if defined(__x86_64__)
    if (q3_isa_supported(Q3_ISA_AVX2)) job->fold = fold_slice_avx2;
#endif
    int slices = (int)(job->bytes / SLICE_BYTES);
    double best = 0;
    for (int r = 0; r < runs; r++) {
        double t0 = q3_now_s();
        q3_pool_run(pool, read_task, job, slices);
        double dt = q3_now_s() - t0;
        if (dt > 0 && (double)job->bytes / dt > best) best = (double)job->bytes / dt;
    }
    /* Makes the folded values observable: without this the reads are dead code. */
    volatile uint64_t keep = 0;
    for (int i = 0; i < 64; i++) keep ^= job->sink[i];
    (void)keep;
    return best;
}

size_t q3_bandwidth_buffer_size(size_t llc_bytes, size_t ram_bytes) {
    size_t bytes = (size_t)1 << 30;
    if (llc_bytes * 8 > bytes) bytes = llc_bytes * 8;
    /* Leave the model its memory, while staying well above the cache. */
    size_t cap = ram_bytes / 4 > llc_bytes * 2 ? ram_bytes / 4 : llc_bytes * 2;
    if (ram_bytes && bytes > cap) bytes = cap;
    return (bytes + SLICE_BYTES - 1) / SLICE_BYTES * SLICE_BYTES;
}

q3_status q3_bandwidth_measure(q3_bandwidth *out, size_t bytes, int n_threads, int runs, q3_error *e) {
    memset(out, 0, sizeof *out);
    bytes = (bytes + SLICE_BYTES - 1) / SLICE_BYTES * SLICE_BYTES;
    if (bytes == 0 || runs < 1) return q3_fail(e, Q3_EINVAL, "bandwidth: need a buffer and at least one run");
    unsigned char *buf = aligned_alloc(4096, bytes);
    if (!buf) return q3_fail(e, Q3_ENOMEM, "bandwidth: cannot allocate a %zu MiB buffer", bytes >> 20);
    q3_pool *pool;
    q3_status st = q3_pool_new(&pool, n_threads, n_threads > 0, e);
    if (st) {
        free(buf);
        return st;
    }
    q3_pool_run(pool, write_task, buf, (int)(bytes / SLICE_BYTES));
    read_job job = {.data = buf, .bytes = bytes};
    *out = (q3_bandwidth){best_of_runs(pool, &job, runs) / 1e9, bytes, q3_pool_size(pool), runs};
    q3_pool_free(pool);
    free(buf);
    return Q3_OK;
}

q3_status q3_bandwidth_measure_region(q3_bandwidth *out, const void *data, size_t bytes, int n_threads, int runs,
                                      q3_error *e) {
    memset(out, 0, sizeof *out);
    /* Whole slices from the first 4 KiB boundary: aligned for the wide loads. */
    uintptr_t start = ((uintptr_t)data + 4095) & ~(uintptr_t)4095;
    size_t skip = start - (uintptr_t)data;
    bytes = bytes > skip ? (bytes - skip) / SLICE_BYTES * SLICE_BYTES : 0;
    if (bytes == 0 || runs < 1) return q3_fail(e, Q3_EINVAL, "bandwidth: the region holds no whole %zu MiB slice", SLICE_BYTES >> 20);
    q3_pool *pool;
    q3_status st = q3_pool_new(&pool, n_threads, n_threads > 0, e);
    if (st) return st;
    read_job job = {.data = (const unsigned char *)start, .bytes = bytes};
    *out = (q3_bandwidth){best_of_runs(pool, &job, runs) / 1e9, bytes, q3_pool_size(pool), runs};
    q3_pool_free(pool);
    return Q3_OK;
}
