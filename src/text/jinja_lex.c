/* Template source to tokens, with Jinja's whitespace control as transformers configures it.
 *
 * Text runs between tags become T_TEXT; a tag's inside becomes expression tokens between
 * T_BLOCK_BEGIN / T_BLOCK_END or T_VAR_BEGIN / T_VAR_END; comments vanish. Whitespace control:
 * "{%-", "{{-", "{#-" strip all whitespace before the tag, "-%}", "-}}", "-#}" all after it;
 * trim_blocks drops the first newline after a block or comment tag ("+%}" keeps it);
 * lstrip_blocks drops the spaces and tabs between the start of a line and a block or comment tag
 * ("{%+" keeps them). Inside a tag, brackets nest, so "}}" closes a variable tag only outside
 * them. String literals decode Python's backslash escapes, as Jinja does.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_internal.h"

typedef struct lexer {
    const char *name, *src;
    size_t len, pos;
    size_t seen;     /* line and col are correct up to here */
    int line, col;   /* col: characters from the start of the line to seen */
    bool line_start; /* the text that follows starts a line (Jinja's line_starting) */
    jarena *a;
    jtoken *toks;
    size_t n, cap;
    q3_error *e;
} lexer;

/* The line and column of pos, counted on from the last place located, so that locating every token
 * of a long line costs the line once, not once per token. */
static void locate(lexer *lx, size_t pos, int *line, int *col) {
    if (pos < lx->seen) { /* an error reported at an earlier place: count again from the top */
        lx->seen = 0;
        lx->line = 1;
        lx->col = 0;
    }
    for (; lx->seen < pos; lx->seen++) {
        unsigned char ch = (unsigned char)lx->src[lx->seen];
        if (ch == '\n') {
            lx->line++;
            lx->col = 0;
        } else if ((ch & 0xC0) != 0x80) { /* the source is UTF-8: a character starts at every other byte */
            lx->col++;
        }
    }
    *line = lx->line;
    *col = lx->col + 1;
}

static q3_status lex_fail(lexer *lx, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static q3_status lex_fail(lexer *lx, size_t pos, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    locate(lx, pos, &line, &col);
    return q3_fail(lx->e, Q3_EFORMAT, "%s:%d:%d: %s", lx->name, line, col, msg);
}

static jtoken *push(lexer *lx, jtok kind, size_t pos) {
    if (lx->n == lx->cap) {
        size_t cap = lx->cap ? 2 * lx->cap : 256;
        jtoken *t = ja_alloc(lx->a, cap * sizeof *t);
        if (!t) return NULL;
        if (lx->n) memcpy(t, lx->toks, lx->n * sizeof *t);
        lx->toks = t;
        lx->cap = cap;
    }
    jtoken *t = &lx->toks[lx->n++];
    *t = (jtoken){.kind = kind};
    locate(lx, pos, &t->line, &t->col);
    return t;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* ---- text and whitespace control ---- */

/* The text before a tag, trimmed as the tag asks: all trailing whitespace for "-", and for block
 * and comment tags under lstrip_blocks, the blanks after the last newline when nothing else
 * is there. */
static size_t text_end(lexer *lx, size_t from, size_t tag) {
    char kind = lx->src[tag + 1], mod = tag + 2 < lx->len ? lx->src[tag + 2] : 0;
    size_t end = tag;
    if (mod == '-') {
        while (end > from && is_space(lx->src[end - 1])) end--;
        return end;
    }
    if (kind == '{' || mod == '+') return end;
    size_t line = end;
    while (line > from && (lx->src[line - 1] == ' ' || lx->src[line - 1] == '\t')) line--;
    bool at_line_start = line > from ? lx->src[line - 1] == '\n' : lx->line_start;
    return at_line_start ? line : end;
}

static q3_status emit_text(lexer *lx, size_t from, size_t to) {
    if (to <= from) return Q3_OK;
    jtoken *t = push(lx, T_TEXT, from);
    if (!t) return q3_fail(lx->e, Q3_ENOMEM, "%s: out of memory", lx->name);
    t->s = (jstr){lx->src + from, to - from};
    return Q3_OK;
}

/* After a tag's end at pos: all whitespace after "-", else (block and comment tags, unless
 * "+") one newline under trim_blocks. */
static void after_tag(lexer *lx, size_t pos, char mod, bool block_like) {
    if (mod == '-') {
        while (pos < lx->len && is_space(lx->src[pos])) pos++;
    } else if (block_like && mod != '+' && pos < lx->len && lx->src[pos] == '\n') {
        pos++;
    }
    lx->line_start = pos > 0 && lx->src[pos - 1] == '\n';
    lx->pos = pos;
}

/* ---- comments and raw blocks ---- */

static q3_status lex_comment(lexer *lx, size_t tag) {
    const char *end = memmem(lx->src + tag + 2, lx->len - tag - 2, "#}", 2);
    if (!end) return lex_fail(lx, tag, "unterminated comment: no '#}'");
    size_t at = (size_t)(end - lx->src);
    char mod = at > tag + 2 ? lx->src[at - 1] : 0;
    after_tag(lx, at + 2, mod == '-' || mod == '+' ? mod : 0, true);
    return Q3_OK;
}

/* Matches "{%[-+]? *WORD *-?%}" at pos; *end is past it and *mod_after the '-' if there. */
static bool match_tag_word(const lexer *lx, size_t pos, const char *word, size_t *end, char *mod_before,
                           char *mod_after) {
    const char *s = lx->src;
    if (pos + 2 > lx->len || s[pos] != '{' || s[pos + 1] != '%') return false;
    pos += 2;
    *mod_before = pos < lx->len && (s[pos] == '-' || s[pos] == '+') ? s[pos++] : 0;
    while (pos < lx->len && is_space(s[pos])) pos++;
    size_t wl = strlen(word);
    if (pos + wl > lx->len || memcmp(s + pos, word, wl)) return false;
    pos += wl;
    while (pos < lx->len && is_space(s[pos])) pos++;
    *mod_after = pos < lx->len && (s[pos] == '-' || s[pos] == '+') ? s[pos++] : 0;
    if (pos + 2 > lx->len || s[pos] != '%' || s[pos + 1] != '}') return false;
    *end = pos + 2;
    return true;
}

static q3_status lex_raw(lexer *lx, size_t body) {
    char before, after;
    size_t end;
    for (size_t at = body; at + 1 < lx->len; at++) {
        if (!match_tag_word(lx, at, "endraw", &end, &before, &after)) continue;
        size_t from = body, to = at;
        if (before == '-')
            while (to > from && is_space(lx->src[to - 1])) to--;
        q3_status st = emit_text(lx, from, to);
        if (st) return st;
        after_tag(lx, end, after, true);
        return Q3_OK;
    }
    return lex_fail(lx, body, "unterminated raw block: no {%% endraw %%}");
}

/* ---- inside a tag ---- */

static int hex_value(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* \xHH, \uHHHH, \UHHHHHHHH: the code point, or -1 when the digits are not there. */
static int hex_escape(const char *s, size_t n, size_t *i, int digits) {
    int cp = 0;
    for (int k = 0; k < digits; k++) {
        int h = *i + 1 + (size_t)k < n ? hex_value(s[*i + 1 + (size_t)k]) : -1;
        if (h < 0) return -1;
        cp = cp * 16 + h;
    }
    *i += (size_t)digits;
    return cp;
}

/* One escape after a backslash at s[*i] (the letter); appends what it stands for. Unknown
 * escapes stay as they are, as in Python. */
static bool put_escape(q3_buf *b, const char *s, size_t n, size_t *i) {
    char c = s[*i];
    static const char SIMPLE_FROM[] = "nrt\\'\"abfv\n", SIMPLE_TO[] = "\n\r\t\\'\"\a\b\f\v";
    const char *k = strchr(SIMPLE_FROM, c);
    if (c && k) {
        if (c != '\n') q3_buf_putc(b, SIMPLE_TO[k - SIMPLE_FROM]); /* backslash-newline: nothing */
        return true;
    }
    if (c >= '0' && c <= '7') {
        int cp = 0;
        for (int d = 0; d < 3 && *i < n && s[*i] >= '0' && s[*i] <= '7'; d++) cp = cp * 8 + (s[(*i)++] - '0');
        (*i)--;
        q3_buf_put_utf8(b, cp);
        return true;
    }
    int digits = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
    if (digits) {
        int cp = hex_escape(s, n, i, digits);
        if (cp < 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return false;
        q3_buf_put_utf8(b, cp);
        return true;
    }
    q3_buf_putc(b, '\\');
    q3_buf_putc(b, c);
    return true;
}

static q3_status lex_string(lexer *lx, jtoken *t) {
    const char *s = lx->src;
    char quote = s[lx->pos];
    q3_buf b = {0};
    size_t i = lx->pos + 1;
    for (; i < lx->len && s[i] != quote; i++) {
        if (s[i] != '\\') {
            q3_buf_putc(&b, s[i]);
            continue;
        }
        if (++i >= lx->len) break;
        if (!put_escape(&b, s, lx->len, &i)) {
            q3_buf_free(&b);
            return lex_fail(lx, i - 1, "bad escape in a string");
        }
    }
    if (i >= lx->len) {
        q3_buf_free(&b);
        return lex_fail(lx, lx->pos, "unterminated string");
    }
    if (b.failed) return q3_fail(lx->e, Q3_ENOMEM, "%s: out of memory", lx->name);
    t->s = (jstr){ja_strndup(lx->a, b.data ? b.data : "", b.len), b.len};
    q3_buf_free(&b);
    lx->pos = i + 1;
    return t->s.p ? Q3_OK : q3_fail(lx->e, Q3_ENOMEM, "%s: out of memory", lx->name);
}

static size_t skip_digits(const char *s, size_t n, size_t i) {
    while (i < n && ((s[i] >= '0' && s[i] <= '9') || (s[i] == '_' && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '9')))
        i++;
    return i;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static q3_status lex_number(lexer *lx, jtoken *t) {
    const char *s = lx->src;
    size_t i = skip_digits(s, lx->len, lx->pos);
    bool is_float = false;
    if (i + 1 < lx->len && s[i] == '.' && is_digit(s[i + 1])) {
        i = skip_digits(s, lx->len, i + 1);
        is_float = true;
    }
    if (i < lx->len && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1 < lx->len && (s[i + 1] == '+' || s[i + 1] == '-') ? i + 2 : i + 1;
        if (j < lx->len && is_digit(s[j])) {
            i = skip_digits(s, lx->len, j);
            is_float = true;
        }
    }
    char digits[128];
    size_t nd = 0;
    for (size_t k = lx->pos; k < i && nd + 1 < sizeof digits; k++)
        if (s[k] != '_') digits[nd++] = s[k];
    digits[nd] = '\0';
    if (nd + 1 >= sizeof digits) return lex_fail(lx, lx->pos, "number too long");
    t->kind = is_float ? T_FLOAT : T_INT;
    if (is_float) t->f = strtod(digits, NULL);
    else if ((t->i = strtoll(digits, NULL, 10)) == INT64_MAX && strcmp(digits, "9223372036854775807"))
        return lex_fail(lx, lx->pos, "integer %s does not fit in 64 bits", digits);
    lx->pos = i;
    return Q3_OK;
}

static int two_char_op(const char *s) {
    static const char *const OPS[] = {"//", "**", "==", "!=", "<=", ">="};
    static const char CODES[] = {'F', 'P', 'E', 'N', 'L', 'G'};
    for (size_t k = 0; k < sizeof CODES; k++)
        if (s[0] == OPS[k][0] && s[1] == OPS[k][1]) return CODES[k];
    return 0;
}

static q3_status lex_operator(lexer *lx, jtoken *t, int *depth) {
    const char *s = lx->src + lx->pos;
    int op = lx->pos + 1 < lx->len ? two_char_op(s) : 0;
    if (op) {
        lx->pos += 2;
    } else if (*s && strchr("+-*/%~<>=()[]{},.:|", *s)) {
        op = *s;
        lx->pos++;
    } else {
        return lex_fail(lx, lx->pos, "unexpected character '%c'", *s);
    }
    if (op == '(' || op == '[' || op == '{') (*depth)++;
    if ((op == ')' || op == ']' || op == '}') && *depth > 0) (*depth)--;
    t->kind = T_OP;
    t->op = op;
    return Q3_OK;
}

static q3_status lex_token(lexer *lx, int *depth) {
    char c = lx->src[lx->pos];
    jtoken *t = push(lx, T_OP, lx->pos);
    if (!t) return q3_fail(lx->e, Q3_ENOMEM, "%s: out of memory", lx->name);
    if (c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        size_t i = lx->pos;
        while (i < lx->len && (lx->src[i] == '_' || (unsigned)((lx->src[i] | 0x20) - 'a') < 26u || is_digit(lx->src[i]))) i++;
        t->kind = T_NAME;
        t->s = (jstr){lx->src + lx->pos, i - lx->pos};
        lx->pos = i;
        return Q3_OK;
    }
    if (c == '\'' || c == '"') {
        t->kind = T_STRING;
        return lex_string(lx, t);
    }
    if (is_digit(c)) return lex_number(lx, t);
    return lex_operator(lx, t, depth);
}

/* The end of the tag at pos, if there is one: "%}" for blocks, "}}" for variables, with a
 * modifier before it. Returns its length (0: not an end). */
static size_t tag_end_at(const lexer *lx, size_t pos, char kind, char *mod) {
    const char *s = lx->src + pos;
    size_t left = lx->len - pos;
    char close = kind == '%' ? '%' : '}';
    *mod = 0;
    if (left >= 3 && (s[0] == '-' || (s[0] == '+' && kind == '%')) && s[1] == close && s[2] == '}') {
        *mod = s[0];
        return 3;
    }
    return left >= 2 && s[0] == close && s[1] == '}' ? 2 : 0;
}

static q3_status lex_tag(lexer *lx, size_t tag) {
    char kind = lx->src[tag + 1];
    jtoken *begin = push(lx, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, tag);
    if (!begin) return q3_fail(lx->e, Q3_ENOMEM, "%s: out of memory", lx->name);
    lx->pos = tag + 2;
    if (lx->pos < lx->len && (lx->src[lx->pos] == '-' || (lx->src[lx->pos] == '+' && kind == '%'))) lx->pos++;
    int depth = 0;
    for (;;) {
        while (lx->pos < lx->len && is_space(lx->src[lx->pos])) lx->pos++;
        if (lx->pos >= lx->len)
            return lex_fail(lx, tag, "unterminated tag: no '%s'", kind == '%' ? "%}" : "}}");
        char mod;
        size_t end_len = depth == 0 ? tag_end_at(lx, lx->pos, kind, &mod) : 0;
        if (end_len) {
            if (!push(lx, kind == '%' ? T_BLOCK_END : T_VAR_END, lx->pos))
                return q3_fail(lx->e, Q3_ENOMEM, "%s: out of memory", lx->name);
            after_tag(lx, lx->pos + end_len, mod, kind == '%');
            return Q3_OK;
        }
        q3_status st = lex_token(lx, &depth);
        if (st) return st;
    }
}

/* The next "{{", "{%" or "{#" at or after from, or len. */
static size_t next_tag(const lexer *lx, size_t from) {
    for (const char *p = lx->src + from; (p = memchr(p, '{', lx->len - (size_t)(p - lx->src)));) {
        size_t at = (size_t)(p - lx->src);
        if (at + 1 < lx->len && (p[1] == '{' || p[1] == '%' || p[1] == '#')) return at;
        p++;
    }
    return lx->len;
}

static q3_status lex_all(lexer *lx) {
    while (lx->pos < lx->len) {
        size_t tag = next_tag(lx, lx->pos);
        if (tag == lx->len) return emit_text(lx, lx->pos, lx->len);
        q3_status st = emit_text(lx, lx->pos, text_end(lx, lx->pos, tag));
        if (st) return st;
        char before, after;
        size_t raw_end;
        if (lx->src[tag + 1] == '#') st = lex_comment(lx, tag);
        else if (match_tag_word(lx, tag, "raw", &raw_end, &before, &after)) {
            size_t body = raw_end;
            if (after == '-')
                while (body < lx->len && is_space(lx->src[body])) body++;
            st = lex_raw(lx, body);
        } else st = lex_tag(lx, tag);
        if (st) return st;
    }
    return Q3_OK;
}

q3_status jx_lex(const char *name, const char *src, size_t len, jarena *a, jtoken **out, size_t *n,
                 q3_error *e) {
    lexer lx = {.name = name, .src = src, .len = len, .line = 1, .line_start = true, .a = a, .e = e};
    q3_status st = lex_all(&lx);
    if (!st && !push(&lx, T_EOF, len)) st = q3_fail(e, Q3_ENOMEM, "%s: out of memory", name);
    if (st) return st;
    *out = lx.toks;
    *n = lx.n;
    return Q3_OK;
}
