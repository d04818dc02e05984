/* The methods templates call on values: Python's str methods (startswith, endswith, strip,
 * lstrip, rstrip, split, rsplit, splitlines, upper, lower, title, capitalize, replace, find,
 * count, join, isdigit, isalpha, isalnum, isspace), dict.get / items / keys / values, and
 * list.count / index. As in the immutable sandbox, methods that would change a dict or list exist
 * but refuse to run. Strings are handled by character (UTF-8 decoded), as Python's are.
 */
#include <string.h>
#include <utf8proc.h>

#include "text/jinja_internal.h"

static const char *const STR_METHODS[] = {
    "startswith", "endswith", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "upper", "lower",
    "title", "capitalize", "replace", "find", "count", "join", "isdigit", "isalpha", "isalnum", "isspace", NULL};
static const char *const DICT_METHODS[] = {"get", "items", "keys", "values", NULL};
static const char *const LIST_METHODS[] = {"count", "index", NULL};
static const char *const DICT_MUTATORS[] = {"update", "pop", "popitem", "setdefault", "clear", NULL};
static const char *const LIST_MUTATORS[] = {"append", "extend", "insert", "pop", "remove", "sort", "reverse", "clear",
                                            NULL};

static bool in_names(const char *const *names, jstr name) {
    for (; *names; names++)
        if (jstr_eq(name, *names)) return true;
    return false;
}

bool jx_has_method(jv self, jstr name) {
    switch (self.type) {
    case JT_STR: return in_names(STR_METHODS, name);
    case JT_DICT: return in_names(DICT_METHODS, name) || in_names(DICT_MUTATORS, name);
    case JT_LIST: return in_names(LIST_METHODS, name) || (!self.u.list->tuple && in_names(LIST_MUTATORS, name));
    default: return false;
    }
}

bool jx_is_space(int cp) {
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F) || cp == 0x85) return true;
    if (cp < 0xA0) return false;
    utf8proc_category_t cat = utf8proc_category(cp);
    return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

bool jx_take_str(jctx *c, q3_buf *b, jv *out) {
    if (c->failed) { /* past the steps while it was written */
        q3_buf_free(b);
        return false;
    }
    if (b->failed) { /* the arena could not have held it either */
        c->arena.failed = true;
        c->arena.over_limit |= b->over_limit;
    }
    char *s = b->failed ? NULL : ja_strndup(&c->arena, b->data ? b->data : "", b->len);
    size_t n = b->len;
    q3_buf_free(b);
    if (!s) return jx_check_memory(c, NULL);
    *out = jv_str(s, n);
    return true;
}

/* ---- shared with the filters ---- */

static bool in_chars(int cp, const jv *chars) {
    if (!chars) return jx_is_space(cp);
    jstr set = chars->u.s;
    for (size_t i = 0; i < set.n;)
        if (q3_utf8_next(set.p, set.n, &i) == cp) return true;
    return false;
}

bool jx_strip(jctx *c, jv s, const jv *chars, bool left, bool right, jv *out) {
    (void)c;
    const char *p = s.u.s.p;
    size_t from = 0, to = s.u.s.n;
    while (left && from < to) {
        size_t i = from;
        if (!in_chars(q3_utf8_next(p, to, &i), chars)) break;
        from = i;
    }
    while (right && to > from) {
        size_t start = to - 1;
        while (start > from && ((unsigned char)p[start] & 0xC0) == 0x80) start--;
        size_t i = start;
        if (!in_chars(q3_utf8_next(p, to, &i), chars)) break;
        to = start;
    }
    *out = jv_str(p + from, to - from);
    return true;
}

bool jx_case(jctx *c, jv s, bool upper, jv *out) {
    q3_buf b = jx_value_buf(c);
    for (size_t i = 0; i < s.u.s.n && !b.failed;) {
        int cp = q3_utf8_next(s.u.s.p, s.u.s.n, &i);
        q3_buf_put_utf8(&b, upper ? utf8proc_toupper(cp) : utf8proc_tolower(cp));
    }
    return jx_take_str(c, &b, out);
}

bool jx_replace(jctx *c, const jnode *at, jv s, jv old, jv new_, int64_t count, jv *out) {
    if (old.type != JT_STR || new_.type != JT_STR) return jx_fail(c, at, "replace: expected two strings");
    jstr t = s.u.s, o = old.u.s, r = new_.u.s;
    q3_buf b = jx_value_buf(c);
    size_t i = 0;
    for (int64_t done = 0; (count < 0 || done < count) && !b.failed; done++) {
        if (o.n == 0) { /* "" matches before every character and at the end */
            q3_buf_put(&b, r.p, r.n);
            if (i >= t.n) break;
            size_t start = i;
            q3_utf8_next(t.p, t.n, &i);
            q3_buf_put(&b, t.p + start, i - start);
            continue;
        }
        const char *hit = memmem(t.p + i, t.n - i, o.p, o.n);
        if (!hit) break;
        q3_buf_put(&b, t.p + i, (size_t)(hit - t.p) - i);
        q3_buf_put(&b, r.p, r.n);
        i = (size_t)(hit - t.p) + o.n;
    }
    if (i < t.n) q3_buf_put(&b, t.p + i, t.n - i);
    return jx_take_str(c, &b, out);
}

/* ---- str ---- */

static bool affix(jctx *c, const jnode *at, jv s, const jargs *args, bool prefix, jv *out) {
    static const char *const PARAMS[] = {"prefix"};
    jv arg;
    unsigned given;
    if (!jx_bind(c, at, prefix ? "startswith" : "endswith", args, PARAMS, 1, &arg, &given)) return false;
    if (!given) return jx_fail(c, at, "%s needs an argument", prefix ? "startswith" : "endswith");
    const jv *options = &arg;
    size_t n = 1;
    if (arg.type == JT_LIST) options = arg.u.list->items, n = arg.u.list->n;
    *out = jv_bool(false);
    for (size_t i = 0; i < n; i++) {
        if (options[i].type != JT_STR) return jx_fail(c, at, "%s: expected strings", prefix ? "startswith" : "endswith");
        jstr t = s.u.s, a = options[i].u.s;
        if (a.n <= t.n && !memcmp(prefix ? t.p : t.p + t.n - a.n, a.p, a.n)) *out = jv_bool(true);
    }
    return true;
}

static bool strip_method(jctx *c, const jnode *at, jv s, const jargs *args, jstr name, jv *out) {
    static const char *const PARAMS[] = {"chars"};
    jv chars;
    unsigned given;
    if (!jx_bind(c, at, "strip", args, PARAMS, 1, &chars, &given)) return false;
    bool have = given && chars.type != JT_NONE;
    if (have && chars.type != JT_STR) return jx_fail(c, at, "strip: chars must be a string");
    bool left = !jstr_eq(name, "rstrip"), right = !jstr_eq(name, "lstrip");
    return jx_strip(c, s, have ? &chars : NULL, left, right, out);
}

typedef struct pieces {
    jv *v;
    size_t n, cap;
} pieces;

static bool add_piece(jctx *c, pieces *l, const char *p, size_t n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        jv *v = ja_alloc(&c->arena, cap * sizeof *v);
        if (!v) return jx_check_memory(c, NULL);
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = jv_str(p, n);
    return true;
}

static bool pieces_value(jctx *c, pieces *l, jv *out) {
    if (!jv_new_list(c, l->n, false, out)) return false;
    if (l->n) memcpy(out->u.list->items, l->v, l->n * sizeof *l->v);
    return true;
}

/* split() without a separator: runs of whitespace separate, and none are empty. */
static bool split_whitespace(jctx *c, jstr t, int64_t max, pieces *l) {
    size_t i = 0;
    for (;;) {
        size_t word;
        while (i < t.n) { /* skip blanks */
            size_t at = i;
            if (!jx_is_space(q3_utf8_next(t.p, t.n, &i))) {
                i = at;
                break;
            }
        }
        if (i >= t.n) return true;
        word = i;
        if (max >= 0 && (int64_t)l->n >= max) return add_piece(c, l, t.p + word, t.n - word); /* the rest */
        while (i < t.n) {
            size_t at = i;
            if (jx_is_space(q3_utf8_next(t.p, t.n, &i))) {
                i = at;
                break;
            }
        }
        if (!add_piece(c, l, t.p + word, i - word)) return false;
    }
}

static bool split_method(jctx *c, const jnode *at, jv s, const jargs *args, bool from_right, jv *out) {
    static const char *const PARAMS[] = {"sep", "maxsplit"};
    jv a[2];
    unsigned given;
    if (!jx_bind(c, at, "split", args, PARAMS, 2, a, &given)) return false;
    int64_t max = (given & 2) && a[1].type == JT_INT ? a[1].u.i : -1;
    pieces l = {0};
    jstr t = s.u.s;
    if (!(given & 1) || a[0].type == JT_NONE) {
        if (from_right && max >= 0) return jx_fail(c, at, "rsplit without a separator and with maxsplit is not supported");
        return split_whitespace(c, t, max, &l) && pieces_value(c, &l, out);
    }
    if (a[0].type != JT_STR || a[0].u.s.n == 0) return jx_fail(c, at, "split: the separator must be a non-empty string");
    jstr sep = a[0].u.s;
    if (!from_right || max < 0) {
        size_t i = 0;
        for (const char *hit; (max < 0 || (int64_t)l.n < max) && (hit = memmem(t.p + i, t.n - i, sep.p, sep.n));) {
            if (!add_piece(c, &l, t.p + i, (size_t)(hit - t.p) - i)) return false;
            i = (size_t)(hit - t.p) + sep.n;
        }
        return add_piece(c, &l, t.p + i, t.n - i) && pieces_value(c, &l, out);
    }
    /* rsplit with maxsplit: cut from the right, then put the pieces in order */
    size_t end = t.n;
    for (int64_t k = 0; k < max; k++) {
        const char *hit = NULL;
        for (const char *p = t.p; (p = memmem(p, end - (size_t)(p - t.p), sep.p, sep.n)); p++) hit = p;
        if (!hit) break;
        if (!add_piece(c, &l, hit + sep.n, end - (size_t)(hit - t.p) - sep.n)) return false;
        end = (size_t)(hit - t.p);
    }
    if (!add_piece(c, &l, t.p, end)) return false;
    for (size_t i = 0; i < l.n / 2; i++) {
        jv tmp = l.v[i];
        l.v[i] = l.v[l.n - 1 - i];
        l.v[l.n - 1 - i] = tmp;
    }
    return pieces_value(c, &l, out);
}

static bool splitlines_method(jctx *c, jv s, jv *out) {
    pieces l = {0};
    jstr t = s.u.s;
    size_t start = 0;
    for (size_t i = 0; i < t.n; i++) {
        if (t.p[i] != '\n' && t.p[i] != '\r') continue;
        if (!add_piece(c, &l, t.p + start, i - start)) return false;
        if (t.p[i] == '\r' && i + 1 < t.n && t.p[i + 1] == '\n') i++;
        start = i + 1;
    }
    if (start < t.n && !add_piece(c, &l, t.p + start, t.n - start)) return false;
    return pieces_value(c, &l, out);
}

static bool cased(int cp) {
    utf8proc_category_t cat = utf8proc_category(cp);
    return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

/* str.title(): a cased character after a cased one goes to lower case, any other to title case;
 * str.capitalize(): the first character to upper case, the rest to lower. */
static bool title_method(jctx *c, jv s, bool capitalize, jv *out) {
    q3_buf b = jx_value_buf(c);
    bool prev_cased = false, first = true;
    for (size_t i = 0; i < s.u.s.n && !b.failed;) {
        int cp = q3_utf8_next(s.u.s.p, s.u.s.n, &i);
        int to = capitalize ? (first ? utf8proc_toupper(cp) : utf8proc_tolower(cp))
                            : (prev_cased ? utf8proc_tolower(cp) : utf8proc_totitle(cp));
        q3_buf_put_utf8(&b, to);
        prev_cased = cased(cp);
        first = false;
    }
    return jx_take_str(c, &b, out);
}

static bool one_string_arg(jctx *c, const jnode *at, const char *what, const jargs *args, jstr *out) {
    if (args->n_pos != 1 || args->n_kw || args->pos[0].type != JT_STR)
        return jx_fail(c, at, "%s takes one string", what);
    *out = args->pos[0].u.s;
    return true;
}

static bool find_method(jctx *c, const jnode *at, jv s, const jargs *args, jv *out) {
    jstr sub = {0};
    if (!one_string_arg(c, at, "find", args, &sub)) return false;
    const char *hit = memmem(s.u.s.p, s.u.s.n, sub.p, sub.n);
    *out = jv_int(hit ? (int64_t)q3_utf8_count(s.u.s.p, (size_t)(hit - s.u.s.p)) : (sub.n ? -1 : 0));
    return true;
}

static bool count_method(jctx *c, const jnode *at, jv s, const jargs *args, jv *out) {
    jstr sub = {0}, t = s.u.s;
    if (!one_string_arg(c, at, "count", args, &sub)) return false;
    if (sub.n == 0) {
        *out = jv_int((int64_t)q3_utf8_count(t.p, t.n) + 1);
        return true;
    }
    int64_t n = 0;
    for (const char *p = t.p; (p = memmem(p, t.n - (size_t)(p - t.p), sub.p, sub.n)); p += sub.n) n++;
    *out = jv_int(n);
    return true;
}

static bool join_method(jctx *c, const jnode *at, jv s, const jargs *args, jv *out) {
    const jv *items;
    size_t n;
    if (args->n_pos != 1 || args->n_kw) return jx_fail(c, at, "join takes one argument");
    if (!jv_items(c, at, args->pos[0], &items, &n)) return false;
    q3_buf b = jx_value_buf(c);
    for (size_t i = 0; i < n && !b.failed; i++) {
        if (items[i].type != JT_STR) {
            q3_buf_free(&b);
            return jx_fail(c, at, "join: item %zu is '%s', not a string", i, jv_type_name(items[i]));
        }
        if (i) q3_buf_put(&b, s.u.s.p, s.u.s.n);
        q3_buf_put(&b, items[i].u.s.p, items[i].u.s.n);
    }
    return jx_take_str(c, &b, out);
}

static bool replace_method(jctx *c, const jnode *at, jv s, const jargs *args, jv *out) {
    static const char *const PARAMS[] = {"old", "new", "count"};
    jv a[3];
    unsigned given;
    if (!jx_bind(c, at, "replace", args, PARAMS, 3, a, &given)) return false;
    if ((given & 3) != 3) return jx_fail(c, at, "replace needs old and new");
    int64_t count = (given & 4) && a[2].type == JT_INT ? a[2].u.i : -1;
    return jx_replace(c, at, s, a[0], a[1], count, out);
}

/* isdigit, isalpha, isalnum, isspace: every character (and at least one) is of the kind. */
static bool is_kind(jv s, jstr name, jv *out) {
    bool all = s.u.s.n > 0;
    for (size_t i = 0; i < s.u.s.n && all;) {
        int cp = q3_utf8_next(s.u.s.p, s.u.s.n, &i);
        utf8proc_category_t cat = utf8proc_category(cp);
        bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
        bool digit = cat == UTF8PROC_CATEGORY_ND;
        if (jstr_eq(name, "isdigit")) all = digit;
        else if (jstr_eq(name, "isalpha")) all = letter;
        else if (jstr_eq(name, "isalnum")) all = letter || digit;
        else all = jx_is_space(cp);
    }
    *out = jv_bool(all);
    return true;
}

static bool no_args(jctx *c, const jnode *at, jstr name, const jargs *args) {
    if (!args->n_pos && !args->n_kw) return true;
    return jx_fail(c, at, "%.*s takes no arguments", (int)name.n, name.p);
}

static bool call_str_method(jctx *c, const jnode *at, jv s, jstr name, const jargs *args, jv *out) {
    if (jstr_eq(name, "startswith") || jstr_eq(name, "endswith"))
        return affix(c, at, s, args, jstr_eq(name, "startswith"), out);
    if (jstr_eq(name, "strip") || jstr_eq(name, "lstrip") || jstr_eq(name, "rstrip"))
        return strip_method(c, at, s, args, name, out);
    if (jstr_eq(name, "split") || jstr_eq(name, "rsplit")) return split_method(c, at, s, args, name.p[0] == 'r', out);
    if (jstr_eq(name, "replace")) return replace_method(c, at, s, args, out);
    if (jstr_eq(name, "find")) return find_method(c, at, s, args, out);
    if (jstr_eq(name, "count")) return count_method(c, at, s, args, out);
    if (jstr_eq(name, "join")) return join_method(c, at, s, args, out);
    if (!no_args(c, at, name, args)) return false;
    if (jstr_eq(name, "splitlines")) return splitlines_method(c, s, out);
    if (jstr_eq(name, "upper") || jstr_eq(name, "lower")) return jx_case(c, s, jstr_eq(name, "upper"), out);
    if (jstr_eq(name, "title") || jstr_eq(name, "capitalize")) return title_method(c, s, name.p[0] == 'c', out);
    return is_kind(s, name, out);
}

/* ---- dict and list ---- */

/* items(), keys(), values() */
static bool dict_view(jctx *c, const jdict *d, jstr name, jv *out) {
    if (!jv_new_list(c, d->n, false, out)) return false;
    for (size_t i = 0; i < d->n; i++) {
        jv *slot = &out->u.list->items[i];
        if (jstr_eq(name, "keys")) *slot = d->keys[i];
        else if (jstr_eq(name, "values")) *slot = d->vals[i];
        else if (!jv_new_list(c, 2, true, slot)) return false;
        else slot->u.list->items[0] = d->keys[i], slot->u.list->items[1] = d->vals[i];
    }
    return true;
}

static bool call_dict_method(jctx *c, const jnode *at, jv d, jstr name, const jargs *args, jv *out) {
    if (jstr_eq(name, "get")) {
        static const char *const PARAMS[] = {"key", "default"};
        jv a[2];
        unsigned given;
        if (!jx_bind(c, at, "get", args, PARAMS, 2, a, &given)) return false;
        if (!(given & 1)) return jx_fail(c, at, "get needs a key");
        const jv *found = jdict_get(c, d.u.dict, a[0]);
        *out = found ? *found : (given & 2) ? a[1] : jv_none();
        return !c->failed;
    }
    return no_args(c, at, name, args) && dict_view(c, d.u.dict, name, out);
}

static bool call_list_method(jctx *c, const jnode *at, jv l, jstr name, const jargs *args, jv *out) {
    if (args->n_pos != 1 || args->n_kw) return jx_fail(c, at, "%.*s takes one argument", (int)name.n, name.p);
    int64_t count = 0, first = -1;
    for (size_t i = 0; i < l.u.list->n; i++) {
        if (!jv_equal(c, l.u.list->items[i], args->pos[0])) {
            if (c->failed) return false;
            continue;
        }
        count++;
        if (first < 0) first = (int64_t)i;
    }
    if (jstr_eq(name, "index") && first < 0) return jx_fail(c, at, "index: the value is not in the list");
    *out = jv_int(jstr_eq(name, "index") ? first : count);
    return true;
}

bool jx_call_method(jctx *c, const jnode *at, jv self, jstr name, const jargs *args, jv *out) {
    if ((self.type == JT_DICT && in_names(DICT_MUTATORS, name)) || (self.type == JT_LIST && in_names(LIST_MUTATORS, name)))
        return jx_fail(c, at, "%.*s would change a %s, which templates may not do", (int)name.n, name.p,
                       jv_type_name(self));
    if (!jx_charge_strings(c, at, self, args)) return false;
    switch (self.type) {
    case JT_STR: return call_str_method(c, at, self, name, args, out);
    case JT_DICT: return call_dict_method(c, at, self, name, args, out);
    case JT_LIST: return call_list_method(c, at, self, name, args, out);
    default: return jx_fail(c, at, "'%s' has no method '%.*s'", jv_type_name(self), (int)name.n, name.p);
    }
}
