/* A growing byte string for the text module (chat templates, tool-call parsing): appends never
 * fail on the spot; an allocation failure, or going past an optional size limit, sticks and is
 * seen once at the end, so that building code reads straight through. */
#ifndef Q3_STRBUF_H
#define Q3_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct q3_strbuf {
    char *data;      /* NUL-terminated whenever not NULL */
    size_t len, cap;
    size_t limit;    /* 0: none; else appends that would pass it fail (over_limit) */
    bool failed;     /* out of memory or over the limit: later appends do nothing */
    bool over_limit;
} q3_strbuf;

void q3_sb_put(q3_strbuf *b, const char *s, size_t n);
void q3_sb_puts(q3_strbuf *b, const char *s);
void q3_sb_putc(q3_strbuf *b, char c);
void q3_sb_printf(q3_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the string over (never NULL when the buffer has not failed: "" for nothing written) and
 * leaves b empty; NULL, with b freed, when it failed. */
char *q3_sb_take(q3_strbuf *b);
void q3_sb_free(q3_strbuf *b);

/* ---- UTF-8, for code that walks text by character as Python does ---- */

/* The code point starting at s[*i] (of n bytes), advancing *i past it. Bytes that do not form a
 * character read as themselves (0x80..0xFF), one at a time: callers see valid UTF-8 only. */
int q3_utf8_next(const char *s, size_t n, size_t *i);
/* Appends code point cp as UTF-8. */
void q3_sb_put_utf8(q3_strbuf *b, int cp);
/* Characters in s[0..n). */
size_t q3_utf8_count(const char *s, size_t n);

#endif
