/* Small text helpers for the server: a growable buffer that responses are written into, and the
 * UTF-8 checks that keep every JSON string we send valid (a token's bytes may be half a
 * character; a request body may not be UTF-8 at all). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/internal.h"

static bool sbuf_reserve(sbuf *b, size_t more) {
    if (b->failed) return false;
    if (b->len + more + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void sbuf_put(sbuf *b, const char *s, size_t n) {
    if (!sbuf_reserve(b, n)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void sbuf_puts(sbuf *b, const char *s) { sbuf_put(b, s, strlen(s)); }

void sbuf_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !sbuf_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static int dump_to_sbuf(const char *s, size_t n, void *b) {
    sbuf_put(b, s, n);
    return ((sbuf *)b)->failed ? -1 : 0;
}

void sbuf_put_json(sbuf *b, const json_t *v) {
    /* Nine significant digits round-trip a float, which is all our reals are (logprobs). */
    if (json_dump_callback(v, dump_to_sbuf, b, JSON_COMPACT | JSON_REAL_PRECISION(9)) != 0) b->failed = true;
}

void sbuf_free(sbuf *b) {
    free(b->data);
    *b = (sbuf){0};
}

/* The length of the valid character at s, or 0. Overlong forms, surrogates and code points past
 * U+10FFFF are not valid (RFC 3629), as JSON parsers agree. */
static size_t utf8_char(const unsigned char *s, size_t n) {
    if (s[0] < 0x80) return 1;
    size_t len;
    unsigned cp;
    if ((s[0] & 0xE0) == 0xC0) len = 2, cp = s[0] & 0x1F;
    else if ((s[0] & 0xF0) == 0xE0) len = 3, cp = s[0] & 0x0F;
    else if ((s[0] & 0xF8) == 0xF0) len = 4, cp = s[0] & 0x07;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    static const unsigned least[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

size_t utf8_invalid_at(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_char(u + i, n - i);
        if (!len) return i;
        i += len;
    }
    return n;
}

json_t *json_text(const char *s, size_t n) {
    if (utf8_invalid_at(s, n) == n) return json_stringn(s, n);
    sbuf clean = {0};
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_char(u + i, n - i);
        if (len) sbuf_put(&clean, s + i, len), i += len;
        else sbuf_puts(&clean, "\xEF\xBF\xBD"), i++;
    }
    json_t *v = clean.failed ? NULL : json_stringn(clean.data ? clean.data : "", clean.len);
    sbuf_free(&clean);
    return v;
}
