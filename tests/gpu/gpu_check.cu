/* The GPU checks of tests/gpu/run.sh, one program that prints every failure and goes on:
 *
 *   kernels  every weight type the GPU takes (Q4_K, Q5_K, Q6_K, Q8_0, F16, BF16, F32) over odd
 *            shapes: the activations the GPU quantizes equal the CPU's byte for byte; the
 *            mat-vec and tiled kernels equal each other bit for bit, and a token alone equals
 *            the same token in a batch; the quantized types equal the CPU scalar kernels to the
 *            bit, the float types within float rounding;
 *   models   the Hugging Face fixtures (tiny, variant) against transformers' logits; prefill,
 *            one-token decode, 13-token chunks and two interleaved sequences bit for bit equal
 *            on the GPU; GPU against CPU logits and greedy tokens (tiny, variant, the demo model,
 *            and K-quant models when given: run.sh makes small synthetic Q4_K_M and Q5_K_M ones);
 *            KV cache types; CUDA graphs on and off bit for bit; hybrid (--cpu-experts, and
 *            --gpu-experts) against the full GPU.
 *
 *   q3_gpu_check ROOT [--report FILE] [--quantized MODEL.gguf]... [--only device|kernels|models]
 *
 * ROOT is the repository (tests/fixtures, models/). --only device: only say which GPU there is.
 * Exit status: the number of failures (0: all passed), capped at 100; 1 without a device. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "cuda/internal.cuh"
extern "C" {
#include "cpu/kernel_table.h"
#include "cpu/matmul.h"
#include "formats/safetensors.h"
#include "model/runner.h"
}

static int failures, checks;
static FILE *report;

static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fputs(line, stdout);
    fflush(stdout);
    if (report) fputs(line, report), fflush(report);
}

static void expect(bool ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char line[900];
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    checks++;
    if (!ok) failures++;
    say("%s %s\n", ok ? "  ok  " : "  FAIL", line);
}

/* ---- random data ---- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float gauss(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    float u1 = ((rng >> 40) + 0.5f) / 16777216.0f;
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    float u2 = ((rng >> 40) + 0.5f) / 16777216.0f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

#define CU(x)                                                                                     \
    do {                                                                                          \
        cudaError_t err_ = (x);                                                                   \
        if (err_) {                                                                               \
            say("  FAIL CUDA: %s at %s:%d\n", cudaGetErrorString(err_), __FILE__, __LINE__);      \
            failures++;                                                                           \
            return;                                                                               \
        }                                                                                         \
    } while (0)

/* ---- kernels ---- */

static bool same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

/* y[t][r] on the GPU for n tokens, through the mat-vec (small) or tiled kernels. */
static void gpu_matmul(q3_cuda *c, q3_type t, const char *dw, size_t row_bytes, int rows, int cols, const float *dx, int n,
                       void *dact, float *dy, bool small) {
    const void *act = q3_cuda_convert(c, t, dx, cols, n, dact, NULL);
    q3_mm j;
    memset(&j, 0, sizeof j);
    q3_type at = q3_type_info(t)->vec_dot_type;
    j.type = t, j.w = dw, j.row_bytes = row_bytes, j.rows = rows, j.cols = cols, j.x = act;
    j.x_row_bytes = at == Q3_TYPE_F32 ? (size_t)cols * 4 : q3_row_bytes(at, cols);
    j.y = dy, j.y_stride = rows, j.n_slots = n;
    q3_cuda_mm(c, &j, small);
}

static void check_matmul(q3_type t, int rows, int cols, int n) {
    const q3_type_traits *tr = q3_type_info(t), *scalar = q3_type_get_isa(t, Q3_ISA_SCALAR);
    size_t rb = q3_row_bytes(t, cols), ab = q3_act_row_bytes(t, cols);
    float *wf = (float *)malloc((size_t)cols * sizeof(float)), *x = (float *)malloc((size_t)n * cols * 4);
    char *w = (char *)malloc((size_t)rows * rb), *act = (char *)malloc((size_t)n * ab), *gact = (char *)malloc((size_t)n * ab);
    float *ref = (float *)malloc((size_t)n * rows * 4), *small = (float *)malloc((size_t)n * rows * 4);
    float *tiled = (float *)malloc((size_t)n * rows * 4), *alone = (float *)malloc((size_t)rows * 4);
    float *mma = (float *)malloc((size_t)n * rows * 4);
    for (int r = 0; r < rows; r++) {
        for (int k = 0; k < cols; k++) wf[k] = 0.02f * gauss();
        tr->from_float(wf, w + (size_t)r * rb, cols);
    }
    for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = gauss() * (i % 97 == 0 ? 30.0f : 1.0f);
    q3_act_convert(t, x, cols, n, act);
    bool f32_act = tr->vec_dot_type == Q3_TYPE_F32;
    double worst = 0;
    for (int tok = 0; tok < n; tok++)
        for (int r = 0; r < rows; r++)
            ref[(size_t)tok * rows + r] = scalar->vec_dot(cols, w + (size_t)r * rb, f32_act ? (const void *)(x + (size_t)tok * cols) : act + (size_t)tok * ab);
    q3_cuda c;
    memset(&c, 0, sizeof c);
    char *dw, *dact;
    float *dx, *dy;
    CU(cudaStreamCreate(&c.stream));
    CU(cudaMalloc(&dw, (size_t)rows * rb));
    CU(cudaMalloc(&dx, (size_t)n * cols * 4));
    CU(cudaMalloc(&dact, (size_t)n * ab + 4));
    CU(cudaMalloc(&dy, (size_t)n * rows * 4));
    CU(cudaMemcpy(dw, w, (size_t)rows * rb, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dx, x, (size_t)n * cols * 4, cudaMemcpyHostToDevice));
    gpu_matmul(&c, t, dw, rb, rows, cols, dx, n, dact, dy, true);
    CU(cudaMemcpy(small, dy, (size_t)n * rows * 4, cudaMemcpyDeviceToHost));
    if (!f32_act) CU(cudaMemcpy(gact, dact, (size_t)n * ab, cudaMemcpyDeviceToHost));
    gpu_matmul(&c, t, dw, rb, rows, cols, dx, n, dact, dy, false);
    CU(cudaMemcpy(tiled, dy, (size_t)n * rows * 4, cudaMemcpyDeviceToHost));
    c.mma = true; /* the tensor-core tiles where the type has them */
    gpu_matmul(&c, t, dw, rb, rows, cols, dx, n, dact, dy, false);
    CU(cudaMemcpy(mma, dy, (size_t)n * rows * 4, cudaMemcpyDeviceToHost));
    c.mma = false;
    int lone = n / 2; /* one token alone, through the kernel a batch of one takes */
    gpu_matmul(&c, t, dw, rb, rows, cols, dx + (size_t)lone * cols, 1, dact, dy, true);
    CU(cudaMemcpy(alone, dy, (size_t)rows * 4, cudaMemcpyDeviceToHost));
    CU(cudaStreamSynchronize(c.stream));
    for (size_t i = 0; i < (size_t)n * rows; i++) worst = fmax(worst, fabs(small[i] - ref[i]) / (fabs(ref[i]) + 1e-3));
    const char *name = tr->name;
    bool exact = !f32_act;
    expect(c.error == cudaSuccess, "%s %dx%d, %d tokens: kernels ran (%s)", name, rows, cols, n,
           c.error ? cudaGetErrorString(c.error) : "no error");
    if (!f32_act) expect(!memcmp(gact, act, (size_t)n * ab), "%s %dx%d, %d tokens: activations quantized as the CPU does", name, rows, cols, n);
    expect(same_bits(small, tiled, (size_t)n * rows), "%s %dx%d, %d tokens: mat-vec == tiled, bit for bit", name, rows, cols, n);
    expect(same_bits(small, mma, (size_t)n * rows), "%s %dx%d, %d tokens: mat-vec == tensor-core tiles, bit for bit", name, rows,
           cols, n);
    expect(same_bits(alone, small + (size_t)lone * rows, rows), "%s %dx%d: a token alone == the same token in a batch of %d", name,
           rows, cols, n);
    if (exact) expect(same_bits(small, ref, (size_t)n * rows), "%s %dx%d, %d tokens: == CPU scalar kernel, bit for bit (worst rel %.3g)", name, rows, cols, n, worst);
    else expect(worst < 1e-4, "%s %dx%d, %d tokens: CPU scalar kernel within float rounding (worst rel %.3g)", name, rows, cols, n, worst);
    cudaFree(dw), cudaFree(dx), cudaFree(dact), cudaFree(dy);
    cudaStreamDestroy(c.stream);
    free(wf), free(x), free(w), free(act), free(gact), free(ref), free(small), free(tiled), free(alone), free(mma);
}

static void check_kernels(void) {
    say("\n== kernels\n");
    const q3_type types[] = {Q3_TYPE_Q4_K, Q3_TYPE_Q5_K, Q3_TYPE_Q6_K, Q3_TYPE_Q8_0, Q3_TYPE_F16, Q3_TYPE_BF16, Q3_TYPE_F32};
    const int shapes[][3] = {{1, 256, 1}, {7, 768, 3}, {33, 2304, 17}, {130, 512, 40}, {257, 1280, 5}};
    for (size_t t = 0; t < sizeof types / sizeof *types; t++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) check_matmul(types[t], shapes[s][0], shapes[s][1], shapes[s][2]);
    check_matmul(Q3_TYPE_Q8_0, 19, 96, 21); /* a row of three Q8_0 blocks */
}

/* ---- models ---- */

static q3_model *load(const char *path, q3_device device, bool cpu_experts, int gpu_experts) {
    q3_load_options o;
    memset(&o, 0, sizeof o);
    o.numa = Q3_NUMA_OFF, o.device = device, o.cpu_experts = cpu_experts, o.gpu_experts = gpu_experts;
    q3_model *m = NULL;
    q3_error e = {};
    if (q3_model_load(&m, path, &o, &e)) {
        expect(false, "load %s (%s): %s", path, device == Q3_DEVICE_CUDA ? "cuda" : "cpu", e.msg);
        return NULL;
    }
    return m;
}

/* Logits of every position of ids, `chunk` tokens per step, on a fresh cache of kv_type. */
static float *logits_of(q3_model *m, const int32_t *ids, int n, int chunk, q3_type kv_type) {
    q3_error e = {};
    q3_kv_cache *kv = NULL;
    q3_runner *r = NULL;
    int V = q3_model_config(m)->vocab_size;
    q3_kv_options ko = {kv_type, 16, (n + 15) / 16 + 1, 1, n + 16};
    float *logits = (float *)malloc((size_t)n * V * 4);
    int32_t *pos = (int32_t *)malloc((size_t)n * 4), *seq = (int32_t *)calloc((size_t)n, 4);
    bool ok = !q3_kv_cache_new(&kv, m, &ko, &e) && !q3_runner_new(&r, m, chunk, 4, &e);
    for (int i = 0; i < n; i++) pos[i] = i;
    for (int i = 0; ok && i < n; i += chunk) {
        q3_batch b = {n - i < chunk ? n - i : chunk, ids + i, pos + i, seq + i, NULL};
        ok = !q3_forward(r, kv, &b, logits + (size_t)i * V, &e);
    }
    if (!ok) expect(false, "forward: %s", e.msg);
    free(pos), free(seq);
    q3_runner_free(r);
    q3_kv_cache_free(kv);
    if (ok) return logits;
    free(logits);
    return NULL;
}

typedef struct diff {
    double worst_rel, median_rel; /* per row: max |a - b| / max |b| */
    double top1;                  /* rows whose argmax agrees */
} diff;

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* a against b over n rows of V, skipping rows whose routing is a near tie (gap < 1e-4). */
static diff compare(const float *a, const float *b, int n, int V, const float *route_gap) {
    double *rel = (double *)calloc((size_t)n, sizeof *rel);
    diff d = {0, 0, 0};
    int rows = 0, agree = 0;
    for (int t = 0; t < n; t++) {
        if (route_gap && route_gap[t] < 1e-4f) continue;
        double scale = 0, worst = 0;
        for (int v = 0; v < V; v++) {
            scale = fmax(scale, fabs(b[(size_t)t * V + v]));
            worst = fmax(worst, fabs(a[(size_t)t * V + v] - b[(size_t)t * V + v]));
        }
        rel[rows++] = worst / (scale > 0 ? scale : 1);
        agree += argmax(a + (size_t)t * V, V) == argmax(b + (size_t)t * V, V);
    }
    qsort(rel, (size_t)rows, sizeof *rel, by_value);
    d.worst_rel = rows ? rel[rows - 1] : 0;
    d.median_rel = rows ? rel[rows / 2] : 0;
    d.top1 = rows ? (double)agree / rows : 1;
    free(rel);
    return d;
}

static const q3_tensor_view *ref(const q3_st_file *f, const char *fmt, const char *p) {
    char name[128];
    snprintf(name, sizeof name, fmt, p);
    return q3_st_find(f, name);
}

/* Prefill against transformers, and the GPU's own invariances, for one prompt of an HF fixture. */
static void check_prompt(q3_model *gpu, q3_model *cpu, const q3_st_file *f, const char *fixture, const char *p, bool invariance) {
    const q3_tensor_view *ids = ref(f, "%s.input_ids", p), *want = ref(f, "%s.logits", p), *gap = ref(f, "%s.route_gap", p);
    if (!ids || !want) return expect(false, "%s: reference %s missing", fixture, p);
    int n = (int)ids->shape[0], V = q3_model_config(gpu)->vocab_size;
    const int32_t *tok = (const int32_t *)ids->data;
    float *pre = logits_of(gpu, tok, n, n, Q3_TYPE_F32), *on_cpu = logits_of(cpu, tok, n, n, Q3_TYPE_F32);
    if (!pre || !on_cpu) return;
    const float *g = gap ? (const float *)gap->data : NULL;
    diff hf = compare(pre, (const float *)want->data, n, V, g), vs_cpu = compare(pre, on_cpu, n, V, g);
    expect(hf.worst_rel <= 2e-3, "%s %s (%d tokens): GPU vs transformers, worst row %.3g of max|logit| (limit 2e-3)", fixture, p, n,
           hf.worst_rel);
    expect(vs_cpu.worst_rel <= 1e-4 && vs_cpu.top1 == 1, "%s %s: GPU vs CPU, worst row %.3g, median %.3g, top-1 agreement %.4f",
           fixture, p, vs_cpu.worst_rel, vs_cpu.median_rel, vs_cpu.top1);
    if (invariance) {
        float *dec = logits_of(gpu, tok, n, 1, Q3_TYPE_F32), *chunked = logits_of(gpu, tok, n, 13, Q3_TYPE_F32);
        if (dec) expect(same_bits(pre, dec, (size_t)n * V), "%s %s: one-token decode == prefill, bit for bit", fixture, p);
        if (chunked) expect(same_bits(pre, chunked, (size_t)n * V), "%s %s: 13-token chunks == prefill, bit for bit", fixture, p);
        free(dec), free(chunked);
    }
    free(pre), free(on_cpu);
}

/* Two prompts as two sequences in one batch, interleaved, against each alone: bit for bit. */
static void check_two_sequences(q3_model *gpu, const q3_st_file *f) {
    const q3_tensor_view *a = ref(f, "%s.input_ids", "p64"), *b = ref(f, "%s.input_ids", "p300");
    if (!a || !b) return;
    int na = (int)a->shape[0], nb = (int)b->shape[0], n = na + nb, V = q3_model_config(gpu)->vocab_size;
    int32_t *tok = (int32_t *)malloc((size_t)n * 4), *pos = (int32_t *)malloc((size_t)n * 4), *seq = (int32_t *)malloc((size_t)n * 4);
    int ia = 0, ib = 0;
    for (int i = 0; i < n; i++) {
        bool take_a = ia < na && (ib >= nb || i % 3 != 2);
        if (take_a) tok[i] = ((const int32_t *)a->data)[ia], pos[i] = ia++, seq[i] = 0;
        else tok[i] = ((const int32_t *)b->data)[ib], pos[i] = ib++, seq[i] = 1;
    }
    q3_error e = {};
    q3_kv_cache *kv = NULL;
    q3_runner *r = NULL;
    q3_kv_options ko = {Q3_TYPE_F32, 16, n / 16 + 4, 2, n};
    float *both = (float *)malloc((size_t)n * V * 4);
    bool ok = !q3_kv_cache_new(&kv, gpu, &ko, &e) && !q3_runner_new(&r, gpu, n, 4, &e);
    q3_batch batch = {n, tok, pos, seq, NULL};
    ok = ok && !q3_forward(r, kv, &batch, both, &e);
    q3_runner_free(r);
    q3_kv_cache_free(kv);
    float *alone_a = logits_of(gpu, (const int32_t *)a->data, na, na, Q3_TYPE_F32);
    float *alone_b = logits_of(gpu, (const int32_t *)b->data, nb, nb, Q3_TYPE_F32);
    bool same = ok && alone_a && alone_b;
    ia = ib = 0;
    for (int i = 0; same && i < n; i++) {
        const float *want = seq[i] == 0 ? alone_a + (size_t)ia++ * V : alone_b + (size_t)ib++ * V;
        same = same_bits(both + (size_t)i * V, want, V);
    }
    expect(same, "tiny: p64 and p300 interleaved in one batch == each alone, bit for bit%s%s", ok ? "" : ": ", ok ? "" : e.msg);
    free(tok), free(pos), free(seq), free(both), free(alone_a), free(alone_b);
}

static void check_kv_types(q3_model *gpu, q3_model *cpu, const q3_st_file *f) {
    const q3_tensor_view *ids = ref(f, "%s.input_ids", "p300");
    if (!ids) return;
    int n = (int)ids->shape[0], V = q3_model_config(gpu)->vocab_size;
    const q3_type kinds[] = {Q3_TYPE_F16, Q3_TYPE_BF16, Q3_TYPE_Q8_0};
    for (int k = 0; k < 3; k++) {
        float *g = logits_of(gpu, (const int32_t *)ids->data, n, 64, kinds[k]);
        float *c = logits_of(cpu, (const int32_t *)ids->data, n, 64, kinds[k]);
        if (g && c) {
            diff d = compare(g, c, n, V, (const float *)ref(f, "%s.route_gap", "p300")->data);
            expect(d.median_rel <= 1e-3 && d.top1 >= 0.97, "tiny p300, %s KV cache: GPU vs CPU, median row %.3g, top-1 agreement %.4f",
                   q3_type_name(kinds[k]), d.median_rel, d.top1);
        }
        free(g), free(c);
    }
}

/* Greedy tokens from a prompt through the KV cache, one token a step. */
static void greedy(q3_model *m, const int32_t *prompt, int n, int steps, int32_t *out) {
    int V = q3_model_config(m)->vocab_size;
    q3_error e = {};
    q3_kv_cache *kv = NULL;
    q3_runner *r = NULL;
    q3_kv_options ko = {Q3_TYPE_F16, 16, (n + steps) / 16 + 2, 1, n + steps + 16};
    float *logits = (float *)malloc((size_t)V * 4);
    int32_t pos = 0, seq = 0;
    bool ok = !q3_kv_cache_new(&kv, m, &ko, &e) && !q3_runner_new(&r, m, n, 4, &e);
    int32_t *p = (int32_t *)malloc((size_t)n * 4), *s = (int32_t *)calloc((size_t)n, 4);
    bool *want = (bool *)calloc((size_t)n, 1);
    for (int i = 0; i < n; i++) p[i] = i;
    want[n - 1] = true;
    q3_batch b = {n, prompt, p, s, want};
    ok = ok && !q3_forward(r, kv, &b, logits, &e);
    for (int k = 0; ok && k < steps; k++) {
        out[k] = argmax(logits, V);
        pos = n + k;
        q3_batch one = {1, &out[k], &pos, &seq, NULL};
        ok = !q3_forward(r, kv, &one, logits, &e);
    }
    if (!ok) expect(false, "greedy: %s", e.msg);
    free(logits), free(p), free(s), free(want);
    q3_runner_free(r);
    q3_kv_cache_free(kv);
}

static void check_greedy(const char *name, q3_model *gpu, q3_model *cpu, const int32_t *prompt, int n, int steps) {
    int32_t *a = (int32_t *)calloc((size_t)steps, 4), *b = (int32_t *)calloc((size_t)steps, 4);
    greedy(gpu, prompt, n, steps, a);
    greedy(cpu, prompt, n, steps, b);
    int same = 0;
    while (same < steps && a[same] == b[same]) same++;
    expect(same == steps, "%s: %d greedy tokens, GPU == CPU for the first %d", name, steps, same);
    free(a), free(b);
}

static void check_hf_fixture(const char *root, const char *name, const char *const *prompts, int n_prompts, bool full) {
    char dir[4096], refpath[4200];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", root, name);
    snprintf(refpath, sizeof refpath, "%s/reference.safetensors", dir);
    q3_st_file f;
    q3_error e = {};
    if (q3_st_open(&f, refpath, &e)) return expect(false, "%s: %s", name, e.msg);
    q3_model *gpu = load(dir, Q3_DEVICE_CUDA, false, 0), *cpu = load(dir, Q3_DEVICE_CPU, false, 0);
    if (gpu && cpu) {
        for (int i = 0; i < n_prompts; i++) check_prompt(gpu, cpu, &f, name, prompts[i], full && i >= n_prompts - 2);
        if (full) {
            check_two_sequences(gpu, &f);
            check_kv_types(gpu, cpu, &f);
            const q3_tensor_view *ids = ref(&f, "%s.input_ids", "p7");
            if (ids) check_greedy("tiny p7", gpu, cpu, (const int32_t *)ids->data, (int)ids->shape[0], 32);
        }
    }
    q3_model_free(gpu);
    q3_model_free(cpu);
    q3_st_close(&f);
}

static void check_demo(const char *root) {
    char model[4096], refpath[4200];
    snprintf(model, sizeof model, "%s/models/qwen3-moe-demo-py.gguf", root);
    snprintf(refpath, sizeof refpath, "%s/tests/fixtures/demo/reference.safetensors", root);
    q3_st_file f;
    q3_error e = {};
    if (q3_st_open(&f, refpath, &e)) return expect(false, "demo: %s", e.msg);
    q3_model *gpu = load(model, Q3_DEVICE_CUDA, false, 0), *cpu = load(model, Q3_DEVICE_CPU, false, 0);
    const q3_tensor_view *ids = q3_st_find(&f, "prompt.ids"), *want = q3_st_find(&f, "prompt.logits");
    if (gpu && cpu && ids && want) {
        int n = (int)ids->shape[0], V = q3_model_config(gpu)->vocab_size;
        float *g = logits_of(gpu, (const int32_t *)ids->data, n, n, Q3_TYPE_F32);
        float *c = logits_of(cpu, (const int32_t *)ids->data, n, n, Q3_TYPE_F32);
        if (g && c) {
            diff vs_cpu = compare(g, c, n, V, NULL), hf = compare(g, (const float *)want->data, n, V, NULL);
            expect(vs_cpu.worst_rel <= 1e-4, "demo (Q8_0): GPU vs CPU logits, worst row %.3g", vs_cpu.worst_rel);
            say("  info demo (Q8_0): GPU vs transformers' float32 logits, worst row %.3g, top-1 %.3f\n", hf.worst_rel, hf.top1);
        }
        free(g), free(c);
        check_greedy("demo", gpu, cpu, (const int32_t *)ids->data, n, 48);
    }
    q3_model_free(gpu);
    q3_model_free(cpu);
    q3_st_close(&f);
}

/* A quantized model (the K-quant kernels end to end; its vocabulary must hold tiny's prompt
 * ids), CUDA graphs on and off, and the hybrid modes against the full GPU. */
static void check_quantized(const char *root, const char *path) {
    char refpath[4200];
    snprintf(refpath, sizeof refpath, "%s/tests/fixtures/tiny-qwen3moe/reference.safetensors", root);
    q3_st_file f;
    q3_error e = {};
    if (q3_st_open(&f, refpath, &e)) return expect(false, "%s: %s", path, e.msg);
    const q3_tensor_view *ids = q3_st_find(&f, "p300.input_ids");
    int n = (int)ids->shape[0];
    const int32_t *tok = (const int32_t *)ids->data;
    q3_model *gpu = load(path, Q3_DEVICE_CUDA, false, 0), *cpu = load(path, Q3_DEVICE_CPU, false, 0);
    int V = gpu ? q3_model_config(gpu)->vocab_size : 0;
    float *pre = gpu ? logits_of(gpu, tok, n, n, Q3_TYPE_F32) : NULL;
    if (pre && cpu) {
        float *c = logits_of(cpu, tok, n, n, Q3_TYPE_F32), *dec = logits_of(gpu, tok, n, 1, Q3_TYPE_F32);
        diff d = c ? compare(pre, c, n, V, NULL) : diff{1, 1, 0};
        expect(d.median_rel <= 1e-4 && d.top1 >= 0.99, "%s, 300 tokens: GPU vs CPU, median row %.3g, worst %.3g, top-1 %.4f",
               path, d.median_rel, d.worst_rel, d.top1);
        if (dec) expect(same_bits(pre, dec, (size_t)n * V), "%s: one-token decode == prefill, bit for bit", path);
        free(c), free(dec);
        setenv("Q3_CUDA_GRAPHS", "0", 1);
        float *eager = logits_of(gpu, tok, 64, 1, Q3_TYPE_F32);
        unsetenv("Q3_CUDA_GRAPHS");
        if (eager) expect(same_bits(pre, eager, (size_t)64 * V), "%s: decode without CUDA graphs == with them, bit for bit", path);
        free(eager);
        check_greedy(path, gpu, cpu, tok, 7, 32);
    }
    for (int hot = 0; hot <= 4 && pre; hot += 4) {
        setenv("Q3_GPU_EXPERTS_WARMUP", "1", 1);
        q3_model *hy = load(path, Q3_DEVICE_CUDA, true, hot);
        float *h = hy ? logits_of(hy, tok, n, 64, Q3_TYPE_F32) : NULL; /* the hot experts come after the first step */
        if (h) {
            diff d = compare(h, pre, n, V, NULL);
            expect(d.median_rel <= 1e-4 && d.top1 >= 0.99, "%s, --cpu-experts%s: vs the full GPU, median row %.3g, top-1 %.4f",
                   path, hot ? " --gpu-experts 4" : "", d.median_rel, d.top1);
        }
        free(h);
        q3_model_free(hy);
        unsetenv("Q3_GPU_EXPERTS_WARMUP");
    }
    free(pre);
    q3_model_free(gpu);
    q3_model_free(cpu);
    q3_st_close(&f);
}

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : ".", *quantized[8], *only = NULL;
    int n_quantized = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--report")) report = fopen(argv[i + 1], "a");
        else if (!strcmp(argv[i], "--quantized") && n_quantized < 8) quantized[n_quantized++] = argv[i + 1];
        else if (!strcmp(argv[i], "--only")) only = argv[i + 1];
    }
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err || n == 0) {
        say("q3_gpu_check: no CUDA device (%s)\n", err ? cudaGetErrorString(err) : "none");
        return 1;
    }
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    say("q3_gpu_check on %s (sm_%d%d, %zu MiB, %d SMs)\n", prop.name, prop.major, prop.minor, prop.totalGlobalMem >> 20,
        prop.multiProcessorCount);
    if (!only || !strcmp(only, "kernels")) check_kernels();
    if (!only || !strcmp(only, "models")) {
        say("\n== models\n");
        const char *tiny[] = {"p1", "p7", "p64", "p300"}, *variant[] = {"p5", "p1100"};
        check_hf_fixture(root, "tiny-qwen3moe", tiny, 4, true);
        check_hf_fixture(root, "variant-qwen3moe", variant, 2, false);
        check_demo(root);
        for (int i = 0; i < n_quantized; i++) check_quantized(root, quantized[i]);
    }
    say("\nq3_gpu_check: %d of %d checks failed\n", failures, checks);
    if (report) fclose(report);
    return failures > 100 ? 100 : failures;
}
