/* The request-head checker that guards libmicrohttpd (src/server/head.c): known heads in, the
 * verdict, status and framing out. The cases are RFC 9112's (request line, field syntax, message
 * body length section 6.3) and the ones libmicrohttpd 0.9.75 mishandles (gate.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "server/head.h"

#define TARGET 64
#define HEAD 256

static head_info check(const char *s) { return head_check(s, strlen(s), TARGET, HEAD); }

static void expect_bad(const char *s, int status, const char *code) {
    head_info h = check(s);
    if (h.verdict != HEAD_BAD) fail_msg("accepted or waited for: %s", s);
    assert_int_equal(h.status, status);
    assert_string_equal(h.code, code);
}

static void test_accepts_plain_requests(void **state) {
    (void)state;
    head_info h = check("POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n{\"a\": 1}");
    assert_int_equal(h.verdict, HEAD_OK);
    assert_string_equal(h.method, "POST");
    assert_string_equal(h.path, "/v1/chat/completions");
    assert_int_equal(h.content_length, 12);
    assert_false(h.chunked);
    assert_int_equal(h.head_len, strlen("POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n"));
    h = check("GET /health HTTP/1.0\n\n"); /* bare LF, HTTP/1.0, no fields */
    assert_int_equal(h.verdict, HEAD_OK);
    assert_int_equal(h.content_length, -1);
    h = check("\r\nPOST /x HTTP/1.1\r\ntransfer-encoding:  Chunked \r\n\r\n"); /* a leading empty line, any case */
    assert_int_equal(h.verdict, HEAD_OK);
    assert_true(h.chunked);
    assert_int_equal(check("GET / HTTP/1.1\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\t!\r\n\r\n").verdict, HEAD_OK);
}

static void test_waits_for_the_rest(void **state) {
    (void)state;
    assert_int_equal(check("").verdict, HEAD_INCOMPLETE);
    assert_int_equal(check("GET /hea").verdict, HEAD_INCOMPLETE);
    assert_int_equal(check("GET /health HTTP/1.1\r\nHost: a\r\n").verdict, HEAD_INCOMPLETE);
    assert_int_equal(check("GET /health HTTP/1.1\r\nHost: a\r\n\r").verdict, HEAD_INCOMPLETE);
}

static void test_limits(void **state) {
    (void)state;
    char big[512];
    snprintf(big, sizeof big, "GET /%0*d HTTP/1.1\r\n\r\n", TARGET, 0); /* target of TARGET + 1 bytes */
    expect_bad(big, 414, "uri_too_long");
    snprintf(big, sizeof big, "GET /%0*d", TARGET + 10, 0); /* and before its line has ended */
    expect_bad(big, 414, "uri_too_long");
    snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX: %0*d\r\n\r\n", HEAD, 0);
    expect_bad(big, 431, "header_too_large");
    snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX: %0*d", HEAD, 0); /* no end yet, already too long */
    expect_bad(big, 431, "header_too_large");
}

static void test_refuses_malformed_lines(void **state) {
    (void)state;
    expect_bad("GET /health HTTP/2.0\r\n\r\n", 505, "http_version_not_supported");
    expect_bad("GET /health HTTP/0.9\r\n\r\n", 505, "http_version_not_supported");
    expect_bad("GET /health\r\n\r\n", 400, "malformed_request");
    expect_bad("GET /health HTTP/1.1 extra\r\n\r\n", 400, "malformed_request");
    expect_bad("GET  /health HTTP/1.1\r\n\r\n", 400, "malformed_request");
    expect_bad("G(T /health HTTP/1.1\r\n\r\n", 400, "malformed_request");
    expect_bad("GET /he\x01th HTTP/1.1\r\n\r\n", 400, "malformed_request");
    expect_bad("GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400, "malformed_header");
    expect_bad("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "malformed_header");
    expect_bad("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400, "malformed_header");
    expect_bad("GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400, "malformed_header");
}

/* Content-Length -1 and 1e20 are the values libmicrohttpd answers with its status line twice. */
static void test_refuses_ambiguous_framing(void **state) {
    (void)state;
    const char *bad_lengths[] = {"-1", "1e20", "+5", "0x10", "12 3", "", "1234567890123456789", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_lengths / sizeof *bad_lengths; i++) {
        char head[128];
        snprintf(head, sizeof head, "POST / HTTP/1.1\r\nContent-Length: %s\r\n\r\n", bad_lengths[i]);
        expect_bad(head, 400, "invalid_content_length");
    }
    assert_int_equal(check("POST / HTTP/1.1\r\nContent-Length: 123456789012345678\r\n\r\n").content_length,
                     123456789012345678LL);
    expect_bad("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400, "ambiguous_length");
    expect_bad("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "ambiguous_length");
    expect_bad("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n", 400, "ambiguous_length");
    expect_bad("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
               "ambiguous_length");
    expect_bad("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "unsupported_transfer_encoding");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_plain_requests), cmocka_unit_test(test_waits_for_the_rest),
        cmocka_unit_test(test_limits),                 cmocka_unit_test(test_refuses_malformed_lines),
        cmocka_unit_test(test_refuses_ambiguous_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
