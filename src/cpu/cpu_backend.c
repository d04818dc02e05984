/* The CPU backend's state and its simple operations: memory, the embedding, norms, sums and
 * matmuls. Attention and the MoE have files of their own (attention.c, attend.c, moe.c). */
#include "cpu/cpu_backend.h"

#include <stdlib.h>
#include <string.h>
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "model/rope.h"
#include "cpu/kernel_table.h"

/* Bytes per converted activation row, over every matrix a step multiplies by x or xn. */
static size_t max_act_bytes(const q3_model *m) {
    const q3_config *c = &m->cfg;
    size_t best = q3_act_row_bytes(m->lm_head.type, c->hidden_size);
    for (int l = 0; l < c->n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        const q3_mat *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->router, &L->dense.gate, &L->dense.down,
                                L->is_moe ? &L->experts[0].gate : NULL};
        for (size_t i = 0; i < sizeof mats / sizeof *mats; i++) {
            if (!mats[i] || !mats[i]->data) continue;
            size_t b = q3_act_row_bytes(mats[i]->type, mats[i]->cols);
            if (b > best) best = b;
        }
    }
    return best;
}

/* Bytes per row for the down projections' inputs, over every MoE and dense layer. */
static size_t max_down_act_bytes(const q3_model *m, int *ffn_dim) {
    const q3_config *c = &m->cfg;
    size_t best = 0;
    *ffn_dim = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        const q3_mat *down = L->is_moe ? &L->experts[0].down : &L->dense.down;
        size_t b = q3_act_row_bytes(down->type, down->cols);
        if (b > best) best = b;
        if (down->cols > *ffn_dim) *ffn_dim = (int)down->cols;
    }
    return best;
}

static void cpu_destroy(q3_backend *be) {
    q3_cpu *c = (q3_cpu *)be;
    if (!c) return;
    q3_pool_free(c->pool);
    void *bufs[] = {c->act, c->rope_cos, c->rope_sin, c->attn_scratch, c->attn_chunk_start, c->attn_block_start,
                    c->attn_partials, c->slot_of, c->expert_start, c->assign_token, c->active, c->h, c->h_act, c->y, c->expert_sync};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(c);
}

static void *cpu_alloc(q3_backend *be, size_t bytes) {
    (void)be;
    return malloc(bytes ? bytes : 1);
}

static void cpu_free(q3_backend *be, void *p) {
    (void)be;
    free(p);
}

static void cpu_read(q3_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (dst != src) memcpy(dst, src, bytes);
}

static q3_status cpu_begin(q3_backend *be, const q3_batch *b, q3_kv_cache *kv, q3_error *e) {
    q3_cpu *c = (q3_cpu *)be;
    const q3_config *cfg = &be->m->cfg;
    int half = cfg->head_dim / 2;
    c->b = b;
    c->kv = kv;
    for (int i = 0; i < b->n_tokens; i++)
        q3_rope_angles(cfg, b->pos[i], c->rope_cos + (size_t)i * half, c->rope_sin + (size_t)i * half);
    return q3_cpu_attention_plan(c, e);
}

static void cpu_embed(q3_backend *be, const q3_mat *table, float *x) {
    q3_cpu *c = (q3_cpu *)be;
    const q3_type_traits *tr = q3_type_get(table->type);
    for (int i = 0; i < c->b->n_tokens; i++)
        tr->to_float((const char *)table->data + (size_t)c->b->tokens[i] * table->row_bytes,
                     x + (size_t)i * table->cols, table->cols);
    be->bytes_read += (uint64_t)c->b->n_tokens * table->row_bytes;
}

typedef struct norm_job {
    float *out;
    const float *x, *w;
    const int32_t *rows;
    int dim;
    float eps;
} norm_job;

static void norm_task(void *ctx, int i, int thread) {
    (void)thread;
    norm_job *j = ctx;
    size_t src = (size_t)(j->rows ? j->rows[i] : i);
    q3_rmsnorm(j->out + (size_t)i * j->dim, j->x + src * j->dim, j->w, j->dim, j->eps);
}

static void cpu_rmsnorm(q3_backend *be, float *out, const float *x, const int32_t *rows, int n, const float *w,
                        int dim, float eps) {
    norm_job j = {out, x, w, rows, dim, eps};
    q3_pool_run(((q3_cpu *)be)->pool, norm_task, &j, n); /* one row (decode) runs on this thread */
}

static void cpu_add(q3_backend *be, float *x, const float *y, size_t n) {
    (void)be;
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* Matrices whose kernels take the same activations share one conversion and one job, so a
 * decode step waits for the pool once for q, k and v together. */
static void cpu_matmul(q3_backend *be, int n_mats, const q3_mat *const *w, const float *x, int n, float *const *y) {
    q3_cpu *c = (q3_cpu *)be;
    for (int i = 0, j; i < n_mats; i = j) {
        q3_type t = q3_type_get(w[i]->type)->vec_dot_type;
        for (j = i + 1; j < n_mats && q3_type_get(w[j]->type)->vec_dot_type == t; j++) {}
        const void *act = q3_act_prepare(c->pool, w[i]->type, x, w[i]->cols, n, c->act);
        q3_matmul_multi(c->pool, j - i, w + i, act, n, y + i);
    }
    for (int i = 0; i < n_mats; i++) be->bytes_read += q3_mat_bytes(w[i]);
}

static const q3_backend_ops CPU_OPS = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .read = cpu_read,
    .begin = cpu_begin,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .add = cpu_add,
    .matmul = cpu_matmul,
    .rope_store = q3_cpu_rope_store,
    .attend = q3_cpu_attend,
    .route = q3_cpu_route,
    .experts = q3_cpu_experts,
    .ffn = q3_cpu_ffn,
    .destroy = cpu_destroy,
};

static bool alloc_scratch(q3_cpu *c, const q3_model *m) {
    const q3_config *cfg = &m->cfg;
    size_t T = (size_t)c->max_tokens, H = (size_t)cfg->hidden_size;
    size_t K = (size_t)(cfg->n_experts_used ? cfg->n_experts_used : 1), E = (size_t)(cfg->n_experts ? cfg->n_experts : 1);
    int ffn_dim;
    c->act_bytes = max_act_bytes(m);
    c->h_act_bytes = max_down_act_bytes(m, &ffn_dim);
    /* Dense layers run as one "expert" per token: size the assignment buffers for both. */
    size_t A = T * K;
    c->act = malloc(T * c->act_bytes);
    c->rope_cos = malloc(T * (size_t)cfg->head_dim / 2 * sizeof(float));
    c->rope_sin = malloc(T * (size_t)cfg->head_dim / 2 * sizeof(float));
    c->slot_of = malloc(T * K * sizeof(int32_t));
    c->expert_start = malloc((E + 1) * sizeof(int));
    c->assign_token = malloc(A * sizeof(int32_t));
    c->active = malloc(E * sizeof(int32_t));
    c->h = malloc(A * (size_t)ffn_dim * sizeof(float));
    c->h_act = malloc(A * c->h_act_bytes);
    c->y = malloc(A * H * sizeof(float));
    c->expert_sync = aligned_alloc(64, E * q3_cpu_expert_sync_bytes()); /* a cache line each */
    return c->act && c->rope_cos && c->rope_sin && c->slot_of && c->expert_start && c->assign_token && c->active &&
           c->h && c->h_act && c->y && c->expert_sync;
}

q3_status q3_cpu_backend_new(q3_backend **out, const q3_model *m, int max_tokens, int n_threads, q3_error *e) {
    *out = NULL;
    if (max_tokens <= 0) return q3_fail(e, Q3_EINVAL, "cpu backend: max batch tokens must be positive");
    q3_cpu *c = calloc(1, sizeof *c);
    if (!c) return q3_fail(e, Q3_ENOMEM, "cpu backend: out of memory");
    c->base = (q3_backend){.ops = &CPU_OPS, .m = m, .host_memory = true};
    c->max_tokens = max_tokens;
    q3_status st = q3_pool_new(&c->pool, n_threads, n_threads > 0, e);
    if (st) {
        free(c);
        return st;
    }
    c->base.threads = q3_pool_size(c->pool);
    if (!alloc_scratch(c, m)) {
        cpu_destroy(&c->base);
        return q3_fail(e, Q3_ENOMEM, "cpu backend: cannot allocate scratch for %d tokens", max_tokens);
    }
    *out = &c->base;
    return Q3_OK;
}

q3_pool *q3_cpu_backend_pool(q3_backend *be) { return ((q3_cpu *)be)->pool; }
