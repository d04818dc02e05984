/* Thread pool. A job is published by bumping `generation`; workers spin on it for a while
 * (decode steps come every few milliseconds, so waking from a futex each op would cost more
 * than the op) and then sleep on a condition variable. A job's tasks sit in groups, each with
 * its own counter; a plain job is one group. */
#include "base/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include "base/numa.h"

#define SPIN_ITERATIONS 200000

_Static_assert(Q3_NUMA_MAX_NODES <= Q3_POOL_MAX_GROUPS, "a job needs a group per NUMA node");

/* One group's tasks [next, end), alone on its cache line: threads of different nodes hammer
 * different counters. */
struct task_group {
    atomic_int next;
    int end;
    char pad[64 - sizeof(atomic_int) - sizeof(int)];
};

struct q3_pool {
    int n_threads;
    pthread_t *threads;
    int *thread_node;    /* [n_threads] node of each thread's CPU, -1 unknown */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_uint generation;
    atomic_int pending;  /* workers still inside the current job */
    atomic_bool stop;
    q3_task_fn fn;
    void *ctx;
    int n_groups;
    struct task_group groups[Q3_POOL_MAX_GROUPS];
    int group_node[Q3_POOL_MAX_GROUPS];
};

struct worker_arg {
    q3_pool *pool;
    int index;
};

static void drain_group(q3_pool *p, struct task_group *g, int thread) {
    for (;;) {
        int t = atomic_fetch_add_explicit(&g->next, 1, memory_order_relaxed);
        if (t >= g->end) break;
        p->fn(p->ctx, t, thread);
    }
}

/* The group a thread starts on: its node's, else one spread by thread index so that threads of
 * no node do not all queue on the same counter. */
static int home_group(const q3_pool *p, int thread) {
    for (int g = 0; g < p->n_groups; g++)
        if (p->group_node[g] >= 0 && p->group_node[g] == p->thread_node[thread]) return g;
    return thread % p->n_groups;
}

static void drain(q3_pool *p, int thread) {
    int home = home_group(p, thread);
    for (int k = 0; k < p->n_groups; k++) drain_group(p, &p->groups[(home + k) % p->n_groups], thread);
}

static void *worker(void *arg) {
    struct worker_arg *wa = arg;
    q3_pool *p = wa->pool;
    int index = wa->index;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               !atomic_load(&p->stop)) {
            if (++spins < SPIN_ITERATIONS) continue;
            pthread_mutex_lock(&p->lock);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->wake, &p->lock);
            pthread_mutex_unlock(&p->lock);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = gen;
        drain(p, index);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
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
    p->fn = fn;
    p->ctx = ctx;
    p->n_groups = n_groups;
    for (int g = 0; g < n_groups; g++) {
        atomic_store_explicit(&p->groups[g].next, group_first[g], memory_order_relaxed);
        p->groups[g].end = group_first[g + 1];
        p->group_node[g] = group_node[g];
    }
    atomic_store(&p->pending, p->n_threads - 1);
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    drain(p, 0);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) sched_yield();
}
