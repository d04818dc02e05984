/* The CUDA backend's state: its stream, the scratch its operations share (sized once for the
 * largest batch, so no step allocates), the step buffer that begin() fills and copies to the
 * device, and the two places where the host waits for the GPU: begin() (for the step before)
 * and read(). The operations themselves are ops.cu's. */
#include <stdlib.h>
#include <string.h>
#include "cuda/internal.cuh"

/* Steps before --gpu-experts chooses its experts: enough routed tokens to rank them (or as
 * many tokens as $Q3_GPU_EXPERTS_WARMUP says, which tests set low). */
#define HOT_WARMUP_TOKENS 512
#define HOT_WARMUP_STEPS 32

static bool ready_for_hot(const q3_cuda_weights *w) {
    const char *env = getenv("Q3_GPU_EXPERTS_WARMUP");
    int64_t tokens = env ? atoll(env) : HOT_WARMUP_TOKENS;
    return w->routed_steps > 0 && (w->routed_tokens >= tokens || w->routed_steps >= HOT_WARMUP_STEPS);
}

void *q3_cuda_alloc(q3_backend *be, size_t bytes) {
    q3_cuda *c = (q3_cuda *)be;
    void *p = NULL;
    cudaSetDevice(c->w->device);
    return cudaMalloc(&p, bytes ? bytes : 1) == cudaSuccess ? p : NULL;
}

void q3_cuda_free(q3_backend *be, void *p) {
    (void)be;
    cudaFree(p);
}

void q3_cuda_read(q3_backend *be, void *dst, const void *src, size_t bytes) {
    q3_cuda *c = (q3_cuda *)be;
    q3_cuda_flush(c);
    bool ok = q3_cuda_check(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), "read") &&
              q3_cuda_check(c, cudaStreamSynchronize(c->stream), "read");
    if (!ok || c->error) memset(dst, 0xff, bytes); /* NaNs: a failed step never passes for a result */
    q3_cuda_settle(c);
}

/* Pinned host memory the device can read too (mapped); NULL when out of memory. */
static void *pinned(size_t bytes) {
    void *p = NULL;
    return cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocMapped) == cudaSuccess ? p : NULL;
}

static void *device(size_t bytes, bool *ok) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) *ok = false;
    return p;
}

/* The step buffer and attention's partials for cache kv; a new size makes every graph stale. */
static q3_status fit_step(q3_cuda *c, const q3_kv_cache *kv, q3_error *e) {
    const q3_config *cfg = &c->base.m->cfg;
    int rows = kv->max_seqs < c->max_tokens ? kv->max_seqs : c->max_tokens;
    int max_chunks = (kv->max_pages_per_seq * kv->page_size + Q3_ATTN_CHUNK - 1) / Q3_ATTN_CHUNK;
    if (c->layout_kv == kv && c->layout.stride == kv->max_pages_per_seq && c->attn_max_chunks == max_chunks) return Q3_OK;
    q3_graph_cache_clear(&c->graphs);
    cudaFreeHost(c->step_host);
    cudaFree(c->step_dev);
    cudaFree(c->attn_part);
    c->step_host = c->step_dev = NULL;
    c->attn_part = NULL;
    c->layout_kv = NULL;
    q3_step_layout_init(&c->layout, c->max_tokens, rows, kv->max_pages_per_seq, cfg->head_dim);
    int group = cfg->n_heads / cfg->n_kv_heads;
    size_t part = (size_t)Q3_SMALL_STEP * kv->n_heads * max_chunks * group * (cfg->head_dim + 2);
    bool ok = (c->step_host = (unsigned char *)pinned(c->layout.bytes)) != NULL;
    c->step_dev = (unsigned char *)device(c->layout.bytes, &ok);
    c->attn_part = (float *)device(part * sizeof(float), &ok);
    if (!ok) return q3_fail(e, Q3_ENOMEM, "cuda: no memory for a step over a cache of %d-token sequences", kv->max_pages_per_seq * kv->page_size);
    c->attn_max_chunks = max_chunks;
    c->attn_splits = max_chunks < Q3_ATTN_MAX_SPLITS ? max_chunks : Q3_ATTN_MAX_SPLITS;
    c->layout_kv = kv;
    return Q3_OK;
}

q3_status q3_cuda_begin(q3_backend *be, const q3_batch *b, q3_kv_cache *kv, q3_error *e) {
    q3_cuda *c = (q3_cuda *)be;
    const q3_config *cfg = &be->m->cfg;
    cudaSetDevice(c->w->device);
    q3_cuda_flush(c); /* a step that read nothing leaves its calls here */
    q3_cuda_check(c, cudaStreamSynchronize(c->stream), "the previous step");
    q3_cuda_settle(c);
    if (c->error) return q3_fail(e, Q3_EIO, "cuda: %s: %s", c->error_where, cudaGetErrorString(c->error));
    if (kv->host) return q3_fail(e, Q3_EINVAL, "cuda: this KV cache is in host memory: make it with q3_kv_cache_new for this model");
    q3_status st = fit_step(c, kv, e);
    if (st) return st;
    q3_cuda_weights *w = c->w;
    if (c->cpu && w->gpu_experts > 0 && !w->hot_placed && ready_for_hot(w) && (st = q3_cuda_place_hot_experts(w, e)))
        return st;
    bool small = b->n_tokens <= Q3_SMALL_STEP;
    int group = cfg->n_heads / cfg->n_kv_heads, per_block = small ? 1 : (Q3_ATTN_ROWS / group > 1 ? Q3_ATTN_ROWS / group : 1);
    if ((st = q3_step_pack(&c->layout, cfg, b, kv, per_block, Q3_ATTN_CHUNK, c->step_host, &c->info, e))) return st;
    if (!q3_cuda_check(c, cudaMemcpyAsync(c->step_dev, c->step_host, c->info.upload_bytes, cudaMemcpyHostToDevice, c->stream),
                       "step upload"))
        return q3_fail(e, Q3_EIO, "cuda: copying the step: %s", cudaGetErrorString(c->error));
    c->b = b;
    c->kv = kv;
    c->deferring = c->graphs_on && small;
    q3_call_list_reset(&c->pending, b->n_tokens);
    c->arena_used = 0;
    return Q3_OK;
}

/* ---- making and freeing ---- */

/* Bytes of w's converted activation rows (f32 rows for float weights). */
static size_t act_row_bytes(const q3_mat *w) {
    if (!w->data) return 0;
    q3_type act = q3_type_info(w->type)->vec_dot_type;
    return act == Q3_TYPE_F32 ? (size_t)w->cols * sizeof(float) : q3_row_bytes(act, w->cols);
}

/* The widest converted activation row any matmul of the model takes. */
static size_t max_act_row_bytes(const q3_model *m) {
    size_t best = act_row_bytes(&m->lm_head);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        const q3_mat *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->router, &L->dense.gate, L->is_moe ? &L->experts[0].gate : NULL};
        for (size_t i = 0; i < sizeof mats / sizeof *mats; i++) {
            size_t b = mats[i] ? act_row_bytes(mats[i]) : 0;
            if (b > best) best = b;
        }
    }
    return best;
}

/* The widest feed-forward (an owned expert's slice or a dense layer) and its down inputs' rows. */
static int max_ffn_dim(const q3_model *m, size_t *down_row_bytes) {
    int best = 0;
    *down_row_bytes = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        for (int x = -1; x < (L->is_moe ? m->cfg.n_experts : 0); x++) {
            const q3_ffn *f = x < 0 ? &L->dense : &L->experts[x];
            if (!f->down.data || (x >= 0 && !q3_shard_owns_expert(&m->shard, x))) continue;
            if (f->gate.rows > best) best = (int)f->gate.rows;
            size_t b = q3_row_bytes(q3_type_info(f->down.type)->vec_dot_type, f->down.cols);
            if (b > *down_row_bytes) *down_row_bytes = b;
        }
    }
    return best;
}

static bool alloc_scratch(q3_cuda *c) {
    const q3_model *m = c->base.m;
    const q3_config *cfg = &m->cfg;
    size_t T = (size_t)c->max_tokens, H = (size_t)cfg->hidden_size;
    int K = cfg->n_experts_used > 0 ? cfg->n_experts_used : 1, E = cfg->n_experts > 0 ? cfg->n_experts : 1;
    size_t S = T * K, down_bytes;
    c->max_slots = (int)S;
    c->ffn_dim = max_ffn_dim(m, &down_bytes);
    c->act_row_bytes = max_act_row_bytes(m);
    int tiles = q3hd_max_tiles((int)S, E, Q3_TILE_SLOTS);
    bool ok = true;
    c->act = device(T * c->act_row_bytes, &ok);
    c->gate = (float *)device(S * c->ffn_dim * sizeof(float), &ok);
    c->up = (float *)device(S * c->ffn_dim * sizeof(float), &ok);
    c->h = (float *)device(S * c->ffn_dim * sizeof(float), &ok);
    c->h_act = device(S * down_bytes, &ok);
    c->y = (float *)device(S * H * sizeof(float), &ok);
    c->slot_of = (int32_t *)device(S * 4, &ok);
    c->slot_token = (int32_t *)device(S * 4, &ok);
    c->slot_expert = (int32_t *)device(S * 4, &ok);
    c->expert_start = (int32_t *)device(((size_t)E + 1) * 4, &ok);
    c->tile_expert = (int32_t *)device((size_t)tiles * 4, &ok);
    c->tile_slot0 = (int32_t *)device((size_t)tiles * 4, &ok);
    c->tile_n = (int32_t *)device((size_t)tiles * 4, &ok);
    c->counters = (int32_t *)device(2 * 4, &ok);
    c->arena_cap = 4 * T;
    c->tally_cap = S * (size_t)cfg->n_layers;
    c->tallies_cap = 4 * cfg->n_layers;
    ok = ok && (c->arena = (int32_t *)pinned(c->arena_cap * 4)) && (c->tally_host = (int32_t *)pinned(c->tally_cap * 4)) &&
         (c->tallies = (q3_cuda_tally *)calloc((size_t)c->tallies_cap, sizeof *c->tallies));
    return ok;
}

/* Hybrid: the CPU backend for the routed experts, and the pinned buffers between the two. */
static q3_status make_hybrid(q3_cuda *c, int n_threads, q3_error *e) {
    const q3_config *cfg = &c->base.m->cfg;
    size_t T = (size_t)c->max_tokens, H = (size_t)cfg->hidden_size, K = (size_t)(cfg->n_experts_used ? cfg->n_experts_used : 1);
    q3_status st = q3_cpu_backend_new(&c->cpu, c->base.m, c->max_tokens, n_threads, e);
    if (st) return st;
    c->base.threads = c->cpu->threads;
    bool ok = true;
    c->gpu_out = (float *)device(T * H * sizeof(float), &ok);
    if (!ok || !(c->pin_x = (float *)pinned(T * H * 4)) || !(c->pin_out = (float *)pinned(T * H * 4)) ||
        !(c->pin_top = (int32_t *)pinned(T * K * 4)) || !(c->pin_w = (float *)pinned(T * K * 4)))
        return q3_fail(e, Q3_ENOMEM, "cuda: no pinned memory for the CPU experts' %zu tokens", T);
    return Q3_OK;
}

static void destroy_graph(void *g) { cudaGraphExecDestroy((cudaGraphExec_t)g); }

void q3_cuda_destroy(q3_backend *be) {
    q3_cuda *c = (q3_cuda *)be;
    if (!c) return;
    cudaSetDevice(c->w->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    q3_graph_cache_clear(&c->graphs);
    q3_call_list_free(&c->pending);
    if (c->nccl) q3_cuda_nccl_free(c->nccl);
    if (c->cpu) c->cpu->ops->destroy(c->cpu);
    void *dev[] = {c->step_dev, c->attn_part, c->act, c->gate, c->up, c->h, c->h_act, c->y, c->slot_of, c->slot_token,
                   c->slot_expert, c->expert_start, c->tile_expert, c->tile_slot0, c->tile_n, c->counters, c->gpu_out};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) cudaFree(dev[i]);
    void *host[] = {c->step_host, c->arena, c->tally_host, c->pin_x, c->pin_out, c->pin_top, c->pin_w};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++) cudaFreeHost(host[i]);
    free(c->tallies);
    if (c->inputs_ready) cudaEventDestroy(c->inputs_ready);
    if (c->inputs_copied) cudaEventDestroy(c->inputs_copied);
    if (c->copy_stream) cudaStreamDestroy(c->copy_stream);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

extern "C" q3_status q3_cuda_backend_new(q3_backend **out, const q3_model *m, int max_tokens, int n_threads, q3_error *e) {
    *out = NULL;
    q3_cuda_weights *w = (q3_cuda_weights *)m->device;
    if (!w) return q3_fail(e, Q3_EINVAL, "cuda backend: the model was not loaded for --device cuda");
    if (max_tokens <= 0) return q3_fail(e, Q3_EINVAL, "cuda backend: max batch tokens must be positive");
    cudaSetDevice(w->device);
    q3_cuda *c = (q3_cuda *)calloc(1, sizeof *c);
    if (!c) return q3_fail(e, Q3_ENOMEM, "cuda backend: out of memory");
    c->base.ops = &Q3_CUDA_OPS;
    c->base.m = m;
    c->base.host_memory = false;
    c->base.threads = 1;
    c->w = w;
    c->max_tokens = max_tokens;
    const char *graphs = getenv("Q3_CUDA_GRAPHS");
    c->graphs_on = !w->cpu_experts && !(graphs && !strcmp(graphs, "0"));
    const char *mma = getenv("Q3_CUDA_MMA");
    c->mma = !(mma && !strcmp(mma, "0"));
    c->graphs.destroy = destroy_graph;
    q3_status st = Q3_OK;
    if (cudaStreamCreate(&c->stream) || cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking) ||
        cudaEventCreateWithFlags(&c->inputs_ready, cudaEventDisableTiming) ||
        cudaEventCreateWithFlags(&c->inputs_copied, cudaEventDisableTiming))
        st = q3_fail(e, Q3_EIO, "cuda backend: cannot make streams on %s", w->prop.name);
    else if (!alloc_scratch(c))
        st = q3_fail(e, Q3_ENOMEM, "cuda backend: no device memory for batches of %d tokens", max_tokens);
    else if (!q3_cuda_attention_init(c, e))
        st = Q3_EUNSUPPORTED;
    else if (w->cpu_experts)
        st = make_hybrid(c, n_threads, e);
    if (st) {
        q3_cuda_destroy(&c->base);
        return st;
    }
    *out = &c->base;
    return Q3_OK;
}
