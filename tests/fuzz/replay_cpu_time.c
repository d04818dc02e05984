/* Replays inputs through a libFuzzer target once each and times each by the process's CPU time.
 *
 * libFuzzer's -timeout is wall-clock time, which a loaded machine stretches: on a shared 2-core
 * box a niced fuzzer reports inputs that take milliseconds as slow. The campaign therefore runs
 * with a generous -timeout to catch hangs, and this driver checks the real property afterwards:
 * no input of a corpus (or artifact) takes more than LIMIT seconds of CPU. It is linked with each
 * target's own LLVMFuzzerTestOneInput as replay_NAME (tests/CMakeLists.txt).
 *
 * usage: replay_NAME LIMIT_SECONDS FILE_OR_DIR...   exit 1 if any input is over the limit */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

typedef struct {
    double limit, slowest;
    char slowest_path[1024];
    long inputs, over, unreadable;
} replay_stats;

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static unsigned char *read_whole(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
            if (fread(buf, 1, (size_t)n, f) == (size_t)n) *len = (size_t)n;
            else free(buf), buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

static void replay_file(replay_stats *s, const char *path) {
    size_t len = 0;
    unsigned char *buf = read_whole(path, &len);
    if (!buf) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        s->unreadable++;
        return;
    }
    double start = cpu_seconds();
    LLVMFuzzerTestOneInput(buf, len);
    double took = cpu_seconds() - start;
    free(buf);
    s->inputs++;
    if (took > s->slowest) {
        s->slowest = took;
        snprintf(s->slowest_path, sizeof s->slowest_path, "%s", path);
    }
    if (took > s->limit) {
        s->over++;
        printf("SLOW %.3f s CPU %s\n", took, path);
    }
}

static void replay_path(replay_stats *s, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: no such file or directory: %s\n", path);
        s->unreadable++;
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        replay_file(s, path);
        return;
    }
    DIR *dir = opendir(path);
    if (!dir) {
        s->unreadable++;
        return;
    }
    for (struct dirent *e; (e = readdir(dir));) {
        if (e->d_name[0] == '.') continue;
        char child[4096];
        if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) < (int)sizeof child)
            replay_file(s, child);
    }
    closedir(dir);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s LIMIT_SECONDS FILE_OR_DIR...\n", argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    replay_stats s = {.limit = atof(argv[1])};
    for (int i = 2; i < argc; i++) replay_path(&s, argv[i]);
    printf("replayed %ld inputs, %ld over %.2f s CPU, slowest %.3f s CPU (%s)\n", s.inputs, s.over,
           s.limit, s.slowest, s.slowest_path);
    return s.over != 0 || s.unreadable != 0;
}
