/* NUMA placement of the routed experts' weights. A decode step reads the weights of a few
 * experts per layer and little else, so on a machine with several memory nodes most of its
 * traffic can be local: each expert's slices of ffn_gate_exps, ffn_up_exps and ffn_down_exps
 * (contiguous in the merged [n_expert, rows, cols] tensors, or separate tensors in a checkpoint)
 * go to one node, and the MoE block lets that node's threads compute the expert first
 * (src/cpu/moe.c, q3_pool_run_grouped).
 *
 * Attention, norms, router, embedding and head stay where the kernel puts them: every step reads
 * all of them and the matmuls split their rows over every thread of the pool, so no node is
 * nearer to their readers than another; interleaving them would cost a pass over them at load
 * for no locality. The pages are placed once, at load: the page cache keeps them on their node
 * while the mapping lives, unless memory pressure evicts them, after which whichever thread
 * reads a page first decides its node again. */
#include <stdio.h>
#include <unistd.h>
#include "model/model.h"
#include "quant/types.h"

/* The bytes a matrix view reads: from its first row's start to its last row's end. A column
 * slice (down under --tp) keeps the full row stride, so its span holds the other columns too;
 * they belong to the same expert, so they go to the same node. */
static size_t mat_span(const q3_mat *w) {
    return w->rows > 0 ? (size_t)(w->rows - 1) * w->row_bytes + q3_row_bytes(w->type, w->cols) : 0;
}

static q3_status place_mat(const q3_mat *w, const char *name, int node, size_t page, q3_numa_counts *c,
                           q3_error *e) {
    uintptr_t first;
    size_t n_pages = q3_numa_page_span((uintptr_t)w->data, mat_span(w), page, &first);
    if (n_pages && q3_numa_place((const void *)first, n_pages, node, c, e)) return q3_wrap(e, "%s", name);
    return Q3_OK;
}

static q3_status place_expert(const q3_ffn *f, int node, size_t page, q3_numa_counts *c, q3_error *e) {
    q3_status st = place_mat(&f->gate, "ffn_gate", node, page, c, e);
    if (!st) st = place_mat(&f->up, "ffn_up", node, page, c, e);
    if (!st) st = place_mat(&f->down, "ffn_down", node, page, c, e);
    return st;
}

q3_status q3_model_place_experts(q3_model *m, const q3_numa_topology *t, bool verbose, q3_error *e) {
    const q3_config *c = &m->cfg;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    q3_numa_counts counts = {0};
    int n_placed = 0;
    m->numa.n_nodes = 0; /* the MoE block groups by node only once every expert is placed */
    for (int l = 0; l < c->n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        for (int x = 0; L->is_moe && x < c->n_experts; x++) {
            if (!q3_shard_owns_expert(&m->shard, x)) continue; /* never read here */
            int node = t->node_id[q3_numa_expert_node(x, m->shard.ep, t->n_nodes)];
            if (place_expert(&L->experts[x], node, page, &counts, e))
                return q3_wrap(e, "%s: layer %d expert %d", m->path, l, x);
            n_placed++;
        }
    }
    m->numa = *t;
    if (verbose)
        fprintf(stderr,
                "numa: %d experts dealt over %d nodes: %zu pages, %zu moved from another node, %zu left "
                "elsewhere (busy, or mapped by another process)\n",
                n_placed, t->n_nodes, counts.pages, counts.moved, counts.unplaced);
    return Q3_OK;
}

q3_status q3_model_apply_numa(q3_model *m, q3_numa_mode mode, bool verbose, q3_error *e) {
    q3_numa_topology t;
    q3_numa_topology_get(&t);
    const char *skip = mode == Q3_NUMA_OFF       ? "off (--numa off)"
                       : !q3_numa_available()    ? "off: built without libnuma, or the kernel has no NUMA"
                       : t.n_nodes < 2           ? "off: one NUMA node"
                       : !m->cfg.n_experts       ? "off: the model has no routed experts"
                                                 : NULL;
    if (skip) {
        if (verbose) fprintf(stderr, "numa: expert placement %s\n", skip);
        return Q3_OK;
    }
    q3_status st = q3_model_place_experts(m, &t, verbose, e);
    if (!st || mode == Q3_NUMA_DISTRIBUTE) return st;
    /* Auto mode on a machine that forbids the calls (a container's seccomp filter blocks
     * set_mempolicy and move_pages): the model still runs, only without locality. */
    fprintf(stderr, "q3moe: warning: experts not placed on NUMA nodes: %s\n", e ? e->msg : "");
    return Q3_OK;
}
