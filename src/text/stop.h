/* Stop strings: cutting generated text at the first stop string, while streaming it.
 *
 * The text arrives in pieces, as the streaming detokenizer produces them. Whatever could still
 * turn out to be the start of a stop string is held back; the rest is emitted at once. When a
 * stop string completes, the text before it is emitted and the stop string and everything after
 * it is not, as the OpenAI API does. Matching is on bytes, and the result does not depend on
 * how the text was cut into pieces: the stop string that completes first in the text wins (of
 * two completing at the same byte, the longer, which starts earlier).
 *
 *     q3_stop st;
 *     q3_stop_init(&st, stops, n_stops, &err);
 *     for each piece:
 *         q3_stop_feed(&st, piece, len, out, len + q3_stop_max_held(&st), &out_len, &matched,
 *                      &err);
 *         send out[0..out_len); if (matched) break;
 *     at the end of generation: q3_stop_flush(&st, out, q3_stop_max_held(&st), &out_len, &err);
 *     q3_stop_free(&st);
 */
#ifndef Q3_STOP_H
#define Q3_STOP_H

#include "base/error.h"

typedef struct q3_stop {
    char **stops;       /* [n_stops] copies */
    size_t *lens;       /* [n_stops] */
    int n_stops;
    size_t max_len;     /* the longest stop string */
    char *held;         /* [max_len] text held back: a proper prefix of some stop string */
    size_t n_held;
    int matched;        /* index of the stop string that matched, or -1 */
} q3_stop;

/* Copies n stop strings (NUL-terminated); n may be 0. Q3_EINVAL for an empty or NULL one. */
q3_status q3_stop_init(q3_stop *s, const char *const *stops, int n, q3_error *e);
void q3_stop_free(q3_stop *s);

/* The most bytes feed can hold back, and so what emit buffers need beyond the piece's length. */
size_t q3_stop_max_held(const q3_stop *s);

/* Feeds len bytes of generated text. emit (cap bytes, at least len + q3_stop_max_held(), not
 * overlapping piece) receives *emit_len bytes safe to send now; *matched becomes true once a stop
 * string has matched, after which nothing more is emitted. Q3_EINVAL when cap is too small. */
q3_status q3_stop_feed(q3_stop *s, const char *piece, size_t len, char *emit, size_t cap,
                       size_t *emit_len, bool *matched, q3_error *e);

/* At the end of generation: emits what is still held back (nothing after a match). emit needs
 * q3_stop_max_held() bytes; Q3_EINVAL when cap is too small. */
q3_status q3_stop_flush(q3_stop *s, char *emit, size_t cap, size_t *emit_len, q3_error *e);

/* The index of the stop string that matched (vLLM's stop_reason), or -1; cannot fail. */
int q3_stop_matched(const q3_stop *s);

#endif
