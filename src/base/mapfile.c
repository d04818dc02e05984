/* mmap of whole files, read-only and shared, so several processes share one page cache copy. */
#include "base/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

q3_status q3_mapfile_open(q3_mapfile *f, const char *path, q3_error *e) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return q3_fail(e, Q3_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return q3_fail(e, Q3_EIO, "%s: not a regular file", path);
    }
    f->size = (size_t)st.st_size;
    if (f->size > 0) {
        void *p = mmap(NULL, f->size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return q3_fail(e, Q3_EIO, "%s: cannot map: %s", path, strerror(errno));
        }
        f->data = p;
    }
    close(fd);
    f->path = strdup(path);
    if (!f->path) {
        q3_mapfile_close(f);
        return q3_fail(e, Q3_ENOMEM, "%s: out of memory", path);
    }
    return Q3_OK;
}

void q3_mapfile_close(q3_mapfile *f) {
    if (f->data && f->size) munmap((void *)f->data, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}
