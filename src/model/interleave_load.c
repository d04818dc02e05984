/* --repack: the Q4_K and Q6_K matrices of a GGUF file read at load into anonymous memory in the
 * row-interleaved layout (quant/interleave.h), whose decode kernels read one stream per four
 * rows and share each activation load between them.
 *
 * Memory: the file is most of the machine's memory on the machines this runs on (a 17 GB file
 * on 24 GB), so the interleaved copy must not sit beside the page cache's copy of the same
 * bytes. Each tensor is read with pread into its own buffer (2 MiB-aligned, transparent huge
 * pages advised) and its file range dropped from the page cache right after
 * (POSIX_FADV_DONTNEED; pages another process maps stay). The mapping's other tensors
 * (embedding, norms, router, types without a layout) are used in place as before. Peak memory
 * is the copy plus one tensor a loading thread. The cost: the file is read from disk again at
 * the next start, and each start reads all of it instead of what the first steps touch.
 *
 * Speed: a load is mostly the kernel's work, not ours: faulting in the new pages (zeroing them,
 * and in a virtual machine the host backing them) and copying from the page cache. One thread
 * did that at 0.5-1.5 GB/s; a few threads, each taking the next tensor, fault, copy and wait on
 * the disk side by side. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "model/model.h"
#include "quant/interleave.h"

#define HUGE_PAGE ((size_t)2 << 20)

/* Every matrix view a forward pass multiplies by, in model order. */
typedef struct view_list {
    q3_mat **v;
    size_t n, cap;
} view_list;

static bool push(view_list *l, q3_mat *w) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        q3_mat **v = realloc(l->v, cap * sizeof *v);
        if (!v) return false;
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = w;
    return true;
}

/* Whether w can take the layout: a type with an interleaved rows kernel on this CPU (without
 * one, decode would take every group apart again), whole rows (not a column slice), a whole
 * group, rows short enough for the tile kernels' buffer, and not the embedding, which is read
 * a row at a time by token id (a tied head shares its bytes). */
static bool eligible(const q3_model *m, const q3_mat *w, bool (*has_kernel)(q3_type)) {
    return w->data && q3_interleave_supported(w->type) && has_kernel(w->type) && w->rows >= Q3_INTERLEAVE_ROWS &&
           w->row_bytes == q3_row_bytes(w->type, w->cols) && w->row_bytes <= Q3_INTERLEAVE_MAX_ROW_BYTES &&
           w->data != m->embed.data;
}

static bool collect(q3_model *m, view_list *l, bool (*has_kernel)(q3_type)) {
    bool ok = true;
#define ADD(w) (ok = ok && (!eligible(m, (w), has_kernel) || push(l, (w))))
    for (int i = 0; i < m->cfg.n_layers; i++) {
        q3_layer *L = &m->layers[i];
        ADD(&L->wq), ADD(&L->wk), ADD(&L->wv), ADD(&L->wo);
        if (!L->is_moe) {
            ADD(&L->dense.gate), ADD(&L->dense.up), ADD(&L->dense.down);
            continue;
        }
        for (int x = 0; x < m->cfg.n_experts; x++) ADD(&L->experts[x].gate), ADD(&L->experts[x].up), ADD(&L->experts[x].down);
    }
    ADD(&m->lm_head);
#undef ADD
    return ok;
}

/* The tensor holding [p, p + n), or NULL. */
static const q3_gguf_tensor *tensor_of(const q3_gguf *g, const void *p, size_t n) {
    const unsigned char *b = p;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const unsigned char *t = g->tensors[i].data;
        if (b >= t && b + n <= t + g->tensors[i].nbytes) return &g->tensors[i];
    }
    return NULL;
}

/* Room in m->repacked for n more buffers, so that handing them over cannot fail. */
static bool reserve(q3_model *m, size_t n) {
    if ((size_t)(m->cap_repacked - m->n_repacked) >= n) return true;
    size_t cap = (size_t)m->n_repacked + n;
    void **r = cap <= INT32_MAX ? realloc(m->repacked, cap * sizeof *r) : NULL;
    if (!r) return false;
    m->repacked = r, m->cap_repacked = (int)cap;
    return true;
}

/* t's bytes from the file into a new buffer, their page-cache copy dropped. */
static q3_status read_tensor(const q3_model *m, int fd, const q3_gguf_tensor *t, unsigned char **out, q3_error *e) {
    size_t size = (t->nbytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    void *buf = NULL;
    if (posix_memalign(&buf, HUGE_PAGE, size) != 0)
        return q3_fail(e, Q3_ENOMEM, "%s: tensor %s: out of memory for its interleaved copy (%zu bytes)", m->path,
                       t->name, t->nbytes);
    *out = buf; /* the caller owns it from here, also on failure */
#ifdef MADV_HUGEPAGE
    madvise(buf, size, MADV_HUGEPAGE); /* advice: ordinary pages work too */
#endif
    off_t at = (off_t)((const unsigned char *)t->data - m->gguf.map.data);
    for (size_t done = 0; done < t->nbytes;) {
        ssize_t k = pread(fd, (unsigned char *)buf + done, t->nbytes - done, at + (off_t)done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return q3_fail(e, Q3_EIO, "%s: tensor %s: read failed: %s", m->path, t->name, k < 0 ? strerror(errno) : "end of file");
        done += (size_t)k;
    }
    (void)posix_fadvise(fd, at, (off_t)t->nbytes, POSIX_FADV_DONTNEED); /* advice: a page kept only costs memory */
    return Q3_OK;
}

/* w's rows regrouped in place (w already points into a private buffer). */
static void interleave_view(q3_mat *w, unsigned char *scratch) {
    size_t group = Q3_INTERLEAVE_ROWS * w->row_bytes;
    unsigned char *p = (unsigned char *)w->data;
    for (int64_t g = 0; g < w->rows / Q3_INTERLEAVE_ROWS; g++, p += group) {
        memcpy(scratch, p, group);
        q3_interleave_group(w->type, w->cols, scratch, w->row_bytes, p);
    }
    w->interleaved = true;
}

static int by_address(const void *a, const void *b) {
    const unsigned char *p = (*(q3_mat *const *)a)->data, *q = (*(q3_mat *const *)b)->data;
    return p < q ? -1 : p > q;
}

/* MemAvailable of /proc/meminfo (memory the kernel can hand out without swapping, the page
 * cache's clean pages included, among them this file's), or SIZE_MAX where there is none. */
static size_t available_bytes(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return SIZE_MAX;
    char line[256];
    unsigned long long kib = 0;
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) found = sscanf(line, "MemAvailable: %llu kB", &kib) == 1;
    fclose(f);
    return found ? (size_t)kib * 1024 : SIZE_MAX;
}

/* One tensor's read and the regrouping of the views in it (sorted views of one tensor are
 * adjacent, so a tensor is a run of the list). */
typedef struct tensor_job {
    const q3_gguf_tensor *t;
    q3_mat **views;
    size_t n_views;
    unsigned char *copy; /* NULL until read */
} tensor_job;

/* The sorted views cut into one job per tensor; *jobs NULL on failure (a message in e). */
static q3_status plan_jobs(const q3_model *m, view_list *l, tensor_job **jobs, size_t *n_jobs, q3_error *e) {
    *jobs = calloc(l->n, sizeof **jobs); /* at most one per view */
    *n_jobs = 0;
    if (!*jobs) return q3_fail(e, Q3_ENOMEM, "%s: out of memory", m->path);
    for (size_t i = 0; i < l->n; i++) {
        q3_mat *w = l->v[i];
        const q3_gguf_tensor *t = tensor_of(&m->gguf, w->data, (size_t)w->rows * w->row_bytes);
        if (!t) {
            free(*jobs), *jobs = NULL;
            return q3_fail(e, Q3_EFORMAT, "%s: a %s matrix lies outside every tensor", m->path, q3_type_name(w->type));
        }
        if (*n_jobs == 0 || (*jobs)[*n_jobs - 1].t != t) (*jobs)[(*n_jobs)++] = (tensor_job){.t = t, .views = &l->v[i]};
        (*jobs)[*n_jobs - 1].n_views++;
    }
    return Q3_OK;
}

/* The memory the copies take. */
static size_t copy_bytes(const tensor_job *jobs, size_t n_jobs) {
    size_t bytes = 0;
    for (size_t i = 0; i < n_jobs; i++) bytes += (jobs[i].t->nbytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    return bytes;
}

/* What the loading threads share: jobs are claimed in file order, so the reads stay close to
 * sequential; the first failure stops the others at their next claim. */
typedef struct loader {
    const q3_model *m;
    int fd;
    tensor_job *jobs;
    size_t n_jobs;
    atomic_size_t next;
    atomic_bool failed;
    q3_error err; /* written by the one thread that set failed */
} loader;

static q3_status run_job(loader *ld, tensor_job *j, unsigned char *scratch, q3_error *e) {
    q3_status st = read_tensor(ld->m, ld->fd, j->t, &j->copy, e);
    if (st) return st;
    for (size_t v = 0; v < j->n_views; v++) {
        q3_mat *w = j->views[v];
        w->data = j->copy + ((const unsigned char *)w->data - (const unsigned char *)j->t->data);
        interleave_view(w, scratch);
    }
    return Q3_OK;
}

static void *loading_thread(void *arg) {
    loader *ld = arg;
    unsigned char *scratch = malloc(Q3_INTERLEAVE_ROWS * Q3_INTERLEAVE_MAX_ROW_BYTES);
    q3_error e = {0};
    q3_status st = scratch ? Q3_OK : q3_fail(&e, Q3_ENOMEM, "%s: out of memory", ld->m->path);
    for (size_t i; !st && !atomic_load(&ld->failed) && (i = atomic_fetch_add(&ld->next, 1)) < ld->n_jobs;)
        st = run_job(ld, &ld->jobs[i], scratch, &e);
    if (st && !atomic_exchange(&ld->failed, true)) ld->err = e;
    free(scratch);
    return NULL;
}

/* Threads for the load: a few, since the work is page faults, copies and disk waits. */
#define MAX_LOADING_THREADS 4
static int loading_threads(size_t n_jobs) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cpus < 1 ? 1 : cpus > MAX_LOADING_THREADS ? MAX_LOADING_THREADS : (int)cpus;
    return (size_t)n > n_jobs ? (int)n_jobs : n;
}

/* Every job run on up to n_threads threads; each copy read is handed to m (freed with it), also
 * on failure. */
static q3_status interleave_all(q3_model *m, int fd, tensor_job *jobs, size_t n_jobs, int n_threads, size_t *bytes,
                                q3_error *e) {
    if (!reserve(m, n_jobs)) return q3_fail(e, Q3_ENOMEM, "%s: out of memory", m->path);
    loader ld = {.m = m, .fd = fd, .jobs = jobs, .n_jobs = n_jobs};
    atomic_init(&ld.next, 0);
    atomic_init(&ld.failed, false);
    pthread_t threads[MAX_LOADING_THREADS];
    int started = 0;
    while (started < n_threads && pthread_create(&threads[started], NULL, loading_thread, &ld) == 0) started++;
    if (started == 0) loading_thread(&ld); /* no thread to be had: this one does it all */
    for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
    for (size_t i = 0; i < n_jobs; i++) {
        if (!jobs[i].copy) continue;
        *bytes += jobs[i].t->nbytes;
        m->repacked[m->n_repacked++] = jobs[i].copy;
    }
    if (!ld.failed) return Q3_OK;
    *e = ld.err;
    return e->code;
}

q3_status q3_model_interleave(q3_model *m, bool (*has_kernel)(q3_type), bool verbose, q3_error *e) {
    const char *skip = m->kind != Q3_SOURCE_GGUF ? "a checkpoint directory (GGUF files only)"
                       : m->shard.size > 1       ? "the model is split over processes"
                                                 : NULL;
    if (skip) {
        if (verbose) fprintf(stderr, "repack: off: %s\n", skip);
        return Q3_OK;
    }
    view_list l = {0};
    if (!collect(m, &l, has_kernel)) {
        free(l.v);
        return q3_fail(e, Q3_ENOMEM, "%s: out of memory", m->path);
    }
    if (l.n == 0) { /* no matrix of a type with a layout */
        if (verbose) fprintf(stderr, "repack: no Q4_K or Q6_K matrices to interleave\n");
        return Q3_OK;
    }
    qsort(l.v, l.n, sizeof *l.v, by_address);
    tensor_job *jobs;
    size_t n_jobs;
    q3_status st = plan_jobs(m, &l, &jobs, &n_jobs, e);
    if (st) {
        free(l.v);
        return st;
    }
    /* The copy is anonymous memory, which without swap the kernel cannot take back: where it
     * would not fit beside what else runs, the weights stay mapped. */
    size_t need = copy_bytes(jobs, n_jobs), have = available_bytes(), margin = (size_t)1 << 30;
    if (have != SIZE_MAX && need + margin > have) {
        fprintf(stderr, "q3moe: repack: off: the interleaved copy needs %.1f GiB, %.1f GiB of memory is available; "
                        "the weights stay mapped\n", (double)need / (1u << 30), (double)have / (1u << 30));
        free(jobs), free(l.v);
        return Q3_OK;
    }
    int fd = open(m->gguf.map.path, O_RDONLY), threads = loading_threads(n_jobs);
    size_t bytes = 0;
    if (fd < 0)
        st = q3_fail(e, Q3_EIO, "%s: cannot open: %s", m->gguf.map.path, strerror(errno));
    else
        st = interleave_all(m, fd, jobs, n_jobs, threads, &bytes, e);
    if (fd >= 0) close(fd);
    if (!st && verbose)
        fprintf(stderr, "repack: %zu matrices interleaved four rows a group, %.2f GiB read into memory by %d threads\n",
                l.n, (double)bytes / (1u << 30), threads);
    free(jobs), free(l.v);
    /* The experts' new pages go where their NUMA placement put the mapped ones. */
    if (!st && l.n && m->numa.n_nodes > 1) {
        q3_numa_topology t = m->numa;
        st = q3_model_place_experts(m, &t, verbose, e);
    }
    return st;
}
