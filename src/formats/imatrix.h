/* Importance matrices, in llama.cpp's imatrix format so that files from either tool work: for
 * every weight matrix a model multiplies by, the sum over the tokens it saw of each input
 * column's squared activation (per expert for stacked expert tensors), and how many token rows
 * went into each sum. The mean square, sum / count, tells a quantizer how much an error in
 * that column of the weights costs: columns that meet large activations matter most.
 *
 * File (GGUF): general.type = "imatrix", imatrix.datasets (strings), imatrix.chunk_count and
 * imatrix.chunk_size (u32), and per weight tensor NAME two F32 tensors: NAME.in_sum2 [n_per_row,
 * n_mats] (the sums) and NAME.counts [1, n_mats]. llama.cpp's older binary .dat files load too. */
#ifndef Q3_IMATRIX_H
#define Q3_IMATRIX_H

#include <stdint.h>
#include "base/error.h"

typedef struct q3_imatrix_entry {
    char *name;        /* the weight tensor's GGUF name: "blk.0.attn_q.weight", "blk.3.ffn_up_exps.weight" */
    int64_t n_per_row; /* input columns */
    int n_mats;        /* 1, or the experts of a stacked tensor */
    double *sums;      /* [n_mats][n_per_row]: sum of x^2 */
    int64_t *counts;   /* [n_mats]: token rows summed */
} q3_imatrix_entry;

typedef struct q3_imatrix {
    q3_imatrix_entry *entries;
    int n_entries, cap;
    char *dataset;   /* the text the statistics came from (file name), or NULL */
    int chunk_count; /* chunks of chunk_size tokens evaluated */
    int chunk_size;
} q3_imatrix;

/* The entry for `name`, created with zero sums if absent. Q3_EFORMAT when it exists with another
 * shape; Q3_ENOMEM. */
q3_status q3_imatrix_entry_get(q3_imatrix *m, const char *name, int64_t n_per_row, int n_mats,
                               q3_imatrix_entry **out, q3_error *e);
/* Adds n rows of activations (row t at x + t * stride) to matrix `mat` of the entry; cannot fail. */
void q3_imatrix_add(q3_imatrix_entry *en, int mat, const float *x, int n, int64_t stride);

/* The importance of each column of matrix `mat` of tensor `name` (the mean square, sum / count;
 * 1 everywhere when that matrix saw no token, as llama.cpp's quantizer reads it) into
 * out[n_per_row]. false when the file has no such tensor or its rows are of another length. */
bool q3_imatrix_importance(const q3_imatrix *m, const char *name, int mat, int64_t n_per_row, float *out);

q3_status q3_imatrix_save(const q3_imatrix *m, const char *path, q3_error *e);
/* Reads a GGUF imatrix (ours or llama.cpp's) or a legacy .dat into m (which must be zeroed or
 * freed first). Every error names the file and, where one is at fault, the tensor. */
q3_status q3_imatrix_load(q3_imatrix *m, const char *path, q3_error *e);
void q3_imatrix_free(q3_imatrix *m);

#endif
