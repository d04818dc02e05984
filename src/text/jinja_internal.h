/* The Jinja engine's insides, shared by its files: jinja_arena.c (memory), jinja_lex.c (source
 * to tokens, whitespace control), jinja_parse.c (tokens to a syntax tree), jinja_value.c (values
 * and Python's operations on them), jinja_str.c (str(), repr() and json.dumps of values),
 * jinja_eval.c (running the tree), jinja_filters.c, jinja_tests.c and jinja_methods.c (the named
 * operations templates call). Nothing outside src/text/jinja*.c includes this. */
#ifndef Q3_JINJA_INTERNAL_H
#define Q3_JINJA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/jinja.h"
#include "base/buf.h"
#include "base/utf8.h"

/* ---- memory: one arena for a compiled tree, one per render ---- */

typedef struct jarena {
    struct jblock *head;
    size_t total, limit; /* bytes taken from malloc; limit 0: none */
    bool failed, over_limit;
} jarena;

/* Zeroed memory, or NULL (and failed set) when out of memory or past the limit. */
void *ja_alloc(jarena *a, size_t n);
char *ja_strndup(jarena *a, const char *s, size_t n);
void ja_free(jarena *a);

/* ---- values ---- */

typedef struct jstr {
    const char *p;
    size_t n;
} jstr;

typedef enum jtype {
    JT_UNDEFINED, /* u.node: the lookup that found nothing (may be NULL), for messages */
    JT_NONE,
    JT_BOOL,
    JT_INT,
    JT_FLOAT,
    JT_STR,
    JT_LIST,      /* also Python's tuples (u.list->tuple) */
    JT_DICT,
    JT_NAMESPACE, /* namespace(): a dict whose members are set as attributes */
    JT_LOOP,      /* the loop variable of a for */
    JT_MACRO,     /* u.node: the macro statement */
    JT_FUNC,      /* a global function: u.i is enum jfunc */
    JT_METHOD,    /* a method bound to its object, called later */
} jtype;

typedef struct jv {
    jtype type;
    union {
        bool b;
        int64_t i;
        double f;
        jstr s;
        struct jlist *list;
        struct jdict *dict;
        struct jloop *loop;
        const struct jnode *node;
        struct jmethod *method;
    } u;
} jv;

typedef struct jlist {
    size_t n;
    jv *items;
    bool tuple;
} jlist;

typedef struct jdict {
    size_t n, cap;
    jv *keys, *vals; /* in insertion order, as Python keeps them */
} jdict;

typedef struct jloop {
    const jv *items; /* what the loop runs over, after its `if` */
    size_t n, index0;
    int depth;       /* 1 for the outermost loop */
} jloop;

typedef struct jmethod {
    jv self;
    jstr name;
} jmethod;

enum jfunc { JF_RANGE, JF_NAMESPACE, JF_RAISE_EXCEPTION, JF_STRFTIME_NOW, JF_DICT, JF_COUNT };

/* ---- the syntax tree ---- */

typedef enum jkind {
    /* expressions */
    N_CONST,   /* value */
    N_NAME,    /* name */
    N_ATTR,    /* a.name */
    N_ITEM,    /* a[b] */
    N_SLICE,   /* a[b:c:d], each of b c d may be NULL */
    N_CALL,    /* a(args) */
    N_FILTER,  /* a | name(args) */
    N_TEST,    /* a is [not] name(args): negate */
    N_UNARY,   /* op a: '-', '+' or 'n' (not) */
    N_AND,
    N_OR,
    N_BINOP,   /* a op b: + - * / F (//) % P (**) */
    N_COMPARE, /* a ops[0] args[0] ops[1] args[1] ...: = ! < > l (<=) g (>=) i (in) I (not in) */
    N_CONCAT,  /* args[0] ~ args[1] ~ ... */
    N_COND,    /* b if a else c (c may be NULL) */
    N_LIST,    /* [args] */
    N_TUPLE,   /* (args) */
    N_DICT,    /* {args[i]: vals[i]} */
    /* statements */
    N_TEXT,    /* value: template text */
    N_OUTPUT,  /* {{ a }} */
    N_IF,      /* a: condition, body, else_body */
    N_FOR,     /* names: targets, a: iterable, b: filter or NULL, body, else_body */
    N_SET,     /* names[0] (or a: the namespace, name: its attribute; or several names) = b */
    N_SET_BLOCK, /* names[0] = rendered body, filtered by a (a filter chain on N_CONST "") */
    N_MACRO,   /* name(names[i] = vals[i] or NULL) body */
    N_FILTER_BLOCK, /* body through the filter chain a */
    N_WITH,    /* names[i] = vals[i], then body, in a scope of its own */
    N_BREAK,
    N_CONTINUE,
} jkind;

typedef struct jbody {
    struct jnode **stmts;
    size_t n;
} jbody;

typedef struct jnode {
    jkind kind;
    int op;
    int line, col;
    bool negate;
    jstr name;
    jv value;
    struct jnode *a, *b, *c, *d;
    struct jnode **args; /* positional arguments, list items, compare operands, concat parts */
    size_t n_args;
    jstr *names;         /* keyword names, macro parameters, loop and set targets */
    struct jnode **vals; /* keyword values, macro defaults, dict values */
    size_t n_names;
    int *ops;            /* N_COMPARE: the operator before each of args */
    jbody body, else_body;
} jnode;

/* ---- the compiled template ---- */

struct q3_jinja {
    char *name;
    char *source; /* normalised newlines */
    jarena arena; /* the tree and its strings */
    jbody body;
};

/* ---- tokens (jinja_lex.c) ---- */

typedef enum jtok {
    T_EOF,
    T_TEXT,        /* s: text between tags, whitespace control applied */
    T_BLOCK_BEGIN, /* {% */
    T_BLOCK_END,   /* %} */
    T_VAR_BEGIN,   /* {{ */
    T_VAR_END,     /* }} */
    T_NAME,        /* s */
    T_STRING,      /* s: the decoded literal */
    T_INT,         /* i */
    T_FLOAT,       /* f */
    T_OP,          /* op: one of the characters + - * / % ~ < > = ( ) [ ] { } , . : | or
                    * F (//) P (**) E (==) N (!=) L (<=) G (>=) */
    T_RAW,         /* s: the inside of {% raw %}...{% endraw %} */
} jtok;

typedef struct jtoken {
    jtok kind;
    int op;
    int line, col;
    jstr s;
    int64_t i;
    double f;
} jtoken;

/* Cuts the (normalised) source into tokens, allocated in a. Q3_EFORMAT naming line and column
 * on an unterminated tag or string, or a character that starts no token. */
q3_status jx_lex(const char *name, const char *src, size_t len, jarena *a, jtoken **out, size_t *n,
                 q3_error *e);

/* ---- parsing (jinja_parse.c) ---- */

q3_status jx_parse(const char *name, const jtoken *toks, size_t n, jarena *a, jbody *out, q3_error *e);

/* ---- rendering state (jinja_eval.c) ---- */

typedef struct jframe {
    struct jframe *parent;
    size_t n, cap;
    jstr *names;
    jv *vals;
} jframe;

typedef struct jctx {
    const q3_jinja *t;
    jarena arena;
    jframe *root;   /* the template's own variables, over the context's */
    jframe *frame;  /* the innermost scope: a loop iteration's, a macro call's, or root */
    q3_buf *out; /* where text goes now (a macro or block set renders into its own) */
    size_t max_output;
    uint64_t steps, max_steps;
    uint64_t read;  /* bytes read by operations and not yet counted as a step (jx_charge) */
    const jnode *here; /* the expression evaluated last: where a charge without a node failed */
    int depth, max_depth;
    int loop_depth;
    q3_error *e;
    q3_status status; /* of the first failure */
    bool failed;
} jctx;

/* Scopes (jinja_exec.c). */
jframe *jx_frame_new(jctx *c, jframe *parent);
bool jx_assign(jctx *c, jframe *f, jstr name, jv v);
/* A name's value, or NULL (also when the render just went past its steps: reading a scope's names
 * is charged, JX_NAME_BYTES each, as a template may set thousands). */
#define JX_NAME_BYTES 4
const jv *jx_lookup(jctx *c, const jframe *f, jstr name);
const jv *jx_lookup_local(jctx *c, const jframe *f, jstr name); /* this scope only */
/* Runs a body with its output gathered into a string (macro calls, block set, filter blocks). */
bool jx_render_body(jctx *c, const jbody *b, jv *out);
/* Counts one step (a loop iteration or a call) against the limit. */
bool jx_step(jctx *c, const jnode *at);
/* Counts the work of an operation that reads data without building any (comparing, searching,
 * measuring, looking up): a step per JX_STEP_BYTES bytes read, a list item, dict entry or value
 * compared counting as JX_ITEM_BYTES. Built values are bounded by the memory limit, and this bounds
 * the rest, so that no loop step can cost unbounded time: strings shared by reference and lists
 * repeated inside lists are far larger to read than to make. False (with the limit named) once the
 * render is past its steps; the render fails then, whatever the operation returns. */
#define JX_STEP_BYTES 256
#define JX_ITEM_BYTES 64
bool jx_charge(jctx *c, const jnode *at, uint64_t bytes);
/* A buffer for building a string value: it grows at most to what the memory limit leaves, as the
 * value goes into the render's arena after (jx_take_str); passing that is the memory limit's
 * error, and writing values into a failed buffer stops early. */
q3_buf jx_value_buf(const jctx *c);

/* Records the first error, at node at (may be NULL), and returns false. */
bool jx_fail(jctx *c, const jnode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Fails for nesting past max_depth. */
bool jx_fail_depth(jctx *c, const jnode *at);
/* False (with the limit named) when the render's memory ran out or passed its bound. */
bool jx_check_memory(jctx *c, const jnode *at);

/* Evaluates an expression. */
bool jx_eval(jctx *c, const jnode *n, jv *out);
/* Calls a callable value (macro, global function, bound method) with arguments. */
typedef struct jargs {
    jv *pos;
    size_t n_pos;
    jstr *kw_names;
    jv *kw_vals;
    size_t n_kw;
} jargs;
bool jx_call(jctx *c, const jnode *at, jv fn, const jargs *args, jv *out);

/* Binds args to parameter names: positional ones first, then by keyword; slots[i] gets the
 * value of params[i], *given its bit i. Too many or unknown arguments are an error naming what. */
bool jx_bind(jctx *c, const jnode *at, const char *what, const jargs *args, const char *const *params,
             size_t n_params, jv *slots, unsigned *given);

/* ---- values (jinja_value.c) ---- */

/* from: the N_NAME, N_ATTR or N_ITEM that found nothing, or NULL. */
jv jv_undefined(const struct jnode *from);
/* Fails with what an undefined value stands for: "'x' is undefined". */
bool jx_fail_undefined(jctx *c, const struct jnode *at, jv undefined);
jv jv_none(void);
jv jv_bool(bool b);
jv jv_int(int64_t i);
jv jv_float(double f);
jv jv_str(const char *p, size_t n);
jv jv_cstr(const char *s);
/* A new list or dict of room for n items; NULL value (type none) when out of memory. */
bool jv_new_list(jctx *c, size_t n, bool tuple, jv *out);
bool jv_new_dict(jctx *c, size_t cap, jv *out);
/* Sets key to val in d, replacing an equal key's value in place. */
bool jdict_set(jctx *c, jdict *d, jv key, jv val);
/* The value of key, or NULL (also when the render just went past its steps: jx_charge). */
const jv *jdict_get(jctx *c, const jdict *d, jv key);

bool jv_from_json(jctx *c, const json_t *j, jv *out);

bool jv_truthy(jv v);
/* Python's ==; false also when the render just went past its steps (jx_charge). */
bool jv_equal(jctx *c, jv a, jv b);
/* Python's <: ints, floats and bools by value, strings by character, lists element by element.
 * Other pairs are a type error. *cmp is <0, 0 or >0. */
bool jv_compare(jctx *c, const jnode *at, jv a, jv b, int *cmp);
const char *jv_type_name(jv v);
bool jv_is_str(jv v);
bool jv_is_number(jv v); /* int, float or bool, as Python's numbers.Number */
double jv_as_double(jv v);
bool jstr_eq(jstr a, const char *s);

/* What reading v once costs, for jx_charge: a string's bytes, JX_ITEM_BYTES for each item of a
 * list or entry of a dict (not what they hold: reading that is charged where it happens), else
 * nothing. */
uint64_t jv_shallow_bytes(jv v);
/* Charges the strings among v and args (what string filters, tests and methods read). */
bool jx_charge_strings(jctx *c, const jnode *at, jv v, const jargs *args);

/* len(); a type error for values without one. */
bool jv_length(jctx *c, const jnode *at, jv v, size_t *n);
/* The items iter(v) gives: a list's items, a dict's keys, a string's characters, nothing for
 * undefined; a type error for others. */
bool jv_items(jctx *c, const jnode *at, jv v, const jv **items, size_t *n);
/* a.name as Jinja looks it up: a method of the value's type, else the item called name;
 * undefined when there is neither (an error only when a itself is undefined). */
bool jv_getattr(jctx *c, const jnode *at, jv obj, jstr name, jv *out);
/* a[key]: the item first, then (for string keys) the attribute. */
bool jv_getitem(jctx *c, const jnode *at, jv obj, jv key, jv *out);
bool jv_slice(jctx *c, const jnode *at, jv obj, const jv *start, const jv *stop, const jv *step, jv *out);
/* Binary operators: + - * / F % P. */
bool jv_binop(jctx *c, const jnode *at, int op, jv a, jv b, jv *out);
bool jv_contains(jctx *c, const jnode *at, jv container, jv item, bool *out);

/* ---- spelling values (jinja_str.c) ---- */

/* str(v) appended to b (undefined: nothing). Charged as read (jx_charge): a value written costs
 * JX_ITEM_BYTES, and a string its bytes too; writing stops once b has failed or the render is
 * past its steps. */
void jv_write_str(jctx *c, q3_buf *b, jv v);
/* repr(v), likewise. */
void jv_write_repr(jctx *c, q3_buf *b, jv v);
/* str(v) as a string value (v itself when already one). */
bool jv_to_str(jctx *c, jv v, jv *out);
typedef struct jjson_opts {
    int indent;       /* -1: none (one line) */
    bool ensure_ascii;
    bool sort_keys;
    const char *item_sep, *key_sep; /* NULL: json.dumps's defaults for the indent */
} jjson_opts;
/* json.dumps(v, ...); values JSON cannot hold are a type error. */
bool jv_write_json(jctx *c, const jnode *at, q3_buf *b, jv v, const jjson_opts *o, int level);

/* ---- named operations ---- */

/* Whether a filter or test of that name exists (the parser refuses unknown ones, as Jinja's
 * compiler does). */
bool jx_filter_exists(jstr name);
bool jx_test_exists(jstr name);
/* Python's str.isspace() for one character. */
bool jx_is_space(int cp);
/* A string value made from a buffer (which is freed); a failed buffer is the memory limit's error
 * (or running out of memory). */
bool jx_take_str(jctx *c, q3_buf *b, jv *out);
/* Applies filter name to v. */
bool jx_filter(jctx *c, const jnode *at, jstr name, jv v, const jargs *args, jv *out);
/* Runs test name on v. */
bool jx_test(jctx *c, const jnode *at, jstr name, jv v, const jargs *args, bool *out);
/* Whether values of self's type have a method called name. */
bool jx_has_method(jv self, jstr name);
/* Calls method name of self. */
bool jx_call_method(jctx *c, const jnode *at, jv self, jstr name, const jargs *args, jv *out);
/* String helpers the filters and methods share. */
bool jx_strip(jctx *c, jv s, const jv *chars, bool left, bool right, jv *out);
bool jx_case(jctx *c, jv s, bool upper, jv *out);
bool jx_replace(jctx *c, const jnode *at, jv s, jv old, jv new_, int64_t count, jv *out);

#endif
