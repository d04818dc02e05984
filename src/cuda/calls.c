/* Recorded backend calls and the graph cache: see calls.h. */
#include "cuda/calls.h"

#include <stdlib.h>
#include <string.h>

void q3_call_list_reset(q3_call_list *l, int n_tokens) {
    l->n = 0;
    l->n_tokens = n_tokens;
}

static bool grow(q3_call_list *l, int need) {
    if (need <= l->cap) return true;
    int cap = l->cap ? l->cap : 256;
    while (cap < need) cap *= 2;
    q3_call *p = realloc(l->calls, (size_t)cap * sizeof *p);
    if (!p) return false;
    l->calls = p;
    l->cap = cap;
    return true;
}

q3_status q3_call_list_push(q3_call_list *l, const q3_call *c, q3_error *e) {
    if (!grow(l, l->n + 1)) return q3_fail(e, Q3_ENOMEM, "cuda: out of memory recording %d calls", l->n + 1);
    l->calls[l->n++] = *c;
    return Q3_OK;
}

q3_status q3_call_list_copy(q3_call_list *dst, const q3_call_list *src, q3_error *e) {
    if (!grow(dst, src->n)) return q3_fail(e, Q3_ENOMEM, "cuda: out of memory copying %d calls", src->n);
    if (src->n) memcpy(dst->calls, src->calls, (size_t)src->n * sizeof *src->calls);
    dst->n = src->n;
    dst->n_tokens = src->n_tokens;
    return Q3_OK;
}

/* Field by field, so that padding never takes part. */
static bool call_equal(const q3_call *a, const q3_call *b) {
    if (a->op != b->op || a->size != b->size || memcmp(&a->f, &b->f, sizeof a->f)) return false;
    for (int k = 0; k < 4; k++)
        if (a->i[k] != b->i[k]) return false;
    for (int k = 0; k < Q3_CALL_PTRS; k++)
        if (a->p[k] != b->p[k]) return false;
    return true;
}

bool q3_call_list_equal(const q3_call_list *a, const q3_call_list *b) {
    if (a->n != b->n || a->n_tokens != b->n_tokens) return false;
    for (int k = 0; k < a->n; k++)
        if (!call_equal(&a->calls[k], &b->calls[k])) return false;
    return true;
}

static uint64_t mix(uint64_t h, uint64_t v) {
    for (int k = 0; k < 8; k++) h = (h ^ ((v >> 8 * k) & 0xff)) * 0x100000001b3ull;
    return h;
}

uint64_t q3_call_list_hash(const q3_call_list *l) {
    uint64_t h = mix(0xcbf29ce484222325ull, (uint64_t)l->n_tokens);
    for (int k = 0; k < l->n; k++) {
        const q3_call *c = &l->calls[k];
        uint32_t fbits;
        memcpy(&fbits, &c->f, 4);
        h = mix(mix(mix(h, (uint64_t)c->op), c->size), fbits);
        for (int j = 0; j < 4; j++) h = mix(h, (uint64_t)(uint32_t)c->i[j]);
        for (int j = 0; j < Q3_CALL_PTRS; j++) h = mix(h, (uint64_t)(uintptr_t)c->p[j]);
    }
    return h;
}

void q3_call_list_free(q3_call_list *l) {
    free(l->calls);
    *l = (q3_call_list){0};
}

void *q3_graph_cache_find(q3_graph_cache *c, const q3_call_list *l) {
    uint64_t h = q3_call_list_hash(l);
    for (int k = 0; k < Q3_GRAPH_CACHE; k++) {
        q3_graph_entry *g = &c->entries[k];
        if (g->graph && g->hash == h && q3_call_list_equal(&g->key, l)) {
            g->last_use = ++c->clock;
            c->hits++;
            return g->graph;
        }
    }
    c->misses++;
    return NULL;
}

static void drop(q3_graph_cache *c, q3_graph_entry *g) {
    if (g->graph && c->destroy) c->destroy(g->graph);
    g->graph = NULL;
}

q3_status q3_graph_cache_put(q3_graph_cache *c, const q3_call_list *l, void *graph, q3_error *e) {
    q3_graph_entry *slot = &c->entries[0];
    for (int k = 0; k < Q3_GRAPH_CACHE; k++) {
        q3_graph_entry *g = &c->entries[k];
        if (!g->graph) {
            slot = g;
            break;
        }
        if (g->last_use < slot->last_use) slot = g;
    }
    drop(c, slot);
    q3_status st = q3_call_list_copy(&slot->key, l, e);
    if (st) {
        if (c->destroy) c->destroy(graph);
        return st;
    }
    slot->hash = q3_call_list_hash(l);
    slot->last_use = ++c->clock;
    slot->graph = graph;
    return Q3_OK;
}

void q3_graph_cache_clear(q3_graph_cache *c) {
    for (int k = 0; k < Q3_GRAPH_CACHE; k++) {
        drop(c, &c->entries[k]);
        q3_call_list_free(&c->entries[k].key);
    }
}
