/* Stop strings over streamed text. Each feed looks at the held-back text followed by the new
 * piece, assembled in the caller's emit buffer so that feeding allocates nothing. The held text
 * is the longest tail that is a proper prefix of some stop string: any stop string that
 * completes later starts inside it (or after it), so no emitted byte ever has to be taken back.
 * Matching works on bytes; a stop string is valid UTF-8 and starts on a character boundary, so
 * the cuts it causes fall on character boundaries of valid text too. */
#include "text/stop.h"

#include <stdlib.h>
#include <string.h>

q3_status q3_stop_init(q3_stop *s, const char *const *stops, int n, q3_error *e) {
    memset(s, 0, sizeof *s);
    s->matched = -1;
    if (n < 0) return q3_fail(e, Q3_EINVAL, "stop strings: count %d", n);
    for (int i = 0; i < n; i++)
        if (!stops[i] || !stops[i][0])
            return q3_fail(e, Q3_EINVAL, "stop string %d is empty", i);
    s->stops = calloc((size_t)n + 1, sizeof *s->stops);
    s->lens = calloc((size_t)n + 1, sizeof *s->lens);
    if (!s->stops || !s->lens) goto oom;
    for (int i = 0; i < n; i++) {
        if (!(s->stops[i] = strdup(stops[i]))) goto oom;
        s->n_stops = i + 1;
        s->lens[i] = strlen(stops[i]);
        if (s->lens[i] > s->max_len) s->max_len = s->lens[i];
    }
    if (!(s->held = malloc(s->max_len + 1))) goto oom;
    return Q3_OK;
oom:
    q3_stop_free(s);
    return q3_fail(e, Q3_ENOMEM, "stop strings: out of memory");
}

void q3_stop_free(q3_stop *s) {
    for (int i = 0; i < s->n_stops; i++) free(s->stops[i]);
    free(s->stops);
    free(s->lens);
    free(s->held);
    memset(s, 0, sizeof *s);
    s->matched = -1;
}

size_t q3_stop_max_held(const q3_stop *s) { return s->max_len ? s->max_len - 1 : 0; }

int q3_stop_matched(const q3_stop *s) { return s->matched; }

/* The stop string in text[0..n) that completes first; of two completing at the same byte, the one
 * that starts earlier. Returns its index and start, or -1. Taking the first to complete makes the
 * answer the same however the text was split into pieces. */
static int first_match(const q3_stop *s, const char *text, size_t n, size_t *start) {
    int best = -1;
    size_t best_end = 0;
    for (int i = 0; i < s->n_stops; i++) {
        const char *at = memmem(text, n, s->stops[i], s->lens[i]);
        if (!at) continue;
        size_t from = (size_t)(at - text), end = from + s->lens[i];
        if (best < 0 || end < best_end || (end == best_end && from < *start)) {
            best = i;
            best_end = end;
            *start = from;
        }
    }
    return best;
}

/* Where the longest tail of text[0..n) that is a proper prefix of a stop string begins (n when
 * there is none): the text from there on might still become a stop string. */
static size_t held_from(const q3_stop *s, const char *text, size_t n) {
    size_t longest = q3_stop_max_held(s);
    for (size_t from = n > longest ? n - longest : 0; from < n; from++) {
        size_t tail = n - from;
        for (int i = 0; i < s->n_stops; i++)
            if (tail < s->lens[i] && memcmp(text + from, s->stops[i], tail) == 0) return from;
    }
    return n;
}

q3_status q3_stop_feed(q3_stop *s, const char *piece, size_t len, char *emit, size_t cap,
                       size_t *emit_len, bool *matched, q3_error *e) {
    *emit_len = 0;
    *matched = s->matched >= 0;
    if (*matched) return Q3_OK;
    size_t n = s->n_held + len;
    if (cap < n)
        return q3_fail(e, Q3_EINVAL, "stop strings: emit buffer of %zu bytes, %zu needed", cap, n);
    if (n == 0) return Q3_OK; /* and memmem below may not be given a NULL buffer */
    if (s->n_held) memcpy(emit, s->held, s->n_held);
    if (len) memcpy(emit + s->n_held, piece, len);
    size_t start = 0;
    int hit = first_match(s, emit, n, &start);
    if (hit >= 0) {
        s->matched = hit;
        s->n_held = 0;
        *emit_len = start;
        *matched = true;
        return Q3_OK;
    }
    size_t from = held_from(s, emit, n);
    s->n_held = n - from;
    if (s->n_held) memcpy(s->held, emit + from, s->n_held);
    *emit_len = from;
    return Q3_OK;
}

q3_status q3_stop_flush(q3_stop *s, char *emit, size_t cap, size_t *emit_len, q3_error *e) {
    *emit_len = 0;
    if (s->matched >= 0) return Q3_OK;
    if (cap < s->n_held)
        return q3_fail(e, Q3_EINVAL, "stop strings: emit buffer of %zu bytes, %zu needed", cap,
                       s->n_held);
    if (s->n_held) memcpy(emit, s->held, s->n_held);
    *emit_len = s->n_held;
    s->n_held = 0;
    return Q3_OK;
}
