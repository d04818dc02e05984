/* A checkpoint's chat template: found in its files, compiled once, chosen per request.
 *
 * Where Hugging Face keeps it: chat_template.jinja beside the tokenizer (transformers writes it
 * there since 4.43; additional_chat_templates/NAME.jinja for named ones), else tokenizer_config.json
 * under chat_template, as one string or as a list of {"name", "template"}. llama.cpp's GGUF keeps
 * it under tokenizer.chat_template (named ones under tokenizer.chat_template.NAME). As
 * transformers chooses: with tools, the "tool_use" template when there is one, else "default".
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/path.h"
#include "text/chat_internal.h"

struct q3_chat_template {
    q3_jinja *main;     /* "default" (or the only one); may be NULL when only tool_use exists */
    q3_jinja *tool_use; /* NULL when none */
    json_t *vars;       /* variables every render sees: the special tokens */
    char *error;        /* the compile error of a template that did not compile */
};

static q3_status out_of_memory(q3_error *e) { return q3_fail(e, Q3_ENOMEM, "chat template: out of memory"); }

static q3_status new_template(q3_chat_template **out, q3_error *e) {
    *out = calloc(1, sizeof **out);
    if (!*out || !((*out)->vars = json_object())) {
        free(*out);
        *out = NULL;
        return out_of_memory(e);
    }
    return Q3_OK;
}

void q3_chat_template_free(q3_chat_template *t) {
    if (!t) return;
    q3_jinja_free(t->main);
    q3_jinja_free(t->tool_use);
    json_decref(t->vars);
    free(t->error);
    free(t);
}

/* Compiles one named text into *slot; a syntax error is kept in t->error, not returned. */
static q3_status add_text(q3_chat_template *t, q3_jinja **slot, const char *text, size_t len, const char *name,
                          q3_error *e) {
    q3_error err = {0};
    q3_status st = q3_jinja_compile(text, len, name, slot, &err);
    if (st == Q3_EFORMAT) {
        if (!t->error && !(t->error = strdup(err.msg))) return out_of_memory(e);
        return Q3_OK;
    }
    if (st && e) *e = err;
    return st;
}

q3_status q3_chat_template_parse(const char *source, size_t len, const char *name, q3_chat_template **out,
                                 q3_error *e) {
    q3_status st = new_template(out, e);
    if (st) return st;
    st = q3_jinja_compile(source, len, name, &(*out)->main, e);
    if (st) {
        q3_chat_template_free(*out);
        *out = NULL;
    }
    return st;
}

const char *q3_chat_template_error(const q3_chat_template *t) { return t ? t->error : NULL; }

q3_status q3_chat_template_set_var(q3_chat_template *t, const char *name, json_t *value, q3_error *e) {
    if (!value || json_object_set_new(t->vars, name, value)) return out_of_memory(e);
    return Q3_OK;
}

q3_tool_format q3_chat_template_tool_format(const q3_chat_template *t) {
    const q3_jinja *j = !t ? NULL : t->tool_use ? t->tool_use : t->main;
    const char *text = j ? q3_jinja_source(j) : q3_chat_builtin_template;
    return strstr(text, "<function=") ? Q3_TOOL_FORMAT_XML : Q3_TOOL_FORMAT_JSON;
}

/* ---- choosing and rendering (for chat.c) ---- */

q3_status chat_template_pick(const q3_chat_template *t, bool with_tools, const q3_jinja **out, q3_error *e) {
    if (t->error) return q3_fail(e, Q3_EUNSUPPORTED, "the model's chat template cannot be used: %s", t->error);
    *out = with_tools && t->tool_use ? t->tool_use : t->main;
    if (!*out) return q3_fail(e, Q3_EINVAL, "the model's chat templates have no \"default\" one (only tool_use)");
    return Q3_OK;
}

const json_t *chat_template_vars(const q3_chat_template *t) { return t->vars; }

/* ---- tokenizer_config.json ---- */

/* A special token as the config spells it: a string, or an added-token object's "content". */
static const json_t *token_text(const json_t *v) {
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? v : NULL;
}

static q3_status add_special_tokens(q3_chat_template *t, const json_t *cfg, q3_error *e) {
    static const char *const KEYS[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    for (size_t i = 0; i < sizeof KEYS / sizeof *KEYS; i++) {
        const json_t *text = token_text(json_object_get(cfg, KEYS[i]));
        q3_status st = text ? q3_chat_template_set_var(t, KEYS[i], json_incref((json_t *)text), e) : Q3_OK;
        if (st) return st;
    }
    const json_t *extra = json_object_get(cfg, "additional_special_tokens");
    if (!json_is_array(extra)) return Q3_OK;
    json_t *list = json_array();
    for (size_t i = 0; list && i < json_array_size(extra); i++) {
        const json_t *text = token_text(json_array_get(extra, i));
        if (text && json_array_append(list, (json_t *)text)) return json_decref(list), out_of_memory(e);
    }
    return q3_chat_template_set_var(t, "additional_special_tokens", list, e);
}

/* chat_template as a list of {"name", "template"}: the "default" and "tool_use" ones. */
static q3_status add_named_list(q3_chat_template *t, const json_t *list, const char *path, q3_error *e) {
    char name[4200];
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *item = json_array_get(list, i), *n = json_object_get(item, "name"),
                     *text = json_object_get(item, "template");
        if (!json_is_string(n) || !json_is_string(text))
            return q3_fail(e, Q3_EFORMAT, "%s: chat_template[%zu]: expected {\"name\": string, \"template\": string}",
                           path, i);
        q3_jinja **slot = !strcmp(json_string_value(n), "default")    ? &t->main
                          : !strcmp(json_string_value(n), "tool_use") ? &t->tool_use
                                                                      : NULL;
        if (!slot) continue;
        snprintf(name, sizeof name, "%s chat_template '%s'", path, json_string_value(n));
        q3_status st = add_text(t, slot, json_string_value(text), json_string_length(text), name, e);
        if (st) return st;
    }
    if (!t->main && !t->tool_use && !t->error)
        return q3_fail(e, Q3_EFORMAT, "%s: chat_template lists no \"default\" or \"tool_use\" template", path);
    return Q3_OK;
}

static q3_status add_from_config(q3_chat_template *t, const json_t *cfg, const char *path, q3_error *e) {
    const json_t *tmpl = json_object_get(cfg, "chat_template");
    char name[4200];
    snprintf(name, sizeof name, "%s chat_template", path);
    if (json_is_string(tmpl)) return add_text(t, &t->main, json_string_value(tmpl), json_string_length(tmpl), name, e);
    if (json_is_array(tmpl)) return add_named_list(t, tmpl, path, e);
    return q3_fail(e, Q3_EFORMAT, "%s: chat_template: expected a string or a list of named templates", path);
}

/* ---- files ---- */

/* The whole file, or NULL with *missing set when it does not exist. */
static q3_status read_file(const char *path, char **text, size_t *len, bool *missing, q3_error *e) {
    *text = NULL;
    *missing = false;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) {
            *missing = true;
            return Q3_OK;
        }
        return q3_fail(e, Q3_EIO, "%s: %s", path, strerror(errno));
    }
    size_t cap = 1 << 14, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        char *bigger = n + 1 == cap ? realloc(buf, cap *= 2) : buf;
        if (!bigger) free(buf);
        buf = bigger;
    }
    bool failed = ferror(f);
    fclose(f);
    if (!buf) return out_of_memory(e);
    if (failed) {
        free(buf);
        return q3_fail(e, Q3_EIO, "%s: read error", path);
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return Q3_OK;
}

/* dir/name compiled into *slot, if that file exists. */
static q3_status add_file(q3_chat_template *t, q3_jinja **slot, const char *dir, const char *name, bool *found,
                          q3_error *e) {
    char path[4200];
    q3_status st = q3_pathf(path, sizeof path, e, "%s/%s", dir, name);
    if (st) return st;
    char *text;
    size_t len = 0;
    bool missing;
    st = read_file(path, &text, &len, &missing, e);
    *found = !st && !missing;
    if (st || missing) return st;
    st = add_text(t, slot, text, len, path, e);
    free(text);
    return st;
}

static q3_status load_config(const char *dir, json_t **cfg, char *path, size_t size, q3_error *e) {
    *cfg = NULL;
    q3_status st = q3_pathf(path, size, e, "%s/tokenizer_config.json", dir);
    if (st) return st;
    struct stat sb;
    if (stat(path, &sb)) return Q3_OK;
    json_error_t je;
    *cfg = json_load_file(path, 0, &je);
    if (!*cfg) return q3_fail(e, Q3_EFORMAT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    if (!json_is_object(*cfg)) {
        json_decref(*cfg);
        *cfg = NULL;
        return q3_fail(e, Q3_EFORMAT, "%s: not a JSON object", path);
    }
    return Q3_OK;
}

static q3_status load_dir(const char *dir, q3_chat_template **out, q3_error *e) {
    *out = NULL;
    char cfg_path[4200];
    json_t *cfg;
    q3_chat_template *t;
    bool found_main = false, found_tool = false;
    q3_status st = load_config(dir, &cfg, cfg_path, sizeof cfg_path, e);
    if (!st) st = new_template(&t, e);
    if (st) return json_decref(cfg), st;
    st = add_file(t, &t->main, dir, "chat_template.jinja", &found_main, e);
    if (!st) st = add_file(t, &t->tool_use, dir, "additional_chat_templates/tool_use.jinja", &found_tool, e);
    if (!st && !found_main && !found_tool && json_object_get(cfg, "chat_template"))
        st = add_from_config(t, cfg, cfg_path, e);
    if (!st && cfg) st = add_special_tokens(t, cfg, e);
    json_decref(cfg);
    if (!st && !t->main && !t->tool_use && !t->error) { /* the files carry none */
        q3_chat_template_free(t);
        return Q3_OK;
    }
    if (st) q3_chat_template_free(t);
    else *out = t;
    return st;
}

/* ---- GGUF ---- */

static q3_status add_gguf_key(q3_chat_template *t, q3_jinja **slot, const q3_gguf *g, const char *key, q3_error *e) {
    q3_gguf_str s;
    if (!q3_gguf_find_kv(g, key)) return Q3_OK;
    if (q3_gguf_get_str(g, key, &s, NULL)) return q3_fail(e, Q3_EFORMAT, "%s: %s: expected a string", g->path, key);
    char name[4200];
    snprintf(name, sizeof name, "%s %s", g->path, key);
    return add_text(t, slot, s.ptr, (size_t)s.len, name, e);
}

q3_status q3_chat_template_from_gguf(const q3_gguf *g, q3_chat_template **out, q3_error *e) {
    *out = NULL;
    q3_chat_template *t;
    q3_status st = new_template(&t, e);
    if (st) return st;
    st = add_gguf_key(t, &t->main, g, "tokenizer.chat_template", e);
    if (!st) st = add_gguf_key(t, &t->tool_use, g, "tokenizer.chat_template.tool_use", e);
    if (st || (!t->main && !t->tool_use && !t->error)) {
        q3_chat_template_free(t);
        return st;
    }
    *out = t;
    return Q3_OK;
}

static bool has_gguf_magic(const char *path) {
    char magic[4];
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    bool yes = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    fclose(f);
    return yes;
}

q3_status q3_chat_template_load(const char *path, q3_chat_template **out, q3_error *e) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb)) return q3_fail(e, Q3_EIO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return load_dir(path, out, e);
    if (!has_gguf_magic(path)) { /* a tokenizer.json: the files beside it */
        char *copy = strdup(path);
        if (!copy) return out_of_memory(e);
        q3_status st = load_dir(dirname(copy), out, e);
        free(copy);
        return st;
    }
    q3_gguf g;
    q3_status st = q3_gguf_open(&g, path, e);
    if (st) return st;
    st = q3_chat_template_from_gguf(&g, out, e);
    q3_gguf_close(&g);
    return st;
}
