/* Jinja values and the Python operations on them: construction from JSON, truth, equality and
 * ordering, len() and iteration, attribute and item lookup as Jinja's sandbox does it, slicing
 * (strings by character), arithmetic with Python's rules (int overflow is an error rather than a
 * big number), and `in`. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_internal.h"

jv jv_undefined(const jnode *from) { return (jv){.type = JT_UNDEFINED, .u.node = from}; }
jv jv_none(void) { return (jv){.type = JT_NONE}; }
jv jv_bool(bool b) { return (jv){.type = JT_BOOL, .u.b = b}; }
jv jv_int(int64_t i) { return (jv){.type = JT_INT, .u.i = i}; }
jv jv_float(double f) { return (jv){.type = JT_FLOAT, .u.f = f}; }
jv jv_str(const char *p, size_t n) { return (jv){.type = JT_STR, .u.s = {p, n}}; }
jv jv_cstr(const char *s) { return jv_str(s, strlen(s)); }

bool jstr_eq(jstr a, const char *s) {
    size_t n = strlen(s);
    return a.n == n && !memcmp(a.p, s, n);
}

bool jv_is_str(jv v) { return v.type == JT_STR; }
bool jv_is_number(jv v) { return v.type == JT_INT || v.type == JT_FLOAT || v.type == JT_BOOL; }
double jv_as_double(jv v) {
    return v.type == JT_FLOAT ? v.u.f : v.type == JT_INT ? (double)v.u.i : v.type == JT_BOOL ? v.u.b : 0;
}
static bool is_int_like(jv v) { return v.type == JT_INT || v.type == JT_BOOL; }
static int64_t as_int(jv v) { return v.type == JT_BOOL ? v.u.b : v.u.i; }

bool jx_fail_undefined(jctx *c, const jnode *at, jv undefined) {
    const jnode *from = undefined.u.node;
    if (from && from->kind == N_NAME)
        return jx_fail(c, at, "'%.*s' is undefined", (int)from->name.n, from->name.p);
    if (from && from->kind == N_ATTR)
        return jx_fail(c, at, "'%.*s' is undefined (the value has no such attribute or key)", (int)from->name.n,
                       from->name.p);
    return jx_fail(c, at, "an undefined value is used here");
}

/* ---- containers ---- */

bool jv_new_list(jctx *c, size_t n, bool tuple, jv *out) {
    jlist *l = ja_alloc(&c->arena, sizeof *l);
    jv *items = n ? ja_alloc(&c->arena, n * sizeof *items) : NULL;
    if (!l || (n && !items)) return jx_check_memory(c, NULL);
    l->n = n;
    l->items = items;
    l->tuple = tuple;
    *out = (jv){.type = JT_LIST, .u.list = l};
    return true;
}

bool jv_new_dict(jctx *c, size_t cap, jv *out) {
    jdict *d = ja_alloc(&c->arena, sizeof *d);
    if (!d) return jx_check_memory(c, NULL);
    d->cap = cap;
    if (cap && (!(d->keys = ja_alloc(&c->arena, cap * sizeof *d->keys)) ||
                !(d->vals = ja_alloc(&c->arena, cap * sizeof *d->vals))))
        return jx_check_memory(c, NULL);
    *out = (jv){.type = JT_DICT, .u.dict = d};
    return true;
}

const jv *jdict_get(jctx *c, const jdict *d, jv key) {
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(c, d->keys[i], key)) return &d->vals[i];
    return NULL;
}

bool jdict_set(jctx *c, jdict *d, jv key, jv val) {
    for (size_t i = 0; i < d->n; i++) {
        if (jv_equal(c, d->keys[i], key)) {
            d->vals[i] = val;
            return true;
        }
    }
    if (c->failed) return false;
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 8;
        jv *keys = ja_alloc(&c->arena, cap * sizeof *keys), *vals = ja_alloc(&c->arena, cap * sizeof *vals);
        if (!keys || !vals) return jx_check_memory(c, NULL);
        if (d->n) {
            memcpy(keys, d->keys, d->n * sizeof *keys);
            memcpy(vals, d->vals, d->n * sizeof *vals);
        }
        d->keys = keys;
        d->vals = vals;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n++] = val;
    return true;
}

/* ---- from JSON ---- */

#define MAX_JSON_DEPTH 512

static bool from_json(jctx *c, const json_t *j, jv *out, int depth);

static bool object_from_json(jctx *c, const json_t *j, jv *out, int depth) {
    if (!jv_new_dict(c, json_object_size(j), out)) return false;
    jdict *d = out->u.dict;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)j, key, val) {
        d->keys[d->n] = jv_cstr(key);
        if (!from_json(c, val, &d->vals[d->n], depth + 1)) return false;
        d->n++;
    }
    return true;
}

static bool from_json(jctx *c, const json_t *j, jv *out, int depth) {
    if (depth > MAX_JSON_DEPTH) return jx_fail(c, NULL, "the context nests more than %d deep", MAX_JSON_DEPTH);
    switch (json_typeof(j)) {
    case JSON_OBJECT: return object_from_json(c, j, out, depth);
    case JSON_ARRAY:
        if (!jv_new_list(c, json_array_size(j), false, out)) return false;
        for (size_t i = 0; i < json_array_size(j); i++)
            if (!from_json(c, json_array_get(j, i), &out->u.list->items[i], depth + 1)) return false;
        return true;
    case JSON_STRING: *out = jv_str(json_string_value(j), json_string_length(j)); return true;
    case JSON_INTEGER: *out = jv_int(json_integer_value(j)); return true;
    case JSON_REAL: *out = jv_float(json_real_value(j)); return true;
    case JSON_TRUE: *out = jv_bool(true); return true;
    case JSON_FALSE: *out = jv_bool(false); return true;
    case JSON_NULL: *out = jv_none(); return true;
    }
    return jx_fail(c, NULL, "a JSON value of unknown type");
}

bool jv_from_json(jctx *c, const json_t *j, jv *out) { return from_json(c, j, out, 0); }

/* ---- truth, equality, order ---- */

bool jv_truthy(jv v) {
    switch (v.type) {
    case JT_UNDEFINED:
    case JT_NONE: return false;
    case JT_BOOL: return v.u.b;
    case JT_INT: return v.u.i != 0;
    case JT_FLOAT: return v.u.f != 0;
    case JT_STR: return v.u.s.n > 0;
    case JT_LIST: return v.u.list->n > 0;
    case JT_DICT: return v.u.dict->n > 0;
    default: return true;
    }
}

#define MAX_COMPARE_DEPTH 256

static bool equal_at(jctx *c, jv a, jv b, int depth);

static bool dicts_equal(jctx *c, const jdict *a, const jdict *b, int depth) {
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++) {
        const jv *other = jdict_get(c, b, a->keys[i]);
        if (!other || !equal_at(c, a->vals[i], *other, depth + 1)) return false;
    }
    return true;
}

/* Containers nested past MAX_COMPARE_DEPTH compare unequal rather than exhaust the stack. */
bool jv_equal(jctx *c, jv a, jv b) { return equal_at(c, a, b, 0); }

static bool equal_at(jctx *c, jv a, jv b, int depth) {
    if (depth > MAX_COMPARE_DEPTH) return false;
    /* Strings are read only when their lengths agree, and then at most once each. */
    size_t bytes = a.type == JT_STR && b.type == JT_STR && a.u.s.n == b.u.s.n ? a.u.s.n : 0;
    if (!jx_charge(c, NULL, JX_ITEM_BYTES + bytes)) return false;
    if (jv_is_number(a) && jv_is_number(b)) {
        if (is_int_like(a) && is_int_like(b)) return as_int(a) == as_int(b);
        return jv_as_double(a) == jv_as_double(b);
    }
    if (a.type != b.type) return false;
    switch (a.type) {
    case JT_UNDEFINED:
    case JT_NONE: return true;
    case JT_STR: return a.u.s.n == b.u.s.n && !memcmp(a.u.s.p, b.u.s.p, a.u.s.n);
    case JT_LIST:
        if (a.u.list->tuple != b.u.list->tuple || a.u.list->n != b.u.list->n) return false;
        for (size_t i = 0; i < a.u.list->n; i++)
            if (!equal_at(c, a.u.list->items[i], b.u.list->items[i], depth + 1)) return false;
        return true;
    case JT_DICT: return dicts_equal(c, a.u.dict, b.u.dict, depth);
    case JT_NAMESPACE: return a.u.dict == b.u.dict;
    case JT_LOOP: return a.u.loop == b.u.loop;
    case JT_MACRO: return a.u.node == b.u.node;
    case JT_FUNC: return a.u.i == b.u.i;
    default: return false;
    }
}

static int compare_bytes(jstr a, jstr b) {
    int d = memcmp(a.p, b.p, a.n < b.n ? a.n : b.n);
    return d ? d : (a.n > b.n) - (a.n < b.n);
}

static bool compare_at(jctx *c, const jnode *at, jv a, jv b, int *cmp, int depth);

bool jv_compare(jctx *c, const jnode *at, jv a, jv b, int *cmp) { return compare_at(c, at, a, b, cmp, 0); }

static bool compare_at(jctx *c, const jnode *at, jv a, jv b, int *cmp, int depth) {
    if (depth > MAX_COMPARE_DEPTH) return jx_fail(c, at, "values nested too deep to compare");
    size_t bytes = a.type == JT_STR && b.type == JT_STR ? (a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n) : 0;
    if (!jx_charge(c, at, JX_ITEM_BYTES + bytes)) return false;
    if (jv_is_number(a) && jv_is_number(b)) {
        if (is_int_like(a) && is_int_like(b)) *cmp = (as_int(a) > as_int(b)) - (as_int(a) < as_int(b));
        else *cmp = (jv_as_double(a) > jv_as_double(b)) - (jv_as_double(a) < jv_as_double(b));
        return true;
    }
    if (a.type == JT_STR && b.type == JT_STR) {
        *cmp = compare_bytes(a.u.s, b.u.s); /* UTF-8 orders as the code points do */
        return true;
    }
    if (a.type == JT_LIST && b.type == JT_LIST && a.u.list->tuple == b.u.list->tuple) {
        const jlist *x = a.u.list, *y = b.u.list;
        for (size_t i = 0; i < x->n && i < y->n; i++) {
            if (jv_equal(c, x->items[i], y->items[i])) continue;
            if (c->failed) return false;
            return compare_at(c, at, x->items[i], y->items[i], cmp, depth + 1);
        }
        *cmp = (x->n > y->n) - (x->n < y->n);
        return true;
    }
    if (a.type == JT_UNDEFINED) return jx_fail_undefined(c, at, a);
    if (b.type == JT_UNDEFINED) return jx_fail_undefined(c, at, b);
    return jx_fail(c, at, "values of types '%s' and '%s' cannot be ordered", jv_type_name(a), jv_type_name(b));
}

const char *jv_type_name(jv v) {
    switch (v.type) {
    case JT_UNDEFINED: return "Undefined";
    case JT_NONE: return "NoneType";
    case JT_BOOL: return "bool";
    case JT_INT: return "int";
    case JT_FLOAT: return "float";
    case JT_STR: return "str";
    case JT_LIST: return v.u.list->tuple ? "tuple" : "list";
    case JT_DICT: return "dict";
    case JT_NAMESPACE: return "Namespace";
    case JT_LOOP: return "LoopContext";
    case JT_MACRO: return "Macro";
    case JT_FUNC: return "function";
    case JT_METHOD: return "method";
    }
    return "?";
}

/* ---- what reading costs ---- */

uint64_t jv_shallow_bytes(jv v) {
    switch (v.type) {
    case JT_STR: return v.u.s.n;
    case JT_LIST: return (uint64_t)v.u.list->n * JX_ITEM_BYTES;
    case JT_DICT:
    case JT_NAMESPACE: return (uint64_t)v.u.dict->n * JX_ITEM_BYTES;
    default: return 0;
    }
}

bool jx_charge_strings(jctx *c, const jnode *at, jv v, const jargs *args) {
    uint64_t bytes = v.type == JT_STR ? v.u.s.n : 0;
    for (size_t i = 0; i < args->n_pos; i++) bytes += args->pos[i].type == JT_STR ? args->pos[i].u.s.n : 0;
    for (size_t i = 0; i < args->n_kw; i++) bytes += args->kw_vals[i].type == JT_STR ? args->kw_vals[i].u.s.n : 0;
    return jx_charge(c, at, bytes);
}

/* ---- len() and iteration ---- */

bool jv_length(jctx *c, const jnode *at, jv v, size_t *n) {
    switch (v.type) {
    case JT_UNDEFINED: *n = 0; return true;
    case JT_STR:
        if (!jx_charge(c, at, v.u.s.n)) return false;
        *n = q3_utf8_count(v.u.s.p, v.u.s.n);
        return true;
    case JT_LIST: *n = v.u.list->n; return true;
    case JT_DICT: *n = v.u.dict->n; return true;
    default: return jx_fail(c, at, "a value of type '%s' has no length", jv_type_name(v));
    }
}

/* The characters of s as one-character strings. */
static bool characters(jctx *c, jstr s, const jv **items, size_t *n) {
    size_t count = q3_utf8_count(s.p, s.n);
    jv *chars = count ? ja_alloc(&c->arena, count * sizeof *chars) : NULL;
    if (count && !chars) return jx_check_memory(c, NULL);
    size_t k = 0;
    for (size_t i = 0; i < s.n;) {
        size_t start = i;
        q3_utf8_next(s.p, s.n, &i);
        chars[k++] = jv_str(s.p + start, i - start);
    }
    *items = chars;
    *n = count;
    return true;
}

bool jv_items(jctx *c, const jnode *at, jv v, const jv **items, size_t *n) {
    switch (v.type) {
    case JT_UNDEFINED: *items = NULL; *n = 0; return true;
    case JT_LIST: *items = v.u.list->items; *n = v.u.list->n; return true;
    case JT_DICT: *items = v.u.dict->keys; *n = v.u.dict->n; return true;
    case JT_STR: return characters(c, v.u.s, items, n);
    default: return jx_fail(c, at, "a value of type '%s' cannot be iterated over", jv_type_name(v));
    }
}

/* ---- lookups ---- */

static bool loop_attr(jctx *c, const jnode *at, const jloop *l, jstr name, jv *out) {
    size_t i = l->index0, n = l->n;
    if (jstr_eq(name, "index")) *out = jv_int((int64_t)i + 1);
    else if (jstr_eq(name, "index0")) *out = jv_int((int64_t)i);
    else if (jstr_eq(name, "revindex")) *out = jv_int((int64_t)(n - i));
    else if (jstr_eq(name, "revindex0")) *out = jv_int((int64_t)(n - i - 1));
    else if (jstr_eq(name, "first")) *out = jv_bool(i == 0);
    else if (jstr_eq(name, "last")) *out = jv_bool(i + 1 == n);
    else if (jstr_eq(name, "length")) *out = jv_int((int64_t)n);
    else if (jstr_eq(name, "depth")) *out = jv_int(l->depth);
    else if (jstr_eq(name, "depth0")) *out = jv_int(l->depth - 1);
    else if (jstr_eq(name, "previtem")) *out = i > 0 ? l->items[i - 1] : jv_undefined(at);
    else if (jstr_eq(name, "nextitem")) *out = i + 1 < n ? l->items[i + 1] : jv_undefined(at);
    else if (jstr_eq(name, "cycle")) return jx_fail(c, at, "loop.cycle is not supported");
    else *out = jv_undefined(at);
    return true;
}

static bool bind_method(jctx *c, jv self, jstr name, jv *out) {
    jmethod *m = ja_alloc(&c->arena, sizeof *m);
    if (!m) return jx_check_memory(c, NULL);
    m->self = self;
    m->name = name;
    *out = (jv){.type = JT_METHOD, .u.method = m};
    return true;
}

bool jv_getattr(jctx *c, const jnode *at, jv obj, jstr name, jv *out) {
    if (obj.type == JT_UNDEFINED) return jx_fail_undefined(c, at, obj);
    if (obj.type == JT_LOOP) return loop_attr(c, at, obj.u.loop, name, out);
    if (jx_has_method(obj, name)) return bind_method(c, obj, name, out);
    const jv *found = NULL;
    if (obj.type == JT_DICT || obj.type == JT_NAMESPACE) found = jdict_get(c, obj.u.dict, jv_str(name.p, name.n));
    *out = found ? *found : jv_undefined(at);
    return !c->failed;
}

/* Python's index normalisation: negative counts from the end; false when outside. */
static bool list_index(jv key, size_t n, size_t *at) {
    int64_t i = as_int(key);
    if (i < 0) i += (int64_t)n;
    if (i < 0 || (uint64_t)i >= n) return false;
    *at = (size_t)i;
    return true;
}

static bool string_index(jctx *c, jstr s, jv key, jv *out, const jnode *at) {
    const jv *chars;
    size_t n, i;
    if (!characters(c, s, &chars, &n)) return false;
    *out = list_index(key, n, &i) ? chars[i] : jv_undefined(at);
    return true;
}

bool jv_getitem(jctx *c, const jnode *at, jv obj, jv key, jv *out) {
    size_t i;
    if (obj.type == JT_UNDEFINED) return jx_fail_undefined(c, at, obj);
    if (key.type == JT_UNDEFINED) return jx_fail_undefined(c, at, key);
    if (obj.type == JT_LIST && is_int_like(key)) {
        *out = list_index(key, obj.u.list->n, &i) ? obj.u.list->items[i] : jv_undefined(at);
        return true;
    }
    if (obj.type == JT_STR && is_int_like(key)) return string_index(c, obj.u.s, key, out, at);
    if (obj.type == JT_DICT) {
        const jv *found = jdict_get(c, obj.u.dict, key);
        if (found) {
            *out = *found;
            return true;
        }
        if (c->failed) return false;
    }
    if (key.type == JT_STR) return jv_getattr(c, at, obj, key.u.s, out);
    *out = jv_undefined(at);
    return true;
}

/* ---- slices ---- */

static bool slice_bound(jctx *c, const jnode *at, const jv *v, int64_t len, int64_t step, bool is_start,
                        int64_t *out) {
    if (!v || v->type == JT_NONE) {
        *out = step > 0 ? (is_start ? 0 : len) : (is_start ? len - 1 : -1);
        return true;
    }
    if (!is_int_like(*v)) return jx_fail(c, at, "slice indices must be integers, not '%s'", jv_type_name(*v));
    int64_t i = as_int(*v);
    if (i < 0) i += len;
    int64_t lo = step > 0 ? 0 : -1, hi = step > 0 ? len : len - 1;
    *out = i < lo ? lo : i > hi ? hi : i;
    return true;
}

bool jv_slice(jctx *c, const jnode *at, jv obj, const jv *start, const jv *stop, const jv *step, jv *out) {
    if (obj.type == JT_UNDEFINED) return jx_fail_undefined(c, at, obj);
    if (obj.type != JT_LIST && obj.type != JT_STR)
        return jx_fail(c, at, "a value of type '%s' cannot be sliced", jv_type_name(obj));
    int64_t by = 1, from, to;
    if (step && step->type != JT_NONE) {
        if (!is_int_like(*step)) return jx_fail(c, at, "slice step must be an integer");
        if ((by = as_int(*step)) == 0) return jx_fail(c, at, "slice step cannot be zero");
    }
    const jv *items;
    size_t n;
    if (obj.type == JT_LIST) items = obj.u.list->items, n = obj.u.list->n;
    else if (!characters(c, obj.u.s, &items, &n)) return false;
    if (!slice_bound(c, at, start, (int64_t)n, by, true, &from) || !slice_bound(c, at, stop, (int64_t)n, by, false, &to))
        return false;
    size_t count = 0;
    for (int64_t i = from; by > 0 ? i < to : i > to; i += by) count++;
    if (obj.type == JT_LIST) {
        if (!jv_new_list(c, count, obj.u.list->tuple, out)) return false;
        size_t k = 0;
        for (int64_t i = from; by > 0 ? i < to : i > to; i += by) out->u.list->items[k++] = items[i];
        return true;
    }
    size_t bytes = 0;
    for (int64_t i = from; by > 0 ? i < to : i > to; i += by) bytes += items[i].u.s.n;
    char *s = ja_alloc(&c->arena, bytes + 1), *w = s;
    if (!s) return jx_check_memory(c, at);
    for (int64_t i = from; by > 0 ? i < to : i > to; i += by) {
        memcpy(w, items[i].u.s.p, items[i].u.s.n);
        w += items[i].u.s.n;
    }
    *out = jv_str(s, bytes);
    return true;
}

/* ---- arithmetic ---- */

static bool type_error(jctx *c, const jnode *at, int op, jv a, jv b) {
    if (a.type == JT_UNDEFINED) return jx_fail_undefined(c, at, a);
    if (b.type == JT_UNDEFINED) return jx_fail_undefined(c, at, b);
    static const char *const NAMES[] = {"+", "-", "*", "/", "//", "%", "**"};
    const char *name = NAMES[strchr("+-*/F%P", op) - "+-*/F%P"];
    return jx_fail(c, at, "unsupported operand types for %s: '%s' and '%s'", name, jv_type_name(a), jv_type_name(b));
}

static bool concat(jctx *c, const jnode *at, jv a, jv b, jv *out) {
    if (a.type == JT_STR) {
        char *s = ja_alloc(&c->arena, a.u.s.n + b.u.s.n + 1);
        if (!s) return jx_check_memory(c, at);
        memcpy(s, a.u.s.p, a.u.s.n);
        memcpy(s + a.u.s.n, b.u.s.p, b.u.s.n);
        *out = jv_str(s, a.u.s.n + b.u.s.n);
        return true;
    }
    const jlist *x = a.u.list, *y = b.u.list;
    if (!jv_new_list(c, x->n + y->n, x->tuple, out)) return false;
    if (x->n) memcpy(out->u.list->items, x->items, x->n * sizeof *x->items);
    if (y->n) memcpy(out->u.list->items + x->n, y->items, y->n * sizeof *y->items);
    return true;
}

/* s * count or list * count. */
/* count copies of the unit bytes at src into dst, by doubling what is there: a few large copies
 * rather than count small ones. */
static void fill_repeated(void *dst, const void *src, size_t unit, size_t count) {
    size_t total = unit * count, done = total ? unit : 0;
    if (done) memcpy(dst, src, unit);
    while (done < total) {
        size_t k = done < total - done ? done : total - done;
        memcpy((char *)dst + done, dst, k);
        done += k;
    }
}

static bool repeat(jctx *c, const jnode *at, jv seq, int64_t count, jv *out) {
    if (count < 0) count = 0;
    size_t unit = seq.type == JT_STR ? seq.u.s.n : seq.u.list->n * sizeof(jv);
    if (unit && (uint64_t)count > (c->arena.limit ? c->arena.limit : SIZE_MAX) / unit)
        return jx_fail(c, at, "the repeated value would not fit in the render's memory limit");
    if (unit == 0) count = 0; /* '' * 10**18 is '', at once */
    if (seq.type == JT_STR) {
        char *s = ja_alloc(&c->arena, unit * (size_t)count + 1);
        if (!s) return jx_check_memory(c, at);
        fill_repeated(s, seq.u.s.p, unit, (size_t)count);
        *out = jv_str(s, unit * (size_t)count);
        return true;
    }
    size_t n = seq.u.list->n;
    if (!jv_new_list(c, n * (size_t)count, seq.u.list->tuple, out)) return false;
    fill_repeated(out->u.list->items, seq.u.list->items, unit, (size_t)count);
    return true;
}

static bool int_pow(jctx *c, const jnode *at, int64_t base, int64_t exp, jv *out) {
    if (exp < 0) {
        *out = jv_float(pow((double)base, (double)exp));
        return true;
    }
    int64_t r = 1;
    for (; exp > 0; exp >>= 1) {
        if ((exp & 1) && __builtin_mul_overflow(r, base, &r)) return jx_fail(c, at, "integer overflow in **");
        if (exp > 1 && __builtin_mul_overflow(base, base, &base)) return jx_fail(c, at, "integer overflow in **");
    }
    *out = jv_int(r);
    return true;
}

static bool int_op(jctx *c, const jnode *at, int op, int64_t a, int64_t b, jv *out) {
    int64_t r;
    bool overflow = false;
    switch (op) {
    case '+': overflow = __builtin_add_overflow(a, b, &r); break;
    case '-': overflow = __builtin_sub_overflow(a, b, &r); break;
    case '*': overflow = __builtin_mul_overflow(a, b, &r); break;
    case '/':
        if (b == 0) return jx_fail(c, at, "division by zero");
        *out = jv_float((double)a / (double)b);
        return true;
    case 'F':
    case '%':
        if (b == 0) return jx_fail(c, at, "division by zero");
        if (a == INT64_MIN && b == -1) return jx_fail(c, at, "integer overflow");
        r = op == 'F' ? a / b - ((a % b != 0) && ((a < 0) != (b < 0))) : a % b;
        if (op == '%' && r != 0 && ((r < 0) != (b < 0))) r += b;
        break;
    case 'P': return int_pow(c, at, a, b, out);
    default: return jx_fail(c, at, "unknown operator");
    }
    if (overflow) return jx_fail(c, at, "integer overflow");
    *out = jv_int(r);
    return true;
}

static bool float_op(jctx *c, const jnode *at, int op, double a, double b, jv *out) {
    double r;
    switch (op) {
    case '+': r = a + b; break;
    case '-': r = a - b; break;
    case '*': r = a * b; break;
    case '/':
        if (b == 0) return jx_fail(c, at, "division by zero");
        r = a / b;
        break;
    case 'F':
        if (b == 0) return jx_fail(c, at, "division by zero");
        r = floor(a / b);
        break;
    case '%':
        if (b == 0) return jx_fail(c, at, "division by zero");
        r = fmod(a, b);
        if (r != 0 && ((r < 0) != (b < 0))) r += b;
        break;
    case 'P': r = pow(a, b); break;
    default: return jx_fail(c, at, "unknown operator");
    }
    *out = jv_float(r);
    return true;
}

bool jv_binop(jctx *c, const jnode *at, int op, jv a, jv b, jv *out) {
    if (is_int_like(a) && is_int_like(b)) return int_op(c, at, op, as_int(a), as_int(b), out);
    if (jv_is_number(a) && jv_is_number(b)) return float_op(c, at, op, jv_as_double(a), jv_as_double(b), out);
    if (op == '+' && a.type == JT_STR && b.type == JT_STR) return concat(c, at, a, b, out);
    if (op == '+' && a.type == JT_LIST && b.type == JT_LIST && a.u.list->tuple == b.u.list->tuple)
        return concat(c, at, a, b, out);
    if (op == '*' && (a.type == JT_STR || a.type == JT_LIST) && is_int_like(b)) return repeat(c, at, a, as_int(b), out);
    if (op == '*' && (b.type == JT_STR || b.type == JT_LIST) && is_int_like(a)) return repeat(c, at, b, as_int(a), out);
    if (op == '%' && a.type == JT_STR) return jx_fail(c, at, "string formatting with %% is not supported");
    return type_error(c, at, op, a, b);
}

bool jv_contains(jctx *c, const jnode *at, jv container, jv item, bool *out) {
    switch (container.type) {
    case JT_STR:
        if (item.type != JT_STR)
            return jx_fail(c, at, "'in <string>' needs a string on the left, not '%s'", jv_type_name(item));
        if (!jx_charge(c, at, container.u.s.n)) return false;
        *out = item.u.s.n == 0 || memmem(container.u.s.p, container.u.s.n, item.u.s.p, item.u.s.n);
        return true;
    case JT_LIST:
        *out = false;
        for (size_t i = 0; i < container.u.list->n && !*out; i++) *out = jv_equal(c, container.u.list->items[i], item);
        return !c->failed;
    case JT_DICT:
    case JT_NAMESPACE: *out = jdict_get(c, container.u.dict, item) != NULL; return !c->failed;
    case JT_UNDEFINED: *out = false; return true; /* Jinja's Undefined iterates as empty */
    default: return jx_fail(c, at, "a value of type '%s' cannot be searched with 'in'", jv_type_name(container));
    }
}
