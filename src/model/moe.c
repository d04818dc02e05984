/* The feed-forward layers of Qwen3-MoE over the backend's operations.
 *
 * MoE:   logits = W_router xn                       [n_experts] per token, float32
 *        top, w = topk(softmax(logits)), renormalised when norm_topk_prob
 *        out    = sum_j w_j * down_j(silu(gate_j xn) * up_j xn)
 * Dense: out    = down(silu(gate xn) * up xn)
 *
 * When experts are dealt over several processes each computes the ones it owns and the sums
 * meet in the forward pass's allreduce. */
#include "model/runner.h"

void q3_moe_layer(q3_runner *r, const q3_layer *L, int t0, int t1) {
    const q3_config *c = &r->m->cfg;
    const q3_backend_ops *op = r->be->ops;
    int E = c->n_experts, k = c->n_experts_used, H = c->hidden_size, n = t1 - t0;
    const float *xn = r->xn + (size_t)t0 * H;
    float *logits = r->router + (size_t)t0 * E, *weight = r->top_weight + (size_t)t0 * k;
    int32_t *top = r->top_expert + (size_t)t0 * k;
    const q3_mat *router = &L->router;
    op->matmul(r->be, 1, &router, xn, n, &logits);
    op->route(r->be, logits, n, top, weight);
    q3_trace_ffn_inputs(r, L, xn, n, top);
    op->experts(r->be, L->experts, xn, n, top, weight, r->out + (size_t)t0 * H);
}

void q3_dense_layer(q3_runner *r, const q3_layer *L, int n) {
    q3_trace_ffn_inputs(r, L, r->xn, n, NULL);
    r->be->ops->ffn(r->be, &L->dense, r->xn, n, r->out);
}
