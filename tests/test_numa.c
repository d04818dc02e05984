/* NUMA placement of expert weights (src/base/numa.c, src/model/placement.c) and the pool's
 * grouped runs (src/base/pool.c). The planning is pure, so it is checked for several nodes here;
 * the machine the tests run on may have one node, so the real placement is checked there with
 * the kernel's own answer (move_pages' query), and the MoE block's grouping by node with a
 * topology that names the real node twice. */
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#include "base/mapfile.h"
#include "base/numa.h"
#include "base/pool.h"
#include "cpu/cpu_backend.h"
#include "model/runner.h"
#include "testutil.h"

/* ---- planning ---- */

static void test_experts_are_dealt_round_robin_over_owned_experts(void **state) {
    (void)state;
    for (int x = 0; x < 8; x++) assert_int_equal(q3_numa_expert_node(x, 1, 2), x % 2);
    /* Under --ep 2 the rank of ep 1 owns the odd experts: they still split over both nodes. */
    int on_node[2] = {0, 0};
    for (int x = 1; x < 128; x += 2) on_node[q3_numa_expert_node(x, 2, 2)]++;
    assert_int_equal(on_node[0], 32);
    assert_int_equal(on_node[1], 32);
    /* 128 experts over 3 nodes: 43, 43, 42. */
    int three[3] = {0, 0, 0};
    for (int x = 0; x < 128; x++) three[q3_numa_expert_node(x, 1, 3)]++;
    assert_int_equal(three[0], 43);
    assert_int_equal(three[1], 43);
    assert_int_equal(three[2], 42);
}

static void check_cpu_order(int n, const int *node_of_cpu, const int *want) {
    int got[16];
    q3_numa_cpu_order(n, node_of_cpu, got);
    for (int i = 0; i < n; i++) assert_int_equal(got[i], want[i]);
}

static void test_pinned_threads_are_dealt_over_nodes(void **state) {
    (void)state;
    /* One node: thread i on CPU i, as before NUMA. */
    check_cpu_order(4, (const int[]){0, 0, 0, 0}, (const int[]){0, 1, 2, 3});
    /* CPUs numbered by socket: 4 threads get two CPUs of each node. */
    check_cpu_order(8, (const int[]){0, 0, 0, 0, 1, 1, 1, 1}, (const int[]){0, 4, 1, 5, 2, 6, 3, 7});
    /* CPUs numbered alternately: already dealt. */
    check_cpu_order(4, (const int[]){0, 1, 0, 1}, (const int[]){0, 1, 2, 3});
    /* Uneven nodes, node numbers with gaps, CPUs of no known node last. */
    check_cpu_order(4, (const int[]){0, 0, 0, 1}, (const int[]){0, 3, 1, 2});
    check_cpu_order(4, (const int[]){5, 5, 2, 2}, (const int[]){2, 0, 3, 1});
    check_cpu_order(4, (const int[]){-1, 0, -1, 1}, (const int[]){1, 3, 0, 2});
    /* Which threads prefer node 1 in a pool of 3 on the socket-numbered machine: thread 1 only. */
    int order[8];
    const int sockets[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    q3_numa_cpu_order(8, sockets, order);
    int prefers_1 = 0;
    for (int thread = 0; thread < 3; thread++) prefers_1 += sockets[order[thread]] == 1 ? 1 << thread : 0;
    assert_int_equal(prefers_1, 2);
}

static void test_page_span_gives_each_page_to_the_slice_holding_its_first_byte(void **state) {
    (void)state;
    uintptr_t first;
    assert_int_equal(q3_numa_page_span(8192, 8192, 4096, &first), 2);
    assert_int_equal(first, 8192);
    assert_int_equal(q3_numa_page_span(100, 5000, 4096, &first), 1); /* page 4096 only */
    assert_int_equal(first, 4096);
    assert_int_equal(q3_numa_page_span(4096, 1, 4096, &first), 1);
    assert_int_equal(q3_numa_page_span(4097, 4000, 4096, &first), 0); /* inside one page */
    assert_int_equal(q3_numa_page_span(4096, 0, 4096, &first), 0);
    /* The experts of a merged tensor, slices of 10000 bytes from an unaligned start: their pages
     * never overlap and leave no gap. */
    uintptr_t start = 3 * 4096 + 100, next = 0;
    size_t total = 0;
    for (int x = 0; x < 9; x++) {
        size_t n = q3_numa_page_span(start + (uintptr_t)x * 10000, 10000, 4096, &first);
        if (x > 0 && n > 0) assert_int_equal(first, next);
        if (n > 0) next = first + n * 4096;
        total += n;
    }
    /* Pages whose first byte lies in [12388, 102388): those at 16384, 20480, ..., 98304. */
    assert_int_equal(total, (98304 - 16384) / 4096 + 1);
}

static void test_active_experts_are_ordered_by_node(void **state) {
    (void)state;
    int32_t experts[] = {1, 2, 3, 5, 8, 9};
    int first[3];
    q3_numa_order_experts(experts, 6, 1, 2, first);
    const int32_t want[] = {2, 8, 1, 3, 5, 9};
    for (int i = 0; i < 6; i++) assert_int_equal(experts[i], want[i]);
    assert_int_equal(first[0], 0);
    assert_int_equal(first[1], 2);
    assert_int_equal(first[2], 6);
}

/* ---- the pool's grouped runs ---- */

#define MAX_TASKS 512

typedef struct run_log {
    atomic_int runs[MAX_TASKS];
    atomic_int done;
    atomic_int first_task[2]; /* the first task each thread took, -1 none yet */
    atomic_int ran_by[MAX_TASKS];
    atomic_bool timed_out;
    bool thread0_waits_for_thread1;
    int thread1_waits_for_done; /* > 0: thread 1's first task waits until this many others ran */
} run_log;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Waits (yielding) until *v reaches want; records a time-out after 20 s instead of hanging. */
static void wait_for(run_log *log, atomic_int *v, int want) {
    double until = now_s() + 20;
    while (atomic_load(v) < want) {
        if (now_s() > until) {
            atomic_store(&log->timed_out, true);
            return;
        }
        sched_yield();
    }
}

static void logged_task(void *ctx, int task, int thread) {
    run_log *log = ctx;
    atomic_fetch_add(&log->runs[task], 1);
    atomic_store(&log->ran_by[task], thread);
    int none = -1;
    bool first = thread < 2 && atomic_compare_exchange_strong(&log->first_task[thread], &none, task);
    if (first && thread == 0 && log->thread0_waits_for_thread1) wait_for(log, &log->first_task[1], 0);
    if (first && thread == 1 && log->thread1_waits_for_done > 0) wait_for(log, &log->done, log->thread1_waits_for_done);
    atomic_fetch_add(&log->done, 1);
}

static void reset(run_log *log) {
    memset(log, 0, sizeof *log);
    atomic_store(&log->first_task[0], -1);
    atomic_store(&log->first_task[1], -1);
}

static q3_pool *pool_on_nodes(int n_threads, const int *node) {
    q3_pool *p;
    q3_error e = {0};
    if (q3_pool_new(&p, n_threads, false, &e)) fail_msg("%s", e.msg);
    for (int i = 0; i < n_threads; i++) q3_pool_set_thread_node(p, i, node[i]);
    return p;
}

static void test_grouped_run_runs_every_task_once(void **state) {
    (void)state;
    q3_pool *p = pool_on_nodes(4, (const int[]){0, 0, 7, 7});
    static run_log log;
    /* Groups of node 7, an empty one, node 0, and a node no thread is on. */
    const int first[] = {0, 150, 150, 300, 301}, node[] = {7, 3, 0, 9};
    for (int rep = 0; rep < 50; rep++) {
        reset(&log);
        q3_pool_run_grouped(p, logged_task, &log, 4, first, node);
        for (int t = 0; t < 301; t++) assert_int_equal(atomic_load(&log.runs[t]), 1);
        assert_int_equal(atomic_load(&log.runs[301]), 0);
    }
    /* The plain run is one group. */
    reset(&log);
    q3_pool_run(p, logged_task, &log, 77);
    for (int t = 0; t < 77; t++) assert_int_equal(atomic_load(&log.runs[t]), 1);
    q3_pool_free(p);
}

/* Groups listed node 1 first: a thread that ignored its node would start on group `thread`,
 * the opposite of what its node says. */
static void test_threads_start_on_their_nodes_group(void **state) {
    (void)state;
    q3_pool *p = pool_on_nodes(2, (const int[]){0, 1});
    static run_log log;
    reset(&log);
    log.thread0_waits_for_thread1 = true;
    q3_pool_run_grouped(p, logged_task, &log, 2, (const int[]){0, 4, 8}, (const int[]){1, 0});
    assert_false(atomic_load(&log.timed_out));
    printf("  first tasks: thread 0 took %d, thread 1 took %d\n", atomic_load(&log.first_task[0]),
           atomic_load(&log.first_task[1]));
    assert_true(atomic_load(&log.first_task[0]) >= 4); /* node 0's group: tasks 4..7 */
    assert_true(atomic_load(&log.first_task[1]) < 4);  /* node 1's group: tasks 0..3 */
    for (int t = 0; t < 8; t++) assert_int_equal(atomic_load(&log.runs[t]), 1);
    q3_pool_free(p);
}

/* Thread 1 (node 1) stays in its first task until every other task has run: thread 0 must take
 * the rest of node 1's group, or the job would wait for thread 1 and time out. */
static void test_idle_threads_steal_from_a_busy_node(void **state) {
    (void)state;
    q3_pool *p = pool_on_nodes(2, (const int[]){0, 1});
    static run_log log;
    reset(&log);
    log.thread0_waits_for_thread1 = true;
    log.thread1_waits_for_done = 7;
    q3_pool_run_grouped(p, logged_task, &log, 2, (const int[]){0, 4, 8}, (const int[]){0, 1});
    assert_false(atomic_load(&log.timed_out));
    int stolen = 0;
    for (int t = 0; t < 8; t++) {
        assert_int_equal(atomic_load(&log.runs[t]), 1);
        if (t >= 4 && atomic_load(&log.ran_by[t]) == 0) stolen++;
    }
    printf("  thread 0 took %d of node 1's 4 tasks while thread 1 was busy\n", stolen);
    assert_int_equal(stolen, 3);
    q3_pool_free(p);
}

/* ---- placing pages for real ---- */

static bool numa_or_skip(void) {
    if (q3_numa_available()) return true;
    printf("  skipped: built without libnuma or the kernel has no NUMA; placement is off here\n");
    return false;
}

/* Pages not mapped into this process (move_pages' query reports a negative errno for them). */
static size_t unmapped_pages(const void *first, size_t n) {
    int node[256];
    q3_error e = {0};
    size_t count = 0;
    for (size_t done = 0; done < n; done += 256) {
        size_t k = n - done < 256 ? n - done : 256;
        if (q3_numa_query((const char *)first + done * (size_t)sysconf(_SC_PAGESIZE), k, node, &e)) fail_msg("%s", e.msg);
        for (size_t i = 0; i < k; i++) count += node[i] < 0;
    }
    return count;
}

static void assert_pages_on(const void *first, size_t n, int want) {
    int node[256];
    q3_error e = {0};
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t done = 0; done < n; done += 256) {
        size_t k = n - done < 256 ? n - done : 256;
        if (q3_numa_query((const char *)first + done * page, k, node, &e)) fail_msg("%s", e.msg);
        for (size_t i = 0; i < k; i++) assert_int_equal(node[i], want);
    }
}

static void test_placed_file_pages_are_on_the_node_asked_for(void **state) {
    (void)state;
    if (!numa_or_skip()) skip();
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = 64;
    const char *path = tmp_path(0, "numa_pages.bin");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < n * page; i++) fputc((int)(i * 31 % 251), f);
    fclose(f);
    q3_mapfile map;
    q3_error e = {0};
    if (q3_mapfile_open(&map, path, &e)) fail_msg("%s", e.msg);
    const unsigned char *slice = map.data + 8 * page;
    assert_int_equal(unmapped_pages(slice, 32), 32); /* nothing read yet */
    q3_numa_topology t;
    q3_numa_topology_get(&t);
    int node = t.node_id[t.n_nodes - 1];
    q3_numa_counts c = {0};
    if (q3_numa_place(slice, 32, node, &c, &e)) fail_msg("%s", e.msg);
    printf("  32 pages to node %d: %zu looked at, %zu moved, %zu left elsewhere\n", node, c.pages, c.moved, c.unplaced);
    assert_int_equal(c.pages, 32);
    assert_int_equal(c.unplaced, 0);
    assert_pages_on(slice, 32, node);
    assert_int_equal(map.data[8 * page + 5], (8 * page + 5) * 31 % 251); /* the bytes are the file's */
    q3_mapfile_close(&map);
    unlink(path);
}

static const char *demo_path(void) {
    static char buf[4096];
    const char *root = getenv("Q3_ROOT");
    snprintf(buf, sizeof buf, "%s/models/qwen3-moe-demo-py.gguf", root ? root : ".");
    return buf;
}

static q3_model *load_demo(q3_numa_mode mode) {
    q3_model *m;
    q3_error e = {0};
    if (q3_model_load(&m, demo_path(), &(q3_load_options){.numa = mode}, &e)) fail_msg("%s", e.msg);
    return m;
}

/* Calls fn on the page span of every expert matrix of the model. */
static size_t expert_pages(const q3_model *m, void (*fn)(const void *first, size_t n, int node), size_t *unmapped) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), total = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        for (int x = 0; m->layers[l].is_moe && x < m->cfg.n_experts; x++) {
            const q3_mat *mats[3] = {&m->layers[l].experts[x].gate, &m->layers[l].experts[x].up,
                                     &m->layers[l].experts[x].down};
            for (int i = 0; i < 3; i++) {
                uintptr_t first;
                size_t n = q3_numa_page_span((uintptr_t)mats[i]->data, (size_t)mats[i]->rows * mats[i]->row_bytes, page, &first);
                if (unmapped) *unmapped += unmapped_pages((const void *)first, n);
                if (fn) fn((const void *)first, n, m->numa.node_id[q3_numa_expert_node(x, m->shard.ep, m->numa.n_nodes)]);
                total += n;
            }
        }
    }
    return total;
}

static void on_its_node(const void *first, size_t n, int node) { assert_pages_on(first, n, node); }

/* Logits of a 6-token prompt, the runner's two threads said to be on nodes 0 and 1. */
static float *demo_logits(q3_model *m) {
    const int32_t ids[6] = {750, 4210, 1155, 7, 13, 9707};
    int n = 6;
    q3_error e = {0};
    q3_kv_cache *kv = NULL;
    q3_runner *r = NULL;
    q3_kv_options ko = {.type = Q3_TYPE_F32, .page_size = 16, .n_pages = 2, .max_seqs = 1, .max_seq_len = 32};
    if (q3_kv_cache_new(&kv, m, &ko, &e) || q3_runner_new(&r, m, n, 2, &e)) fail_msg("%s", e.msg);
    q3_pool_set_thread_node(q3_cpu_backend_pool(r->be), 0, 0);
    q3_pool_set_thread_node(q3_cpu_backend_pool(r->be), 1, 1);
    float *logits = malloc((size_t)n * m->cfg.vocab_size * sizeof *logits);
    int32_t pos[8], seq[8] = {0};
    for (int i = 0; i < n; i++) pos[i] = i;
    if (q3_forward(r, kv, &(q3_batch){n, ids, pos, seq, NULL}, logits, &e)) fail_msg("%s", e.msg);
    q3_runner_free(r);
    q3_kv_cache_free(kv);
    return logits;
}

/* The whole path on the real machine: every expert page of the demo model ends on the node the
 * deal gives it. A topology naming the real node twice deals over two nodes on a machine with
 * one. */
static void test_model_experts_are_placed_on_their_nodes(void **state) {
    (void)state;
    if (!numa_or_skip()) skip();
    q3_model *placed = load_demo(Q3_NUMA_OFF);
    assert_int_equal(placed->numa.n_nodes, 0);
    size_t unmapped = 0, pages = expert_pages(placed, NULL, &unmapped);
    assert_true(unmapped > 0); /* loading read none of most experts' pages */
    q3_numa_topology real, t = {0};
    q3_numa_topology_get(&real);
    t.n_nodes = 2;
    t.node_id[0] = real.node_id[0];
    t.node_id[1] = real.node_id[real.n_nodes - 1];
    q3_error e = {0};
    if (q3_model_place_experts(placed, &t, true, &e)) fail_msg("%s", e.msg);
    assert_int_equal(placed->numa.n_nodes, 2);
    unmapped = 0;
    assert_int_equal(expert_pages(placed, on_its_node, &unmapped), pages);
    assert_int_equal(unmapped, 0);
    printf("  %zu expert pages of the demo model on their nodes\n", pages);
    q3_model_free(placed);
}

/* The MoE block with experts said to be on nodes 0 and 1 (no placement needed for that) orders
 * its tasks by node and lets the thread of each node start on its own: the logits must not
 * change by a bit, as every task writes rows of its own. */
static void test_grouping_tasks_by_node_computes_the_same(void **state) {
    (void)state;
    q3_model *plain = load_demo(Q3_NUMA_OFF), *grouped = load_demo(Q3_NUMA_OFF);
    grouped->numa = (q3_numa_topology){2, {0, 1}};
    float *want = demo_logits(plain), *got = demo_logits(grouped);
    assert_memory_equal(got, want, 6 * (size_t)plain->cfg.vocab_size * sizeof(float));
    free(want);
    free(got);
    q3_model_free(plain);
    q3_model_free(grouped);
}

/* What loading does by default: places the experts when the machine has several nodes, and
 * leaves them (numa.n_nodes 0) on one. */
static void test_loading_places_only_on_several_nodes(void **state) {
    (void)state;
    q3_numa_topology t;
    q3_numa_topology_get(&t);
    q3_model *m = load_demo(Q3_NUMA_AUTO), *d = load_demo(Q3_NUMA_DISTRIBUTE);
    int want = t.n_nodes > 1 && q3_numa_available() ? t.n_nodes : 0;
    printf("  %d node(s) here: the experts were dealt over %d\n", t.n_nodes, m->numa.n_nodes);
    assert_int_equal(m->numa.n_nodes, want);
    assert_int_equal(d->numa.n_nodes, want);
    q3_model_free(m);
    q3_model_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_experts_are_dealt_round_robin_over_owned_experts),
        cmocka_unit_test(test_pinned_threads_are_dealt_over_nodes),
        cmocka_unit_test(test_page_span_gives_each_page_to_the_slice_holding_its_first_byte),
        cmocka_unit_test(test_active_experts_are_ordered_by_node),
        cmocka_unit_test(test_grouped_run_runs_every_task_once),
        cmocka_unit_test(test_threads_start_on_their_nodes_group),
        cmocka_unit_test(test_idle_threads_steal_from_a_busy_node),
        cmocka_unit_test(test_placed_file_pages_are_on_the_node_asked_for),
        cmocka_unit_test(test_model_experts_are_placed_on_their_nodes),
        cmocka_unit_test(test_grouping_tasks_by_node_computes_the_same),
        cmocka_unit_test(test_loading_places_only_on_several_nodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
