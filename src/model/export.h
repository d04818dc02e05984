/* Writing a loaded model as a GGUF file in llama.cpp's qwen3moe naming, each tensor in the type
 * its role asks for (mixed precision: e.g. attention Q8_0, experts Q4_K). The router and the
 * norms stay F32. Used by `q3moe convert` for checkpoint -> GGUF and GGUF -> GGUF. */
#ifndef Q3_EXPORT_H
#define Q3_EXPORT_H

#include "model/model.h"

typedef enum q3_role {
    Q3_ROLE_EMBED,   /* token_embd */
    Q3_ROLE_ATTN_QKV,/* attn_q, attn_k */
    Q3_ROLE_ATTN_V,  /* attn_v */
    Q3_ROLE_ATTN_OUT,/* attn_output */
    Q3_ROLE_ROUTER,  /* ffn_gate_inp */
    Q3_ROLE_EXPERT_GATE_UP, /* ffn_gate_exps, ffn_up_exps */
    Q3_ROLE_EXPERT_DOWN,    /* ffn_down_exps */
    Q3_ROLE_DENSE,   /* ffn_gate, ffn_up, ffn_down of dense layers */
    Q3_ROLE_HEAD,    /* output */
    Q3_ROLE_COUNT
} q3_role;

typedef struct q3_export_options {
    q3_type type[Q3_ROLE_COUNT];   /* the type per role */
    /* Per layer override of the expert down / attn_v type (llama.cpp's _M presets give some
     * layers more bits); Q3_TYPE_COUNT means "no override". */
    q3_type expert_down_layer[Q3_MAX_LAYERS];
    q3_type attn_v_layer[Q3_MAX_LAYERS];
    int file_type;                 /* general.file_type (llama.cpp's ftype enum) */
    const char *name;              /* general.name; NULL: the source's directory or file name */
    const char *tokenizer;         /* tokenizer.json, or a directory holding it (+ tokenizer_config.json);
                                      NULL: the source's own tokenizer, if it has one */
    const struct q3_imatrix *imatrix; /* importance of each weight column (formats/imatrix.h) for the
                                         types that use one (the i-quants); NULL: none */
    void (*progress)(void *ctx, int done, int total);
    void *progress_ctx;
} q3_export_options;

/* Every role of one type, the router F32, no per-layer overrides. */
void q3_export_options_uniform(q3_export_options *o, q3_type t);
/* The type a tensor of `cols` columns gets when `want` does not divide its rows into whole
 * blocks (llama.cpp's fallbacks: Q4_K -> Q5_0, Q6_K -> Q8_0, ...); cannot fail. */
q3_type q3_export_fallback_type(q3_type want, int64_t cols);

/* The architecture metadata llama.cpp's qwen3moe loader reads (general.* and qwen3moe.* keys),
 * shared by the exporter and the synthetic-model writer. Fails only on allocation. */
q3_status q3_export_add_metadata(q3_gguf_writer *w, const q3_config *c, int file_type, const char *name);

q3_status q3_export_gguf(const q3_model *m, const char *out_path, const q3_export_options *o,
                         q3_error *e);

#endif
