/* Recorded backend calls and the CUDA graphs made of them. A decode step launches some 20 kernels
 * per layer; launched one by one, the launches cost more than the kernels. So during a small step
 * the CUDA backend does not launch its operations at once: it records each call (its operation
 * and arguments) until the step's first read, then looks the whole list up among the graphs it
 * captured before. The same list (the same operations on the same buffers, which is what a decode
 * step repeats) replays its graph in one launch; a new list is executed into a stream capture,
 * which makes its graph for next time.
 *
 * A graph is only replayed for a list equal, call by call, to the one it was captured from, so
 * a step that differs in anything the launches depend on (a trace read, another batch size,
 * another cache) never replays the wrong graph. What a step changes without changing the
 * launches (token ids, positions, page tables) lives in device memory the kernels read.
 *
 * Plain C: the lists and the cache are tested without a GPU (tests/test_cuda_plan.c). */
#ifndef Q3_CUDA_CALLS_H
#define Q3_CUDA_CALLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/error.h"

typedef enum q3_call_op {
    Q3_CALL_EMBED = 1, Q3_CALL_RMSNORM, Q3_CALL_ADD, Q3_CALL_MATMUL, Q3_CALL_ROPE_STORE, Q3_CALL_ATTEND,
    Q3_CALL_ROUTE, Q3_CALL_EXPERTS, Q3_CALL_FFN,
} q3_call_op;

#define Q3_CALL_PTRS 20

/* One backend call: its operation, pointers (buffers, weights) and numbers. Unused fields are 0. */
typedef struct q3_call {
    int32_t op;
    int32_t i[4];
    float f;
    uint64_t size;
    const void *p[Q3_CALL_PTRS];
} q3_call;

typedef struct q3_call_list {
    q3_call *calls;
    int n, cap;
    int n_tokens; /* the step's batch size: part of what the graph depends on */
} q3_call_list;

/* Empties the list for a step of n_tokens tokens (its memory stays); cannot fail. */
void q3_call_list_reset(q3_call_list *l, int n_tokens);
/* Appends a call; Q3_ENOMEM when the list cannot grow. */
q3_status q3_call_list_push(q3_call_list *l, const q3_call *c, q3_error *e);
/* Copies src into dst (growing dst); Q3_ENOMEM when it cannot. */
q3_status q3_call_list_copy(q3_call_list *dst, const q3_call_list *src, q3_error *e);
/* Whether a and b are the same calls in the same order for the same batch size; cannot fail. */
bool q3_call_list_equal(const q3_call_list *a, const q3_call_list *b);
/* A hash of the list (FNV-1a over its calls' fields); cannot fail. */
uint64_t q3_call_list_hash(const q3_call_list *l);
void q3_call_list_free(q3_call_list *l);

/* Graphs by the call list they replay, at most Q3_GRAPH_CACHE of them; the least recently used
 * one goes (through destroy) to make room. */
#define Q3_GRAPH_CACHE 16

typedef struct q3_graph_entry {
    q3_call_list key;
    uint64_t hash, last_use;
    void *graph; /* NULL: empty entry */
} q3_graph_entry;

typedef struct q3_graph_cache {
    q3_graph_entry entries[Q3_GRAPH_CACHE];
    uint64_t clock;
    void (*destroy)(void *graph); /* frees a graph that leaves the cache */
    uint64_t hits, misses;
} q3_graph_cache;

/* The graph captured from a list equal to l, or NULL; counts a hit or a miss. Cannot fail. */
void *q3_graph_cache_find(q3_graph_cache *c, const q3_call_list *l);
/* Keeps graph for list l (a copy of l). On failure (out of memory) graph is destroyed and
 * Q3_ENOMEM returned. */
q3_status q3_graph_cache_put(q3_graph_cache *c, const q3_call_list *l, void *graph, q3_error *e);
/* Destroys every graph and frees the copies of their lists; cannot fail. */
void q3_graph_cache_clear(q3_graph_cache *c);

#endif
