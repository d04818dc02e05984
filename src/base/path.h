/* File paths built from parts (a directory and a file it holds), refusing any that do not fit
 * their buffer: a path cut short would name another file. */
#ifndef Q3_PATH_H
#define Q3_PATH_H

#include <stddef.h>
#include "base/error.h"

/* printf into out (cap bytes); Q3_EINVAL naming the start of the path when it is longer. */
q3_status q3_pathf(char *out, size_t cap, q3_error *e, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
