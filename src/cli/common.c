/* Shared CLI helpers. */
#include "cli/common.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool exists(const char *p) { return access(p, R_OK) == 0; }

const char *q3_cli_model_path(const char *arg) {
    static char buf[PATH_MAX];
    if (arg) return arg;
    const char *env = getenv("Q3_MODEL");
    if (env && *env) return env;
    if (exists(Q3_DEMO_MODEL)) return Q3_DEMO_MODEL;
    /* Beside the binary: build/q3moe -> ../models/... */
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
        buf[n] = 0;
        char *slash = strrchr(buf, '/');
        for (int up = 0; up < 3 && slash; up++) {
            *slash = 0;
            char cand[PATH_MAX + 64];
            snprintf(cand, sizeof cand, "%s/%s", buf, Q3_DEMO_MODEL);
            if (exists(cand)) {
                snprintf(buf, sizeof buf, "%s", cand);
                return buf;
            }
            slash = strrchr(buf, '/');
        }
    }
    fprintf(stderr, "q3moe: no model given (-m) and the demo model %s was not found\n", Q3_DEMO_MODEL);
    return NULL;
}

bool q3_cli_parse_ids(const char *s, const char *what, int32_t **out, int *n) {
    int cap = 16, count = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return false;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "q3moe: %s: '%s' is not a comma-separated list of token ids\n", what, s);
            free(ids);
            return false;
        }
        if (count == cap) {
            int32_t *more = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!more) { free(ids); return false; }
            ids = more;
        }
        ids[count++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (count == 0) {
        fprintf(stderr, "q3moe: %s: no token ids given\n", what);
        free(ids);
        return false;
    }
    *out = ids;
    *n = count;
    return true;
}

bool q3_cli_parse_int(const char *s, const char *option, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max) {
        fprintf(stderr, "q3moe: %s: '%s' is not an integer in %ld..%ld\n", option, s, min, max);
        return false;
    }
    *out = v;
    return true;
}
