/* Running one model across several processes or machines (MPI): the process group. Rank 0 is
 * the program the user runs: it owns the tokenizer, the scheduler and the HTTP server. Every
 * other rank is a follower that holds its shard of the weights (src/model/shard.c) and its part
 * of the KV cache, and repeats rank 0's calls of the public API (api.c, replica.c), meeting in
 * the sums the forward pass takes through its collective (an allreduce after the attention
 * output projection and after the feed-forward; in a long batch the MoE layers run in slices of
 * tokens, each slice's sums travelling while the next one computes). Because the KV cache's page
 * allocator is deterministic, replaying the same calls keeps every rank's page tables identical.
 *
 *   mpirun -np 4 q3moe serve -m model.gguf --tp 2 --ep 2
 *
 * Without MPI (or not started by mpirun) there is no process group: q3_dist_world() is NULL and
 * everything runs locally at no cost. */
#ifndef Q3_DIST_H
#define Q3_DIST_H

#include "base/error.h"
#include "model/runner.h"

typedef struct q3_dist q3_dist;

/* Starts the process group when launched by mpirun (and strips --tp N / --ep N from argv);
 * otherwise does nothing. A bad --tp/--ep is Q3_EINVAL. */
q3_status q3_dist_init(int *argc, char ***argv, q3_error *e);
/* The process group, or NULL when this is a single process; cannot fail. */
q3_dist *q3_dist_world(void);
int q3_dist_rank(const q3_dist *d);
int q3_dist_size(const q3_dist *d);
int q3_dist_tp(const q3_dist *d);
int q3_dist_ep(const q3_dist *d);
/* True on ranks other than 0: they run q3_dist_follow (replica.h) instead of the command. */
bool q3_dist_is_follower(void);
/* At exit, on every rank: rank 0 tells the followers to stop; then the group shuts down.
 * Cannot fail. */
void q3_dist_finalize(void);

/* Sums buf over the group, in place, on every member (a no-op for a group of one). */
void q3_dist_allreduce(q3_dist *d, float *buf, size_t n, q3_group g);

/* The same sum without waiting for it, so the caller can compute while it travels:
 *
 *   q3_dist_pending *p = q3_dist_allreduce_start(d, buf, n, g);
 *   ... compute, not touching buf, calling q3_dist_progress(d) now and then ...
 *   q3_dist_allreduce_wait(d, p);              buf now holds the sum
 *
 * Every member must start the same sums in the same order. The handle is opaque so that the
 * backend can change under it: an MPI request today (MPI_Iallreduce); for GPU ranks an NCCL
 * allreduce queued on a communication stream, whose wait is an event and whose progress is a
 * no-op, would fit behind the same three calls.
 * Returns NULL when there is nothing to wait for (no process group, a group of one, n == 0) and
 * also when too many sums are already in flight, after summing at once; so it cannot fail. */
typedef struct q3_dist_pending q3_dist_pending;
q3_dist_pending *q3_dist_allreduce_start(q3_dist *d, float *buf, size_t n, q3_group g);
/* Lets the sums in flight advance. OpenMPI moves a non-blocking collective only inside MPI
 * calls, so a long computation should call this every so often, from the thread that started
 * them (never from pool workers). Cheap when nothing is in flight; cannot fail. */
void q3_dist_progress(q3_dist *d);
/* Returns once p's sum is complete (NULL: at once); p is free again. Cannot fail: MPI errors
 * abort the job, as they do in the blocking sum. */
void q3_dist_allreduce_wait(q3_dist *d, q3_dist_pending *p);

typedef struct q3_dist_stats {
    uint64_t allreduces, bytes;  /* collective calls and bytes reduced by this rank */
    uint64_t overlapped;         /* how many of those were started without waiting */
    double seconds;              /* time spent in them: blocked in a sum, or starting, advancing
                                    and waiting for one that travelled while computing */
} q3_dist_stats;
/* This rank's communication counters; cannot fail (zeros for NULL). */
q3_dist_stats q3_dist_stats_get(const q3_dist *d);

/* What one rank reports about itself. */
typedef struct q3_dist_rank_stats {
    q3_dist_stats comm;
    uint64_t rss_bytes, rss_peak_bytes; /* resident memory now, and its peak (VmHWM) */
} q3_dist_rank_stats;

/* Rank 0: every rank's counters, rank i in out[i] (out holds q3_dist_size entries). With no
 * process group, this process alone in out[0]. Cannot fail. */
void q3_dist_collect(q3_dist *d, q3_dist_rank_stats *out);

/* ---- messages from rank 0 to its followers (what they mean: api.c) ---- */

typedef enum q3_dist_op {
    Q3_MSG_STOP, Q3_MSG_STATS, Q3_MSG_LOAD, Q3_MSG_FREE_MODEL, Q3_MSG_KV_NEW, Q3_MSG_KV_FREE, Q3_MSG_KV_TRUNCATE,
    Q3_MSG_KV_SHARE, Q3_MSG_RUNNER_NEW, Q3_MSG_RUNNER_FREE, Q3_MSG_FORWARD,
} q3_dist_op;

typedef struct q3_dist_msg {
    int32_t op, id, a, b, c, d; /* the operation, the object's handle, small arguments */
    int64_t payload;            /* bytes that follow */
    q3_kv_options kv;
} q3_dist_msg;

/* Object handles: each model, KV cache and runner rank 0 makes gets the next id, and every
 * follower makes its copy under the same id. Cannot fail. */
int q3_dist_next_id(q3_dist *d);
/* Rank 0: broadcasts m and its m->payload bytes to every follower (nothing on other ranks or
 * with no group). Cannot fail: MPI errors abort the job. */
void q3_dist_send(q3_dist *d, const q3_dist_msg *m, const void *payload);
/* Followers: waits for rank 0's next message; returns its payload (malloc'd) or NULL. */
void *q3_dist_receive(q3_dist *d, q3_dist_msg *m);
/* Followers, on Q3_MSG_STATS: sends this rank's counters for q3_dist_collect. */
void q3_dist_answer_stats(q3_dist *d);
/* Ends every process of the job: for states the followers cannot be told about (out of memory
 * while sending them a batch). Does not return. */
void q3_dist_abort(q3_dist *d);

/* Rank 0's bytes at buf to every rank's buf (MPI_Bcast over the world); nothing with no group.
 * Every rank must call it alike. Cannot fail: MPI errors abort the job. */
void q3_dist_broadcast(q3_dist *d, void *buf, size_t bytes);

/* The sums of the group as the forward pass takes them (model/runner.h); d NULL: one process. */
q3_collective q3_dist_collective(q3_dist *d);

/* Every rank, after loading: agree on the outcome. Returns the first failing rank's status with
 * its message (prefixed by the rank) on every rank, or Q3_OK. */
q3_status q3_dist_agree(q3_dist *d, q3_status local, q3_error *e);

#endif
