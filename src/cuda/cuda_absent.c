/* The CUDA backend's entry points in a build without CUDA (CMake links this file only when
 * -DQ3_CUDA=ON is absent): --device cuda answers with an error that says how to get a CUDA
 * build, and nothing else needs the toolkit. */
#include "cuda/cuda_api.h"

#define NO_CUDA "--device cuda: this q3moe was built without CUDA (configure with -DQ3_CUDA=ON; see README, GPU)"

q3_status q3_cuda_attach(q3_model *m, const q3_load_options *o, q3_error *e) {
    (void)m, (void)o;
    return q3_fail(e, Q3_EUNSUPPORTED, NO_CUDA);
}

q3_kv_storage q3_cuda_kv_storage(const q3_model *m) {
    (void)m;
    return (q3_kv_storage){0};
}

q3_status q3_cuda_backend_new(q3_backend **out, const q3_model *m, int max_tokens, int n_threads, q3_error *e) {
    (void)m, (void)max_tokens, (void)n_threads;
    *out = NULL;
    return q3_fail(e, Q3_EUNSUPPORTED, NO_CUDA);
}

q3_status q3_cuda_collective_new(q3_collective *out, q3_backend *be, const q3_shard *s, q3_broadcast_fn bcast, void *ctx,
                                 q3_error *e) {
    (void)out, (void)be, (void)s, (void)bcast, (void)ctx;
    return q3_fail(e, Q3_EUNSUPPORTED, NO_CUDA);
}
