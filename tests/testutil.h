/* Helpers shared by the C tests: fixture paths and reference tensors. Header-only so each test
 * stays one file. */
#ifndef Q3_TESTUTIL_H
#define Q3_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "formats/safetensors.h"

/* $Q3_FIXTURES/<rel>, in a static buffer per call site's choice of slot (0..3). */
static inline const char *fixture_path(int slot, const char *rel) {
    static char buf[4][4096];
    const char *root = getenv("Q3_FIXTURES");
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", root ? root : "tests/fixtures", rel);
    return buf[slot];
}

static inline const char *tmp_path(int slot, const char *name) {
    static char buf[4][4096];
    const char *root = getenv("Q3_TMP");
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", root ? root : "/tmp", name);
    return buf[slot];
}

/* A reference tensor by name; fails the test when absent. */
static inline const q3_tensor_view *ref_tensor(const q3_st_file *f, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const q3_tensor_view *t = q3_st_find(f, name);
    if (!t) fail_msg("reference tensor %s is missing", name);
    return t;
}

#endif
