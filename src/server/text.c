/* Small text helpers for the server: JSON written into the shared byte buffer (base/buf.h), and
 * JSON strings that stay valid UTF-8 whatever bytes they carry (a token's bytes may be half a
 * character). */
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "server/internal.h"

static int dump_to_buf(const char *s, size_t n, void *b) {
    q3_buf_put(b, s, n);
    return ((q3_buf *)b)->failed ? -1 : 0;
}

void buf_put_json(q3_buf *b, const json_t *v) {
    /* Nine significant digits round-trip a float, which is all our reals are (logprobs). */
    if (json_dump_callback(v, dump_to_buf, b, JSON_COMPACT | JSON_REAL_PRECISION(9)) != 0) b->failed = true;
}

json_t *json_text(const char *s, size_t n) {
    if (q3_utf8_invalid_at(s, n) == n) return json_stringn(s, n);
    q3_buf clean = {0};
    size_t len;
    for (size_t i = 0; i < n; i += len) {
        if (q3_utf8_scan(s + i, n - i, &len) == Q3_UTF8_OK) q3_buf_put(&clean, s + i, len);
        else q3_buf_puts(&clean, "\xEF\xBF\xBD"), len = 1;
    }
    json_t *v = clean.failed ? NULL : json_stringn(clean.data ? clean.data : "", clean.len);
    q3_buf_free(&clean);
    return v;
}
