/* The body of a JSON tool call: {"name": "f", "arguments": {...}} then </tool_call>, read a
 * byte at a time.
 *
 * A small JSON reader keeps a stack of open containers and checks the grammar as Python's
 * json.loads does (no control characters in strings, no leading zeros, no trailing commas).
 * Of the top-level members it keeps the name (a string) and writes the value of "arguments" out
 * as it is read, re-spelled as json.dumps spells it: ", " and ": " between items, strings
 * re-escaped (\u escapes decoded, non-ASCII as is), numbers as Python prints them once they are
 * complete (1.50 -> 1.5, 1e5 -> 100000.0). Arguments given as a string are passed on as that
 * string's text. Other members are checked and ignored.
 */
#include <stdlib.h>
#include <string.h>

#include "text/pyfmt.h"
#include "text/tool_call_internal.h"

enum top { TOP_BEFORE, TOP_OBJECT, TOP_AFTER };
enum expect { E_VALUE, E_KEY_OR_CLOSE, E_KEY, E_COLON, E_COMMA_OR_CLOSE, E_VALUE_OR_CLOSE, E_STRING, E_NUMBER, E_LITERAL };
enum member { M_OTHER, M_NAME, M_ARGS };
enum escape { ESC_NONE, ESC_START, ESC_HEX };

void json_scan_init(json_scan *s) { *s = (json_scan){0}; }

void json_scan_free(json_scan *s) {
    q3_buf_free(&s->key);
    q3_buf_free(&s->name);
    q3_buf_free(&s->token);
    *s = (json_scan){0};
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Inside the arguments value (its own text, when it is a string, included). */
static bool in_args(const json_scan *s) { return s->args_depth > 0; }

static void out(json_scan *s, q3_reply_parser *p, const char *text, size_t n) {
    if (in_args(s)) call_args(p, text, n);
}

/* ---- strings ---- */

/* Where the characters of the string being read go. */
static void string_bytes(json_scan *s, q3_reply_parser *p, const char *u, size_t n) {
    if (in_args(s)) {
        if (s->args_string && s->depth == 1) call_args(p, u, n); /* the string is the arguments */
        else {
            q3_buf b = {0};
            q3_py_json_chars(&b, u, n, false);
            if (b.failed) call_out_of_memory(p);
            call_args(p, b.data ? b.data : "", b.len);
            q3_buf_free(&b);
        }
    } else if (s->in_key && s->depth == 1) {
        q3_buf_put(&s->key, u, n);
    } else if (s->member == M_NAME && s->depth == 1) {
        q3_buf_put(&s->name, u, n);
    }
}

static void code_point(json_scan *s, q3_reply_parser *p, unsigned cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) u[0] = (char)cp, n = 1;
    else if (cp < 0x800) u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 0x3F)), u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    else
        u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 0x3F)), u[2] = (char)(0x80 | (cp >> 6 & 0x3F)),
        u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    string_bytes(s, p, u, n);
}

/* A surrogate with no partner: in the arguments it stays an escape (still valid JSON); in a
 * name or key it becomes U+FFFD. */
static void lone_surrogate(json_scan *s, q3_reply_parser *p, unsigned half) {
    if (in_args(s) && !(s->args_string && s->depth == 1)) {
        char esc[8];
        static const char HEX[] = "0123456789abcdef";
        memcpy(esc, "\\u", 2);
        for (int k = 0; k < 4; k++) esc[2 + k] = HEX[half >> (12 - 4 * k) & 0xF];
        call_args(p, esc, 6);
    } else {
        code_point(s, p, 0xFFFD);
    }
}

/* A character decoded from the string: pairs a waiting high surrogate with its low half. */
static void decoded(json_scan *s, q3_reply_parser *p, unsigned cp) {
    if (s->high) {
        unsigned high = s->high;
        s->high = 0;
        if (cp >= 0xDC00 && cp < 0xE000) {
            code_point(s, p, 0x10000 + ((high - 0xD800) << 10) + (cp - 0xDC00));
            return;
        }
        lone_surrogate(s, p, high);
    }
    if (cp >= 0xD800 && cp < 0xDC00) s->high = cp;
    else if (cp >= 0xDC00 && cp < 0xE000) lone_surrogate(s, p, cp);
    else code_point(s, p, cp);
}

static int hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void value_done(json_scan *s, q3_reply_parser *p);

static scan_result string_end(json_scan *s, q3_reply_parser *p) {
    if (s->high) {
        lone_surrogate(s, p, s->high);
        s->high = 0;
    }
    if (in_args(s) && !(s->args_string && s->depth == 1)) call_args(p, "\"", 1);
    if (s->in_key) {
        s->in_key = false;
        s->expect = E_COLON;
        if (s->depth == 1) {
            bool name = s->key.len == 4 && !memcmp(s->key.data, "name", 4);
            bool args = s->key.len == 9 && !memcmp(s->key.data, "arguments", 9);
            if ((name && s->have_name) || (args && s->have_args)) return SCAN_BAD; /* a member twice */
            s->member = name ? M_NAME : args ? M_ARGS : M_OTHER;
            s->key.len = 0;
        }
        return SCAN_MORE;
    }
    if (s->depth == 1 && s->member == M_NAME) {
        s->have_name = true;
        call_named(p, s->name.data ? s->name.data : "", s->name.len);
    }
    value_done(s, p);
    return SCAN_MORE;
}

static scan_result string_byte(json_scan *s, q3_reply_parser *p, char c) {
    if (s->escape == ESC_HEX) {
        int h = hex_digit(c);
        if (h < 0) return SCAN_BAD;
        s->code = s->code << 4 | (unsigned)h;
        if (++s->hex_n == 4) {
            s->escape = ESC_NONE;
            decoded(s, p, s->code);
        }
        return SCAN_MORE;
    }
    if (s->escape == ESC_START) {
        static const char FROM[] = "\"\\/bfnrt", TO[] = "\"\\/\b\f\n\r\t";
        const char *k = c ? strchr(FROM, c) : NULL;
        s->escape = ESC_NONE;
        if (c == 'u') {
            s->escape = ESC_HEX;
            s->code = 0;
            s->hex_n = 0;
            return SCAN_MORE;
        }
        if (!k) return SCAN_BAD;
        decoded(s, p, (unsigned char)TO[k - FROM]);
        return SCAN_MORE;
    }
    if (c == '\\') {
        s->escape = ESC_START;
        return SCAN_MORE;
    }
    if (c == '"') return string_end(s, p);
    if ((unsigned char)c < 0x20) return SCAN_BAD; /* control characters must be escaped */
    if (s->high) {
        lone_surrogate(s, p, s->high);
        s->high = 0;
    }
    string_bytes(s, p, &c, 1); /* UTF-8 passes through byte by byte */
    return SCAN_MORE;
}

/* ---- numbers and literals ---- */

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, as JSON has it; *integral when no fraction or
 * exponent. */
static bool valid_number(const char *t, size_t n, bool *integral) {
    size_t i = 0;
    if (i < n && t[i] == '-') i++;
    if (i >= n || t[i] < '0' || t[i] > '9') return false;
    if (t[i] == '0') i++;
    else
        while (i < n && t[i] >= '0' && t[i] <= '9') i++;
    *integral = true;
    if (i < n && t[i] == '.') {
        *integral = false;
        size_t start = ++i;
        while (i < n && t[i] >= '0' && t[i] <= '9') i++;
        if (i == start) return false;
    }
    if (i < n && (t[i] == 'e' || t[i] == 'E')) {
        *integral = false;
        if (++i < n && (t[i] == '+' || t[i] == '-')) i++;
        size_t start = i;
        while (i < n && t[i] >= '0' && t[i] <= '9') i++;
        if (i == start) return false;
    }
    return i == n;
}

static scan_result number_end(json_scan *s, q3_reply_parser *p) {
    bool integral;
    const char *t = s->token.data ? s->token.data : "";
    if (!valid_number(t, s->token.len, &integral)) return SCAN_BAD;
    if (in_args(s)) {
        q3_buf b = {0};
        bool zero = strspn(t, "-0") == s->token.len;
        if (integral && zero) q3_buf_putc(&b, '0'); /* Python reads -0 as the int 0 */
        else if (integral) q3_buf_put(&b, t, s->token.len);
        else q3_py_float(&b, strtod(t, NULL));
        if (b.failed) call_out_of_memory(p);
        call_args(p, b.data ? b.data : "", b.len);
        q3_buf_free(&b);
    }
    s->token.len = 0;
    value_done(s, p);
    return SCAN_MORE;
}

static scan_result literal_byte(json_scan *s, q3_reply_parser *p, char c) {
    const char *want = s->token.data[0] == 't' ? "true" : s->token.data[0] == 'f' ? "false" : "null";
    if (want[s->token.len] != c) return SCAN_BAD;
    q3_buf_putc(&s->token, c);
    if (want[s->token.len]) return SCAN_MORE;
    out(s, p, want, s->token.len);
    s->token.len = 0;
    value_done(s, p);
    return SCAN_MORE;
}

/* ---- structure ---- */

/* A value is complete: at depth 0 the object is; at depth 1 a member is. */
static void value_done(json_scan *s, q3_reply_parser *p) {
    (void)p;
    if (s->depth == 0) {
        s->top = TOP_AFTER;
        return;
    }
    if (s->depth == 1 && s->member == M_ARGS && in_args(s)) {
        s->have_args = true;
        s->args_depth = 0;
        s->args_string = false;
    }
    s->expect = E_COMMA_OR_CLOSE;
}

static scan_result open_container(json_scan *s, q3_reply_parser *p, char c) {
    if (s->depth == JSON_MAX_DEPTH) return SCAN_BAD;
    out(s, p, &c, 1);
    s->stack[s->depth++] = c;
    s->expect = c == '{' ? E_KEY_OR_CLOSE : E_VALUE_OR_CLOSE;
    return SCAN_MORE;
}

static scan_result close_container(json_scan *s, q3_reply_parser *p, char c) {
    if (s->depth == 0 || s->stack[s->depth - 1] != (c == '}' ? '{' : '[')) return SCAN_BAD;
    s->depth--;
    if (s->depth == 0) { /* the call's object: it needs a name; no arguments read as {} */
        if (!s->have_name) return SCAN_BAD;
        if (!s->have_args) call_args(p, "{}", 2);
    } else {
        out(s, p, &c, 1);
    }
    value_done(s, p);
    return SCAN_MORE;
}

/* The first byte of a value. At the top object's level it also says which member's value this
 * is: the name must be a string; the arguments are written out from here on. */
static scan_result value_start(json_scan *s, q3_reply_parser *p, char c) {
    if (s->depth == 1 && s->member == M_NAME && c != '"') return SCAN_BAD;
    if (s->depth == 1 && s->member == M_ARGS) {
        s->args_depth = 1;
        s->args_string = c == '"';
    }
    if (c == '{' || c == '[') return open_container(s, p, c);
    if (c == '"') {
        s->expect = E_STRING;
        if (!s->args_string || s->depth != 1) out(s, p, "\"", 1);
        return SCAN_MORE;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        s->expect = E_NUMBER;
        q3_buf_putc(&s->token, c);
        return SCAN_MORE;
    }
    if (c == 't' || c == 'f' || c == 'n') {
        s->expect = E_LITERAL;
        q3_buf_putc(&s->token, c);
        return SCAN_MORE;
    }
    return SCAN_BAD;
}

static scan_result key_start(json_scan *s, q3_reply_parser *p) {
    s->expect = E_STRING;
    s->in_key = true;
    out(s, p, "\"", 1);
    return SCAN_MORE;
}

static scan_result structure_byte(json_scan *s, q3_reply_parser *p, char c) {
    if (is_ws(c)) return SCAN_MORE;
    switch (s->expect) {
    case E_VALUE: return value_start(s, p, c);
    case E_VALUE_OR_CLOSE: return c == ']' ? close_container(s, p, c) : value_start(s, p, c);
    case E_KEY_OR_CLOSE: return c == '}' ? close_container(s, p, c) : c == '"' ? key_start(s, p) : SCAN_BAD;
    case E_KEY: return c == '"' ? key_start(s, p) : SCAN_BAD;
    case E_COLON:
        if (c != ':') return SCAN_BAD;
        out(s, p, ": ", 2);
        s->expect = E_VALUE;
        return SCAN_MORE;
    case E_COMMA_OR_CLOSE:
        if (c == '}' || c == ']') return close_container(s, p, c);
        if (c != ',') return SCAN_BAD;
        out(s, p, ", ", 2);
        s->expect = s->stack[s->depth - 1] == '{' ? E_KEY : E_VALUE;
        return SCAN_MORE;
    default: return SCAN_BAD;
    }
}

static scan_result object_byte(json_scan *s, q3_reply_parser *p, char c) {
    switch (s->expect) {
    case E_STRING: return string_byte(s, p, c);
    case E_LITERAL: return literal_byte(s, p, c);
    case E_NUMBER:
        if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
            q3_buf_putc(&s->token, c);
            return SCAN_MORE;
        }
        return number_end(s, p) == SCAN_BAD ? SCAN_BAD : structure_byte(s, p, c);
    default: return structure_byte(s, p, c);
    }
}

scan_result json_scan_byte(json_scan *s, q3_reply_parser *p, char c) {
    switch (s->top) {
    case TOP_BEFORE:
        if (is_ws(c)) return SCAN_MORE;
        if (c != '{') return SCAN_BAD;
        s->top = TOP_OBJECT;
        return open_container(s, p, c);
    case TOP_OBJECT: return object_byte(s, p, c);
    default:
        if (s->close_matched == 0 && is_ws(c)) return SCAN_MORE;
        if (CALL_CLOSE[s->close_matched] != c) return SCAN_BAD;
        return CALL_CLOSE[++s->close_matched] ? SCAN_MORE : SCAN_DONE;
    }
}

/* A complete object with no </tool_call> after it is still a call: clients often stop
 * generation at "</tool_call>", so the reply ends without it. Anything less is not. */
scan_result json_scan_finish(json_scan *s, q3_reply_parser *p) {
    (void)p;
    return s->top == TOP_AFTER ? SCAN_DONE : SCAN_BAD;
}
