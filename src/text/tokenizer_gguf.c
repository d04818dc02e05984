/* tokenizer.json -> GGUF tokenizer metadata (llama.cpp's "gpt2" BPE model with the "qwen2"
 * pre-tokenizer). Token strings stay in the byte-level alphabet they have in tokenizer.json. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/path.h"
#include "text/tokenizer_gguf.h"

enum { TOKEN_NORMAL = 1, TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4, TOKEN_UNUSED = 5 };

typedef struct vocab_table {
    q3_gguf_str *tokens;
    int32_t *types;
    char (*pads)[24];
    int n;
} vocab_table;

static q3_status fill_vocab(vocab_table *v, json_t *root, const char *path, q3_error *e) {
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab)) return q3_fail(e, Q3_EFORMAT, "%s: model.vocab is missing", path);
    const char *tok;
    json_t *id;
    json_object_foreach(vocab, tok, id) {
        json_int_t i = json_integer_value(id);
        if (!json_is_integer(id) || i < 0 || i >= v->n)
            return q3_fail(e, Q3_EFORMAT, "%s: model.vocab[%s] = id outside 0..%d", path, tok, v->n - 1);
        v->tokens[i] = (q3_gguf_str){tok, strlen(tok)};
        v->types[i] = TOKEN_NORMAL;
    }
    size_t k;
    json_t *a;
    json_array_foreach(added, k, a) {
        json_t *aid = json_object_get(a, "id"), *content = json_object_get(a, "content");
        json_int_t i = json_integer_value(aid);
        if (!json_is_integer(aid) || !json_is_string(content) || i < 0 || i >= v->n)
            return q3_fail(e, Q3_EFORMAT, "%s: added_tokens[%zu] has no valid id and content", path, k);
        v->tokens[i] = (q3_gguf_str){json_string_value(content), json_string_length(content)};
        v->types[i] = json_is_true(json_object_get(a, "special")) ? TOKEN_CONTROL : TOKEN_USER_DEFINED;
    }
    for (int i = 0; i < v->n; i++) {
        if (v->tokens[i].ptr) continue;
        snprintf(v->pads[i], sizeof v->pads[i], "[PAD%d]", i);
        v->tokens[i] = (q3_gguf_str){v->pads[i], strlen(v->pads[i])};
        v->types[i] = TOKEN_UNUSED;
    }
    return Q3_OK;
}

/* Merges are "a b" strings in older files and ["a", "b"] pairs in newer ones. */
static q3_status add_merges(q3_gguf_writer *w, json_t *root, const char *path, q3_error *e) {
    json_t *merges = json_object_get(json_object_get(root, "model"), "merges");
    if (!json_is_array(merges)) return q3_fail(e, Q3_EFORMAT, "%s: model.merges is missing", path);
    size_t n = json_array_size(merges), i;
    q3_gguf_str *out = calloc(n ? n : 1, sizeof *out);
    char **owned = calloc(n ? n : 1, sizeof *owned);
    q3_status st = Q3_OK;
    if (!out || !owned) st = q3_fail(e, Q3_ENOMEM, "%s: out of memory", path);
    json_t *m;
    json_array_foreach(merges, i, m) {
        if (st) break;
        if (json_is_string(m)) {
            out[i] = (q3_gguf_str){json_string_value(m), json_string_length(m)};
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            const char *a = json_string_value(json_array_get(m, 0)), *b = json_string_value(json_array_get(m, 1));
            size_t len = strlen(a) + 1 + strlen(b);
            if (!(owned[i] = malloc(len + 1))) { st = q3_fail(e, Q3_ENOMEM, "%s: out of memory", path); break; }
            snprintf(owned[i], len + 1, "%s %s", a, b);
            out[i] = (q3_gguf_str){owned[i], len};
        } else {
            st = q3_fail(e, Q3_EFORMAT, "%s: model.merges[%zu] is not a merge", path, i);
        }
    }
    if (!st && q3_gguf_set_arr_str(w, "tokenizer.ggml.merges", out, n)) st = q3_fail(e, Q3_ENOMEM, "out of memory");
    for (size_t j = 0; owned && j < n; j++) free(owned[j]);
    free(owned);
    free(out);
    return st;
}

static int token_id(const vocab_table *v, json_t *tok) {
    if (json_is_object(tok)) tok = json_object_get(tok, "content");
    if (!json_is_string(tok)) return -1;
    for (int i = v->n - 1; i >= 0; i--)
        if (v->tokens[i].len == json_string_length(tok) && !memcmp(v->tokens[i].ptr, json_string_value(tok), v->tokens[i].len))
            return i;
    return -1;
}

/* tokenizer_config.json's chat_template as llama.cpp stores it: one string as
 * tokenizer.chat_template; a list of {"name", "template"} with "default" there and each other one
 * under tokenizer.chat_template.NAME. */
static q3_status add_config_templates(q3_gguf_writer *w, const json_t *tmpl) {
    if (json_is_string(tmpl)) return q3_gguf_set_str(w, "tokenizer.chat_template", json_string_value(tmpl));
    q3_status st = 0;
    for (size_t i = 0; i < json_array_size(tmpl); i++) {
        const json_t *name = json_object_get(json_array_get(tmpl, i), "name");
        const json_t *text = json_object_get(json_array_get(tmpl, i), "template");
        if (!json_is_string(name) || !json_is_string(text)) continue;
        char key[256];
        if (!strcmp(json_string_value(name), "default")) snprintf(key, sizeof key, "tokenizer.chat_template");
        else snprintf(key, sizeof key, "tokenizer.chat_template.%.200s", json_string_value(name));
        st |= q3_gguf_set_str(w, key, json_string_value(text));
    }
    return st;
}

static q3_status add_config(q3_gguf_writer *w, const vocab_table *v, const char *config_path, int bos,
                            const bool *has_template_files, q3_error *e) {
    json_error_t je;
    json_t *cfg = config_path ? json_load_file(config_path, 0, &je) : NULL;
    if (config_path && !cfg) return q3_fail(e, Q3_EFORMAT, "%s: not JSON: %s", config_path, je.text);
    int eos = token_id(v, json_object_get(cfg, "eos_token")), pad = token_id(v, json_object_get(cfg, "pad_token"));
    q3_status st = 0;
    if (bos >= 0) st |= q3_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (eos >= 0) st |= q3_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (pad >= 0) st |= q3_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad);
    st |= q3_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    if (!*has_template_files) st |= add_config_templates(w, json_object_get(cfg, "chat_template"));
    json_decref(cfg);
    return st ? q3_fail(e, Q3_ENOMEM, "out of memory") : Q3_OK;
}

/* The template files transformers writes beside the tokenizer (chat_template.jinja, and
 * additional_chat_templates/tool_use.jinja): where they exist, they replace tokenizer_config.json's
 * templates, as transformers loads them. *found says whether there were any. */
static q3_status add_template_files(q3_gguf_writer *w, const char *tokenizer_json, bool *found, q3_error *e) {
    *found = false;
    static const char *const FILES[][2] = {{"chat_template.jinja", "tokenizer.chat_template"},
                                           {"additional_chat_templates/tool_use.jinja", "tokenizer.chat_template.tool_use"}};
    const char *slash = strrchr(tokenizer_json, '/');
    int dir_len = slash ? (int)(slash - tokenizer_json) : 1;
    for (size_t i = 0; i < sizeof FILES / sizeof *FILES; i++) {
        char path[4200];
        q3_status st = q3_pathf(path, sizeof path, e, "%.*s/%s", dir_len, slash ? tokenizer_json : ".", FILES[i][0]);
        if (st) return st;
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        *found = true;
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        char buf[8192];
        for (size_t n; mem && (n = fread(buf, 1, sizeof buf, f)) > 0;) fwrite(buf, 1, n, mem);
        bool failed = ferror(f) || !mem;
        fclose(f);
        if (mem) fclose(mem);
        st = failed ? q3_fail(e, Q3_EIO, "%s: read error", path)
                    : q3_gguf_set_str(w, FILES[i][1], text) ? q3_fail(e, Q3_ENOMEM, "out of memory") : Q3_OK;
        free(text);
        if (st) return st;
    }
    return Q3_OK;
}

q3_status q3_tokenizer_json_to_gguf(q3_gguf_writer *w, const char *path, const char *config_path, int vocab_size,
                                    int bos_id, q3_error *e) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return q3_fail(e, Q3_EFORMAT, "%s: not JSON: %s (line %d)", path, je.text, je.line);
    vocab_table v = {calloc((size_t)vocab_size, sizeof *v.tokens), calloc((size_t)vocab_size, sizeof *v.types),
                     calloc((size_t)vocab_size, sizeof *v.pads), vocab_size};
    q3_status st;
    if (!v.tokens || !v.types || !v.pads) st = q3_fail(e, Q3_ENOMEM, "%s: out of memory", path);
    else if (!(st = fill_vocab(&v, root, path, e)) && !(st = add_merges(w, root, path, e))) {
        if (q3_gguf_set_str(w, "tokenizer.ggml.model", "gpt2") || q3_gguf_set_str(w, "tokenizer.ggml.pre", "qwen2") ||
            q3_gguf_set_arr_str(w, "tokenizer.ggml.tokens", v.tokens, (uint64_t)v.n) ||
            q3_gguf_set_arr_i32(w, "tokenizer.ggml.token_type", v.types, (uint64_t)v.n))
            st = q3_fail(e, Q3_ENOMEM, "out of memory");
        else {
            bool files;
            if (!(st = add_template_files(w, path, &files, e))) st = add_config(w, &v, config_path, bos_id, &files, e);
        }
    }
    free(v.tokens);
    free(v.types);
    free(v.pads);
    json_decref(root);
    return st;
}
