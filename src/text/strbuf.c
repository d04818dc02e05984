/* The text module's growing string and UTF-8 walking (see strbuf.h). */
#include "text/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool grow(q3_strbuf *b, size_t need) {
    if (b->limit && need > b->limit + 1) {
        b->failed = b->over_limit = true;
        return false;
    }
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void q3_sb_put(q3_strbuf *b, const char *s, size_t n) {
    if (b->failed || n == 0 || !grow(b, b->len + n + 1)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void q3_sb_puts(q3_strbuf *b, const char *s) { q3_sb_put(b, s, strlen(s)); }

void q3_sb_putc(q3_strbuf *b, char c) { q3_sb_put(b, &c, 1); }

void q3_sb_printf(q3_strbuf *b, const char *fmt, ...) {
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        q3_sb_put(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->failed = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    q3_sb_put(b, big, (size_t)n);
    free(big);
}

char *q3_sb_take(q3_strbuf *b) {
    if (!b->failed && !b->data && grow(b, 1)) b->data[0] = '\0';
    if (b->failed) {
        q3_sb_free(b);
        return NULL;
    }
    char *s = b->data;
    *b = (q3_strbuf){.limit = b->limit};
    return s;
}

void q3_sb_free(q3_strbuf *b) {
    free(b->data);
    *b = (q3_strbuf){.limit = b->limit};
}

/* ---- UTF-8 ---- */

static int continuation(const char *s, size_t n, size_t at) {
    if (at >= n) return -1;
    unsigned char c = (unsigned char)s[at];
    return (c & 0xC0) == 0x80 ? c & 0x3F : -1;
}

int q3_utf8_next(const char *s, size_t n, size_t *i) {
    unsigned char c = (unsigned char)s[*i];
    int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    int cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (int k = 1; k < len; k++) {
        int more = continuation(s, n, *i + (size_t)k);
        if (more < 0) {
            len = 0;
            break;
        }
        cp = cp << 6 | more;
    }
    static const int MIN[] = {0, 0, 0x80, 0x800, 0x10000};
    if (len == 0 || cp < MIN[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) {
        (*i)++;
        return c;
    }
    *i += (size_t)len;
    return cp;
}

void q3_sb_put_utf8(q3_strbuf *b, int cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18);
        u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    q3_sb_put(b, u, n);
}

size_t q3_utf8_count(const char *s, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n; count++) q3_utf8_next(s, n, &i);
    return count;
}
