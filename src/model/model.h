/* The Qwen3-MoE model as data: its configuration and per-layer weights, each with its shape.
 * Weights are views into the memory-mapped files, in their stored type; only the small norm
 * vectors are widened to f32 at load time.
 *
 * Shapes are (rows, cols) of the matrix as a linear map y = W x: rows = outputs, cols = inputs.
 * That is PyTorch's (out_features, in_features) and GGUF's ne = [cols, rows]. */
#ifndef Q3_MODEL_H
#define Q3_MODEL_H

#include "base/error.h"
#include "base/numa.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"

/* A weight matrix: rows of `cols` elements of `type`, row r at data + r * row_bytes. */
typedef struct q3_mat {
    const void *data;
    q3_type type;
    int64_t rows, cols;
    size_t row_bytes;
    /* Rows stored four by four in the type's interleaved layout (quant/interleave.h, made at
     * load by --repack); the rows past the last whole group keep the type's own layout. */
    bool interleaved;
} q3_mat;

/* One SwiGLU feed-forward: down(silu(gate(x)) * up(x)). */
typedef struct q3_ffn {
    q3_mat gate; /* (ffn_dim, hidden) */
    q3_mat up;   /* (ffn_dim, hidden) */
    q3_mat down; /* (hidden, ffn_dim) */
} q3_ffn;

typedef struct q3_layer {
    float *attn_norm;    /* (hidden) */
    q3_mat wq;           /* (n_heads * head_dim, hidden) */
    q3_mat wk;           /* (n_kv_heads * head_dim, hidden) */
    q3_mat wv;           /* (n_kv_heads * head_dim, hidden) */
    q3_mat wo;           /* (hidden, n_heads * head_dim) */
    float *q_norm;       /* (head_dim), shared by all query heads */
    float *k_norm;       /* (head_dim), shared by all key heads */
    float *ffn_norm;     /* (hidden) */
    bool is_moe;
    q3_mat router;       /* (n_experts, hidden), MoE layers */
    q3_ffn *experts;     /* [n_experts] of (moe_intermediate, hidden), MoE layers */
    q3_ffn dense;        /* (intermediate, hidden), dense layers */
} q3_layer;

typedef enum q3_source_kind { Q3_SOURCE_HF, Q3_SOURCE_GGUF } q3_source_kind;

/* The quantization a Hugging Face checkpoint declares (config.json's quantization_config), whose
 * weights load_hf.c repacks at load (quant/checkpoint_quants.h). */
typedef enum q3_hf_quant_method { Q3_HF_QUANT_NONE, Q3_HF_QUANT_FP8, Q3_HF_QUANT_GPTQ } q3_hf_quant_method;

typedef struct q3_hf_quant {
    q3_hf_quant_method method;
    int block_rows, block_cols; /* FP8: weight_block_size */
    int bits, group_size;       /* GPTQ */
    int zero_offset;            /* GPTQ: added to stored zeros (1 for checkpoint_format "gptq") */
    int n_repacked;             /* tensors repacked at load */
    size_t repacked_bytes;      /* memory they take */
} q3_hf_quant;

/* This process's part of the model when it runs across several (src/dist/): attention heads
 * split over the tp ranks of a group, experts dealt over ep groups, each expert's intermediate
 * dimension split over the tp ranks. One process: the whole model (rank 0 of 1). */
typedef struct q3_shard {
    int rank, size;          /* in the world */
    int tp, ep;              /* tp * ep == size */
    int tp_rank, ep_rank;    /* rank = ep_rank * tp + tp_rank */
    int q_head0, n_q_heads;  /* query heads computed here */
    int kv_head0, n_kv_heads;/* key/value heads they read (replicated when tp > kv heads) */
    int moe_i0, moe_i1;      /* slice of each owned expert's intermediate dimension */
    int dense_i0, dense_i1;  /* slice of a dense layer's intermediate dimension */
} q3_shard;

/* Whether this process computes expert x; cannot fail. */
static inline bool q3_shard_owns_expert(const q3_shard *s, int x) { return x % s->ep == s->ep_rank; }

struct q3_model {
    q3_config cfg;
    q3_mat embed;        /* (vocab, hidden): row t is token t's embedding */
    q3_layer *layers;    /* [n_layers] */
    float *final_norm;   /* (hidden) */
    q3_mat lm_head;      /* (vocab, hidden); the embedding when tied */

    q3_shard shard;
    /* The NUMA nodes the routed experts were placed on (placement.c): expert x's weights on node
     * numa.node_id[q3_numa_expert_node(x, shard.ep, numa.n_nodes)]; n_nodes 0 when not placed. */
    q3_numa_topology numa;
    int replica_id;        /* the handle followers know this model by (src/dist/); 0 alone */
    /* The weights' copy on a GPU, made by the public load when its options ask for a device
     * (src/cuda/, through src/dist/api.c), freed with the model by device_free. NULL: the model
     * computes on the CPU. */
    void *device;
    void (*device_free)(void *device);

    q3_source_kind kind;
    char *path;
    q3_st_checkpoint hf; /* when kind is HF */
    q3_hf_quant hf_quant;/* its declared quantization */
    void **repacked;     /* [n_repacked] buffers behind the repacked weights' views */
    int n_repacked, cap_repacked;
    q3_gguf gguf;        /* when kind is GGUF */
    size_t file_bytes;
    float *norm_storage; /* one allocation behind every norm vector */
};

/* Reading config.json and GGUF metadata into a q3_config (config.c). */
q3_status q3_config_from_json_file(q3_config *c, const char *path, q3_error *e);
/* The same from bytes in memory (the fuzzer's entry point); path names them in errors. */
q3_status q3_config_from_json_buffer(q3_config *c, const char *data, size_t len, const char *path,
                                     q3_error *e);
q3_status q3_config_from_gguf(q3_config *c, const q3_gguf *g, q3_error *e);
/* Sets c's RoPE scaling to s with its defaults filled in (YaRN: beta_fast 32, beta_slow 1,
 * attention_factor 0.1 ln(factor) + 1, original_context the file's context) and extends
 * max_context to factor * original_context; Q3_EINVAL naming src for values out of range. */
q3_status q3_config_set_rope_scaling(q3_config *c, const q3_rope_scaling *s, const char *src, q3_error *e);
/* Checks the config's numbers against each other; names the field at fault. */
q3_status q3_config_validate(const q3_config *c, const char *source, q3_error *e);

/* Bytes a pass over w reads: its rows of cols elements in its type (a column slice under --tp
 * reads its own columns only); cannot fail. */
uint64_t q3_mat_bytes(const q3_mat *w);
/* The same for a feed-forward block's gate, up and down; cannot fail. */
uint64_t q3_ffn_bytes(const q3_ffn *f);

/* Reads config.json's quantization_config into q; Q3_EUNSUPPORTED naming the field for a
 * method or setting that cannot run (GPTQ desc_act, bits other than 4, asymmetric, ...). */
q3_status q3_hf_quant_read(q3_hf_quant *q, const char *config_path, q3_error *e);

/* Weight binding per source (load_hf.c, load_gguf.c); called by q3_model_load. */
q3_status q3_model_bind_hf(q3_model *m, q3_error *e);
q3_status q3_model_bind_gguf(q3_model *m, q3_error *e);

/* Shared by the binders: norm vector storage, and a matrix view checked against its shape. */
q3_status q3_model_alloc_norms(q3_model *m, q3_error *e);
q3_status q3_mat_make(q3_mat *out, const char *name, q3_type type, const void *data, size_t nbytes,
                      int64_t rows, int64_t cols, const char *path, q3_error *e);

/* Opens the model for this process alone (q3_model_load is it, replicated under mpirun): the
 * source, its config and weights, narrowed to the shard of rank among tp x ep processes (0, 1, 1:
 * the whole model), experts placed over NUMA nodes as opts asks. */
q3_status q3_model_open(q3_model **out, const char *path, const q3_load_options *opts, int rank, int tp, int ep,
                        q3_error *e);
/* Frees it; NULL is fine. */
void q3_model_close(q3_model *m);

/* Computes the shard for rank/tp/ep and narrows every weight view to it; Q3_EUNSUPPORTED naming
 * the tensor when a split would cut through quantization blocks. */
q3_status q3_model_apply_shard(q3_model *m, int rank, int tp, int ep, q3_error *e);

/* --repack (interleave_load.c): the matrices whose type has_kernel says this CPU computes in
 * the row-interleaved layout (quant/interleave.h) read into memory in it, the file's page-cache
 * copy dropped behind, the experts placed on their NUMA nodes again; says (verbose) why not for
 * a checkpoint directory or a model split over processes, and (always) when the copy would not
 * fit in the available memory. Q3_ENOMEM or Q3_EIO naming the tensor. */
q3_status q3_model_interleave(q3_model *m, bool (*has_kernel)(q3_type), bool verbose, q3_error *e);

/* Puts each routed expert's weights this process computes on its node of t (placement.c) and
 * records t in m->numa, so the MoE block groups its tasks by node. Fails naming the layer and
 * expert whose pages could not be placed. */
q3_status q3_model_place_experts(q3_model *m, const q3_numa_topology *t, bool verbose, q3_error *e);
/* What q3_model_load does with the load options' numa mode: places the experts over the
 * machine's nodes when there are several, or says (verbose) why not. */
q3_status q3_model_apply_numa(q3_model *m, q3_numa_mode mode, bool verbose, q3_error *e);

/* Parameter counts: all weights, and those one token reads (top-k experts only). */
void q3_model_param_counts(const q3_model *m, int64_t *total, int64_t *active);

#endif
