/* Jinja's filters, as Jinja 3 defines them, with transformers' tojson (json.dumps with
 * ensure_ascii=False, and its indent, separators and sort_keys options). Sorting is a stable
 * merge sort; comparisons ignore case unless case_sensitive is set, as Jinja's do. Attribute
 * arguments (map, selectattr, sort, join, ...) take dotted paths ("function.name").
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/jinja_internal.h"

typedef bool (*filter_fn)(jctx *c, const jnode *at, jv v, const jargs *args, jv *out);

#define BIND(what, ...)                                                                      \
    static const char *const PARAMS[] = {__VA_ARGS__};                                      \
    enum { N_PARAMS = sizeof PARAMS / sizeof *PARAMS };                                     \
    jv a[N_PARAMS];                                                                          \
    unsigned given;                                                                          \
    if (!jx_bind(c, at, what, args, PARAMS, N_PARAMS, a, &given)) return false

#define GIVEN(i) ((given >> (i)) & 1u)

/* A filter's input as a string: str() of it, as Jinja's soft_str does. */
static bool need_str(jctx *c, const jnode *at, const char *what, jv v, jv *out) {
    (void)at, (void)what;
    return jv_to_str(c, v, out);
}

/* ---- attribute paths and sort keys ---- */

/* item.a.b as Jinja's attribute getters read it: each part by item lookup, numbers as indexes. */
static bool attr_path(jctx *c, const jnode *at, jv item, jv path, jv *out) {
    if (path.type != JT_STR) return jv_getitem(c, at, item, path, out);
    jstr s = path.u.s;
    *out = item;
    for (size_t i = 0; i <= s.n;) {
        size_t end = i;
        while (end < s.n && s.p[end] != '.') end++;
        jstr part = {s.p + i, end - i};
        bool digits = part.n > 0;
        for (size_t k = 0; k < part.n; k++) digits = digits && part.p[k] >= '0' && part.p[k] <= '9';
        jv key = digits ? jv_int(strtoll(part.p, NULL, 10)) : jv_str(part.p, part.n);
        if (!jv_getitem(c, at, *out, key, out)) return false;
        if (out->type == JT_UNDEFINED) return true;
        i = end + 1;
    }
    return true;
}

typedef struct sort_key {
    jv key, item;
} sort_key;

/* The key an item sorts by: its attribute when one is named, lower-cased unless case matters. */
static bool key_of(jctx *c, const jnode *at, jv item, const jv *attribute, bool case_sensitive, jv *key) {
    *key = item;
    if (attribute && !attr_path(c, at, item, *attribute, key)) return false;
    if (!case_sensitive && key->type == JT_STR) return jx_case(c, *key, false, key);
    return true;
}

static void merge(jctx *c, const jnode *at, sort_key *v, sort_key *tmp, size_t lo, size_t mid, size_t hi, bool reverse) {
    size_t i = lo, j = mid, k = lo;
    while (i < mid && j < hi) {
        int cmp = 0;
        if (!c->failed) jv_compare(c, at, v[i].key, v[j].key, &cmp);
        if (reverse) cmp = -cmp;
        tmp[k++] = cmp <= 0 ? v[i++] : v[j++];
    }
    while (i < mid) tmp[k++] = v[i++];
    while (j < hi) tmp[k++] = v[j++];
    memcpy(v + lo, tmp + lo, (hi - lo) * sizeof *v);
}

/* Stable, O(n log n); a comparison that fails stops the render. (With reverse, equal keys keep
 * their order, as Python's sorted(reverse=True) does.) */
static bool sort_keys(jctx *c, const jnode *at, sort_key *v, size_t n, bool reverse) {
    sort_key *tmp = n ? ja_alloc(&c->arena, n * sizeof *tmp) : NULL;
    if (n && !tmp) return jx_check_memory(c, at);
    for (size_t width = 1; width < n; width *= 2)
        for (size_t lo = 0; lo + width < n; lo += 2 * width)
            merge(c, at, v, tmp, lo, lo + width, lo + 2 * width < n ? lo + 2 * width : n, reverse);
    return !c->failed;
}

static bool keyed_items(jctx *c, const jnode *at, jv v, const jv *attribute, bool case_sensitive, sort_key **out,
                        size_t *n) {
    const jv *items;
    if (!jv_items(c, at, v, &items, n)) return false;
    *out = *n ? ja_alloc(&c->arena, *n * sizeof **out) : NULL;
    if (*n && !*out) return jx_check_memory(c, at);
    for (size_t i = 0; i < *n; i++) {
        (*out)[i].item = items[i];
        if (!key_of(c, at, items[i], attribute, case_sensitive, &(*out)[i].key)) return false;
    }
    return true;
}

static bool list_of(jctx *c, const sort_key *v, size_t n, jv *out) {
    if (!jv_new_list(c, n, false, out)) return false;
    for (size_t i = 0; i < n; i++) out->u.list->items[i] = v[i].item;
    return true;
}

/* ---- sequences ---- */

static bool f_sort(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    BIND("sort", "reverse", "case_sensitive", "attribute");
    sort_key *items;
    size_t n;
    bool reverse = GIVEN(0) && jv_truthy(a[0]), cs = GIVEN(1) && jv_truthy(a[1]);
    return keyed_items(c, at, v, GIVEN(2) ? &a[2] : NULL, cs, &items, &n) && sort_keys(c, at, items, n, reverse) &&
           list_of(c, items, n, out);
}

static bool f_dictsort(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    BIND("dictsort", "case_sensitive", "by", "reverse");
    if (v.type != JT_DICT) return jx_fail(c, at, "dictsort needs a dict, not '%s'", jv_type_name(v));
    bool by_value = GIVEN(1) && a[1].type == JT_STR && jstr_eq(a[1].u.s, "value");
    const jdict *d = v.u.dict;
    sort_key *items = d->n ? ja_alloc(&c->arena, d->n * sizeof *items) : NULL;
    if (d->n && !items) return jx_check_memory(c, at);
    for (size_t i = 0; i < d->n; i++) {
        if (!jv_new_list(c, 2, true, &items[i].item)) return false;
        items[i].item.u.list->items[0] = d->keys[i];
        items[i].item.u.list->items[1] = d->vals[i];
        if (!key_of(c, at, by_value ? d->vals[i] : d->keys[i], NULL, GIVEN(0) && jv_truthy(a[0]), &items[i].key))
            return false;
    }
    return sort_keys(c, at, items, d->n, GIVEN(2) && jv_truthy(a[2])) && list_of(c, items, d->n, out);
}

static bool f_unique(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    BIND("unique", "case_sensitive", "attribute");
    sort_key *items;
    size_t n, kept = 0;
    if (!keyed_items(c, at, v, GIVEN(1) ? &a[1] : NULL, GIVEN(0) && jv_truthy(a[0]), &items, &n)) return false;
    for (size_t i = 0; i < n; i++) {
        bool seen = false;
        for (size_t k = 0; k < kept && !seen; k++) seen = jv_equal(c, items[k].key, items[i].key);
        if (c->failed) return false;
        if (!seen) items[kept++] = items[i];
    }
    return list_of(c, items, kept, out);
}

static bool min_max(jctx *c, const jnode *at, jv v, const jargs *args, bool max, jv *out) {
    BIND(max ? "max" : "min", "case_sensitive", "attribute");
    sort_key *items;
    size_t n;
    if (!keyed_items(c, at, v, GIVEN(1) ? &a[1] : NULL, GIVEN(0) && jv_truthy(a[0]), &items, &n)) return false;
    if (n == 0) {
        *out = jv_undefined(NULL);
        return true;
    }
    size_t best = 0;
    for (size_t i = 1; i < n; i++) {
        int cmp;
        if (!jv_compare(c, at, items[i].key, items[best].key, &cmp)) return false;
        if (max ? cmp > 0 : cmp < 0) best = i;
    }
    *out = items[best].item;
    return true;
}
static bool f_max(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) { return min_max(c, at, v, args, true, out); }
static bool f_min(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) { return min_max(c, at, v, args, false, out); }

static bool first_last(jctx *c, const jnode *at, jv v, bool last, jv *out) {
    const jv *items;
    size_t n;
    if (!jv_items(c, at, v, &items, &n)) return false;
    *out = n ? items[last ? n - 1 : 0] : jv_undefined(NULL);
    return true;
}
static bool f_first(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    (void)args;
    return first_last(c, at, v, false, out);
}
static bool f_last(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    (void)args;
    return first_last(c, at, v, true, out);
}

static bool f_list(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    const jv *items;
    size_t n;
    (void)args;
    if (!jv_items(c, at, v, &items, &n) || !jv_new_list(c, n, false, out)) return false;
    if (n) memcpy(out->u.list->items, items, n * sizeof *items);
    return true;
}

static bool f_reverse(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    const jv *items;
    size_t n;
    (void)args;
    if (!jv_items(c, at, v, &items, &n)) return false;
    if (v.type == JT_STR) {
        q3_buf b = jx_value_buf(c);
        for (size_t i = n; i-- > 0 && !b.failed;) q3_buf_put(&b, items[i].u.s.p, items[i].u.s.n);
        return jx_take_str(c, &b, out);
    }
    if (!jv_new_list(c, n, false, out)) return false;
    for (size_t i = 0; i < n; i++) out->u.list->items[i] = items[n - 1 - i];
    return true;
}

static bool f_join(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    BIND("join", "d", "attribute");
    const jv *items;
    size_t n;
    jv sep = GIVEN(0) ? a[0] : jv_str("", 0);
    if (!jv_items(c, at, v, &items, &n) || !jv_to_str(c, sep, &sep)) return false;
    q3_buf b = jx_value_buf(c);
    for (size_t i = 0; i < n && !b.failed && !c->failed; i++) {
        jv item = items[i];
        if (GIVEN(1) && !attr_path(c, at, item, a[1], &item)) {
            q3_buf_free(&b);
            return false;
        }
        if (i) q3_buf_put(&b, sep.u.s.p, sep.u.s.n);
        jv_write_str(c, &b, item);
    }
    return jx_take_str(c, &b, out);
}

static bool f_sum(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    BIND("sum", "attribute", "start");
    const jv *items;
    size_t n;
    *out = GIVEN(1) ? a[1] : jv_int(0);
    if (!jv_items(c, at, v, &items, &n)) return false;
    for (size_t i = 0; i < n; i++) {
        jv item = items[i];
        if ((GIVEN(0) && !attr_path(c, at, item, a[0], &item)) || !jv_binop(c, at, '+', *out, item, out)) return false;
    }
    return true;
}

static bool f_items(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    (void)args;
    if (v.type == JT_UNDEFINED) return jv_new_list(c, 0, false, out);
    if (v.type != JT_DICT) return jx_fail(c, at, "items needs a mapping, not '%s'", jv_type_name(v));
    return jx_call_method(c, at, v, (jstr){"items", 5}, &(jargs){0}, out);
}

/* ---- map, select, reject ---- */

static bool f_map(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    const jv *items;
    size_t n;
    if (!jv_items(c, at, v, &items, &n) || !jv_new_list(c, n, false, out)) return false;
    const jv *attribute = NULL, *fallback = NULL;
    for (size_t k = 0; k < args->n_kw; k++) {
        if (jstr_eq(args->kw_names[k], "attribute")) attribute = &args->kw_vals[k];
        else if (jstr_eq(args->kw_names[k], "default")) fallback = &args->kw_vals[k];
        else if (!attribute) return jx_fail(c, at, "map: unknown keyword argument");
    }
    if (!attribute && (args->n_pos == 0 || args->pos[0].type != JT_STR))
        return jx_fail(c, at, "map needs a filter name or attribute=");
    jargs rest = {.pos = attribute ? NULL : args->pos + 1, .n_pos = attribute ? 0 : args->n_pos - 1,
                  .kw_names = args->kw_names, .kw_vals = args->kw_vals, .n_kw = attribute ? 0 : args->n_kw};
    for (size_t i = 0; i < n; i++) {
        jv *slot = &out->u.list->items[i];
        if (attribute) {
            if (!attr_path(c, at, items[i], *attribute, slot)) return false;
            if (slot->type == JT_UNDEFINED && fallback) *slot = *fallback;
        } else if (!jx_filter(c, at, args->pos[0].u.s, items[i], &rest, slot)) {
            return false;
        }
    }
    return true;
}

/* select / reject / selectattr / rejectattr: keep the items whose (attribute's) test result is
 * keep; no test name means truthiness. */
static bool filter_items(jctx *c, const jnode *at, jv v, const jargs *args, bool by_attr, bool keep, jv *out) {
    const jv *items;
    size_t n, k = 0, first = by_attr ? 1 : 0;
    if (by_attr && (args->n_pos < 1)) return jx_fail(c, at, "selectattr/rejectattr need an attribute name");
    if (args->n_pos > first && args->pos[first].type != JT_STR) return jx_fail(c, at, "the test name must be a string");
    if (!jv_items(c, at, v, &items, &n) || !jv_new_list(c, n, false, out)) return false;
    bool has_test = args->n_pos > first;
    jargs rest = {.pos = has_test ? args->pos + first + 1 : NULL, .n_pos = has_test ? args->n_pos - first - 1 : 0,
                  .kw_names = args->kw_names, .kw_vals = args->kw_vals, .n_kw = args->n_kw};
    for (size_t i = 0; i < n; i++) {
        jv subject = items[i];
        bool yes;
        if (by_attr && !attr_path(c, at, items[i], args->pos[0], &subject)) return false;
        if (has_test ? !jx_test(c, at, args->pos[first].u.s, subject, &rest, &yes) : (yes = jv_truthy(subject), false))
            return false;
        if (yes == keep) out->u.list->items[k++] = items[i];
    }
    out->u.list->n = k;
    return true;
}
static bool f_select(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    return filter_items(c, at, v, args, false, true, out);
}
static bool f_reject(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    return filter_items(c, at, v, args, false, false, out);
}
static bool f_selectattr(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    return filter_items(c, at, v, args, true, true, out);
}
static bool f_rejectattr(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    return filter_items(c, at, v, args, true, false, out);
}

/* ---- values ---- */

static bool f_default(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    BIND("default", "default_value", "boolean");
    bool use = v.type == JT_UNDEFINED || (GIVEN(1) && jv_truthy(a[1]) && !jv_truthy(v));
    *out = !use ? v : GIVEN(0) ? a[0] : jv_str("", 0);
    return true;
}

static bool f_length(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    size_t n;
    (void)args;
    if (!jv_length(c, at, v, &n)) return false;
    *out = jv_int((int64_t)n);
    return true;
}

static bool f_string(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    (void)at, (void)args;
    return jv_to_str(c, v, out);
}

static bool f_safe(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    (void)c, (void)at, (void)args;
    *out = v;
    return true;
}

static bool f_attr(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    BIND("attr", "name");
    if (!GIVEN(0) || a[0].type != JT_STR) return jx_fail(c, at, "attr needs a name");
    return jv_getattr(c, at, v, a[0].u.s, out);
}

/* Python's int() / float() of a string: surrounding blanks allowed, underscores between digits. */
static bool parse_number(jstr s, bool integer, jv *out) {
    char buf[128];
    size_t n = 0;
    size_t i = 0, end = s.n;
    while (i < end && jx_is_space((unsigned char)s.p[i])) i++;
    while (end > i && jx_is_space((unsigned char)s.p[end - 1])) end--;
    if (end - i >= sizeof buf || end == i) return false;
    for (; i < end; i++)
        if (s.p[i] != '_') buf[n++] = s.p[i];
    buf[n] = '\0';
    char *stop;
    errno = 0;
    if (integer) {
        long long v = strtoll(buf, &stop, 10);
        if (*stop || errno) return false;
        *out = jv_int(v);
    } else {
        double v = strtod(buf, &stop);
        if (*stop) return false;
        *out = jv_float(v);
    }
    return true;
}

static bool f_int(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    BIND("int", "default", "base");
    *out = GIVEN(0) ? a[0] : jv_int(0);
    if (v.type == JT_INT || v.type == JT_BOOL) *out = jv_int(v.type == JT_INT ? v.u.i : v.u.b);
    else if (v.type == JT_FLOAT && isfinite(v.u.f) && fabs(v.u.f) < 9.2e18) *out = jv_int((int64_t)v.u.f);
    else if (v.type == JT_STR) {
        jv f;
        if (!parse_number(v.u.s, true, out) && parse_number(v.u.s, false, &f) && isfinite(f.u.f) && fabs(f.u.f) < 9.2e18)
            *out = jv_int((int64_t)f.u.f);
    }
    return true;
}

static bool f_float(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    BIND("float", "default");
    *out = GIVEN(0) ? a[0] : jv_float(0);
    if (jv_is_number(v)) *out = jv_float(jv_as_double(v));
    else if (v.type == JT_STR) parse_number(v.u.s, false, out);
    return true;
}

static bool f_abs(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    (void)args;
    if (v.type == JT_FLOAT) *out = jv_float(fabs(v.u.f));
    else if (v.type == JT_INT && v.u.i != INT64_MIN) *out = jv_int(v.u.i < 0 ? -v.u.i : v.u.i);
    else if (v.type == JT_BOOL) *out = jv_int(v.u.b);
    else return jx_fail(c, at, "abs needs a number, not '%s'", jv_type_name(v));
    return true;
}

/* round(x, precision) as Python's correctly rounded decimal rounding (half to even), through
 * printf, which rounds the exact binary value the same way; ceil and floor by method. */
static bool f_round(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    BIND("round", "precision", "method");
    if (!jv_is_number(v)) return jx_fail(c, at, "round needs a number, not '%s'", jv_type_name(v));
    int64_t p = GIVEN(0) && a[0].type == JT_INT ? a[0].u.i : 0;
    jstr method = GIVEN(1) && a[1].type == JT_STR ? a[1].u.s : (jstr){"common", 6};
    double x = jv_as_double(v), scale = pow(10, (double)p);
    if (v.type != JT_FLOAT && jstr_eq(method, "common")) { /* Python's round keeps an int an int */
        *out = jv_int(v.type == JT_INT ? v.u.i : v.u.b);
        return true;
    }
    if (jstr_eq(method, "ceil")) *out = jv_float(ceil(x * scale) / scale);
    else if (jstr_eq(method, "floor")) *out = jv_float(floor(x * scale) / scale);
    else if (!jstr_eq(method, "common")) return jx_fail(c, at, "round: method must be common, ceil or floor");
    else if (p <= 0 || p > 300 || !isfinite(x)) *out = jv_float(p == 0 ? nearbyint(x) : nearbyint(x * scale) / scale);
    else {
        char buf[512];
        snprintf(buf, sizeof buf, "%.*f", (int)p, x);
        *out = jv_float(strtod(buf, NULL));
    }
    return true;
}

/* ---- strings ---- */

static bool f_trim(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    BIND("trim", "chars");
    bool have = GIVEN(0) && a[0].type == JT_STR;
    return need_str(c, at, "trim", v, &v) && jx_strip(c, v, have ? &a[0] : NULL, true, true, out);
}

static bool f_upper(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    (void)args;
    return need_str(c, at, "upper", v, &v) && jx_case(c, v, true, out);
}
static bool f_lower(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    (void)args;
    return need_str(c, at, "lower", v, &v) && jx_case(c, v, false, out);
}
static bool f_capitalize(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    (void)args;
    return need_str(c, at, "capitalize", v, &v) && jx_call_method(c, at, v, (jstr){"capitalize", 10}, &(jargs){0}, out);
}

/* Jinja's title: each run after a blank, '-', '(', '{', '[' or '<' starts upper case, the rest of
 * it lower case. */
static bool f_title(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    (void)args;
    if (!need_str(c, at, "title", v, &v)) return false;
    q3_buf b = jx_value_buf(c);
    bool start = true;
    for (size_t i = 0; i < v.u.s.n && !b.failed;) {
        int cp = q3_utf8_next(v.u.s.p, v.u.s.n, &i);
        q3_buf_put_utf8(&b, start ? utf8proc_toupper(cp) : utf8proc_tolower(cp));
        start = jx_is_space(cp) || (cp > 0 && cp < 128 && strchr("-({[<", cp));
    }
    return jx_take_str(c, &b, out);
}

static bool f_replace(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    BIND("replace", "old", "new", "count");
    if ((given & 3) != 3) return jx_fail(c, at, "replace needs old and new");
    if (!need_str(c, at, "replace", v, &v) || !jv_to_str(c, a[0], &a[0]) || !jv_to_str(c, a[1], &a[1])) return false;
    return jx_replace(c, at, v, a[0], a[1], GIVEN(2) && a[2].type == JT_INT ? a[2].u.i : -1, out);
}

static bool f_escape(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    (void)args;
    if (!need_str(c, at, "escape", v, &v)) return false;
    q3_buf b = jx_value_buf(c);
    for (size_t i = 0; i < v.u.s.n && !b.failed; i++) {
        char ch = v.u.s.p[i];
        const char *esc = ch == '&' ? "&amp;" : ch == '<' ? "&lt;" : ch == '>' ? "&gt;" : ch == '"' ? "&#34;"
                        : ch == '\'' ? "&#39;" : NULL;
        if (esc) q3_buf_puts(&b, esc);
        else q3_buf_putc(&b, ch);
    }
    return jx_take_str(c, &b, out);
}

/* indent(width, first, blank): every line after the first gets width spaces (or the string
 * given); first indents the first line too; blank indents empty lines as well. */
static bool f_indent(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    BIND("indent", "width", "first", "blank");
    jv pad = GIVEN(0) ? a[0] : jv_int(4);
    if (pad.type == JT_INT) {
        if (!jv_binop(c, at, '*', jv_str(" ", 1), pad, &pad)) return false;
    } else if (pad.type != JT_STR) {
        return jx_fail(c, at, "indent: width must be a number or a string");
    }
    if (!need_str(c, at, "indent", v, &v)) return false;
    bool first = GIVEN(1) && jv_truthy(a[1]), blank = GIVEN(2) && jv_truthy(a[2]);
    q3_buf b = jx_value_buf(c);
    jstr s = v.u.s;
    for (size_t i = 0, line = 0; i <= s.n && !b.failed; line++) {
        size_t end = i;
        while (end < s.n && s.p[end] != '\n') end++;
        if (line) q3_buf_putc(&b, '\n');
        if ((line || first) && (blank || end > i)) q3_buf_put(&b, pad.u.s.p, pad.u.s.n);
        q3_buf_put(&b, s.p + i, end - i);
        i = end + 1;
    }
    return jx_take_str(c, &b, out);
}

/* tojson as transformers defines it: json.dumps(x, ensure_ascii=False, indent=None,
 * separators=None, sort_keys=False), in that order of positional arguments. */
static bool f_tojson(jctx *c, const jnode *at, jv v, const jargs *args, jv *out) {
    BIND("tojson", "ensure_ascii", "indent", "separators", "sort_keys");
    jjson_opts o = {.indent = -1, .ensure_ascii = GIVEN(0) && jv_truthy(a[0]), .sort_keys = GIVEN(3) && jv_truthy(a[3])};
    if (GIVEN(1) && a[1].type == JT_INT) o.indent = a[1].u.i < 0 ? 0 : a[1].u.i > 64 ? 64 : (int)a[1].u.i;
    else if (GIVEN(1) && a[1].type != JT_NONE) return jx_fail(c, at, "tojson: indent must be a number");
    char seps[2][64];
    if (GIVEN(2) && a[2].type != JT_NONE) {
        const jlist *l = a[2].type == JT_LIST ? a[2].u.list : NULL;
        if (!l || l->n != 2 || l->items[0].type != JT_STR || l->items[1].type != JT_STR ||
            l->items[0].u.s.n >= sizeof seps[0] || l->items[1].u.s.n >= sizeof seps[1])
            return jx_fail(c, at, "tojson: separators must be two short strings");
        for (int k = 0; k < 2; k++) snprintf(seps[k], sizeof seps[k], "%.*s", (int)l->items[k].u.s.n, l->items[k].u.s.p);
        o.item_sep = seps[0];
        o.key_sep = seps[1];
    }
    q3_buf b = jx_value_buf(c);
    if (!jv_write_json(c, at, &b, v, &o, 0)) {
        q3_buf_free(&b);
        return false;
    }
    return jx_take_str(c, &b, out);
}

static const struct {
    const char *name;
    filter_fn fn;
} FILTERS[] = {
    {"abs", f_abs},           {"attr", f_attr},         {"capitalize", f_capitalize}, {"count", f_length},
    {"d", f_default},         {"default", f_default},   {"dictsort", f_dictsort},     {"e", f_escape},
    {"escape", f_escape},     {"first", f_first},       {"float", f_float},           {"indent", f_indent},
    {"int", f_int},           {"items", f_items},       {"join", f_join},             {"last", f_last},
    {"length", f_length},     {"list", f_list},         {"lower", f_lower},           {"map", f_map},
    {"max", f_max},           {"min", f_min},           {"reject", f_reject},         {"rejectattr", f_rejectattr},
    {"replace", f_replace},   {"reverse", f_reverse},   {"round", f_round},           {"safe", f_safe},
    {"select", f_select},     {"selectattr", f_selectattr}, {"sort", f_sort},         {"string", f_string},
    {"sum", f_sum},           {"title", f_title},       {"tojson", f_tojson},         {"trim", f_trim},
    {"unique", f_unique},     {"upper", f_upper},
};

static filter_fn find_filter(jstr name) {
    for (size_t i = 0; i < sizeof FILTERS / sizeof *FILTERS; i++)
        if (jstr_eq(name, FILTERS[i].name)) return FILTERS[i].fn;
    return NULL;
}

bool jx_filter_exists(jstr name) { return find_filter(name) != NULL; }

/* Filters that read one item or the length (a string's length is charged by jv_length); the others
 * read their whole input, strings and lists alike, and are charged for it. */
static bool reads_little(jstr name) {
    static const char *const NAMES[] = {"length", "count", "first", "last", "default", "d"};
    for (size_t i = 0; i < sizeof NAMES / sizeof *NAMES; i++)
        if (jstr_eq(name, NAMES[i])) return true;
    return false;
}

bool jx_filter(jctx *c, const jnode *at, jstr name, jv v, const jargs *args, jv *out) {
    filter_fn fn = find_filter(name);
    if (!fn) return jx_fail(c, at, "no filter named '%.*s'", (int)name.n, name.p);
    if (!jx_charge_strings(c, at, v, args) ||
        (v.type != JT_STR && !reads_little(name) && !jx_charge(c, at, jv_shallow_bytes(v))))
        return false;
    return fn(c, at, v, args, out);
}
