/* NUMA topology and page placement through libnuma; the planning functions need no libnuma.
 * Without Q3_HAVE_NUMA the machine reads as one node and placing says it is unsupported. */
#include "base/numa.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef Q3_HAVE_NUMA
#include <numa.h>
#include <numaif.h>
#endif

/* Node numbers the planning accepts: the kernel's MAX_NUMNODES is at most 1024. */
#define MAX_NODE_ID 1024

int q3_numa_expert_node(int expert, int ep, int n_nodes) { return (expert / ep) % n_nodes; }

static bool known_node(int node) { return node >= 0 && node < MAX_NODE_ID; }

void q3_numa_cpu_order(int n_cpus, const int *node_of_cpu, int *cpu_order) {
    int cursor[MAX_NODE_ID], max_node = -1, n = 0;
    for (int c = 0; c < n_cpus; c++)
        if (known_node(node_of_cpu[c]) && node_of_cpu[c] > max_node) max_node = node_of_cpu[c];
    for (int k = 0; k <= max_node; k++) cursor[k] = 0;
    /* Rounds: each node gives its next CPU, until none has one left. cursor[k] only moves
     * forward, so the whole deal scans each node's CPUs once. */
    for (bool took = true; took;) {
        took = false;
        for (int k = 0; k <= max_node; k++) {
            int c = cursor[k];
            while (c < n_cpus && node_of_cpu[c] != k) c++;
            cursor[k] = c < n_cpus ? c + 1 : n_cpus;
            if (c < n_cpus) cpu_order[n++] = c, took = true;
        }
    }
    for (int c = 0; c < n_cpus; c++)
        if (!known_node(node_of_cpu[c])) cpu_order[n++] = c;
}

size_t q3_numa_page_span(uintptr_t start, size_t len, size_t page, uintptr_t *first) {
    uintptr_t mask = (uintptr_t)page - 1;
    uintptr_t begin = (start + mask) & ~mask, end = (start + len + mask) & ~mask;
    *first = begin;
    return end > begin ? (size_t)(end - begin) / page : 0;
}

void q3_numa_order_experts(int32_t *experts, int n, int ep, int n_nodes, int *node_first) {
    int32_t sorted[4096];
    int fill[Q3_NUMA_MAX_NODES];
    for (int k = 0; k <= n_nodes; k++) node_first[k] = 0;
    for (int i = 0; i < n; i++) node_first[q3_numa_expert_node(experts[i], ep, n_nodes) + 1]++;
    for (int k = 0; k < n_nodes; k++) node_first[k + 1] += node_first[k];
    memcpy(fill, node_first, (size_t)n_nodes * sizeof *fill);
    for (int i = 0; i < n; i++) sorted[fill[q3_numa_expert_node(experts[i], ep, n_nodes)]++] = experts[i];
    memcpy(experts, sorted, (size_t)n * sizeof *experts);
}

#ifdef Q3_HAVE_NUMA

/* Pages per move_pages call: its three arrays stay on the stack. */
#define PAGES_PER_CALL 512
#define LONG_BITS (8 * (int)sizeof(unsigned long))

bool q3_numa_available(void) { return numa_available() >= 0; }

int q3_numa_node_of_cpu(int cpu) { return q3_numa_available() ? numa_node_of_cpu(cpu) : -1; }

/* Whether a node's CPU mask holds a CPU this process may run on. */
static bool has_usable_cpu(const struct bitmask *cpus) {
    for (int c = 0; c < numa_num_possible_cpus(); c++)
        if (numa_bitmask_isbitset(cpus, (unsigned)c) && numa_bitmask_isbitset(numa_all_cpus_ptr, (unsigned)c)) return true;
    return false;
}

void q3_numa_topology_get(q3_numa_topology *t) {
    t->n_nodes = 1;
    t->node_id[0] = 0;
    if (!q3_numa_available()) return;
    struct bitmask *cpus = numa_allocate_cpumask();
    int n = 0;
    for (int node = 0; node <= numa_max_node() && n < Q3_NUMA_MAX_NODES; node++) {
        if (!numa_bitmask_isbitset(numa_all_nodes_ptr, (unsigned)node)) continue;
        if (numa_node_to_cpus(node, cpus) != 0 || !has_usable_cpu(cpus)) continue;
        t->node_id[n++] = node;
    }
    numa_free_cpumask(cpus);
    if (n > 0) t->n_nodes = n;
}

/* The calling thread's memory policy, to put back after placing. */
typedef struct saved_policy {
    int mode;
    unsigned long nodes[MAX_NODE_ID / LONG_BITS];
} saved_policy;

/* maxnode for the policy calls: the kernel reads one bit fewer than it is told. */
#define POLICY_MAXNODE (MAX_NODE_ID + 1)

static q3_status prefer_node(int node, saved_policy *saved, q3_error *e) {
    memset(saved, 0, sizeof *saved);
    if (get_mempolicy(&saved->mode, saved->nodes, POLICY_MAXNODE, NULL, 0) != 0)
        return q3_fail(e, Q3_EIO, "numa: get_mempolicy: %s", strerror(errno));
    /* Preferred, not bound: a full node falls back to another instead of failing the read. */
    unsigned long want[MAX_NODE_ID / LONG_BITS] = {0};
    want[node / LONG_BITS] = 1UL << (node % LONG_BITS);
    if (set_mempolicy(MPOL_PREFERRED, want, POLICY_MAXNODE) != 0)
        return q3_fail(e, Q3_EIO, "numa: set_mempolicy(preferred node %d): %s", node, strerror(errno));
    return Q3_OK;
}

static void restore_policy(const saved_policy *saved) {
    if (saved->mode == MPOL_DEFAULT) set_mempolicy(MPOL_DEFAULT, NULL, 0);
    else set_mempolicy(saved->mode, saved->nodes, POLICY_MAXNODE);
}

/* Brings the pages into the page cache and this process's page tables: MADV_WILLNEED reads the
 * range in one go (allocating in this thread, so under its policy), one load per page maps it.
 * The loads are volatile so that none is optimised away; their sum means nothing. */
static unsigned read_in(const unsigned char *first, size_t n_pages, size_t page) {
    madvise((void *)(uintptr_t)first, n_pages * page, MADV_WILLNEED); /* a hint: the loads do the work anyway */
    const volatile unsigned char *p = first;
    unsigned sum = 0;
    for (size_t i = 0; i < n_pages; i++) sum += p[i * page];
    return sum;
}

/* Migrates the pages not on node yet, PAGES_PER_CALL at a time: a query first, so pages already
 * in place cost no migration attempt and the counts say what moved. */
static q3_status migrate(const unsigned char *first, size_t n_pages, size_t page, int node, q3_numa_counts *c,
                         q3_error *e) {
    void *pages[PAGES_PER_CALL];
    int nodes[PAGES_PER_CALL], status[PAGES_PER_CALL];
    for (size_t done = 0; done < n_pages;) {
        unsigned long k = n_pages - done < PAGES_PER_CALL ? (unsigned long)(n_pages - done) : PAGES_PER_CALL;
        for (unsigned long i = 0; i < k; i++) pages[i] = (void *)(uintptr_t)(first + (done + i) * page);
        if (numa_move_pages(0, k, pages, NULL, status, 0) < 0)
            return q3_fail(e, Q3_EIO, "numa: move_pages (query): %s", strerror(errno));
        unsigned long away = 0;
        for (unsigned long i = 0; i < k; i++)
            if (status[i] != node) pages[away++] = pages[i];
        for (unsigned long i = 0; i < away; i++) nodes[i] = node;
        if (away && numa_move_pages(0, away, pages, nodes, status, MPOL_MF_MOVE) < 0)
            return q3_fail(e, Q3_EIO, "numa: move_pages to node %d: %s", node, strerror(errno));
        for (unsigned long i = 0; i < away; i++) {
            if (status[i] == node) c->moved++;
            else c->unplaced++;
        }
        c->pages += k;
        done += k;
    }
    return Q3_OK;
}

q3_status q3_numa_place(const void *first, size_t n_pages, int node, q3_numa_counts *c, q3_error *e) {
    if (!q3_numa_available()) return q3_fail(e, Q3_EUNSUPPORTED, "numa: the kernel reports no NUMA support");
    if (!known_node(node)) return q3_fail(e, Q3_EINVAL, "numa: no node %d", node);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    saved_policy saved;
    q3_status st = prefer_node(node, &saved, e);
    if (st) return st;
    (void)read_in(first, n_pages, page);
    restore_policy(&saved);
    return migrate(first, n_pages, page, node, c, e);
}

q3_status q3_numa_query(const void *first, size_t n_pages, int *node, q3_error *e) {
    if (!q3_numa_available()) return q3_fail(e, Q3_EUNSUPPORTED, "numa: the kernel reports no NUMA support");
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *pages[PAGES_PER_CALL];
    for (size_t done = 0; done < n_pages;) {
        unsigned long k = n_pages - done < PAGES_PER_CALL ? (unsigned long)(n_pages - done) : PAGES_PER_CALL;
        for (unsigned long i = 0; i < k; i++) pages[i] = (void *)((uintptr_t)first + (done + i) * page);
        if (numa_move_pages(0, k, pages, NULL, node + done, 0) < 0)
            return q3_fail(e, Q3_EIO, "numa: move_pages (query): %s", strerror(errno));
        done += k;
    }
    return Q3_OK;
}

#else /* no libnuma: one node, nothing to place */

bool q3_numa_available(void) { return false; }

int q3_numa_node_of_cpu(int cpu) {
    (void)cpu;
    return -1;
}

void q3_numa_topology_get(q3_numa_topology *t) {
    t->n_nodes = 1;
    t->node_id[0] = 0;
}

q3_status q3_numa_place(const void *first, size_t n_pages, int node, q3_numa_counts *c, q3_error *e) {
    (void)first, (void)n_pages, (void)node, (void)c;
    return q3_fail(e, Q3_EUNSUPPORTED, "numa: built without libnuma (install libnuma-dev and rebuild)");
}

q3_status q3_numa_query(const void *first, size_t n_pages, int *node, q3_error *e) {
    (void)first, (void)n_pages, (void)node;
    return q3_fail(e, Q3_EUNSUPPORTED, "numa: built without libnuma (install libnuma-dev and rebuild)");
}

#endif
