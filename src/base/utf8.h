/* The one UTF-8 decoder (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF), for
 * every place that checks or walks text: JSON replies must carry valid UTF-8, the tokenizer's
 * streaming decoder holds back a character cut short, templates walk strings by character as
 * Python does. */
#ifndef Q3_UTF8_H
#define Q3_UTF8_H

#include <stddef.h>
#include "base/buf.h"

typedef enum q3_utf8_verdict {
    Q3_UTF8_OK,    /* *len bytes form one valid character */
    Q3_UTF8_SHORT, /* the *len bytes there begin a valid character, but s ends before it does */
    Q3_UTF8_BAD,   /* the first *len bytes cannot begin a valid character */
} q3_utf8_verdict;

/* Reads the character at s (n >= 1 bytes). */
q3_utf8_verdict q3_utf8_scan(const char *s, size_t n, size_t *len);
/* The offset of the first byte that is not part of a valid character, or n. */
size_t q3_utf8_invalid_at(const char *s, size_t n);
/* The code point starting at s[*i] (of n bytes), advancing *i past it. Bytes that do not form a
 * character read as themselves (0x80..0xFF), one at a time: callers see valid UTF-8 only. */
int q3_utf8_next(const char *s, size_t n, size_t *i);
/* Characters in s[0..n), counted as q3_utf8_next walks them. */
size_t q3_utf8_count(const char *s, size_t n);
/* Code point cp (below 0x110000) as UTF-8 into out; returns its length, 1 to 4. */
size_t q3_utf8_encode(unsigned cp, char out[4]);
/* Appends code point cp as UTF-8. */
void q3_buf_put_utf8(q3_buf *b, unsigned cp);

#endif
