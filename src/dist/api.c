/* The public API (include/q3moe.h): each call that makes, changes or runs the model's state runs
 * here and, under mpirun, on every follower too. Rank 0 sends the call to the followers first,
 * then makes it itself; a follower's life (q3_dist_follow) is receiving those calls and making
 * them on its own shard, under the same handles. In a single process there is no group and
 * every call goes straight to the model, the KV cache and the runner. */
#include "dist/replica.h"

#include <stdlib.h>
#include <string.h>
#include "cpu/cpu_backend.h"
#include "cpu/kernel_table.h"
#include "cuda/cuda_api.h"
#include "dist/dist.h"
#include "kv/kv_cache.h"
#include "model/model.h"
#include "model/runner.h"

/* Rank 0: the next handle, after telling the followers to make the object under it. */
static int announce(q3_dist *d, q3_dist_msg m, const void *payload) {
    if (!d) return 0;
    m.id = q3_dist_next_id(d);
    q3_dist_send(d, &m, payload);
    return m.id;
}

/* ---- each call, as this process makes it ---- */

/* The model's weights on its device, when the options ask for one other than the CPU. */
static q3_status place(q3_model *m, const q3_load_options *opts, q3_error *e) {
    if (!opts || opts->device == Q3_DEVICE_CPU) {
        if (opts && (opts->cpu_experts || opts->gpu_experts))
            return q3_fail(e, Q3_EINVAL, "--cpu-experts and --gpu-experts go with --device cuda");
        return Q3_OK;
    }
    if (opts->gpu_experts && !opts->cpu_experts) return q3_fail(e, Q3_EINVAL, "--gpu-experts N goes with --cpu-experts");
    return q3_cuda_attach(m, opts, e);
}

/* Whether this CPU's kernels compute t in the row-interleaved layout (--repack): the kernel
 * matmul's 1-4 token path calls (more tokens take the rows out of their groups). */
static bool has_interleaved_kernel(q3_type t) { return q3_type_get(t)->gemm_x4 != NULL; }

static q3_status open_model(q3_model **out, const char *path, const q3_load_options *opts, q3_error *e) {
    q3_dist *d = q3_dist_world();
    q3_status st = q3_model_open(out, path, opts, q3_dist_rank(d), q3_dist_tp(d), q3_dist_ep(d), e);
    /* After the shard (a process interleaves only its rows), for the CPU's kernels only. */
    if (!st && opts && opts->repack && opts->device == Q3_DEVICE_CPU)
        st = q3_model_interleave(*out, has_interleaved_kernel, opts->verbose, e);
    if (!st) st = place(*out, opts, e);
    st = q3_dist_agree(d, st, e); /* every rank fails if one does */
    if (st && *out) {
        q3_model_close(*out);
        *out = NULL;
    }
    return st;
}

static q3_status new_cache(q3_kv_cache **out, const q3_model *m, const q3_kv_options *o, q3_error *e) {
    q3_kv_shape shape = {m->cfg.n_layers, m->shard.n_kv_heads, m->cfg.head_dim};
    if (!m->device) return q3_kv_cache_create(out, &shape, o, e);
    q3_kv_storage s = q3_cuda_kv_storage(m);
    return q3_kv_cache_create_in(out, &shape, o, &s, e);
}

static void broadcast(void *ctx, void *buf, size_t bytes) { q3_dist_broadcast(ctx, buf, bytes); }

/* The runner's backend: the GPU's when the model was placed on one (whose sums across processes
 * then go through NCCL on device buffers), else the CPU's. */
static q3_status new_runner(q3_runner **out, const q3_model *m, int max_tokens, int n_threads, q3_error *e) {
    *out = NULL;
    q3_backend *be;
    q3_status st = m->device ? q3_cuda_backend_new(&be, m, max_tokens, n_threads, e)
                             : q3_cpu_backend_new(&be, m, max_tokens, n_threads, e);
    if (st) return st;
    q3_collective sums = q3_dist_collective(q3_dist_world());
    if (m->device && sums.size > 1 && (st = q3_cuda_collective_new(&sums, be, &m->shard, broadcast, q3_dist_world(), e))) {
        be->ops->destroy(be);
        return st;
    }
    return q3_runner_create(out, m, be, max_tokens, &sums, e);
}

/* ---- rank 0 (and a single process): the public API ---- */

/* The followers learn the device options with the path: a = device, b = cpu_experts, c = gpu_experts. */
q3_status q3_model_load(q3_model **out, const char *path, const q3_load_options *opts, q3_error *e) {
    q3_dist_msg msg = {.op = Q3_MSG_LOAD, .payload = (int64_t)strlen(path) + 1};
    if (opts) msg.a = (int32_t)opts->device, msg.b = opts->cpu_experts, msg.c = opts->gpu_experts;
    int id = announce(q3_dist_world(), msg, path);
    q3_status st = open_model(out, path, opts, e);
    if (!st) (*out)->replica_id = id;
    return st;
}

void q3_model_free(q3_model *m) {
    if (!m) return;
    if (m->replica_id) q3_dist_send(q3_dist_world(), &(q3_dist_msg){.op = Q3_MSG_FREE_MODEL, .id = m->replica_id}, NULL);
    q3_model_close(m);
}

q3_status q3_kv_cache_new(q3_kv_cache **out, const q3_model *m, const q3_kv_options *o, q3_error *e) {
    int id = announce(q3_dist_world(), (q3_dist_msg){.op = Q3_MSG_KV_NEW, .a = m->replica_id, .kv = *o}, NULL);
    q3_status st = new_cache(out, m, o, e);
    if (!st) (*out)->replica_id = id;
    return st;
}

void q3_kv_cache_free(q3_kv_cache *kv) {
    if (!kv) return;
    if (kv->replica_id) q3_dist_send(q3_dist_world(), &(q3_dist_msg){.op = Q3_MSG_KV_FREE, .id = kv->replica_id}, NULL);
    q3_kv_cache_destroy(kv);
}

void q3_kv_cache_truncate(q3_kv_cache *kv, int seq, int pos) {
    if (!kv) return;
    if (kv->replica_id)
        q3_dist_send(q3_dist_world(), &(q3_dist_msg){.op = Q3_MSG_KV_TRUNCATE, .id = kv->replica_id, .a = seq, .b = pos},
                     NULL);
    q3_kv_truncate(kv, seq, pos);
}

q3_status q3_kv_cache_share_prefix(q3_kv_cache *kv, int dst, int src, int n_tokens, q3_error *e) {
    if (kv->replica_id)
        q3_dist_send(q3_dist_world(),
                     &(q3_dist_msg){.op = Q3_MSG_KV_SHARE, .id = kv->replica_id, .a = dst, .b = src, .c = n_tokens}, NULL);
    return q3_kv_share(kv, dst, src, n_tokens, e);
}

q3_status q3_runner_new(q3_runner **out, const q3_model *m, int max_tokens, int n_threads, q3_error *e) {
    q3_dist_msg msg = {.op = Q3_MSG_RUNNER_NEW, .a = m->replica_id, .b = max_tokens, .c = n_threads};
    int id = announce(q3_dist_world(), msg, NULL);
    q3_status st = new_runner(out, m, max_tokens, n_threads, e);
    if (!st) (*out)->replica_id = id;
    return st;
}

void q3_runner_free(q3_runner *r) {
    if (!r) return;
    if (r->replica_id) q3_dist_send(q3_dist_world(), &(q3_dist_msg){.op = Q3_MSG_RUNNER_FREE, .id = r->replica_id}, NULL);
    q3_runner_destroy(r);
}

/* A batch travels as tokens, positions, sequences and the logits flags, back to back. */
static void send_batch(q3_dist *d, int runner_id, int kv_id, const q3_batch *b) {
    size_t n = (size_t)b->n_tokens, bytes = n * (3 * sizeof(int32_t) + 1);
    unsigned char *p = malloc(bytes);
    if (!p) q3_dist_abort(d); /* the followers would wait for this batch forever */
    memcpy(p, b->tokens, n * 4);
    memcpy(p + n * 4, b->pos, n * 4);
    memcpy(p + n * 8, b->seq, n * 4);
    for (size_t i = 0; i < n; i++) p[n * 12 + i] = b->want_logits ? b->want_logits[i] : 1;
    q3_dist_send(d, &(q3_dist_msg){.op = Q3_MSG_FORWARD, .id = runner_id, .a = kv_id, .b = b->n_tokens, .payload = (int64_t)bytes},
                 p);
    free(p);
}

q3_status q3_forward(q3_runner *r, q3_kv_cache *kv, const q3_batch *b, float *logits, q3_error *e) {
    if (r->replica_id && b->n_tokens > 0) send_batch(q3_dist_world(), r->replica_id, kv->replica_id, b);
    return q3_runner_forward(r, kv, b, logits, e);
}

/* ---- followers ---- */

typedef struct objects {
    void **p;
    int cap;
} objects;

static void *get(objects *o, int id) { return id >= 0 && id < o->cap ? o->p[id] : NULL; }

static void put(objects *o, int id, void *v) {
    if (id >= o->cap) {
        int cap = id * 2 + 8;
        void **p = realloc(o->p, (size_t)cap * sizeof *p);
        if (!p) q3_dist_abort(q3_dist_world());
        memset(p + o->cap, 0, (size_t)(cap - o->cap) * sizeof *p);
        o->p = p;
        o->cap = cap;
    }
    o->p[id] = v;
}

typedef struct follower {
    objects models, caches, runners;
} follower;

static void follow_forward(follower *f, const q3_dist_msg *h, unsigned char *p) {
    size_t n = (size_t)h->b;
    q3_batch b = {h->b, (int32_t *)p, (int32_t *)(p + n * 4), (int32_t *)(p + n * 8), (bool *)(p + n * 12)};
    q3_error e = {0};
    /* Errors here are rank 0's errors too (same state, same checks): it reports them. */
    q3_runner_forward(get(&f->runners, h->id), get(&f->caches, h->a), &b, NULL, &e);
}

/* Makes one of rank 0's calls on this follower's shard. Errors are rank 0's too: it reports them
 * (the load agrees on them with every rank first). */
static void follow_one(follower *f, const q3_dist_msg *h, unsigned char *p) {
    q3_error e = {0};
    switch (h->op) {
    case Q3_MSG_STATS: q3_dist_answer_stats(q3_dist_world()); break;
    case Q3_MSG_LOAD: {
        q3_model *m = NULL;
        q3_load_options o = {.device = (q3_device)h->a, .cpu_experts = h->b, .gpu_experts = h->c};
        if (open_model(&m, (const char *)p, &o, &e) == Q3_OK) put(&f->models, h->id, m);
        break;
    }
    case Q3_MSG_FREE_MODEL: q3_model_close(get(&f->models, h->id)); put(&f->models, h->id, NULL); break;
    case Q3_MSG_KV_NEW: {
        q3_kv_cache *kv = NULL;
        const q3_model *m = get(&f->models, h->a);
        if (m && new_cache(&kv, m, &h->kv, &e) == Q3_OK) kv->replica_id = h->id;
        put(&f->caches, h->id, kv);
        break;
    }
    case Q3_MSG_KV_FREE: q3_kv_cache_destroy(get(&f->caches, h->id)); put(&f->caches, h->id, NULL); break;
    case Q3_MSG_KV_TRUNCATE:
        if (get(&f->caches, h->id)) q3_kv_truncate(get(&f->caches, h->id), h->a, h->b);
        break;
    case Q3_MSG_KV_SHARE:
        if (get(&f->caches, h->id)) q3_kv_share(get(&f->caches, h->id), h->a, h->b, h->c, NULL);
        break;
    case Q3_MSG_RUNNER_NEW: {
        q3_runner *r = NULL;
        const q3_model *m = get(&f->models, h->a);
        if (m && new_runner(&r, m, h->b, h->c, &e) == Q3_OK) r->replica_id = h->id;
        put(&f->runners, h->id, r);
        break;
    }
    case Q3_MSG_RUNNER_FREE: q3_runner_destroy(get(&f->runners, h->id)); put(&f->runners, h->id, NULL); break;
    case Q3_MSG_FORWARD: follow_forward(f, h, p); break;
    }
}

int q3_dist_follow(void) {
    follower f = {0};
    for (;;) {
        q3_dist_msg h;
        unsigned char *p = q3_dist_receive(q3_dist_world(), &h);
        if (h.op == Q3_MSG_STOP) {
            free(p);
            break;
        }
        follow_one(&f, &h, p);
        free(p);
    }
    free(f.models.p);
    free(f.caches.p);
    free(f.runners.p);
    return 0;
}
