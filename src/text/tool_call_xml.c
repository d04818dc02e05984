/* The body of an XML tool call, Qwen3-Coder's form, read a byte at a time:
 *
 *   <function=NAME>
 *   <parameter=P>
 *   value
 *   </parameter>
 *   ...
 *   </function>
 *   </tool_call>
 *
 * The arguments are written out as a JSON object while they arrive: a parameter's key as soon
 * as its name is complete, a string value as it streams (held back only while it could still be
 * "null", and by one newline that may be its last), other values once complete, typed by the
 * tool's JSON schema as Qwen3-Coder's own parser types them (see tool_call.h). As that parser
 * does, a value also ends at the next <parameter= or at </function>, and text between
 * parameters is ignored; </tool_call> right after the parameters closes the function too.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "text/pyfmt.h"
#include "text/tool_call_internal.h"

#define MAX_NAME 512

enum state { X_START, X_NAME, X_BODY, X_PARAM_NAME, X_VALUE, X_AFTER };
enum type { T_STRING, T_INT, T_NUMBER, T_BOOL, T_JSON };

static const char *const BODY_TAGS[] = {"<parameter=", "</function>", CALL_CLOSE, NULL};
static const char *const VALUE_ENDS[] = {"</parameter>", "<parameter=", "</function>", NULL};

void xml_scan_init(xml_scan *s) { *s = (xml_scan){0}; }

void xml_scan_free(xml_scan *s) {
    q3_buf_free(&s->tag);
    q3_buf_free(&s->value);
    *s = (xml_scan){0};
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Which of tags the text in b is: the index of the one it equals, -1 while it is the start of
 * one, -2 when it is none of them. */
static int match_tags(const q3_buf *b, const char *const *tags) {
    bool prefix = false;
    for (int i = 0; tags[i]; i++) {
        size_t n = strlen(tags[i]);
        if (b->len <= n && !memcmp(tags[i], b->data, b->len)) {
            if (b->len == n) return i;
            prefix = true;
        }
    }
    return prefix ? -1 : -2;
}

/* The text in b without surrounding blanks. */
static void trimmed(const q3_buf *b, const char **s, size_t *n) {
    const char *p = b->data ? b->data : "";
    size_t len = b->len;
    while (len && is_ws(*p)) p++, len--;
    while (len && is_ws(p[len - 1])) len--;
    *s = p;
    *n = len;
}

/* ---- types ---- */

/* The parameter schemas of the function called name among the tools, or NULL. */
static const json_t *find_properties(const json_t *tools, const char *name, size_t n) {
    for (size_t i = 0; i < json_array_size(tools); i++) {
        const json_t *tool = json_array_get(tools, i), *fn = json_object_get(tool, "function");
        if (!json_is_object(fn)) fn = tool;
        const json_t *fname = json_object_get(fn, "name");
        if (json_is_string(fname) && json_string_length(fname) == n && !memcmp(json_string_value(fname), name, n))
            return json_object_get(json_object_get(fn, "parameters"), "properties");
    }
    return NULL;
}

static enum type type_named(const char *t) {
    static const char *const STRINGS[] = {"string", "str", "text", "varchar", "char", "enum"};
    for (size_t i = 0; i < sizeof STRINGS / sizeof *STRINGS; i++)
        if (!strcasecmp(t, STRINGS[i])) return T_STRING;
    static const char *const INTS[] = {"int", "uint", "long", "short", "unsigned"};
    for (size_t i = 0; i < sizeof INTS / sizeof *INTS; i++)
        if (!strncasecmp(t, INTS[i], strlen(INTS[i]))) return T_INT;
    if (!strncasecmp(t, "num", 3) || !strncasecmp(t, "float", 5)) return T_NUMBER;
    if (!strcasecmp(t, "boolean") || !strcasecmp(t, "bool") || !strcasecmp(t, "binary")) return T_BOOL;
    return T_JSON;
}

/* A parameter's type from its schema: "type" as a name, or the first name other than "null" in
 * a list; a parameter the schema does not name, or names without a type, is a string. */
static enum type param_type(const json_t *props, const char *name, size_t n) {
    const json_t *schema = NULL, *type;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)props, key, value) {
        if (strlen(key) == n && !memcmp(key, name, n)) schema = value;
    }
    type = json_object_get(schema, "type");
    if (json_is_string(type)) return type_named(json_string_value(type));
    for (size_t i = 0; i < json_array_size(type); i++) {
        const json_t *t = json_array_get(type, i);
        if (json_is_string(t) && strcmp(json_string_value(t), "null")) return type_named(json_string_value(t));
    }
    return T_STRING;
}

/* ---- values ---- */

static void put_quoted(q3_buf *out, const char *s, size_t n) { q3_py_json_string(out, s, n, false); }

/* Python's int(s) / float(s): surrounding blanks allowed, and underscores between digits. */
static bool python_number(const char *s, size_t n, bool integer, double *f, long long *i) {
    char buf[128];
    size_t k = 0;
    while (n && is_ws(*s)) s++, n--;
    while (n && is_ws(s[n - 1])) n--;
    if (n == 0 || n >= sizeof buf) return false;
    for (size_t j = 0; j < n; j++) {
        bool joins_digits = s[j] == '_' && j > 0 && j + 1 < n && s[j - 1] >= '0' && s[j - 1] <= '9' &&
                            s[j + 1] >= '0' && s[j + 1] <= '9';
        if (!joins_digits) buf[k++] = s[j];
    }
    buf[k] = '\0';
    char *end;
    if (integer) *i = strtoll(buf, &end, 10);
    else *f = strtod(buf, &end);
    return *end == '\0' && (!integer || (*i != LLONG_MAX && *i != LLONG_MIN));
}

/* The JSON spelling of a complete value of a non-string type, as Qwen3-Coder's parser converts
 * it; a value that does not convert stays a string. */
static void typed_value(q3_buf *out, enum type type, const char *s, size_t n) {
    double f;
    long long i;
    if (type == T_INT && python_number(s, n, true, &f, &i)) {
        q3_buf_printf(out, "%lld", i);
    } else if (type == T_NUMBER && python_number(s, n, false, &f, &i) && isfinite(f)) {
        if (f != trunc(f)) q3_py_float(out, f);
        else if (fabs(f) < 9.2e18) q3_buf_printf(out, "%lld", (long long)f); /* integral: an int */
        else q3_buf_printf(out, "%.0f", f);
    } else if (type == T_BOOL) {
        q3_buf_puts(out, n == 4 && !strncasecmp(s, "true", 4) ? "true" : "false");
    } else if (type == T_JSON) {
        json_t *v = json_loadb(s, n, JSON_DECODE_ANY, NULL);
        if (v) q3_py_json(out, v);
        else put_quoted(out, s, n);
        json_decref(v);
    } else {
        put_quoted(out, s, n);
    }
}

static void emit(q3_reply_parser *p, q3_buf *b) {
    if (b->failed) call_out_of_memory(p);
    call_args(p, b->data ? b->data : "", b->len);
    q3_buf_free(b);
}

/* Text of a value, after the newline rules. Strings stream once they cannot be "null". */
static void value_text(xml_scan *s, q3_reply_parser *p, const char *t, size_t n) {
    if (s->type != T_STRING || s->quote_open) {
        if (s->type != T_STRING) q3_buf_put(&s->value, t, n);
        else {
            q3_buf b = {0};
            q3_py_json_chars(&b, t, n, false);
            emit(p, &b);
        }
        return;
    }
    q3_buf_put(&s->value, t, n);
    if (s->value.len <= 4 && !strncasecmp(s->value.data, "null", s->value.len)) return;
    q3_buf b = {0};
    q3_buf_putc(&b, '"');
    q3_py_json_chars(&b, s->value.data, s->value.len, false);
    emit(p, &b);
    s->quote_open = true;
    s->value.len = 0;
}

static void value_byte(xml_scan *s, q3_reply_parser *p, char c) {
    if (!s->value_started) {
        s->value_started = true;
        if (c == '\n') return; /* one leading newline goes */
    }
    if (s->held_newline) {
        s->held_newline = false;
        value_text(s, p, "\n", 1);
    }
    if (c == '\n') s->held_newline = true; /* one trailing newline goes, if it is the last */
    else value_text(s, p, &c, 1);
}

static void value_end(xml_scan *s, q3_reply_parser *p) {
    q3_buf b = {0};
    const char *v = s->value.data ? s->value.data : "";
    if (s->quote_open) q3_buf_putc(&b, '"');
    else if (s->value.len == 4 && !strncasecmp(v, "null", 4)) q3_buf_puts(&b, "null");
    else typed_value(&b, s->type, v, s->value.len);
    emit(p, &b);
    s->value.len = 0;
    s->any_param = true;
}

/* ---- tags and names ---- */

static scan_result named(xml_scan *s, q3_reply_parser *p) {
    const char *name;
    size_t n;
    trimmed(&s->tag, &name, &n);
    s->tag.len = 0;
    if (s->state == X_NAME) {
        call_named(p, name, n);
        s->props = find_properties(call_tools(p), name, n);
        call_args(p, "{", 1);
        s->state = X_BODY;
        return SCAN_MORE;
    }
    q3_buf b = {0};
    if (s->any_param) q3_buf_puts(&b, ", ");
    put_quoted(&b, name, n);
    q3_buf_puts(&b, ": ");
    emit(p, &b);
    s->type = param_type(s->props, name, n);
    s->value_started = s->quote_open = s->held_newline = false;
    s->state = X_VALUE;
    return SCAN_MORE;
}

static scan_result name_byte(xml_scan *s, q3_reply_parser *p, char c) {
    if (c == '>') return named(s, p);
    if (c == '<' || c == '\n' || s->tag.len >= MAX_NAME) return SCAN_BAD;
    q3_buf_putc(&s->tag, c);
    return SCAN_MORE;
}

/* Between parameters: a tag that opens a parameter or closes the function (or the call); other
 * text is skipped. */
static scan_result body_byte(xml_scan *s, q3_reply_parser *p, char c) {
    if (!s->tag.len && c != '<') return SCAN_MORE;
    q3_buf_putc(&s->tag, c);
    int which = match_tags(&s->tag, BODY_TAGS);
    if (which == -1) return SCAN_MORE;
    s->tag.len = 0;
    if (which == -2) return c == '<' ? body_byte(s, p, c) : SCAN_MORE;
    if (which == 0) {
        s->state = X_PARAM_NAME;
        return SCAN_MORE;
    }
    call_args(p, "}", 1);
    s->state = X_AFTER;
    return which == 2 ? SCAN_DONE : SCAN_MORE;
}

/* In a value: text, unless it turns out to be one of the tags that end it. */
static scan_result value_tag_byte(xml_scan *s, q3_reply_parser *p, char c) {
    if (!s->tag.len && c != '<') {
        value_byte(s, p, c);
        return SCAN_MORE;
    }
    q3_buf_putc(&s->tag, c);
    int which = match_tags(&s->tag, VALUE_ENDS);
    if (which == -1) return SCAN_MORE;
    if (which == -2) { /* text after all; the last byte may open a tag again */
        size_t n = s->tag.len - 1;
        s->tag.len = 0;
        for (size_t i = 0; i < n; i++) value_byte(s, p, s->tag.data[i]);
        return value_tag_byte(s, p, c);
    }
    s->tag.len = 0;
    value_end(s, p);
    if (which == 1) s->state = X_PARAM_NAME;
    else if (which == 2) {
        call_args(p, "}", 1);
        s->state = X_AFTER;
    } else {
        s->state = X_BODY;
    }
    return SCAN_MORE;
}

scan_result xml_scan_byte(xml_scan *s, q3_reply_parser *p, char c) {
    static const char OPEN[] = "<function=";
    switch (s->state) {
    case X_START:
        if (!s->tag.len && is_ws(c)) return SCAN_MORE;
        if (OPEN[s->tag.len] != c) return SCAN_BAD;
        q3_buf_putc(&s->tag, c);
        if (s->tag.len == strlen(OPEN)) {
            s->tag.len = 0;
            s->state = X_NAME;
        }
        return SCAN_MORE;
    case X_NAME:
    case X_PARAM_NAME: return name_byte(s, p, c);
    case X_BODY: return body_byte(s, p, c);
    case X_VALUE: return value_tag_byte(s, p, c);
    default: /* after </function>: </tool_call>, or the call ended without it */
        if (!s->tag.len && is_ws(c)) return SCAN_MORE;
        if (CALL_CLOSE[s->tag.len] != c) return s->tag.len ? SCAN_BAD : SCAN_DONE_UNREAD;
        q3_buf_putc(&s->tag, c);
        return s->tag.len == strlen(CALL_CLOSE) ? SCAN_DONE : SCAN_MORE;
    }
}

/* The reply ended: a call whose function is closed is complete, whatever follows is missing. */
scan_result xml_scan_finish(xml_scan *s, q3_reply_parser *p) {
    (void)p;
    return s->state == X_AFTER ? SCAN_DONE : SCAN_BAD;
}
