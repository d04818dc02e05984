/* The growable byte buffer (see buf.h). */
#include "base/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for need bytes in all (the NUL included). */
static bool grow(q3_buf *b, size_t need) {
    if (b->failed) return false;
    if (need < b->len) { /* len + n wrapped around */
        b->failed = true;
        return false;
    }
    if (b->limit && need > b->limit + 1) {
        b->failed = b->over_limit = true;
        return false;
    }
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void q3_buf_put(q3_buf *b, const void *s, size_t n) {
    if (!grow(b, b->len + n + 1)) return;
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void q3_buf_puts(q3_buf *b, const char *s) { q3_buf_put(b, s, strlen(s)); }

void q3_buf_putc(q3_buf *b, char c) { q3_buf_put(b, &c, 1); }

void q3_buf_printf(q3_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if (!grow(b, b->len + (size_t)n + 1)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *q3_buf_take(q3_buf *b) {
    if (!b->data) q3_buf_put(b, "", 0);
    if (b->failed) {
        q3_buf_free(b);
        return NULL;
    }
    char *s = b->data;
    *b = (q3_buf){.limit = b->limit};
    return s;
}

void q3_buf_free(q3_buf *b) {
    free(b->data);
    *b = (q3_buf){.limit = b->limit};
}
