/* A persistent thread pool: workers wait (spin, then sleep) for a job; a job is n_tasks
 * independent tasks taken from a shared counter, so uneven tasks balance themselves.
 * The calling thread works too. One job at a time per pool. */
#ifndef Q3_POOL_H
#define Q3_POOL_H

#include <stdbool.h>
#include "base/error.h"

typedef struct q3_pool q3_pool;
/* task in [0, n_tasks); thread in [0, q3_pool_size) identifies per-thread scratch. */
typedef void (*q3_task_fn)(void *ctx, int task, int thread);

/* n_threads <= 0 picks the number of online CPUs. pin binds thread i to CPU i. */
q3_status q3_pool_new(q3_pool **out, int n_threads, bool pin, q3_error *e);
void q3_pool_free(q3_pool *p);
/* Threads including the caller; cannot fail. */
int q3_pool_size(const q3_pool *p);
/* Runs fn for every task and returns when all are done; cannot fail. */
void q3_pool_run(q3_pool *p, q3_task_fn fn, void *ctx, int n_tasks);

#endif
