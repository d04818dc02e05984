/* Running statements, scopes, and the engine's entry points (compile, render).
 *
 * Scopes follow Jinja: the context's variables at the bottom (under the global functions),
 * the template's own `set`s above them; each loop iteration and each macro call gets a scope of
 * its own, so a `set` inside a loop does not outlive the iteration (namespace() objects are how
 * templates carry values out). A macro sees the template's variables, not its caller's.
 */
#include <stdlib.h>
#include <string.h>

#include "text/jinja_internal.h"

typedef enum flow { FLOW_OK, FLOW_BREAK, FLOW_CONTINUE, FLOW_FAIL } flow;

/* ---- scopes ---- */

jframe *jx_frame_new(jctx *c, jframe *parent) {
    jframe *f = ja_alloc(&c->arena, sizeof *f);
    if (!f) {
        jx_check_memory(c, NULL);
        return NULL;
    }
    f->parent = parent;
    return f;
}

const jv *jx_lookup_local(jctx *c, const jframe *f, jstr name) {
    if (!jx_charge(c, NULL, (uint64_t)f->n * JX_NAME_BYTES)) return NULL;
    for (size_t i = f->n; i-- > 0;)
        if (f->names[i].n == name.n && !memcmp(f->names[i].p, name.p, name.n)) return &f->vals[i];
    return NULL;
}

const jv *jx_lookup(jctx *c, const jframe *f, jstr name) {
    for (; f; f = f->parent) {
        const jv *v = jx_lookup_local(c, f, name);
        if (v) return v;
    }
    return NULL;
}

bool jx_assign(jctx *c, jframe *f, jstr name, jv v) {
    jv *there = (jv *)jx_lookup_local(c, f, name);
    if (there) {
        *there = v;
        return true;
    }
    if (c->failed) return false;
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 8;
        jstr *names = ja_alloc(&c->arena, cap * sizeof *names);
        jv *vals = ja_alloc(&c->arena, cap * sizeof *vals);
        if (!names || !vals) return jx_check_memory(c, NULL);
        if (f->n) {
            memcpy(names, f->names, f->n * sizeof *names);
            memcpy(vals, f->vals, f->n * sizeof *vals);
        }
        f->names = names;
        f->vals = vals;
        f->cap = cap;
    }
    f->names[f->n] = name;
    f->vals[f->n++] = v;
    return true;
}

static bool past_steps(jctx *c, const jnode *at) {
    return jx_fail(c, at,
                   "more than %llu steps (loop iterations, macro calls, and a step per %d bytes that operations "
                   "read: the render's limit)",
                   (unsigned long long)c->max_steps, JX_STEP_BYTES);
}

bool jx_step(jctx *c, const jnode *at) {
    if (++c->steps <= c->max_steps) return true;
    return past_steps(c, at);
}

bool jx_charge(jctx *c, const jnode *at, uint64_t bytes) {
    if (c->steps > c->max_steps) return false; /* failed already */
    c->read += bytes;
    if (c->read < JX_STEP_BYTES) return true;
    c->steps += c->read / JX_STEP_BYTES;
    c->read %= JX_STEP_BYTES;
    return c->steps <= c->max_steps || past_steps(c, at ? at : c->here);
}

q3_buf jx_value_buf(const jctx *c) {
    size_t room = c->arena.limit > c->arena.total ? c->arena.limit - c->arena.total : 1;
    return (q3_buf){.limit = c->arena.limit ? room : 0};
}

/* ---- output ---- */

static bool check_output(jctx *c, const jnode *at) {
    if (!c->out->failed) return true;
    if (c->out->over_limit) return jx_fail(c, at, "the output passes %zu bytes (the render's limit)", c->max_output);
    c->arena.failed = true; /* out of memory: reported as such */
    return jx_check_memory(c, at);
}

static bool write_value(jctx *c, const jnode *at, jv v) {
    jv_write_str(c, c->out, v);
    return check_output(c, at) && !c->failed;
}

/* ---- statements ---- */

static flow exec_body(jctx *c, const jbody *b);

static flow ok_or_fail(bool ok) { return ok ? FLOW_OK : FLOW_FAIL; }

bool jx_render_body(jctx *c, const jbody *b, jv *out) {
    q3_buf buf = {.limit = c->max_output}, *outer = c->out;
    c->out = &buf;
    flow f = exec_body(c, b);
    c->out = outer;
    bool ok = f == FLOW_OK || f == FLOW_BREAK || f == FLOW_CONTINUE;
    char *s = ok && !buf.failed ? ja_strndup(&c->arena, buf.data ? buf.data : "", buf.len) : NULL;
    size_t n = buf.len;
    if (ok && buf.failed) {
        c->out = &buf;
        ok = check_output(c, NULL);
        c->out = outer;
    }
    q3_buf_free(&buf);
    if (ok && !s) return jx_check_memory(c, NULL);
    if (ok) *out = jv_str(s, n);
    return ok;
}

/* A filter chain over an input in place of its innermost N_CONST (block set, filter block). */
static bool apply_chain(jctx *c, const jnode *chain, jv input, jv *out) {
    if (chain->kind != N_FILTER) {
        *out = input;
        return true;
    }
    jv v;
    jargs args = {.n_pos = chain->n_args, .n_kw = chain->n_names, .kw_names = chain->names};
    if (!apply_chain(c, chain->a, input, &v)) return false;
    args.pos = chain->n_args ? ja_alloc(&c->arena, chain->n_args * sizeof *args.pos) : NULL;
    args.kw_vals = chain->n_names ? ja_alloc(&c->arena, chain->n_names * sizeof *args.kw_vals) : NULL;
    if ((chain->n_args && !args.pos) || (chain->n_names && !args.kw_vals)) return jx_check_memory(c, chain);
    for (size_t i = 0; i < chain->n_args; i++)
        if (!jx_eval(c, chain->args[i], &args.pos[i])) return false;
    for (size_t i = 0; i < chain->n_names; i++)
        if (!jx_eval(c, chain->vals[i], &args.kw_vals[i])) return false;
    return jx_filter(c, chain, chain->name, v, &args, out);
}

/* Binds targets to v: one name takes it whole; several unpack it. */
static bool assign_targets(jctx *c, const jnode *at, jframe *f, const jstr *names, size_t n, jv v) {
    if (n == 1) return jx_assign(c, f, names[0], v);
    const jv *items;
    size_t count;
    if (!jv_items(c, at, v, &items, &count)) return false;
    if (count != n) return jx_fail(c, at, "cannot unpack %zu values into %zu names", count, n);
    for (size_t i = 0; i < n; i++)
        if (!jx_assign(c, f, names[i], items[i])) return false;
    return true;
}

static bool exec_set(jctx *c, const jnode *s) {
    jv v;
    if (!jx_eval(c, s->b, &v)) return false;
    if (!s->a) return assign_targets(c, s, c->frame, s->names, s->n_names, v);
    jv ns;
    if (!jx_eval(c, s->a, &ns)) return false;
    if (ns.type != JT_NAMESPACE)
        return jx_fail(c, s, "only namespace() objects take attribute assignments, not '%s'", jv_type_name(ns));
    return jdict_set(c, ns.u.dict, jv_str(s->name.p, s->name.n), v);
}

/* The items a loop runs over, after its `if`, each tested with the targets bound. */
static bool loop_items(jctx *c, const jnode *s, const jv **items, size_t *n) {
    jv seq;
    if (!jx_eval(c, s->a, &seq) || !jv_items(c, s->a, seq, items, n)) return false;
    if (!s->b || *n == 0) return true;
    jv *kept = ja_alloc(&c->arena, *n * sizeof *kept);
    jframe *f = jx_frame_new(c, c->frame), *outer = c->frame;
    if (!kept || !f) return jx_check_memory(c, s);
    size_t k = 0;
    c->frame = f;
    for (size_t i = 0; i < *n; i++) {
        jv yes;
        f->n = 0;
        if (!jx_step(c, s) || !assign_targets(c, s, f, s->names, s->n_names, (*items)[i]) || !jx_eval(c, s->b, &yes)) {
            c->frame = outer;
            return false;
        }
        if (jv_truthy(yes)) kept[k++] = (*items)[i];
    }
    c->frame = outer;
    *items = kept;
    *n = k;
    return true;
}

static flow exec_for(jctx *c, const jnode *s) {
    const jv *items;
    size_t n;
    if (!loop_items(c, s, &items, &n)) return FLOW_FAIL;
    if (n == 0) return exec_body(c, &s->else_body);
    jloop *loop = ja_alloc(&c->arena, sizeof *loop);
    jframe *f = jx_frame_new(c, c->frame), *outer = c->frame;
    if (!loop || !f) return ok_or_fail(jx_check_memory(c, s));
    *loop = (jloop){.items = items, .n = n, .depth = ++c->loop_depth};
    c->frame = f;
    flow result = FLOW_OK;
    for (size_t i = 0; i < n && result == FLOW_OK; i++) {
        loop->index0 = i;
        f->n = 0; /* a fresh scope per iteration; nothing can hold on to the old one */
        if (!jx_step(c, s) || !assign_targets(c, s, f, s->names, s->n_names, items[i]) ||
            !jx_assign(c, f, (jstr){"loop", 4}, (jv){.type = JT_LOOP, .u.loop = loop})) {
            result = FLOW_FAIL;
            break;
        }
        result = exec_body(c, &s->body);
        if (result == FLOW_CONTINUE) result = FLOW_OK;
    }
    c->frame = outer;
    c->loop_depth--;
    return result == FLOW_BREAK ? FLOW_OK : result;
}

static flow exec_with(jctx *c, const jnode *s) {
    jframe *f = jx_frame_new(c, c->frame), *outer = c->frame;
    if (!f) return FLOW_FAIL;
    for (size_t i = 0; i < s->n_names; i++) {
        jv v;
        if (!jx_eval(c, s->vals[i], &v) || !jx_assign(c, f, s->names[i], v)) return FLOW_FAIL;
    }
    c->frame = f;
    flow result = exec_body(c, &s->body);
    c->frame = outer;
    return result;
}

static flow exec_block(jctx *c, const jnode *s) {
    jv text, v;
    if (!jx_render_body(c, &s->body, &text) || !apply_chain(c, s->a, text, &v)) return FLOW_FAIL;
    if (s->kind == N_SET_BLOCK) return ok_or_fail(jx_assign(c, c->frame, s->names[0], v));
    return ok_or_fail(write_value(c, s, v));
}

static flow exec(jctx *c, const jnode *s) {
    jv v;
    switch (s->kind) {
    case N_TEXT: return ok_or_fail(write_value(c, s, s->value));
    case N_OUTPUT: return ok_or_fail(jx_eval(c, s->a, &v) && write_value(c, s, v));
    case N_IF: /* elif chains run as a loop, not as nested blocks */
        for (;;) {
            if (!jx_eval(c, s->a, &v)) return FLOW_FAIL;
            if (jv_truthy(v)) return exec_body(c, &s->body);
            if (s->else_body.n != 1 || s->else_body.stmts[0]->kind != N_IF) return exec_body(c, &s->else_body);
            s = s->else_body.stmts[0];
        }
    case N_FOR: return exec_for(c, s);
    case N_SET: return ok_or_fail(exec_set(c, s));
    case N_SET_BLOCK:
    case N_FILTER_BLOCK: return exec_block(c, s);
    case N_MACRO: return ok_or_fail(jx_assign(c, c->frame, s->name, (jv){.type = JT_MACRO, .u.node = s}));
    case N_WITH: return exec_with(c, s);
    case N_BREAK: return FLOW_BREAK;
    case N_CONTINUE: return FLOW_CONTINUE;
    default: return ok_or_fail(jx_fail(c, s, "an expression where a statement belongs"));
    }
}

static flow exec_body(jctx *c, const jbody *b) {
    if (c->depth >= c->max_depth) return ok_or_fail(jx_fail_depth(c, b->n ? b->stmts[0] : NULL));
    c->depth++;
    flow f = FLOW_OK;
    for (size_t i = 0; i < b->n && f == FLOW_OK; i++) f = exec(c, b->stmts[i]);
    c->depth--;
    return f;
}

/* ---- entry points ---- */

q3_jinja_limits q3_jinja_default_limits(void) {
    return (q3_jinja_limits){.max_output = 8u << 20, .max_memory = 64u << 20, .max_steps = 1000000, .max_depth = 100};
}

static bool add_globals(jctx *c, jframe *f) {
    static const char *const NAMES[JF_COUNT] = {
        [JF_RANGE] = "range", [JF_NAMESPACE] = "namespace", [JF_RAISE_EXCEPTION] = "raise_exception",
        [JF_STRFTIME_NOW] = "strftime_now", [JF_DICT] = "dict"};
    for (int i = 0; i < JF_COUNT; i++)
        if (!jx_assign(c, f, (jstr){NAMES[i], strlen(NAMES[i])}, (jv){.type = JT_FUNC, .u.i = i})) return false;
    return true;
}

static bool add_context(jctx *c, jframe *f, const json_t *context) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)context, key, value) {
        jv v;
        if (!jv_from_json(c, value, &v) || !jx_assign(c, f, (jstr){key, strlen(key)}, v)) return false;
    }
    return true;
}

q3_status q3_jinja_render(const q3_jinja *t, const json_t *context, const q3_jinja_limits *limits, char **out,
                          q3_error *e) {
    q3_jinja_limits lim = limits ? *limits : q3_jinja_default_limits();
    *out = NULL;
    if (context && !json_is_object(context)) return q3_fail(e, Q3_EINVAL, "%s: the context must be a JSON object", t->name);
    q3_buf buf = {.limit = lim.max_output};
    jctx c = {.t = t, .out = &buf, .max_output = lim.max_output, .max_steps = lim.max_steps,
              .max_depth = lim.max_depth, .e = e};
    c.arena.limit = lim.max_memory;
    jframe *globals = jx_frame_new(&c, NULL), *vars = globals ? jx_frame_new(&c, globals) : NULL;
    c.root = c.frame = vars ? jx_frame_new(&c, vars) : NULL;
    /* An operation that went past the steps may have returned a value (jx_charge): c.failed says. */
    bool ok = c.root && add_globals(&c, globals) && (!context || add_context(&c, vars, context)) &&
              exec_body(&c, &t->body) == FLOW_OK && !c.failed;
    ja_free(&c.arena);
    if (!ok) {
        q3_buf_free(&buf);
        return c.status ? c.status : q3_fail(e, Q3_ENOMEM, "%s: out of memory", t->name);
    }
    if (!(*out = q3_buf_take(&buf))) return q3_fail(e, Q3_ENOMEM, "%s: out of memory", t->name);
    return Q3_OK;
}

/* Newlines as Jinja reads them: \r\n and \r become \n, and one newline at the very end goes
 * (keep_trailing_newline is off). False when the text is not UTF-8. */
static bool normalise(const char *src, size_t len, char *dst, size_t *out_len) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t at = i;
        int cp = q3_utf8_next(src, len, &i);
        if (i == at + 1 && (unsigned char)src[at] >= 0x80) return false;
        if (cp == '\r') {
            dst[n++] = '\n';
            if (i < len && src[i] == '\n') i++;
        } else {
            memcpy(dst + n, src + at, i - at);
            n += i - at;
        }
    }
    if (n && dst[n - 1] == '\n') n--;
    dst[n] = '\0';
    *out_len = n;
    return true;
}

q3_status q3_jinja_compile(const char *source, size_t len, const char *name, q3_jinja **out, q3_error *e) {
    *out = NULL;
    q3_jinja *t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(name ? name : "template")) || !(t->source = malloc(len + 1))) {
        q3_jinja_free(t);
        return q3_fail(e, Q3_ENOMEM, "%s: out of memory", name ? name : "template");
    }
    size_t n;
    if (!normalise(source, len, t->source, &n)) {
        q3_status st = q3_fail(e, Q3_EFORMAT, "%s: the template is not UTF-8 text", t->name);
        q3_jinja_free(t);
        return st;
    }
    jtoken *toks;
    size_t n_toks;
    q3_status st = jx_lex(t->name, t->source, n, &t->arena, &toks, &n_toks, e);
    if (!st) st = jx_parse(t->name, toks, n_toks, &t->arena, &t->body, e);
    if (st) {
        q3_jinja_free(t);
        return st;
    }
    *out = t;
    return Q3_OK;
}

const char *q3_jinja_source(const q3_jinja *t) { return t->source; }

void q3_jinja_free(q3_jinja *t) {
    if (!t) return;
    ja_free(&t->arena);
    free(t->source);
    free(t->name);
    free(t);
}
