/* The paged KV cache. Keys and values of every layer live in fixed-size pages drawn from one
 * pool shared by all sequences; each sequence has a page table mapping its positions to pages.
 * Pages are reference counted so sequences can share a common prefix (a system prompt, earlier
 * turns) and copy a page only when they write into a shared one. */
#ifndef Q3_KV_CACHE_H
#define Q3_KV_CACHE_H

#include "base/error.h"

/* Where the pages live: host memory by default (malloc, memcpy); a GPU backend supplies device
 * memory (src/cuda/), and only its kernels then read the pages. copy copies bytes between two
 * places of that memory (copy on write, shared prefixes). */
typedef struct q3_kv_storage {
    void *ctx;
    void *(*alloc)(void *ctx, size_t bytes); /* NULL when out of memory */
    void (*free)(void *ctx, void *p);
    void (*copy)(void *ctx, void *dst, const void *src, size_t bytes);
} q3_kv_storage;

struct q3_kv_cache {
    q3_type type;          /* F32, F16, BF16 or Q8_0 */
    int n_layers, n_heads, head_dim; /* this process's key/value heads */
    int page_size, n_pages, max_seqs, max_pages_per_seq;
    size_t head_row_bytes; /* one head's key (or value) at one position, in `type` */
    size_t page_bytes;     /* bytes of one page of one layer's keys (or values) */
    /* [n_layers][n_pages][n_heads][page_size] rows of head_row_bytes: head-major inside a page,
     * so attention, which works per head, reads each page's positions as one contiguous run
     * that the hardware prefetchers follow. */
    unsigned char *k, *v;
    q3_kv_storage storage; /* where k and v live */
    bool host;             /* k and v are host memory (the CPU may read them) */
    int32_t *page_table;   /* [max_seqs][max_pages_per_seq]; -1 where unmapped */
    int *seq_len;          /* [max_seqs] tokens held */
    int *refcount;         /* [n_pages] */
    int *free_pages;       /* stack of free page ids */
    int n_free;
    int replica_id;        /* the handle followers know this cache by (src/dist/); 0 alone */
};

/* The cache's geometry: this process's key/value heads of every layer. */
typedef struct q3_kv_shape {
    int n_layers, n_heads, head_dim;
} q3_kv_shape;

/* A cache of this process alone (q3_kv_cache_new is it, replicated under mpirun). */
q3_status q3_kv_cache_create(q3_kv_cache **out, const q3_kv_shape *shape, const q3_kv_options *o, q3_error *e);
/* The same with its pages in storage s (NULL: host memory, as q3_kv_cache_create). The page
 * tables and counts stay in host memory either way. */
q3_status q3_kv_cache_create_in(q3_kv_cache **out, const q3_kv_shape *shape, const q3_kv_options *o,
                                const q3_kv_storage *s, q3_error *e);
/* Frees it; NULL is fine. */
void q3_kv_cache_destroy(q3_kv_cache *kv);
/* Drops seq's tokens from pos on in this process's cache (q3_kv_cache_truncate, replicated). */
void q3_kv_truncate(q3_kv_cache *kv, int seq, int pos);

/* Makes sure sequence seq can hold positions [0, new_len): maps pages for the new positions and
 * gives the sequence its own copy of any shared page it will write into. Q3_EFULL when the pool
 * runs out (nothing is changed then). */
q3_status q3_kv_reserve(q3_kv_cache *kv, int seq, int new_len, q3_error *e);
/* Pages still needed to grow seq to new_len; cannot fail. */
int q3_kv_pages_needed(const q3_kv_cache *kv, int seq, int new_len);
/* Shares the first n_tokens of src with dst (which must be empty): whole pages by reference,
 * the partial last page by copy. Q3_EFULL when no page is free for the copy. In this process's
 * cache only: q3_kv_cache_share_prefix is the call that followers repeat. */
q3_status q3_kv_share(q3_kv_cache *kv, int dst, int src, int n_tokens, q3_error *e);
/* Marks positions [0, len) of seq as held (after the forward pass wrote them); cannot fail. */
void q3_kv_set_len(q3_kv_cache *kv, int seq, int len);

/* Address of head's key or value row at (layer, seq, pos); the page must be mapped. The rows of
 * the following positions of the same page come right after it. */
static inline unsigned char *q3_kv_head_row(const q3_kv_cache *kv, const unsigned char *base, int layer,
                                            int seq, int pos, int head) {
    int page = kv->page_table[(size_t)seq * kv->max_pages_per_seq + pos / kv->page_size];
    return (unsigned char *)base + ((size_t)layer * kv->n_pages + (size_t)page) * kv->page_bytes +
           ((size_t)head * kv->page_size + (size_t)(pos % kv->page_size)) * kv->head_row_bytes;
}

#endif
