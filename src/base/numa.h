/* NUMA nodes and the placement of memory on them. On a machine with several memory nodes a CPU
 * reads its own node's memory fastest, so the engine puts each routed expert's weights on one
 * node and lets that node's threads compute it (src/model/placement.c, src/cpu/moe.c).
 *
 * Built without libnuma (no Q3_HAVE_NUMA), or on a kernel without NUMA, the machine reads as one
 * node and placing reports Q3_EUNSUPPORTED. The planning functions are pure, so they can be
 * tested for many nodes on a machine with one. */
#ifndef Q3_NUMA_H
#define Q3_NUMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/error.h"

#define Q3_NUMA_MAX_NODES 64

/* The nodes placement deals over: those with both CPUs and memory this process may use. A node
 * with memory but no CPUs (CXL, HBM) is left out: no thread would read it locally. */
typedef struct q3_numa_topology {
    int n_nodes;                    /* 1 when libnuma is absent or sees one node */
    int node_id[Q3_NUMA_MAX_NODES]; /* the kernel's number of each; numbers may have gaps */
} q3_numa_topology;

/* Whether this build has libnuma and the kernel answers it (numa_available()); cannot fail. */
bool q3_numa_available(void);
/* The machine's nodes; one node numbered 0 when it cannot tell. Cannot fail. */
void q3_numa_topology_get(q3_numa_topology *t);
/* The kernel's node of a CPU, or -1 when unknown; cannot fail. */
int q3_numa_node_of_cpu(int cpu);

/* ---- planning (pure) ---- */

/* The node, as an index into a topology's node_id, that holds expert x's weights. Experts are
 * dealt round robin over the experts this process owns (x % ep == its ep rank, so x / ep counts
 * them), which splits any number of experts as evenly as contiguous ranges would and keeps the
 * deal even under --ep, where dealing x itself by x % n_nodes would put all of a rank's experts
 * on the nodes congruent to its rank. Routing favours no range of expert ids, so neither deal
 * balances load better. n_nodes >= 1; cannot fail. */
int q3_numa_expert_node(int expert, int ep, int n_nodes);

/* The CPU order a pinned pool uses, thread i on cpu_order[i % n_cpus]: one CPU of each node in
 * turn, so any number of threads spreads over the nodes in proportion to their CPUs. Within a
 * node the CPUs keep their order; CPUs of no known node (node_of_cpu[c] < 0) come last. One node:
 * CPUs 0, 1, 2, ... Cannot fail. */
void q3_numa_cpu_order(int n_cpus, const int *node_of_cpu, int *cpu_order);

/* The whole pages whose first byte lies in [start, start + len): *first, and the count returned.
 * A page that two slices share belongs to the slice holding its first byte, so the pages of
 * consecutive slices never overlap; a slice within one page may own none. page is a power of
 * two; cannot fail. */
size_t q3_numa_page_span(uintptr_t start, size_t len, size_t page, uintptr_t *first);

/* Orders experts (stably) by their node, so experts[node_first[k] .. node_first[k + 1]) are
 * those of node index k; node_first has n_nodes + 1 entries. n <= 4096 (the most experts a
 * config may have); cannot fail. */
void q3_numa_order_experts(int32_t *experts, int n, int ep, int n_nodes, int *node_first);

/* ---- placing ---- */

typedef struct q3_numa_counts {
    size_t pages;    /* pages looked at */
    size_t moved;    /* of those, migrated from another node */
    size_t unplaced; /* still elsewhere: mapped by another process too, or busy */
} q3_numa_counts;

/* Puts n_pages pages from `first` (page aligned) of a file mapping on node (the kernel's number)
 * and adds what happened to *c. Linux allocates a shared file mapping's page-cache pages by the
 * memory policy of the thread that faults them in (mbind's policy on such a range is ignored), so
 * the pages are read in while this thread prefers node; pages the page cache already held on
 * another node are then migrated with move_pages. The thread's own policy is restored. Fails
 * (Q3_EUNSUPPORTED) without libnuma, or naming the call that failed. */
q3_status q3_numa_place(const void *first, size_t n_pages, int node, q3_numa_counts *c, q3_error *e);

/* The node each page from `first` is on now, or a negative errno for one that is not (-ENOENT:
 * not mapped in). Fails (Q3_EUNSUPPORTED) without libnuma. */
q3_status q3_numa_query(const void *first, size_t n_pages, int *node, q3_error *e);

#endif
