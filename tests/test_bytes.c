/* Tests of the shared byte buffer and UTF-8 decoder (base/buf.h, base/utf8.h) against known
 * answers: the Unicode standard's table of well-formed byte sequences and its practice of one
 * U+FFFD per maximal subpart of an ill-formed one (the same answers Python's bytes.decode gives
 * with errors="replace"), and the buffer's sticky failure and size limit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/utf8.h"

typedef struct scan_case {
    const char *bytes;
    q3_utf8_verdict verdict;
    size_t len;
} scan_case;

static void test_scan_known_answers(void **state) {
    (void)state;
    static const scan_case CASES[] = {
        {"A", Q3_UTF8_OK, 1},
        {"\xC2\x80", Q3_UTF8_OK, 2},          /* U+0080, the first two-byte character */
        {"\xE2\x82\xAC", Q3_UTF8_OK, 3},      /* U+20AC */
        {"\xEF\xBF\xBF", Q3_UTF8_OK, 3},      /* U+FFFF */
        {"\xF0\x9F\x98\x80", Q3_UTF8_OK, 4},  /* U+1F600 */
        {"\xF4\x8F\xBF\xBF", Q3_UTF8_OK, 4},  /* U+10FFFF, the last */
        {"\x80", Q3_UTF8_BAD, 1},             /* a lone continuation byte */
        {"\xC0\xAF", Q3_UTF8_BAD, 1},         /* overlong '/': C0 never begins a character */
        {"\xE0\x80\xAF", Q3_UTF8_BAD, 1},     /* overlong three-byte form */
        {"\xED\xA0\x80", Q3_UTF8_BAD, 1},     /* U+D800, a surrogate */
        {"\xF4\x90\x80\x80", Q3_UTF8_BAD, 1}, /* past U+10FFFF */
        {"\xF5\x80\x80\x80", Q3_UTF8_BAD, 1},
        {"\xE2\x82" "A", Q3_UTF8_BAD, 2},     /* cut short by an ASCII byte: one U+FFFD for E2 82 */
        {"\xF0\x9F\x98" "A", Q3_UTF8_BAD, 3},
        {"\xE2\x82", Q3_UTF8_SHORT, 2},       /* the text ends inside a valid beginning */
        {"\xF0\x9F", Q3_UTF8_SHORT, 2},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        size_t len = 99;
        q3_utf8_verdict v = q3_utf8_scan(CASES[i].bytes, strlen(CASES[i].bytes), &len);
        if (v != CASES[i].verdict || len != CASES[i].len)
            fail_msg("case %zu: verdict %d len %zu, want %d %zu", i, v, len, CASES[i].verdict, CASES[i].len);
    }
}

static void test_walk_and_count(void **state) {
    (void)state;
    const char *s = "a\xE2\x82\xAC\xFF" "b\xF0\x9F\x98\x80";
    size_t n = strlen(s), i = 0;
    assert_int_equal(q3_utf8_next(s, n, &i), 'a');
    assert_int_equal(q3_utf8_next(s, n, &i), 0x20AC);
    assert_int_equal(q3_utf8_next(s, n, &i), 0xFF); /* a stray byte reads as itself */
    assert_int_equal(q3_utf8_next(s, n, &i), 'b');
    assert_int_equal(q3_utf8_next(s, n, &i), 0x1F600);
    assert_int_equal(i, n);
    assert_int_equal(q3_utf8_count(s, n), 5);
    assert_int_equal(q3_utf8_invalid_at(s, n), 4);
    assert_int_equal(q3_utf8_invalid_at("ok \xE2\x82\xAC", 6), 6);
    assert_int_equal(q3_utf8_invalid_at("ok \xE2\x82", 5), 3);
}

static void test_encode_round_trips(void **state) {
    (void)state;
    static const unsigned POINTS[] = {0, 0x41, 0x7F, 0x80, 0x7FF, 0x800, 0x20AC, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF};
    static const size_t LENGTHS[] = {1, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4};
    for (size_t k = 0; k < sizeof POINTS / sizeof POINTS[0]; k++) {
        char u[4];
        size_t n = q3_utf8_encode(POINTS[k], u), i = 0;
        assert_int_equal(n, LENGTHS[k]);
        assert_int_equal(q3_utf8_next(u, n, &i), (int)POINTS[k]);
        assert_int_equal(i, n);
    }
    char euro[4];
    assert_int_equal(q3_utf8_encode(0x20AC, euro), 3);
    assert_memory_equal(euro, "\xE2\x82\xAC", 3);
}

static void test_buffer_builds_and_hands_over(void **state) {
    (void)state;
    q3_buf b = {0};
    char *empty = q3_buf_take(&b);
    assert_string_equal(empty, "");
    free(empty);
    q3_buf_puts(&b, "x=");
    q3_buf_printf(&b, "%d;%s", 42, "long enough to pass the first allocation of sixty-four bytes......");
    q3_buf_putc(&b, '!');
    q3_buf_put_utf8(&b, 0x20AC);
    assert_false(b.failed);
    assert_int_equal(b.len, strlen(b.data));
    char *s = q3_buf_take(&b);
    assert_string_equal(s, "x=42;long enough to pass the first allocation of sixty-four bytes......!\xE2\x82\xAC");
    assert_null(b.data);
    free(s);
}

static void test_limit_sticks(void **state) {
    (void)state;
    q3_buf b = {.limit = 8};
    q3_buf_puts(&b, "12345678");
    assert_false(b.failed);
    q3_buf_putc(&b, '9'); /* one past the limit: refused, and every later append too */
    assert_true(b.failed && b.over_limit);
    q3_buf_puts(&b, "");
    assert_int_equal(b.len, 8);
    assert_null(q3_buf_take(&b));
    assert_null(b.data);
    assert_int_equal(b.limit, 8);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_known_answers),
        cmocka_unit_test(test_walk_and_count),
        cmocka_unit_test(test_encode_round_trips),
        cmocka_unit_test(test_buffer_builds_and_hands_over),
        cmocka_unit_test(test_limit_sticks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
