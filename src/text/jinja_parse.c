/* Tokens to a syntax tree, by recursive descent over Jinja's grammar.
 *
 * Expressions follow Jinja's precedence, loosest first: `a if b else c`, or, and, not,
 * comparisons (chained, with in / not in), + and -, ~, * / // %, ** (left to right, as Jinja
 * has it), unary - and +, then a primary with its postfixes (.attr, [item], [a:b:c], (call)),
 * filters (| name(args)) and tests (is [not] name args), which bind tighter than any operator:
 * `'\n' + content | trim` trims content alone. Statements are if / elif / else, for (targets,
 * `if` filter, else), set (name, namespace attribute, several names, or a block), macro, filter,
 * with, break / continue inside loops, and transformers' generation block. Nesting is bounded,
 * so a hostile template cannot exhaust the stack.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "text/jinja_internal.h"

#define MAX_NESTING 200

typedef struct parser {
    const char *name;
    const jtoken *t;
    size_t n, pos;
    jarena *a;
    q3_error *e;
    bool failed;
    q3_status status;
    int nesting;
    int loops; /* for loops around the statement being parsed (0 inside a macro) */
} parser;

static const jtoken *cur(const parser *p) { return &p->t[p->pos < p->n ? p->pos : p->n - 1]; }
static const jtoken *peek(const parser *p, size_t ahead) {
    return &p->t[p->pos + ahead < p->n ? p->pos + ahead : p->n - 1];
}
static const jtoken *next(parser *p) {
    const jtoken *t = cur(p);
    if (p->pos < p->n - 1) p->pos++;
    return t;
}

static void describe(const jtoken *t, char *buf, size_t size) {
    switch (t->kind) {
    case T_EOF: snprintf(buf, size, "the end of the template"); break;
    case T_TEXT: snprintf(buf, size, "template text"); break;
    case T_BLOCK_BEGIN: snprintf(buf, size, "'{%%'"); break;
    case T_BLOCK_END: snprintf(buf, size, "'%%}'"); break;
    case T_VAR_BEGIN: snprintf(buf, size, "'{{'"); break;
    case T_VAR_END: snprintf(buf, size, "'}}'"); break;
    case T_NAME: snprintf(buf, size, "'%.*s'", (int)(t->s.n > 40 ? 40 : t->s.n), t->s.p); break;
    case T_STRING: snprintf(buf, size, "a string"); break;
    case T_INT:
    case T_FLOAT: snprintf(buf, size, "a number"); break;
    default: {
        static const char *const TWO[] = {"//", "**", "==", "!=", "<=", ">="};
        const char *two = strchr("FPENLG", t->op) ? TWO[strchr("FPENLG", t->op) - "FPENLG"] : NULL;
        if (two) snprintf(buf, size, "'%s'", two);
        else snprintf(buf, size, "'%c'", t->op);
    }
    }
}

static void *fail_at(parser *p, const jtoken *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void *fail_at(parser *p, const jtoken *t, const char *fmt, ...) {
    if (p->failed) return NULL;
    char msg[240];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->failed = true;
    p->status = q3_fail(p->e, Q3_EFORMAT, "%s:%d:%d: %s", p->name, t->line, t->col, msg);
    return NULL;
}

static void *unexpected(parser *p, const char *wanted) {
    char got[64];
    describe(cur(p), got, sizeof got);
    return fail_at(p, cur(p), "expected %s, got %s", wanted, got);
}

static void *out_of_memory(parser *p) {
    if (!p->failed) p->status = q3_fail(p->e, Q3_ENOMEM, "%s: out of memory", p->name);
    p->failed = true;
    return NULL;
}

static bool at_op(const parser *p, int op) { return cur(p)->kind == T_OP && cur(p)->op == op; }
static bool at_name(const parser *p, const char *name) {
    return cur(p)->kind == T_NAME && jstr_eq(cur(p)->s, name);
}
static bool skip_op(parser *p, int op) {
    if (!at_op(p, op)) return false;
    next(p);
    return true;
}
static bool skip_name(parser *p, const char *name) {
    if (!at_name(p, name)) return false;
    next(p);
    return true;
}
static bool expect_op(parser *p, int op) {
    if (skip_op(p, op)) return true;
    char want[8] = {'\'', (char)op, '\'', 0};
    unexpected(p, want);
    return false;
}
static bool expect_kind(parser *p, jtok kind, const char *what) {
    if (cur(p)->kind == kind) {
        next(p);
        return true;
    }
    unexpected(p, what);
    return false;
}

static jnode *new_node(parser *p, jkind kind, const jtoken *at) {
    jnode *n = ja_alloc(p->a, sizeof *n);
    if (!n) return out_of_memory(p);
    n->kind = kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

/* ---- growing lists of nodes and names ---- */

typedef struct nodes {
    jnode **v;
    size_t n, cap;
} nodes;

static bool add_slot(parser *p, nodes *l, jnode *x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4;
        jnode **v = ja_alloc(p->a, cap * sizeof *v);
        if (!v) return out_of_memory(p), false;
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return true;
}

/* Appends x; false (nothing added) when x is NULL, the failure of the parse that made it. */
static bool add_node(parser *p, nodes *l, jnode *x) { return x && add_slot(p, l, x); }

typedef struct names {
    jstr *v;
    size_t n, cap;
} names;

static bool add_name(parser *p, names *l, jstr s) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4;
        jstr *v = ja_alloc(p->a, cap * sizeof *v);
        if (!v) return out_of_memory(p), false;
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return true;
}

static bool deeper(parser *p) {
    if (++p->nesting <= MAX_NESTING) return true;
    fail_at(p, cur(p), "nested more than %d deep", MAX_NESTING);
    return false;
}

/* ---- expressions ---- */

static jnode *parse_expression(parser *p, bool with_condexpr);
static jnode *parse_or(parser *p);
static jnode *parse_unary(parser *p, bool with_filter);
static jnode *parse_primary(parser *p);
static jnode *parse_postfix(parser *p, jnode *n);

/* Call arguments after '(' up to ')': positional into args, keyword into names/vals. */
static bool parse_call_args(parser *p, jnode *call) {
    nodes args = {0}, vals = {0};
    names kw = {0};
    while (!at_op(p, ')')) {
        if ((args.n || kw.n) && !expect_op(p, ',')) return false;
        if (at_op(p, ')')) break; /* a trailing comma */
        if (at_op(p, '*')) return fail_at(p, cur(p), "*args and **kwargs are not supported"), false;
        if (cur(p)->kind == T_NAME && peek(p, 1)->kind == T_OP && peek(p, 1)->op == '=') {
            jstr name = next(p)->s;
            next(p);
            if (!add_name(p, &kw, name) || !add_node(p, &vals, parse_expression(p, true))) return false;
        } else if (kw.n) {
            return fail_at(p, cur(p), "a positional argument after keyword arguments"), false;
        } else if (!add_node(p, &args, parse_expression(p, true))) {
            return false;
        }
    }
    next(p);
    call->args = args.v;
    call->n_args = args.n;
    call->names = kw.v;
    call->vals = vals.v;
    call->n_names = kw.n;
    return true;
}

static jnode *parse_call(parser *p, jnode *fn) {
    jnode *call = new_node(p, N_CALL, cur(p));
    next(p); /* ( */
    if (!call || !parse_call_args(p, call)) return NULL;
    call->a = fn;
    call->line = fn->line; /* errors of a call point at what is called */
    call->col = fn->col;
    return call;
}

static jnode *parse_filter(parser *p, jnode *input) {
    if (cur(p)->kind != T_NAME) return unexpected(p, "a filter name");
    if (!jx_filter_exists(cur(p)->s))
        return fail_at(p, cur(p), "no filter named '%.*s'", (int)(cur(p)->s.n > 40 ? 40 : cur(p)->s.n), cur(p)->s.p);
    jnode *f = new_node(p, N_FILTER, cur(p));
    if (!f) return NULL;
    f->name = next(p)->s;
    f->a = input;
    if (at_op(p, '(')) {
        next(p);
        if (!parse_call_args(p, f)) return NULL;
    }
    return f;
}

static bool starts_test_argument(const parser *p) {
    const jtoken *t = cur(p);
    if (t->kind == T_NAME)
        return !jstr_eq(t->s, "else") && !jstr_eq(t->s, "or") && !jstr_eq(t->s, "and") && !jstr_eq(t->s, "if");
    return t->kind == T_STRING || t->kind == T_INT || t->kind == T_FLOAT ||
           (t->kind == T_OP && (t->op == '(' || t->op == '[' || t->op == '{'));
}

static jnode *parse_test(parser *p, jnode *input) {
    jnode *t = new_node(p, N_TEST, cur(p));
    if (!t) return NULL;
    next(p); /* is */
    t->negate = skip_name(p, "not");
    if (cur(p)->kind != T_NAME) return unexpected(p, "a test name");
    if (!jx_test_exists(cur(p)->s))
        return fail_at(p, cur(p), "no test named '%.*s'", (int)(cur(p)->s.n > 40 ? 40 : cur(p)->s.n), cur(p)->s.p);
    t->name = next(p)->s;
    t->a = input;
    if (at_op(p, '(')) {
        next(p);
        if (!parse_call_args(p, t)) return NULL;
    } else if (starts_test_argument(p)) {
        if (at_name(p, "is")) return fail_at(p, cur(p), "tests cannot be chained with 'is'");
        jnode *arg = parse_postfix(p, parse_primary(p));
        if (!arg) return NULL;
        t->args = ja_alloc(p->a, sizeof *t->args);
        if (!t->args) return out_of_memory(p);
        t->args[0] = arg;
        t->n_args = 1;
    }
    return t;
}

static jnode *parse_filter_expr(parser *p, jnode *n) {
    while (n) {
        if (at_op(p, '|')) {
            next(p);
            n = parse_filter(p, n);
        } else if (at_name(p, "is")) {
            n = parse_test(p, n);
        } else if (at_op(p, '(')) {
            n = parse_call(p, n);
        } else {
            break;
        }
    }
    return n;
}

/* [start:stop:step] or [index], after the '['. */
static jnode *parse_subscript(parser *p, jnode *obj) {
    const jtoken *at = next(p);
    jnode *start = NULL, *stop = NULL, *step = NULL;
    if (!at_op(p, ':')) {
        start = parse_expression(p, true);
        if (!start) return NULL;
        if (!at_op(p, ':')) {
            jnode *item = new_node(p, N_ITEM, at);
            if (!item || !expect_op(p, ']')) return NULL;
            item->a = obj;
            item->b = start;
            return item;
        }
    }
    next(p); /* : */
    if (!at_op(p, ']') && !at_op(p, ':') && !(stop = parse_expression(p, true))) return NULL;
    if (skip_op(p, ':') && !at_op(p, ']') && !(step = parse_expression(p, true))) return NULL;
    jnode *slice = new_node(p, N_SLICE, at);
    if (!slice || !expect_op(p, ']')) return NULL;
    slice->a = obj;
    slice->b = start;
    slice->c = stop;
    slice->d = step;
    return slice;
}

static jnode *parse_dot(parser *p, jnode *obj) {
    const jtoken *at = next(p);
    if (cur(p)->kind == T_INT) { /* x.0 is x[0] */
        jnode *item = new_node(p, N_ITEM, at), *index = new_node(p, N_CONST, cur(p));
        if (!item || !index) return NULL;
        index->value = jv_int(next(p)->i);
        item->a = obj;
        item->b = index;
        return item;
    }
    if (cur(p)->kind != T_NAME) return unexpected(p, "an attribute name");
    jnode *attr = new_node(p, N_ATTR, at);
    if (!attr) return NULL;
    attr->name = next(p)->s;
    attr->a = obj;
    return attr;
}

static jnode *parse_postfix(parser *p, jnode *n) {
    while (n) {
        if (at_op(p, '.')) n = parse_dot(p, n);
        else if (at_op(p, '[')) n = parse_subscript(p, n);
        else if (at_op(p, '(')) n = parse_call(p, n);
        else break;
    }
    return n;
}

/* A comma-separated run: one expression as it is, or a tuple when there is a comma (or, inside
 * parentheses, nothing at all). */
static jnode *parse_tuple(parser *p, bool with_condexpr, bool explicit_parens, const char *end_name) {
    const jtoken *at = cur(p);
    nodes items = {0};
    bool is_tuple = false;
    for (;;) {
        if (items.n && !skip_op(p, ',')) break;
        const jtoken *t = cur(p);
        if (t->kind == T_VAR_END || t->kind == T_BLOCK_END || at_op(p, ')') || (end_name && at_name(p, end_name)))
            break;
        if (!add_node(p, &items, parse_expression(p, with_condexpr))) return NULL;
        if (at_op(p, ',')) is_tuple = true;
        else break;
    }
    if (!is_tuple && items.n == 1) return items.v[0];
    if (!is_tuple && !explicit_parens) return unexpected(p, "an expression");
    jnode *tuple = new_node(p, N_TUPLE, at);
    if (!tuple) return NULL;
    tuple->args = items.v;
    tuple->n_args = items.n;
    return tuple;
}

static jnode *parse_list(parser *p) {
    jnode *list = new_node(p, N_LIST, next(p));
    nodes items = {0};
    if (!list) return NULL;
    while (!at_op(p, ']')) {
        if (items.n && !expect_op(p, ',')) return NULL;
        if (at_op(p, ']')) break;
        if (!add_node(p, &items, parse_expression(p, true))) return NULL;
    }
    next(p);
    list->args = items.v;
    list->n_args = items.n;
    return list;
}

static jnode *parse_dict(parser *p) {
    jnode *dict = new_node(p, N_DICT, next(p));
    nodes keys = {0}, vals = {0};
    if (!dict) return NULL;
    while (!at_op(p, '}')) {
        if (keys.n && !expect_op(p, ',')) return NULL;
        if (at_op(p, '}')) break;
        if (!add_node(p, &keys, parse_expression(p, true)) || !expect_op(p, ':') ||
            !add_node(p, &vals, parse_expression(p, true)))
            return NULL;
    }
    next(p);
    dict->args = keys.v;
    dict->vals = vals.v;
    dict->n_args = dict->n_names = keys.n;
    return dict;
}

static jnode *parse_constant_name(parser *p, const jtoken *t) {
    jnode *n = new_node(p, N_CONST, t);
    if (!n) return NULL;
    if (jstr_eq(t->s, "true") || jstr_eq(t->s, "True")) n->value = jv_bool(true);
    else if (jstr_eq(t->s, "false") || jstr_eq(t->s, "False")) n->value = jv_bool(false);
    else if (jstr_eq(t->s, "none") || jstr_eq(t->s, "None")) n->value = jv_none();
    else {
        n->kind = N_NAME;
        n->name = t->s;
    }
    return n;
}

/* Adjacent string literals join into one, as in Python. */
static jnode *parse_strings(parser *p) {
    jnode *n = new_node(p, N_CONST, cur(p));
    if (!n) return NULL;
    jstr s = next(p)->s;
    while (cur(p)->kind == T_STRING) {
        jstr more = next(p)->s;
        char *joined = ja_alloc(p->a, s.n + more.n + 1);
        if (!joined) return out_of_memory(p);
        memcpy(joined, s.p, s.n);
        memcpy(joined + s.n, more.p, more.n);
        s = (jstr){joined, s.n + more.n};
    }
    n->value = jv_str(s.p, s.n);
    return n;
}

static jnode *parse_primary(parser *p) {
    const jtoken *t = cur(p);
    jnode *n = NULL;
    switch (t->kind) {
    case T_NAME: next(p); return parse_constant_name(p, t);
    case T_STRING: return parse_strings(p);
    case T_INT:
    case T_FLOAT:
        if ((n = new_node(p, N_CONST, t))) n->value = t->kind == T_INT ? jv_int(t->i) : jv_float(t->f);
        next(p);
        return n;
    case T_OP:
        if (t->op == '(') {
            next(p);
            n = parse_tuple(p, true, true, NULL);
            return n && expect_op(p, ')') ? n : NULL;
        }
        if (t->op == '[') return parse_list(p);
        if (t->op == '{') return parse_dict(p);
        /* fall through */
    default: return unexpected(p, "an expression");
    }
}

static jnode *parse_unary(parser *p, bool with_filter) {
    if (!deeper(p)) return NULL;
    jnode *n;
    if (at_op(p, '-') || at_op(p, '+')) {
        n = new_node(p, N_UNARY, cur(p));
        if (!n) return NULL;
        n->op = next(p)->op;
        if (!(n->a = parse_unary(p, false))) return NULL;
    } else {
        n = parse_postfix(p, parse_primary(p));
    }
    if (with_filter) n = parse_filter_expr(p, n);
    p->nesting--;
    return n;
}

static jnode *binop(parser *p, const jtoken *at, int op, jnode *l, jnode *r) {
    if (!l || !r) return NULL;
    jnode *n = new_node(p, N_BINOP, at);
    if (!n) return NULL;
    n->op = op;
    n->a = l;
    n->b = r;
    return n;
}

static jnode *parse_pow(parser *p) {
    jnode *n = parse_unary(p, true);
    while (n && at_op(p, 'P')) {
        const jtoken *at = next(p);
        n = binop(p, at, 'P', n, parse_unary(p, true));
    }
    return n;
}

static jnode *parse_math2(parser *p) {
    jnode *n = parse_pow(p);
    while (n && (at_op(p, '*') || at_op(p, '/') || at_op(p, 'F') || at_op(p, '%'))) {
        const jtoken *at = next(p);
        n = binop(p, at, at->op, n, parse_pow(p));
    }
    return n;
}

static jnode *parse_concat(parser *p) {
    jnode *first = parse_math2(p);
    if (!first || !at_op(p, '~')) return first;
    jnode *n = new_node(p, N_CONCAT, cur(p));
    nodes parts = {0};
    if (!n || !add_node(p, &parts, first)) return NULL;
    while (skip_op(p, '~'))
        if (!add_node(p, &parts, parse_math2(p))) return NULL;
    n->args = parts.v;
    n->n_args = parts.n;
    return n;
}

static jnode *parse_math1(parser *p) {
    jnode *n = parse_concat(p);
    while (n && (at_op(p, '+') || at_op(p, '-'))) {
        const jtoken *at = next(p);
        n = binop(p, at, at->op, n, parse_concat(p));
    }
    return n;
}

/* The comparison operator at the cursor (consumed), or 0. */
static int compare_op(parser *p) {
    if (cur(p)->kind == T_OP && strchr("EN<>LG", cur(p)->op) && cur(p)->op) return next(p)->op;
    if (skip_name(p, "in")) return 'i';
    if (at_name(p, "not") && peek(p, 1)->kind == T_NAME && jstr_eq(peek(p, 1)->s, "in")) {
        next(p);
        next(p);
        return 'I';
    }
    return 0;
}

static jnode *parse_compare(parser *p) {
    const jtoken *at = cur(p);
    jnode *first = parse_math1(p);
    if (!first) return NULL;
    nodes operands = {0};
    int ops[64];
    int op;
    while ((op = compare_op(p))) {
        if (operands.n == sizeof ops / sizeof *ops) return fail_at(p, at, "too many chained comparisons");
        ops[operands.n] = op;
        if (!add_node(p, &operands, parse_math1(p))) return NULL;
    }
    if (!operands.n) return first;
    jnode *n = new_node(p, N_COMPARE, at);
    int *kept = ja_alloc(p->a, operands.n * sizeof *kept);
    if (!n || !kept) return out_of_memory(p);
    memcpy(kept, ops, operands.n * sizeof *kept);
    n->a = first;
    n->args = operands.v;
    n->n_args = operands.n;
    n->ops = kept;
    return n;
}

static jnode *parse_not(parser *p) {
    if (!at_name(p, "not")) return parse_compare(p);
    if (!deeper(p)) return NULL;
    jnode *n = new_node(p, N_UNARY, next(p));
    if (!n) return NULL;
    n->op = 'n';
    n->a = parse_not(p);
    p->nesting--;
    return n->a ? n : NULL;
}

static jnode *parse_logic(parser *p, const char *word, jkind kind, jnode *(*operand)(parser *)) {
    jnode *n = operand(p);
    while (n && at_name(p, word)) {
        jnode *both = new_node(p, kind, next(p));
        if (!both) return NULL;
        both->a = n;
        if (!(both->b = operand(p))) return NULL;
        n = both;
    }
    return n;
}

static jnode *parse_and(parser *p) { return parse_logic(p, "and", N_AND, parse_not); }
static jnode *parse_or(parser *p) { return parse_logic(p, "or", N_OR, parse_and); }

static jnode *parse_condexpr(parser *p) {
    jnode *n = parse_or(p);
    while (n && at_name(p, "if")) {
        jnode *cond = new_node(p, N_COND, next(p));
        if (!cond) return NULL;
        cond->b = n;
        if (!(cond->a = parse_or(p))) return NULL;
        if (skip_name(p, "else") && !(cond->c = parse_condexpr(p))) return NULL;
        n = cond;
    }
    return n;
}

static jnode *parse_expression(parser *p, bool with_condexpr) {
    if (!deeper(p)) return NULL;
    jnode *n = with_condexpr ? parse_condexpr(p) : parse_or(p);
    p->nesting--;
    return n;
}

/* ---- statements ---- */

static bool parse_body(parser *p, const char *const *ends, const jtoken *opened, const char **found, jbody *out);

static bool end_tag(parser *p) { return expect_kind(p, T_BLOCK_END, "'%}'"); }

static bool body_until(parser *p, const char *end, const jtoken *opened, jbody *out) {
    const char *const ends[] = {end, NULL};
    const char *found;
    return parse_body(p, ends, opened, &found, out) && end_tag(p);
}

static jnode *parse_if(parser *p, const jtoken *opened) {
    jnode *n = new_node(p, N_IF, opened);
    if (!n || !(n->a = parse_expression(p, true)) || !end_tag(p)) return NULL;
    static const char *const ENDS[] = {"elif", "else", "endif", NULL};
    const char *found;
    if (!parse_body(p, ENDS, opened, &found, &n->body)) return NULL;
    if (!strcmp(found, "elif")) {
        jnode *elif = parse_if(p, opened);
        if (!elif || !(n->else_body.stmts = ja_alloc(p->a, sizeof *n->else_body.stmts))) return NULL;
        n->else_body.stmts[0] = elif;
        n->else_body.n = 1;
        return n;
    }
    if (!end_tag(p)) return NULL;
    if (!strcmp(found, "else") && !body_until(p, "endif", opened, &n->else_body)) return NULL;
    return n;
}

static bool parse_targets(parser *p, names *targets, const char *what) {
    bool parens = skip_op(p, '(');
    do {
        if (cur(p)->kind != T_NAME) return unexpected(p, what), false;
        if (!add_name(p, targets, next(p)->s)) return false;
    } while (skip_op(p, ','));
    return !parens || expect_op(p, ')');
}

static jnode *parse_for(parser *p, const jtoken *opened) {
    jnode *n = new_node(p, N_FOR, opened);
    names targets = {0};
    if (!n || !parse_targets(p, &targets, "a loop variable")) return NULL;
    if (!skip_name(p, "in")) return unexpected(p, "'in'");
    if (!(n->a = parse_tuple(p, false, false, "recursive"))) return NULL;
    if (skip_name(p, "if") && !(n->b = parse_expression(p, true))) return NULL;
    if (at_name(p, "recursive")) return fail_at(p, cur(p), "recursive loops are not supported");
    if (!end_tag(p)) return NULL;
    n->names = targets.v;
    n->n_names = targets.n;
    static const char *const ENDS[] = {"else", "endfor", NULL};
    const char *found;
    p->loops++;
    bool ok = parse_body(p, ENDS, opened, &found, &n->body) && end_tag(p);
    p->loops--;
    if (ok && !strcmp(found, "else")) ok = body_until(p, "endfor", opened, &n->else_body);
    return ok ? n : NULL;
}

/* A chain of filters for a block ({% filter f | g %}, {% set x | f %}) over an empty input. */
static jnode *parse_filter_chain(parser *p, bool required) {
    jnode *n = new_node(p, N_CONST, cur(p));
    if (!n) return NULL;
    n->value = jv_str("", 0);
    if (required && cur(p)->kind != T_NAME) return unexpected(p, "a filter name");
    if (required) n = parse_filter(p, n);
    while (n && skip_op(p, '|')) n = parse_filter(p, n);
    return n;
}

static jnode *parse_set(parser *p, const jtoken *opened) {
    jnode *n = new_node(p, N_SET, opened);
    names targets = {0};
    if (!n || cur(p)->kind != T_NAME) return n ? unexpected(p, "a variable name") : NULL;
    if (peek(p, 1)->kind == T_OP && peek(p, 1)->op == '.') { /* set ns.attr = ... */
        if (!(n->a = parse_constant_name(p, next(p)))) return NULL;
        next(p);
        if (cur(p)->kind != T_NAME) return unexpected(p, "an attribute name");
        n->name = next(p)->s;
    } else if (!parse_targets(p, &targets, "a variable name")) {
        return NULL;
    }
    n->names = targets.v;
    n->n_names = targets.n;
    if (skip_op(p, '=')) return (n->b = parse_tuple(p, true, false, NULL)) && end_tag(p) ? n : NULL;
    if (n->a || targets.n != 1) return unexpected(p, "'='");
    n->kind = N_SET_BLOCK;
    if (!(n->a = parse_filter_chain(p, false)) || !end_tag(p)) return NULL;
    return body_until(p, "endset", opened, &n->body) ? n : NULL;
}

static jnode *parse_macro(parser *p, const jtoken *opened) {
    jnode *n = new_node(p, N_MACRO, opened);
    if (!n || cur(p)->kind != T_NAME) return n ? unexpected(p, "a macro name") : NULL;
    n->name = next(p)->s;
    if (!expect_op(p, '(')) return NULL;
    names params = {0};
    nodes defaults = {0};
    while (!skip_op(p, ')')) {
        if (params.n && !expect_op(p, ',')) return NULL;
        if (cur(p)->kind != T_NAME) return unexpected(p, "a parameter name");
        if (!add_name(p, &params, next(p)->s)) return NULL;
        jnode *def = NULL;
        if (skip_op(p, '=') && !(def = parse_expression(p, true))) return NULL;
        if (!def && defaults.n && defaults.v[defaults.n - 1])
            return fail_at(p, cur(p), "a parameter without a default after one with a default");
        if (!add_slot(p, &defaults, def)) return NULL;
    }
    n->names = params.v;
    n->vals = defaults.v;
    n->n_names = params.n;
    if (!end_tag(p)) return NULL;
    int loops = p->loops;
    p->loops = 0;
    bool ok = body_until(p, "endmacro", opened, &n->body);
    p->loops = loops;
    return ok ? n : NULL;
}

static jnode *parse_with(parser *p, const jtoken *opened) {
    jnode *n = new_node(p, N_WITH, opened);
    names targets = {0};
    nodes vals = {0};
    if (!n) return NULL;
    while (cur(p)->kind != T_BLOCK_END) {
        if (targets.n && !expect_op(p, ',')) return NULL;
        if (cur(p)->kind != T_NAME) return unexpected(p, "a variable name");
        if (!add_name(p, &targets, next(p)->s) || !expect_op(p, '=') ||
            !add_node(p, &vals, parse_expression(p, true)))
            return NULL;
    }
    n->names = targets.v;
    n->vals = vals.v;
    n->n_names = targets.n;
    return end_tag(p) && body_until(p, "endwith", opened, &n->body) ? n : NULL;
}

static jnode *parse_loop_control(parser *p, const jtoken *opened, jkind kind) {
    if (!p->loops) return fail_at(p, opened, "'%s' outside a loop", kind == N_BREAK ? "break" : "continue");
    jnode *n = new_node(p, kind, opened);
    return n && end_tag(p) ? n : NULL;
}

static jnode *parse_statement(parser *p) {
    const jtoken *opened = cur(p);
    if (opened->kind != T_NAME) return unexpected(p, "a statement name");
    next(p);
    jstr word = opened->s;
    if (jstr_eq(word, "if")) return parse_if(p, opened);
    if (jstr_eq(word, "for")) return parse_for(p, opened);
    if (jstr_eq(word, "set")) return parse_set(p, opened);
    if (jstr_eq(word, "macro")) return parse_macro(p, opened);
    if (jstr_eq(word, "with")) return parse_with(p, opened);
    if (jstr_eq(word, "break")) return parse_loop_control(p, opened, N_BREAK);
    if (jstr_eq(word, "continue")) return parse_loop_control(p, opened, N_CONTINUE);
    if (jstr_eq(word, "filter") || jstr_eq(word, "generation")) {
        bool filter = jstr_eq(word, "filter");
        jnode *n = new_node(p, filter ? N_FILTER_BLOCK : N_WITH, opened);
        if (!n || (filter && !(n->a = parse_filter_chain(p, true))) || !end_tag(p)) return NULL;
        return body_until(p, filter ? "endfilter" : "endgeneration", opened, &n->body) ? n : NULL;
    }
    int len = (int)(word.n > 40 ? 40 : word.n);
    if ((word.n >= 3 && !memcmp(word.p, "end", 3)) || jstr_eq(word, "else") || jstr_eq(word, "elif"))
        return fail_at(p, opened, "unexpected '%.*s': no open block it could close or continue", len, word.p);
    return fail_at(p, opened, "unknown or unsupported statement '%.*s'", len, word.p);
}

static const char *last_end(const char *const *ends) {
    while (ends[1]) ends++;
    return ends[0];
}

static bool is_end(const parser *p, const char *const *ends, const char **found) {
    if (!ends || peek(p, 1)->kind != T_NAME) return false;
    for (; *ends; ends++)
        if (jstr_eq(peek(p, 1)->s, *ends)) {
            *found = *ends;
            return true;
        }
    return false;
}

static jnode *parse_output(parser *p) {
    jnode *n = new_node(p, N_OUTPUT, next(p));
    if (!n || !(n->a = parse_tuple(p, true, false, NULL))) return NULL;
    return expect_kind(p, T_VAR_END, "'}}'") ? n : NULL;
}

static jnode *parse_text(parser *p) {
    jnode *n = new_node(p, N_TEXT, cur(p));
    if (n) n->value = jv_str(cur(p)->s.p, cur(p)->s.n);
    next(p);
    return n;
}

/* Statements up to one of ends ({% end... %} consumed up to its name; the caller reads the
 * rest of that tag), or to the end of the template when ends is NULL. */
static bool parse_body(parser *p, const char *const *ends, const jtoken *opened, const char **found, jbody *out) {
    if (!deeper(p)) return false;
    nodes stmts = {0};
    for (;;) {
        const jtoken *t = cur(p);
        if (t->kind == T_EOF) {
            if (!ends) break;
            return fail_at(p, opened, "'%.*s' is never closed (no {%% %s %%})", (int)opened->s.n, opened->s.p,
                           last_end(ends)),
                   false;
        }
        jnode *n;
        if (t->kind == T_TEXT) {
            n = parse_text(p);
        } else if (t->kind == T_VAR_BEGIN) {
            n = parse_output(p);
        } else if (t->kind == T_BLOCK_BEGIN) {
            if (is_end(p, ends, found)) {
                next(p);
                next(p);
                break;
            }
            next(p);
            n = parse_statement(p);
        } else {
            return unexpected(p, "a tag or text"), false;
        }
        if (!add_node(p, &stmts, n)) return false;
    }
    out->stmts = stmts.v;
    out->n = stmts.n;
    p->nesting--;
    return true;
}

q3_status jx_parse(const char *name, const jtoken *toks, size_t n, jarena *a, jbody *out, q3_error *e) {
    parser p = {.name = name, .t = toks, .n = n, .a = a, .e = e};
    const char *found = NULL;
    return parse_body(&p, NULL, NULL, &found, out) ? Q3_OK : p.status ? p.status : Q3_EFORMAT;
}
