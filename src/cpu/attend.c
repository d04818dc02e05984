/* Grouped-query attention over the paged KV cache: softmax(q K^T / sqrt(d)) V for every token of
 * a batch, over its own sequence's positions 0..pos.
 *
 * Work is cut by (block of tokens, key/value head). A block is a run of the batch's consecutive
 * tokens of one sequence, as many as make Q3_GEMM_COLS query rows with the heads that share a
 * key/value head, so each cached key and value is read once for all of them: a prefill step
 * reads the cache once per block rather than once per token. Within that, positions go in fixed
 * chunks of CHUNK. Each chunk gives a partial softmax per query row (its max, its sum of
 * exponentials, its weighted sum of value rows); the partials are folded left to right. Decoding
 * a few tokens over a long context computes the chunks in parallel and folds them afterwards; a
 * prefill step, which has work enough, folds each block's chunks as it goes.
 *
 * A query row's numbers never depend on the rows beside it: scores come from dot_rows (float
 * caches) or the Q8_0 tile kernel (equal to vec_dot), both per score in a fixed order; each
 * row's softmax runs over its own positions only, value sums are per row in
 * order of position, and a row joins a chunk's fold only when the chunk holds positions of its
 * own. With the chunking fixed by position, a token's output is bit-identical whatever else
 * shares its batch and however its prompt was split into steps. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cpu/vec.h"
#include "cpu/cpu_backend.h"
#include "cpu/kernel_table.h"

#define CHUNK 256
/* Partials kept for parallel decoding: beyond this the batch is big enough to fold in place. */
#define MAX_PARTIAL_FLOATS (4u << 20)

typedef struct attn_job {
    q3_cpu *c;
    const q3_model *m;
    const q3_kv_cache *kv;
    const q3_batch *b;
    const q3_type_traits *tr; /* the cache's type */
    int layer;
    int group;                /* query heads per key/value head */
    int max_rows;             /* query rows of the largest block any batch may have: scratch layout */
    int partial_rows;         /* query rows of this batch's largest block: partials layout */
    const int *block_start;   /* [n_blocks + 1] first batch token of each block */
    int *chunk_start;         /* [n_blocks + 1] first chunk index of each block (parallel mode) */
    const float *q;           /* [T][n_q_heads][head_dim] the step's queries */
    float *out;               /* [T][n_q_heads][head_dim] their attention outputs */
} attn_job;

static int n_chunks(int len) { return (len + CHUNK - 1) / CHUNK; }

/* The local query heads [*h0, *h1) that read local key/value head g. */
static void heads_of(const q3_shard *s, int group, int g, int *h0, int *h1) {
    int lo = (s->kv_head0 + g) * group, hi = lo + group;
    *h0 = (lo > s->q_head0 ? lo : s->q_head0) - s->q_head0;
    *h1 = (hi < s->q_head0 + s->n_q_heads ? hi : s->q_head0 + s->n_q_heads) - s->q_head0;
}

/* Floats of one partial for one query row: max, sum, then head_dim accumulators. */
static int partial_floats(int hd) { return hd + 2; }

/* Query rows of tokens per block: enough to fill a tile kernel's columns. */
static int block_tokens(int group) { return Q3_GEMM_COLS / group > 1 ? Q3_GEMM_COLS / group : 1; }

/* Bytes of one query row in the cache type's vec_dot operand type. */
static size_t query_bytes(const attn_job *j) { return q3_row_bytes(j->tr->vec_dot_type, j->m->cfg.head_dim); }

/* Per-thread scratch: scores [max_rows][CHUNK], keys or values [CHUNK][hd] in f32, the running
 * state and one partial [max_rows][hd + 2] each, and the block's queries in the kernels' operand
 * type. */
static size_t scratch_floats(int max_rows, int hd, size_t q_bytes) {
    return (size_t)max_rows * CHUNK + (size_t)CHUNK * hd + 2 * (size_t)max_rows * partial_floats(hd) +
           ((size_t)max_rows * q_bytes + sizeof(float) - 1) / sizeof(float);
}

/* One thread's part of the backend's attn_scratch, as scratch_floats counts it. */
typedef struct thread_scratch {
    float *scores;          /* [max_rows][CHUNK] */
    float *rows;            /* [CHUNK][hd]: the chunk's keys, then its values, in f32 */
    float *state, *part;    /* [max_rows][hd + 2] each: fold mode's running state and partial */
    unsigned char *queries; /* the block's query rows in the kernels' operand type */
} thread_scratch;

typedef struct chunk_view {
    int i0, n_tok, h0, nh; /* the block's tokens and the local query heads of this kv head */
    int p0, p1;            /* the chunk's positions, up to the block's last token */
    int rows;              /* n_tok * nh query rows; row t * nh + h is token i0 + t, head h0 + h */
} chunk_view;

static chunk_view view_of(const attn_job *j, int blk, int g, int c) {
    chunk_view v;
    v.i0 = j->block_start[blk];
    v.n_tok = j->block_start[blk + 1] - v.i0;
    int h1;
    heads_of(&j->m->shard, j->group, g, &v.h0, &h1);
    v.nh = h1 - v.h0;
    v.rows = v.n_tok * v.nh;
    v.p0 = c * CHUNK;
    int last = j->b->pos[v.i0 + v.n_tok - 1] + 1;
    v.p1 = v.p0 + CHUNK < last ? v.p0 + CHUNK : last;
    return v;
}

/* Positions of this chunk that token t of the block sees (0 when the chunk lies past it). */
static int seen_by(const attn_job *j, const chunk_view *v, int t) {
    int end = j->b->pos[v->i0 + t] + 1;
    if (end > v->p1) end = v->p1;
    return end > v->p0 ? end - v->p0 : 0;
}

/* The query rows of block blk for kv head g, row t * nh + h at qbuf + row * query_bytes, in the
 * kernels' operand type. */
static void block_queries(const attn_job *j, int blk, int g, unsigned char *qbuf) {
    chunk_view view = view_of(j, blk, g, 0), *v = &view;
    int hd = j->m->cfg.head_dim, nq = j->m->shard.n_q_heads;
    size_t qb = query_bytes(j);
    q3_from_float_fn convert = q3_type_get(j->tr->vec_dot_type)->from_float;
    for (int t = 0; t < v->n_tok; t++)
        for (int h = 0; h < v->nh; h++)
            convert(j->q + ((size_t)(v->i0 + t) * nq + v->h0 + h) * hd, qbuf + (size_t)(t * v->nh + h) * qb, hd);
}

/* scores[row][p - p0] = K[p] . q_row over the chunk, with the page runs of key rows (contiguous
 * per head) as the tile kernel's weight rows and the query rows as its columns. */
static void score_keys(const attn_job *j, const chunk_view *v, int g, const unsigned char *qbuf, float *scores) {
    const q3_kv_cache *kv = j->kv;
    int hd = kv->head_dim, seq = j->b->seq[v->i0];
    size_t qb = query_bytes(j);
    for (int p = v->p0; p < v->p1;) {
        int in_page = kv->page_size - p % kv->page_size, run = v->p1 - p < in_page ? v->p1 - p : in_page;
        if (run > Q3_GEMM_ROWS) run = Q3_GEMM_ROWS;
        const unsigned char *k = q3_kv_head_row(kv, kv->k, j->layer, seq, p, g);
        for (int c0 = 0; c0 < v->rows; c0 += Q3_GEMM_COLS) {
            int nc = v->rows - c0 < Q3_GEMM_COLS ? v->rows - c0 : Q3_GEMM_COLS;
            float *out = scores + (size_t)c0 * CHUNK + (p - v->p0);
            const void *qs[Q3_GEMM_COLS];
            for (int c = 0; c < nc; c++) qs[c] = qbuf + (size_t)(c0 + c) * qb;
            if (j->tr->gemm) {
                j->tr->gemm(hd, k, kv->head_row_bytes, run, qs, nc, out, CHUNK);
            } else {
                for (int c = 0; c < nc; c++)
                    for (int r = 0; r < run; r++)
                        out[(size_t)c * CHUNK + r] = j->tr->vec_dot(hd, k + r * kv->head_row_bytes, qs[c]);
            }
        }
        p += run;
    }
}

/* The chunk's key or value rows (base kv->k or kv->v) of head g as f32 [p1 - p0][hd]: each
 * page's run is contiguous. */
static void load_rows(const attn_job *j, const unsigned char *base, const chunk_view *v, int g, float *out) {
    const q3_kv_cache *kv = j->kv;
    int seq = j->b->seq[v->i0];
    for (int p = v->p0; p < v->p1;) {
        int in_page = kv->page_size - p % kv->page_size, run = v->p1 - p < in_page ? v->p1 - p : in_page;
        j->tr->to_float(q3_kv_head_row(kv, base, j->layer, seq, p, g), out + (size_t)(p - v->p0) * kv->head_dim,
                        (int64_t)run * kv->head_dim);
        p += run;
    }
}

/* The addresses of the chunk's F16 key or value rows (base kv->k or kv->v) of head g. */
static void f16_rows(const attn_job *j, const unsigned char *base, const chunk_view *v, int g, const uint16_t **rows) {
    int seq = j->b->seq[v->i0];
    for (int p = v->p0; p < v->p1; p++)
        rows[p - v->p0] = (const uint16_t *)q3_kv_head_row(j->kv, base, j->layer, seq, p, g);
}

/* The same for a Q8_0 cache's rows, each hd / 32 blocks. */
static void q8_0_rows(const attn_job *j, const unsigned char *base, const chunk_view *v, int g, const void **rows) {
    int seq = j->b->seq[v->i0];
    for (int p = v->p0; p < v->p1; p++) rows[p - v->p0] = q3_kv_head_row(j->kv, base, j->layer, seq, p, g);
}

/* F16 caches whose ISA reads F16 rows directly (vec.h): no widened copy of the chunk. */
static bool reads_f16_rows(const attn_job *j) { return j->kv->type == Q3_TYPE_F16 && q3_vec()->dot_rows_f16; }

/* scores[row][p - p0] for the chunk's keys of head g, from the block's queries in sc->queries. */
static void chunk_scores(const attn_job *j, const chunk_view *v, int g, const thread_scratch *sc) {
    int hd = j->m->cfg.head_dim, len = v->p1 - v->p0;
    const float *q = (const float *)sc->queries;
    if (reads_f16_rows(j)) {
        const uint16_t *rows[CHUNK];
        f16_rows(j, j->kv->k, v, g, rows);
        q3_vec()->dot_rows_f16(sc->scores, CHUNK, q, v->rows, rows, len, hd);
    } else if (j->tr->vec_dot_type == Q3_TYPE_F32) { /* other float caches: keys widened first */
        load_rows(j, j->kv->k, v, g, sc->rows);
        q3_vec()->dot_rows(sc->scores, CHUNK, q, v->rows, sc->rows, len, hd);
    } else { /* q8_0: its integer tile kernel against the quantized queries */
        score_keys(j, v, g, sc->queries, sc->scores);
    }
}

/* out[row][2..] = the chunk's value rows of head g weighed by the row's scores: F16 and Q8_0
 * rows read in place where the ISA can, other caches (and ISAs) through a float copy. */
static void chunk_values(const attn_job *j, const chunk_view *v, int g, const thread_scratch *sc, float *out) {
    int hd = j->m->cfg.head_dim, pf = partial_floats(hd), len = v->p1 - v->p0;
    const q3_vec_ops *vec = q3_vec();
    float *o = out + 2;
    if (reads_f16_rows(j)) {
        const uint16_t *rows[CHUNK];
        f16_rows(j, j->kv->v, v, g, rows);
        vec->mix_rows_f16(o, (size_t)pf, sc->scores, CHUNK, v->rows, rows, len, hd);
    } else if (j->kv->type == Q3_TYPE_Q8_0 && vec->mix_rows_q8_0) {
        const void *rows[CHUNK];
        q8_0_rows(j, j->kv->v, v, g, rows);
        vec->mix_rows_q8_0(o, (size_t)pf, sc->scores, CHUNK, v->rows, rows, len, hd);
    } else {
        load_rows(j, j->kv->v, v, g, sc->rows);
        vec->mix_rows(o, (size_t)pf, sc->scores, CHUNK, v->rows, sc->rows, len, hd);
    }
}

/* Chunk c of block blk over key/value head g: a partial per query row into out [rows][hd + 2],
 * from the block's queries already in sc->queries. A row whose token lies before the chunk gets
 * max -inf and sum 0 and is skipped when folding. */
static void chunk_partial(const attn_job *j, int blk, int g, int c, const thread_scratch *sc, float *out) {
    int hd = j->m->cfg.head_dim, pf = partial_floats(hd);
    chunk_view v = view_of(j, blk, g, c);
    float *scores = sc->scores;
    chunk_scores(j, &v, g, sc);
    float scale = 1.0f / sqrtf((float)hd);
    const q3_vec_ops *vec = q3_vec();
    int len = v.p1 - v.p0;
    for (int t = 0; t < v.n_tok; t++) {
        int seen = seen_by(j, &v, t);
        for (int h = 0; h < v.nh; h++) {
            int row = t * v.nh + h;
            float *s = scores + (size_t)row * CHUNK, *o = out + (size_t)row * pf, m = -INFINITY;
            for (int p = 0; p < seen; p++) m = (s[p] *= scale) > m ? s[p] : m;
            o[0] = m;
            o[1] = seen ? vec->exp_sum(s, m, seen) : 0;
            memset(s + seen, 0, (size_t)(len - seen) * sizeof(float)); /* positions past the token weigh 0 */
        }
    }
    chunk_values(j, &v, g, sc, out);
}

/* state <- state (+) partial for one query row: the online-softmax merge. */
static void fold_row(float *s, const float *p, int hd) {
    float m = s[0] > p[0] ? s[0] : p[0], a = expf(s[0] - m), b = expf(p[0] - m);
    s[0] = m;
    s[1] = s[1] * a + p[1] * b;
    for (int d = 0; d < hd; d++) s[2 + d] = s[2 + d] * a + p[2 + d] * b;
}

/* Folds chunk c's partial into the state of every row whose token reaches into that chunk. */
static void fold(const attn_job *j, int blk, int g, int c, float *state, const float *part) {
    int hd = j->m->cfg.head_dim, pf = partial_floats(hd);
    chunk_view v = view_of(j, blk, g, c);
    for (int t = 0; t < v.n_tok; t++) {
        if (!seen_by(j, &v, t)) continue;
        for (int h = 0; h < v.nh; h++) {
            size_t at = (size_t)(t * v.nh + h) * pf;
            fold_row(state + at, part + at, hd);
        }
    }
}

static void finish(const attn_job *j, int blk, int g, const float *state) {
    int hd = j->m->cfg.head_dim, nq = j->m->shard.n_q_heads, pf = partial_floats(hd);
    chunk_view v = view_of(j, blk, g, 0);
    for (int t = 0; t < v.n_tok; t++)
        for (int h = 0; h < v.nh; h++) {
            const float *s = state + (size_t)(t * v.nh + h) * pf;
            float *out = j->out + ((size_t)(v.i0 + t) * nq + v.h0 + h) * hd;
            for (int d = 0; d < hd; d++) out[d] = s[2 + d] / s[1];
        }
}

static thread_scratch scratch_of(const attn_job *j, int thread) {
    int pf = partial_floats(j->m->cfg.head_dim);
    thread_scratch s;
    s.scores = j->c->attn_scratch + (size_t)thread * j->c->attn_scratch_floats;
    s.rows = s.scores + (size_t)j->max_rows * CHUNK;
    s.state = s.rows + (size_t)CHUNK * j->m->cfg.head_dim;
    s.part = s.state + (size_t)j->max_rows * pf;
    s.queries = (unsigned char *)(s.part + (size_t)j->max_rows * pf);
    return s;
}

static int block_chunks(const attn_job *j, int blk) { return n_chunks(j->b->pos[j->block_start[blk + 1] - 1] + 1); }

/* Fold mode: one task per (block, kv head), chunks computed and folded in turn. */
static void fold_task(void *ctx, int task, int thread) {
    attn_job *j = ctx;
    int nkv = j->m->shard.n_kv_heads, blk = task / nkv, g = task % nkv;
    thread_scratch s = scratch_of(j, thread);
    block_queries(j, blk, g, s.queries);
    chunk_partial(j, blk, g, 0, &s, s.state);
    for (int c = 1; c < block_chunks(j, blk); c++) {
        chunk_partial(j, blk, g, c, &s, s.part);
        fold(j, blk, g, c, s.state, s.part);
    }
    finish(j, blk, g, s.state);
}

/* Parallel mode: one task per (block, kv head, chunk) into the partials buffer ... */
static float *partial_at(const attn_job *j, int blk, int g, int c) {
    size_t per = (size_t)j->partial_rows * partial_floats(j->m->cfg.head_dim);
    return j->c->attn_partials + ((size_t)(j->chunk_start[blk] + c) * j->m->shard.n_kv_heads + g) * per;
}

static void chunk_task(void *ctx, int task, int thread) {
    attn_job *j = ctx;
    int nkv = j->m->shard.n_kv_heads, flat = task / nkv, g = task % nkv, blk = 0;
    while (flat >= j->chunk_start[blk + 1]) blk++;
    int c = flat - j->chunk_start[blk];
    thread_scratch s = scratch_of(j, thread);
    block_queries(j, blk, g, s.queries);
    chunk_partial(j, blk, g, c, &s, partial_at(j, blk, g, c));
}

/* ... then one per (block, kv head) folds its chunks left to right. */
static void merge_task(void *ctx, int task, int thread) {
    (void)thread;
    attn_job *j = ctx;
    int nkv = j->m->shard.n_kv_heads, blk = task / nkv, g = task % nkv;
    float *state = partial_at(j, blk, g, 0);
    for (int c = 1; c < block_chunks(j, blk); c++) fold(j, blk, g, c, state, partial_at(j, blk, g, c));
    finish(j, blk, g, state);
}

/* Cuts the batch into blocks: runs of one sequence's consecutive positions, at most
 * block_tokens(group) long. Returns the number of blocks. */
static int make_blocks(const q3_batch *b, int per_block, int *start) {
    int n = 0;
    for (int i = 0; i < b->n_tokens; i++) {
        bool joins = i > 0 && i - start[n - 1] < per_block && b->seq[i] == b->seq[i - 1] && b->pos[i] == b->pos[i - 1] + 1;
        if (!joins) start[n++] = i;
    }
    start[n] = b->n_tokens;
    return n;
}

/* Bytes one layer's attention reads in this step: every token's cached keys and values. */
static uint64_t kv_bytes(const q3_kv_cache *kv, const q3_batch *b) {
    uint64_t n = 0;
    for (int i = 0; i < b->n_tokens; i++) n += (uint64_t)(b->pos[i] + 1) * kv->n_heads * kv->head_row_bytes * 2;
    return n;
}

q3_status q3_cpu_attention_plan(q3_cpu *r, q3_error *e) {
    const q3_model *m = r->base.m;
    const q3_config *c = &m->cfg;
    const q3_batch *b = r->b;
    int group = c->n_heads / c->n_kv_heads, hd = c->head_dim, pf = partial_floats(hd);
    int max_rows = block_tokens(group) * group;
    if (!r->attn_scratch) {
        /* room for queries in the widest operand type a cache may ask for (f32) */
        r->attn_scratch_floats = scratch_floats(max_rows, hd, (size_t)hd * sizeof(float));
        r->attn_scratch = malloc(r->attn_scratch_floats * q3_pool_size(r->pool) * sizeof(float));
        r->attn_chunk_start = malloc(((size_t)r->max_tokens + 1) * sizeof(int));
        r->attn_block_start = malloc(((size_t)r->max_tokens + 1) * sizeof(int));
        if (!r->attn_scratch || !r->attn_chunk_start || !r->attn_block_start)
            return q3_fail(e, Q3_ENOMEM, "attention: out of memory");
    }
    r->attn_kv_bytes = kv_bytes(r->kv, b);
    int n_blocks = make_blocks(b, block_tokens(group), r->attn_block_start), widest = 1;
    size_t chunks = 0;
    for (int k = 0; k < n_blocks; k++) {
        int *s = r->attn_block_start;
        chunks += (size_t)n_chunks(b->pos[s[k + 1] - 1] + 1);
        widest = s[k + 1] - s[k] > widest ? s[k + 1] - s[k] : widest;
    }
    /* decode steps (one token a block) keep group rows per partial, not a prefill block's */
    r->attn_partial_rows = widest * group;
    size_t need = chunks * m->shard.n_kv_heads * (size_t)r->attn_partial_rows * pf;
    r->attn_parallel = need <= MAX_PARTIAL_FLOATS && n_blocks * m->shard.n_kv_heads < 4 * q3_pool_size(r->pool) &&
                       chunks > (size_t)n_blocks;
    r->attn_n_blocks = n_blocks;
    if (!r->attn_parallel || need <= r->attn_partials_floats) return Q3_OK;
    float *p = realloc(r->attn_partials, need * sizeof(float));
    if (!p) return q3_fail(e, Q3_ENOMEM, "attention: out of memory for %zu partials", chunks);
    r->attn_partials = p;
    r->attn_partials_floats = need;
    return Q3_OK;
}

void q3_cpu_attend(q3_backend *be, int layer, const float *q, float *out) {
    q3_cpu *r = (q3_cpu *)be;
    const q3_config *c = &be->m->cfg;
    int nkv = be->m->shard.n_kv_heads, n = r->attn_n_blocks, group = c->n_heads / c->n_kv_heads;
    attn_job j = {r, be->m, r->kv, r->b, q3_type_get(r->kv->type), layer, group, block_tokens(group) * group,
                  r->attn_partial_rows, r->attn_block_start, r->attn_chunk_start, q, out};
    be->bytes_read += r->attn_kv_bytes;
    if (!r->attn_parallel) {
        q3_pool_run(r->pool, fold_task, &j, n * nkv);
        return;
    }
    j.chunk_start[0] = 0;
    for (int k = 0; k < n; k++) j.chunk_start[k + 1] = j.chunk_start[k] + block_chunks(&j, k);
    q3_pool_run(r->pool, chunk_task, &j, j.chunk_start[n] * nkv);
    q3_pool_run(r->pool, merge_task, &j, n * nkv);
}
