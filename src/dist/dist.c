/* The process group (OpenMPI) and the follower protocol. Each message is a fixed header
 * broadcast from rank 0, then its payload if it has one. Followers wait for the next header with
 * a non-blocking broadcast and back off into short sleeps, so an idle server's followers do not
 * spin on a core. */
#include "base/clock.h"
#include "dist/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kv/kv_cache.h"
#include "model/model.h"
#include "model/runner.h"

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

enum op { OP_STOP, OP_STATS, OP_LOAD, OP_FREE_MODEL, OP_KV_NEW, OP_KV_FREE, OP_KV_TRUNCATE, OP_KV_SHARE, OP_RUNNER_NEW,
          OP_RUNNER_FREE, OP_FORWARD };

typedef struct header {
    int32_t op, id, a, b, c, d;
    int64_t payload;  /* bytes that follow */
    q3_kv_options kv;
} header;

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

/* ---- rank 0: sending ---- */

static void send(q3_dist *d, header h, const void *payload) {
    if (!d || d->rank != 0) return;
    /* Non-blocking like the followers' side: MPI matches a broadcast only with its own kind. */
    MPI_Request req;
    MPI_Ibcast(&h, sizeof h, MPI_BYTE, 0, d->world, &req);
    MPI_Wait(&req, MPI_STATUS_IGNORE);
    if (h.payload) MPI_Bcast((void *)payload, (int)h.payload, MPI_BYTE, 0, d->world);
}

void q3_dist_load(q3_dist *d, int id, const char *path) {
    send(d, (header){.op = OP_LOAD, .id = id, .payload = (int64_t)strlen(path) + 1}, path);
}
void q3_dist_free_model(q3_dist *d, int id) { send(d, (header){.op = OP_FREE_MODEL, .id = id}, NULL); }
void q3_dist_kv_new(q3_dist *d, int id, int model_id, const q3_kv_options *o) {
    send(d, (header){.op = OP_KV_NEW, .id = id, .a = model_id, .kv = *o}, NULL);
}
void q3_dist_kv_free(q3_dist *d, int id) { send(d, (header){.op = OP_KV_FREE, .id = id}, NULL); }
void q3_dist_kv_truncate(q3_dist *d, int id, int seq, int pos) {
    send(d, (header){.op = OP_KV_TRUNCATE, .id = id, .a = seq, .b = pos}, NULL);
}
void q3_dist_kv_share(q3_dist *d, int id, int dst, int src, int n) {
    send(d, (header){.op = OP_KV_SHARE, .id = id, .a = dst, .b = src, .c = n}, NULL);
}
void q3_dist_runner_new(q3_dist *d, int id, int model_id, int max_tokens, int threads) {
    send(d, (header){.op = OP_RUNNER_NEW, .id = id, .a = model_id, .b = max_tokens, .c = threads}, NULL);
}
void q3_dist_runner_free(q3_dist *d, int id) { send(d, (header){.op = OP_RUNNER_FREE, .id = id}, NULL); }

/* A batch travels as tokens, positions, sequences and the logits flags, back to back. */
void q3_dist_forward(q3_dist *d, int runner_id, int kv_id, const q3_batch *b) {
    if (!d || d->rank != 0) return;
    size_t n = (size_t)b->n_tokens, bytes = n * (3 * sizeof(int32_t) + 1);
    unsigned char *p = malloc(bytes);
    if (!p) MPI_Abort(d->world, 1); /* followers would wait forever otherwise */
    memcpy(p, b->tokens, n * 4);
    memcpy(p + n * 4, b->pos, n * 4);
    memcpy(p + n * 8, b->seq, n * 4);
    for (size_t i = 0; i < n; i++) p[n * 12 + i] = b->want_logits ? b->want_logits[i] : 1;
    send(d, (header){.op = OP_FORWARD, .id = runner_id, .a = kv_id, .b = b->n_tokens, .payload = (int64_t)bytes}, p);
    free(p);
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
    send(d, (header){.op = OP_STATS}, NULL);
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
    send(d, (header){.op = OP_STOP}, NULL);
    MPI_Comm_free(&d->tp_group);
    MPI_Finalize();
    free(d);
    world = NULL;
}

/* ---- followers ---- */

typedef struct objects {
    void **p;
    int cap;
} objects;

static void *get(objects *o, int id) { return id >= 0 && id < o->cap ? o->p[id] : NULL; }

static void put(objects *o, int id, void *v) {
    if (id >= o->cap) {
        int cap = id * 2 + 8;
        void **p = realloc(o->p, (size_t)cap * sizeof *p);
        if (!p) MPI_Abort(MPI_COMM_WORLD, 1);
        memset(p + o->cap, 0, (size_t)(cap - o->cap) * sizeof *p);
        o->p = p;
        o->cap = cap;
    }
    o->p[id] = v;
}

/* The next header: polls a non-blocking broadcast, sleeping a little longer each idle round. */
static void receive_header(header *h) {
    MPI_Request req;
    MPI_Ibcast(h, sizeof *h, MPI_BYTE, 0, MPI_COMM_WORLD, &req);
    int done = 0;
    for (long spins = 0; !done; spins++) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (!done && spins > 1000) nanosleep(&(struct timespec){0, spins > 100000 ? 1000000 : 50000}, NULL);
    }
}

static void *payload(const header *h) {
    if (!h->payload) return NULL;
    void *p = malloc((size_t)h->payload);
    if (!p) MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Bcast(p, (int)h->payload, MPI_BYTE, 0, MPI_COMM_WORLD);
    return p;
}

static void follow_forward(objects *runners, objects *caches, const header *h, unsigned char *p) {
    size_t n = (size_t)h->b;
    q3_batch b = {h->b, (int32_t *)p, (int32_t *)(p + n * 4), (int32_t *)(p + n * 8), (bool *)(p + n * 12)};
    q3_error e = {0};
    /* Errors here are rank 0's errors too (same state, same checks): it reports them. */
    q3_forward(get(runners, h->id), get(caches, h->a), &b, NULL, &e);
}

int q3_dist_follow(void) {
    objects models = {0}, caches = {0}, runners = {0};
    for (;;) {
        header h;
        receive_header(&h);
        unsigned char *p = payload(&h);
        q3_error e = {0};
        switch (h.op) {
        case OP_STOP: free(p); return 0;
        case OP_STATS: {
            q3_dist_rank_stats mine = own_stats(world);
            MPI_Gather(&mine, sizeof mine, MPI_BYTE, NULL, 0, MPI_BYTE, 0, MPI_COMM_WORLD);
            break;
        }
        case OP_LOAD: {
            q3_model *m = NULL;
            if (q3_model_load(&m, (const char *)p, NULL, &e) == Q3_OK) put(&models, h.id, m);
            break;
        }
        case OP_FREE_MODEL: q3_model_free(get(&models, h.id)); put(&models, h.id, NULL); break;
        case OP_KV_NEW: {
            q3_kv_cache *kv = NULL;
            if (q3_kv_cache_new(&kv, get(&models, h.a), &h.kv, &e) == Q3_OK) kv->dist_id = h.id;
            put(&caches, h.id, kv);
            break;
        }
        case OP_KV_FREE: q3_kv_cache_free(get(&caches, h.id)); put(&caches, h.id, NULL); break;
        case OP_KV_TRUNCATE: q3_kv_cache_truncate(get(&caches, h.id), h.a, h.b); break;
        case OP_KV_SHARE: q3_kv_share_prefix(get(&caches, h.id), h.a, h.b, h.c, NULL); break;
        case OP_RUNNER_NEW: {
            q3_runner *r = NULL;
            if (q3_runner_new(&r, get(&models, h.a), h.b, h.c, &e) == Q3_OK) q3_runner_set_dist_id(r, h.id);
            put(&runners, h.id, r);
            break;
        }
        case OP_RUNNER_FREE: q3_runner_free(get(&runners, h.id)); put(&runners, h.id, NULL); break;
        case OP_FORWARD: follow_forward(&runners, &caches, &h, p); break;
        }
        free(p);
    }
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
int q3_dist_follow(void) { return 0; }
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
void q3_dist_load(q3_dist *d, int id, const char *path) { (void)d, (void)id, (void)path; }
q3_status q3_dist_agree(q3_dist *d, q3_status local, q3_error *e) { (void)d, (void)e; return local; }
void q3_dist_free_model(q3_dist *d, int id) { (void)d, (void)id; }
void q3_dist_kv_new(q3_dist *d, int id, int model_id, const q3_kv_options *o) { (void)d, (void)id, (void)model_id, (void)o; }
void q3_dist_kv_free(q3_dist *d, int id) { (void)d, (void)id; }
void q3_dist_kv_truncate(q3_dist *d, int id, int seq, int pos) { (void)d, (void)id, (void)seq, (void)pos; }
void q3_dist_kv_share(q3_dist *d, int id, int dst, int src, int n) { (void)d, (void)id, (void)dst, (void)src, (void)n; }
void q3_dist_runner_new(q3_dist *d, int id, int model_id, int max_tokens, int threads) {
    (void)d, (void)id, (void)model_id, (void)max_tokens, (void)threads;
}
void q3_dist_runner_free(q3_dist *d, int id) { (void)d, (void)id; }
void q3_dist_forward(q3_dist *d, int runner_id, int kv_id, const q3_batch *b) { (void)d, (void)runner_id, (void)kv_id, (void)b; }

#endif
