/* The speed measurement: one sequence in a KV cache of its own, a prompt of random ids prefilled
 * in chunks with logits for its last token only, then greedy decode steps of one token each.
 * Every buffer is made once in q3_speed_new; the timed loops only call the forward pass. */
#include "base/clock.h"
#include "bench/speed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "model/runner.h"

#define PAGE_TOKENS 64

struct q3_speed {
    const q3_model *m;
    q3_kv_cache *kv;
    q3_runner *r;
    int chunk, max_context, vocab;
    float *logits;   /* [vocab]: one row, the last token's */
    int32_t *tokens; /* [max_context]: the prompt, then the generated ids */
    int32_t *pos;    /* [max_context]: 0, 1, 2, ... */
    int32_t *seq;    /* [chunk]: zeros, the one sequence */
    bool *want;      /* [chunk] */
};

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

q3_status q3_speed_new(q3_speed **out, const q3_model *m, const q3_speed_options *o, q3_error *e) {
    *out = NULL;
    if (o->max_context < 2 || o->chunk < 1) return q3_fail(e, Q3_EINVAL, "bench: context and chunk must be positive");
    q3_speed *s = calloc(1, sizeof *s);
    if (!s) return q3_fail(e, Q3_ENOMEM, "bench: out of memory");
    s->m = m;
    s->max_context = o->max_context;
    s->chunk = o->chunk < o->max_context ? o->chunk : o->max_context;
    s->vocab = q3_model_config(m)->vocab_size;
    q3_kv_options ko = {o->kv_type, PAGE_TOKENS, (o->max_context + PAGE_TOKENS - 1) / PAGE_TOKENS, 1, o->max_context};
    q3_status st = q3_kv_cache_new(&s->kv, m, &ko, e);
    if (!st) st = q3_runner_new(&s->r, m, s->chunk, o->threads, e);
    if (st) {
        q3_speed_free(s);
        return st;
    }
    s->logits = malloc((size_t)s->vocab * sizeof *s->logits);
    s->tokens = malloc((size_t)s->max_context * sizeof *s->tokens);
    s->pos = malloc((size_t)s->max_context * sizeof *s->pos);
    s->seq = calloc((size_t)s->chunk, sizeof *s->seq);
    s->want = calloc((size_t)s->chunk, sizeof *s->want);
    if (!s->logits || !s->tokens || !s->pos || !s->seq || !s->want) {
        q3_speed_free(s);
        return q3_fail(e, Q3_ENOMEM, "bench: out of memory for a context of %d tokens", o->max_context);
    }
    uint64_t rng = 42;
    for (int i = 0; i < s->max_context; i++) {
        s->tokens[i] = (int32_t)(splitmix64(&rng) % (uint64_t)s->vocab);
        s->pos[i] = i;
    }
    *out = s;
    return Q3_OK;
}

void q3_speed_free(q3_speed *s) {
    if (!s) return;
    q3_runner_free(s->r);
    q3_kv_cache_free(s->kv);
    free(s->logits), free(s->tokens), free(s->pos), free(s->seq), free(s->want);
    free(s);
}

int q3_speed_threads(const q3_speed *s) { return q3_runner_threads(s->r); }

/* ---- warming up ---- */

static uint64_t touch_bytes(const void *data, size_t n) {
    const volatile unsigned char *p = data;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i += 4096) sum += p[i];
    return n ? sum + p[n - 1] : sum;
}

static uint64_t touch_mat(const q3_mat *w) {
    return w->data ? touch_bytes(w->data, (size_t)w->rows * w->row_bytes) : 0;
}

static uint64_t touch_ffn(const q3_ffn *f) { return touch_mat(&f->gate) + touch_mat(&f->up) + touch_mat(&f->down); }

static void touch_weights(const q3_model *m) {
    uint64_t sum = touch_mat(&m->embed) + touch_mat(&m->lm_head);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const q3_layer *L = &m->layers[l];
        sum += touch_mat(&L->wq) + touch_mat(&L->wk) + touch_mat(&L->wv) + touch_mat(&L->wo);
        if (!L->is_moe) {
            sum += touch_ffn(&L->dense);
            continue;
        }
        sum += touch_mat(&L->router);
        /* Only this process's experts: under mpirun the others belong to other ranks. */
        for (int x = 0; x < m->cfg.n_experts; x++)
            if (q3_shard_owns_expert(&m->shard, x)) sum += touch_ffn(&L->experts[x]);
    }
    volatile uint64_t keep = sum; /* the reads are the point; keep them */
    (void)keep;
}

/* ---- the timed parts ---- */

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

static bool all_finite(const float *v, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i])) return false;
    return true;
}

/* The prompt [0, n) in chunks; logits of its last token land in s->logits. */
static q3_status prefill(q3_speed *s, int n, q3_error *e) {
    for (int off = 0; off < n; off += s->chunk) {
        int len = n - off < s->chunk ? n - off : s->chunk;
        for (int i = 0; i < len; i++) s->want[i] = off + i == n - 1;
        q3_batch b = {len, s->tokens + off, s->pos + off, s->seq, s->want};
        q3_status st = q3_forward(s->r, s->kv, &b, s->logits, e);
        if (st) return st;
    }
    return Q3_OK;
}

/* Tokens at positions [start, start + n), one per step. With logits, each step's input is the
 * argmax of the previous step's logits (greedy decoding); without, the tokens a greedy run
 * chose before are replayed, so both runs attend to the same context. */
static q3_status decode(q3_speed *s, int start, int n, bool with_logits, bool *finite, q3_error *e) {
    s->want[0] = with_logits;
    for (int i = 0; i < n; i++) {
        int p = start + i;
        if (with_logits) s->tokens[p] = argmax(s->logits, s->vocab);
        q3_batch b = {1, s->tokens + p, s->pos + p, s->seq, s->want};
        q3_status st = q3_forward(s->r, s->kv, &b, with_logits ? s->logits : NULL, e);
        if (st) return st;
    }
    if (with_logits && !all_finite(s->logits, s->vocab)) *finite = false;
    return Q3_OK;
}

q3_status q3_speed_warm_up(q3_speed *s, q3_error *e) {
    touch_weights(s->m);
    int prompt = s->max_context / 2 < 16 ? s->max_context / 2 : 16;
    bool finite = true;
    q3_kv_cache_truncate(s->kv, 0, 0);
    q3_status st = prefill(s, prompt, e);
    if (!st) st = decode(s, prompt, 1, true, &finite, e);
    q3_kv_cache_truncate(s->kv, 0, 0);
    return st;
}

static void keep_min(double *best, double t) {
    if (*best == 0 || t < *best) *best = t;
}

q3_status q3_speed_measure(q3_speed *s, int prompt_tokens, int gen_tokens, int repeat, bool with_body,
                           q3_speed_times *out, q3_error *e) {
    memset(out, 0, sizeof *out);
    out->finite = true;
    if (prompt_tokens < 1 || gen_tokens < 1 || prompt_tokens + gen_tokens > s->max_context)
        return q3_fail(e, Q3_EINVAL, "bench: %d prompt + %d generated tokens do not fit the context of %d",
                       prompt_tokens, gen_tokens, s->max_context);
    for (int rep = 0; rep < repeat; rep++) {
        q3_kv_cache_truncate(s->kv, 0, 0);
        double t0 = q3_now_s();
        q3_status st = prefill(s, prompt_tokens, e);
        double t1 = q3_now_s();
        if (!st && !all_finite(s->logits, s->vocab)) out->finite = false;
        if (!st) st = decode(s, prompt_tokens, gen_tokens, true, &out->finite, e);
        double t2 = q3_now_s();
        if (st) return st;
        keep_min(&out->prefill_s, t1 - t0);
        keep_min(&out->decode_s, t2 - t1);
        if (!with_body) continue;
        q3_kv_cache_truncate(s->kv, 0, prompt_tokens);
        t0 = q3_now_s();
        st = decode(s, prompt_tokens, gen_tokens, false, &out->finite, e);
        t1 = q3_now_s();
        if (st) return st;
        keep_min(&out->decode_body_s, t1 - t0);
    }
    q3_kv_cache_truncate(s->kv, 0, 0);
    return Q3_OK;
}
