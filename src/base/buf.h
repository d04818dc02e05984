/* The one growable byte buffer: JSON replies, rendered templates, parsed tool calls and GGUF
 * metadata are all built in it. Appends never fail on the spot: an allocation failure, or going
 * past an optional size limit, sticks and is seen once at the end, so building code reads
 * straight through. The bytes are always followed by a NUL once anything was put. */
#ifndef Q3_BUF_H
#define Q3_BUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct q3_buf {
    char *data;      /* NUL-terminated whenever not NULL */
    size_t len, cap;
    size_t limit;    /* 0: none; else appends that would pass it fail (over_limit) */
    bool failed;     /* out of memory or over the limit: later appends do nothing */
    bool over_limit;
} q3_buf;

void q3_buf_put(q3_buf *b, const void *s, size_t n);
void q3_buf_puts(q3_buf *b, const char *s);
void q3_buf_putc(q3_buf *b, char c);
void q3_buf_printf(q3_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the string over (never NULL when the buffer has not failed: "" for nothing written) and
 * leaves b empty; NULL, with b freed, when it failed. */
char *q3_buf_take(q3_buf *b);
/* Frees the bytes and empties b, keeping its limit. */
void q3_buf_free(q3_buf *b);

#endif
