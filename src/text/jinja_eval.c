/* Evaluating expressions, and calling what templates call: macros, the global functions
 * (range, namespace, dict, raise_exception, strftime_now) and methods of values.
 *
 * `and` and `or` return one of their operands, as in Python, so `x or 'default'` works; a
 * chained comparison stops at the first false link; `a if b` without else is undefined when b
 * is false. Looking up a name nobody set gives an undefined value, which is an error only when
 * it is used as something (an attribute taken from it, arithmetic on it, a call).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "text/jinja_internal.h"

bool jx_fail(jctx *c, const jnode *at, const char *fmt, ...) {
    if (c->failed) return false;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->failed = true;
    if (at) c->status = q3_fail(c->e, Q3_EINVAL, "%s:%d:%d: %s", c->t->name, at->line, at->col, msg);
    else c->status = q3_fail(c->e, Q3_EINVAL, "%s: %s", c->t->name, msg);
    return false;
}

bool jx_fail_depth(jctx *c, const jnode *at) {
    return jx_fail(c, at, "macro calls and blocks nested more than %d deep (the render's limit)", c->max_depth);
}

bool jx_check_memory(jctx *c, const jnode *at) {
    if (!c->arena.failed) return true;
    if (c->arena.over_limit)
        return jx_fail(c, at, "the render needs more than %zu MiB of memory (its limit)", c->arena.limit >> 20);
    if (!c->failed) {
        c->failed = true;
        c->status = q3_fail(c->e, Q3_ENOMEM, "%s: out of memory", c->t->name);
    }
    return false;
}

bool jx_bind(jctx *c, const jnode *at, const char *what, const jargs *args, const char *const *params,
             size_t n_params, jv *slots, unsigned *given) {
    *given = 0;
    if (args->n_pos > n_params)
        return jx_fail(c, at, "%s takes at most %zu arguments (%zu given)", what, n_params, args->n_pos);
    for (size_t i = 0; i < args->n_pos; i++) {
        slots[i] = args->pos[i];
        *given |= 1u << i;
    }
    for (size_t k = 0; k < args->n_kw; k++) {
        size_t i = 0;
        while (i < n_params && !jstr_eq(args->kw_names[k], params[i])) i++;
        jstr name = args->kw_names[k];
        if (i == n_params)
            return jx_fail(c, at, "%s got an unexpected keyword argument '%.*s'", what, (int)name.n, name.p);
        if (*given & (1u << i)) return jx_fail(c, at, "%s got two values for '%s'", what, params[i]);
        slots[i] = args->kw_vals[k];
        *given |= 1u << i;
    }
    return true;
}

/* ---- global functions ---- */

static bool as_int_arg(jctx *c, const jnode *at, jv v, const char *what, int64_t *out) {
    if (v.type == JT_INT || v.type == JT_BOOL) {
        *out = v.type == JT_INT ? v.u.i : v.u.b;
        return true;
    }
    return jx_fail(c, at, "%s: expected an integer, got '%s'", what, jv_type_name(v));
}

static bool call_range(jctx *c, const jnode *at, const jargs *args, jv *out) {
    int64_t v[3] = {0, 0, 1};
    if (args->n_kw || args->n_pos < 1 || args->n_pos > 3) return jx_fail(c, at, "range takes 1 to 3 integers");
    for (size_t i = 0; i < args->n_pos; i++)
        if (!as_int_arg(c, at, args->pos[i], "range", &v[args->n_pos == 1 ? 1 : i])) return false;
    if (v[2] == 0) return jx_fail(c, at, "range: step must not be zero");
    uint64_t count = 0;
    if (v[2] > 0 && v[1] > v[0]) count = ((uint64_t)v[1] - (uint64_t)v[0] - 1) / (uint64_t)v[2] + 1;
    if (v[2] < 0 && v[1] < v[0]) count = ((uint64_t)v[0] - (uint64_t)v[1] - 1) / (0 - (uint64_t)v[2]) + 1;
    if (count > c->max_steps) return jx_fail(c, at, "range of %llu numbers is past the step limit", (unsigned long long)count);
    if (!jv_new_list(c, (size_t)count, false, out)) return false;
    for (uint64_t i = 0; i < count; i++) out->u.list->items[i] = jv_int(v[0] + (int64_t)i * v[2]);
    return true;
}

/* namespace(...) and dict(...): keyword arguments, after an optional dict to start from. */
static bool call_mapping(jctx *c, const jnode *at, const jargs *args, bool ns, jv *out) {
    const char *what = ns ? "namespace" : "dict";
    if (args->n_pos > 1 || (args->n_pos == 1 && args->pos[0].type != JT_DICT))
        return jx_fail(c, at, "%s takes keyword arguments after at most one dict", what);
    if (!jv_new_dict(c, args->n_kw + (args->n_pos ? args->pos[0].u.dict->n : 0), out)) return false;
    if (args->n_pos) {
        const jdict *from = args->pos[0].u.dict;
        for (size_t i = 0; i < from->n; i++)
            if (!jdict_set(c, out->u.dict, from->keys[i], from->vals[i])) return false;
    }
    for (size_t k = 0; k < args->n_kw; k++)
        if (!jdict_set(c, out->u.dict, jv_str(args->kw_names[k].p, args->kw_names[k].n), args->kw_vals[k]))
            return false;
    if (ns) out->type = JT_NAMESPACE;
    return true;
}

static bool call_strftime_now(jctx *c, const jnode *at, const jargs *args, jv *out) {
    if (args->n_pos != 1 || args->n_kw || args->pos[0].type != JT_STR)
        return jx_fail(c, at, "strftime_now takes one format string");
    char fmt[256], text[512];
    jstr f = args->pos[0].u.s;
    if (f.n >= sizeof fmt) return jx_fail(c, at, "strftime_now: format too long");
    memcpy(fmt, f.p, f.n);
    fmt[f.n] = '\0';
    time_t now = time(NULL);
    struct tm tm;
    size_t n = localtime_r(&now, &tm) ? strftime(text, sizeof text, fmt, &tm) : 0;
    char *s = ja_strndup(&c->arena, text, n);
    if (!s) return jx_check_memory(c, at);
    *out = jv_str(s, n);
    return true;
}

static bool call_func(jctx *c, const jnode *at, int func, const jargs *args, jv *out) {
    switch (func) {
    case JF_RANGE: return call_range(c, at, args, out);
    case JF_NAMESPACE: return call_mapping(c, at, args, true, out);
    case JF_DICT: return call_mapping(c, at, args, false, out);
    case JF_STRFTIME_NOW: return call_strftime_now(c, at, args, out);
    case JF_RAISE_EXCEPTION: {
        q3_buf b = {.limit = 4096}; /* the message keeps less */
        for (size_t i = 0; i < args->n_pos; i++) jv_write_str(c, &b, args->pos[i]);
        jx_fail(c, at, "raise_exception: %s", b.data ? b.data : "");
        q3_buf_free(&b);
        return false;
    }
    }
    return jx_fail(c, at, "unknown function");
}

/* ---- macros ---- */

static bool call_macro(jctx *c, const jnode *at, const jnode *m, const jargs *args, jv *out) {
    if (!jx_step(c, at)) return false;
    if (c->depth >= c->max_depth) return jx_fail_depth(c, at);
    if (args->n_pos > m->n_names)
        return jx_fail(c, at, "macro '%.*s' takes %zu arguments (%zu given)", (int)m->name.n, m->name.p, m->n_names,
                       args->n_pos);
    jframe *f = jx_frame_new(c, c->root), *outer = c->frame;
    if (!f) return false;
    for (size_t i = 0; i < args->n_pos; i++)
        if (!jx_assign(c, f, m->names[i], args->pos[i])) return false;
    for (size_t k = 0; k < args->n_kw; k++) {
        size_t i = 0;
        while (i < m->n_names && !(m->names[i].n == args->kw_names[k].n &&
                                   !memcmp(m->names[i].p, args->kw_names[k].p, m->names[i].n)))
            i++;
        if (i == m->n_names)
            return jx_fail(c, at, "macro '%.*s' has no parameter '%.*s'", (int)m->name.n, m->name.p,
                           (int)args->kw_names[k].n, args->kw_names[k].p);
        if (!jx_assign(c, f, m->names[i], args->kw_vals[k])) return false;
    }
    c->frame = f;
    bool ok = true;
    for (size_t i = 0; ok && i < m->n_names; i++) { /* defaults, in the macro's scope, then undefined */
        if (jx_lookup_local(c, f, m->names[i])) continue;
        jv v = jv_undefined(NULL);
        ok = !c->failed && (!m->vals[i] || jx_eval(c, m->vals[i], &v)) && jx_assign(c, f, m->names[i], v);
    }
    c->depth++;
    ok = ok && jx_render_body(c, &m->body, out);
    c->depth--;
    c->frame = outer;
    return ok;
}

bool jx_call(jctx *c, const jnode *at, jv fn, const jargs *args, jv *out) {
    switch (fn.type) {
    case JT_MACRO: return call_macro(c, at, fn.u.node, args, out);
    case JT_FUNC: return call_func(c, at, (int)fn.u.i, args, out);
    case JT_METHOD: return jx_call_method(c, at, fn.u.method->self, fn.u.method->name, args, out);
    case JT_UNDEFINED: return jx_fail_undefined(c, at, fn);
    default: return jx_fail(c, at, "a value of type '%s' cannot be called", jv_type_name(fn));
    }
}

/* ---- expressions ---- */

static bool eval_args(jctx *c, const jnode *n, jargs *args) {
    *args = (jargs){.n_pos = n->n_args, .n_kw = n->n_names, .kw_names = n->names};
    if (n->n_args && !(args->pos = ja_alloc(&c->arena, n->n_args * sizeof *args->pos))) return jx_check_memory(c, n);
    if (n->n_names && !(args->kw_vals = ja_alloc(&c->arena, n->n_names * sizeof *args->kw_vals)))
        return jx_check_memory(c, n);
    for (size_t i = 0; i < n->n_args; i++)
        if (!jx_eval(c, n->args[i], &args->pos[i])) return false;
    for (size_t i = 0; i < n->n_names; i++)
        if (!jx_eval(c, n->vals[i], &args->kw_vals[i])) return false;
    return true;
}

static bool eval_call(jctx *c, const jnode *n, jv *out) {
    jargs args;
    jv fn;
    if (n->a->kind == N_ATTR) { /* obj.method(...): no bound method needed */
        jv obj;
        if (!jx_eval(c, n->a->a, &obj)) return false;
        if (obj.type != JT_UNDEFINED && jx_has_method(obj, n->a->name))
            return eval_args(c, n, &args) && jx_call_method(c, n, obj, n->a->name, &args, out);
        if (!jv_getattr(c, n->a, obj, n->a->name, &fn)) return false;
    } else if (!jx_eval(c, n->a, &fn)) {
        return false;
    }
    return eval_args(c, n, &args) && jx_call(c, n, fn, &args, out);
}

static bool eval_filter(jctx *c, const jnode *n, jv *out) {
    jv v;
    jargs args;
    return jx_eval(c, n->a, &v) && eval_args(c, n, &args) && jx_filter(c, n, n->name, v, &args, out);
}

static bool eval_test(jctx *c, const jnode *n, jv *out) {
    jv v;
    jargs args;
    bool yes;
    if (!jx_eval(c, n->a, &v) || !eval_args(c, n, &args) || !jx_test(c, n, n->name, v, &args, &yes)) return false;
    *out = jv_bool(yes != n->negate);
    return true;
}

static bool eval_unary(jctx *c, const jnode *n, jv *out) {
    jv v;
    if (!jx_eval(c, n->a, &v)) return false;
    if (n->op == 'n') {
        *out = jv_bool(!jv_truthy(v));
        return true;
    }
    if (v.type == JT_UNDEFINED) return jx_fail_undefined(c, n, v);
    if (v.type == JT_FLOAT) *out = jv_float(n->op == '-' ? -v.u.f : v.u.f);
    else if (v.type == JT_INT || v.type == JT_BOOL) {
        int64_t i = v.type == JT_INT ? v.u.i : v.u.b;
        if (n->op == '-' && i == INT64_MIN) return jx_fail(c, n, "integer overflow");
        *out = jv_int(n->op == '-' ? -i : i);
    } else {
        return jx_fail(c, n, "bad operand type for unary %c: '%s'", n->op, jv_type_name(v));
    }
    return true;
}

static bool compare_link(jctx *c, const jnode *at, int op, jv l, jv r, bool *yes) {
    int cmp;
    switch (op) {
    case 'E': *yes = jv_equal(c, l, r); return !c->failed;
    case 'N': *yes = !jv_equal(c, l, r); return !c->failed;
    case 'i': return jv_contains(c, at, r, l, yes);
    case 'I':
        if (!jv_contains(c, at, r, l, yes)) return false;
        *yes = !*yes;
        return true;
    default:
        if (!jv_compare(c, at, l, r, &cmp)) return false;
        *yes = op == '<' ? cmp < 0 : op == '>' ? cmp > 0 : op == 'L' ? cmp <= 0 : cmp >= 0;
        return true;
    }
}

static bool eval_compare(jctx *c, const jnode *n, jv *out) {
    jv left, right;
    if (!jx_eval(c, n->a, &left)) return false;
    for (size_t i = 0; i < n->n_args; i++) {
        bool yes;
        if (!jx_eval(c, n->args[i], &right) || !compare_link(c, n, n->ops[i], left, right, &yes)) return false;
        if (!yes) {
            *out = jv_bool(false);
            return true;
        }
        left = right;
    }
    *out = jv_bool(true);
    return true;
}

static bool eval_concat(jctx *c, const jnode *n, jv *out) {
    q3_buf b = jx_value_buf(c);
    for (size_t i = 0; i < n->n_args; i++) {
        jv v;
        if (!jx_eval(c, n->args[i], &v)) {
            q3_buf_free(&b);
            return false;
        }
        jv_write_str(c, &b, v);
    }
    return jx_take_str(c, &b, out);
}

static bool eval_list(jctx *c, const jnode *n, jv *out) {
    if (!jv_new_list(c, n->n_args, n->kind == N_TUPLE, out)) return false;
    for (size_t i = 0; i < n->n_args; i++)
        if (!jx_eval(c, n->args[i], &out->u.list->items[i])) return false;
    return true;
}

static bool eval_dict(jctx *c, const jnode *n, jv *out) {
    if (!jv_new_dict(c, n->n_args, out)) return false;
    for (size_t i = 0; i < n->n_args; i++) {
        jv k, v;
        if (!jx_eval(c, n->args[i], &k) || !jx_eval(c, n->vals[i], &v) || !jdict_set(c, out->u.dict, k, v))
            return false;
    }
    return true;
}

static bool eval_slice(jctx *c, const jnode *n, jv *out) {
    jv obj, b, cc, d;
    if (!jx_eval(c, n->a, &obj) || (n->b && !jx_eval(c, n->b, &b)) || (n->c && !jx_eval(c, n->c, &cc)) ||
        (n->d && !jx_eval(c, n->d, &d)))
        return false;
    return jv_slice(c, n, obj, n->b ? &b : NULL, n->c ? &cc : NULL, n->d ? &d : NULL, out);
}

static bool eval_logic(jctx *c, const jnode *n, jv *out) {
    if (!jx_eval(c, n->a, out)) return false;
    if (jv_truthy(*out) == (n->kind == N_OR)) return true;
    return jx_eval(c, n->b, out);
}

static bool eval_cond(jctx *c, const jnode *n, jv *out) {
    jv cond;
    if (!jx_eval(c, n->a, &cond)) return false;
    if (jv_truthy(cond)) return jx_eval(c, n->b, out);
    if (n->c) return jx_eval(c, n->c, out);
    *out = jv_undefined(NULL);
    return true;
}

bool jx_eval(jctx *c, const jnode *n, jv *out) {
    jv a, b;
    c->here = n;
    switch (n->kind) {
    case N_CONST: *out = n->value; return true;
    case N_NAME: {
        const jv *v = jx_lookup(c, c->frame, n->name);
        *out = v ? *v : jv_undefined(n);
        return !c->failed;
    }
    case N_ATTR: return jx_eval(c, n->a, &a) && jv_getattr(c, n, a, n->name, out);
    case N_ITEM: return jx_eval(c, n->a, &a) && jx_eval(c, n->b, &b) && jv_getitem(c, n, a, b, out);
    case N_SLICE: return eval_slice(c, n, out);
    case N_CALL: return eval_call(c, n, out);
    case N_FILTER: return eval_filter(c, n, out);
    case N_TEST: return eval_test(c, n, out);
    case N_UNARY: return eval_unary(c, n, out);
    case N_AND:
    case N_OR: return eval_logic(c, n, out);
    case N_BINOP: return jx_eval(c, n->a, &a) && jx_eval(c, n->b, &b) && jv_binop(c, n, n->op, a, b, out);
    case N_COMPARE: return eval_compare(c, n, out);
    case N_CONCAT: return eval_concat(c, n, out);
    case N_COND: return eval_cond(c, n, out);
    case N_LIST:
    case N_TUPLE: return eval_list(c, n, out);
    case N_DICT: return eval_dict(c, n, out);
    default: return jx_fail(c, n, "a statement where an expression belongs");
    }
}
