/* libFuzzer: the Qwen3 tokenizer (tests/fixtures/qwen3-tokenizer, loaded once) on arbitrary bytes.
 *
 *   - Encoding refuses exactly the inputs that are not UTF-8 (utf8proc is the judge).
 *   - Text that is already NFC comes back byte for byte: decode(encode(x)) == x, with special
 *     tokens parsed or not; the streaming decoder, fed one id at a time, gives the same bytes.
 *   - Arbitrary ids (the input read as 32-bit numbers, some outside the vocabulary): decode refuses
 *     exactly the bad ones, and the streaming decoder only ever emits valid UTF-8.
 *
 * Input: the first byte picks parse_special (bit 0) and what the rest is (bit 1: text, else ids). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/tokenizer.h"
#include "../utf8_oracle.h"

static q3_tokenizer *tok;

/* Loading takes seconds under the sanitizers: done before the first input, outside -timeout. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    q3_error e;
    if (q3_tok_load(&tok, Q3_FIXTURES "/qwen3-tokenizer", &e)) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", e.msg);
        abort();
    }
    return 0;
}

static bool is_nfc(const char *s, size_t n) {
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &nfc,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    bool same = k == (utf8proc_ssize_t)n && !memcmp(nfc, s, n);
    free(nfc);
    return same;
}

/* The streaming decoder's bytes for ids[0..n), flushed; NULL when a push fails. */
static char *stream_decode(const q3_tokenizer *tok, const int32_t *ids, int n, size_t *len) {
    size_t cap = q3_tok_stream_cap(tok), used = 0;
    char *out = malloc((size_t)n * cap + 4);
    q3_tok_stream s;
    q3_tok_stream_init(&s);
    q3_error e;
    for (int i = 0; i < n; i++) {
        size_t got;
        if (q3_tok_stream_push(tok, &s, ids[i], out + used, cap, &got, &e)) {
            free(out);
            return NULL;
        }
        used += got;
    }
    used += q3_tok_stream_flush(&s, out + used, 4);
    *len = used;
    return out;
}

static void round_trip(const q3_tokenizer *tok, const char *text, size_t len, bool special) {
    int32_t *ids = NULL;
    int n = 0;
    q3_error e;
    q3_status st = q3_tok_encode(tok, text, len, special, &ids, &n, &e);
    if (st != Q3_OK) {
        if (utf8proc_says_valid(text, len)) abort(); /* valid text refused */
        return;
    }
    if (!utf8proc_says_valid(text, len)) abort(); /* invalid text accepted */
    char *back;
    size_t back_len, streamed_len;
    if (q3_tok_decode(tok, ids, n, &back, &back_len, &e)) abort();
    char *streamed = stream_decode(tok, ids, n, &streamed_len);
    if (!streamed || streamed_len != back_len || memcmp(streamed, back, back_len)) abort();
    if (is_nfc(text, len) && (back_len != len || memcmp(back, text, len))) abort(); /* not a round trip */
    free(streamed);
    free(back);
    free(ids);
}

static void arbitrary_ids(const q3_tokenizer *tok, const unsigned char *data, size_t size) {
    int n = (int)(size / 4), vocab = q3_tok_vocab_size(tok);
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    bool all_valid = true;
    for (int i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, data + 4 * i, 4);
        ids[i] = (int32_t)(v % ((uint32_t)vocab + 64)) - 32; /* a few below 0 and past the end */
        all_valid &= ids[i] >= 0 && ids[i] < vocab;
    }
    char *text;
    size_t len;
    q3_error e;
    q3_status st = q3_tok_decode(tok, ids, n, &text, &len, &e);
    if ((st == Q3_OK) != all_valid) abort();
    if (st == Q3_OK) free(text);
    if (all_valid) {
        char *streamed = stream_decode(tok, ids, n, &len);
        if (!streamed || !utf8proc_says_valid(streamed, len)) abort();
        free(streamed);
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] & 2) round_trip(tok, (const char *)data + 1, size - 1, data[0] & 1);
    else arbitrary_ids(tok, data + 1, size - 1);
    return 0;
}
