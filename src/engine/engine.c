/* The engine loop and its scheduler (see engine.h for the data flow).
 *
 * Sequences move queued -> running -> finished. Each step the scheduler
 *   1. drops cancelled sequences and admits queued ones in order while a batch slot and enough
 *      KV pages for the whole prompt are free (the queue head blocks the rest: FCFS);
 *   2. gives every running sequence in decode its one token, then shares chunk_size prompt tokens
 *      among the sequences still in prefill, oldest first;
 *   3. if the step needs more pages than are free, preempts the youngest sequence (its pages are
 *      freed and it goes back to the queue head, to be recomputed from its tokens), and retries;
 *   4. runs the forward pass, samples, detokenizes, applies stop strings, reports events.
 * Finished sequences leave their pages behind as a prefix cache: a new request whose prompt
 * starts with the same tokens maps those pages instead of recomputing them. The cache gives its
 * pages back, least recently used first, whenever a running sequence needs them. */
#include "base/clock.h"
#include "engine/engine.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "engine/constraint.h"
#include "kv/kv_cache.h"
#include "model/model.h"
#include "model/runner.h"
#include "text/stop.h"

#define PROMPT_ROWS 16 /* logits rows for scoring prompts, beyond one per running sequence */

typedef struct seq {
    uint64_t id;
    int slot;                 /* KV cache sequence slot */
    int32_t *tokens;          /* prompt, then generated tokens */
    int n_prompt, n_tokens, cap;
    int n_cached;             /* tokens whose keys and values are in the cache */
    int in_batch;             /* tokens of this sequence in the step being built */
    int cached_prefix;        /* prompt tokens taken from the prefix cache */
    int max_tokens, top_logprobs;
    bool ignore_eos, cancelled;
    bool prompt_logprobs;     /* report prompt tokens' log-probabilities (echo) */
    int prompt_reported;      /* prompt tokens reported so far (after a preemption, not again) */
    bool biased;              /* logit_bias given: draws go through q3_sampler_sample_masked */
    constraint cons;
    q3_sampler *sampler;
    q3_stop stop;
    q3_tok_stream text;
    q3_event_fn on_event;
    void *ctx;
    double t_submit, ttft;
    struct seq *next;         /* queue link */
} seq;

/* A finished sequence's tokens whose pages stay mapped in `slot` for reuse. */
typedef struct cached_prefix {
    int slot;                 /* -1: empty entry */
    int32_t *tokens;
    int n;
    uint64_t last_used;
} cached_prefix;

struct q3_engine {
    const q3_tokenizer *tok;
    q3_engine_options o;
    q3_kv_cache *kv;
    q3_runner *runner;
    int vocab;
    int32_t eos[4];
    int n_eos;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    seq *queue_head, *queue_tail;  /* guarded by lock */
    int n_queued;
    uint64_t *cancels;             /* ids to cancel, guarded by lock */
    int n_cancels, cap_cancels;
    uint64_t next_id;
    q3_engine_stats stats;         /* guarded by lock */

    /* Engine thread only. */
    seq **running;                 /* [max_batch_size], in admission order */
    int n_running;
    int *free_slots, n_free_slots;
    cached_prefix *cache;          /* [max_batch_size] */
    uint64_t use_clock;
    int32_t *b_tokens, *b_pos, *b_seq;
    bool *b_logits;
    seq **b_owner;                 /* sequence of each logits row */
    int32_t *b_row_pos;            /* position of each logits row */
    int logit_rows;                /* rows the logits buffer holds */
    float *logits;
    constraint_vocab cv;
    char *text_buf;
    size_t text_cap;
};

q3_engine_options q3_engine_defaults(void) {
    return (q3_engine_options){.max_batch_size = 8, .chunk_size = 512, .page_size = 64, .cache_tokens = 16384,
                               .max_queue = 64, .max_context = 0, .threads = 0, .kv_type = Q3_TYPE_F16,
                               .prefix_cache = true};
}

/* ---- events ---- */

static void emit(seq *s, q3_event *ev) {
    ev->id = s->id;
    ev->prompt_tokens = s->n_prompt;
    ev->completion_tokens = s->n_tokens - s->n_prompt;
    ev->cached_tokens = s->cached_prefix;
    ev->ttft_s = s->ttft;
    s->on_event(s->ctx, ev);
}

static void seq_free(seq *s) {
    if (!s) return;
    constraint_free(&s->cons);
    q3_sampler_free(s->sampler);
    q3_stop_free(&s->stop);
    free(s->tokens);
    free(s);
}

/* ---- prefix cache ---- */

/* Empties a sequence slot's pages and gives the slot back. */
static void release_slot(q3_engine *en, int slot) {
    q3_kv_cache_truncate(en->kv, slot, 0);
    en->free_slots[en->n_free_slots++] = slot;
}

static void cache_drop(q3_engine *en, cached_prefix *c) {
    release_slot(en, c->slot);
    free(c->tokens);
    c->tokens = NULL;
    c->slot = -1;
}

/* Gives back the least recently used cached prefix other than `spare` (NULL: any); false when
 * there is none. */
static bool cache_evict_one_but(q3_engine *en, const cached_prefix *spare) {
    cached_prefix *oldest = NULL;
    for (int i = 0; i < en->o.max_batch_size; i++)
        if (en->cache[i].slot >= 0 && &en->cache[i] != spare &&
            (!oldest || en->cache[i].last_used < oldest->last_used))
            oldest = &en->cache[i];
    if (!oldest) return false;
    cache_drop(en, oldest);
    return true;
}

static bool cache_evict_one(q3_engine *en) { return cache_evict_one_but(en, NULL); }

static cached_prefix *free_cache_entry(q3_engine *en) {
    for (int i = 0; i < en->o.max_batch_size; i++)
        if (en->cache[i].slot < 0) return &en->cache[i];
    return NULL;
}

/* Keeps a finished sequence's pages as a cached prefix (or frees them). */
static void cache_keep(q3_engine *en, seq *s) {
    if (!en->o.prefix_cache || s->n_cached == 0) {
        release_slot(en, s->slot);
        return;
    }
    cached_prefix *c = free_cache_entry(en);
    if (!c && cache_evict_one(en)) c = free_cache_entry(en);
    int32_t *copy = malloc((size_t)s->n_cached * sizeof *copy);
    if (!copy) {
        release_slot(en, s->slot);
        return;
    }
    memcpy(copy, s->tokens, (size_t)s->n_cached * sizeof *copy);
    *c = (cached_prefix){s->slot, copy, s->n_cached, ++en->use_clock};
}

/* The cached prefix sharing the longest start with s's prompt, and how many tokens it shares
 * (at least one prompt token is always left to compute, since its logits start the
 * generation); NULL when none shares half a page, or when every prompt position must be
 * computed for its log-probabilities. */
static cached_prefix *best_cached(const q3_engine *en, const seq *s, int *n_shared) {
    *n_shared = 0;
    if (s->prompt_logprobs) return NULL;
    cached_prefix *best = NULL;
    int best_n = 0;
    for (int i = 0; i < en->o.max_batch_size; i++) {
        cached_prefix *c = &en->cache[i];
        if (c->slot < 0) continue;
        int n = 0, lim = c->n < s->n_tokens - 1 ? c->n : s->n_tokens - 1;
        while (n < lim && c->tokens[n] == s->tokens[n]) n++;
        if (n > best_n) best = c, best_n = n;
    }
    *n_shared = best_n;
    return best && best_n >= en->o.page_size / 2 ? best : NULL;
}

/* Maps the longest cached prefix of s's prompt into s's slot. */
static void cache_reuse(q3_engine *en, seq *s) {
    int best_n;
    cached_prefix *best = best_cached(en, s, &best_n);
    if (!best) return;
    if (q3_kv_cache_share_prefix(en->kv, s->slot, best->slot, best_n, NULL)) return;
    best->last_used = ++en->use_clock;
    s->n_cached = best_n;
    pthread_mutex_lock(&en->lock);
    en->stats.cached_prompt_tokens += (uint64_t)best_n;
    pthread_mutex_unlock(&en->lock);
    if (s->cached_prefix == 0) s->cached_prefix = best_n < s->n_prompt ? best_n : s->n_prompt;
}

/* ---- admission, preemption, finishing ---- */

static int pages_for(const q3_engine *en, int tokens) { return (tokens + en->o.page_size - 1) / en->o.page_size; }

/* Pages the running sequences may need for their next token, kept back from admission. */
static int pages_reserved(const q3_engine *en) { return en->n_running; }

static void finish(q3_engine *en, seq *s, q3_finish why, const char *error) {
    char tail[16];
    size_t n = q3_tok_stream_flush(&s->text, tail, sizeof tail), out = 0;
    bool matched = false;
    if (why != Q3_FINISH_STOP || q3_stop_matched(&s->stop) < 0) {
        if (n) q3_stop_feed(&s->stop, tail, n, en->text_buf, en->text_cap, &out, &matched, NULL);
        size_t more = 0;
        q3_stop_flush(&s->stop, en->text_buf + out, en->text_cap - out, &more, NULL);
        out += more;
    }
    q3_event ev = {.token = -1, .text = en->text_buf, .text_len = out, .finish = why,
                   .stop_index = q3_stop_matched(&s->stop), .error = error};
    emit(s, &ev);
}

static void remove_running(q3_engine *en, int i) {
    memmove(&en->running[i], &en->running[i + 1], (size_t)(en->n_running - i - 1) * sizeof *en->running);
    en->n_running--;
}

static void retire(q3_engine *en, int i, q3_finish why, const char *error) {
    seq *s = en->running[i];
    finish(en, s, why, error);
    remove_running(en, i);
    s->n_cached = s->n_cached < s->n_tokens ? s->n_cached : s->n_tokens;
    cache_keep(en, s);
    seq_free(s);
}

static void push_front(q3_engine *en, seq *s) {
    pthread_mutex_lock(&en->lock);
    s->next = en->queue_head;
    en->queue_head = s;
    if (!en->queue_tail) en->queue_tail = s;
    en->n_queued++;
    pthread_mutex_unlock(&en->lock);
}

/* The youngest running sequence goes back to the queue head; its pages are freed and its tokens
 * (prompt and generated so far) will be prefilled again when it is readmitted. */
static void preempt_youngest(q3_engine *en) {
    seq *s = en->running[en->n_running - 1];
    en->n_running--;
    release_slot(en, s->slot);
    s->slot = -1;
    s->n_cached = 0;
    push_front(en, s);
}

static void apply_cancels(q3_engine *en) {
    pthread_mutex_lock(&en->lock);
    for (int c = 0; c < en->n_cancels; c++) {
        for (seq **p = &en->queue_head, *prev = NULL; *p; prev = *p, p = &(*p)->next) {
            if ((*p)->id != en->cancels[c]) continue;
            seq *s = *p;
            *p = s->next;
            if (en->queue_tail == s) en->queue_tail = prev;
            en->n_queued--;
            s->cancelled = true;
            s->next = NULL;
            s->slot = -1;
            /* Reported outside the queue walk: the callback may take its own locks. */
            pthread_mutex_unlock(&en->lock);
            finish(en, s, Q3_FINISH_CANCELLED, NULL);
            seq_free(s);
            pthread_mutex_lock(&en->lock);
            break;
        }
        for (int i = 0; i < en->n_running; i++)
            if (en->running[i]->id == en->cancels[c]) en->running[i]->cancelled = true;
    }
    en->n_cancels = 0;
    pthread_mutex_unlock(&en->lock);
    for (int i = en->n_running - 1; i >= 0; i--)
        if (en->running[i]->cancelled) retire(en, i, Q3_FINISH_CANCELLED, NULL);
}

static seq *pop_admissible(q3_engine *en) {
    pthread_mutex_lock(&en->lock);
    seq *s = en->queue_head;
    if (s) {
        en->queue_head = s->next;
        if (!en->queue_head) en->queue_tail = NULL;
        en->n_queued--;
        s->next = NULL;
    }
    pthread_mutex_unlock(&en->lock);
    return s;
}

/* Pages the queue's head needs for its prompt and first token, less the whole pages a cached
 * prefix would lend it (shared by reference, not allocated), and that prefix (NULL: none). */
static bool head_fits(q3_engine *en, int *need, cached_prefix **lender) {
    pthread_mutex_lock(&en->lock);
    seq *s = en->queue_head;
    int shared = 0;
    *lender = s ? best_cached(en, s, &shared) : NULL;
    *need = s ? pages_for(en, s->n_tokens + 1) - (*lender ? shared / en->o.page_size : 0) : 0;
    pthread_mutex_unlock(&en->lock);
    return s != NULL;
}

static void admit(q3_engine *en) {
    int need;
    cached_prefix *lender;
    while (en->n_running < en->o.max_batch_size && head_fits(en, &need, &lender)) {
        int used, free_pages;
        q3_kv_cache_usage(en->kv, &used, &free_pages);
        /* Other cached prefixes go first; the one the head would share from last, and then the
         * head needs its whole prompt's pages again. */
        while (free_pages - pages_reserved(en) < need || en->n_free_slots == 0) {
            if (!cache_evict_one_but(en, lender)) {
                if (!lender) break;
                cache_drop(en, lender);
                head_fits(en, &need, &lender);
            }
            q3_kv_cache_usage(en->kv, &used, &free_pages);
        }
        if (free_pages - pages_reserved(en) < need || en->n_free_slots == 0) {
            if (en->n_running > 0) return; /* wait for running sequences to finish */
            seq *s = pop_admissible(en);   /* alone and still too big: it can never run */
            s->slot = -1;
            finish(en, s, Q3_FINISH_ERROR, "the prompt does not fit in the KV cache (--cache-lens)");
            seq_free(s);
            continue;
        }
        seq *s = pop_admissible(en);
        s->slot = en->free_slots[--en->n_free_slots];
        cache_reuse(en, s);
        en->running[en->n_running++] = s;
    }
}

/* ---- one step ---- */

/* Whether position p of s gets a logits row: its last token's, to draw the next, and with
 * prompt_logprobs every prompt position not reported yet, to score the token after it. */
static bool wants_logits(const seq *s, int p) {
    return p == s->n_tokens - 1 || (s->prompt_logprobs && p <= s->n_prompt - 2 && p + 1 > s->prompt_reported);
}

/* Lays out the batch: decode tokens first, then prefill chunks within the token budget, and
 * within the logits buffer's rows (a chunk of a prompt being scored takes a row per token; one row
 * is kept for each sequence still to come). Returns the number of tokens; *pages receives the
 * pages it needs, *rows the logits rows. */
static int build_batch(q3_engine *en, int *pages, int *rows) {
    int n = 0, budget = en->o.chunk_size, prefilling = 0;
    *pages = 0;
    *rows = 0;
    for (int i = 0; i < en->n_running; i++) {
        seq *s = en->running[i];
        s->in_batch = 0;
        prefilling += s->n_tokens - s->n_cached > 1 || s->n_tokens == s->n_prompt;
    }
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < en->n_running; i++) {
            seq *s = en->running[i];
            int left = s->n_tokens - s->n_cached;
            bool decoding = left == 1 && s->n_tokens > s->n_prompt;
            if ((pass == 0) != decoding || left <= 0) continue;
            int take = decoding ? 1 : (left < budget ? left : budget);
            int spare_rows = en->logit_rows - *rows - prefilling; /* this one's own row is in prefilling */
            if (!decoding) prefilling--;
            if (s->prompt_logprobs && take > spare_rows + 1) take = spare_rows + 1;
            if (take <= 0) continue;
            if (!decoding) budget -= take;
            s->in_batch = take;
            *pages += q3_kv_pages_needed(en->kv, s->slot, s->n_cached + take);
            for (int j = 0; j < take; j++, n++) {
                int p = s->n_cached + j;
                en->b_tokens[n] = s->tokens[p];
                en->b_pos[n] = p;
                en->b_seq[n] = s->slot;
                en->b_logits[n] = wants_logits(s, p);
                if (!en->b_logits[n]) continue;
                en->b_owner[*rows] = s;
                en->b_row_pos[(*rows)++] = p;
            }
        }
    }
    return n;
}

static bool is_eos(const q3_engine *en, int32_t t) {
    for (int i = 0; i < en->n_eos; i++)
        if (en->eos[i] == t) return true;
    return false;
}

/* The next token of s from its logits row: drawn from what its grammar allows, if it has one.
 * -1 when the grammar allows nothing (it cannot happen for a grammar of ours) or fails. */
static int32_t draw(q3_engine *en, seq *s, float *row, const char **error) {
    const uint64_t *allow = NULL;
    q3_error e = {0};
    if (constraint_allowed(&en->cv, &s->cons, &allow, &e)) {
        *error = "constrained decoding: out of memory";
        return -1;
    }
    if (!allow && !s->biased) return q3_sampler_sample(s->sampler, row, en->vocab);
    return q3_sampler_sample_masked(s->sampler, row, en->vocab, allow);
}

/* Samples s's next token from its logits row and reports it; returns how s finished, if it did. */
static q3_finish advance(q3_engine *en, seq *s, float *row, const char **error) {
    if (s->max_tokens == 0) return Q3_FINISH_LENGTH; /* the prompt was only to be scored */
    q3_event ev = {.token = -1, .stop_index = -1};
    int32_t t = draw(en, s, row, error);
    if (t < 0) return *error ? Q3_FINISH_ERROR : Q3_FINISH_STOP;
    if (s->top_logprobs >= 0) {
        ev.n_top = q3_logprobs(row, en->vocab, t, &ev.logprob, s->top_logprobs, ev.top_ids, ev.top_logprobs);
    }
    q3_sampler_accept(s->sampler, t);
    if (s->ttft == 0) s->ttft = q3_now_s() - s->t_submit;
    s->tokens[s->n_tokens++] = t;
    ev.token = t;
    bool complete = constraint_follow(&en->cv, &s->cons, t);
    bool eos = !s->ignore_eos && is_eos(en, t), matched = false;
    size_t piece = 0, out = 0;
    if (!eos) {
        if (en->tok) q3_tok_stream_push(en->tok, &s->text, t, en->text_buf, en->text_cap / 2, &piece, NULL);
        char *dst = en->text_buf + en->text_cap / 2;
        q3_stop_feed(&s->stop, en->text_buf, piece, dst, en->text_cap / 2, &out, &matched, NULL);
        ev.text = dst;
        ev.text_len = out;
    }
    emit(s, &ev);
    if (eos || matched || complete) return Q3_FINISH_STOP;
    if (s->n_tokens - s->n_prompt >= s->max_tokens || s->n_tokens >= en->o.max_context) return Q3_FINISH_LENGTH;
    return Q3_FINISH_NONE;
}

/* Reports prompt token p + 1 of s, scored by the logits of position p. */
static void report_prompt_token(q3_engine *en, seq *s, const float *row, int p) {
    q3_event ev = {.prompt = true, .token = s->tokens[p + 1], .stop_index = -1};
    int k = s->top_logprobs > 0 ? s->top_logprobs : 0;
    ev.n_top = q3_logprobs(row, en->vocab, ev.token, &ev.logprob, k, ev.top_ids, ev.top_logprobs);
    s->prompt_reported = p + 1;
    emit(s, &ev);
}

/* Adds the tokens drawn so far to the counters the server reports. */
static void count_generated(q3_engine *en, int *drawn) {
    pthread_mutex_lock(&en->lock);
    en->stats.generated_tokens += (uint64_t)*drawn;
    pthread_mutex_unlock(&en->lock);
    *drawn = 0;
}

static void step(q3_engine *en) {
    int pages, rows, n, used, free_pages;
    for (;;) {
        n = build_batch(en, &pages, &rows);
        q3_kv_cache_usage(en->kv, &used, &free_pages);
        while (pages > free_pages && cache_evict_one(en)) q3_kv_cache_usage(en->kv, &used, &free_pages);
        if (pages <= free_pages || en->n_running <= 1) break;
        preempt_youngest(en);
    }
    if (pages > free_pages) { /* alone and out of cache: it ends as if max_tokens were reached */
        retire(en, 0, Q3_FINISH_LENGTH, NULL);
        return;
    }
    if (n == 0) return;
    q3_batch b = {n, en->b_tokens, en->b_pos, en->b_seq, en->b_logits};
    q3_error err = {0};
    if (q3_forward(en->runner, en->kv, &b, en->logits, &err)) {
        for (int i = en->n_running - 1; i >= 0; i--) retire(en, i, Q3_FINISH_ERROR, err.msg);
        return;
    }
    for (int i = 0; i < en->n_running; i++) en->running[i]->n_cached += en->running[i]->in_batch;
    int drawn = 0;
    for (int r = 0; r < rows; r++) {
        seq *s = en->b_owner[r];
        float *row = en->logits + (size_t)r * en->vocab;
        if (en->b_row_pos[r] < s->n_tokens - 1) { /* a prompt position being scored */
            report_prompt_token(en, s, row, en->b_row_pos[r]);
            continue;
        }
        const char *error = NULL;
        q3_finish why = advance(en, s, row, &error);
        drawn += s->max_tokens > 0;
        if (why == Q3_FINISH_NONE) continue;
        count_generated(en, &drawn); /* before the client can see its reply end */
        for (int i = 0; i < en->n_running; i++)
            if (en->running[i] == s) retire(en, i, why, error);
    }
    count_generated(en, &drawn);
    pthread_mutex_lock(&en->lock);
    en->stats.steps++;
    en->stats.bytes_read = q3_runner_bytes_read(en->runner);
    pthread_mutex_unlock(&en->lock);
}

static void *loop(void *arg) {
    q3_engine *en = arg;
    for (;;) {
        pthread_mutex_lock(&en->lock);
        while (!en->stopping && en->n_running == 0 && !en->queue_head && en->n_cancels == 0)
            pthread_cond_wait(&en->wake, &en->lock);
        bool stop = en->stopping;
        pthread_mutex_unlock(&en->lock);
        if (stop) break;
        apply_cancels(en);
        admit(en);
        step(en);
        int used, free_pages;
        q3_kv_cache_usage(en->kv, &used, &free_pages);
        pthread_mutex_lock(&en->lock);
        en->stats.running = en->n_running;
        en->stats.queued = en->n_queued;
        en->stats.kv_pages_used = used;
        en->stats.kv_pages_free = free_pages;
        pthread_mutex_unlock(&en->lock);
    }
    while (en->n_running) retire(en, en->n_running - 1, Q3_FINISH_CANCELLED, NULL);
    for (seq *s; (s = pop_admissible(en));) {
        finish(en, s, Q3_FINISH_CANCELLED, NULL);
        seq_free(s);
    }
    return NULL;
}

/* ---- setup ---- */

static void add_eos(q3_engine *en, int32_t t) {
    if (t < 0 || t >= en->vocab || is_eos(en, t) || en->n_eos == 4) return;
    en->eos[en->n_eos++] = t;
}

static q3_status alloc_buffers(q3_engine *en, q3_error *e) {
    int B = en->o.max_batch_size, T = en->o.chunk_size + B;
    en->running = calloc((size_t)B, sizeof *en->running);
    en->free_slots = malloc((size_t)(2 * B) * sizeof *en->free_slots);
    en->cache = malloc((size_t)B * sizeof *en->cache);
    en->b_tokens = malloc((size_t)T * sizeof(int32_t));
    en->b_pos = malloc((size_t)T * sizeof(int32_t));
    en->b_seq = malloc((size_t)T * sizeof(int32_t));
    en->b_logits = malloc((size_t)T * sizeof(bool));
    /* Rows for every sequence's next token, and PROMPT_ROWS more for scoring prompts (echo). */
    en->logit_rows = B + PROMPT_ROWS;
    en->b_owner = malloc((size_t)en->logit_rows * sizeof *en->b_owner);
    en->b_row_pos = malloc((size_t)en->logit_rows * sizeof *en->b_row_pos);
    en->logits = malloc((size_t)en->logit_rows * en->vocab * sizeof(float));
    en->text_cap = 2 * ((en->tok ? q3_tok_stream_cap(en->tok) : 0) + 4096);
    en->text_buf = malloc(en->text_cap);
    if (!en->running || !en->free_slots || !en->cache || !en->b_tokens || !en->b_pos || !en->b_seq ||
        !en->b_logits || !en->b_owner || !en->b_row_pos || !en->logits || !en->text_buf)
        return q3_fail(e, Q3_ENOMEM, "engine: out of memory");
    for (int i = 0; i < 2 * B; i++) en->free_slots[i] = 2 * B - 1 - i;
    en->n_free_slots = 2 * B;
    for (int i = 0; i < B; i++) en->cache[i] = (cached_prefix){.slot = -1};
    return Q3_OK;
}

static q3_status check_options(q3_engine_options *o, const q3_config *c, q3_error *e) {
    if (o->max_context <= 0 || o->max_context > c->max_context) o->max_context = c->max_context;
    if (o->max_batch_size < 1 || o->max_batch_size > 1024)
        return q3_fail(e, Q3_EINVAL, "engine: max batch size %d out of 1..1024", o->max_batch_size);
    if (o->chunk_size < 1) return q3_fail(e, Q3_EINVAL, "engine: chunk size must be positive");
    if (o->page_size < 1 || o->page_size > 4096) return q3_fail(e, Q3_EINVAL, "engine: page size %d out of 1..4096", o->page_size);
    if (o->cache_tokens < o->page_size) return q3_fail(e, Q3_EINVAL, "engine: cache of %d tokens is smaller than a page", o->cache_tokens);
    if (o->max_queue < 0) return q3_fail(e, Q3_EINVAL, "engine: max queue must not be negative");
    return Q3_OK;
}

q3_status q3_engine_new(q3_engine **out, const q3_model *m, const q3_tokenizer *tok, const q3_engine_options *opts,
                        q3_error *e) {
    *out = NULL;
    q3_engine *en = calloc(1, sizeof *en);
    if (!en) return q3_fail(e, Q3_ENOMEM, "engine: out of memory");
    en->tok = tok;
    en->o = *opts;
    en->vocab = q3_model_config(m)->vocab_size;
    en->next_id = 1;
    pthread_mutex_init(&en->lock, NULL);
    pthread_cond_init(&en->wake, NULL);
    q3_status st = check_options(&en->o, q3_model_config(m), e);
    int n_pages = (en->o.cache_tokens + en->o.page_size - 1) / en->o.page_size;
    q3_kv_options ko = {en->o.kv_type, en->o.page_size, n_pages, 2 * en->o.max_batch_size, en->o.max_context};
    if (st || (st = alloc_buffers(en, e)) || (st = q3_kv_cache_new(&en->kv, m, &ko, e)) ||
        (st = q3_runner_new(&en->runner, m, en->o.chunk_size + en->o.max_batch_size, en->o.threads, e))) {
        q3_engine_free(en);
        return st;
    }
    if (tok) {
        add_eos(en, q3_tok_find(tok, "<|im_end|>"));
        add_eos(en, q3_tok_find(tok, "<|endoftext|>"));
        add_eos(en, q3_tok_eos(tok));
    }
    add_eos(en, q3_model_config(m)->eos_token);
    constraint_vocab_init(&en->cv, tok, en->vocab, en->eos, en->n_eos);
    en->stats.page_size = en->o.page_size;
    en->stats.kv_pages_free = n_pages;
    if (pthread_create(&en->thread, NULL, loop, en) != 0) {
        q3_engine_free(en);
        return q3_fail(e, Q3_ENOMEM, "engine: cannot start its thread");
    }
    *out = en;
    return Q3_OK;
}

void q3_engine_free(q3_engine *en) {
    if (!en) return;
    if (en->thread) {
        pthread_mutex_lock(&en->lock);
        en->stopping = true;
        pthread_cond_signal(&en->wake);
        pthread_mutex_unlock(&en->lock);
        pthread_join(en->thread, NULL);
    }
    for (int i = 0; en->cache && i < en->o.max_batch_size; i++) free(en->cache[i].tokens);
    q3_runner_free(en->runner);
    q3_kv_cache_free(en->kv);
    constraint_vocab_free(&en->cv);
    void *bufs[] = {en->running, en->free_slots, en->cache, en->b_tokens, en->b_pos, en->b_seq, en->b_logits,
                    en->b_owner, en->b_row_pos, en->logits, en->text_buf, en->cancels};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    pthread_mutex_destroy(&en->lock);
    pthread_cond_destroy(&en->wake);
    free(en);
}

static q3_status make_seq(q3_engine *en, const q3_request *req, seq **out, q3_error *e) {
    if (req->n_prompt <= 0) return q3_fail(e, Q3_EINVAL, "the prompt is empty");
    if (req->max_tokens < 0 || (req->max_tokens == 0 && !req->prompt_logprobs))
        return q3_fail(e, Q3_EINVAL, "max_tokens must be positive, not %d", req->max_tokens);
    if (req->prompt_logprobs && req->top_logprobs < 0)
        return q3_fail(e, Q3_EINVAL, "prompt log-probabilities need top_logprobs >= 0");
    if (req->n_prompt >= en->o.max_context)
        return q3_fail(e, Q3_EINVAL, "the prompt has %d tokens; the context holds %d", req->n_prompt, en->o.max_context);
    if (req->top_logprobs > Q3_MAX_TOP_LOGPROBS)
        return q3_fail(e, Q3_EINVAL, "top_logprobs must be at most %d", Q3_MAX_TOP_LOGPROBS);
    if (!req->on_event) return q3_fail(e, Q3_EINVAL, "a request needs an event callback");
    /* Held-back text must fit the event buffers. */
    for (int i = 0; i < req->n_stop; i++)
        if (req->stop[i] && strlen(req->stop[i]) > 1024) return q3_fail(e, Q3_EINVAL, "stop string %d is longer than 1024 bytes", i);
    for (int i = 0; i < req->n_prompt; i++)
        if (req->prompt[i] < 0 || req->prompt[i] >= en->vocab)
            return q3_fail(e, Q3_EINVAL, "prompt token %d at index %d is outside the vocabulary", req->prompt[i], i);
    q3_status st = q3_sampling_check(&req->sampling, e);
    if (st) return st;
    seq *s = calloc(1, sizeof *s);
    if (!s) return q3_fail(e, Q3_ENOMEM, "out of memory");
    int64_t limit = (int64_t)req->n_prompt + req->max_tokens; /* max_tokens may be INT_MAX */
    s->cap = limit < en->o.max_context ? (int)limit : en->o.max_context;
    s->tokens = malloc((size_t)s->cap * sizeof *s->tokens);
    if (!s->tokens || (st = q3_sampler_new(&s->sampler, &req->sampling, en->vocab, e)) ||
        (st = q3_stop_init(&s->stop, req->stop, req->n_stop, e)) ||
        (req->n_bias && (st = q3_sampler_set_bias(s->sampler, req->bias_ids, req->bias, req->n_bias, e))) ||
        (st = constraint_start(&s->cons, &en->cv, req->grammar, req->grammar_reasoning, e))) {
        seq_free(s);
        return st ? st : q3_fail(e, Q3_ENOMEM, "out of memory");
    }
    memcpy(s->tokens, req->prompt, (size_t)req->n_prompt * sizeof *s->tokens);
    s->n_prompt = s->n_tokens = req->n_prompt;
    s->max_tokens = req->max_tokens;
    s->top_logprobs = req->top_logprobs;
    s->ignore_eos = req->ignore_eos;
    s->prompt_logprobs = req->prompt_logprobs;
    s->biased = req->n_bias > 0;
    s->on_event = req->on_event;
    s->ctx = req->ctx;
    s->slot = -1;
    s->t_submit = q3_now_s();
    q3_tok_stream_init(&s->text);
    q3_sampler_accept_prompt(s->sampler, req->prompt, req->n_prompt);
    *out = s;
    return Q3_OK;
}

q3_status q3_engine_submit(q3_engine *en, const q3_request *req, uint64_t *id, q3_error *e) {
    seq *s = NULL;
    q3_status st = make_seq(en, req, &s, e);
    if (st) return st;
    pthread_mutex_lock(&en->lock);
    /* Requests that free batch slots will take at once are not waiting. */
    int waiting = en->n_queued - (en->o.max_batch_size - en->stats.running);
    if (waiting >= en->o.max_queue) {
        pthread_mutex_unlock(&en->lock);
        seq_free(s);
        return q3_fail(e, Q3_EFULL, "the request queue is full (%d waiting)", en->o.max_queue);
    }
    s->id = en->next_id++;
    if (en->queue_tail) en->queue_tail->next = s;
    else en->queue_head = s;
    en->queue_tail = s;
    en->n_queued++;
    en->stats.prompt_tokens += (uint64_t)s->n_prompt;
    en->stats.queued = en->n_queued;
    if (id) *id = s->id;
    pthread_cond_signal(&en->wake);
    pthread_mutex_unlock(&en->lock);
    return Q3_OK;
}

void q3_engine_cancel(q3_engine *en, uint64_t id) {
    pthread_mutex_lock(&en->lock);
    if (en->n_cancels == en->cap_cancels) {
        int cap = en->cap_cancels ? en->cap_cancels * 2 : 16;
        uint64_t *p = realloc(en->cancels, (size_t)cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&en->lock);
            return;
        }
        en->cancels = p;
        en->cap_cancels = cap;
    }
    en->cancels[en->n_cancels++] = id;
    pthread_cond_signal(&en->wake);
    pthread_mutex_unlock(&en->lock);
}

void q3_engine_stats_get(q3_engine *en, q3_engine_stats *s) {
    pthread_mutex_lock(&en->lock);
    *s = en->stats;
    pthread_mutex_unlock(&en->lock);
}

/* ---- waiting for one request ---- */

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t done_cv;
    q3_finish finish;
    char error[256];
    q3_event_fn user;
    void *user_ctx;
} waiter;

static void wait_event(void *ctx, const q3_event *ev) {
    waiter *w = ctx;
    w->user(w->user_ctx, ev);
    if (ev->finish == Q3_FINISH_NONE) return;
    pthread_mutex_lock(&w->lock);
    w->finish = ev->finish;
    if (ev->error) snprintf(w->error, sizeof w->error, "%s", ev->error);
    pthread_cond_signal(&w->done_cv);
    pthread_mutex_unlock(&w->lock);
}

q3_finish q3_engine_generate(q3_engine *en, const q3_request *req, q3_error *e) {
    waiter w = {.finish = Q3_FINISH_NONE, .user = req->on_event, .user_ctx = req->ctx};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.done_cv, NULL);
    q3_request r = *req;
    r.on_event = wait_event;
    r.ctx = &w;
    if (q3_engine_submit(en, &r, NULL, e)) {
        w.finish = Q3_FINISH_ERROR;
    } else {
        pthread_mutex_lock(&w.lock);
        while (w.finish == Q3_FINISH_NONE) pthread_cond_wait(&w.done_cv, &w.lock);
        pthread_mutex_unlock(&w.lock);
        if (w.finish == Q3_FINISH_ERROR) q3_fail(e, Q3_EINVAL, "%s", w.error);
    }
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.done_cv);
    return w.finish;
}
