/* Read-only memory-mapped files: model weights are used in place, never copied. */
#ifndef Q3_MAPFILE_H
#define Q3_MAPFILE_H

#include <stddef.h>
#include "base/error.h"

typedef struct q3_mapfile {
    char *path;         /* owned copy, for error messages */
    const unsigned char *data;
    size_t size;
} q3_mapfile;

q3_status q3_mapfile_open(q3_mapfile *f, const char *path, q3_error *e);
/* Unmaps; safe on a zeroed or already closed q3_mapfile; cannot fail. */
void q3_mapfile_close(q3_mapfile *f);

#endif
