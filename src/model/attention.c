/* The attention layer of Qwen3-MoE over the backend's operations:
 *
 *   q, k, v = Wq xn, Wk xn, Wv xn            this process's heads (all of them in one process)
 *   q, k    = rope(rmsnorm_head(q)), ...    q_norm / k_norm over head_dim, NeoX RoPE
 *   cache  <- k, v                           at each token's position in its sequence's pages
 *   attn    = softmax(q K^T / sqrt(d)) V     grouped-query: a kv head serves n_heads / n_kv_heads
 *   out     = Wo attn                        a partial sum when heads are split over processes
 *
 * The cache holds this step's own keys before attention reads it, so a token sees the earlier
 * tokens of its batch: causal by position. */
#include "model/runner.h"

void q3_attention_layer(q3_runner *r, int layer) {
    const q3_layer *L = &r->m->layers[layer];
    const q3_backend_ops *op = r->be->ops;
    int n = r->b->n_tokens;
    const q3_mat *qkv[3] = {&L->wq, &L->wk, &L->wv};
    float *qkv_out[3] = {r->q, r->k, r->v};
    op->matmul(r->be, 3, qkv, r->xn, n, qkv_out);
    op->rope_store(r->be, L, layer, r->q, r->k, r->v);
    op->attend(r->be, layer, r->q, r->attn);
    q3_trace_attention_inputs(r, L, r->xn, r->attn, n);
    const q3_mat *wo = &L->wo;
    op->matmul(r->be, 1, &wo, r->attn, n, &r->out);
}
