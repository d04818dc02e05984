/* The feed-forward blocks on the CPU. MoE: route the whole batch (float32 softmax over all
 * experts, top-k, optional renormalisation), group the (token, expert) assignments by expert,
 * run each active expert once over all its tokens with gate, up and SiLU fused, then the down
 * projection, and sum each token's k outputs weighted, in a fixed order. Threads take
 * (expert, block of rows) tasks from one queue, so busy and idle experts balance out. */
#include <math.h>
#include <string.h>
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "model/runner.h"
#include "quant/types.h"

/* Rows per (expert, rows) task: from MIN_ROWS_PER_TASK, the decode granularity that keeps many
 * threads busy on a few active experts, up to MAX_ROWS_PER_TASK in prefill, where fewer, longer
 * tasks keep the expert's activations hot across the tile kernel's row blocks. */
#define MIN_ROWS_PER_TASK 32
#define MAX_ROWS_PER_TASK 128

/* softmax, then the k largest probabilities (ties to the lower expert id, as a stable sort). */
static void route_token(const float *logits, int n_experts, int k, bool renorm, int32_t *top, float *w) {
    float max = logits[0], sum = 0, p[4096];
    for (int x = 1; x < n_experts; x++) if (logits[x] > max) max = logits[x];
    for (int x = 0; x < n_experts; x++) sum += (p[x] = expf(logits[x] - max));
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

/* Counting sort of assignments by expert; returns the number of active experts. Assignments
 * to experts another process owns get slot -1: that process adds their outputs. */
static int group_by_expert(q3_runner *r, int n, int n_experts, int k) {
    const q3_shard *sh = &r->m->shard;
    int *start = r->expert_start;
    memset(start, 0, (size_t)(n_experts + 1) * sizeof *start);
    for (int a = 0; a < n * k; a++)
        if (q3_shard_owns_expert(sh, r->top_expert[a])) start[r->top_expert[a] + 1]++;
    int n_active = 0;
    for (int x = 0; x < n_experts; x++) {
        if (start[x + 1]) r->active[n_active++] = x;
        start[x + 1] += start[x];
    }
    int fill[4096];
    memcpy(fill, start, (size_t)n_experts * sizeof *fill);
    for (int a = 0; a < n * k; a++) {
        if (!q3_shard_owns_expert(sh, r->top_expert[a])) {
            r->slot_of[a] = -1;
            continue;
        }
        int slot = fill[r->top_expert[a]]++;
        r->assign_token[slot] = a / k;
        r->slot_of[a] = slot;
    }
    return n_active;
}

typedef struct ffn_job {
    q3_runner *r;
    const q3_ffn *experts; /* indexed by expert id */
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

/* The task's expert and its rows [r0, r1) of a matrix with `rows` rows. */
static int expert_of_task(const ffn_job *j, int task, int64_t rows, int64_t *r0, int64_t *r1) {
    *r0 = (task % j->row_tasks) * j->rows_per_task;
    *r1 = *r0 + j->rows_per_task < rows ? *r0 + j->rows_per_task : rows;
    return j->r->active[task / j->row_tasks];
}

/* Pointers to the converted activation rows of slots [s0, s0 + n) of the grouping: rows of
 * `act` by token (token_of: the slot's token) or by slot (token_of NULL). */
static void slot_rows(const void *act, size_t ab, const int32_t *token_of, int s0, int n, const void **x) {
    for (int i = 0; i < n; i++) x[i] = (const char *)act + (size_t)(token_of ? token_of[s0 + i] : s0 + i) * ab;
}

/* h[slot][row] = silu(gate[row] . x) * (up[row] . x) for the expert's tokens, in tiles of up
 * to Q3_GEMM_COLS tokens x Q3_GEMM_ROWS rows: up straight into h, gate beside it. */
static void gate_up_task(void *ctx, int task, int thread) {
    (void)thread;
    ffn_job *j = ctx;
    q3_runner *r = j->r;
    int64_t r0, r1;
    int x = expert_of_task(j, task, j->ffn_dim, &r0, &r1);
    const q3_ffn *f = &j->experts[x];
    size_t ab = q3_act_row_bytes(f->gate.type, f->gate.cols), F = (size_t)j->ffn_dim;
    const void *xs[Q3_GEMM_COLS];
    float g[Q3_GEMM_COLS * Q3_GEMM_ROWS];
    for (int s0 = r->expert_start[x]; s0 < r->expert_start[x + 1]; s0 += Q3_GEMM_COLS) {
        int n = r->expert_start[x + 1] - s0 < Q3_GEMM_COLS ? r->expert_start[x + 1] - s0 : Q3_GEMM_COLS;
        slot_rows(r->act, ab, r->assign_token, s0, n, xs);
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
    (void)thread;
    ffn_job *j = ctx;
    q3_runner *r = j->r;
    int64_t r0, r1;
    int x = expert_of_task(j, task, j->hidden, &r0, &r1);
    const q3_mat *d = &j->experts[x].down;
    size_t ab = q3_act_row_bytes(d->type, d->cols);
    const void *xs[Q3_GEMM_COLS];
    for (int s0 = r->expert_start[x]; s0 < r->expert_start[x + 1]; s0 += Q3_GEMM_COLS) {
        int n = r->expert_start[x + 1] - s0 < Q3_GEMM_COLS ? r->expert_start[x + 1] - s0 : Q3_GEMM_COLS;
        slot_rows(r->h_act, ab, NULL, s0, n, xs);
        q3_matmul_tile(d, r0, r1, xs, n, r->y + (size_t)s0 * j->hidden + r0, (size_t)j->hidden);
    }
}

static void convert_h_task(void *ctx, int slot, int thread) {
    (void)thread;
    ffn_job *j = ctx;
    const q3_mat *d = &j->experts[j->r->active[0]].down;
    size_t ab = q3_act_row_bytes(d->type, d->cols);
    q3_act_convert(d->type, j->r->h + (size_t)slot * j->ffn_dim, d->cols, 1, (char *)j->r->h_act + slot * ab);
}

/* Runs the grouped experts: assignments already grouped, r->act holds the converted inputs. */
static void run_experts(q3_runner *r, const q3_ffn *experts, int n_active, int n_assign, int ffn_dim) {
    int H = r->m->cfg.hidden_size;
    ffn_job j = {r, experts, n_active, 0, 0, ffn_dim, H};
    split_rows(&j, ffn_dim);
    q3_pool_run(r->pool, gate_up_task, &j, (int)(n_active * j.row_tasks));
    q3_pool_run(r->pool, convert_h_task, &j, n_assign);
    split_rows(&j, H);
    q3_pool_run(r->pool, down_task, &j, (int)(n_active * j.row_tasks));
}

void q3_moe_block(q3_runner *r, const q3_layer *L, int n) {
    const q3_config *c = &r->m->cfg;
    int E = c->n_experts, k = c->n_experts_used, H = c->hidden_size;
    q3_act_convert(L->router.type, r->xn, H, n, r->act);
    q3_matmul(r->pool, &L->router, r->act, n, r->router, E);
    for (int i = 0; i < n; i++)
        route_token(r->router + (size_t)i * E, E, k, c->norm_topk_prob, r->top_expert + (size_t)i * k,
                    r->top_weight + (size_t)i * k);
    int n_active = group_by_expert(r, n, E, k);
    q3_act_convert(L->experts[0].gate.type, r->xn, H, n, r->act); /* all experts share one type */
    int n_assign = r->expert_start[E];
    if (n_active) run_experts(r, L->experts, n_active, n_assign, (int)L->experts[r->active[0]].gate.rows);
    for (int i = 0; i < n; i++) {
        float *out = r->out + (size_t)i * H;
        memset(out, 0, (size_t)H * sizeof(float));
        for (int j = 0; j < k; j++) {
            if (r->slot_of[i * k + j] < 0) continue;
            const float *y = r->y + (size_t)r->slot_of[i * k + j] * H;
            float w = r->top_weight[i * k + j];
            for (int d = 0; d < H; d++) out[d] += w * y[d];
        }
    }
}

/* A dense layer is the same machinery with one expert that every token takes. */
void q3_dense_ffn_block(q3_runner *r, const q3_ffn *f, int n) {
    int H = r->m->cfg.hidden_size;
    r->active[0] = 0;
    r->expert_start[0] = 0;
    r->expert_start[1] = n;
    for (int i = 0; i < n; i++) r->assign_token[i] = i;
    q3_act_convert(f->gate.type, r->xn, H, n, r->act);
    run_experts(r, f, 1, n, (int)f->gate.rows);
    memcpy(r->out, r->y, (size_t)n * H * sizeof(float));
}
