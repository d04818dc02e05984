/* Sums between GPU processes: NCCL all-reduces on device buffers, queued on the backend's stream
 * in the order the forward pass asks for them, so no process waits on the host for a sum. MPI
 * starts the processes (src/dist/) and carries rank 0's NCCL id to the others; the world
 * communicator is then split into the tensor-parallel groups (ranks of one ep_rank). CUDA graphs
 * stay off for such a backend: a sum is not one of its recorded calls. */
#include <stdlib.h>
#include "cuda/internal.cuh"

#ifdef Q3_HAVE_NCCL
#include <nccl.h>

struct q3_cuda_nccl {
    ncclComm_t world, tp;
    int size, tp_size;
    q3_cuda *c;
};

static void nccl_sum(void *ctx, float *buf, size_t n, q3_group g) {
    q3_cuda_nccl *x = (q3_cuda_nccl *)ctx;
    int members = g == Q3_GROUP_TP ? x->tp_size : x->size;
    if (members <= 1 || n == 0) return;
    ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, g == Q3_GROUP_TP ? x->tp : x->world, x->c->stream);
    if (r != ncclSuccess) {
        fprintf(stderr, "q3moe: NCCL all-reduce: %s\n", ncclGetErrorString(r));
        q3_cuda_check(x->c, cudaErrorUnknown, "NCCL all-reduce");
    }
}

void q3_cuda_nccl_free(q3_cuda_nccl *x) {
    if (x->tp) ncclCommDestroy(x->tp);
    if (x->world) ncclCommDestroy(x->world);
    free(x);
}

q3_status q3_cuda_collective_new(q3_collective *out, q3_backend *be, const q3_shard *s, q3_broadcast_fn bcast, void *ctx,
                                 q3_error *e) {
    q3_cuda *c = (q3_cuda *)be;
    ncclUniqueId id;
    ncclResult_t r = s->rank == 0 ? ncclGetUniqueId(&id) : ncclSuccess;
    bcast(ctx, &id, sizeof id); /* every rank takes part, even after a failure on rank 0 */
    q3_cuda_nccl *x = (q3_cuda_nccl *)calloc(1, sizeof *x);
    if (!x) return q3_fail(e, Q3_ENOMEM, "NCCL: out of memory");
    x->size = s->size, x->tp_size = s->tp, x->c = c;
    if (r == ncclSuccess) r = ncclCommInitRank(&x->world, s->size, id, s->rank);
    if (r == ncclSuccess && s->tp > 1) r = ncclCommSplit(x->world, s->ep_rank, s->tp_rank, &x->tp, NULL);
    if (r != ncclSuccess) {
        q3_cuda_nccl_free(x);
        return q3_fail(e, Q3_EIO, "NCCL on rank %d of %d: %s", s->rank, s->size, ncclGetErrorString(r));
    }
    c->nccl = x;
    q3_cuda_no_graphs(c);
    *out = (q3_collective){s->size, x, nccl_sum, NULL, NULL, NULL};
    return Q3_OK;
}

#else

void q3_cuda_nccl_free(q3_cuda_nccl *x) { (void)x; }

q3_status q3_cuda_collective_new(q3_collective *out, q3_backend *be, const q3_shard *s, q3_broadcast_fn bcast, void *ctx,
                                 q3_error *e) {
    (void)out, (void)be, (void)s, (void)bcast, (void)ctx;
    return q3_fail(e, Q3_EUNSUPPORTED,
                   "--device cuda across processes sums with NCCL, and this build has none (install NCCL and OpenMPI, "
                   "rebuild with -DQ3_CUDA=ON)");
}

#endif
