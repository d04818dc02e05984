/* Jinja's tests (`x is name`, `x is not name(args)`), with Python's type checks: `sequence`
 * holds for strings, lists and dicts, `number` for booleans too, `integer` not for booleans, and
 * an undefined value is iterable and a sequence (it iterates as empty), as Jinja's Undefined is.
 */
#include <string.h>
#include <utf8proc.h>

#include "text/jinja_internal.h"

typedef bool (*test_fn)(jctx *c, const jnode *at, jv v, const jargs *args, bool *out);

static bool one_arg(jctx *c, const jnode *at, const jargs *args, const char *what, jv *out) {
    if (args->n_pos != 1 || args->n_kw) return jx_fail(c, at, "the test '%s' takes one argument", what);
    *out = args->pos[0];
    return true;
}

#define SIMPLE_TEST(fname, expr)                                                \
    static bool fname(jctx *c, const jnode *at, jv v, const jargs *args, bool *out) { \
        (void)c, (void)at, (void)args, (void)v;                                 \
        *out = (expr);                                                          \
        return true;                                                            \
    }

SIMPLE_TEST(t_defined, v.type != JT_UNDEFINED)
SIMPLE_TEST(t_undefined, v.type == JT_UNDEFINED)
SIMPLE_TEST(t_none, v.type == JT_NONE)
SIMPLE_TEST(t_boolean, v.type == JT_BOOL)
SIMPLE_TEST(t_true, v.type == JT_BOOL && v.u.b)
SIMPLE_TEST(t_false, v.type == JT_BOOL && !v.u.b)
SIMPLE_TEST(t_integer, v.type == JT_INT)
SIMPLE_TEST(t_float, v.type == JT_FLOAT)
SIMPLE_TEST(t_number, jv_is_number(v))
SIMPLE_TEST(t_string, v.type == JT_STR)
SIMPLE_TEST(t_mapping, v.type == JT_DICT)
SIMPLE_TEST(t_iterable, v.type == JT_UNDEFINED || v.type == JT_STR || v.type == JT_LIST || v.type == JT_DICT ||
                            v.type == JT_LOOP)
SIMPLE_TEST(t_sequence, v.type == JT_UNDEFINED || v.type == JT_STR || v.type == JT_LIST || v.type == JT_DICT)
SIMPLE_TEST(t_callable, v.type == JT_UNDEFINED || v.type == JT_MACRO || v.type == JT_FUNC || v.type == JT_METHOD)
SIMPLE_TEST(t_escaped, false)

static bool t_odd_even(jctx *c, const jnode *at, jv v, bool odd, bool *out) {
    if (v.type != JT_INT && v.type != JT_BOOL) return jx_fail(c, at, "odd/even: expected an integer");
    int64_t i = v.type == JT_INT ? v.u.i : v.u.b;
    *out = (i % 2 != 0) == odd;
    return true;
}
static bool t_odd(jctx *c, const jnode *at, jv v, const jargs *args, bool *out) {
    (void)args;
    return t_odd_even(c, at, v, true, out);
}
static bool t_even(jctx *c, const jnode *at, jv v, const jargs *args, bool *out) {
    (void)args;
    return t_odd_even(c, at, v, false, out);
}

static bool t_divisibleby(jctx *c, const jnode *at, jv v, const jargs *args, bool *out) {
    jv d, r;
    if (!one_arg(c, at, args, "divisibleby", &d) || !jv_binop(c, at, '%', v, d, &r)) return false;
    *out = !jv_truthy(r);
    return true;
}

static bool t_case(jv v, bool upper, bool *out) {
    bool any = false, all = v.type == JT_STR;
    for (size_t i = 0; all && i < v.u.s.n;) {
        int cp = q3_utf8_next(v.u.s.p, v.u.s.n, &i);
        utf8proc_category_t cat = utf8proc_category(cp);
        if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) all = upper, any = true;
        else if (cat == UTF8PROC_CATEGORY_LL) all = !upper, any = true;
    }
    *out = all && any;
    return true;
}
static bool t_lower(jctx *c, const jnode *at, jv v, const jargs *args, bool *out) {
    (void)c, (void)at, (void)args;
    return t_case(v, false, out);
}
static bool t_upper(jctx *c, const jnode *at, jv v, const jargs *args, bool *out) {
    (void)c, (void)at, (void)args;
    return t_case(v, true, out);
}

static bool t_in(jctx *c, const jnode *at, jv v, const jargs *args, bool *out) {
    jv seq;
    return one_arg(c, at, args, "in", &seq) && jv_contains(c, at, seq, v, out);
}

static bool t_sameas(jctx *c, const jnode *at, jv v, const jargs *args, bool *out) {
    jv other;
    if (!one_arg(c, at, args, "sameas", &other)) return false;
    bool scalar = v.type == JT_NONE || v.type == JT_BOOL || v.type == JT_UNDEFINED;
    *out = v.type == other.type && (scalar ? jv_equal(c, v, other) : !memcmp(&v.u, &other.u, sizeof v.u));
    return !c->failed;
}

/* eq, ne, lt, le, gt, ge and their other spellings. */
static bool compare_test(jctx *c, const jnode *at, jv v, const jargs *args, int op, bool *out) {
    jv other;
    int cmp;
    if (!one_arg(c, at, args, "comparison", &other)) return false;
    if (op == 'E' || op == 'N') {
        *out = jv_equal(c, v, other) == (op == 'E');
        return !c->failed;
    }
    if (!jv_compare(c, at, v, other, &cmp)) return false;
    *out = op == '<' ? cmp < 0 : op == 'L' ? cmp <= 0 : op == '>' ? cmp > 0 : cmp >= 0;
    return true;
}

#define COMPARE_TEST(fname, op)                                                  \
    static bool fname(jctx *c, const jnode *at, jv v, const jargs *args, bool *out) { \
        return compare_test(c, at, v, args, op, out);                            \
    }
COMPARE_TEST(t_eq, 'E')
COMPARE_TEST(t_ne, 'N')
COMPARE_TEST(t_lt, '<')
COMPARE_TEST(t_le, 'L')
COMPARE_TEST(t_gt, '>')
COMPARE_TEST(t_ge, 'G')

static const struct {
    const char *name;
    test_fn fn;
} TESTS[] = {
    {"defined", t_defined},   {"undefined", t_undefined}, {"none", t_none},       {"boolean", t_boolean},
    {"true", t_true},         {"false", t_false},         {"integer", t_integer}, {"float", t_float},
    {"number", t_number},     {"string", t_string},       {"mapping", t_mapping}, {"iterable", t_iterable},
    {"sequence", t_sequence}, {"callable", t_callable},   {"escaped", t_escaped}, {"odd", t_odd},
    {"even", t_even},         {"divisibleby", t_divisibleby}, {"lower", t_lower}, {"upper", t_upper},
    {"in", t_in},             {"sameas", t_sameas},       {"eq", t_eq},           {"equalto", t_eq},
    {"==", t_eq},             {"ne", t_ne},               {"!=", t_ne},           {"lt", t_lt},
    {"lessthan", t_lt},       {"<", t_lt},                {"le", t_le},           {"<=", t_le},
    {"gt", t_gt},             {"greaterthan", t_gt},      {">", t_gt},            {"ge", t_ge},
    {">=", t_ge},
};

static test_fn find_test(jstr name) {
    for (size_t i = 0; i < sizeof TESTS / sizeof *TESTS; i++)
        if (jstr_eq(name, TESTS[i].name)) return TESTS[i].fn;
    return NULL;
}

bool jx_test_exists(jstr name) { return find_test(name) != NULL; }

bool jx_test(jctx *c, const jnode *at, jstr name, jv v, const jargs *args, bool *out) {
    test_fn fn = find_test(name);
    if (!fn) return jx_fail(c, at, "no test named '%.*s'", (int)name.n, name.p);
    return jx_charge_strings(c, at, v, args) && fn(c, at, v, args, out);
}
