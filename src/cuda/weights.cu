/* The model's weights on the GPU, once per model: q3_cuda_attach picks a device, checks that the
 * kernels take every type and shape the model has, and copies the bytes the GPU will read in
 * their stored type, as runs of the host's memory (a GGUF file's tensors lie back to back, so a
 * few large copies). Kernels find a weight by its host address (q3_cuda_dev); each MoE layer also
 * gets a table of its experts' device addresses, which the grouped kernels index by expert id.
 *
 * Under --cpu-experts the routed experts stay in host memory; --gpu-experts N later copies the N
 * most-routed experts of each layer (q3_cuda_place_hot_experts) and sets their table entries. */
#include <stdlib.h>
#include <string.h>
#include "cuda/internal.cuh"

/* ---- the device ---- */

/* This process's rank on its node under mpirun (one GPU each), else 0. */
static int local_rank(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return atoi(getenv(vars[i]));
    return 0;
}

/* A kernel this build holds code for, to learn whether the device can run the build's code. */
__global__ void probe_kernel(int *x) {
    if (x) *x = 1;
}

static q3_status pick_device(q3_cuda_weights *w, q3_error *e) {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0)
        return q3_fail(e, Q3_EUNSUPPORTED, "--device cuda: no CUDA device found (%s)",
                       err != cudaSuccess ? cudaGetErrorString(err) : "the driver reports none");
    const char *want = getenv("Q3_CUDA_DEVICE");
    w->device = want ? atoi(want) : local_rank() % n;
    if (w->device < 0 || w->device >= n)
        return q3_fail(e, Q3_EINVAL, "Q3_CUDA_DEVICE=%s: this machine has devices 0..%d", want, n - 1);
    if ((err = cudaSetDevice(w->device)) || (err = cudaGetDeviceProperties(&w->prop, w->device)))
        return q3_fail(e, Q3_EUNSUPPORTED, "--device cuda: device %d: %s", w->device, cudaGetErrorString(err));
    if (w->prop.major < 8)
        return q3_fail(e, Q3_EUNSUPPORTED, "--device cuda: %s is sm_%d%d; the kernels need sm_80 or later", w->prop.name,
                       w->prop.major, w->prop.minor);
    probe_kernel<<<1, 1>>>(NULL);
    if ((err = cudaDeviceSynchronize()) || (err = cudaGetLastError()))
        return q3_fail(e, Q3_EUNSUPPORTED, "--device cuda: %s (sm_%d%d) cannot run this build's kernels (%s): rebuild with "
                                           "-DCMAKE_CUDA_ARCHITECTURES=%d%d",
                       w->prop.name, w->prop.major, w->prop.minor, cudaGetErrorString(err), w->prop.major, w->prop.minor);
    return Q3_OK;
}

/* ---- what the kernels take ---- */

static bool gpu_type(q3_type t) {
    return t == Q3_TYPE_Q4_K || t == Q3_TYPE_Q5_K || t == Q3_TYPE_Q6_K || t == Q3_TYPE_Q8_0 || t == Q3_TYPE_F32 ||
           t == Q3_TYPE_F16 || t == Q3_TYPE_BF16;
}

/* layer < 0: a tensor outside the layers. */
static q3_status check_mat(const q3_mat *w, const char *what, int layer, q3_error *e) {
    if (!w->data || gpu_type(w->type)) return Q3_OK;
    char where[32] = "";
    if (layer >= 0) snprintf(where, sizeof where, "layer %d ", layer);
    return q3_fail(e, Q3_EUNSUPPORTED,
                   "--device cuda: %s%s is %s; the CUDA kernels take Q4_K, Q5_K, Q6_K, Q8_0, F16, BF16 and F32 "
                   "(convert the model with q3moe convert --type q4_k_m)",
                   where, what, q3_type_name(w->type));
}

static q3_status check_shapes(const q3_model *m, q3_error *e) {
    const q3_config *c = &m->cfg;
    if (c->head_dim > 256 || c->head_dim % 2)
        return q3_fail(e, Q3_EUNSUPPORTED, "--device cuda: head_dim %d (the kernels take even head_dim up to 256)", c->head_dim);
    if (c->n_heads / c->n_kv_heads > Q3_ATTN_ROWS)
        return q3_fail(e, Q3_EUNSUPPORTED, "--device cuda: %d query heads per key/value head (at most %d)",
                       c->n_heads / c->n_kv_heads, Q3_ATTN_ROWS);
    if (c->n_experts > Q3_CUDA_MAX_EXPERTS || c->n_experts_used > 32)
        return q3_fail(e, Q3_EUNSUPPORTED, "--device cuda: %d experts, top-%d (the kernels take up to %d experts, top-32)",
                       c->n_experts, c->n_experts_used, Q3_CUDA_MAX_EXPERTS);
    q3_status st = check_mat(&m->embed, "token_embd", -1, e);
    if (!st) st = check_mat(&m->lm_head, "output", -1, e);
    for (int l = 0; !st && l < c->n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        const q3_mat *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->router, &L->dense.gate, &L->dense.up, &L->dense.down};
        const char *names[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_inp", "ffn_gate", "ffn_up", "ffn_down"};
        for (int i = 0; !st && i < 8; i++) st = check_mat(mats[i], names[i], l, e);
        for (int x = 0; !st && L->is_moe && x < c->n_experts; x++)
            if (q3_shard_owns_expert(&m->shard, x))
                if (!(st = check_mat(&L->experts[x].gate, "ffn_gate_exps", l, e)) &&
                    !(st = check_mat(&L->experts[x].up, "ffn_up_exps", l, e)))
                    st = check_mat(&L->experts[x].down, "ffn_down_exps", l, e);
    }
    return st;
}

/* ---- runs of host bytes ---- */

typedef struct span_list {
    q3_cuda_range *r;
    int n, cap;
} span_list;

static bool add_span(span_list *s, const void *p, size_t bytes) {
    if (!p || !bytes) return true;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 256;
        q3_cuda_range *r = (q3_cuda_range *)realloc(s->r, (size_t)cap * sizeof *r);
        if (!r) return false;
        s->r = r, s->cap = cap;
    }
    s->r[s->n++] = (q3_cuda_range){(const char *)p, bytes, NULL};
    return true;
}

/* The bytes a view reads: its rows, the last one only as far as its columns. */
static size_t mat_span(const q3_mat *w) {
    return w->rows > 0 ? (size_t)(w->rows - 1) * w->row_bytes + q3_row_bytes(w->type, w->cols) : 0;
}

static bool add_mat(span_list *s, const q3_mat *w) { return add_span(s, w->data, mat_span(w)); }

static bool add_ffn(span_list *s, const q3_ffn *f) { return add_mat(s, &f->gate) && add_mat(s, &f->up) && add_mat(s, &f->down); }

static bool collect(span_list *s, const q3_model *m, bool cpu_experts) {
    const q3_config *c = &m->cfg;
    bool ok = add_mat(s, &m->embed) && add_mat(s, &m->lm_head) && add_span(s, m->final_norm, c->hidden_size * sizeof(float));
    for (int l = 0; ok && l < c->n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        ok = add_mat(s, &L->wq) && add_mat(s, &L->wk) && add_mat(s, &L->wv) && add_mat(s, &L->wo) && add_mat(s, &L->router) &&
             add_ffn(s, &L->dense) && add_span(s, L->attn_norm, c->hidden_size * sizeof(float)) &&
             add_span(s, L->ffn_norm, c->hidden_size * sizeof(float)) && add_span(s, L->q_norm, c->head_dim * sizeof(float)) &&
             add_span(s, L->k_norm, c->head_dim * sizeof(float));
        for (int x = 0; ok && L->is_moe && !cpu_experts && x < c->n_experts; x++)
            if (q3_shard_owns_expert(&m->shard, x)) ok = add_ffn(s, &L->experts[x]);
    }
    return ok;
}

static int by_address(const void *a, const void *b) {
    const char *x = ((const q3_cuda_range *)a)->host, *y = ((const q3_cuda_range *)b)->host;
    return x < y ? -1 : x > y;
}

/* Sorts and joins spans that overlap or lie less than a page apart (a file's alignment padding
 * between tensors travels too). Every page such a gap touches holds bytes of one of the two
 * spans, so the gap is mapped memory. */
static void merge(span_list *s) {
    qsort(s->r, (size_t)s->n, sizeof *s->r, by_address);
    int out = 0;
    for (int i = 0; i < s->n; i++) {
        q3_cuda_range *last = out ? &s->r[out - 1] : NULL;
        if (last && s->r[i].host < last->host + last->bytes + 4096) {
            const char *end = s->r[i].host + s->r[i].bytes;
            if (end > last->host + last->bytes) last->bytes = (size_t)(end - last->host);
        } else {
            s->r[out++] = s->r[i];
        }
    }
    s->n = out;
}

const char *q3_cuda_dev(const q3_cuda_weights *w, const void *host) {
    const char *p = (const char *)host;
    int lo = 0, hi = w->n_ranges - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const q3_cuda_range *r = &w->ranges[mid];
        if (p < r->host) hi = mid - 1;
        else if (p >= r->host + r->bytes) lo = mid + 1;
        else return r->dev + (p - r->host);
    }
    return NULL;
}

/* ---- copying ---- */

/* Each range at a device address with the host's low 8 bits: the kernels' aligned loads hold. */
static q3_status upload(q3_cuda_weights *w, bool verbose, q3_error *e) {
    size_t total = 0;
    for (int i = 0; i < w->n_ranges; i++) total += w->ranges[i].bytes + 512;
    size_t free_bytes = 0, device_bytes = 0;
    cudaMemGetInfo(&free_bytes, &device_bytes);
    if (cudaMalloc(&w->arena, total) != cudaSuccess)
        return q3_fail(e, Q3_ENOMEM, "--device cuda: %zu MiB of weights do not fit in %s's %zu MiB free (try --cpu-experts)",
                       total >> 20, w->prop.name, free_bytes >> 20);
    w->arena_bytes = total;
    size_t at = 0;
    for (int i = 0; i < w->n_ranges; i++) {
        q3_cuda_range *r = &w->ranges[i];
        r->dev = w->arena + at + ((uintptr_t)r->host & 255);
        cudaError_t err = cudaMemcpy(r->dev, r->host, r->bytes, cudaMemcpyHostToDevice);
        if (err) return q3_fail(e, Q3_EIO, "--device cuda: copying weights: %s", cudaGetErrorString(err));
        at += (r->bytes + 511) & ~(size_t)255;
    }
    if (verbose)
        fprintf(stderr, "q3moe: %zu MiB of weights on %s (%d runs)\n", total >> 20, w->prop.name, w->n_ranges);
    return Q3_OK;
}

/* Per MoE layer, the device addresses of its experts' gate, up and down; NULL for the experts
 * this GPU does not hold. */
static q3_status make_tables(q3_cuda_weights *w, q3_error *e) {
    const q3_model *m = w->m;
    int E = m->cfg.n_experts;
    w->layers = (q3_cuda_experts *)calloc((size_t)m->cfg.n_layers, sizeof *w->layers);
    if (!w->layers) return q3_fail(e, Q3_ENOMEM, "cuda: out of memory");
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        if (!L->is_moe) continue;
        q3_cuda_experts *t = &w->layers[l];
        t->host = (const char **)calloc(3 * (size_t)E, sizeof *t->host);
        if (!t->host || cudaMalloc((void **)&t->dev, 3 * (size_t)E * sizeof *t->dev) != cudaSuccess)
            return q3_fail(e, Q3_ENOMEM, "cuda: out of memory for layer %d's expert table", l);
        for (int x = 0; x < E && !w->cpu_experts; x++) {
            if (!q3_shard_owns_expert(&m->shard, x)) continue;
            t->host[x] = q3_cuda_dev(w, L->experts[x].gate.data);
            t->host[E + x] = q3_cuda_dev(w, L->experts[x].up.data);
            t->host[2 * E + x] = q3_cuda_dev(w, L->experts[x].down.data);
        }
        if (cudaMemcpy(t->dev, t->host, 3 * (size_t)E * sizeof *t->dev, cudaMemcpyHostToDevice) != cudaSuccess)
            return q3_fail(e, Q3_EIO, "cuda: copying layer %d's expert table", l);
    }
    return Q3_OK;
}

static void weights_free(void *p) {
    q3_cuda_weights *w = (q3_cuda_weights *)p;
    if (!w) return;
    cudaSetDevice(w->device);
    for (int l = 0; w->layers && l < w->m->cfg.n_layers; l++) {
        cudaFree(w->layers[l].dev);
        free(w->layers[l].host);
    }
    free(w->layers);
    cudaFree(w->arena);
    cudaFree(w->hot);
    free(w->ranges);
    free(w->route_counts);
    free(w);
}

extern "C" q3_status q3_cuda_attach(q3_model *m, const q3_load_options *o, q3_error *e) {
    q3_cuda_weights *w = (q3_cuda_weights *)calloc(1, sizeof *w);
    if (!w) return q3_fail(e, Q3_ENOMEM, "cuda: out of memory");
    w->m = m;
    w->cpu_experts = o->cpu_experts;
    w->gpu_experts = o->gpu_experts;
    span_list s = {NULL, 0, 0};
    q3_status st = pick_device(w, e);
    if (!st) st = check_shapes(m, e);
    if (!st && w->cpu_experts && !(w->route_counts = (uint64_t *)calloc((size_t)m->cfg.n_layers * m->cfg.n_experts + 1, 8)))
        st = q3_fail(e, Q3_ENOMEM, "cuda: out of memory");
    if (!st && !collect(&s, m, w->cpu_experts)) st = q3_fail(e, Q3_ENOMEM, "cuda: out of memory");
    if (!st) {
        merge(&s);
        w->ranges = s.r, w->n_ranges = s.n, s.r = NULL;
        st = upload(w, o->verbose, e);
    }
    if (!st) st = make_tables(w, e);
    free(s.r);
    if (st) {
        weights_free(w);
        return st;
    }
    fprintf(stderr, "q3moe: --device cuda on %s (sm_%d%d, %zu MiB): %s\n", w->prop.name, w->prop.major, w->prop.minor,
            w->prop.totalGlobalMem >> 20, Q3_CUDA_UNVERIFIED);
    m->device = w;
    m->device_free = weights_free;
    return Q3_OK;
}

int q3_cuda_layer_of(const q3_model *m, const q3_ffn *experts) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (m->layers[l].experts == experts) return l;
    return -1;
}

/* ---- hot experts (hybrid) ---- */

/* Hot-arena bytes of one expert: each view may take up to 511 bytes of alignment (copy_hot). */
static size_t ffn_span(const q3_ffn *f) { return mat_span(&f->gate) + mat_span(&f->up) + mat_span(&f->down) + 3 * 512; }

/* Copies one view's bytes to the hot arena at *at (256-aligned with the host's low bits). */
static const char *copy_hot(q3_cuda_weights *w, const q3_mat *v, size_t *at, q3_error *e) {
    char *dst = w->hot + *at + ((uintptr_t)v->data & 255);
    if (cudaMemcpy(dst, v->data, mat_span(v), cudaMemcpyHostToDevice) != cudaSuccess) {
        q3_fail(e, Q3_EIO, "cuda: copying a hot expert");
        return NULL;
    }
    *at += (mat_span(v) + 511) & ~(size_t)255;
    return dst;
}

q3_status q3_cuda_place_hot_experts(q3_cuda_weights *w, q3_error *e) {
    const q3_model *m = w->m;
    int E = m->cfg.n_experts, N = w->gpu_experts < E ? w->gpu_experts : E;
    w->hot_placed = true;
    size_t need = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (m->layers[l].is_moe) need += (size_t)N * ffn_span(&m->layers[l].experts[0]);
    if (cudaMalloc(&w->hot, need) != cudaSuccess)
        return q3_fail(e, Q3_ENOMEM, "--gpu-experts %d: %zu MiB do not fit on the GPU", w->gpu_experts, need >> 20);
    w->hot_bytes = need;
    size_t at = 0;
    int32_t ids[Q3_CUDA_MAX_EXPERTS];
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        if (!L->is_moe) continue;
        q3_cuda_experts *t = &w->layers[l];
        int n = q3_hot_experts(w->route_counts + (size_t)l * E, E, N, ids);
        for (int i = 0; i < n; i++) {
            int x = ids[i];
            if (!q3_shard_owns_expert(&m->shard, x)) continue;
            const char *g = copy_hot(w, &L->experts[x].gate, &at, e), *u = g ? copy_hot(w, &L->experts[x].up, &at, e) : NULL;
            const char *d = u ? copy_hot(w, &L->experts[x].down, &at, e) : NULL;
            if (!d) return Q3_EIO;
            t->host[x] = g, t->host[E + x] = u, t->host[2 * E + x] = d;
        }
        if (cudaMemcpy(t->dev, t->host, 3 * (size_t)E * sizeof *t->dev, cudaMemcpyHostToDevice) != cudaSuccess)
            return q3_fail(e, Q3_EIO, "cuda: copying layer %d's expert table", l);
    }
    return Q3_OK;
}

/* ---- the KV cache's pages ---- */

static void *kv_alloc(void *ctx, size_t bytes) {
    q3_cuda_weights *w = (q3_cuda_weights *)ctx;
    void *p = NULL;
    cudaSetDevice(w->device);
    return cudaMalloc(&p, bytes ? bytes : 1) == cudaSuccess ? p : NULL;
}

static void kv_free(void *ctx, void *p) {
    (void)ctx;
    cudaFree(p);
}

/* A synchronous copy: it comes after the work queued before it and before the work queued after. */
static void kv_copy(void *ctx, void *dst, const void *src, size_t bytes) {
    (void)ctx;
    cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);
}

extern "C" q3_kv_storage q3_cuda_kv_storage(const q3_model *m) {
    q3_kv_storage s = {m->device, kv_alloc, kv_free, kv_copy};
    return s;
}
