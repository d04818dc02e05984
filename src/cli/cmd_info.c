/* q3moe info: what a model file is — architecture, hyper-parameters, tensors by type, parameter
 * counts (total and active per token) and file sizes. */
#include <stdlib.h>
#include <string.h>
#include "cli/commands.h"
#include "cli/common.h"
#include "model/model.h"
#include "quant/types.h"

typedef struct type_tally {
    int64_t tensors[Q3_TYPE_COUNT];
    uint64_t bytes[Q3_TYPE_COUNT];
} type_tally;

static void count(type_tally *t, q3_type type, size_t bytes) {
    t->tensors[type]++;
    t->bytes[type] += bytes;
}

static int64_t tally(const q3_model *m, type_tally *t) {
    memset(t, 0, sizeof *t);
    if (m->kind == Q3_SOURCE_GGUF) {
        for (int64_t i = 0; i < m->gguf.n_tensors; i++) count(t, m->gguf.tensors[i].type, m->gguf.tensors[i].nbytes);
        return m->gguf.n_tensors;
    }
    int64_t n = 0;
    for (int f = 0; f < m->hf.n_files; f++)
        for (int i = 0; i < m->hf.files[f].n_tensors; i++, n++)
            count(t, m->hf.files[f].tensors[i].type, m->hf.files[f].tensors[i].nbytes);
    return n;
}

static void print_files(const q3_model *m) {
    if (m->kind == Q3_SOURCE_GGUF) {
        printf("  %-40s %10.2f MiB\n", m->gguf.path, (double)m->gguf.map.size / (1 << 20));
        return;
    }
    for (int f = 0; f < m->hf.n_files; f++)
        printf("  %-40s %10.2f MiB\n", m->hf.files[f].map.path, (double)m->hf.files[f].map.size / (1 << 20));
}

static void print_layers(const q3_config *c) {
    int dense = 0;
    for (int l = 0; l < c->n_layers; l++) dense += !c->is_moe[l];
    printf("  layers                %d (%d MoE, %d dense", c->n_layers, c->n_layers - dense, dense);
    if (dense) {
        printf(":");
        for (int l = 0; l < c->n_layers; l++) if (!c->is_moe[l]) printf(" %d", l);
    }
    printf(")\n");
}

static void print_rope_scaling(const q3_rope_scaling *y) {
    if (y->type == Q3_ROPE_SCALING_NONE) {
        printf("  rope scaling          none\n");
        return;
    }
    printf("  rope scaling          yarn, factor %g over an original context of %d (beta_fast %g, beta_slow %g,\n"
           "                        attention factor %.6g)\n",
           y->factor, y->original_context, y->beta_fast, y->beta_slow, y->attention_factor);
}

/* llama.cpp's names for general.file_type (its llama_ftype enum: "mostly" this type). */
static const char *file_type_name(int64_t ft) {
    static const char *const names[] = {
        [0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [7] = "Q8_0", [8] = "Q5_0", [9] = "Q5_1",
        [10] = "Q2_K", [11] = "Q3_K_S", [12] = "Q3_K_M", [13] = "Q3_K_L", [14] = "Q4_K_S", [15] = "Q4_K_M",
        [16] = "Q5_K_S", [17] = "Q5_K_M", [18] = "Q6_K", [19] = "IQ2_XXS", [20] = "IQ2_XS", [21] = "Q2_K_S",
        [22] = "IQ3_XS", [23] = "IQ3_XXS", [24] = "IQ1_S", [25] = "IQ4_NL", [26] = "IQ3_S", [27] = "IQ3_M",
        [28] = "IQ2_S", [29] = "IQ2_M", [30] = "IQ4_XS", [31] = "IQ1_M", [32] = "BF16", [36] = "TQ1_0",
        [37] = "TQ2_0", [38] = "MXFP4_MOE"};
    return ft >= 0 && ft < (int64_t)(sizeof names / sizeof *names) && names[ft] ? names[ft] : "unknown";
}

/* What the weights are stored as: a GGUF's file type, or a checkpoint's quantization_config and
 * what loading made of it. */
static void print_quantization(const q3_model *m) {
    if (m->kind == Q3_SOURCE_GGUF) {
        int64_t ft;
        q3_error ignored;
        if (q3_gguf_find_kv(&m->gguf, "general.file_type") && !q3_gguf_get_int(&m->gguf, "general.file_type", &ft, &ignored))
            printf("  quantization          GGUF file type %s (general.file_type %lld)\n", file_type_name(ft), (long long)ft);
        else
            printf("  quantization          GGUF, no general.file_type (types per tensor below)\n");
        return;
    }
    const q3_hf_quant *q = &m->hf_quant;
    double mib = (double)q->repacked_bytes / (1 << 20);
    switch (q->method) {
    case Q3_HF_QUANT_NONE: printf("  quantization          none (quantization_config absent)\n"); break;
    case Q3_HF_QUANT_FP8:
        printf("  quantization          fp8 e4m3, one weight_scale_inv per %dx%d block; %d tensors repacked at load\n"
               "                        into %s (32 weights per scale), %.2f MiB\n",
               q->block_rows, q->block_cols, q->n_repacked, q3_type_name(Q3_TYPE_F8_E4M3_B32), mib);
        break;
    case Q3_HF_QUANT_GPTQ:
        printf("  quantization          gptq %d-bit, group_size %d, symmetric, desc_act false, checkpoint_format %s;\n"
               "                        %d tensors repacked at load into %s (Q4_0 blocks), %.2f MiB\n",
               q->bits, q->group_size, q->zero_offset ? "gptq" : "gptq_v2", q->n_repacked,
               q3_type_name(Q3_TYPE_GPTQ4_B32), mib);
        break;
    }
}

int cmd_info(int argc, char **argv) {
    if (argc != 2 || !strcmp(argv[1], "--help")) {
        fprintf(argc == 2 ? stdout : stderr, "usage: q3moe info MODEL   (a checkpoint directory or a .gguf file)\n");
        return argc == 2 ? 0 : 2;
    }
    q3_error err = {0};
    q3_model *m;
    /* Nothing is computed: placing the experts would only read them all in. */
    if (q3_model_load(&m, argv[1], &(q3_load_options){.numa = Q3_NUMA_OFF}, &err)) {
        fprintf(stderr, "q3moe info: %s\n", err.msg);
        return 1;
    }
    const q3_config *c = q3_model_config(m);
    printf("model: %s\n", argv[1]);
    printf("  format                %s\n", m->kind == Q3_SOURCE_GGUF ? "GGUF" : "Hugging Face safetensors");
    printf("  architecture          qwen3moe (Qwen3MoeForCausalLM)\n");
    print_quantization(m);
    print_layers(c);
    printf("  hidden_size           %d\n", c->hidden_size);
    printf("  attention heads       %d query, %d key/value, head_dim %d\n", c->n_heads, c->n_kv_heads, c->head_dim);
    printf("  experts               %d routed, top-%d, moe_intermediate_size %d, norm_topk_prob %s\n",
           c->n_experts, c->n_experts_used, c->moe_intermediate, c->norm_topk_prob ? "true" : "false");
    printf("  intermediate_size     %d (dense layers)\n", c->intermediate);
    printf("  vocab_size            %d\n", c->vocab_size);
    printf("  tied embeddings       %s\n", c->tied_embeddings ? "yes" : "no");
    printf("  rope_theta            %g\n", c->rope_theta);
    print_rope_scaling(&c->rope_scaling);
    printf("  rms_norm_eps          %g\n", c->rms_eps);
    printf("  max context           %d\n", c->max_context);
    printf("  bos / eos token       %d / %d\n", c->bos_token, c->eos_token);
    type_tally t;
    int64_t n = tally(m, &t);
    printf("tensors: %lld\n", (long long)n);
    for (int ty = 0; ty < Q3_TYPE_COUNT; ty++)
        if (t.tensors[ty])
            printf("  %-8s %6lld tensors %12.2f MiB\n", q3_type_name((q3_type)ty), (long long)t.tensors[ty],
                   (double)t.bytes[ty] / (1 << 20));
    int64_t total, active;
    q3_model_param_counts(m, &total, &active);
    printf("parameters: %lld total (%.2f B), %lld active per token (%.2f B)\n", (long long)total, total / 1e9,
           (long long)active, active / 1e9);
    printf("files: %.2f MiB\n", (double)m->file_bytes / (1 << 20));
    print_files(m);
    q3_model_free(m);
    return 0;
}
