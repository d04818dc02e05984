/* Paged KV cache: page pool, per-sequence page tables, reference-counted prefix sharing. */
#include "kv/kv_cache.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "quant/types.h"

#define HUGE_PAGE ((size_t)2 << 20)

/* Decode at depth streams every cached key and value of a layer once a token. In 4 KiB pages that
 * is a TLB miss and a restart of the hardware prefetcher every 16 F16 key rows, and attention
 * read the cache at a third of the bandwidth the weights get (bench/RESULTS.md, issue 11
 * session 5); caches of a huge page or more start on a 2 MiB boundary with huge pages advised. */
static void *host_alloc(void *ctx, size_t bytes) {
    (void)ctx;
    if (bytes < HUGE_PAGE) return malloc(bytes ? bytes : 1);
    void *p = NULL;
    size_t size = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    if (posix_memalign(&p, HUGE_PAGE, size) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE); /* advice: ordinary pages work too */
#endif
    return p;
}

static void host_free(void *ctx, void *p) {
    (void)ctx;
    free(p);
}

static void host_copy(void *ctx, void *dst, const void *src, size_t bytes) {
    (void)ctx;
    memcpy(dst, src, bytes);
}

static const q3_kv_storage HOST_STORAGE = {NULL, host_alloc, host_free, host_copy};

q3_status q3_kv_cache_create(q3_kv_cache **out, const q3_kv_shape *c, const q3_kv_options *o, q3_error *e) {
    return q3_kv_cache_create_in(out, c, o, NULL, e);
}

q3_status q3_kv_cache_create_in(q3_kv_cache **out, const q3_kv_shape *c, const q3_kv_options *o,
                                const q3_kv_storage *storage, q3_error *e) {
    *out = NULL;
    if (o->type != Q3_TYPE_F32 && o->type != Q3_TYPE_F16 && o->type != Q3_TYPE_BF16 && o->type != Q3_TYPE_Q8_0)
        return q3_fail(e, Q3_EINVAL, "kv cache: type must be f32, f16, bf16 or q8_0");
    if (o->page_size <= 0 || o->n_pages <= 0 || o->max_seqs <= 0 || o->max_seq_len <= 0)
        return q3_fail(e, Q3_EINVAL, "kv cache: page size, pages, sequences and length must be positive");
    size_t head_row_bytes = q3_row_bytes(o->type, c->head_dim);
    if (head_row_bytes == 0)
        return q3_fail(e, Q3_EINVAL, "kv cache: type %s needs head_dim (%d) to be a multiple of %d", q3_type_name(o->type),
                       c->head_dim, q3_type_info(o->type)->block_size);
    q3_kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return q3_fail(e, Q3_ENOMEM, "kv cache: out of memory");
    kv->type = o->type;
    kv->n_layers = c->n_layers;
    kv->n_heads = c->n_heads;
    kv->head_dim = c->head_dim;
    kv->page_size = o->page_size;
    kv->n_pages = o->n_pages;
    kv->max_seqs = o->max_seqs;
    kv->max_pages_per_seq = (o->max_seq_len + o->page_size - 1) / o->page_size;
    kv->head_row_bytes = head_row_bytes;
    kv->page_bytes = (size_t)o->page_size * kv->n_heads * head_row_bytes;
    size_t bytes = (size_t)kv->n_layers * kv->n_pages * kv->page_bytes;
    kv->storage = storage ? *storage : HOST_STORAGE;
    kv->host = storage == NULL;
    kv->k = kv->storage.alloc(kv->storage.ctx, bytes);
    kv->v = kv->storage.alloc(kv->storage.ctx, bytes);
    kv->page_table = malloc((size_t)kv->max_seqs * kv->max_pages_per_seq * sizeof *kv->page_table);
    kv->seq_len = calloc((size_t)kv->max_seqs, sizeof *kv->seq_len);
    kv->refcount = calloc((size_t)kv->n_pages, sizeof *kv->refcount);
    kv->free_pages = malloc((size_t)kv->n_pages * sizeof *kv->free_pages);
    if (!kv->k || !kv->v || !kv->page_table || !kv->seq_len || !kv->refcount || !kv->free_pages) {
        q3_kv_cache_destroy(kv);
        return q3_fail(e, Q3_ENOMEM, "kv cache: cannot allocate %zu MiB", 2 * bytes >> 20);
    }
    memset(kv->page_table, 0xff, (size_t)kv->max_seqs * kv->max_pages_per_seq * sizeof *kv->page_table);
    /* Low page ids on top of the stack, so a fresh cache fills memory in order. */
    for (int i = 0; i < kv->n_pages; i++) kv->free_pages[i] = kv->n_pages - 1 - i;
    kv->n_free = kv->n_pages;
    *out = kv;
    return Q3_OK;
}

void q3_kv_cache_destroy(q3_kv_cache *kv) {
    if (!kv) return;
    if (kv->k) kv->storage.free(kv->storage.ctx, kv->k);
    if (kv->v) kv->storage.free(kv->storage.ctx, kv->v);
    free(kv->page_table);
    free(kv->seq_len);
    free(kv->refcount);
    free(kv->free_pages);
    free(kv);
}

static int32_t *table(const q3_kv_cache *kv, int seq) {
    return kv->page_table + (size_t)seq * kv->max_pages_per_seq;
}

static void release(q3_kv_cache *kv, int page) {
    if (--kv->refcount[page] == 0) kv->free_pages[kv->n_free++] = page;
}

static int take(q3_kv_cache *kv) {
    int page = kv->free_pages[--kv->n_free];
    kv->refcount[page] = 1;
    return page;
}

static void copy_page(q3_kv_cache *kv, int dst, int src) {
    for (int l = 0; l < kv->n_layers; l++) {
        size_t d = ((size_t)l * kv->n_pages + dst) * kv->page_bytes, s = ((size_t)l * kv->n_pages + src) * kv->page_bytes;
        kv->storage.copy(kv->storage.ctx, kv->k + d, kv->k + s, kv->page_bytes);
        kv->storage.copy(kv->storage.ctx, kv->v + d, kv->v + s, kv->page_bytes);
    }
}

int q3_kv_pages_needed(const q3_kv_cache *kv, int seq, int new_len) {
    int len = kv->seq_len[seq], need = 0;
    if (new_len <= len) return 0;
    const int32_t *t = table(kv, seq);
    for (int p = len / kv->page_size; p <= (new_len - 1) / kv->page_size; p++)
        if (t[p] < 0 || kv->refcount[t[p]] > 1) need++;
    return need;
}

q3_status q3_kv_reserve(q3_kv_cache *kv, int seq, int new_len, q3_error *e) {
    if (seq < 0 || seq >= kv->max_seqs) return q3_fail(e, Q3_EINVAL, "kv cache: sequence %d out of range", seq);
    if (new_len > kv->max_pages_per_seq * kv->page_size)
        return q3_fail(e, Q3_EINVAL, "kv cache: sequence %d would reach %d tokens, longer than %d", seq, new_len,
                       kv->max_pages_per_seq * kv->page_size);
    if (q3_kv_pages_needed(kv, seq, new_len) > kv->n_free)
        return q3_fail(e, Q3_EFULL, "kv cache: no free page for sequence %d", seq);
    int len = kv->seq_len[seq];
    if (new_len <= len) return Q3_OK;
    int32_t *t = table(kv, seq);
    for (int p = len / kv->page_size; p <= (new_len - 1) / kv->page_size; p++) {
        if (t[p] < 0) {
            t[p] = take(kv);
        } else if (kv->refcount[t[p]] > 1) { /* copy on write */
            int fresh = take(kv);
            copy_page(kv, fresh, t[p]);
            release(kv, t[p]);
            t[p] = fresh;
        }
    }
    return Q3_OK;
}

void q3_kv_truncate(q3_kv_cache *kv, int seq, int pos) {
    if (seq < 0 || seq >= kv->max_seqs || pos < 0) return;
    int32_t *t = table(kv, seq);
    for (int p = (pos + kv->page_size - 1) / kv->page_size; p < kv->max_pages_per_seq; p++) {
        if (t[p] < 0) continue;
        release(kv, t[p]);
        t[p] = -1;
    }
    if (kv->seq_len[seq] > pos) kv->seq_len[seq] = pos;
}

q3_status q3_kv_share(q3_kv_cache *kv, int dst, int src, int n_tokens, q3_error *e) {
    if (dst < 0 || dst >= kv->max_seqs || src < 0 || src >= kv->max_seqs || dst == src)
        return q3_fail(e, Q3_EINVAL, "kv cache: bad sequences %d <- %d", dst, src);
    if (n_tokens > kv->seq_len[src]) n_tokens = kv->seq_len[src];
    q3_kv_truncate(kv, dst, 0);
    int full = n_tokens / kv->page_size, rest = n_tokens % kv->page_size;
    if (rest && kv->n_free == 0) return q3_fail(e, Q3_EFULL, "kv cache: no free page to share a prefix");
    int32_t *d = table(kv, dst), *s = table(kv, src);
    for (int p = 0; p < full; p++) {
        d[p] = s[p];
        kv->refcount[s[p]]++;
    }
    if (rest) {
        d[full] = take(kv);
        copy_page(kv, d[full], s[full]);
    }
    kv->seq_len[dst] = n_tokens;
    return Q3_OK;
}

void q3_kv_set_len(q3_kv_cache *kv, int seq, int len) { kv->seq_len[seq] = len; }


int q3_kv_cache_seq_len(const q3_kv_cache *kv, int seq) {
    return seq >= 0 && seq < kv->max_seqs ? kv->seq_len[seq] : 0;
}

void q3_kv_cache_usage(const q3_kv_cache *kv, int *used, int *free_pages) {
    *used = kv->n_pages - kv->n_free;
    *free_pages = kv->n_free;
}
