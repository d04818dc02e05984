/* The feed-forward operations on the CPU. route: float32 softmax over all experts, top-k,
 * optional renormalisation. experts: group the (token, expert) assignments by expert, run each
 * active expert once over all its tokens with gate, up and SiLU fused, then the down projection,
 * and sum each token's k outputs weighted, in a fixed order. Threads take (expert, block of
 * rows) tasks from one queue, so busy and idle experts balance out. A dense feed-forward is the
 * same machinery with one expert that every token takes. */
#include <math.h>
#include <string.h>
#include "cpu/cpu_backend.h"
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

typedef struct ffn_job {
    q3_cpu *r;
    const q3_ffn *experts; /* indexed by expert id */
    const node_groups *groups;
    const void *act, *h_act; /* the tokens' inputs and the gated hidden rows, ready for the kernels */
    int n_experts_active;
    int64_t rows_per_task, row_tasks; /* row_tasks: tasks per expert */
    int ffn_dim, hidden;
} ffn_job;

/* Splits `rows` of each active expert into tasks: the largest size that still gives every
 * thread about eight tasks. */
static void split_rows(ffn_job *j, int64_t rows) {
    int64_t per = MAX_ROWS_PER_TASK, want = 8 * (int64_t)q3_pool_size(j->r->pool);
    while (per > MIN_ROWS_PER_TASK && j->n_experts_active * ((rows + per - 1) / per) < want) per /= 2;
    j->rows_per_task = per;
    j->row_tasks = (rows + per - 1) / per;
}

/* The task's expert and its rows [r0, r1) of a matrix with `rows` rows. Within a node's group,
 * tasks go by row block first, expert second: every expert's full blocks come before the short
 * last blocks, so a job ends on small tasks and no thread waits long for the last one. */
static int expert_of_task(const ffn_job *j, int task, int64_t rows, int64_t *r0, int64_t *r1) {
    const node_groups *g = j->groups;
    int k = 0;
    while (task >= g->first[k + 1] * j->row_tasks) k++;
    int local = task - (int)(g->first[k] * j->row_tasks), n_experts = g->first[k + 1] - g->first[k];
    *r0 = (int64_t)(local / n_experts) * j->rows_per_task;
    *r1 = *r0 + j->rows_per_task < rows ? *r0 + j->rows_per_task : rows;
    return j->r->active[g->first[k] + local % n_experts];
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

/* h[slot][row] = silu(gate[row] . x) * (up[row] . x) for the expert's tokens, in tiles of up
 * to Q3_GEMM_COLS tokens x Q3_GEMM_ROWS rows: up straight into h, gate beside it. */
static void gate_up_task(void *ctx, int task, int thread) {
    ffn_job *j = ctx;
    let_sums_travel(j, thread);
    q3_cpu *r = j->r;
    int64_t r0, r1;
    int x = expert_of_task(j, task, j->ffn_dim, &r0, &r1);
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

static void down_task(void *ctx, int task, int thread) {
    ffn_job *j = ctx;
    let_sums_travel(j, thread);
    q3_cpu *r = j->r;
    int64_t r0, r1;
    int x = expert_of_task(j, task, j->hidden, &r0, &r1);
    const q3_mat *d = &j->experts[x].down;
    size_t ab = q3_act_row_bytes(d->type, d->cols);
    const void *xs[Q3_GEMM_COLS];
    for (int s0 = r->expert_start[x]; s0 < r->expert_start[x + 1]; s0 += Q3_GEMM_COLS) {
        int n = r->expert_start[x + 1] - s0 < Q3_GEMM_COLS ? r->expert_start[x + 1] - s0 : Q3_GEMM_COLS;
        slot_rows(j->h_act, ab, NULL, s0, n, xs);
        q3_matmul_tile(d, r0, r1, xs, n, r->y + (size_t)s0 * j->hidden + r0, (size_t)j->hidden);
    }
}

/* Runs fn over every (expert, rows) task; each node's threads take its experts' tasks first. */
static void run_expert_tasks(ffn_job *j, q3_task_fn fn) {
    int first[Q3_NUMA_MAX_NODES + 1];
    for (int g = 0; g <= j->groups->n; g++) first[g] = (int)(j->groups->first[g] * j->row_tasks);
    q3_pool_run_grouped(j->r->pool, fn, j, j->groups->n, first, j->groups->node);
}

/* Runs the grouped experts over the n tokens' rows of xn (assignments already grouped). */
static void run_experts(q3_cpu *r, const q3_ffn *experts, const node_groups *groups, int n_active, int n_assign,
                        const float *xn, int n) {
    int H = r->base.m->cfg.hidden_size;
    const q3_ffn *f = &experts[r->active[0]]; /* all experts share one type */
    int ffn_dim = (int)f->gate.rows;
    ffn_job j = {r, experts, groups, q3_act_prepare(r->pool, f->gate.type, xn, H, n, r->act), NULL,
                 n_active, 0, 0, ffn_dim, H};
    split_rows(&j, ffn_dim);
    run_expert_tasks(&j, gate_up_task);
    /* a hidden row is ffn_dim wide, as wide as the down projection's columns */
    j.h_act = q3_act_prepare(r->pool, f->down.type, r->h, ffn_dim, n_assign, r->h_act);
    split_rows(&j, H);
    run_expert_tasks(&j, down_task);
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
    if (n_active) run_experts(r, experts, &groups, n_active, r->expert_start[E], xn, n);
    weighted_sum(r, weight, n, k, c->hidden_size, out);
}

void q3_cpu_ffn(q3_backend *be, const q3_ffn *f, const float *xn, int n, float *out) {
    q3_cpu *r = (q3_cpu *)be;
    int H = be->m->cfg.hidden_size;
    r->active[0] = 0;
    r->expert_start[0] = 0;
    r->expert_start[1] = n;
    for (int i = 0; i < n; i++) r->assign_token[i] = i;
    run_experts(r, f, &(node_groups){1, {0, 1}, {-1}}, 1, n, xn, n);
    be->bytes_read += q3_ffn_bytes(f);
    memcpy(out, r->y, (size_t)n * H * sizeof(float));
}
