/* The thread pool (src/base/pool.c) under stress: thousands of back-to-back jobs of uneven
 * sizes, in one group and in several, on more threads than the machine has cores (so workers
 * wake late, or not at all, for many jobs): every task of every job runs exactly once, the job
 * returns only after all of them have, and a late worker never runs a task for the wrong job.
 * (The grouped order and node preference are checked in test_numa.c.) */
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>
#include "base/pool.h"
#include "testutil.h"

#define MAX_TASKS 96

typedef struct job_log {
    int job;                     /* the job these tasks belong to */
    atomic_int runs[MAX_TASKS];  /* runs of each task */
    atomic_int wrong_job;        /* tasks that ran with another job's context */
} job_log;

static atomic_int current_job;

static void counted_task(void *ctx, int task, int thread) {
    job_log *log = ctx;
    (void)thread;
    if (log->job != atomic_load(&current_job)) atomic_fetch_add(&log->wrong_job, 1);
    atomic_fetch_add(&log->runs[task], 1);
    for (volatile int spin = 0; spin < (task % 7) * 200; spin++) { /* uneven task lengths */
    }
}

static uint32_t rng = 2463534242u;
static int random_below(int n) {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return (int)(rng % (uint32_t)n);
}

/* n_jobs jobs of 1..MAX_TASKS tasks on a pool of n_threads, each checked when it returns. */
static void run_jobs(int n_threads, int n_jobs, bool grouped) {
    q3_pool *p;
    q3_error e = {0};
    if (q3_pool_new(&p, n_threads, false, &e)) fail_msg("%s", e.msg);
    static job_log logs[2]; /* alternate, so a late write to the last job's log shows */
    for (int j = 0; j < n_jobs; j++) {
        job_log *log = &logs[j % 2];
        memset(log, 0, sizeof *log);
        log->job = j;
        atomic_store(&current_job, j);
        int n = 1 + random_below(MAX_TASKS);
        if (grouped) {
            int first[4] = {0, random_below(n + 1), 0, n}, node[3] = {1, -1, 0};
            first[2] = first[1] + random_below(n - first[1] + 1);
            q3_pool_run_grouped(p, counted_task, log, 3, first, node);
        } else {
            q3_pool_run(p, counted_task, log, n);
        }
        for (int t = 0; t < MAX_TASKS; t++)
            if (atomic_load(&log->runs[t]) != (t < n))
                fail_msg("job %d (%d tasks, %d threads): task %d ran %d times", j, n, n_threads, t,
                         atomic_load(&log->runs[t]));
        assert_int_equal(atomic_load(&log->wrong_job), 0);
    }
    q3_pool_free(p);
}

static void test_every_task_once_per_job(void **state) {
    (void)state;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    print_message("%ld CPUs online\n", cpus);
    run_jobs(2, 2000, false);
    run_jobs((int)cpus + 1, 2000, false); /* oversubscribed: waiting threads yield */
    run_jobs(4 * (int)cpus, 1000, true);
    run_jobs(3, 1000, true);
}

/* A single-task job and a one-thread pool run on the caller, in order. */
static void test_small_jobs_run_on_the_caller(void **state) {
    (void)state;
    q3_pool *p;
    q3_error e = {0};
    if (q3_pool_new(&p, 1, false, &e)) fail_msg("%s", e.msg);
    assert_int_equal(q3_pool_size(p), 1);
    static job_log log;
    memset(&log, 0, sizeof log);
    atomic_store(&current_job, 0);
    q3_pool_run(p, counted_task, &log, 50);
    for (int t = 0; t < 50; t++) assert_int_equal(atomic_load(&log.runs[t]), 1);
    q3_pool_free(p);
}

/* A lost task leaves its job waiting forever: fail instead of hanging until CTest's time-out. */
static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_pool: a job did not finish within 120 s (a task was lost)\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(1);
}

int main(void) {
    signal(SIGALRM, on_alarm);
    alarm(120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_task_once_per_job),
        cmocka_unit_test(test_small_jobs_run_on_the_caller),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
