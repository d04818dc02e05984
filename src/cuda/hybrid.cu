/* --cpu-experts: the routed experts run on the CPU backend's experts operation, everything else
 * on the GPU. Per MoE layer, once the router is done, the normed hidden states and the choices go
 * to pinned host memory on a second stream; meanwhile the GPU runs the experts it holds (the
 * --gpu-experts N most-routed of the layer, once chosen) into a buffer of its own; the CPU runs
 * the others from the pinned rows, and their sum comes back to be added to the GPU's share.
 * Until the hot experts are placed, the first steps count how often each expert is chosen. */
#include <string.h>
#include "cuda/internal.cuh"

/* Expert choices of layer l's n tokens, for --gpu-experts' ranking. */
static void count_routes(q3_cuda *c, int l, const int32_t *top, int n) {
    q3_cuda_weights *w = c->w;
    const q3_config *cfg = &c->base.m->cfg;
    if (!w->route_counts || w->hot_placed) return;
    for (int a = 0; a < n * cfg->n_experts_used; a++)
        if (top[a] >= 0 && top[a] < cfg->n_experts) w->route_counts[(size_t)l * cfg->n_experts + top[a]]++;
    bool first_moe = true;
    for (int i = 0; i < l; i++) first_moe &= !c->base.m->layers[i].is_moe;
    if (first_moe) w->routed_tokens += n, w->routed_steps++;
}

/* The choices the GPU computes become -1 for the CPU (src/cpu/moe.c skips them); returns the
 * bytes the GPU's experts read, each once. */
static uint64_t split_choices(q3_cuda *c, const q3_ffn *experts, const q3_cuda_experts *t, int n) {
    const q3_config *cfg = &c->base.m->cfg;
    bool seen[Q3_CUDA_MAX_EXPERTS] = {false};
    uint64_t bytes = 0;
    for (int a = 0; a < n * cfg->n_experts_used; a++) {
        int x = c->pin_top[a];
        if (x < 0 || x >= cfg->n_experts || !t->host[x]) continue;
        if (!seen[x]) bytes += q3_ffn_bytes(&experts[x]);
        seen[x] = true;
        c->pin_top[a] = -1;
    }
    return bytes;
}

void q3_cuda_hybrid_experts(q3_cuda *c, const q3_ffn *experts, const float *xn, int n, const int32_t *top,
                            const float *weight, float *out) {
    const q3_config *cfg = &c->base.m->cfg;
    size_t H = (size_t)cfg->hidden_size, K = (size_t)cfg->n_experts_used;
    int l = q3_cuda_layer_of(c->base.m, experts);
    if (l < 0) {
        q3_cuda_check(c, cudaErrorInvalidValue, "experts: not a layer of this model");
        return;
    }
    const q3_cuda_experts *t = &c->w->layers[l];
    q3_cuda_check(c, cudaEventRecord(c->inputs_ready, c->stream), "cpu experts: inputs");
    cudaStreamWaitEvent(c->copy_stream, c->inputs_ready, 0);
    cudaMemcpyAsync(c->pin_x, xn, n * H * sizeof(float), cudaMemcpyDeviceToHost, c->copy_stream);
    cudaMemcpyAsync(c->pin_top, top, n * K * sizeof(int32_t), cudaMemcpyDeviceToHost, c->copy_stream);
    cudaMemcpyAsync(c->pin_w, weight, n * K * sizeof(float), cudaMemcpyDeviceToHost, c->copy_stream);
    q3_cuda_check(c, cudaEventRecord(c->inputs_copied, c->copy_stream), "cpu experts: copies");
    bool hot = c->w->hot_placed;
    if (hot) q3_cuda_run_experts(c, experts, t, xn, n, top, weight, c->gpu_out); /* overlaps the CPU's share */
    if (!q3_cuda_check(c, cudaEventSynchronize(c->inputs_copied), "cpu experts: copies")) return;
    count_routes(c, l, c->pin_top, n);
    c->base.bytes_read += split_choices(c, experts, t, n);
    uint64_t before = c->cpu->bytes_read;
    q3_cpu_experts(c->cpu, experts, c->pin_x, n, c->pin_top, c->pin_w, c->pin_out);
    c->base.bytes_read += c->cpu->bytes_read - before;
    q3_cuda_check(c, cudaMemcpyAsync(out, c->pin_out, n * H * sizeof(float), cudaMemcpyHostToDevice, c->stream),
                  "cpu experts: outputs");
    if (hot) q3_cuda_add(c, out, c->gpu_out, n * H);
}
