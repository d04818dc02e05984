/* The inputs of a layer's weight matrices, handed to the trace's matmul_input: what an
 * importance matrix accumulates (src/eval/imatrix.c). The attention's and router's inputs are
 * the layer's own activations. A feed-forward's down projection reads silu(gate x) * up x,
 * which the backend computes inside its experts / ffn operation and never shows, so it is
 * recomputed here with the backend's matmul: the statistics cost one more gate and up product
 * per token, paid only when they are asked for. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "model/runner.h"

static bool wanted(const q3_runner *r) { return r->trace && r->trace->matmul_input && r->be->host_memory; }

static void emit(const q3_runner *r, int layer, const char *tensor, int expert, int n_experts, const float *x, int n,
                 int64_t cols) {
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s.weight", layer, tensor);
    r->trace->matmul_input(r->trace->matmul_input_ctx, name, expert, n_experts, x, n, cols);
}

static int layer_index(const q3_runner *r, const q3_layer *L) { return (int)(L - r->m->layers); }

void q3_trace_attention_inputs(q3_runner *r, const q3_layer *L, const float *xn, const float *attn, int n) {
    if (!wanted(r)) return;
    int l = layer_index(r, L);
    emit(r, l, "attn_q", 0, 1, xn, n, L->wq.cols);
    emit(r, l, "attn_k", 0, 1, xn, n, L->wk.cols);
    emit(r, l, "attn_v", 0, 1, xn, n, L->wv.cols);
    emit(r, l, "attn_output", 0, 1, attn, n, L->wo.cols);
}

/* One feed-forward over n rows x: the gate and up inputs (x), then silu(gate x) * up x, the down
 * input. tensors: the three names; scratch holds 3 * n * ffn_dim floats. */
static void ffn_inputs(q3_runner *r, int l, const q3_ffn *f, const char *const tensors[3], int expert, int n_experts,
                       const float *x, int n, float *scratch) {
    int64_t F = f->gate.rows;
    float *g = scratch, *u = g + (size_t)n * F;
    const q3_mat *mats[2] = {&f->gate, &f->up};
    float *outs[2] = {g, u};
    r->be->ops->matmul(r->be, 2, mats, x, n, outs);
    for (size_t i = 0; i < (size_t)n * F; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    emit(r, l, tensors[0], expert, n_experts, x, n, f->gate.cols);
    emit(r, l, tensors[1], expert, n_experts, x, n, f->up.cols);
    emit(r, l, tensors[2], expert, n_experts, g, n, f->down.cols);
}

/* The rows of each expert's tokens gathered (tokens in batch order), then ffn_inputs. */
static void expert_inputs(q3_runner *r, const q3_layer *L, const float *xn, int n, const int32_t *top, float *rows,
                          float *scratch) {
    static const char *const names[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    const q3_config *c = &r->m->cfg;
    int H = c->hidden_size, k = c->n_experts_used;
    for (int e = 0; e < c->n_experts; e++) {
        if (!L->experts[e].gate.data) continue; /* another process's expert */
        int m = 0;
        for (int t = 0; t < n; t++)
            for (int j = 0; j < k; j++)
                if (top[t * k + j] == e) memcpy(rows + (size_t)m++ * H, xn + (size_t)t * H, (size_t)H * sizeof(float));
        if (m) ffn_inputs(r, layer_index(r, L), &L->experts[e], names, e, c->n_experts, rows, m, scratch);
    }
}

void q3_trace_ffn_inputs(q3_runner *r, const q3_layer *L, const float *xn, int n, const int32_t *top) {
    if (!wanted(r)) return;
    const q3_config *c = &r->m->cfg;
    int l = layer_index(r, L);
    float *rows = r->trace->input_scratch, *scratch = rows + (size_t)n * c->hidden_size;
    if (L->is_moe) {
        emit(r, l, "ffn_gate_inp", 0, 1, xn, n, L->router.cols);
        expert_inputs(r, L, xn, n, top, rows, scratch);
    } else {
        static const char *const names[3] = {"ffn_gate", "ffn_up", "ffn_down"};
        ffn_inputs(r, l, &L->dense, names, 0, 1, xn, n, scratch);
    }
}
