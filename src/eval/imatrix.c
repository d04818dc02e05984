/* The importance-matrix run (see imatrix.h): the forward pass with a trace whose matmul_input
 * callback adds each matrix's input rows to its entry. */
#include "eval/imatrix.h"

#include <stdlib.h>
#include <string.h>
#include "model/runner.h"

typedef struct collector {
    q3_imatrix *m;
    q3_status st; /* the first failure; later rows are dropped */
    q3_error *e;
} collector;

static void on_input(void *ctx, const char *tensor, int expert, int n_experts, const float *x, int n, int64_t cols) {
    collector *c = ctx;
    q3_imatrix_entry *en;
    if (c->st || (c->st = q3_imatrix_entry_get(c->m, tensor, cols, n_experts, &en, c->e))) return;
    q3_imatrix_add(en, expert, x, n, cols);
}

/* The feed-forward width the recomputed inputs need room for: the widest of the layers'. */
static int64_t widest_ffn(const q3_model *m) {
    int64_t F = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        int64_t f = L->is_moe ? L->experts[0].gate.rows : L->dense.gate.rows;
        if (f > F) F = f;
    }
    return F;
}

typedef struct chunk_run {
    q3_kv_cache *kv;
    q3_runner *r;
    int32_t *pos, *seq;
    bool *want;
    float *logits, *scratch;
} chunk_run;

static q3_status chunk_open(chunk_run *cr, const q3_model *m, const q3_imatrix_run *o, q3_error *e) {
    memset(cr, 0, sizeof *cr);
    int ctx = o->ctx;
    q3_kv_options ko = {Q3_TYPE_F32, 64, (ctx + 63) / 64, 1, ctx};
    q3_status st = q3_kv_cache_new(&cr->kv, m, &ko, e);
    if (!st) st = q3_runner_new(&cr->r, m, ctx, o->threads, e);
    if (st) return st;
    cr->pos = malloc((size_t)ctx * sizeof *cr->pos);
    cr->seq = calloc((size_t)ctx, sizeof *cr->seq);
    cr->want = calloc((size_t)ctx, sizeof *cr->want);
    cr->logits = malloc((size_t)m->cfg.vocab_size * sizeof *cr->logits);
    cr->scratch = malloc((size_t)ctx * (size_t)(m->cfg.hidden_size + 2 * widest_ffn(m)) * sizeof *cr->scratch);
    if (!cr->pos || !cr->seq || !cr->want || !cr->logits || !cr->scratch)
        return q3_fail(e, Q3_ENOMEM, "imatrix: out of memory for chunks of %d tokens", ctx);
    for (int i = 0; i < ctx; i++) cr->pos[i] = i;
    cr->want[ctx - 1] = true; /* the statistics need no logits; one row keeps the head's work small */
    return Q3_OK;
}

static void chunk_close(chunk_run *cr) {
    q3_runner_free(cr->r);
    q3_kv_cache_free(cr->kv);
    free(cr->pos), free(cr->seq), free(cr->want), free(cr->logits), free(cr->scratch);
}

q3_status q3_imatrix_collect(const q3_model *m, const int32_t *ids, int n_ids, const q3_imatrix_run *o,
                             q3_imatrix *out, q3_error *e) {
    int chunks = o->ctx > 1 ? n_ids / o->ctx : 0;
    if (chunks < 1) return q3_fail(e, Q3_EINVAL, "imatrix: %d tokens are fewer than one chunk of %d", n_ids, o->ctx);
    if (o->max_chunks > 0 && o->max_chunks < chunks) chunks = o->max_chunks;
    chunk_run cr;
    collector col = {out, Q3_OK, e};
    q3_status st = chunk_open(&cr, m, o, e);
    q3_trace trace = {.matmul_input = on_input, .matmul_input_ctx = &col, .input_scratch = cr.scratch};
    if (!st) q3_runner_set_trace(cr.r, &trace);
    for (int c = 0; !st && c < chunks; c++) {
        q3_kv_cache_truncate(cr.kv, 0, 0);
        q3_batch b = {o->ctx, ids + (size_t)c * o->ctx, cr.pos, cr.seq, cr.want};
        st = q3_forward(cr.r, cr.kv, &b, cr.logits, e);
        if (!st) st = col.st;
        if (!st) out->chunk_count++;
        if (!st && o->progress) o->progress(o->progress_ctx, c + 1, chunks);
    }
    out->chunk_size = o->ctx;
    if (!st && o->dataset && !out->dataset && !(out->dataset = strdup(o->dataset)))
        st = q3_fail(e, Q3_ENOMEM, "imatrix: out of memory");
    chunk_close(&cr);
    return st;
}
