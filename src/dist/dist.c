/* The process group (OpenMPI): sums, counters, and the messages rank 0 sends its followers.
 * Each message is a fixed header broadcast from rank 0, then its payload if it has one.
 * Followers wait for the next header with a non-blocking broadcast and back off into short
 * sleeps, so an idle server's followers do not spin on a core. What the messages mean is api.c's. */
#include "base/clock.h"
#include "dist/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Resident memory of this process from /proc (Linux); zeros elsewhere. */
static void own_memory(uint64_t *rss, uint64_t *peak) {
    *rss = *peak = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256];
    unsigned long long kb;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1) *rss = kb * 1024;
        if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) *peak = kb * 1024;
    }
    fclose(f);
}

#ifdef Q3_HAVE_MPI
#include <mpi.h>

/* Sums in flight at once: the forward pass has at most two per slice of a batch in flight. */
#define MAX_PENDING 8

struct q3_dist_pending {
    MPI_Request req;
    bool busy;
};

struct q3_dist {
    int rank, size, tp, ep;
    MPI_Comm world, tp_group;
    int next_id;
    q3_dist_stats stats;
    q3_dist_pending pending[MAX_PENDING];
};

static q3_dist *world;

/* --tp N / --ep N, wherever they are, removed from argv. */
static q3_status take_split(int *argc, char **argv, int *tp, int *ep, q3_error *e) {
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        int *dst = !strcmp(argv[i], "--tp") ? tp : !strcmp(argv[i], "--ep") ? ep : NULL;
        if (!dst) {
            argv[out++] = argv[i];
            continue;
        }
        char *end;
        long v = i + 1 < *argc ? strtol(argv[i + 1], &end, 10) : 0;
        if (i + 1 >= *argc || *end || v < 1 || v > 4096)
            return q3_fail(e, Q3_EINVAL, "%s needs a positive integer", argv[i]);
        *dst = (int)v;
        i++;
    }
    *argc = out;
    argv[out] = NULL;
    return Q3_OK;
}

q3_status q3_dist_init(int *argc, char ***argv, q3_error *e) {
    int tp = 0, ep = 0;
    q3_status st = take_split(argc, *argv, &tp, &ep, e);
    if (st) return st;
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE")) {
        if (tp > 1 || ep > 1) return q3_fail(e, Q3_EINVAL, "--tp/--ep need several processes: start q3moe with mpirun -np N");
        return Q3_OK;
    }
    int provided;
    MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    q3_dist *d = calloc(1, sizeof *d);
    if (!d) return q3_fail(e, Q3_ENOMEM, "out of memory");
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    if (!tp && !ep) tp = d->size, ep = 1;
    else if (!tp) tp = d->size / ep;
    else if (!ep) ep = d->size / tp;
    if (tp * ep != d->size) {
        st = q3_fail(e, Q3_EINVAL, "--tp %d x --ep %d must equal the %d processes mpirun started", tp, ep, d->size);
        free(d);
        MPI_Finalize();
        return st;
    }
    d->tp = tp;
    d->ep = ep;
    d->world = MPI_COMM_WORLD;
    MPI_Comm_split(MPI_COMM_WORLD, d->rank / tp, d->rank % tp, &d->tp_group);
    d->next_id = 1;
    if (d->size == 1) { /* mpirun -np 1: nothing to coordinate */
        MPI_Comm_free(&d->tp_group);
        MPI_Finalize();
        free(d);
        return Q3_OK;
    }
    world = d;
    return Q3_OK;
}

q3_dist *q3_dist_world(void) { return world; }
int q3_dist_rank(const q3_dist *d) { return d ? d->rank : 0; }
int q3_dist_size(const q3_dist *d) { return d ? d->size : 1; }
int q3_dist_tp(const q3_dist *d) { return d ? d->tp : 1; }
int q3_dist_ep(const q3_dist *d) { return d ? d->ep : 1; }
bool q3_dist_is_follower(void) { return world && world->rank != 0; }

static MPI_Comm comm_of(const q3_dist *d, q3_group g) { return g == Q3_GROUP_TP ? d->tp_group : d->world; }

/* Whether summing n floats over g involves any other rank. */
static bool sum_needs_others(const q3_dist *d, size_t n, q3_group g) {
    return d && n > 0 && (g == Q3_GROUP_TP ? d->tp : d->size) > 1;
}

static void count_sum(q3_dist *d, size_t n, double started) {
    d->stats.seconds += q3_now_s() - started;
    d->stats.allreduces++;
    d->stats.bytes += n * sizeof(float);
}

void q3_dist_allreduce(q3_dist *d, float *buf, size_t n, q3_group g) {
    if (!sum_needs_others(d, n, g)) return;
    double t = q3_now_s();
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, comm_of(d, g));
    count_sum(d, n, t);
}

q3_dist_pending *q3_dist_allreduce_start(q3_dist *d, float *buf, size_t n, q3_group g) {
    if (!sum_needs_others(d, n, g)) return NULL;
    q3_dist_pending *p = NULL;
    for (int i = 0; i < MAX_PENDING && !p; i++)
        if (!d->pending[i].busy) p = &d->pending[i];
    if (!p) { /* every rank makes the same calls, so every rank falls back here alike */
        q3_dist_allreduce(d, buf, n, g);
        return NULL;
    }
    double t = q3_now_s();
    MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, comm_of(d, g), &p->req);
    p->busy = true;
    d->stats.overlapped++;
    count_sum(d, n, t);
    return p;
}

/* OpenMPI (4.1 in Debian 12) advances a non-blocking collective only inside MPI calls: its
 * schedule (coll/libnbc) steps in opal_progress, which runs on the thread calling MPI, and the
 * OPAL asynchronous progress thread has never been enabled (open-mpi/ompi#13074). A thread of our
 * own polling MPI would need MPI_THREAD_MULTIPLE and would spin on a core the experts need. So
 * the computing thread itself tests the requests between pieces of its work: each MPI_Test on an
 * active request is one turn of the progress engine. */
void q3_dist_progress(q3_dist *d) {
    if (!d) return;
    double t = 0; /* the clock is read only when a sum is in flight: this runs once per expert task */
    for (int i = 0; i < MAX_PENDING; i++) {
        int done;
        if (!d->pending[i].busy || d->pending[i].req == MPI_REQUEST_NULL) continue;
        if (t == 0) t = q3_now_s();
        MPI_Test(&d->pending[i].req, &done, MPI_STATUS_IGNORE);
    }
    if (t != 0) d->stats.seconds += q3_now_s() - t;
}

void q3_dist_allreduce_wait(q3_dist *d, q3_dist_pending *p) {
    if (!d || !p) return;
    double t = q3_now_s();
    MPI_Wait(&p->req, MPI_STATUS_IGNORE); /* at once if an MPI_Test already completed it */
    d->stats.seconds += q3_now_s() - t;
    p->busy = false;
}

q3_dist_stats q3_dist_stats_get(const q3_dist *d) { return d ? d->stats : (q3_dist_stats){0}; }

int q3_dist_next_id(q3_dist *d) { return d->next_id++; }

/* ---- messages ---- */

void q3_dist_send(q3_dist *d, const q3_dist_msg *m, const void *payload) {
    if (!d || d->rank != 0) return;
    /* Non-blocking like the followers' side: MPI matches a broadcast only with its own kind. */
    q3_dist_msg h = *m;
    MPI_Request req;
    MPI_Ibcast(&h, sizeof h, MPI_BYTE, 0, d->world, &req);
    MPI_Wait(&req, MPI_STATUS_IGNORE);
    if (h.payload) MPI_Bcast((void *)payload, (int)h.payload, MPI_BYTE, 0, d->world);
}

static q3_dist_rank_stats own_stats(const q3_dist *d) {
    q3_dist_rank_stats s = {.comm = q3_dist_stats_get(d)};
    own_memory(&s.rss_bytes, &s.rss_peak_bytes);
    return s;
}

void q3_dist_collect(q3_dist *d, q3_dist_rank_stats *out) {
    if (!d) {
        out[0] = own_stats(NULL);
        return;
    }
    q3_dist_send(d, &(q3_dist_msg){.op = Q3_MSG_STATS}, NULL);
    q3_dist_rank_stats mine = own_stats(d);
    MPI_Gather(&mine, sizeof mine, MPI_BYTE, out, sizeof mine, MPI_BYTE, 0, d->world);
}

q3_status q3_dist_agree(q3_dist *d, q3_status local, q3_error *e) {
    if (!d) return local;
    int mine = local ? d->rank : d->size, first;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, d->world);
    if (first == d->size) return Q3_OK;
    struct { int code; char msg[sizeof e->msg]; } err = {0};
    if (d->rank == first && e) {
        err.code = e->code ? e->code : local;
        memcpy(err.msg, e->msg, sizeof err.msg);
    }
    MPI_Bcast(&err, sizeof err, MPI_BYTE, first, d->world);
    if (e && d->rank != first) {
        e->code = err.code;
        snprintf(e->msg, sizeof e->msg, "rank %d: %s", first, err.msg);
    } else if (e && first != 0) {
        q3_wrap(e, "rank %d", first);
    }
    return err.code ? (q3_status)err.code : Q3_EIO;
}

void q3_dist_finalize(void) {
    q3_dist *d = world;
    if (!d) return;
    q3_dist_send(d, &(q3_dist_msg){.op = Q3_MSG_STOP}, NULL);
    MPI_Comm_free(&d->tp_group);
    MPI_Finalize();
    free(d);
    world = NULL;
}

/* ---- followers ---- */

/* The next header: polls a non-blocking broadcast, sleeping a little longer each idle round. */
static void receive_header(q3_dist_msg *h) {
    MPI_Request req;
    MPI_Ibcast(h, sizeof *h, MPI_BYTE, 0, MPI_COMM_WORLD, &req);
    int done = 0;
    for (long spins = 0; !done; spins++) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (!done && spins > 1000) nanosleep(&(struct timespec){0, spins > 100000 ? 1000000 : 50000}, NULL);
    }
}

void *q3_dist_receive(q3_dist *d, q3_dist_msg *m) {
    (void)d;
    receive_header(m);
    if (!m->payload) return NULL;
    void *p = malloc((size_t)m->payload);
    if (!p) MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Bcast(p, (int)m->payload, MPI_BYTE, 0, MPI_COMM_WORLD);
    return p;
}

void q3_dist_answer_stats(q3_dist *d) {
    q3_dist_rank_stats mine = own_stats(d);
    MPI_Gather(&mine, sizeof mine, MPI_BYTE, NULL, 0, MPI_BYTE, 0, MPI_COMM_WORLD);
}

void q3_dist_abort(q3_dist *d) { MPI_Abort(d ? d->world : MPI_COMM_WORLD, 1); }

void q3_dist_broadcast(q3_dist *d, void *buf, size_t bytes) {
    if (d) MPI_Bcast(buf, (int)bytes, MPI_BYTE, 0, d->world);
}

#else /* built without MPI: one process, always */

q3_status q3_dist_init(int *argc, char ***argv, q3_error *e) {
    for (int i = 1; i < *argc; i++)
        if (!strcmp((*argv)[i], "--tp") || !strcmp((*argv)[i], "--ep"))
            return q3_fail(e, Q3_EUNSUPPORTED, "%s: this q3moe was built without MPI (install libopenmpi-dev and rebuild)",
                           (*argv)[i]);
    return Q3_OK;
}
q3_dist *q3_dist_world(void) { return NULL; }
int q3_dist_rank(const q3_dist *d) { (void)d; return 0; }
int q3_dist_size(const q3_dist *d) { (void)d; return 1; }
int q3_dist_tp(const q3_dist *d) { (void)d; return 1; }
int q3_dist_ep(const q3_dist *d) { (void)d; return 1; }
bool q3_dist_is_follower(void) { return false; }
void q3_dist_finalize(void) {}
void q3_dist_allreduce(q3_dist *d, float *buf, size_t n, q3_group g) { (void)d, (void)buf, (void)n, (void)g; }
q3_dist_pending *q3_dist_allreduce_start(q3_dist *d, float *buf, size_t n, q3_group g) {
    (void)d, (void)buf, (void)n, (void)g;
    return NULL;
}
void q3_dist_progress(q3_dist *d) { (void)d; }
void q3_dist_allreduce_wait(q3_dist *d, q3_dist_pending *p) { (void)d, (void)p; }
q3_dist_stats q3_dist_stats_get(const q3_dist *d) { (void)d; return (q3_dist_stats){0}; }
void q3_dist_collect(q3_dist *d, q3_dist_rank_stats *out) {
    (void)d;
    out[0] = (q3_dist_rank_stats){0};
    own_memory(&out[0].rss_bytes, &out[0].rss_peak_bytes);
}
int q3_dist_next_id(q3_dist *d) { (void)d; return 0; }
q3_status q3_dist_agree(q3_dist *d, q3_status local, q3_error *e) { (void)d, (void)e; return local; }
void q3_dist_send(q3_dist *d, const q3_dist_msg *m, const void *payload) { (void)d, (void)m, (void)payload; }
void *q3_dist_receive(q3_dist *d, q3_dist_msg *m) {
    (void)d;
    *m = (q3_dist_msg){.op = Q3_MSG_STOP};
    return NULL;
}
void q3_dist_answer_stats(q3_dist *d) { (void)d; }
void q3_dist_abort(q3_dist *d) { (void)d; exit(EXIT_FAILURE); }
void q3_dist_broadcast(q3_dist *d, void *buf, size_t bytes) { (void)d, (void)buf, (void)bytes; }

#endif

/* ---- the forward pass's view of the group ---- */

static void sum_all(void *ctx, float *buf, size_t n, q3_group g) { q3_dist_allreduce(ctx, buf, n, g); }
static void *sum_start(void *ctx, float *buf, size_t n, q3_group g) { return q3_dist_allreduce_start(ctx, buf, n, g); }
static void sum_wait(void *ctx, void *pending) { q3_dist_allreduce_wait(ctx, pending); }
static void sums_progress(void *ctx) { q3_dist_progress(ctx); }

q3_collective q3_dist_collective(q3_dist *d) {
    return (q3_collective){q3_dist_size(d), d, sum_all, sum_start, sum_wait, sums_progress};
}
