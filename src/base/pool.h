/* A persistent thread pool: workers wait (spin, then sleep) for a job; a job is n_tasks
 * independent tasks taken from a shared counter, so uneven tasks balance themselves.
 * The calling thread works too. One job at a time per pool.
 *
 * On a machine with several NUMA nodes a job may come in groups, each preferring the threads of
 * one node (the experts whose weights live there, src/cpu/moe.c): a thread takes its node's tasks
 * first and then helps with the other groups, so locality never leaves a thread idle. */
#ifndef Q3_POOL_H
#define Q3_POOL_H

#include <stdbool.h>
#include "base/error.h"

/* The most groups one job may have: one per NUMA node placement deals over. */
#define Q3_POOL_MAX_GROUPS 64

typedef struct q3_pool q3_pool;
/* task in [0, n_tasks); thread in [0, q3_pool_size) identifies per-thread scratch. */
typedef void (*q3_task_fn)(void *ctx, int task, int thread);

/* n_threads <= 0 picks the number of online CPUs. pin binds each thread to one CPU: thread i to
 * CPU i on a machine with one node; with several, the threads are dealt over the nodes in turn
 * (q3_numa_cpu_order) so that every node's memory has threads beside it. */
q3_status q3_pool_new(q3_pool **out, int n_threads, bool pin, q3_error *e);
void q3_pool_free(q3_pool *p);
/* Threads including the caller; cannot fail. */
int q3_pool_size(const q3_pool *p);
/* Runs fn for every task and returns when all are done; cannot fail. */
void q3_pool_run(q3_pool *p, q3_task_fn fn, void *ctx, int n_tasks);

/* Says that thread runs on node, for a caller that binds threads itself and for tests, which
 * have one node to run on; call it between jobs. Cannot fail (ignores a thread out of range). */
void q3_pool_set_thread_node(q3_pool *p, int thread, int node);
/* Runs tasks [group_first[0], group_first[n_groups]) like q3_pool_run, in n_groups groups:
 * group g holds tasks [group_first[g], group_first[g + 1]) and prefers the threads on node
 * group_node[g]. A thread starts on the first group of its node (a thread of no such node on
 * group thread % n_groups), then takes from the groups after it in turn.
 * 1 <= n_groups <= Q3_POOL_MAX_GROUPS; cannot fail. */
void q3_pool_run_grouped(q3_pool *p, q3_task_fn fn, void *ctx, int n_groups, const int *group_first,
                         const int *group_node);

#endif
