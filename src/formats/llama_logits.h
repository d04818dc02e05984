/* llama-perplexity's saved log-probabilities (`llama-perplexity --kl-divergence-base FILE`): the
 * base distribution that its --kl-divergence mode compares a model against, read here so that
 * q3moe can be compared against llama.cpp's own logits on the same tokens.
 *
 * Layout (little-endian): "_logits_", u32 n_ctx, i32 n_vocab, i32 n_chunk, i32 tokens[n_chunk *
 * n_ctx]; then for every chunk the n_ctx - 1 - n_ctx/2 positions llama-perplexity scores (from
 * n_ctx/2 on), one row each of 2 * ((n_vocab + 1) / 2) + 4 u16: two floats (scale, min_log_prob)
 * in the first four, then per vocabulary entry a level q: log p = scale * q + min_log_prob
 * (levels span the row's top 16 nats; q = 0 also stands for everything below them). */
#ifndef Q3_LLAMA_LOGITS_H
#define Q3_LLAMA_LOGITS_H

#include <stdbool.h>
#include <stdint.h>
#include "base/error.h"
#include "base/mapfile.h"

typedef struct q3_llama_logits {
    q3_mapfile map;
    int ctx, vocab, chunks;
    int rows_per_chunk;    /* n_ctx - 1 - n_ctx/2 */
    size_t row_u16;        /* u16 per row, the two floats included */
    const unsigned char *tokens; /* i32 [chunks * ctx], unaligned-safe reads via q3_llama_logits_token */
    const unsigned char *rows;
} q3_llama_logits;

/* True when path starts with the file's magic (false when it cannot be read). Cannot fail. */
bool q3_llama_logits_is(const char *path);
/* Maps the file and checks its sizes against its header, naming the file on error. */
q3_status q3_llama_logits_open(q3_llama_logits *f, const char *path, q3_error *e);
/* Safe on a zeroed or closed one; cannot fail. */
void q3_llama_logits_close(q3_llama_logits *f);
/* Token i of the stream (i < chunks * ctx); the caller checks the bound, so it cannot fail. */
int32_t q3_llama_logits_token(const q3_llama_logits *f, size_t i);
/* Log-probabilities of row r (position ctx/2 + r) of chunk c into lp[vocab], as llama.cpp decodes
 * them; returns the row's argmax (the first of equal levels). Indices are the caller's to check,
 * so it cannot fail. */
int q3_llama_logits_row(const q3_llama_logits *f, int c, int r, float *lp);

#endif
