/* Thread pool. A job is published by bumping `generation`; workers spin on it for a while
 * (decode steps come every few milliseconds, so waking from a futex each op would cost more
 * than the op) and then sleep on a condition variable. */
#include "base/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define SPIN_ITERATIONS 200000

struct q3_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_uint generation;
    atomic_int next_task;
    atomic_int pending;  /* workers still inside the current job */
    atomic_bool stop;
    q3_task_fn fn;
    void *ctx;
    int n_tasks;
};

struct worker_arg {
    q3_pool *pool;
    int index;
};

static void drain(q3_pool *p, int thread) {
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next_task, 1, memory_order_relaxed);
        if (t >= p->n_tasks) break;
        p->fn(p->ctx, t, thread);
    }
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

q3_status q3_pool_new(q3_pool **out, int n_threads, bool pin, q3_error *e) {
    if (n_threads <= 0) n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n_threads <= 0) n_threads = 1;
    q3_pool *p = calloc(1, sizeof *p);
    if (!p) return q3_fail(e, Q3_ENOMEM, "thread pool: out of memory");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return q3_fail(e, Q3_ENOMEM, "thread pool: out of memory");
    }
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
    if (pin) {
        long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
        for (int i = 0; i < n_threads && n_cpu > 0; i++) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET((int)(i % n_cpu), &set);
            pthread_setaffinity_np(i == 0 ? pthread_self() : p->threads[i], sizeof set, &set);
        }
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
    free(p);
}

int q3_pool_size(const q3_pool *p) { return p->n_threads; }

void q3_pool_run(q3_pool *p, q3_task_fn fn, void *ctx, int n_tasks) {
    if (n_tasks <= 0) return;
    if (p->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next_task, 0);
    atomic_store(&p->pending, p->n_threads - 1);
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    drain(p, 0);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) sched_yield();
}
