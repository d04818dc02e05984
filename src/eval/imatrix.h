/* Making an importance matrix (formats/imatrix.h) by running a model over a text, as
 * llama-imatrix does: back-to-back chunks of ctx tokens, each run as one batch, adding up the
 * squared inputs of every weight matrix of every layer (per expert for the routed experts). */
#ifndef Q3_EVAL_IMATRIX_H
#define Q3_EVAL_IMATRIX_H

#include "formats/imatrix.h"
#include "q3moe.h"

typedef struct q3_imatrix_run {
    int ctx;            /* tokens per chunk */
    int max_chunks;     /* <= 0: every whole chunk of the text */
    int threads;        /* 0: one per core */
    const char *dataset;/* recorded in the file (the text's name); may be NULL */
    void (*progress)(void *ctx, int done, int total); /* may be NULL; called after each chunk */
    void *progress_ctx;
} q3_imatrix_run;

/* Adds the statistics of ids[0 .. n_ids) to out (zeroed or holding earlier ones). Fails on a
 * text shorter than one chunk, for want of memory, or as the forward pass fails. */
q3_status q3_imatrix_collect(const q3_model *m, const int32_t *ids, int n_ids, const q3_imatrix_run *o,
                             q3_imatrix *out, q3_error *e);

#endif
