/* Bytes per decoded token, counted from the weight views the forward pass reads: each matrix
 * is rows * row_bytes in its stored type, so mixed-precision files (Q4_K experts, Q6_K head)
 * count exactly what they hold. An MoE layer's expert tensors hold n_experts equal matrices, of
 * which a token reads top-k. */
#include "bench/roofline.h"
#include "quant/types.h"

static double mat_bytes(const q3_mat *w) { return w->data ? (double)w->rows * (double)w->row_bytes : 0; }

static double ffn_bytes(const q3_ffn *f) { return mat_bytes(&f->gate) + mat_bytes(&f->up) + mat_bytes(&f->down); }

static double layer_bytes(const q3_model *m, const q3_layer *L) {
    const q3_config *c = &m->cfg;
    double norms = sizeof(float) * (2.0 * c->hidden_size + 2.0 * c->head_dim);
    double attn = mat_bytes(&L->wq) + mat_bytes(&L->wk) + mat_bytes(&L->wv) + mat_bytes(&L->wo);
    if (!L->is_moe) return norms + attn + ffn_bytes(&L->dense);
    return norms + attn + mat_bytes(&L->router) + c->n_experts_used * ffn_bytes(&L->experts[0]);
}

q3_decode_bytes q3_roofline_decode_bytes(const q3_model *m, q3_type kv_type, double context) {
    const q3_config *c = &m->cfg;
    q3_decode_bytes b = {0, 0, 0};
    b.head = (double)m->embed.row_bytes + sizeof(float) * (double)c->hidden_size + mat_bytes(&m->lm_head);
    for (int l = 0; l < c->n_layers; l++) b.layers += layer_bytes(m, &m->layers[l]);
    double kv_row = (double)c->n_kv_heads * (double)q3_row_bytes(kv_type, c->head_dim);
    b.kv = (double)c->n_layers * 2.0 * kv_row * context;
    return b;
}

q3_decode_bytes q3_roofline_scale_layers(q3_decode_bytes b, int model_layers, int n_layers) {
    double f = model_layers > 0 ? (double)n_layers / model_layers : 1;
    return (q3_decode_bytes){b.head, b.layers * f, b.kv * f};
}

double q3_roofline_total(q3_decode_bytes b) { return b.head + b.layers + b.kv; }
