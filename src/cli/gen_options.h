/* Options every generating command shares (run, chat, bench, serve): sampling overrides, stop
 * strings and the engine's knobs, parsed once here, plus the one-request generation path and its
 * speed report. */
#ifndef Q3_GEN_OPTIONS_H
#define Q3_GEN_OPTIONS_H

#include <getopt.h>
#include "cli/common.h"
#include "engine/engine.h"

#define Q3_GEN_MAX_STOPS 16

#define Q3_GEN_OPTIONS_USAGE                                                                    \
    "[--temp T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--repeat-last-n N]\n" \
    "                 [--presence-penalty P] [--frequency-penalty F] [-s|--seed S] [--stop TEXT]...\n" \
    "                 [--ignore-eos] [-t|--threads N] [-c|--ctx-size N] [--kv-type f16|bf16|f32|q8_0]\n"  \
    "                 [--batch-size N] [--chunk-size N] [--page-size N] [--cache-lens N] [--max-queue N]\n" \
    "                 [--numa auto|distribute|off] " Q3_LOAD_OPTIONS_USAGE

typedef struct q3_gen_options {
    /* sampling overrides; unset ones keep the model's defaults */
    bool set_temperature, set_top_k, set_top_p, set_min_p, set_repeat, set_last_n, set_presence,
        set_frequency, set_seed;
    q3_sampling sampling;
    const char *stops[Q3_GEN_MAX_STOPS];
    int n_stops;
    bool ignore_eos;
    q3_engine_options engine;
    q3_load_options load; /* --numa, --rope-scaling, --device, --cpu-experts, --gpu-experts */
    /* filled by q3_gen_generate */
    int prompt_tokens;
    double ttft_s;
} q3_gen_options;

/* Defaults: the engine's defaults, no overrides. Cannot fail. */
void q3_gen_options_init(q3_gen_options *g);
/* Appends the shared long options to opts (cap entries, NULL-terminated) after its used entries. */
void q3_gen_options_add_long(struct option *opts, int cap);
/* Handles one getopt result: 0 when it was one of ours and valid, 1 (after printing why) when it
 * was ours and invalid, -1 when it is not ours. Short options: -t threads, -s seed, -c ctx size. */
int q3_gen_options_parse(q3_gen_options *g, int ch, const char *arg);
/* The model's defaults with the overrides applied; cannot fail. */
q3_sampling q3_gen_sampling(const q3_gen_options *g, const q3_sampling *defaults);

/* An engine for interactive use on this model: engine options from g, one sequence at a time
 * unless --batch-size says otherwise. Prints the error and returns NULL on failure. */
q3_engine *q3_gen_engine_new(q3_gen_options *g, const q3_model *m, const q3_tokenizer *tok);
/* Prints, before the cache is allocated, what the KV cache of these engine options takes:
 * tokens, geometry, type and MiB (run, chat and serve do it for contexts past 32K, or with
 * --numa's verbose loading). Cannot fail. */
void q3_gen_report_kv(const q3_model *m, const q3_engine_options *o);
/* Tokenizes text (special tokens parsed when parse_special, as a chat template needs) and
 * generates up to max_new tokens through en, reporting events to on_event. Returns 0, or 1
 * after printing the error. Sets g->prompt_tokens and g->ttft_s. */
int q3_gen_generate(q3_gen_options *g, q3_engine *en, const q3_tokenizer *tok, const q3_sampling *defaults,
                    const char *text, bool parse_special, int max_new, q3_event_fn on_event, void *ctx);
/* The same with a temporary engine, for one-shot commands. */
int q3_gen_run_one(q3_gen_options *g, const q3_model *m, const q3_tokenizer *tok, const q3_sampling *defaults,
                   const char *text, bool parse_special, int max_new, q3_event_fn on_event, void *ctx);
/* Prints "prompt: N tokens, X tok/s | generation: M tokens, Y tok/s" to stderr; cannot fail. */
void q3_gen_report(const q3_gen_options *g, int generated, double t_first, double t_last);

#endif
