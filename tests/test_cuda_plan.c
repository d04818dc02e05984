/* The CUDA backend's host-side bookkeeping, which runs without a GPU: packing a step for the
 * device (src/cuda/step_plan.c) against the KV cache's own page tables and model/rope.c's
 * angles; the recorded calls and the graph cache (calls.c) that decide when a CUDA graph may be
 * replayed; the expert tiles and the --gpu-experts choice (moe_plan.h). Also the KV cache's
 * storage hooks (every page copy goes through them) and --device cuda in a build without CUDA. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include "cuda/calls.h"
#include "cuda/moe_plan.h"
#include "cuda/step_plan.h"
#include "kv/kv_cache.h"
#include "model/rope.h"

static q3_config tiny_config(void) {
    q3_config c;
    memset(&c, 0, sizeof c);
    c.head_dim = 64, c.rope_theta = 10000.0f, c.n_heads = 4, c.n_kv_heads = 2;
    return c;
}

static q3_kv_cache *make_cache(int page_size, int n_pages, int max_seqs, int max_len) {
    q3_kv_cache *kv = NULL;
    q3_kv_shape shape = {2, 2, 64};
    q3_kv_options o = {Q3_TYPE_F16, page_size, n_pages, max_seqs, max_len};
    assert_int_equal(q3_kv_cache_create(&kv, &shape, &o, NULL), Q3_OK);
    return kv;
}

/* Two sequences interleaved (as a scheduler mixes decode tokens and a prefill chunk): every
 * token's page-table row is its sequence's, angles are rope.c's, blocks break where the
 * sequence or the run of positions does and at the block size. */
static void test_step_pack(void **state) {
    (void)state;
    q3_config c = tiny_config();
    q3_kv_cache *kv = make_cache(4, 32, 3, 40);
    assert_int_equal(q3_kv_reserve(kv, 2, 9, NULL), Q3_OK); /* seq 2 holds 9 tokens' pages: 3 pages */
    q3_kv_set_len(kv, 2, 9);
    int32_t tok[] = {5, 6, 7, 8, 9, 10, 11}, pos[] = {0, 1, 9, 2, 3, 4, 5}, seq[] = {0, 0, 2, 0, 0, 0, 0};
    q3_batch b = {7, tok, pos, seq, NULL};
    assert_int_equal(q3_kv_reserve(kv, 0, 6, NULL), Q3_OK);
    assert_int_equal(q3_kv_reserve(kv, 2, 10, NULL), Q3_OK);
    q3_step_layout l;
    q3_step_layout_init(&l, 8, 3, kv->max_pages_per_seq, c.head_dim);
    unsigned char *buf = calloc(1, l.bytes);
    q3_step_info info;
    assert_int_equal(q3_step_pack(&l, &c, &b, kv, 3, 256, buf, &info, NULL), Q3_OK);
    const int32_t *row = (const int32_t *)(buf + l.token_row), *pages = (const int32_t *)(buf + l.pages);
    const int32_t *start = (const int32_t *)(buf + l.block_start);
    assert_int_equal(info.n_rows, 2);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(((const int32_t *)(buf + l.tokens))[i], tok[i]);
        assert_int_equal(((const int32_t *)(buf + l.pos))[i], pos[i]);
        const int32_t *t = pages + (size_t)row[i] * l.stride;
        for (int p = 0; p < kv->max_pages_per_seq; p++)
            assert_int_equal(t[p], kv->page_table[(size_t)seq[i] * kv->max_pages_per_seq + p]);
        float cs[32], sn[32];
        q3_rope_angles(&c, pos[i], cs, sn);
        assert_memory_equal(buf + l.cos + (size_t)i * 32 * 4, cs, sizeof cs);
        assert_memory_equal(buf + l.sin + (size_t)i * 32 * 4, sn, sizeof sn);
    }
    /* blocks: [0,1] (seq 0), [2] (seq 2), [3,4,5] (seq 0, three at most), [6] */
    int want[] = {0, 2, 3, 6, 7};
    assert_int_equal(info.n_blocks, 4);
    assert_memory_equal(start, want, sizeof want);
    assert_int_equal(info.widest_block, 3);
    assert_int_equal(info.upload_bytes, l.pages + 2 * (size_t)l.stride * 4);
    uint64_t kv_bytes = 0;
    for (int i = 0; i < 7; i++) kv_bytes += (uint64_t)(pos[i] + 1) * kv->n_heads * kv->head_row_bytes * 2;
    assert_int_equal(info.kv_bytes, kv_bytes);
    /* a block per token when asked (small steps' split-K attention) */
    assert_int_equal(q3_step_pack(&l, &c, &b, kv, 1, 256, buf, &info, NULL), Q3_OK);
    assert_int_equal(info.n_blocks, 7);
    free(buf);
    q3_kv_cache_destroy(kv);
}

static void test_step_pack_limits(void **state) {
    (void)state;
    q3_config c = tiny_config();
    q3_kv_cache *kv = make_cache(4, 32, 3, 40);
    q3_step_layout l;
    q3_step_layout_init(&l, 2, 1, kv->max_pages_per_seq, c.head_dim);
    unsigned char *buf = calloc(1, l.bytes);
    q3_step_info info;
    q3_error e = {0};
    int32_t tok[] = {1, 2, 3}, pos[] = {0, 0, 1}, seq[] = {0, 1, 0};
    q3_batch three = {3, tok, pos, seq, NULL}, two_seqs = {2, tok, pos, seq, NULL};
    assert_int_equal(q3_step_pack(&l, &c, &three, kv, 1, 256, buf, &info, &e), Q3_EINVAL);
    assert_non_null(strstr(e.msg, "tokens"));
    assert_int_equal(q3_step_pack(&l, &c, &two_seqs, kv, 1, 256, buf, &info, &e), Q3_EINVAL);
    assert_non_null(strstr(e.msg, "sequences"));
    free(buf);
    q3_kv_cache_destroy(kv);
}

static q3_call call(int op, const void *p0, int i0) {
    q3_call c;
    memset(&c, 0, sizeof c);
    c.op = op, c.p[0] = p0, c.i[0] = i0;
    return c;
}

static int destroyed;
static void count_destroy(void *g) { destroyed += (int)(intptr_t)g; }

/* A graph replays only for the same calls, in the same order, for the same batch size. */
static void test_call_lists_and_graph_cache(void **state) {
    (void)state;
    q3_call_list a = {0}, b = {0};
    int x, y;
    q3_call_list_reset(&a, 1);
    q3_call_list_reset(&b, 1);
    for (int k = 0; k < 600; k++) { /* longer than the first allocation */
        q3_call c = call(Q3_CALL_MATMUL, &x, k);
        assert_int_equal(q3_call_list_push(&a, &c, NULL), Q3_OK);
        assert_int_equal(q3_call_list_push(&b, &c, NULL), Q3_OK);
    }
    assert_true(q3_call_list_equal(&a, &b));
    assert_true(q3_call_list_hash(&a) == q3_call_list_hash(&b));
    q3_graph_cache cache;
    memset(&cache, 0, sizeof cache);
    cache.destroy = count_destroy;
    assert_null(q3_graph_cache_find(&cache, &a));
    assert_int_equal(q3_graph_cache_put(&cache, &a, (void *)(intptr_t)1, NULL), Q3_OK);
    assert_ptr_equal(q3_graph_cache_find(&cache, &b), (void *)(intptr_t)1);
    b.calls[300].p[0] = &y; /* another buffer */
    assert_false(q3_call_list_equal(&a, &b));
    assert_null(q3_graph_cache_find(&cache, &b));
    b.calls[300].p[0] = &x;
    b.n_tokens = 2; /* another batch size */
    assert_null(q3_graph_cache_find(&cache, &b));
    b.n_tokens = 1;
    b.calls[599].f = -0.0f; /* 0.0 and -0.0 are different arguments */
    assert_false(q3_call_list_equal(&a, &b));
    b.calls[599].f = 0.0f;
    b.n--; /* one call fewer */
    assert_null(q3_graph_cache_find(&cache, &b));
    /* the least recently used graph makes room; clearing destroys the rest */
    destroyed = 0;
    for (int k = 0; k < Q3_GRAPH_CACHE; k++) {
        a.calls[0].i[1] = k + 1;
        assert_int_equal(q3_graph_cache_put(&cache, &a, (void *)(intptr_t)10, NULL), Q3_OK);
    }
    assert_int_equal(destroyed, 1); /* the first graph left */
    q3_graph_cache_clear(&cache);
    assert_int_equal(destroyed, 1 + 10 * Q3_GRAPH_CACHE);
    assert_true(cache.hits >= 1 && cache.misses >= 4);
    q3_call_list_free(&a);
    q3_call_list_free(&b);
}

static void test_expert_tiles(void **state) {
    (void)state;
    int32_t start[] = {0, 0, 5, 21, 21, 40}; /* experts with 0, 5, 16, 0, 19 slots */
    int32_t te[16], t0[16], tn[16];
    int n = q3hd_expert_tiles(start, 5, 16, te, t0, tn);
    int want_e[] = {1, 2, 4, 4}, want_0[] = {0, 5, 21, 37}, want_n[] = {5, 16, 16, 3};
    assert_int_equal(n, 4);
    assert_memory_equal(te, want_e, sizeof want_e);
    assert_memory_equal(t0, want_0, sizeof want_0);
    assert_memory_equal(tn, want_n, sizeof want_n);
    assert_true(n <= q3hd_max_tiles(40, 5, 16));
    /* the bound holds for every way 40 assignments can fall on 5 experts, e.g. 1+1+1+1+36 */
    int32_t skew[] = {0, 1, 2, 3, 4, 40};
    assert_true(q3hd_expert_tiles(skew, 5, 16, te, t0, tn) <= q3hd_max_tiles(40, 5, 16));
}

static void test_hot_experts(void **state) {
    (void)state;
    uint64_t counts[] = {3, 9, 9, 0, 7, 9, 1};
    int32_t out[8];
    assert_int_equal(q3_hot_experts(counts, 7, 3, out), 3);
    int want[] = {1, 2, 5}; /* the three 9s; ties to the lower id */
    assert_memory_equal(out, want, sizeof want);
    assert_int_equal(q3_hot_experts(counts, 7, 4, out), 4);
    int want4[] = {1, 2, 4, 5};
    assert_memory_equal(out, want4, sizeof want4);
    assert_int_equal(q3_hot_experts(counts, 7, 20, out), 7);
    assert_int_equal(q3_hot_experts(counts, 7, 0, out), 0);
}

/* Storage that counts what goes through it: copy-on-write and shared prefixes copy pages with
 * the storage's own copy. */
static int allocs, frees, copies;
static void *count_alloc(void *ctx, size_t n) { (void)ctx, allocs++; return malloc(n); }
static void count_free(void *ctx, void *p) { (void)ctx, frees++; free(p); }
static void count_copy(void *ctx, void *d, const void *s, size_t n) { (void)ctx, copies++; memcpy(d, s, n); }

static void test_kv_storage_hooks(void **state) {
    (void)state;
    q3_kv_storage s = {NULL, count_alloc, count_free, count_copy};
    q3_kv_shape shape = {3, 2, 64};
    q3_kv_options o = {Q3_TYPE_F16, 4, 16, 2, 32};
    q3_kv_cache *kv = NULL;
    assert_int_equal(q3_kv_cache_create_in(&kv, &shape, &o, &s, NULL), Q3_OK);
    assert_int_equal(allocs, 2);
    assert_false(kv->host);
    assert_int_equal(q3_kv_reserve(kv, 0, 6, NULL), Q3_OK);
    q3_kv_set_len(kv, 0, 6);
    assert_int_equal(q3_kv_share(kv, 1, 0, 6, NULL), Q3_OK); /* the partial second page is copied */
    assert_int_equal(copies, 2 * 3);                          /* k and v, per layer */
    assert_int_equal(q3_kv_reserve(kv, 1, 7, NULL), Q3_OK);   /* its own page already: no copy */
    assert_int_equal(q3_kv_reserve(kv, 0, 7, NULL), Q3_OK);   /* page 0 stays shared, page 1 is seq 0's */
    assert_int_equal(copies, 2 * 3);
    q3_kv_truncate(kv, 1, 2); /* seq 1 writes into the shared first page: copy on write */
    assert_int_equal(q3_kv_reserve(kv, 1, 3, NULL), Q3_OK);
    assert_int_equal(copies, 4 * 3);
    q3_kv_cache_destroy(kv);
    assert_int_equal(frees, 2);
    q3_kv_cache *host = make_cache(4, 8, 1, 16);
    assert_true(host->host);
    q3_kv_cache_destroy(host);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_pack),
        cmocka_unit_test(test_step_pack_limits),
        cmocka_unit_test(test_call_lists_and_graph_cache),
        cmocka_unit_test(test_expert_tiles),
        cmocka_unit_test(test_hot_experts),
        cmocka_unit_test(test_kv_storage_hooks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
