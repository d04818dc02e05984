/* libFuzzer: prompt datasets (`q3moe run --dataset FILE`, src/cli/dataset.c): a .json list or a
 * .jsonl file of LongBench records, then each prompt built from it as `run` builds it, chat
 * template and LongBench's middle truncation included, with the real Qwen3 tokenizer (loaded
 * once). Any file must load or be refused with a line naming where; every prompt built must be
 * valid UTF-8 that encodes to the token count reported, within the truncation limit when there is
 * one; nothing may crash or hang.
 *
 * Input: byte 0 picks the form (bit 0: .jsonl, else .json) and the prompt style (bit 1: chat,
 * bit 2: thinking on, bit 3: a system prompt); byte 1 is the token limit (0: none); the rest is
 * the file, written to /dev/shm (the loader wants a path with the right extension). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

#include "cli/dataset.h"
#include "text/tokenizer.h"
#include "../utf8_oracle.h"

#define MAX_PROMPTS 4

static q3_tokenizer *tok;

/* Loading takes seconds under the sanitizers: done before the first input, outside -timeout. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    q3_error e;
    if (q3_tok_load(&tok, Q3_FIXTURES "/qwen3-tokenizer", &e)) {
        fprintf(stderr, "fuzz_dataset: %s\n", e.msg);
        abort();
    }
    return 0;
}

static void check_prompt(const char *prompt, int n_tokens, const q3_tokenizer *tok, const q3_prompt_style *st) {
    size_t len = strlen(prompt);
    if (!utf8proc_says_valid(prompt, len)) abort();
    int32_t *ids = NULL;
    int n = 0;
    q3_error e;
    if (q3_tok_encode(tok, prompt, len, st->chat, &ids, &n, &e)) abort();
    free(ids);
    if (n != n_tokens || (st->max_tokens > 0 && n > st->max_tokens)) abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 2) return 0;
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/q3-fuzz-dataset-%d.%s", (int)getpid(), data[0] & 1 ? "jsonl" : "json");
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data + 2, 1, size - 2, f) != size - 2 || fclose(f)) abort();
    q3_dataset d;
    bool loaded = q3_dataset_load(path, &d);
    unlink(path);
    if (!loaded) return 0;
    q3_prompt_style st = {.chat = data[0] & 2, .think = data[0] & 4, .system = data[0] & 8 ? "Be brief." : NULL,
                          .max_tokens = data[1]};
    for (int i = 0; i < d.n && i < MAX_PROMPTS; i++) {
        int n_tokens = -1;
        char *prompt = q3_dataset_prompt(&d.items[i], tok, &st, "fuzz", &n_tokens);
        if (prompt) check_prompt(prompt, n_tokens, tok, &st);
        free(prompt);
    }
    q3_dataset_free(&d);
    return 0;
}
