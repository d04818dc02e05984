/* Errors: every fallible function returns a q3_status and, on failure, fills a q3_error with
 * one line that names the file, tensor or field at fault. No global error state. */
#ifndef Q3_ERROR_H
#define Q3_ERROR_H

#include "q3moe.h"

/* Fills e (when not NULL) with a printf-style message and returns code, so callers can write
 * `return q3_fail(e, Q3_EFORMAT, "%s: bad magic", path);`. */
q3_status q3_fail(q3_error *e, q3_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an error already set, to add context on the way up. */
q3_status q3_wrap(q3_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
