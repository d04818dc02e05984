/* The bandwidth roofline of decoding: the bytes one decoded token reads from memory, from the
 * model's own weight views. A decode step of a single sequence reads
 *   - one embedding row,
 *   - in every layer: the attention matrices, the norms, the router, and the top-k experts'
 *     share of each expert tensor (or the whole FFN of a dense layer),
 *   - the final norm and the lm_head,
 *   - and the keys and values of every cached position in every layer.
 * Everything else a step touches (activations, scratch) stays in cache. Bandwidth divided by
 * these bytes is the fastest any engine can decode on that machine. */
#ifndef Q3_BENCH_ROOFLINE_H
#define Q3_BENCH_ROOFLINE_H

#include "model/model.h"

/* Bytes one decoded token reads, split so a model built with fewer layers than the real
 * architecture can be scaled up: `layers` and `kv` grow with the layer count, `head` does not. */
typedef struct q3_decode_bytes {
    double head;   /* embedding row, final norm, lm_head */
    double layers; /* attention, norms, router and top-k experts (or dense FFN), all layers */
    double kv;     /* keys and values read at the given context length, all layers */
} q3_decode_bytes;

/* The bytes of a decode step that attends to `context` positions (its own included), with a KV
 * cache of kv_type (F32, F16, BF16 or Q8_0). Cannot fail for a loaded model. */
q3_decode_bytes q3_roofline_decode_bytes(const q3_model *m, q3_type kv_type, double context);
/* The same with the per-layer parts scaled from the model's layer count to n_layers: the
 * projection to the full architecture of a model built with its first few layers. */
q3_decode_bytes q3_roofline_scale_layers(q3_decode_bytes b, int model_layers, int n_layers);
double q3_roofline_total(q3_decode_bytes b);

#endif
