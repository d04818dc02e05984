/* The RoPE scaling options of every command that runs a model (run, chat, serve, bench, logits,
 * perplexity): --rope-scaling yarn --rope-scale F --yarn-orig-ctx N turn YaRN on for a file
 * that does not declare it, as Qwen's model cards tell users to for contexts past 32K. */
#ifndef Q3_ROPE_OPTIONS_H
#define Q3_ROPE_OPTIONS_H

#include <getopt.h>
#include "q3moe.h"

#define Q3_ROPE_OPTIONS_USAGE "[--rope-scaling yarn] [--rope-scale F] [--yarn-orig-ctx N]"

/* getopt_long codes of the three options, above every command's own. */
enum { Q3_OPT_ROPE_SCALING = 0x5200, Q3_OPT_ROPE_SCALE, Q3_OPT_YARN_ORIG_CTX };

/* The three long options, for a command's option table. */
#define Q3_ROPE_LONG_OPTIONS                                        \
    {"rope-scaling", required_argument, 0, Q3_OPT_ROPE_SCALING},    \
    {"rope-scale", required_argument, 0, Q3_OPT_ROPE_SCALE},        \
    {"yarn-orig-ctx", required_argument, 0, Q3_OPT_YARN_ORIG_CTX}

/* Handles one getopt result into s: 0 when it was one of ours and valid, 1 (after printing why)
 * when it was ours and invalid, -1 when it is not ours. --rope-scale and --yarn-orig-ctx imply
 * --rope-scaling yarn. */
int q3_rope_options_parse(q3_rope_scaling *s, int ch, const char *arg);

#endif
