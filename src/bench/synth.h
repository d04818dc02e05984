/* Synthetic models: a GGUF file of any Qwen3-MoE architecture (a config.json) with random
 * weights, in llama.cpp's qwen3moe naming, so speed can be measured on the real shapes without
 * downloading a checkpoint, and the same file can be run by llama.cpp for comparison.
 *
 * Quantized matrices get random quant bytes with fixed small fp16 block scales (the arithmetic
 * stays finite), float matrices small uniform values, norms values near 1, and the F32 router
 * small uniform values so tokens route to different experts. The tensors, their order, shapes
 * and types are those of the reference writer, /work/shared/tools/make_synth_gguf.py; no
 * tokenizer is written (benchmarks feed token ids). */
#ifndef Q3_BENCH_SYNTH_H
#define Q3_BENCH_SYNTH_H

#include <stdint.h>
#include "model/model.h"

/* A file type: one type for every matrix but the lm_head, which may get more bits. */
typedef struct q3_synth_type {
    const char *name;   /* "q4_k_m", ... */
    q3_type matrix;     /* token_embd, attention, experts, dense FFN */
    q3_type head;       /* output */
    int file_type;      /* general.file_type (llama.cpp's ftype) */
} q3_synth_type;

/* The types by name: q4_k_m (Q4_K, head Q6_K), q5_k_m (Q5_K, head Q6_K), q6_k, q8_0, bf16, and
 * the i-quants iq4_xs, iq4_nl, iq3_s, iq3_xxs, iq2_s, iq2_xs, iq2_xxs, iq1_m, iq1_s (random
 * blocks, head Q6_K). */
bool q3_synth_type_from_name(const char *name, q3_synth_type *out);
/* "q4_k_m, q5_k_m, q6_k, q8_0, bf16", for messages; cannot fail. */
const char *q3_synth_type_names(void);

/* Bytes the file of config c takes (header included, rounded up a little): what the disk must
 * hold. Cannot fail. */
uint64_t q3_synth_file_bytes(const q3_config *c, const q3_synth_type *t);

/* Writes the file (path.tmp first, then renamed into place). name goes into general.name.
 * progress (may be NULL) is called after each tensor. */
q3_status q3_synth_write(const char *path, const q3_config *c, const q3_synth_type *t, const char *name,
                         void (*progress)(void *ctx, int done, int total), void *progress_ctx, q3_error *e);

#endif
