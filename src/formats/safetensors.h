/* safetensors files: an 8-byte little-endian header length, a JSON header mapping tensor names to
 * {dtype, shape, data_offsets}, then the raw tensor bytes. Checkpoints too large for one file are
 * sharded, with model.safetensors.index.json mapping each tensor name to its shard. */
#ifndef Q3_SAFETENSORS_H
#define Q3_SAFETENSORS_H

#include "base/error.h"
#include "base/mapfile.h"

#define Q3_MAX_DIMS 4

typedef struct q3_tensor_view {
    const char *name;
    q3_type type;
    int n_dims;
    int64_t shape[Q3_MAX_DIMS]; /* outermost first, as PyTorch prints it */
    const void *data;           /* inside the mapping */
    size_t nbytes;
} q3_tensor_view;

typedef struct q3_st_file {
    q3_mapfile map;
    int n_tensors;
    q3_tensor_view *tensors; /* sorted by name */
    char *names;             /* storage for the names */
} q3_st_file;

/* Maps and validates one file: header bounds, JSON, dtypes, shapes against byte sizes, offsets
 * inside the data and not overlapping. */
q3_status q3_st_open(q3_st_file *f, const char *path, q3_error *e);
/* The same checks over bytes already in memory (the fuzzer's entry point); path names them in
 * errors. f->map is left empty; data must outlive f. */
q3_status q3_st_parse(q3_st_file *f, const unsigned char *data, size_t size, const char *path,
                      q3_error *e);
void q3_st_close(q3_st_file *f);
const q3_tensor_view *q3_st_find(const q3_st_file *f, const char *name);

/* A checkpoint directory: model.safetensors, or the shards its index names. */
typedef struct q3_st_checkpoint {
    int n_files;
    q3_st_file *files;
} q3_st_checkpoint;

q3_status q3_st_checkpoint_open(q3_st_checkpoint *c, const char *dir, q3_error *e);
void q3_st_checkpoint_close(q3_st_checkpoint *c);
const q3_tensor_view *q3_st_checkpoint_find(const q3_st_checkpoint *c, const char *name);
/* Bytes of all files; cannot fail. */
size_t q3_st_checkpoint_bytes(const q3_st_checkpoint *c);

#endif
