/* Tests of stop strings over streamed text: hand-made cases (a stop split across pieces, a held
 * prefix that turns out not to be a stop, several stops, a stop at the start, UTF-8 around the
 * stop), and random texts cut into random pieces checked against a brute-force reference over
 * the whole text: the answer must not depend on where the pieces were cut. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/stop.h"
#include "utf8_oracle.h"

/* What a stream of pieces produced: the text emitted, each emit's validity, the stop matched. */
typedef struct stream_result {
    char text[4096];
    size_t len;
    bool matched;
    int stop_index;
    bool emits_valid_utf8; /* every single emit, not just their concatenation */
} stream_result;

/* Feeds pieces (NULL-terminated list) through a q3_stop over stops, then flushes. */
static stream_result run_stream(const char *const *stops, int n_stops, const char *const *pieces) {
    stream_result r = {.emits_valid_utf8 = true};
    q3_stop st;
    q3_error err;
    assert_int_equal(q3_stop_init(&st, stops, n_stops, &err), Q3_OK);
    char emit[4096];
    for (int i = 0; pieces[i]; i++) {
        size_t len = strlen(pieces[i]), out = 0;
        bool matched = false;
        assert_int_equal(q3_stop_feed(&st, pieces[i], len, emit, len + q3_stop_max_held(&st), &out,
                                      &matched, &err),
                         Q3_OK);
        r.emits_valid_utf8 &= utf8proc_says_valid((const unsigned char *)emit, out);
        memcpy(r.text + r.len, emit, out);
        r.len += out;
        r.matched = matched;
    }
    size_t out = 0;
    assert_int_equal(q3_stop_flush(&st, emit, q3_stop_max_held(&st), &out, &err), Q3_OK);
    r.emits_valid_utf8 &= utf8proc_says_valid((const unsigned char *)emit, out);
    memcpy(r.text + r.len, emit, out);
    r.len += out;
    r.text[r.len] = 0;
    r.stop_index = q3_stop_matched(&st);
    q3_stop_free(&st);
    return r;
}

static void test_stop_split_across_pieces(void **state) {
    (void)state;
    const char *stops[] = {"</s>"};
    const char *pieces[] = {"Hello <", "/", "s> world", " more", NULL};
    stream_result r = run_stream(stops, 1, pieces);
    assert_string_equal(r.text, "Hello ");
    assert_true(r.matched);
    assert_int_equal(r.stop_index, 0);
}

/* Text held back as a possible stop must come out once it is not one. */
static void test_abandoned_prefix_is_emitted(void **state) {
    (void)state;
    const char *stops[] = {"STOP"};
    q3_stop st;
    assert_int_equal(q3_stop_init(&st, stops, 1, NULL), Q3_OK);
    char emit[64];
    size_t out;
    bool matched;
    assert_int_equal(q3_stop_feed(&st, "ab ST", 5, emit, sizeof emit, &out, &matched, NULL), Q3_OK);
    assert_int_equal(out, 3);
    assert_memory_equal(emit, "ab ", 3);
    assert_int_equal(q3_stop_feed(&st, "OR", 2, emit, sizeof emit, &out, &matched, NULL), Q3_OK);
    assert_int_equal(out, 4);
    assert_memory_equal(emit, "STOR", 4);
    assert_int_equal(q3_stop_feed(&st, "Y ST", 4, emit, sizeof emit, &out, &matched, NULL), Q3_OK);
    assert_int_equal(out, 2);
    assert_false(matched);
    /* The end of generation releases the last held prefix. */
    assert_int_equal(q3_stop_flush(&st, emit, sizeof emit, &out, NULL), Q3_OK);
    assert_int_equal(out, 2);
    assert_memory_equal(emit, "ST", 2);
    assert_int_equal(q3_stop_matched(&st), -1);
    q3_stop_free(&st);

    /* A held prefix that fails can still hold the start of the real match: "aaab" with "aab". */
    const char *aab[] = {"aab"};
    const char *pieces[] = {"a", "a", "a", "b", NULL};
    stream_result r = run_stream(aab, 1, pieces);
    assert_string_equal(r.text, "a");
    assert_true(r.matched);
}

static void test_multiple_stops(void **state) {
    (void)state;
    const char *stops[] = {"\n\n", "END", "User:"};
    const char *pieces[] = {"line1\nUs", "er: hi\n\nEND", NULL};
    stream_result r = run_stream(stops, 3, pieces);
    assert_string_equal(r.text, "line1\n");
    assert_int_equal(r.stop_index, 2);

    /* The stop that completes first wins, wherever the pieces are cut. */
    const char *nested[] = {"abcd", "bc"};
    const char *whole[] = {"xabcd", NULL}, *bytes[] = {"x", "a", "b", "c", "d", NULL};
    r = run_stream(nested, 2, whole);
    assert_string_equal(r.text, "xa");
    assert_int_equal(r.stop_index, 1);
    r = run_stream(nested, 2, bytes);
    assert_string_equal(r.text, "xa");
    assert_int_equal(r.stop_index, 1);
    /* Two completing at the same byte: the longer, which starts earlier, cuts more. */
    const char *suffixes[] = {"cd", "abcd"};
    r = run_stream(suffixes, 2, whole);
    assert_string_equal(r.text, "x");
    assert_int_equal(r.stop_index, 1);
}

static void test_stop_at_start(void **state) {
    (void)state;
    const char *stops[] = {"Hi"};
    const char *pieces[] = {"Hi there", NULL};
    stream_result r = run_stream(stops, 1, pieces);
    assert_int_equal(r.len, 0);
    assert_true(r.matched);
    const char *split[] = {"H", "i", " there", NULL};
    r = run_stream(stops, 1, split);
    assert_int_equal(r.len, 0);
    assert_true(r.matched);
}

static void test_utf8_around_stop(void **state) {
    (void)state;
    /* "→" is E2 86 92; the text around it is multibyte too. */
    const char *arrow[] = {"\xe2\x86\x92"};
    const char *pieces[] = {"x \xe2\x86\x90 y ", "\xe2\x86\x92", " z", NULL};
    stream_result r = run_stream(arrow, 1, pieces);
    assert_string_equal(r.text, "x \xe2\x86\x90 y ");
    assert_true(r.matched);
    assert_true(r.emits_valid_utf8);

    /* "。" ends the stop; the characters before it share no bytes with it. */
    const char *full_stop[] = {"\xe3\x80\x82"};
    const char *chinese[] = {"\xe4\xbd\xa0", "\xe5\xa5\xbd\xe3\x80\x82\xe5\x86\x8d", NULL};
    r = run_stream(full_stop, 1, chinese);
    assert_string_equal(r.text, "\xe4\xbd\xa0\xe5\xa5\xbd");
    assert_true(r.emits_valid_utf8);

    /* "é" (C3 A9) shares its lead byte with the stop "è" (C3 A8) and must not be held. */
    const char *grave[] = {"\xc3\xa8"};
    q3_stop st;
    assert_int_equal(q3_stop_init(&st, grave, 1, NULL), Q3_OK);
    char emit[16];
    size_t out;
    bool matched;
    assert_int_equal(q3_stop_feed(&st, "caf\xc3\xa9", 5, emit, sizeof emit, &out, &matched, NULL),
                     Q3_OK);
    assert_int_equal(out, 5);
    assert_false(matched);
    q3_stop_free(&st);

    /* Whole characters in, whole characters out, whatever the stop shares with the text. */
    const char *accents[] = {"\xc3\xa9t\xc3\xa8"};
    const char *words[] = {"caf\xc3\xa9", " \xc3\xa9", "t\xc3\xa9", " \xc3\xa9t\xc3\xa8", NULL};
    r = run_stream(accents, 1, words);
    assert_string_equal(r.text, "caf\xc3\xa9 \xc3\xa9t\xc3\xa9 ");
    assert_true(r.emits_valid_utf8);
}

static void test_edges(void **state) {
    (void)state;
    q3_stop st;
    q3_error err = {0};
    const char *empty[] = {"ok", ""};
    assert_int_equal(q3_stop_init(&st, empty, 2, &err), Q3_EINVAL);
    assert_non_null(strstr(err.msg, "stop string 1"));
    q3_stop_free(&st);

    /* No stops: everything passes straight through. */
    assert_int_equal(q3_stop_init(&st, NULL, 0, NULL), Q3_OK);
    assert_int_equal(q3_stop_max_held(&st), 0);
    char emit[16];
    size_t out;
    bool matched;
    assert_int_equal(q3_stop_feed(&st, "abc", 3, emit, 3, &out, &matched, NULL), Q3_OK);
    assert_int_equal(out, 3);
    assert_int_equal(q3_stop_feed(&st, NULL, 0, NULL, 0, &out, &matched, NULL), Q3_OK);
    assert_int_equal(out, 0);
    q3_stop_free(&st);

    /* A buffer too small is refused, and nothing is lost. */
    const char *stops[] = {"xyz"};
    assert_int_equal(q3_stop_init(&st, stops, 1, NULL), Q3_OK);
    assert_int_equal(q3_stop_max_held(&st), 2);
    assert_int_equal(q3_stop_feed(&st, "abxy", 4, emit, sizeof emit, &out, &matched, NULL), Q3_OK);
    assert_int_equal(out, 2);
    assert_int_equal(q3_stop_feed(&st, "abcd", 4, emit, 5, &out, &matched, &err), Q3_EINVAL);
    assert_int_equal(q3_stop_flush(&st, emit, 1, &out, &err), Q3_EINVAL);
    assert_int_equal(q3_stop_flush(&st, emit, 2, &out, &err), Q3_OK);
    assert_int_equal(out, 2);
    assert_memory_equal(emit, "xy", 2);
    /* After a match, nothing more comes out, not even at the end. */
    assert_int_equal(q3_stop_feed(&st, "1xyz2", 5, emit, sizeof emit, &out, &matched, NULL), Q3_OK);
    assert_true(matched);
    assert_int_equal(out, 1);
    assert_int_equal(q3_stop_feed(&st, "more", 4, emit, sizeof emit, &out, &matched, NULL), Q3_OK);
    assert_true(matched);
    assert_int_equal(out, 0);
    assert_int_equal(q3_stop_flush(&st, emit, sizeof emit, &out, NULL), Q3_OK);
    assert_int_equal(out, 0);
    q3_stop_free(&st);
}

/* ---- random texts against a brute-force reference ---- */

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;

static unsigned next_random(unsigned bound) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % bound);
}

/* Over the whole text: the first byte where some stop string ends; of those ending there, the
 * longest. Returns its index and sets *start, or -1. */
static int reference_match(const char *text, size_t n, const char *const *stops, int n_stops,
                           size_t *start) {
    for (size_t end = 1; end <= n; end++) {
        int best = -1;
        for (int i = 0; i < n_stops; i++) {
            size_t len = strlen(stops[i]);
            if (len <= end && memcmp(text + end - len, stops[i], len) == 0 &&
                (best < 0 || len > strlen(stops[best])))
                best = i;
        }
        if (best >= 0) {
            *start = end - strlen(stops[best]);
            return best;
        }
    }
    return -1;
}

static void random_string(char *out, size_t len, const char *alphabet) {
    size_t k = strlen(alphabet);
    for (size_t i = 0; i < len; i++) out[i] = alphabet[next_random((unsigned)k)];
    out[len] = 0;
}

static void test_random_against_reference(void **state) {
    (void)state;
    for (int round = 0; round < 3000; round++) {
        char stop_text[3][8], text[200];
        const char *stops[3];
        int n_stops = 1 + (int)next_random(3);
        for (int i = 0; i < n_stops; i++) {
            random_string(stop_text[i], 1 + next_random(5), "abc");
            stops[i] = stop_text[i];
        }
        size_t n = next_random(120);
        random_string(text, n, "abcc");

        /* Cut the text into random pieces, some empty. */
        char piece_text[200][200];
        const char *pieces[201];
        int n_pieces = 0;
        for (size_t at = 0; at < n || n_pieces == 0;) {
            size_t len = n_pieces == 199 ? n - at : next_random(6);
            if (len > n - at) len = n - at;
            memcpy(piece_text[n_pieces], text + at, len);
            piece_text[n_pieces][len] = 0;
            pieces[n_pieces] = piece_text[n_pieces];
            n_pieces++;
            at += len;
            if (n == 0) break;
        }
        pieces[n_pieces] = NULL;

        stream_result r = run_stream(stops, n_stops, pieces);
        size_t start = 0;
        int want = reference_match(text, n, stops, n_stops, &start);
        if (want < 0) start = n;
        if (r.stop_index != want || r.len != start || memcmp(r.text, text, start) != 0)
            fail_msg("round %d: text \"%s\": got %d \"%s\", want %d at %zu", round, text,
                     r.stop_index, r.text, want, start);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_split_across_pieces),
        cmocka_unit_test(test_abandoned_prefix_is_emitted),
        cmocka_unit_test(test_multiple_stops),
        cmocka_unit_test(test_stop_at_start),
        cmocka_unit_test(test_utf8_around_stop),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_random_against_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
