/* JSON-schema "pattern" regexes as grammar elements (see json_schema.h for the subset).
 *
 * The grammar generates the bytes of a JSON string body, so every character the regex allows is
 * written as JSON writes it: most as themselves, '"' and '\' and control characters as escapes
 * (\" \\ \n \u0001 ...). A character set is one CHARS element when it holds only characters that
 * need no escape, else a rule with one alternative per escaped character (and one for any
 * multi-byte UTF-8 character, for '.' and negated sets). A quantified set is a repeated CHARS
 * element; a quantified group a chain of rules. Patterns are searched, not anchored, in JSON
 * Schema, so generating a full match of the pattern with its anchors taken off always
 * validates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "text/json_schema.h"

#define MAX_GROUP_REPEAT 64   /* {m,n} of a group makes about n rules */
#define MAX_SET_REPEAT 4096
#define MAX_GROUP_DEPTH 32    /* groups are parsed by recursion: a pattern of nested ( must not
                                 exhaust a server thread's stack */

/* One character out of a set. */
typedef struct cset {
    bool plain[128];   /* ASCII that JSON writes as itself (0x20..0x7E but '"' and '\') */
    bool quote, backslash;
    bool ctl[32];      /* control characters, written as escapes */
    bool any_utf8;     /* any character beyond ASCII */
} cset;

typedef struct atom {
    bool is_set;
    cset set;
    int rule;          /* else: a rule (a group, or one literal non-ASCII character) */
    bool nullable;     /* the rule can match nothing: it may not be repeated without bound */
} atom;

typedef struct parser {
    q3_grammar_builder *b;
    const char *p, *start;
    int utf8_rule;     /* -1 until needed */
    q3_error *e;
    q3_status st;
    int depth;         /* groups open */
} parser;

static bool fail(parser *ps, const char *what) {
    if (!ps->st)
        ps->st = q3_fail(ps->e, Q3_EINVAL, "'pattern': %s at offset %d of /%s/", what, (int)(ps->p - ps->start), ps->start);
    return false;
}

static void add_char(cset *s, unsigned c) {
    if (c == '"') s->quote = true;
    else if (c == '\\') s->backslash = true;
    else if (c < 0x20) s->ctl[c] = true;
    else if (c < 0x80) s->plain[c] = true;
}

static void add_range(cset *s, unsigned lo, unsigned hi) {
    for (unsigned c = lo; c <= hi && c < 0x80; c++) add_char(s, c);
}

/* \d \w \s and their complements; false for another letter. */
static bool class_escape(cset *s, char k) {
    cset t = {0};
    switch (k | 0x20) {
    case 'd': add_range(&t, '0', '9'); break;
    case 'w': add_range(&t, '0', '9'), add_range(&t, 'a', 'z'), add_range(&t, 'A', 'Z'), add_char(&t, '_'); break;
    case 's': add_char(&t, ' '), add_char(&t, '\t'), add_char(&t, '\n'), add_char(&t, '\r'); break;
    default: return false;
    }
    bool negate = k >= 'A' && k <= 'Z';
    for (unsigned c = 0x20; c < 0x80; c++) {
        bool in = t.plain[c] || (c == '"' && t.quote) || (c == '\\' && t.backslash);
        if (in != negate) add_char(s, c);
    }
    if (!negate) for (unsigned c = 0; c < 0x20; c++) s->ctl[c] |= t.ctl[c];
    s->any_utf8 |= negate;
    return true;
}

/* The character an escape outside \d-like classes stands for; -1 when not understood. */
static int escaped_char(parser *ps) {
    char k = *ps->p++;
    switch (k) {
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'v': return '\v';
    case 'x': case 'u': {
        int n = k == 'x' ? 2 : 4, v = 0;
        for (int i = 0; i < n; i++, ps->p++) {
            char h = *ps->p;
            int d = h >= '0' && h <= '9' ? h - '0' : (h | 0x20) >= 'a' && (h | 0x20) <= 'f' ? (h | 0x20) - 'a' + 10 : -1;
            if (d < 0) return -1;
            v = v * 16 + d;
        }
        return v;
    }
    default: /* punctuation escapes itself */
        return (k >= 0x21 && k <= 0x2F) || (k >= 0x3A && k <= 0x40) || (k >= 0x5B && k <= 0x60) || (k >= 0x7B && k <= 0x7E)
                   ? k : -1;
    }
}

/* A literal non-ASCII character (the next UTF-8 sequence of the pattern, or a code point). */
static atom literal_rule(parser *ps, const char *bytes, int n) {
    int r = q3_gb_rule(ps->b);
    q3_seq s = {0};
    q3_seq_literal(ps->b, &s, bytes, (size_t)n);
    q3_gb_add_alt(ps->b, r, &s);
    return (atom){.rule = r};
}

static atom char_atom(parser *ps, unsigned c) {
    if (c >= 0x80) {
        char u[4];
        return literal_rule(ps, u, (int)q3_utf8_encode(c, u));
    }
    atom a = {.is_set = true};
    add_char(&a.set, c);
    return a;
}

static bool parse_class(parser *ps, atom *a) {
    *a = (atom){.is_set = true};
    bool negate = *ps->p == '^';
    cset s = {0};
    ps->p += negate;
    for (bool first = true; *ps->p != ']' || first; first = false) {
        if (!*ps->p) return fail(ps, "an unclosed [");
        if ((unsigned char)*ps->p >= 0x80) return fail(ps, "a non-ASCII character in a [...] set");
        int lo = (unsigned char)*ps->p++;
        if (lo == '\\') {
            if (class_escape(&s, *ps->p)) {
                ps->p++;
                continue;
            }
            if ((lo = escaped_char(ps)) < 0 || lo >= 0x80) return fail(ps, "an escape not understood in a [...] set");
        }
        int hi = lo;
        if (ps->p[0] == '-' && ps->p[1] && ps->p[1] != ']') {
            ps->p++;
            hi = (unsigned char)*ps->p++;
            if (hi == '\\' && ((hi = escaped_char(ps)) < 0)) return fail(ps, "an escape not understood in a range");
            if (hi >= 0x80 || hi < lo) return fail(ps, "a range that is backwards or not ASCII");
        }
        for (int c = lo; c <= hi; c++) add_char(&s, (unsigned)c);
    }
    ps->p++;
    if (!negate) {
        a->set = s;
        return true;
    }
    for (unsigned c = 0x20; c < 0x80; c++) { /* the complement, without control characters */
        bool in = s.plain[c] || (c == '"' && s.quote) || (c == '\\' && s.backslash);
        if (!in) add_char(&a->set, c);
    }
    a->set.any_utf8 = true;
    return true;
}

static int parse_alternation(parser *ps, bool *nullable);

static bool parse_atom(parser *ps, atom *a) {
    unsigned char c = (unsigned char)*ps->p;
    if (c == '(') {
        ps->p++;
        if (ps->p[0] == '?') {
            if (ps->p[1] == ':') ps->p += 2;
            else if (ps->p[1] == '<' && ps->p[2] != '=' && ps->p[2] != '!') ps->p = strchr(ps->p, '>') ? strchr(ps->p, '>') + 1 : ps->p + 2;
            else return fail(ps, "a look-around or flag group");
        }
        if (ps->depth == MAX_GROUP_DEPTH) return fail(ps, "groups nested deeper than 32");
        bool nullable;
        ps->depth++;
        int r = parse_alternation(ps, &nullable);
        ps->depth--;
        if (r < 0) return false;
        if (*ps->p != ')') return fail(ps, "an unclosed (");
        ps->p++;
        *a = (atom){.rule = r, .nullable = nullable};
        return true;
    }
    if (c == '[') {
        ps->p++;
        return parse_class(ps, a);
    }
    if (c == '.') {
        ps->p++;
        *a = (atom){.is_set = true};
        add_range(&a->set, 0x20, 0x7F);
        a->set.any_utf8 = true;
        return true;
    }
    if (c == '\\') {
        ps->p++;
        *a = (atom){.is_set = true};
        if (class_escape(&a->set, *ps->p)) {
            ps->p++;
            return true;
        }
        int ch = escaped_char(ps);
        if (ch < 0) return fail(ps, "an escape not understood (back-references and \\b are not supported)");
        *a = char_atom(ps, (unsigned)ch);
        return true;
    }
    if (c == '^' || c == '$') return fail(ps, "an anchor that is not at the start or the end");
    if (c >= 0x80) { /* a UTF-8 sequence of the pattern itself, taken whole */
        int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        *a = literal_rule(ps, ps->p, n);
        for (int i = 0; i < n && *ps->p; i++) ps->p++;
        return true;
    }
    ps->p++;
    *a = char_atom(ps, c);
    return true;
}

/* min..max (max -1: unbounded) after an atom; none: exactly once. */
static bool parse_quantifier(parser *ps, int *min, int *max) {
    *min = *max = 1;
    char c = *ps->p;
    if (c == '*') *min = 0, *max = -1;
    else if (c == '+') *min = 1, *max = -1;
    else if (c == '?') *min = 0, *max = 1;
    else if (c == '{' && ps->p[1] >= '0' && ps->p[1] <= '9') {
        char *end;
        *min = *max = (int)strtol(ps->p + 1, &end, 10);
        if (*end == ',') *max = end[1] == '}' ? -1 : (int)strtol(end + 1, &end, 10);
        if (*end != '}' || (*max >= 0 && *max < *min)) return fail(ps, "a {m,n} that is not well formed");
        ps->p = end;
    } else {
        return true;
    }
    ps->p++;
    if (*ps->p == '?') ps->p++; /* lazy: the same strings */
    return true;
}

static int utf8_rule(parser *ps) {
    if (ps->utf8_rule >= 0) return ps->utf8_rule;
    int r = ps->utf8_rule = q3_gb_rule(ps->b);
    static const char *lead[3] = {"\xC2-\xDF", "\xE0-\xEF", "\xF0-\xF4"};
    for (int n = 1; n <= 3; n++) {
        q3_seq s = {0};
        q3_seq_class(ps->b, &s, lead[n - 1], 1, 1);
        q3_seq_class(ps->b, &s, "\x80-\xBF", n, n);
        q3_gb_add_alt(ps->b, r, &s);
    }
    return r;
}

static bool plain_only(const cset *s) {
    if (s->quote || s->backslash || s->any_utf8) return false;
    for (int c = 0; c < 32; c++)
        if (s->ctl[c]) return false;
    return true;
}

/* A set that needs escapes or UTF-8, as a rule: one alternative per way of writing it. */
static int set_rule(parser *ps, const cset *s) {
    int r = q3_gb_rule(ps->b);
    q3_seq q = {0};
    bool any_plain = false;
    for (int c = 0; c < 128; c++) any_plain |= s->plain[c];
    if (any_plain) {
        bool in[256] = {0};
        for (int c = 0; c < 128; c++) in[c] = s->plain[c];
        q3_seq_set(ps->b, &q, in, 1, 1);
        q3_gb_add_alt(ps->b, r, &q);
    }
    if (s->quote) q3_seq_literal(ps->b, &q, "\\\"", 2), q3_gb_add_alt(ps->b, r, &q);
    if (s->backslash) q3_seq_literal(ps->b, &q, "\\\\", 2), q3_gb_add_alt(ps->b, r, &q);
    for (int c = 0; c < 32; c++) {
        if (!s->ctl[c]) continue;
        char esc[8];
        const char *short_form = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
        if (short_form) snprintf(esc, sizeof esc, "%s", short_form);
        else snprintf(esc, sizeof esc, "\\u%04x", c);
        q3_seq_literal(ps->b, &q, esc, strlen(esc));
        q3_gb_add_alt(ps->b, r, &q);
    }
    if (s->any_utf8) q3_seq_rule(&q, utf8_rule(ps)), q3_gb_add_alt(ps->b, r, &q);
    return r;
}

/* rule r min..max times (max -1: unbounded) onto s: the required copies, then
 * star ::= r star | (empty), or opt_k ::= r opt_{k-1} | (empty) for max - min optional ones. */
static bool repeat_rule(parser *ps, q3_seq *s, int r, int min, int max) {
    if (min > MAX_GROUP_REPEAT || max > MAX_GROUP_REPEAT) return fail(ps, "a group repeated too many times");
    for (int i = 0; i < min; i++) q3_seq_rule(s, r);
    int optional = max < 0 ? 1 : max - min, tail = -1;
    for (int k = 0; k < optional; k++) {
        int rule = q3_gb_rule(ps->b);
        q3_seq more = {0}, none = {0};
        q3_seq_rule(&more, r);
        if (max < 0) q3_seq_rule(&more, rule);
        else if (tail >= 0) q3_seq_rule(&more, tail);
        q3_gb_add_alt(ps->b, rule, &more);
        q3_gb_add_alt(ps->b, rule, &none);
        tail = rule;
    }
    if (tail >= 0) q3_seq_rule(s, tail);
    return true;
}

/* Appends the pieces up to '|' or ')' to s; *nullable: they can all match nothing. */
static bool parse_branch(parser *ps, q3_seq *s, bool *nullable) {
    *nullable = true;
    while (*ps->p && *ps->p != '|' && *ps->p != ')') {
        if (*ps->p == '$' && ps->p[1] == 0) { /* the end anchor */
            ps->p++;
            break;
        }
        atom a;
        int min, max;
        if (!parse_atom(ps, &a) || !parse_quantifier(ps, &min, &max)) return false;
        if (a.nullable && max < 0) return fail(ps, "a repeated group that may match nothing");
        *nullable &= min == 0 || a.nullable;
        if (a.is_set && plain_only(&a.set)) {
            if (max > MAX_SET_REPEAT || min > MAX_SET_REPEAT) return fail(ps, "a repeat count over 4096");
            bool in[256] = {0};
            for (int c = 0; c < 128; c++) in[c] = a.set.plain[c];
            if (max != 0) q3_seq_set(ps->b, s, in, min, max < 0 ? Q3_GRAMMAR_UNBOUNDED : max);
            continue;
        }
        int r = a.is_set ? set_rule(ps, &a.set) : a.rule;
        if (!repeat_rule(ps, s, r, min, max)) return false;
    }
    return true;
}

/* branch ('|' branch)* as a rule; -1 on error. *nullable: some branch can match nothing. */
static int parse_alternation(parser *ps, bool *nullable) {
    int r = q3_gb_rule(ps->b);
    *nullable = false;
    for (;;) {
        q3_seq s = {0};
        bool empty;
        if (!parse_branch(ps, &s, &empty)) {
            q3_seq_free(&s);
            return -1;
        }
        *nullable |= empty;
        q3_gb_add_alt(ps->b, r, &s);
        if (*ps->p != '|') return r;
        ps->p++;
    }
}

q3_status q3_regex_append(q3_grammar_builder *b, q3_seq *s, const char *pattern, q3_error *e) {
    parser ps = {b, pattern + (*pattern == '^'), pattern, -1, e, Q3_OK, 0};
    bool nullable;
    int r = parse_alternation(&ps, &nullable);
    if (r >= 0 && *ps.p) fail(&ps, "an unmatched )");
    if (ps.st) return ps.st;
    q3_seq_rule(s, r);
    return Q3_OK;
}
