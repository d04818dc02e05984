/* Reading a tokenizer: from Hugging Face's tokenizer.json (model.vocab, model.merges,
 * added_tokens, the normalizer and the pre-tokenizer's Split regex), or from a GGUF's
 * tokenizer.ggml.* metadata as llama.cpp writes it (tokens in id order, spelled as in
 * tokenizer.json, added tokens at their ids; token_type 3 = control, 4 = user-defined,
 * 5 = unused; merges as "left right" strings; the pre-tokenizer named, not spelled).
 * Anything outside what Qwen2/Qwen3 use is refused by name rather than half-honoured. */
#include "base/path.h"
#include "text/tok_internal.h"
#include "text/chat.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- tokenizer.json ---- */

static const char *type_of(json_t *obj) {
    const char *s = json_string_value(json_object_get(obj, "type"));
    return s ? s : "";
}

/* The BPE options that would change the result and that Qwen leaves off. */
static q3_status check_bpe_model(json_t *model, const char *path, q3_error *e) {
    if (!json_is_object(model)) return q3_fail(e, Q3_EFORMAT, "%s: no \"model\" object", path);
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type && strcmp(type, "BPE"))
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: model type %s (only BPE is supported)", path, type);
    const char *no_affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char *s = json_string_value(json_object_get(model, no_affix[i]));
        if (s && *s)
            return q3_fail(e, Q3_EUNSUPPORTED, "%s: model.%s \"%s\" is not supported", path,
                           no_affix[i], s);
    }
    const char *no_flag[] = {"byte_fallback", "ignore_merges"};
    for (int i = 0; i < 2; i++)
        if (json_is_true(json_object_get(model, no_flag[i])))
            return q3_fail(e, Q3_EUNSUPPORTED, "%s: model.%s is not supported", path, no_flag[i]);
    json_t *dropout = json_object_get(model, "dropout");
    if (json_is_number(dropout) && json_number_value(dropout) > 0)
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: model.dropout is not supported", path);
    if (!json_is_object(json_object_get(model, "vocab")) ||
        !json_is_array(json_object_get(model, "merges")))
        return q3_fail(e, Q3_EFORMAT, "%s: model.vocab or model.merges is missing", path);
    return Q3_OK;
}

static q3_status read_normalizer(json_t *root, bool *nfc, const char *path, q3_error *e) {
    json_t *n = json_object_get(root, "normalizer");
    *nfc = false;
    if (!n || json_is_null(n)) return Q3_OK;
    json_t *list = json_object_get(n, "normalizers");
    size_t count = !strcmp(type_of(n), "Sequence") ? json_array_size(list) : 1;
    for (size_t i = 0; i < count; i++) {
        json_t *step = !strcmp(type_of(n), "Sequence") ? json_array_get(list, i) : n;
        if (strcmp(type_of(step), "NFC"))
            return q3_fail(e, Q3_EUNSUPPORTED, "%s: normalizer %s is not supported (NFC or none)",
                           path, type_of(step));
        *nfc = true;
    }
    return Q3_OK;
}

/* One pre-tokenizer step: a Split by regex (kept), or the byte-level mapping, which the
 * encoder always does. */
static q3_status read_pretok_step(json_t *step, const char **pattern, const char *path,
                                  q3_error *e) {
    const char *type = type_of(step);
    if (!strcmp(type, "ByteLevel")) {
        if (json_is_true(json_object_get(step, "use_regex")) ||
            json_is_true(json_object_get(step, "add_prefix_space")))
            return q3_fail(e, Q3_EUNSUPPORTED,
                           "%s: ByteLevel pre-tokenizer with use_regex or add_prefix_space", path);
        return Q3_OK;
    }
    if (strcmp(type, "Split"))
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: pre-tokenizer %s is not supported", path, type);
    const char *regex = json_string_value(json_object_get(json_object_get(step, "pattern"), "Regex"));
    const char *behavior = json_string_value(json_object_get(step, "behavior"));
    if (!regex || *pattern || !behavior || strcmp(behavior, "Isolated") ||
        json_is_true(json_object_get(step, "invert")))
        return q3_fail(e, Q3_EUNSUPPORTED,
                       "%s: pre-tokenizer Split must be one Regex with behavior Isolated", path);
    *pattern = regex;
    return Q3_OK;
}

static q3_status read_pattern(json_t *root, const char **pattern, const char *path,
                              q3_error *e) {
    json_t *p = json_object_get(root, "pre_tokenizer");
    *pattern = NULL;
    bool sequence = !strcmp(type_of(p), "Sequence");
    json_t *list = json_object_get(p, "pretokenizers");
    size_t count = sequence ? json_array_size(list) : 1;
    for (size_t i = 0; i < count; i++) {
        q3_status st = read_pretok_step(sequence ? json_array_get(list, i) : p, pattern, path, e);
        if (st) return st;
    }
    if (!*pattern)
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: pre_tokenizer has no Split regex", path);
    return Q3_OK;
}

/* One past the largest id of the vocabulary and the added tokens. */
static q3_status count_ids(json_t *vocab, json_t *added, int *n_vocab, const char *path,
                           q3_error *e) {
    json_int_t top = -1;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return q3_fail(e, Q3_EFORMAT, "%s: model.vocab[\"%s\"] is not a token id", path, key);
        if (json_integer_value(v) > top) top = json_integer_value(v);
    }
    size_t i;
    json_array_foreach(added, i, v) {
        json_t *id = json_object_get(v, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0)
            return q3_fail(e, Q3_EFORMAT, "%s: added_tokens[%zu] has no id", path, i);
        if (json_integer_value(id) > top) top = json_integer_value(id);
    }
    if (top >= (1 << 24)) return q3_fail(e, Q3_EFORMAT, "%s: token id %lld", path, (long long)top);
    *n_vocab = (int)top + 1;
    return Q3_OK;
}

static q3_status set_added_token(q3_tokenizer *t, json_t *a, size_t i, const char *path,
                                 q3_error *e) {
    json_t *content = json_object_get(a, "content");
    if (!json_is_string(content))
        return q3_fail(e, Q3_EFORMAT, "%s: added_tokens[%zu] has no content", path, i);
    /* These change how the token is matched in text; Qwen sets none of them. ("normalized"
     * does not matter: NFC leaves the ASCII of Qwen's added tokens as it is.) */
    const char *unsupported[] = {"lstrip", "rstrip", "single_word"};
    for (int k = 0; k < 3; k++)
        if (json_is_true(json_object_get(a, unsupported[k])))
            return q3_fail(e, Q3_EUNSUPPORTED, "%s: added token \"%s\" sets %s, not supported", path,
                           json_string_value(content), unsupported[k]);
    enum tok_kind kind = json_is_true(json_object_get(a, "special")) ? TOK_SPECIAL : TOK_ADDED;
    return tok_set_token(t, (int32_t)json_integer_value(json_object_get(a, "id")),
                         json_string_value(content), json_string_length(content), kind, path, e);
}

/* A merge is "left right" (older files) or ["left", "right"]. */
static q3_status add_json_merge(q3_tokenizer *t, json_t *m, int rank, const char *path,
                                q3_error *e) {
    if (json_is_string(m)) {
        const char *s = json_string_value(m), *space = strchr(s, ' ');
        if (!space) return q3_fail(e, Q3_EFORMAT, "%s: merge %d \"%s\" has no space", path, rank, s);
        return tok_add_merge(t, s, (size_t)(space - s), space + 1, strlen(space + 1), rank, path, e);
    }
    json_t *l = json_array_get(m, 0), *r = json_array_get(m, 1);
    if (!json_is_string(l) || !json_is_string(r) || json_array_size(m) != 2)
        return q3_fail(e, Q3_EFORMAT, "%s: merge %d is not a pair of strings", path, rank);
    return tok_add_merge(t, json_string_value(l), json_string_length(l), json_string_value(r),
                         json_string_length(r), rank, path, e);
}

static q3_status build_from_json(q3_tokenizer **out, json_t *root, const char *path,
                                 q3_error *e) {
    json_t *model = json_object_get(root, "model"), *added = json_object_get(root, "added_tokens");
    const char *pattern = NULL;
    bool nfc = false;
    int n_vocab = 0;
    q3_status st;
    if ((st = check_bpe_model(model, path, e)) || (st = read_normalizer(root, &nfc, path, e)) ||
        (st = read_pattern(root, &pattern, path, e)))
        return st;
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if ((st = count_ids(vocab, added, &n_vocab, path, e))) return st;
    q3_tokenizer *t;
    if ((st = tok_create(&t, n_vocab, (int)json_array_size(merges), path, e))) return st;
    t->nfc = nfc;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        if ((st = tok_set_token(t, id, key, strlen(key), TOK_NORMAL, path, e))) goto fail;
    }
    size_t i;
    json_array_foreach(added, i, v) {
        if ((st = set_added_token(t, v, i, path, e))) goto fail;
    }
    if ((st = tok_index(t, path, e))) goto fail;
    json_array_foreach(merges, i, v) {
        if ((st = add_json_merge(t, v, (int)i, path, e))) goto fail;
    }
    if ((st = tok_set_pattern(t, pattern, path, e))) goto fail;
    *out = t;
    return Q3_OK;
fail:
    q3_tok_free(t);
    return st;
}

q3_status q3_tok_load_json(q3_tokenizer **out, const char *path, q3_error *e) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return q3_fail(e, Q3_EIO, "%s: %s", path, strerror(errno));
    json_error_t je;
    json_t *root = json_loadf(f, 0, &je);
    fclose(f);
    if (!root) return q3_fail(e, Q3_EFORMAT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    q3_status st = json_is_object(root) ? build_from_json(out, root, path, e)
                                        : q3_fail(e, Q3_EFORMAT, "%s: not a JSON object", path);
    json_decref(root);
    /* The chat template lives beside tokenizer.json (tokenizer_config.json, chat_template.jinja). */
    if (!st && (st = q3_chat_template_load(path, &(*out)->chat_template, e))) {
        q3_tok_free(*out);
        *out = NULL;
    }
    return st;
}

/* ---- GGUF metadata ---- */

static q3_status gguf_strings(const q3_gguf *g, const char *key, const q3_gguf_kv **kv, q3_error *e) {
    *kv = q3_gguf_find_kv(g, key);
    if (!*kv) return q3_fail(e, Q3_EFORMAT, "%s: metadata %s is missing", g->path, key);
    if ((*kv)->type != Q3_GGUF_ARRAY || (*kv)->arr_type != Q3_GGUF_STRING)
        return q3_fail(e, Q3_EFORMAT, "%s: metadata %s is not an array of strings", g->path, key);
    return Q3_OK;
}

static bool gguf_str_is(const q3_gguf *g, const char *key, const char *want, q3_gguf_str *got) {
    if (q3_gguf_get_str(g, key, got, NULL)) return false;
    return got->len == strlen(want) && !memcmp(got->ptr, want, got->len);
}

/* llama.cpp's token_type values. */
static enum tok_kind kind_of_type(int64_t type) {
    switch (type) {
    case 3: return TOK_SPECIAL; /* control */
    case 4: return TOK_ADDED;   /* user-defined */
    case 5: return TOK_UNUSED;
    default: return TOK_NORMAL;
    }
}

static q3_status check_gguf_kind(const q3_gguf *g, q3_error *e) {
    q3_gguf_str s = {"", 0};
    if (!gguf_str_is(g, "tokenizer.ggml.model", "gpt2", &s))
        return q3_fail(e, Q3_EUNSUPPORTED,
                       "%s: metadata tokenizer.ggml.model is \"%.*s\" (only gpt2, byte-level BPE)",
                       g->path, (int)s.len, s.ptr);
    /* Files written before llama.cpp recorded the pre-tokenizer lack the key; a Qwen model's
     * is qwen2 either way. */
    if (q3_gguf_find_kv(g, "tokenizer.ggml.pre") && !gguf_str_is(g, "tokenizer.ggml.pre", "qwen2", &s))
        return q3_fail(e, Q3_EUNSUPPORTED,
                       "%s: metadata tokenizer.ggml.pre is \"%.*s\" (only qwen2 is supported)",
                       g->path, (int)s.len, s.ptr);
    return Q3_OK;
}

static q3_status set_gguf_tokens(q3_tokenizer *t, const q3_gguf *g, const q3_gguf_kv *tokens,
                                 q3_error *e) {
    const q3_gguf_kv *types = q3_gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (types && (types->type != Q3_GGUF_ARRAY || types->arr_type == Q3_GGUF_STRING ||
                  types->arr_n != tokens->arr_n))
        return q3_fail(e, Q3_EFORMAT,
                       "%s: metadata tokenizer.ggml.token_type is not %llu integers", g->path,
                       (unsigned long long)tokens->arr_n);
    for (uint64_t i = 0; i < tokens->arr_n; i++) {
        enum tok_kind kind = types ? kind_of_type(q3_gguf_arr_int(types, i)) : TOK_NORMAL;
        q3_status st = tok_set_token(t, (int32_t)i, tokens->strs[i].ptr, tokens->strs[i].len, kind,
                                     g->path, e);
        if (st) return st;
    }
    return Q3_OK;
}

static q3_status add_gguf_merges(q3_tokenizer *t, const q3_gguf *g, const q3_gguf_kv *merges,
                                 q3_error *e) {
    for (uint64_t i = 0; i < merges->arr_n; i++) {
        const char *s = merges->strs[i].ptr, *space = memchr(s, ' ', merges->strs[i].len);
        if (!space)
            return q3_fail(e, Q3_EFORMAT, "%s: tokenizer.ggml.merges[%llu] has no space", g->path,
                           (unsigned long long)i);
        size_t left = (size_t)(space - s);
        q3_status st = tok_add_merge(t, s, left, space + 1, merges->strs[i].len - left - 1, (int)i,
                                     g->path, e);
        if (st) return st;
    }
    return Q3_OK;
}

static int32_t gguf_token_id(const q3_gguf *g, const char *key, int n_vocab) {
    int64_t v;
    if (q3_gguf_get_int(g, key, &v, NULL) || v < 0 || v >= n_vocab) return -1;
    return (int32_t)v;
}

/* The GGUF's chat template, with the special tokens its ids name as template variables (what
 * transformers passes from tokenizer_config.json). */
static q3_status load_gguf_template(q3_tokenizer *t, const q3_gguf *g, q3_error *e) {
    q3_status st = q3_chat_template_from_gguf(g, &t->chat_template, e);
    static const char *const NAMES[] = {"eos_token", "bos_token", "pad_token"};
    const int32_t ids[] = {t->eos, t->bos, t->pad};
    for (size_t i = 0; !st && t->chat_template && i < sizeof ids / sizeof *ids; i++) {
        if (ids[i] < 0) continue;
        const tok_entry *tok = &t->tokens[ids[i]];
        st = q3_chat_template_set_var(t->chat_template, NAMES[i],
                                      json_stringn(t->text_pool + tok->text, tok->text_len), e);
    }
    return st;
}

q3_status q3_tok_load_gguf(q3_tokenizer **out, const q3_gguf *g, q3_error *e) {
    *out = NULL;
    const q3_gguf_kv *tokens, *merges;
    q3_status st;
    if ((st = check_gguf_kind(g, e)) || (st = gguf_strings(g, "tokenizer.ggml.tokens", &tokens, e)) ||
        (st = gguf_strings(g, "tokenizer.ggml.merges", &merges, e)))
        return st;
    if (tokens->arr_n > (1 << 24) || merges->arr_n > (1 << 24))
        return q3_fail(e, Q3_EFORMAT, "%s: %llu tokens and %llu merges is implausible", g->path,
                       (unsigned long long)tokens->arr_n, (unsigned long long)merges->arr_n);
    q3_tokenizer *t;
    if ((st = tok_create(&t, (int)tokens->arr_n, (int)merges->arr_n, g->path, e))) return st;
    /* Hugging Face normalises Qwen's text to NFC; the GGUF does not say so, we follow HF. */
    t->nfc = true;
    if ((st = set_gguf_tokens(t, g, tokens, e)) || (st = tok_index(t, g->path, e)) ||
        (st = add_gguf_merges(t, g, merges, e)) ||
        (st = tok_set_pattern(t, TOK_QWEN2_PATTERN, g->path, e))) {
        q3_tok_free(t);
        return st;
    }
    t->eos = gguf_token_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab);
    t->bos = gguf_token_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab);
    t->pad = gguf_token_id(g, "tokenizer.ggml.padding_token_id", t->n_vocab);
    if ((st = load_gguf_template(t, g, e))) {
        q3_tok_free(t);
        return st;
    }
    *out = t;
    return Q3_OK;
}

/* ---- any of the three ---- */

static bool starts_with_gguf_magic(const char *path) {
    char magic[4];
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    bool yes = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    fclose(f);
    return yes;
}

q3_status q3_tok_load(q3_tokenizer **out, const char *path, q3_error *e) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb)) return q3_fail(e, Q3_EIO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        char json[4096];
        q3_status st = q3_pathf(json, sizeof json, e, "%s/tokenizer.json", path);
        if (st) return st;
        if (stat(json, &sb))
            return q3_fail(e, Q3_EIO, "%s: no tokenizer.json in this directory", path);
        return q3_tok_load_json(out, json, e);
    }
    if (!starts_with_gguf_magic(path)) return q3_tok_load_json(out, path, e);
    q3_gguf g;
    q3_status st = q3_gguf_open(&g, path, e);
    if (st) return st;
    st = q3_tok_load_gguf(out, &g, e);
    q3_gguf_close(&g);
    return st;
}
