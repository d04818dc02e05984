#include "base/path.h"

#include <stdarg.h>
#include <stdio.h>

q3_status q3_pathf(char *out, size_t cap, q3_error *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < cap) return Q3_OK;
    return q3_fail(e, Q3_EINVAL, "path too long (%d bytes, at most %zu): %.80s...", n, cap ? cap - 1 : 0, out);
}
