/* q3moe template: prints the prompt that the built-in Qwen3 chat template makes from a
 * conversation, byte for byte what the engine tokenizes, so a prompt can be inspected or diffed
 * against transformers' apply_chat_template without loading a model. The model argument is taken
 * for symmetry with the other commands and only checked to exist: every Qwen3-MoE checkpoint
 * ships the same template. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "text/chat.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: q3moe template [-m MODEL] --messages FILE.json [--tools FILE.json] [--no-think]\n"
            "                      [--no-generation-prompt]\n\n"
            "Prints the Qwen3 chat prompt for a conversation to stdout.\n\n"
            "  -m, --model PATH          model directory, GGUF or tokenizer directory (checked to exist;\n"
            "                            the template is built in)\n"
            "  --messages FILE.json      a JSON array of OpenAI-style messages, or an object\n"
            "                            {\"messages\": [...], \"tools\": [...]}; '-' reads stdin\n"
            "  --tools FILE.json         a JSON array of tool schemas (or {\"tools\": [...]});\n"
            "                            replaces tools given in the messages file\n"
            "  --no-think                close an empty think block in the generation prompt\n"
            "                            (enable_thinking=false)\n"
            "  --no-generation-prompt    stop after the last message (add_generation_prompt=false)\n");
}

/* The whole file as JSON; on failure one line naming the file (and where it stops being JSON). */
static json_t *load_json(const char *path) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "q3moe template: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    json_error_t err;
    json_t *root = json_loadf(f, 0, &err);
    if (f != stdin) fclose(f);
    if (!root)
        fprintf(stderr, "q3moe template: %s:%d:%d: not valid JSON: %s\n", path, err.line, err.column,
                err.text);
    return root;
}

/* An array as it is, or the array under key in an object; NULL (with a message) otherwise.
 * The result is a new reference. */
static json_t *array_or_member(json_t *root, const char *key, const char *path) {
    json_t *array = json_is_object(root) ? json_object_get(root, key) : root;
    if (json_is_array(array)) return json_incref(array);
    if (json_is_object(root))
        fprintf(stderr, "q3moe template: %s: %s: %s\n", path, key,
                array ? "expected an array" : "missing");
    else
        fprintf(stderr, "q3moe template: %s: expected an array of %s or an object with \"%s\"\n", path,
                key, key);
    return NULL;
}

static bool takes_value(const char *arg) {
    return !strcmp(arg, "-m") || !strcmp(arg, "--model") || !strcmp(arg, "--messages") ||
           !strcmp(arg, "--tools");
}

typedef struct template_args {
    const char *model, *messages, *tools;
    q3_chat_options opt;
} template_args;

/* Returns 0 to go on, else the exit code (0 after --help). */
static int parse_args(int argc, char **argv, template_args *a, int *exit_code) {
    *a = (template_args){.opt = {.add_generation_prompt = true, .enable_thinking = true}};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        bool has_value = i + 1 < argc;
        if (takes_value(arg) && !has_value) {
            fprintf(stderr, "q3moe template: %s needs a value\n\n", arg);
            usage(stderr);
            *exit_code = 2;
            return 1;
        }
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage(stdout);
            *exit_code = 0;
            return 1;
        } else if (!strcmp(arg, "-m") || !strcmp(arg, "--model")) {
            a->model = argv[++i];
        } else if (!strcmp(arg, "--messages")) {
            a->messages = argv[++i];
        } else if (!strcmp(arg, "--tools")) {
            a->tools = argv[++i];
        } else if (!strcmp(arg, "--no-think")) {
            a->opt.enable_thinking = false;
        } else if (!strcmp(arg, "--no-generation-prompt")) {
            a->opt.add_generation_prompt = false;
        } else {
            fprintf(stderr, "q3moe template: unknown option '%s'\n\n", arg);
            usage(stderr);
            *exit_code = 2;
            return 1;
        }
    }
    if (!a->messages) {
        fprintf(stderr, "q3moe template: --messages FILE.json is required\n\n");
        usage(stderr);
        *exit_code = 2;
        return 1;
    }
    return 0;
}

/* Reads the conversation (and tools) named on the command line into new references. */
static int load_conversation(const template_args *a, json_t **messages, json_t **tools) {
    *messages = *tools = NULL;
    json_t *root = load_json(a->messages);
    if (!root) return 1;
    *messages = array_or_member(root, "messages", a->messages);
    json_t *inline_tools = json_is_object(root) ? json_object_get(root, "tools") : NULL;
    if (*messages && inline_tools && !a->tools) *tools = json_incref(inline_tools);
    json_decref(root);
    if (!*messages) return 1;
    if (!a->tools) return 0;
    root = load_json(a->tools);
    if (root) *tools = array_or_member(root, "tools", a->tools);
    json_decref(root);
    return *tools ? 0 : 1;
}

int cmd_template(int argc, char **argv) {
    template_args a;
    int code;
    if (parse_args(argc, argv, &a, &code)) return code;
    struct stat st;
    if (a.model && stat(a.model, &st) != 0) {
        fprintf(stderr, "q3moe template: %s: %s\n", a.model, strerror(errno));
        return 1;
    }
    json_t *messages, *tools;
    if (load_conversation(&a, &messages, &tools)) {
        json_decref(messages);
        return 1;
    }
    char *prompt = NULL;
    q3_error err;
    if (q3_chat_render(messages, tools, &a.opt, &prompt, &err)) {
        /* The error names the field; name the file it came from. */
        bool in_tools_file = a.tools && !strncmp(err.msg, "tools", 5);
        fprintf(stderr, "q3moe template: %s: %s\n", in_tools_file ? a.tools : a.messages, err.msg);
    } else {
        fwrite(prompt, 1, strlen(prompt), stdout);
    }
    json_decref(messages);
    json_decref(tools);
    int failed = !prompt || fflush(stdout) != 0 || ferror(stdout);
    free(prompt);
    return failed;
}
