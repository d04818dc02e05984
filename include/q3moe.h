/* q3moe: a low-latency inference engine for Qwen3-MoE models.
 *
 * The public C API. A program loads a model (a Hugging Face checkpoint directory or a GGUF file),
 * makes a KV cache and a run state for it, and runs the forward pass over batches of tokens:
 *
 *     q3_model *m;  q3_error err;
 *     if (q3_model_load(&m, "model.gguf", NULL, &err)) { fprintf(stderr, "%s\n", err.msg); ... }
 *     q3_kv_cache *kv;   q3_kv_cache_new(&kv, m, &(q3_kv_options){...}, &err);
 *     q3_runner *r;      q3_runner_new(&r, m, max_batch_tokens, n_threads, &err);
 *     q3_forward(r, kv, &batch, logits, &err);
 *
 * Every function returns a q3_status (0 on success); on failure the q3_error it was given holds
 * one line naming the file, tensor or field at fault. Functions that cannot fail say why.
 */
#ifndef Q3MOE_H
#define Q3MOE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status and errors ---- */

typedef enum q3_status {
    Q3_OK = 0,
    Q3_EINVAL,       /* a bad argument or option */
    Q3_EIO,          /* a file could not be opened, read, mapped or written */
    Q3_EFORMAT,      /* a file is malformed or disagrees with itself */
    Q3_ENOMEM,       /* an allocation failed */
    Q3_EUNSUPPORTED, /* valid input we do not handle (yet) */
    Q3_EFULL,        /* the KV cache has no free page */
} q3_status;

typedef struct q3_error {
    q3_status code;
    char msg[512];
} q3_error;

/* A static string for a status; cannot fail. */
const char *q3_status_name(q3_status s);

/* ---- tensor types: the values are GGML's, so a GGUF type id is a q3_type ---- */

typedef enum q3_type {
    Q3_TYPE_F32 = 0,
    Q3_TYPE_F16 = 1,
    Q3_TYPE_Q4_0 = 2,
    Q3_TYPE_Q4_1 = 3,
    Q3_TYPE_Q5_0 = 6,
    Q3_TYPE_Q5_1 = 7,
    Q3_TYPE_Q8_0 = 8,
    Q3_TYPE_Q8_1 = 9,
    Q3_TYPE_Q2_K = 10,
    Q3_TYPE_Q3_K = 11,
    Q3_TYPE_Q4_K = 12,
    Q3_TYPE_Q5_K = 13,
    Q3_TYPE_Q6_K = 14,
    Q3_TYPE_Q8_K = 15,
    Q3_TYPE_IQ2_XXS = 16,
    Q3_TYPE_IQ2_XS = 17,
    Q3_TYPE_IQ3_XXS = 18,
    Q3_TYPE_IQ1_S = 19,
    Q3_TYPE_IQ4_NL = 20,
    Q3_TYPE_IQ3_S = 21,
    Q3_TYPE_IQ2_S = 22,
    Q3_TYPE_IQ4_XS = 23,
    Q3_TYPE_I32 = 26, /* token ids in reference files; not a weight type */
    Q3_TYPE_IQ1_M = 29,
    Q3_TYPE_BF16 = 30,
    Q3_TYPE_GGML_END = 40, /* ids from here on are q3moe's own, never in a GGUF file: */
    Q3_TYPE_F8_E4M3 = 64,     /* safetensors' float8 e4m3 elements, as FP8 checkpoints store them */
    Q3_TYPE_F8_E4M3_B32 = 65, /* an FP8 checkpoint's weights repacked at load: per 32 e4m3 a scale */
    Q3_TYPE_GPTQ4_B32 = 66,   /* a GPTQ-Int4 checkpoint's weights repacked at load: Q4_0's blocks,
                                 float activations */
    Q3_TYPE_COUNT = 67,
} q3_type;

/* ---- the model ---- */

#define Q3_MAX_LAYERS 256

/* RoPE scaling beyond the trained context. YaRN (arXiv 2309.00071) as transformers computes it:
 * frequencies of dimension pairs that turn fewer than beta_slow times over original_context are
 * divided by factor, those turning more than beta_fast times are kept, a linear ramp between; and
 * cos and sin are multiplied by attention_factor, which scales every q.k by its square. */
typedef enum q3_rope_scaling_type {
    Q3_ROPE_SCALING_NONE = 0,
    Q3_ROPE_SCALING_YARN,
} q3_rope_scaling_type;

typedef struct q3_rope_scaling {
    q3_rope_scaling_type type;
    float factor;           /* the context extension, e.g. 4: 32768 -> 131072 */
    int original_context;   /* the context the model was trained at */
    float beta_fast;        /* rotations where the ramp ends (kept frequencies); 0: 32 */
    float beta_slow;        /* rotations where it begins (divided frequencies); 0: 1 */
    float attention_factor; /* multiplies cos and sin; 0: 0.1 ln(factor) + 1 */
} q3_rope_scaling;

/* The architecture, as read from config.json or GGUF metadata. */
typedef struct q3_config {
    int vocab_size;
    int hidden_size;
    int n_layers;
    int n_heads;          /* query heads */
    int n_kv_heads;       /* key/value heads (GQA) */
    int head_dim;         /* its own field: n_heads * head_dim need not equal hidden_size */
    int n_experts;        /* routed experts per MoE layer */
    int n_experts_used;   /* top-k */
    int moe_intermediate; /* expert FFN width */
    int intermediate;     /* dense FFN width (dense layers only) */
    int max_context;      /* max_position_embeddings */
    float rope_theta;
    q3_rope_scaling rope_scaling; /* type NONE: plain RoPE */
    float rms_eps;
    bool norm_topk_prob;  /* renormalise the top-k routing weights to sum to 1 */
    bool tied_embeddings; /* lm_head shares token embeddings */
    int bos_token, eos_token;
    bool is_moe[Q3_MAX_LAYERS]; /* from mlp_only_layers and decoder_sparse_step */
} q3_config;

typedef struct q3_model q3_model;

/* Where the routed experts' weights go on a machine with several NUMA nodes: each expert on one
 * node, computed first by the threads pinned there (with n_threads > 0, see q3_runner_new). */
typedef enum q3_numa_mode {
    Q3_NUMA_AUTO = 0,   /* distribute when libnuma reports several nodes; a failure only warns */
    Q3_NUMA_DISTRIBUTE, /* the same, but a failure to place fails the load */
    Q3_NUMA_OFF,        /* leave the pages where the kernel puts them */
} q3_numa_mode;

/* Where the forward pass computes. */
typedef enum q3_device {
    Q3_DEVICE_CPU = 0, /* the CPU kernels and a thread pool */
    Q3_DEVICE_CUDA,    /* an NVIDIA GPU (a build with -DQ3_CUDA=ON): weights uploaded once at load */
} q3_device;

typedef struct q3_load_options {
    bool verbose;      /* progress lines on stderr */
    q3_numa_mode numa; /* zero: Q3_NUMA_AUTO */
    /* RoPE scaling to use instead of the file's (type NONE: the file's own), as Qwen's model
     * cards ask for on checkpoints that do not declare it: --rope-scaling yarn --rope-scale 4
     * --yarn-orig-ctx 32768. The context limit grows to factor * original_context. */
    q3_rope_scaling rope_scaling;
    q3_device device;  /* zero: Q3_DEVICE_CPU */
    /* With Q3_DEVICE_CUDA: the routed experts stay in host memory and run on the CPU kernels,
     * attention, norms, router and KV cache on the GPU ("hybrid"). */
    bool cpu_experts;
    /* With cpu_experts: the gpu_experts most-routed experts of each MoE layer (counted over the
     * first steps) are copied to the GPU and run there, beside the CPU's share. */
    int gpu_experts;
    /* The Q4_K and Q6_K matrices read into memory at load in a row-interleaved layout (four
     * rows block by block), which the decode kernels read faster than the file's layout; the
     * file's page-cache copy is dropped behind. GGUF files on the CPU device, one process. */
    bool repack;
} q3_load_options;

/* Opens a Hugging Face checkpoint directory (config.json + safetensors) or a GGUF file.
 * Weights stay memory-mapped in their stored type (unless opts->repack). opts may be NULL. */
q3_status q3_model_load(q3_model **out, const char *path, const q3_load_options *opts,
                        q3_error *err);
/* Frees NULL happily; cannot fail. */
void q3_model_free(q3_model *m);
/* The model's architecture; cannot fail for a loaded model. */
const q3_config *q3_model_config(const q3_model *m);

/* ---- the KV cache: paged, shared by all sequences ---- */

typedef struct q3_kv_cache q3_kv_cache;

typedef struct q3_kv_options {
    q3_type type;   /* F32, F16 or BF16 */
    int page_size;  /* tokens per page */
    int n_pages;    /* pages shared by all sequences: total cache tokens = n_pages * page_size */
    int max_seqs;   /* sequence slots */
    int max_seq_len;/* longest sequence (tokens) */
} q3_kv_options;

q3_status q3_kv_cache_new(q3_kv_cache **out, const q3_model *m, const q3_kv_options *opts,
                          q3_error *err);
void q3_kv_cache_free(q3_kv_cache *kv);
/* Drops every token of sequence seq from position pos on, returning its pages to the pool;
 * pos 0 empties it. Cannot fail for a valid seq (an invalid one is ignored). */
void q3_kv_cache_truncate(q3_kv_cache *kv, int seq, int pos);
/* Shares the first n_tokens of sequence src with sequence dst, which it empties first: whole
 * pages by reference (copied when either writes into them), the partial last page by copy.
 * Q3_EINVAL for bad sequences, Q3_EFULL when no page is free for the copy. */
q3_status q3_kv_cache_share_prefix(q3_kv_cache *kv, int dst, int src, int n_tokens, q3_error *err);
/* Tokens held for sequence seq; cannot fail. */
int q3_kv_cache_seq_len(const q3_kv_cache *kv, int seq);
/* Pages in use and free; cannot fail. */
void q3_kv_cache_usage(const q3_kv_cache *kv, int *used_pages, int *free_pages);

/* ---- one step of the forward pass ---- */

/* The tokens of one step: any mix of prefill chunks and decode tokens of several sequences.
 * Token i of sequence seq[i] sits at position pos[i]; a sequence's positions in a batch are
 * consecutive and continue what the cache holds for it. */
typedef struct q3_batch {
    int n_tokens;
    const int32_t *tokens;  /* [n_tokens] */
    const int32_t *pos;     /* [n_tokens] */
    const int32_t *seq;     /* [n_tokens] KV cache sequence slot */
    const bool *want_logits;/* [n_tokens]; NULL: logits of every token */
} q3_batch;

/* The scratch buffers of a forward pass and its worker threads. */
typedef struct q3_runner q3_runner;

q3_status q3_runner_new(q3_runner **out, const q3_model *m, int max_batch_tokens, int n_threads,
                        q3_error *err);
void q3_runner_free(q3_runner *r);

/* Runs the model over a batch, appending its keys and values to the cache. logits receives
 * [rows, vocab] floats, one row per token whose want_logits is set, in batch order. */
q3_status q3_forward(q3_runner *r, q3_kv_cache *kv, const q3_batch *batch, float *logits,
                     q3_error *err);

#ifdef __cplusplus
}
#endif
#endif
