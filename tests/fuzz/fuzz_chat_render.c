/* libFuzzer: chat templates rendering conversations a client sends. The templates are the real
 * ones (the five checkpoints' in tests/fixtures/chat-templates, the tokenizer fixture's with its
 * special tokens, and the built-in Qwen3 one); the messages, tools and template keyword arguments
 * are fuzzed. Any conversation must render or be refused with an error, within the renderer's
 * default limits (the ones the server runs with), never crash or hang.
 *
 * Input: a JSON object shaped like a render_cases.json case: {"template": NAME, "messages": [...],
 * "tools": [...], "kwargs": {...}, "add_generation_prompt": BOOL, "enable_thinking": BOOL}; a
 * NAME that is not one of the templates means the built-in one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/chat.h"

static const char *const NAMES[] = {"Qwen-QwQ-32B", "Qwen-Qwen2.5-7B-Instruct", "Qwen-Qwen3-0.6B", "Qwen3-Coder",
                                    "Qwen3.5-4B"};
#define N_FILES (sizeof NAMES / sizeof *NAMES)

static q3_chat_template *templates[N_FILES + 1]; /* the files', then the tokenizer fixture's */

static void die(const char *what, const q3_error *e) {
    fprintf(stderr, "fuzz_chat_render: %s: %s\n", what, e->msg);
    abort();
}

/* Compiled before the first input, outside -timeout. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    q3_error e;
    for (size_t i = 0; i < N_FILES; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/chat-templates/%s.jinja", Q3_FIXTURES, NAMES[i]);
        FILE *f = fopen(path, "rb");
        if (!f) abort();
        static char text[1 << 16];
        size_t n = fread(text, 1, sizeof text, f);
        fclose(f);
        if (q3_chat_template_parse(text, n, NAMES[i], &templates[i], &e)) die(path, &e);
    }
    if (q3_chat_template_load(Q3_FIXTURES "/qwen3-tokenizer", &templates[N_FILES], &e) || !templates[N_FILES])
        die("the tokenizer fixture's template", &e);
    return 0;
}

static const q3_chat_template *pick(const json_t *name) {
    const char *s = json_string_value(name);
    for (size_t i = 0; s && i < N_FILES; i++)
        if (!strcmp(s, NAMES[i])) return templates[i];
    return s && !strcmp(s, "tokenizer") ? templates[N_FILES] : NULL;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    json_t *in = json_loadb((const char *)data, size, 0, NULL);
    if (!json_is_object(in)) {
        json_decref(in);
        return 0;
    }
    const json_t *kwargs = json_object_get(in, "kwargs");
    q3_chat_options opt = {.add_generation_prompt = !json_is_false(json_object_get(in, "add_generation_prompt")),
                           .enable_thinking = !json_is_false(json_object_get(in, "enable_thinking")),
                           .template_kwargs = json_is_null(kwargs) ? NULL : kwargs,
                           .template = pick(json_object_get(in, "template"))};
    char *out = NULL;
    q3_error e;
    if (q3_chat_render(json_object_get(in, "messages"), json_object_get(in, "tools"), &opt, &out, &e) == Q3_OK) {
        (void)q3_chat_opens_reasoning(out); /* the server asks this of every prompt */
        free(out);
    }
    json_decref(in);
    return 0;
}
