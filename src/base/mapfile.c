/* mmap of whole files, read-only and shared, so several processes share one page cache copy.
 *
 * Decode streams gigabytes of weights per token through this mapping, so its pages matter: the
 * mapping starts on a 2 MiB boundary and asks for transparent huge pages (MADV_HUGEPAGE), and a
 * kernel that reads the file into 2 MiB folios (Linux 6.x, with large-folio file systems such
 * as ext4 or XFS) then maps each with one TLB entry instead of 512: fewer page walks on every
 * stream. Where the kernel cannot, the advice changes nothing. */
#include "base/mapfile.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HUGE_PAGE ((size_t)2 << 20)

/* The whole file mapped read-only at a 2 MiB-aligned address (so that file offsets on 2 MiB
 * boundaries land on huge-page boundaries), with huge pages advised; MAP_FAILED on error. Small
 * files are mapped anywhere. */
static void *map_huge_aligned(int fd, size_t size) {
    if (size < HUGE_PAGE) return mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    /* Reserve address space with room to align, then map the file over its aligned part. */
    size_t span = size + HUGE_PAGE;
    char *reserved = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (reserved == MAP_FAILED) return mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    char *aligned = (char *)(((uintptr_t)reserved + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    void *p = mmap(aligned, size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
        munmap(reserved, span);
        return MAP_FAILED;
    }
    size_t before = (size_t)(aligned - reserved), page = (size_t)sysconf(_SC_PAGESIZE);
    size_t end = (size_t)(aligned - reserved) + (size + page - 1) / page * page;
    if (before) munmap(reserved, before);
    if (end < span) munmap(reserved + end, span - end);
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE); /* advice: an error leaves ordinary pages, which work */
#endif
    return p;
}

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
        void *p = map_huge_aligned(fd, f->size);
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
