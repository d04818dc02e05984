/* q3moe template: prints the prompt a chat template makes from a conversation, byte for byte
 * what the engine tokenizes, so a prompt can be inspected or diffed against transformers'
 * apply_chat_template without loading a model. The template is the model's own (-m: its
 * tokenizer_config.json, chat_template.jinja or GGUF metadata), any template file (--template),
 * or the built-in Qwen3 one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "text/chat.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: q3moe template [-m MODEL | --template FILE.jinja] --messages FILE.json [--tools FILE.json]\n"
            "                      [--no-think] [--no-generation-prompt] [--kwargs JSON]\n\n"
            "Prints the chat prompt for a conversation to stdout.\n\n"
            "  -m, --model PATH          use the chat template of this model: a checkpoint or tokenizer\n"
            "                            directory, or a GGUF file (the built-in Qwen3 template when the\n"
            "                            files carry none, and when neither -m nor --template is given)\n"
            "  --template FILE.jinja     use this Jinja chat template instead\n"
            "  --messages FILE.json      a JSON array of OpenAI-style messages, or an object\n"
            "                            {\"messages\": [...], \"tools\": [...]}; '-' reads stdin\n"
            "  --tools FILE.json         a JSON array of tool schemas (or {\"tools\": [...]});\n"
            "                            replaces tools given in the messages file\n"
            "  --no-think                pass enable_thinking=false to the template (Qwen3 then closes an\n"
            "                            empty think block in the generation prompt)\n"
            "  --no-generation-prompt    stop after the last message (add_generation_prompt=false)\n"
            "  --kwargs JSON             more template variables, as a JSON object (transformers'\n"
            "                            apply_chat_template keyword arguments), e.g. '{\"enable_thinking\": true}'\n");
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
           !strcmp(arg, "--tools") || !strcmp(arg, "--template") || !strcmp(arg, "--kwargs");
}

typedef struct template_args {
    const char *model, *messages, *tools, *template_file, *kwargs;
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
        } else if (!strcmp(arg, "--template")) {
            a->template_file = argv[++i];
        } else if (!strcmp(arg, "--kwargs")) {
            a->kwargs = argv[++i];
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
    const char *problem = !a->messages                 ? "--messages FILE.json is required"
                          : a->model && a->template_file ? "-m and --template both name a template: give one"
                                                         : NULL;
    if (problem) {
        fprintf(stderr, "q3moe template: %s\n\n", problem);
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

/* The template named on the command line: a file, the model's, or NULL for the built-in one. */
static int load_template(const template_args *a, q3_chat_template **t) {
    q3_error err = {0};
    *t = NULL;
    if (a->model && q3_chat_template_load(a->model, t, &err)) {
        fprintf(stderr, "q3moe template: %s\n", err.msg);
        return 1;
    }
    if (!a->template_file) return 0;
    size_t len;
    char *text = q3_cli_read_file(a->template_file, &len);
    if (!text) return 1;
    q3_status st = q3_chat_template_parse(text, len, a->template_file, t, &err);
    free(text);
    if (st) fprintf(stderr, "q3moe template: %s\n", err.msg);
    return st ? 1 : 0;
}

static json_t *parse_kwargs(const char *text) {
    json_error_t err;
    json_t *v = json_loads(text, 0, &err);
    if (json_is_object(v)) return v;
    if (v) fprintf(stderr, "q3moe template: --kwargs: expected a JSON object\n");
    else fprintf(stderr, "q3moe template: --kwargs: not valid JSON: %s\n", err.text);
    json_decref(v);
    return NULL;
}

int cmd_template(int argc, char **argv) {
    template_args a;
    int code;
    if (parse_args(argc, argv, &a, &code)) return code;
    json_t *messages = NULL, *tools = NULL, *kwargs = NULL;
    q3_chat_template *t = NULL;
    char *prompt = NULL;
    if (load_template(&a, &t) || (a.kwargs && !(kwargs = parse_kwargs(a.kwargs))) ||
        load_conversation(&a, &messages, &tools))
        goto done;
    a.opt.template = t;
    a.opt.template_kwargs = kwargs;
    q3_error err;
    if (q3_chat_render(messages, tools, &a.opt, &prompt, &err)) {
        /* The error names the field (or the template's line); name the file it came from. */
        bool in_tools_file = a.tools && !strncmp(err.msg, "tools", 5);
        bool in_messages = !strncmp(err.msg, "messages", 8) || in_tools_file;
        if (in_messages) fprintf(stderr, "q3moe template: %s: %s\n", in_tools_file ? a.tools : a.messages, err.msg);
        else fprintf(stderr, "q3moe template: %s\n", err.msg);
    } else {
        fwrite(prompt, 1, strlen(prompt), stdout);
    }
done:
    json_decref(messages);
    json_decref(tools);
    json_decref(kwargs);
    q3_chat_template_free(t);
    int failed = !prompt || fflush(stdout) != 0 || ferror(stdout);
    free(prompt);
    return failed;
}
