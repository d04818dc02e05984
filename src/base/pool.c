/* Thread pool. A job is published by bumping `generation`; workers spin on it for a while
 * (decode steps come every few milliseconds, so waking from a futex each op would cost more
 * than the op) and then sleep on a condition variable. A job's tasks sit in groups, each with
 * its own counter; a plain job is one group.
 *
 * A job is over when its tasks are done, not when every worker has checked in: with more
 * threads than free cores (`--threads` above the core count, or other processes on the
 * machine) a worker may not run at all during a short job, and waiting for it would cost a
 * scheduler time slice per job. So a worker that wakes late must not take a task of the next
 * job for one of its own: each group's counter carries the job's generation in its high half,
 * and a task is claimed by compare-and-swap only while the generation still matches. */
#include "base/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "base/numa.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* How long an idle worker stays awake for the next job: spinning (with pause) at first, then
 * yielding the core to anything else runnable, then asleep on the condition variable. */
#define SPIN_ITERATIONS 20000
#define AWAKE_SECONDS 0.002

_Static_assert(Q3_NUMA_MAX_NODES <= Q3_POOL_MAX_GROUPS, "a job needs a group per NUMA node");

/* One group's tasks: `next` is generation << 32 | the next task, `end` one past the last; alone
 * on its cache line, as threads of different nodes hammer different counters. */
struct task_group {
    _Atomic uint64_t next;
    atomic_int end;
    char pad[64 - sizeof(_Atomic uint64_t) - sizeof(atomic_int)];
};

struct q3_pool {
    int n_threads;
    bool oversubscribed; /* more threads than online CPUs: waiting threads yield at once */
    pthread_t *threads;
    int *thread_node;    /* [n_threads] node of each thread's CPU, -1 unknown */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_uint generation;
    atomic_bool stop;
    q3_task_fn fn;       /* read only after claiming a task: the job is then still running */
    void *ctx;
    atomic_int n_groups; /* these two a late worker may read while the next job is described */
    atomic_int group_node[Q3_POOL_MAX_GROUPS];
    _Alignas(64) atomic_int done; /* tasks of the current job finished */
    struct task_group groups[Q3_POOL_MAX_GROUPS];
};

struct worker_arg {
    q3_pool *pool;
    int index;
};

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The next task of group g in job gen, or -1 when it has none left (or has moved on to a later
 * job). The generation, the counter and the end are checked together by the compare-and-swap:
 * the caller resets a group's counter to the next generation before it changes the end (both
 * sequentially consistent), so an end read after that reset can never pass the swap. */
static int claim_task(struct task_group *g, unsigned gen) {
    uint64_t v = atomic_load(&g->next);
    for (;;) {
        if ((unsigned)(v >> 32) != gen) return -1;
        int t = (int)(uint32_t)v;
        if (t >= atomic_load(&g->end)) return -1;
        if (atomic_compare_exchange_weak(&g->next, &v, v + 1)) return t;
    }
}

static void drain_group(q3_pool *p, struct task_group *g, unsigned gen, int thread) {
    for (int t; (t = claim_task(g, gen)) >= 0;) {
        p->fn(p->ctx, t, thread);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

/* The group a thread starts on: its node's, else one spread by thread index so that threads of
 * no node do not all queue on the same counter. */
static int home_group(q3_pool *p, int n_groups, int thread) {
    for (int g = 0; g < n_groups; g++) {
        int node = atomic_load_explicit(&p->group_node[g], memory_order_relaxed);
        if (node >= 0 && node == p->thread_node[thread]) return g;
    }
    return thread % n_groups;
}

/* Takes job gen's tasks until none is left. A worker late for gen may read the fields of a
 * later job here; it then claims nothing, since every claim checks gen. */
static void drain(q3_pool *p, unsigned gen, int thread) {
    int n_groups = atomic_load_explicit(&p->n_groups, memory_order_relaxed);
    if (n_groups < 1 || n_groups > Q3_POOL_MAX_GROUPS) return;
    int home = home_group(p, n_groups, thread);
    for (int k = 0; k < n_groups; k++) drain_group(p, &p->groups[(home + k) % n_groups], gen, thread);
}

/* Waits for a generation other than seen: spins, then yields, then sleeps. Returns it, or
 * seen when the pool stops. */
static unsigned wait_for_job(q3_pool *p, unsigned seen) {
    double give_up = 0;
    for (int spins = 0;; spins++) {
        unsigned gen = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (gen != seen || atomic_load(&p->stop)) return gen;
        if (!p->oversubscribed && spins < SPIN_ITERATIONS) {
            cpu_relax();
            continue;
        }
        sched_yield();
        if (give_up == 0) give_up = seconds_now() + AWAKE_SECONDS;
        if (spins % 64 == 0 && seconds_now() > give_up) break;
    }
    pthread_mutex_lock(&p->lock);
    while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake, &p->lock);
    pthread_mutex_unlock(&p->lock);
    return atomic_load_explicit(&p->generation, memory_order_acquire);
}

static void *worker(void *arg) {
    struct worker_arg *wa = arg;
    q3_pool *p = wa->pool;
    int index = wa->index;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        unsigned gen = wait_for_job(p, seen);
        if (atomic_load(&p->stop)) return NULL;
        seen = gen;
        drain(p, gen, index);
    }
}

/* Binds thread i to CPU cpu_order[i % CPUs] and records that CPU's node. */
static q3_status pin_threads(q3_pool *p) {
    long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (n_cpu <= 0) return Q3_OK;
    int *node_of_cpu = malloc((size_t)n_cpu * sizeof *node_of_cpu), *order = malloc((size_t)n_cpu * sizeof *order);
    if (!node_of_cpu || !order) {
        free(node_of_cpu);
        free(order);
        return Q3_ENOMEM;
    }
    for (int c = 0; c < n_cpu; c++) node_of_cpu[c] = q3_numa_node_of_cpu(c);
    q3_numa_cpu_order((int)n_cpu, node_of_cpu, order);
    for (int i = 0; i < p->n_threads; i++) {
        int cpu = order[i % n_cpu];
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        pthread_setaffinity_np(i == 0 ? pthread_self() : p->threads[i], sizeof set, &set);
        p->thread_node[i] = node_of_cpu[cpu];
    }
    free(node_of_cpu);
    free(order);
    return Q3_OK;
}

q3_status q3_pool_new(q3_pool **out, int n_threads, bool pin, q3_error *e) {
    if (n_threads <= 0) n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n_threads <= 0) n_threads = 1;
    q3_pool *p = calloc(1, sizeof *p);
    if (!p) return q3_fail(e, Q3_ENOMEM, "thread pool: out of memory");
    p->n_threads = n_threads;
    long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
    p->oversubscribed = n_cpu > 0 && n_threads > n_cpu;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    p->thread_node = malloc((size_t)n_threads * sizeof *p->thread_node);
    if (!p->threads || !p->thread_node) {
        free(p->threads);
        free(p->thread_node);
        free(p);
        return q3_fail(e, Q3_ENOMEM, "thread pool: out of memory");
    }
    for (int i = 0; i < n_threads; i++) p->thread_node[i] = -1;
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (struct worker_arg){p, i};
        if (!wa || pthread_create(&p->threads[i], NULL, worker, wa) != 0) {
            free(wa);
            p->n_threads = i;
            q3_pool_free(p);
            return q3_fail(e, Q3_ENOMEM, "thread pool: cannot start thread %d", i);
        }
    }
    if (pin && pin_threads(p) != Q3_OK) {
        q3_pool_free(p);
        return q3_fail(e, Q3_ENOMEM, "thread pool: out of memory");
    }
    *out = p;
    return Q3_OK;
}

void q3_pool_free(q3_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p->threads);
    free(p->thread_node);
    free(p);
}

int q3_pool_size(const q3_pool *p) { return p->n_threads; }

void q3_pool_set_thread_node(q3_pool *p, int thread, int node) {
    if (thread >= 0 && thread < p->n_threads) p->thread_node[thread] = node;
}

void q3_pool_run(q3_pool *p, q3_task_fn fn, void *ctx, int n_tasks) {
    q3_pool_run_grouped(p, fn, ctx, 1, (const int[]){0, n_tasks}, (const int[]){-1});
}

void q3_pool_run_grouped(q3_pool *p, q3_task_fn fn, void *ctx, int n_groups, const int *group_first,
                         const int *group_node) {
    int n_tasks = group_first[n_groups] - group_first[0];
    if (n_tasks <= 0) return;
    if (p->n_threads == 1 || n_tasks == 1) {
        for (int t = group_first[0]; t < group_first[n_groups]; t++) fn(ctx, t, 0);
        return;
    }
    unsigned gen = atomic_load_explicit(&p->generation, memory_order_relaxed) + 1;
    /* Each group's counter moves to this job before its end changes (see claim_task); groups
     * this job leaves alone stay exhausted by the job that used them last. */
    for (int g = 0; g < n_groups; g++) {
        atomic_store(&p->groups[g].next, (uint64_t)gen << 32 | (uint32_t)group_first[g]);
        atomic_store(&p->groups[g].end, group_first[g + 1]);
        atomic_store_explicit(&p->group_node[g], group_node[g], memory_order_relaxed);
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->n_groups, n_groups, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    pthread_mutex_lock(&p->lock);
    atomic_store_explicit(&p->generation, gen, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    drain(p, gen, 0);
    for (int spins = 0; atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks; spins++) {
        if (!p->oversubscribed && spins < SPIN_ITERATIONS) cpu_relax();
        else sched_yield();
    }
}
