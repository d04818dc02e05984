/* Prompt datasets for `q3moe run --dataset FILE`, in the two forms the seed deployments use:
 *
 *   FILE.json   a JSON list of prompts: ["Write a function...", "What is...", ...]
 *               (an item may also be an object with "context" and "input", as below)
 *   FILE.jsonl  LongBench records, one JSON object a line: {"context": ..., "input": ...,
 *               "answers": [...], "length": ..., "dataset": ..., "_id": ...}; only context and
 *               input are read. The prompt is the context, a blank line, then the input.
 *
 * With a token limit (--input-truncated-len) a prompt that is too long loses the middle of its
 * context, as LongBench's own truncation does: the first half and the last half of the allowed
 * tokens are kept, so the opening of the document and the question at its end survive. The limit
 * counts the whole prompt, chat template and system prompt included.
 *
 * q3_dataset_run runs every prompt in order, one at a time, through one engine, streams each
 * answer to stdout and prints a table of per-prompt figures to stderr. */
#ifndef Q3_CLI_DATASET_H
#define Q3_CLI_DATASET_H

#include <stdbool.h>
#include "cli/gen_options.h"
#include "text/sampler.h"
#include "text/tokenizer.h"

typedef struct q3_dataset_item {
    char *context; /* LongBench's long text; NULL for a plain prompt */
    char *input;   /* the prompt, or LongBench's question */
    int where;     /* the JSONL line, or the JSON list position from 1, for messages */
} q3_dataset_item;

typedef struct q3_dataset {
    q3_dataset_item *items;
    int n;
    bool by_line; /* JSONL: where is a line number (else a list position) */
} q3_dataset;

/* Loads a .json list or a .jsonl file (chosen by extension). On failure prints one line naming
 * the file and the line or item at fault and returns false. */
bool q3_dataset_load(const char *path, q3_dataset *out);
/* Frees the items; cannot fail. */
void q3_dataset_free(q3_dataset *d);

typedef struct q3_prompt_style {
    bool chat;          /* put the prompt through the Qwen3 chat template as a user message */
    bool think;         /* with chat: leave thinking enabled */
    const char *system; /* with chat: a system message, or NULL */
    int max_tokens;     /* truncate prompts to this many tokens (template included); 0: never */
} q3_prompt_style;

/* The prompt text for one item under style, truncated to style->max_tokens; *n_tokens is its
 * length in tokens. Returns a string the caller frees, or NULL after printing why, under label
 * (such as "file.jsonl:3"), when the limit leaves no room even for the template and question. */
char *q3_dataset_prompt(const q3_dataset_item *item, const q3_tokenizer *tok, const q3_prompt_style *style,
                        const char *label, int *n_tokens);

/* Runs every prompt of the dataset at path, up to max_new tokens each, and reports. Returns the
 * exit code: 0, or 1 when the file is bad or a prompt failed (the others still run). */
int q3_dataset_run(const char *path, const q3_prompt_style *style, int max_new, q3_gen_options *g,
                   const q3_model *m, const q3_tokenizer *tok, const q3_sampling *defaults);

#endif
