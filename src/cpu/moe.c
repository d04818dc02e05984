/* The feed-forward operations on the CPU. route: float32 softmax over all experts, top-k,
 * optional renormalisation. experts: group the (token, expert) assignments by expert, run each
 * active expert once over all its tokens with gate, up and SiLU fused, then the down projection,
 * and sum each token's k outputs weighted, in a fixed order. Threads take (expert, block of
 * rows) tasks from one queue, so busy and idle experts balance out. The experts of an MoE layer
 * are one pool job: gate/up tasks first, then down tasks, each expert's down waiting only for
 * its own gate/up (the last of those converts its hidden rows), so a layer's experts cost one
 * pool round, not two with a serial conversion between. A dense feed-forward is the same
 * machinery with one expert that every token takes, in rounds (its conversion then runs on
 * every thread). */
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include "cpu/cpu_backend.h"
#include "cpu/kernel_table.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "quant/types.h"

/* Rows per (expert, rows) task: the largest that still gives each thread about eight tasks, down
 * to MIN_ROWS_PER_TASK when many threads share a few active experts. Long tasks are long
 * contiguous weight streams, which decode needs to run at memory speed (128 -> 512 rows decoded
 * Qwen3-30B-A3B 8-10% faster on 2 threads, bench/RESULTS.md), and in prefill they keep the
 * expert's activations hot across the tile kernel's row blocks. */
#define MIN_ROWS_PER_TASK 32
#define MAX_ROWS_PER_TASK 512

/* softmax, then the k largest probabilities (ties to the lower expert id, as a stable sort). */
static void route_token(const float *logits, int n_experts, int k, bool renorm, int32_t *top, float *w) {
    float max = logits[0], sum = 0, p[4096];
    for (int x = 1; x < n_experts; x++) if (logits[x] > max) max = logits[x];
    /* below -104, expf is 0 (under the smallest subnormal): skip libm's slow underflow path */
    for (int x = 0; x < n_experts; x++) sum += (p[x] = logits[x] - max < -104.0f ? 0.0f : expf(logits[x] - max));
    for (int x = 0; x < n_experts; x++) p[x] /= sum;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int x = 0; x < n_experts; x++) {
            bool taken = false;
            for (int t = 0; t < j; t++) taken |= top[t] == x;
            if (!taken && (best < 0 || p[x] > p[best])) best = x;
        }
        top[j] = best;
        w[j] = p[best];
    }
    if (!renorm) return;
    float s = 0;
    for (int j = 0; j < k; j++) s += w[j];
    for (int j = 0; j < k; j++) w[j] /= s;
}

/* Whether this process computes expert x of a choice: not when another process owns it, nor
 * when the choice is -1 (a GPU computes it beside this CPU, src/cuda/hybrid.cu). */
static bool computes_here(const q3_shard *sh, int x) { return x >= 0 && q3_shard_owns_expert(sh, x); }

/* Counting sort of assignments by expert (top: the n tokens' choices); returns the number of
 * active experts. Assignments computed elsewhere get slot -1: whoever computes them adds their
 * outputs. */
static int group_by_expert(q3_cpu *r, const int32_t *top, int n, int n_experts, int k) {
    const q3_shard *sh = &r->base.m->shard;
    int *start = r->expert_start;
    memset(start, 0, (size_t)(n_experts + 1) * sizeof *start);
    for (int a = 0; a < n * k; a++)
        if (computes_here(sh, top[a])) start[top[a] + 1]++;
    int n_active = 0;
    for (int x = 0; x < n_experts; x++) {
        if (start[x + 1]) r->active[n_active++] = x;
        start[x + 1] += start[x];
    }
    int fill[4096];
    memcpy(fill, start, (size_t)n_experts * sizeof *fill);
    for (int a = 0; a < n * k; a++) {
        if (!computes_here(sh, top[a])) {
            r->slot_of[a] = -1;
            continue;
        }
        int slot = fill[top[a]]++;
        r->assign_token[slot] = a / k;
        r->slot_of[a] = slot;
    }
    return n_active;
}

/* The active experts by NUMA node (src/model/placement.c): r->active[first[g] .. first[g + 1])
 * have their weights on node node[g]. One group of no node when the experts are not placed. */
typedef struct node_groups {
    int n;
    int first[Q3_NUMA_MAX_NODES + 1];
    int node[Q3_NUMA_MAX_NODES];
} node_groups;

/* Orders r->active by the node holding each expert's weights, when the model placed them. */
static void group_by_node(q3_cpu *r, int n_active, node_groups *g) {
    const q3_model *m = r->base.m;
    if (m->numa.n_nodes < 2) {
        *g = (node_groups){1, {0, n_active}, {-1}};
        return;
    }
    g->n = m->numa.n_nodes;
    q3_numa_order_experts(r->active, n_active, m->shard.ep, g->n, g->first);
    for (int k = 0; k < g->n; k++) g->node[k] = m->numa.node_id[k];
}

/* One expert's progress in a fused job (run_experts_fused), alone on its cache line. */
typedef struct expert_sync {
    atomic_int pending; /* its gate/up tasks not yet finished */
    atomic_int ready;   /* its hidden rows are converted: its down tasks may run */
    char pad[64 - 2 * sizeof(atomic_int)];
} expert_sync;

size_t q3_cpu_expert_sync_bytes(void) { return sizeof(expert_sync); }

/* How a matrix's rows are cut into tasks: `per` rows a task, `tasks` tasks per expert. */
typedef struct row_split {
    int64_t per, tasks;
} row_split;

typedef struct ffn_job {
    q3_cpu *r;
    const q3_ffn *experts; /* indexed by expert id */
    const node_groups *groups;
    const void *act, *h_act; /* the tokens' inputs and the gated hidden rows, ready for the kernels */
    int n_experts_active;
    row_split gate_up, down;
    int ffn_dim, hidden;
} ffn_job;

/* Splits `rows` of each active expert into tasks: the largest size that still gives every
 * thread about eight tasks. */
static row_split split_rows(const ffn_job *j, int64_t rows) {
    int64_t per = MAX_ROWS_PER_TASK, want = 8 * (int64_t)q3_pool_size(j->r->pool);
    while (per > MIN_ROWS_PER_TASK && j->n_experts_active * ((rows + per - 1) / per) < want) per /= 2;
    return (row_split){per, (rows + per - 1) / per};
}

/* Task `local` of a node group's n_experts experts, cut by sp, over a matrix of `rows` rows: its
 * expert's index in the group, and its rows [r0, r1). Tasks go by row block first, expert second:
 * every expert's full blocks come before the short last blocks, so a phase ends on small tasks
 * and no thread waits long for the last one. */
static int task_rows(row_split sp, int local, int n_experts, int64_t rows, int64_t *r0, int64_t *r1) {
    *r0 = (int64_t)(local / n_experts) * sp.per;
    *r1 = *r0 + sp.per < rows ? *r0 + sp.per : rows;
    return local % n_experts;
}

/* The node group of a task when each expert has per_expert tasks: its index, with *local the
 * task's number inside the group. */
static int group_of_task(const node_groups *g, int64_t per_expert, int task, int *local) {
    int k = 0;
    while (task >= g->first[k + 1] * per_expert) k++;
    *local = task - (int)(g->first[k] * per_expert);
    return k;
}

/* Pointers to the converted activation rows of slots [s0, s0 + n) of the grouping: rows of
 * `act` by token (token_of: the slot's token) or by slot (token_of NULL). */
static void slot_rows(const void *act, size_t ab, const int32_t *token_of, int s0, int n, const void **x) {
    for (int i = 0; i < n; i++) x[i] = (const char *)act + (size_t)(token_of ? token_of[s0 + i] : s0 + i) * ab;
}

/* While an earlier slice's sum travels (model/forward.c), the calling thread, pool thread 0 and
 * the only one allowed to call MPI, turns the progress engine once per task it takes. */
static void let_sums_travel(const ffn_job *j, int thread) {
    const q3_backend *be = &j->r->base;
    if (thread == 0 && be->progress) be->progress(be->progress_ctx);
}

/* h[slot][row] = silu(gate[row] . x) * (up[row] . x) for rows [r0, r1) of expert x's tokens, in
 * tiles of up to Q3_GEMM_COLS tokens x Q3_GEMM_ROWS rows: up straight into h, gate beside it. */
static void gate_up_rows(const ffn_job *j, int x, int64_t r0, int64_t r1) {
    q3_cpu *r = j->r;
    const q3_ffn *f = &j->experts[x];
    size_t ab = q3_act_row_bytes(f->gate.type, f->gate.cols), F = (size_t)j->ffn_dim;
    const void *xs[Q3_GEMM_COLS];
    float g[Q3_GEMM_COLS * Q3_GEMM_ROWS];
    for (int s0 = r->expert_start[x]; s0 < r->expert_start[x + 1]; s0 += Q3_GEMM_COLS) {
        int n = r->expert_start[x + 1] - s0 < Q3_GEMM_COLS ? r->expert_start[x + 1] - s0 : Q3_GEMM_COLS;
        slot_rows(j->act, ab, r->assign_token, s0, n, xs);
        for (int64_t row = r0; row < r1; row += Q3_GEMM_ROWS) {
            int64_t end = row + Q3_GEMM_ROWS < r1 ? row + Q3_GEMM_ROWS : r1;
            float *h = r->h + (size_t)s0 * F + row;
            q3_matmul_tile(&f->up, row, end, xs, n, h, F);
            q3_matmul_tile(&f->gate, row, end, xs, n, g, Q3_GEMM_ROWS);
            for (int t = 0; t < n; t++)
                for (int64_t i = 0; i < end - row; i++) h[t * F + i] = q3_silu(g[t * Q3_GEMM_ROWS + i]) * h[t * F + i];
        }
    }
}

/* y[slot][r0 .. r1) = down rows [r0, r1) . h_act[slot] for expert x's tokens. */
static void down_rows(const ffn_job *j, int x, int64_t r0, int64_t r1) {
    q3_cpu *r = j->r;
    const q3_mat *d = &j->experts[x].down;
    size_t ab = q3_act_row_bytes(d->type, d->cols);
    const void *xs[Q3_GEMM_COLS];
    for (int s0 = r->expert_start[x]; s0 < r->expert_start[x + 1]; s0 += Q3_GEMM_COLS) {
        int n = r->expert_start[x + 1] - s0 < Q3_GEMM_COLS ? r->expert_start[x + 1] - s0 : Q3_GEMM_COLS;
        slot_rows(j->h_act, ab, NULL, s0, n, xs);
        q3_matmul_tile(d, r0, r1, xs, n, r->y + (size_t)s0 * j->hidden + r0, (size_t)j->hidden);
    }
}

/* The expert (id) and rows [r0, r1) of task `task` of a phase cut by sp over `rows` rows. */
static int phase_task(const ffn_job *j, row_split sp, int task, int64_t rows, int64_t *r0, int64_t *r1) {
    int local, k = group_of_task(j->groups, sp.tasks, task, &local);
    int first = j->groups->first[k], n_experts = j->groups->first[k + 1] - first;
    return j->r->active[first + task_rows(sp, local, n_experts, rows, r0, r1)];
}

/* Tasks of a job in rounds (run_experts_in_rounds): gate/up rows, or down rows, of one expert. */
static void gate_up_task(void *ctx, int task, int thread) {
    ffn_job *j = ctx;
    let_sums_travel(j, thread);
    int64_t r0, r1;
    int x = phase_task(j, j->gate_up, task, j->ffn_dim, &r0, &r1);
    gate_up_rows(j, x, r0, r1);
}

static void down_task(void *ctx, int task, int thread) {
    ffn_job *j = ctx;
    let_sums_travel(j, thread);
    int64_t r0, r1;
    int x = phase_task(j, j->down, task, j->hidden, &r0, &r1);
    down_rows(j, x, r0, r1);
}

/* Runs fn over every (expert, rows) task, per_expert tasks an expert; each node's threads take
 * its experts' tasks first. */
static void run_expert_tasks(ffn_job *j, q3_task_fn fn, int64_t per_expert) {
    int first[Q3_NUMA_MAX_NODES + 1];
    for (int g = 0; g <= j->groups->n; g++) first[g] = (int)(j->groups->first[g] * per_expert);
    q3_pool_run_grouped(j->r->pool, fn, j, j->groups->n, first, j->groups->node);
}

/* Converts expert x's hidden rows for the down projection (when its last gate/up task ends). */
static void convert_hidden(const ffn_job *j, int x) {
    q3_cpu *r = j->r;
    const q3_mat *d = &j->experts[x].down;
    int s0 = r->expert_start[x], n = r->expert_start[x + 1] - s0;
    size_t ab = q3_act_row_bytes(d->type, d->cols);
    q3_act_convert(d->type, r->h + (size_t)s0 * j->ffn_dim, j->ffn_dim, n, (char *)r->h_act + (size_t)s0 * ab);
}

/* Waits until an expert's hidden rows are ready. Its gate/up tasks were all claimed before this
 * down task (they come first in the group), so they are running and end without waiting for
 * anything: the wait is short, unless their thread lost its core, hence the yield. */
static void wait_hidden(expert_sync *s) {
    for (int spins = 0; !atomic_load_explicit(&s->ready, memory_order_acquire); spins++) {
        if (spins >= 4000) {
            sched_yield();
            continue;
        }
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield");
#endif
    }
}

/* Task of a fused job: in each node group, the gate/up tasks of its experts, then their down
 * tasks. A gate/up task's writes to h are released by its decrement; the last one's acquire
 * sees them all, converts the expert's rows, and releases them through `ready`. */
static void fused_task(void *ctx, int task, int thread) {
    ffn_job *j = ctx;
    let_sums_travel(j, thread);
    expert_sync *sync = j->r->expert_sync;
    int local, k = group_of_task(j->groups, j->gate_up.tasks + j->down.tasks, task, &local);
    int first = j->groups->first[k], n_experts = j->groups->first[k + 1] - first;
    int64_t r0, r1;
    if (local < n_experts * j->gate_up.tasks) {
        int x = j->r->active[first + task_rows(j->gate_up, local, n_experts, j->ffn_dim, &r0, &r1)];
        gate_up_rows(j, x, r0, r1);
        if (atomic_fetch_sub_explicit(&sync[x].pending, 1, memory_order_acq_rel) == 1) {
            if (j->h_act != j->r->h) convert_hidden(j, x);
            atomic_store_explicit(&sync[x].ready, 1, memory_order_release);
        }
        return;
    }
    local -= n_experts * (int)j->gate_up.tasks;
    int x = j->r->active[first + task_rows(j->down, local, n_experts, j->hidden, &r0, &r1)];
    wait_hidden(&sync[x]);
    down_rows(j, x, r0, r1);
}

/* The job over the n tokens' rows of xn (assignments already grouped): their inputs converted
 * once for every expert's gate and up. */
static ffn_job expert_job(q3_cpu *r, const q3_ffn *experts, const node_groups *groups, int n_active,
                          const float *xn, int n) {
    int H = r->base.m->cfg.hidden_size;
    const q3_ffn *f = &experts[r->active[0]]; /* all experts share one type */
    ffn_job j = {r, experts, groups, q3_act_prepare(r->pool, f->gate.type, xn, H, n, r->act), NULL,
                 n_active, {0, 0}, {0, 0}, (int)f->gate.rows, H};
    j.gate_up = split_rows(&j, j.ffn_dim);
    j.down = split_rows(&j, H);
    return j;
}

/* Gate/up, the conversion of every hidden row, then down: a pool round each. */
static void run_experts_in_rounds(q3_cpu *r, const q3_ffn *experts, const node_groups *groups, int n_active,
                                  int n_assign, const float *xn, int n) {
    ffn_job j = expert_job(r, experts, groups, n_active, xn, n);
    run_expert_tasks(&j, gate_up_task, j.gate_up.tasks);
    /* a hidden row is ffn_dim wide, as wide as the down projection's columns */
    j.h_act = q3_act_prepare(r->pool, experts[r->active[0]].down.type, r->h, j.ffn_dim, n_assign, r->h_act);
    run_expert_tasks(&j, down_task, j.down.tasks);
}

/* The same in one pool round (fused_task). */
static void run_experts_fused(q3_cpu *r, const q3_ffn *experts, const node_groups *groups, int n_active,
                              const float *xn, int n) {
    ffn_job j = expert_job(r, experts, groups, n_active, xn, n);
    bool converts = q3_type_get(experts[r->active[0]].down.type)->vec_dot_type != Q3_TYPE_F32;
    j.h_act = converts ? r->h_act : r->h;
    expert_sync *sync = r->expert_sync;
    for (int a = 0; a < n_active; a++) {
        atomic_store_explicit(&sync[r->active[a]].pending, (int)j.gate_up.tasks, memory_order_relaxed);
        atomic_store_explicit(&sync[r->active[a]].ready, 0, memory_order_relaxed);
    }
    /* the pool publishes the job (and these counters) with a release store */
    run_expert_tasks(&j, fused_task, j.gate_up.tasks + j.down.tasks);
}

void q3_cpu_route(q3_backend *be, const float *logits, int n, int32_t *top, float *weight) {
    const q3_config *c = &be->m->cfg;
    int E = c->n_experts, k = c->n_experts_used;
    for (int i = 0; i < n; i++)
        route_token(logits + (size_t)i * E, E, k, c->norm_topk_prob, top + (size_t)i * k, weight + (size_t)i * k);
}

/* out[t] = sum of token t's k expert outputs, weighted, in the order of its choices. */
static void weighted_sum(const q3_cpu *r, const float *weight, int n, int k, int H, float *out) {
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * H;
        memset(o, 0, (size_t)H * sizeof(float));
        for (int j = 0; j < k; j++) {
            if (r->slot_of[i * k + j] < 0) continue;
            const float *y = r->y + (size_t)r->slot_of[i * k + j] * H;
            float w = weight[i * k + j];
            for (int d = 0; d < H; d++) o[d] += w * y[d];
        }
    }
}

/* The grouping scratch (slot_of, h, y, ...) starts at 0 for each call, so a batch may run in
 * slices of tokens (model/forward.c) while other rows of out are being summed. */
void q3_cpu_experts(q3_backend *be, const q3_ffn *experts, const float *xn, int n, const int32_t *top,
                    const float *weight, float *out) {
    q3_cpu *r = (q3_cpu *)be;
    const q3_config *c = &be->m->cfg;
    int E = c->n_experts, k = c->n_experts_used;
    int n_active = group_by_expert(r, top, n, E, k);
    /* each expert this call runs is read once, however many of its tokens chose it */
    for (int a = 0; a < n_active; a++) be->bytes_read += q3_ffn_bytes(&experts[r->active[a]]);
    node_groups groups;
    group_by_node(r, n_active, &groups);
    if (n_active) run_experts_fused(r, experts, &groups, n_active, xn, n);
    weighted_sum(r, weight, n, k, c->hidden_size, out);
}

void q3_cpu_ffn(q3_backend *be, const q3_ffn *f, const float *xn, int n, float *out) {
    q3_cpu *r = (q3_cpu *)be;
    int H = be->m->cfg.hidden_size;
    r->active[0] = 0;
    r->expert_start[0] = 0;
    r->expert_start[1] = n;
    for (int i = 0; i < n; i++) r->assign_token[i] = i;
    run_experts_in_rounds(r, f, &(node_groups){1, {0, 1}, {-1}}, 1, n, xn, n);
    be->bytes_read += q3_ffn_bytes(f);
    memcpy(out, r->y, (size_t)n * H * sizeof(float));
}
