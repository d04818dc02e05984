/* Whether bytes are UTF-8, as utf8proc judges them: the tests' independent oracle for our own
 * decoder (src/base/utf8.h), so a test never checks the code under test against itself. */
#ifndef Q3_TESTS_UTF8_ORACLE_H
#define Q3_TESTS_UTF8_ORACLE_H

#include <stdbool.h>
#include <stddef.h>
#include <utf8proc.h>

static inline bool utf8proc_says_valid(const void *bytes, size_t n) {
    const utf8proc_uint8_t *s = bytes;
    utf8proc_int32_t cp;
    for (size_t at = 0; at < n;) {
        utf8proc_ssize_t k = utf8proc_iterate(s + at, (utf8proc_ssize_t)(n - at), &cp);
        if (k <= 0) return false;
        at += (size_t)k;
    }
    return true;
}

#endif
