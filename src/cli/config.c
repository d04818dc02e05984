/* YAML run configs turned into command-line options (see config.h).
 *
 * The file is read with libyaml's event parser, which is all a flat mapping needs: each key
 * event is looked up in KEYS, the table of what each command accepts, and its value events
 * become "--option=value" arguments. The table is explicit rather than "any key becomes --key"
 * so that a misspelt key is reported against the file and line that hold it instead of as an
 * unrecognized option the user never typed. A command adding an option adds a row here. */
#include "cli/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* run, chat and serve share the sampling and engine options of gen_options.c; bench has its own. */
enum { RUN = 1, CHAT = 2, BENCH = 4, SERVE = 8, SAMPLING = RUN | CHAT | SERVE, ALL = SAMPLING | BENCH };

typedef enum key_kind {
    ONE_VALUE,    /* key: value            -> --option=value */
    VALUE_LIST,   /* key: [a, b] or key: a -> --option=a --option=b */
    JOINED_LIST,  /* key: [1, 2] or key: 1 -> --option=1,2 */
    FLAG,         /* key: true             -> --option; false -> nothing */
    FLAG_NEGATED, /* key: false            -> --option; true -> nothing (think: false -> --no-think) */
} key_kind;

/* A key may have a row per command when it means a different option for each. */
static const struct config_key {
    const char *key;    /* as the file spells it, hyphens read as underscores */
    const char *option; /* the long option it becomes */
    key_kind kind;
    unsigned commands;
} KEYS[] = {
    /* the model */
    {"model", "model", ONE_VALUE, ALL},
    {"model_path", "model", ONE_VALUE, ALL},
    /* sampling (gen_options.c) */
    {"temp", "temp", ONE_VALUE, SAMPLING},
    {"temperature", "temp", ONE_VALUE, SAMPLING},
    {"top_k", "top-k", ONE_VALUE, SAMPLING},
    {"top_p", "top-p", ONE_VALUE, SAMPLING},
    {"min_p", "min-p", ONE_VALUE, SAMPLING},
    {"repeat_penalty", "repeat-penalty", ONE_VALUE, SAMPLING},
    {"repetition_penalty", "repeat-penalty", ONE_VALUE, SAMPLING},
    {"repeat_last_n", "repeat-last-n", ONE_VALUE, SAMPLING},
    {"presence_penalty", "presence-penalty", ONE_VALUE, SAMPLING},
    {"frequency_penalty", "frequency-penalty", ONE_VALUE, SAMPLING},
    {"seed", "seed", ONE_VALUE, SAMPLING},
    {"stop", "stop", VALUE_LIST, RUN | CHAT}, /* serve takes these per request */
    {"ignore_eos", "ignore-eos", FLAG, RUN | CHAT},
    /* the engine (gen_options.c; bench parses the first four itself) */
    {"threads", "threads", ONE_VALUE, ALL},
    {"ctx_size", "ctx-size", ONE_VALUE, ALL},
    {"max_context", "ctx-size", ONE_VALUE, ALL},
    {"kv_type", "kv-type", ONE_VALUE, ALL},
    {"chunk_size", "chunk-size", ONE_VALUE, ALL},
    {"batch_size", "batch-size", ONE_VALUE, SAMPLING},
    {"max_batch_size", "batch-size", ONE_VALUE, SAMPLING},
    {"page_size", "page-size", ONE_VALUE, SAMPLING},
    {"cache_lens", "cache-lens", ONE_VALUE, SAMPLING},
    {"max_queue", "max-queue", ONE_VALUE, SAMPLING},
    {"numa", "numa", ONE_VALUE, SAMPLING},
    {"rope_scaling", "rope-scaling", ONE_VALUE, ALL}, /* cli/rope_options.c */
    {"rope_scale", "rope-scale", ONE_VALUE, ALL},
    {"yarn_orig_ctx", "yarn-orig-ctx", ONE_VALUE, ALL},
    {"device", "device", ONE_VALUE, ALL},
    {"cpu_experts", "cpu-experts", FLAG, ALL},
    {"gpu_experts", "gpu-experts", ONE_VALUE, ALL},
    {"repack", "repack", FLAG, ALL},
    {"no_repack", "no-repack", FLAG, ALL},
    /* run and chat: how much to generate, from what */
    {"n_predict", "n-predict", ONE_VALUE, RUN | CHAT},
    {"max_new_tokens", "n-predict", ONE_VALUE, RUN | CHAT},
    {"system", "system", ONE_VALUE, RUN | CHAT},
    {"system_prompt", "system", ONE_VALUE, RUN | CHAT},
    {"no_think", "no-think", FLAG, RUN | CHAT},
    {"think", "no-think", FLAG_NEGATED, RUN | CHAT},
    {"enable_thinking", "no-think", FLAG_NEGATED, RUN | CHAT},
    {"prompt", "prompt", ONE_VALUE, RUN},
    {"file", "file", ONE_VALUE, RUN},
    {"chat", "chat", FLAG, RUN},
    {"no_escape", "no-escape", FLAG, RUN},
    {"raw", "raw", FLAG, RUN},
    {"dataset", "dataset", ONE_VALUE, RUN},
    {"input_truncated_len", "input-truncated-len", ONE_VALUE, RUN},
    /* serve (cmd_serve.c) */
    {"host", "host", ONE_VALUE, SERVE},
    {"port", "port", ONE_VALUE, SERVE},
    {"api_key", "api-key", ONE_VALUE, SERVE},
    {"max_body", "max-body", ONE_VALUE, SERVE},
    {"max_connections", "max-connections", ONE_VALUE, SERVE},
    {"timeout", "timeout", ONE_VALUE, SERVE},
    {"served_model_name", "served-model-name", ONE_VALUE, SERVE},
    {"model_name", "served-model-name", ONE_VALUE, SERVE},
    /* bench (cmd_bench.c) */
    {"n_prompt", "n-prompt", JOINED_LIST, BENCH},
    {"n_gen", "n-gen", ONE_VALUE, BENCH},
    {"repeat", "repeat", ONE_VALUE, BENCH},
    {"json", "json", FLAG, BENCH},
    {"plot", "plot", ONE_VALUE, BENCH},
    {"synthetic", "synthetic", ONE_VALUE, BENCH},
    {"type", "type", ONE_VALUE, BENCH},
    {"layers", "layers", ONE_VALUE, BENCH},
    {"keep", "keep", ONE_VALUE, BENCH},
    {"serving", "serving", ONE_VALUE, BENCH},
    {"ttft_prompt", "ttft-prompt", ONE_VALUE, BENCH},
};

static unsigned command_bit(const char *command) {
    static const struct { const char *name; unsigned bit; } NAMES[] = {
        {"run", RUN}, {"chat", CHAT}, {"bench", BENCH}, {"serve", SERVE}};
    for (size_t i = 0; i < sizeof NAMES / sizeof *NAMES; i++)
        if (!strcmp(NAMES[i].name, command)) return NAMES[i].bit;
    return 0;
}

static const struct config_key *find_key(const char *key, unsigned command) {
    char norm[64];
    size_t n = strlen(key);
    if (n >= sizeof norm) return NULL;
    for (size_t i = 0; i <= n; i++) norm[i] = key[i] == '-' ? '_' : key[i];
    for (size_t i = 0; i < sizeof KEYS / sizeof *KEYS; i++)
        if (!strcmp(KEYS[i].key, norm) && (KEYS[i].commands & command)) return &KEYS[i];
    return NULL;
}

/* ---- the arguments a file turns into ---- */

typedef struct arg_list {
    char **args;
    int n, cap;
} arg_list;

static bool arg_push(arg_list *l, char *arg) {
    if (arg && l->n + 1 >= l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        char **more = realloc(l->args, (size_t)cap * sizeof *more);
        if (more) l->args = more, l->cap = cap;
    }
    if (!arg || l->n + 1 >= l->cap) {
        fprintf(stderr, "q3moe: out of memory\n");
        free(arg);
        return false;
    }
    l->args[l->n++] = arg;
    l->args[l->n] = NULL;
    return true;
}

static char *option_arg(const char *option, const char *value) {
    size_t n = strlen(option) + (value ? strlen(value) + 1 : 0) + 3;
    char *s = malloc(n);
    if (s) snprintf(s, n, value ? "--%s=%s" : "--%s", option, value ? value : "");
    return s;
}

/* ---- reading the file ---- */

typedef struct reader {
    yaml_parser_t parser;
    const char *path, *command;
    unsigned command_bit;
    const char *seen[sizeof KEYS / sizeof *KEYS]; /* options set so far, to catch a key given twice */
    int n_seen;
    arg_list out;
} reader;

__attribute__((format(printf, 3, 4))) static bool fail_at(reader *r, const yaml_mark_t *mark, const char *fmt, ...) {
    fprintf(stderr, "q3moe %s: %s:%zu:%zu: ", r->command, r->path, mark->line + 1, mark->column + 1);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return false;
}

/* The next event, or false after printing where and why the YAML is malformed. */
static bool next_event(reader *r, yaml_event_t *ev) {
    if (yaml_parser_parse(&r->parser, ev)) return true;
    const yaml_parser_t *p = &r->parser;
    if (p->error == YAML_MEMORY_ERROR) {
        fprintf(stderr, "q3moe %s: %s: out of memory\n", r->command, r->path);
        return false;
    }
    if (p->error == YAML_READER_ERROR) {
        fprintf(stderr, "q3moe %s: %s: malformed YAML: %s at byte %zu\n", r->command, r->path,
                p->problem ? p->problem : "unreadable", p->problem_offset);
        return false;
    }
    if (p->context)
        return fail_at(r, &p->problem_mark, "malformed YAML: %s (%s at line %zu)", p->problem, p->context,
                       p->context_mark.line + 1);
    return fail_at(r, &p->problem_mark, "malformed YAML: %s", p->problem ? p->problem : "unknown error");
}

static bool is_null(const yaml_event_t *ev) {
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    const char *v = (const char *)ev->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

/* YAML 1.1 booleans, as libyaml's users read them. */
static int parse_bool(const char *v) {
    static const char *const YES[] = {"true", "yes", "on", "y"}, *const NO[] = {"false", "no", "off", "n"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(v, YES[i])) return 1;
        if (!strcasecmp(v, NO[i])) return 0;
    }
    return -1;
}

static bool add_scalar(reader *r, const char *key, const struct config_key *k, const yaml_event_t *value) {
    const char *v = (const char *)value->data.scalar.value;
    if (k->kind == FLAG || k->kind == FLAG_NEGATED) {
        int b = parse_bool(v);
        if (b < 0) return fail_at(r, &value->start_mark, "'%s' must be true or false, not '%s'", key, v);
        if (b == (k->kind == FLAG)) return arg_push(&r->out, option_arg(k->option, NULL));
        return true;
    }
    if (is_null(value)) return fail_at(r, &value->start_mark, "'%s' has no value", key);
    return arg_push(&r->out, option_arg(k->option, v));
}

/* Appends ",item" (or "item") to *joined; false when out of memory. */
static bool join_item(char **joined, const char *item) {
    size_t n = *joined ? strlen(*joined) : 0, k = strlen(item);
    char *more = realloc(*joined, n + k + 2);
    if (!more) return false;
    if (n) more[n++] = ',';
    memcpy(more + n, item, k + 1);
    *joined = more;
    return true;
}

/* A list value: one option per item (stop), or one option with the items joined by commas
 * (bench's prompt lengths). */
static bool add_list(reader *r, const char *key, const struct config_key *k, const yaml_mark_t *at) {
    if (k->kind != VALUE_LIST && k->kind != JOINED_LIST)
        return fail_at(r, at, "'%s' takes one value, not a list", key);
    char *joined = NULL;
    for (;;) {
        yaml_event_t ev;
        if (!next_event(r, &ev)) break;
        bool ok = true, end = ev.type == YAML_SEQUENCE_END_EVENT;
        if (!end && (ev.type != YAML_SCALAR_EVENT || is_null(&ev)))
            ok = fail_at(r, &ev.start_mark, "the items of '%s' must be plain values", key);
        else if (!end && k->kind == VALUE_LIST)
            ok = add_scalar(r, key, k, &ev);
        else if (!end && !join_item(&joined, (const char *)ev.data.scalar.value))
            ok = arg_push(&r->out, NULL); /* reports the lack of memory */
        yaml_event_delete(&ev);
        if (!ok) break;
        if (!end) continue;
        if (k->kind == VALUE_LIST) return true;
        if (!joined) return fail_at(r, at, "'%s' is an empty list", key);
        bool pushed = arg_push(&r->out, option_arg(k->option, joined));
        free(joined);
        return pushed;
    }
    free(joined);
    return false;
}

static bool already_set(reader *r, const char *option) {
    for (int i = 0; i < r->n_seen; i++)
        if (!strcmp(r->seen[i], option)) return true;
    r->seen[r->n_seen++] = option;
    return false;
}

/* Reads past the value of a key this command does not use. */
static bool skip_value(reader *r, const char *key) {
    yaml_event_t ev;
    if (!next_event(r, &ev)) return false;
    yaml_event_type_t type = ev.type;
    yaml_mark_t at = ev.start_mark;
    yaml_event_delete(&ev);
    if (type == YAML_SCALAR_EVENT) return true;
    if (type != YAML_SEQUENCE_START_EVENT)
        return fail_at(r, &at, "'%s' must be a plain value (a run config is a flat mapping)", key);
    do {
        if (!next_event(r, &ev)) return false;
        type = ev.type;
        yaml_event_delete(&ev);
    } while (type == YAML_SCALAR_EVENT);
    return type == YAML_SEQUENCE_END_EVENT || fail_at(r, &at, "the items of '%s' must be plain values", key);
}

/* One "key: value" entry, its key event already read. A key that another command takes (port in
 * a config shared by serve and chat) is passed over, so one file can describe a deployment; a key
 * no command takes is an error. */
static bool read_entry(reader *r, const yaml_event_t *key_ev) {
    const char *key = (const char *)key_ev->data.scalar.value;
    const struct config_key *k = find_key(key, r->command_bit);
    if (!k && find_key(key, ALL)) return skip_value(r, key);
    if (!k) return fail_at(r, &key_ev->start_mark, "unknown key '%s'", key);
    if (already_set(r, k->option))
        return fail_at(r, &key_ev->start_mark, "'%s' sets --%s, which an earlier key already set", key, k->option);
    yaml_event_t value;
    if (!next_event(r, &value)) return false;
    bool ok;
    if (value.type == YAML_SCALAR_EVENT) ok = add_scalar(r, key, k, &value);
    else if (value.type == YAML_SEQUENCE_START_EVENT) ok = add_list(r, key, k, &value.start_mark);
    else ok = fail_at(r, &value.start_mark, "'%s' must be a plain value (a run config is a flat mapping)", key);
    yaml_event_delete(&value);
    return ok;
}

/* The mapping's entries up to its end. */
static bool read_mapping(reader *r) {
    for (;;) {
        yaml_event_t ev;
        if (!next_event(r, &ev)) return false;
        bool ok = true, end = ev.type == YAML_MAPPING_END_EVENT;
        if (!end && ev.type != YAML_SCALAR_EVENT) ok = fail_at(r, &ev.start_mark, "keys must be plain names");
        else if (!end) ok = read_entry(r, &ev);
        yaml_event_delete(&ev);
        if (!ok || end) return ok;
    }
}

/* Expects the next event to be of type want; anything else is reported as what. */
static bool expect(reader *r, yaml_event_type_t want, yaml_event_t *ev, const char *what) {
    if (!next_event(r, ev)) return false;
    if (ev->type == want) return true;
    fail_at(r, &ev->start_mark, "%s", what);
    yaml_event_delete(ev);
    return false;
}

/* The document: empty, or one flat mapping. */
static bool read_document(reader *r) {
    yaml_event_t ev;
    if (!next_event(r, &ev)) return false;
    bool ok;
    if (ev.type == YAML_MAPPING_START_EVENT) ok = read_mapping(r);
    else if (ev.type == YAML_SCALAR_EVENT && is_null(&ev)) ok = true;
    else ok = fail_at(r, &ev.start_mark, "expected a mapping of option: value");
    yaml_event_delete(&ev);
    if (!ok || !expect(r, YAML_DOCUMENT_END_EVENT, &ev, "expected the end of the document")) return false;
    yaml_event_delete(&ev);
    return true;
}

static bool read_config(reader *r) {
    yaml_event_t ev;
    if (!expect(r, YAML_STREAM_START_EVENT, &ev, "expected a YAML stream")) return false;
    yaml_event_delete(&ev);
    if (!next_event(r, &ev)) return false;
    yaml_event_type_t type = ev.type;
    yaml_event_delete(&ev);
    if (type == YAML_STREAM_END_EVENT) return true; /* an empty file sets nothing */
    if (!read_document(r)) return false;
    if (!next_event(r, &ev)) return false;
    bool ok = ev.type == YAML_STREAM_END_EVENT || fail_at(r, &ev.start_mark, "a run config is one YAML document");
    yaml_event_delete(&ev);
    return ok;
}

/* ---- the new argv ---- */

/* Where --config is in argv: *at is its index and *span 1 or 2 (with its value); *path NULL
 * when there is none. False after printing why for a --config without a file or given twice. */
static bool find_config(int argc, char **argv, const char *command, const char **path, int *at, int *span) {
    *path = NULL;
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        const char *value = NULL;
        int n = 1;
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "q3moe %s: --config needs a YAML file\n", command);
                return false;
            }
            value = argv[i + 1];
            n = 2;
        } else if (!strncmp(argv[i], "--config=", 9)) {
            value = argv[i] + 9;
        } else {
            continue;
        }
        if (*path) {
            fprintf(stderr, "q3moe %s: --config given twice (%s and %s)\n", command, *path, value);
            return false;
        }
        *path = value;
        *at = i;
        *span = n;
        i += n - 1;
    }
    return true;
}

bool q3_cli_apply_config(int *argc, char ***argv, const char *command) {
    /* The argv handed out last, kept reachable for the life of the process like argv itself. */
    static char **config_argv;
    const char *path;
    int at = 0, span = 0;
    if (!find_config(*argc, *argv, command, &path, &at, &span)) return false;
    if (!path) return true;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "q3moe %s: %s: %s\n", command, path, strerror(errno));
        return false;
    }
    reader r = {.path = path, .command = command, .command_bit = command_bit(command)};
    bool ok = yaml_parser_initialize(&r.parser);
    if (ok) {
        yaml_parser_set_input_file(&r.parser, f);
        ok = arg_push(&r.out, strdup((*argv)[0])) && read_config(&r);
        yaml_parser_delete(&r.parser);
    }
    fclose(f);
    for (int i = 1; ok && i < *argc; i++)
        if (i < at || i >= at + span) ok = arg_push(&r.out, strdup((*argv)[i]));
    if (!ok) {
        for (int i = 0; i < r.out.n; i++) free(r.out.args[i]);
        free(r.out.args);
        return false;
    }
    config_argv = r.out.args;
    *argc = r.out.n;
    *argv = config_argv;
    return true;
}
