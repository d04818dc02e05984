/* Error construction: formatting a message into the caller's q3_error. */
#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

q3_status q3_fail(q3_error *e, q3_status code, const char *fmt, ...) {
    if (!e) return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->code = code;
    return code;
}

q3_status q3_wrap(q3_error *e, const char *fmt, ...) {
    if (!e) return Q3_EINVAL;
    char prefix[256], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%s: %s", prefix, old);
    return e->code;
}

const char *q3_status_name(q3_status s) {
    switch (s) {
    case Q3_OK: return "ok";
    case Q3_EINVAL: return "invalid argument";
    case Q3_EIO: return "i/o error";
    case Q3_EFORMAT: return "bad file format";
    case Q3_ENOMEM: return "out of memory";
    case Q3_EUNSUPPORTED: return "not supported";
    case Q3_EFULL: return "cache full";
    }
    return "unknown error";
}
