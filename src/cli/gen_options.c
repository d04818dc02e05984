/* The shared generation options and the one-request generation path. */
#include "cli/gen_options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/common.h"
#include "quant/types.h"
#include "q3moe.h"

enum {
    O_TEMP = 400, O_TOP_K, O_TOP_P, O_MIN_P, O_REPEAT, O_LAST_N, O_PRESENCE, O_FREQUENCY, O_STOP, O_IGNORE_EOS,
    O_KV_TYPE, O_BATCH, O_CHUNK, O_PAGE, O_CACHE, O_QUEUE, O_NUMA
};

static const struct option SHARED[] = {
    {"temp", required_argument, 0, O_TEMP},
    {"temperature", required_argument, 0, O_TEMP},
    {"top-k", required_argument, 0, O_TOP_K},
    {"top-p", required_argument, 0, O_TOP_P},
    {"min-p", required_argument, 0, O_MIN_P},
    {"repeat-penalty", required_argument, 0, O_REPEAT},
    {"repetition-penalty", required_argument, 0, O_REPEAT},
    {"repeat-last-n", required_argument, 0, O_LAST_N},
    {"presence-penalty", required_argument, 0, O_PRESENCE},
    {"frequency-penalty", required_argument, 0, O_FREQUENCY},
    {"seed", required_argument, 0, 's'},
    {"stop", required_argument, 0, O_STOP},
    {"ignore-eos", no_argument, 0, O_IGNORE_EOS},
    {"threads", required_argument, 0, 't'},
    {"ctx-size", required_argument, 0, 'c'},
    {"kv-type", required_argument, 0, O_KV_TYPE},
    {"batch-size", required_argument, 0, O_BATCH},
    {"max-batch-size", required_argument, 0, O_BATCH},
    {"chunk-size", required_argument, 0, O_CHUNK},
    {"page-size", required_argument, 0, O_PAGE},
    {"cache-lens", required_argument, 0, O_CACHE},
    {"max-queue", required_argument, 0, O_QUEUE},
    {"numa", required_argument, 0, O_NUMA},
    Q3_LOAD_LONG_OPTIONS,
};

void q3_gen_options_init(q3_gen_options *g) {
    memset(g, 0, sizeof *g);
    g->engine = q3_engine_defaults();
    g->engine.max_batch_size = 1;
    g->load.repack = true; /* decode's speed; --no-repack keeps the weights mapped */
}

void q3_gen_options_add_long(struct option *opts, int cap) {
    int n = 0;
    while (n < cap && opts[n].name) n++;
    for (size_t i = 0; i < sizeof SHARED / sizeof *SHARED && n < cap - 1; i++) opts[n++] = SHARED[i];
    opts[n] = (struct option){0, 0, 0, 0};
}

static bool parse_float(const char *s, const char *opt, float min, float max, float *out) {
    char *end;
    float v = strtof(s, &end);
    if (end == s || *end || !(v >= min && v <= max)) {
        fprintf(stderr, "q3moe: %s: '%s' is not a number in %g..%g\n", opt, s, min, max);
        return false;
    }
    *out = v;
    return true;
}

/* --numa: how to place the experts' weights on NUMA nodes. Asking for it also asks to be told
 * what placement did. */
static bool parse_numa(const char *s, q3_load_options *o) {
    if (!strcmp(s, "distribute")) o->numa = Q3_NUMA_DISTRIBUTE;
    else if (!strcmp(s, "off")) o->numa = Q3_NUMA_OFF;
    else if (!strcmp(s, "auto")) o->numa = Q3_NUMA_AUTO;
    else {
        fprintf(stderr, "q3moe: --numa: '%s' is not distribute, off or auto\n", s);
        return false;
    }
    o->verbose = true;
    return true;
}

static bool parse_long(const char *s, const char *opt, long min, long max, int *out) {
    long v;
    if (!q3_cli_parse_int(s, opt, min, max, &v)) return false;
    *out = (int)v;
    return true;
}

int q3_gen_options_parse(q3_gen_options *g, int ch, const char *arg) {
    q3_sampling *s = &g->sampling;
    q3_engine_options *e = &g->engine;
    bool ok = true;
    switch (ch) {
    case O_TEMP: ok = parse_float(arg, "--temp", 0, 100, &s->temperature), g->set_temperature = true; break;
    case O_TOP_K: ok = parse_long(arg, "--top-k", 0, 1 << 24, &s->top_k), g->set_top_k = true; break;
    case O_TOP_P: ok = parse_float(arg, "--top-p", 0, 1, &s->top_p), g->set_top_p = true; break;
    case O_MIN_P: ok = parse_float(arg, "--min-p", 0, 1, &s->min_p), g->set_min_p = true; break;
    case O_REPEAT: ok = parse_float(arg, "--repeat-penalty", 0.01f, 100, &s->repetition_penalty), g->set_repeat = true; break;
    case O_LAST_N: ok = parse_long(arg, "--repeat-last-n", -1, 1 << 24, &s->penalty_last_n), g->set_last_n = true; break;
    case O_PRESENCE: ok = parse_float(arg, "--presence-penalty", -2, 2, &s->presence_penalty), g->set_presence = true; break;
    case O_FREQUENCY: ok = parse_float(arg, "--frequency-penalty", -2, 2, &s->frequency_penalty), g->set_frequency = true; break;
    case 's': {
        char *end;
        unsigned long long v = strtoull(arg, &end, 10);
        ok = end != arg && !*end && arg[0] != '-';
        if (!ok) fprintf(stderr, "q3moe: --seed: '%s' is not a non-negative integer\n", arg);
        s->seed = v;
        g->set_seed = true;
        break;
    }
    case O_STOP:
        if (g->n_stops == Q3_GEN_MAX_STOPS || !*arg) {
            fprintf(stderr, "q3moe: --stop: at most %d non-empty stop strings\n", Q3_GEN_MAX_STOPS);
            ok = false;
        } else {
            g->stops[g->n_stops++] = arg;
        }
        break;
    case O_IGNORE_EOS: g->ignore_eos = true; break;
    case 't': ok = parse_long(arg, "--threads", 1, 1024, &e->threads); break;
    case 'c': ok = parse_long(arg, "--ctx-size", 16, 1 << 24, &e->max_context); break;
    case O_KV_TYPE: ok = q3_cli_parse_kv_type(arg, "--kv-type", &e->kv_type); break;
    case O_BATCH: ok = parse_long(arg, "--batch-size", 1, 1024, &e->max_batch_size); break;
    case O_CHUNK: ok = parse_long(arg, "--chunk-size", 1, 1 << 20, &e->chunk_size); break;
    case O_PAGE: ok = parse_long(arg, "--page-size", 1, 4096, &e->page_size); break;
    case O_CACHE: ok = parse_long(arg, "--cache-lens", 1, 1 << 26, &e->cache_tokens); break;
    case O_QUEUE: ok = parse_long(arg, "--max-queue", 0, 1 << 20, &e->max_queue); break;
    case O_NUMA: ok = parse_numa(arg, &g->load); break;
    default: return q3_cli_parse_load_option(&g->load, ch, arg);
    }
    return ok ? 0 : 1;
}

q3_sampling q3_gen_sampling(const q3_gen_options *g, const q3_sampling *d) {
    q3_sampling s = *d;
    const q3_sampling *o = &g->sampling;
    if (g->set_temperature) s.temperature = o->temperature;
    if (g->set_top_k) s.top_k = o->top_k;
    if (g->set_top_p) s.top_p = o->top_p;
    if (g->set_min_p) s.min_p = o->min_p;
    if (g->set_repeat) s.repetition_penalty = o->repetition_penalty;
    if (g->set_last_n) s.penalty_last_n = o->penalty_last_n;
    if (g->set_presence) s.presence_penalty = o->presence_penalty;
    if (g->set_frequency) s.frequency_penalty = o->frequency_penalty;
    if (g->set_seed) s.seed = o->seed;
    return s;
}

void q3_gen_report_kv(const q3_model *m, const q3_engine_options *o) {
    const q3_config *c = q3_model_config(m);
    int64_t tokens = ((int64_t)o->cache_tokens + o->page_size - 1) / o->page_size * o->page_size;
    double bytes = 2.0 * c->n_layers * c->n_kv_heads * (double)q3_row_bytes(o->kv_type, c->head_dim) * (double)tokens;
    fprintf(stderr, "KV cache: %lld tokens (pages of %d) x %d layers x %d key/value heads x %d, %s: %.1f MiB; context %d\n",
            (long long)tokens, o->page_size, c->n_layers, c->n_kv_heads, c->head_dim, q3_type_name(o->kv_type),
            bytes / (1 << 20), o->max_context);
}

q3_engine *q3_gen_engine_new(q3_gen_options *g, const q3_model *m, const q3_tokenizer *tok) {
    q3_engine_options o = g->engine;
    int ctx = o.max_context > 0 ? o.max_context : q3_model_config(m)->max_context;
    if (o.max_context <= 0 && ctx > 8192) ctx = 8192; /* interactive default; -c for more */
    o.max_context = ctx;
    if (o.cache_tokens < ctx * o.max_batch_size) o.cache_tokens = ctx * o.max_batch_size;
    if (g->load.verbose || ctx > 32768) q3_gen_report_kv(m, &o);
    q3_engine *en = NULL;
    q3_error e = {0};
    if (q3_engine_new(&en, m, tok, &o, &e)) {
        fprintf(stderr, "q3moe: %s\n", e.msg);
        return NULL;
    }
    g->engine = o;
    return en;
}

typedef struct timing {
    q3_gen_options *g;
    q3_event_fn user;
    void *ctx;
} timing;

static void timed_event(void *ctx, const q3_event *ev) {
    timing *t = ctx;
    if (ev->finish != Q3_FINISH_NONE || ev->token >= 0) t->g->ttft_s = ev->ttft_s;
    t->user(t->ctx, ev);
}

int q3_gen_generate(q3_gen_options *g, q3_engine *en, const q3_tokenizer *tok, const q3_sampling *defaults,
                    const char *text, bool parse_special, int max_new, q3_event_fn on_event, void *ctx) {
    q3_error e = {0};
    int32_t *ids = NULL;
    int n = 0;
    if (q3_tok_encode(tok, text, strlen(text), parse_special, &ids, &n, &e)) {
        fprintf(stderr, "q3moe: the prompt: %s\n", e.msg);
        return 1;
    }
    g->prompt_tokens = n;
    timing t = {g, on_event, ctx};
    q3_request req = {.prompt = ids, .n_prompt = n, .sampling = q3_gen_sampling(g, defaults), .max_tokens = max_new,
                      .stop = g->stops, .n_stop = g->n_stops, .ignore_eos = g->ignore_eos, .top_logprobs = -1,
                      .on_event = timed_event, .ctx = &t};
    q3_finish f = q3_engine_generate(en, &req, &e);
    free(ids);
    if (f == Q3_FINISH_ERROR) {
        fprintf(stderr, "q3moe: %s\n", e.msg);
        return 1;
    }
    return 0;
}

int q3_gen_run_one(q3_gen_options *g, const q3_model *m, const q3_tokenizer *tok, const q3_sampling *defaults,
                   const char *text, bool parse_special, int max_new, q3_event_fn on_event, void *ctx) {
    q3_engine *en = q3_gen_engine_new(g, m, tok);
    if (!en) return 1;
    int rc = q3_gen_generate(g, en, tok, defaults, text, parse_special, max_new, on_event, ctx);
    q3_engine_free(en);
    return rc;
}

void q3_gen_report(const q3_gen_options *g, int generated, double t_first, double t_last) {
    double pp = g->ttft_s > 0 ? g->prompt_tokens / g->ttft_s : 0;
    double tg = generated > 1 && t_last > t_first ? (generated - 1) / (t_last - t_first) : 0;
    fprintf(stderr, "prompt: %d tokens, %.1f tok/s | generation: %d tokens, %.1f tok/s\n", g->prompt_tokens, pp,
            generated, tg);
}
