/* Values spelled out: str() for template output and the string filter, repr() for the items of
 * containers (so a list prints as Python prints it: ['a', 1, None, True]), and json.dumps for
 * tojson with transformers' options (indent, separators, sort_keys, ensure_ascii). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_internal.h"
#include "text/pyfmt.h"

#define MAX_PRINT_DEPTH 256 /* deeper containers print as "..." */

static void write_value(jctx *c, q3_buf *b, jv v, bool repr, int depth);

/* str(float): repr's digits; inf and nan as Python spells them outside JSON. */
static void write_float(q3_buf *b, double f) {
    if (isnan(f)) q3_buf_puts(b, "nan");
    else if (isinf(f)) q3_buf_puts(b, f < 0 ? "-inf" : "inf");
    else q3_py_float(b, f);
}

/* Writing stops early once the buffer has failed (its limit passed): a list repeated inside lists
 * can be far longer to spell out than to make. */
static void write_list(jctx *c, q3_buf *b, const jlist *l, int depth) {
    q3_buf_putc(b, l->tuple ? '(' : '[');
    for (size_t i = 0; i < l->n && !b->failed && !c->failed; i++) {
        if (i) q3_buf_puts(b, ", ");
        write_value(c, b, l->items[i], true, depth + 1);
    }
    if (l->tuple && l->n == 1) q3_buf_putc(b, ',');
    q3_buf_putc(b, l->tuple ? ')' : ']');
}

static void write_dict(jctx *c, q3_buf *b, const jdict *d, int depth) {
    q3_buf_putc(b, '{');
    for (size_t i = 0; i < d->n && !b->failed && !c->failed; i++) {
        if (i) q3_buf_puts(b, ", ");
        write_value(c, b, d->keys[i], true, depth + 1);
        q3_buf_puts(b, ": ");
        write_value(c, b, d->vals[i], true, depth + 1);
    }
    q3_buf_putc(b, '}');
}

static void write_value(jctx *c, q3_buf *b, jv v, bool repr, int depth) {
    if (b->failed || !jx_charge(c, NULL, JX_ITEM_BYTES + (v.type == JT_STR ? v.u.s.n : 0))) return;
    if (depth > MAX_PRINT_DEPTH) {
        q3_buf_puts(b, "...");
        return;
    }
    switch (v.type) {
    case JT_UNDEFINED:
        if (repr) q3_buf_puts(b, "Undefined");
        break;
    case JT_NONE: q3_buf_puts(b, "None"); break;
    case JT_BOOL: q3_buf_puts(b, v.u.b ? "True" : "False"); break;
    case JT_INT: q3_buf_printf(b, "%lld", (long long)v.u.i); break;
    case JT_FLOAT: write_float(b, v.u.f); break;
    case JT_STR:
        if (repr) q3_py_repr_string(b, v.u.s.p, v.u.s.n);
        else q3_buf_put(b, v.u.s.p, v.u.s.n);
        break;
    case JT_LIST: write_list(c, b, v.u.list, depth); break;
    case JT_DICT: write_dict(c, b, v.u.dict, depth); break;
    case JT_NAMESPACE:
        q3_buf_puts(b, "<Namespace ");
        write_dict(c, b, v.u.dict, depth);
        q3_buf_putc(b, '>');
        break;
    case JT_LOOP: q3_buf_printf(b, "<LoopContext %zu/%zu>", v.u.loop->index0 + 1, v.u.loop->n); break;
    case JT_MACRO: q3_buf_printf(b, "<Macro '%.*s'>", (int)v.u.node->name.n, v.u.node->name.p); break;
    case JT_FUNC: q3_buf_puts(b, "<built-in function>"); break;
    case JT_METHOD:
        q3_buf_printf(b, "<built-in method %.*s of %s object>", (int)v.u.method->name.n, v.u.method->name.p,
                     jv_type_name(v.u.method->self));
        break;
    }
}

void jv_write_str(jctx *c, q3_buf *b, jv v) { write_value(c, b, v, false, 0); }
void jv_write_repr(jctx *c, q3_buf *b, jv v) { write_value(c, b, v, true, 0); }

bool jv_to_str(jctx *c, jv v, jv *out) {
    if (v.type == JT_STR) {
        *out = v;
        return true;
    }
    q3_buf b = jx_value_buf(c);
    jv_write_str(c, &b, v);
    return jx_take_str(c, &b, out);
}

/* ---- json.dumps ---- */

static void newline_indent(q3_buf *b, const jjson_opts *o, int level) {
    q3_buf_putc(b, '\n');
    for (int i = 0; i < o->indent * level; i++) q3_buf_putc(b, ' ');
}

static const char *item_sep(const jjson_opts *o) { return o->item_sep ? o->item_sep : o->indent >= 0 ? "," : ", "; }
static const char *key_sep(const jjson_opts *o) { return o->key_sep ? o->key_sep : ": "; }

static bool write_json_list(jctx *c, const jnode *at, q3_buf *b, const jlist *l, const jjson_opts *o, int level) {
    q3_buf_putc(b, '[');
    for (size_t i = 0; i < l->n && !b->failed; i++) {
        if (i) q3_buf_puts(b, item_sep(o));
        if (o->indent >= 0) newline_indent(b, o, level + 1);
        if (!jv_write_json(c, at, b, l->items[i], o, level + 1)) return false;
    }
    if (o->indent >= 0 && l->n) newline_indent(b, o, level);
    q3_buf_putc(b, ']');
    return true;
}

/* A key as json.dumps writes it: strings as they are; numbers, booleans and None as their JSON
 * spelling in quotes. */
static bool write_json_key(jctx *c, const jnode *at, q3_buf *b, jv key, const jjson_opts *o) {
    if (key.type == JT_STR) {
        q3_py_json_string(b, key.u.s.p, key.u.s.n, o->ensure_ascii);
        return true;
    }
    if (key.type != JT_INT && key.type != JT_FLOAT && key.type != JT_BOOL && key.type != JT_NONE)
        return jx_fail(c, at, "tojson: keys must be str, int, float, bool or None, not '%s'", jv_type_name(key));
    q3_buf_putc(b, '"');
    if (!jv_write_json(c, at, b, key, o, 0)) return false;
    q3_buf_putc(b, '"');
    return true;
}

/* The order keys are written in: as inserted, or sorted for sort_keys. */
static bool key_order(jctx *c, const jnode *at, const jdict *d, bool sort, size_t *order) {
    for (size_t i = 0; i < d->n; i++) order[i] = i;
    if (!sort) return true;
    for (size_t i = 1; i < d->n; i++) { /* insertion sort: stable, and a type error stops it */
        for (size_t j = i; j > 0; j--) {
            int cmp;
            if (!jv_compare(c, at, d->keys[order[j - 1]], d->keys[order[j]], &cmp)) return false;
            if (cmp <= 0) break;
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    }
    return true;
}

static bool write_json_dict(jctx *c, const jnode *at, q3_buf *b, const jdict *d, const jjson_opts *o, int level) {
    size_t *order = d->n ? ja_alloc(&c->arena, d->n * sizeof *order) : NULL;
    if (d->n && !order) return jx_check_memory(c, at);
    if (!key_order(c, at, d, o->sort_keys, order)) return false;
    q3_buf_putc(b, '{');
    for (size_t k = 0; k < d->n && !b->failed; k++) {
        size_t i = order[k];
        if (k) q3_buf_puts(b, item_sep(o));
        if (o->indent >= 0) newline_indent(b, o, level + 1);
        if (!write_json_key(c, at, b, d->keys[i], o)) return false;
        q3_buf_puts(b, key_sep(o));
        if (!jv_write_json(c, at, b, d->vals[i], o, level + 1)) return false;
    }
    if (o->indent >= 0 && d->n) newline_indent(b, o, level);
    q3_buf_putc(b, '}');
    return true;
}

bool jv_write_json(jctx *c, const jnode *at, q3_buf *b, jv v, const jjson_opts *o, int level) {
    if (b->failed) return true; /* past its limit: the caller reports it (jx_take_str) */
    if (!jx_charge(c, at, JX_ITEM_BYTES + (v.type == JT_STR ? v.u.s.n : 0))) return false;
    if (level > MAX_PRINT_DEPTH) return jx_fail(c, at, "tojson: values nested more than %d deep", MAX_PRINT_DEPTH);
    switch (v.type) {
    case JT_NONE: q3_buf_puts(b, "null"); return true;
    case JT_BOOL: q3_buf_puts(b, v.u.b ? "true" : "false"); return true;
    case JT_INT: q3_buf_printf(b, "%lld", (long long)v.u.i); return true;
    case JT_FLOAT: q3_py_float(b, v.u.f); return true;
    case JT_STR: q3_py_json_string(b, v.u.s.p, v.u.s.n, o->ensure_ascii); return true;
    case JT_LIST: return write_json_list(c, at, b, v.u.list, o, level);
    case JT_DICT: return write_json_dict(c, at, b, v.u.dict, o, level);
    default: return jx_fail(c, at, "tojson: a value of type '%s' is not JSON serializable", jv_type_name(v));
    }
}
