/* The CUDA backend as the rest of q3moe sees it, in plain C. src/dist/api.c calls these when a
 * model is loaded with Q3_DEVICE_CUDA: the weights go to the GPU once per model (attach), the KV
 * cache's pages are made in device memory (kv_storage), every runner of the model computes on
 * the GPU (backend_new) and, across processes, sums with NCCL (collective_new).
 *
 * A build without -DQ3_CUDA=ON links cuda_absent.c instead, whose functions answer with
 * Q3_EUNSUPPORTED and say how to build with CUDA. */
#ifndef Q3_CUDA_API_H
#define Q3_CUDA_API_H

#include "kv/kv_cache.h"
#include "model/backend.h"
#include "model/runner.h"

/* What the CUDA build prints with --device cuda until a GPU run has checked it. */
#define Q3_CUDA_UNVERIFIED \
    "the CUDA backend was compiled in CI but has not yet run on a GPU: check its output (tests/gpu/run.sh)"

/* Picks a GPU, checks that the model's types and shapes are ones its kernels compute, and copies
 * the weights it will read there in their stored type (with o->cpu_experts, all but the routed
 * experts). Sets m->device. Q3_EUNSUPPORTED without a CUDA build or without a device, naming
 * why; Q3_ENOMEM when the GPU's memory is too small, naming how much was needed. */
q3_status q3_cuda_attach(q3_model *m, const q3_load_options *o, q3_error *e);

/* Device memory for a KV cache of model m (attached); cannot fail for an attached model. */
q3_kv_storage q3_cuda_kv_storage(const q3_model *m);

/* A backend on m's GPU for batches of up to max_tokens tokens; n_threads: the CPU threads of the
 * experts under cpu_experts (<= 0: one per core). Fails for want of device memory. */
q3_status q3_cuda_backend_new(q3_backend **out, const q3_model *m, int max_tokens, int n_threads, q3_error *e);

/* Rank 0's bytes to every rank (an MPI broadcast), for the NCCL handshake. */
typedef void (*q3_broadcast_fn)(void *ctx, void *buf, size_t bytes);

/* Sums over the processes of shard s with NCCL on the backend's stream (device buffers): the
 * world and s's tensor-parallel group, made from rank 0's NCCL id sent with bcast. Owned by the
 * backend. Q3_EUNSUPPORTED in a build without NCCL. */
q3_status q3_cuda_collective_new(q3_collective *out, q3_backend *be, const q3_shard *s, q3_broadcast_fn bcast, void *ctx,
                                 q3_error *e);

#endif
