/* libFuzzer: stop strings over streamed text. Whatever the stop strings and however the text is
 * cut into pieces, what q3_stop emits must be exactly what a brute-force search of the whole text
 * gives: the text up to the stop string that completes first (of two completing at the same byte,
 * the longer; of equal ones, the first given), or all of it when none occurs; and the index it
 * reports must be that string's.
 *
 * Input: the first byte seeds the piece sizes; then up to four stop strings, each ended by a NUL
 * byte (empty ones are skipped); the rest is the generated text, NUL bytes and all. */
#include <stdlib.h>
#include <string.h>

#include "text/stop.h"

#define MAX_STOPS 4

/* The brute-force reference: the first end position where some stop string ends. */
static size_t reference(const char *const *stops, int n, const char *text, size_t len, int *which) {
    for (size_t end = 1; end <= len; end++) {
        int best = -1;
        size_t best_len = 0;
        for (int i = 0; i < n; i++) {
            size_t k = strlen(stops[i]);
            if (k <= end && k > best_len && !memcmp(text + end - k, stops[i], k)) best = i, best_len = k;
        }
        if (best >= 0) {
            *which = best;
            return end - best_len;
        }
    }
    *which = -1;
    return len;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 1) return 0;
    unsigned seed = data[0];
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    /* Copies: the stop strings must be NUL-terminated and the input is not. */
    char *stops[MAX_STOPS];
    int n = 0;
    while (n < MAX_STOPS && p < end) {
        const char *nul = memchr(p, '\0', (size_t)(end - p));
        if (!nul) break;
        if (nul > p) stops[n++] = strndup(p, (size_t)(nul - p));
        p = nul + 1;
    }
    const char *text = p;
    size_t len = (size_t)(end - p);

    q3_stop st;
    q3_error e;
    if (q3_stop_init(&st, (const char *const *)stops, n, &e)) abort(); /* none is empty */
    size_t cap_extra = q3_stop_max_held(&st);
    char *out = malloc(len + cap_extra + 1), *emit = malloc(len + cap_extra + 1);
    size_t n_out = 0, at = 0;
    bool matched = false;
    while (at < len && !matched) {
        size_t piece = 1 + (seed = seed * 1103515245u + 12345u) % 7; /* 1..7 bytes, pseudo-random */
        if (piece > len - at) piece = len - at;
        size_t got;
        if (q3_stop_feed(&st, text + at, piece, emit, piece + cap_extra, &got, &matched, &e)) abort();
        memcpy(out + n_out, emit, got);
        n_out += got;
        at += piece;
    }
    if (!matched) {
        size_t got;
        if (q3_stop_flush(&st, emit, cap_extra, &got, &e)) abort();
        memcpy(out + n_out, emit, got);
        n_out += got;
    }
    int which;
    size_t want = reference((const char *const *)stops, n, text, len, &which);
    if (n_out != want || memcmp(out, text, want) || q3_stop_matched(&st) != which || matched != (which >= 0))
        abort(); /* the stream and the reference disagree */
    q3_stop_free(&st);
    free(out);
    free(emit);
    for (int i = 0; i < n; i++) free(stops[i]);
    return 0;
}
