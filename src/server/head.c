/* The request-head checker (see head.h). It re-reads the head from its first byte on every call,
 * which costs nothing next to a network round trip for heads of a few KiB, and keeps it free of
 * state: whole lines are judged as soon as they arrive, the end of the head settles the rest. */
#include "server/head.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* RFC 9110's tchar: the characters of a method or a field name. */
static bool is_tchar(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static head_info refuse(head_info h, int status, const char *code, const char *message) {
    h.verdict = HEAD_BAD;
    h.status = status;
    h.code = code;
    snprintf(h.message, sizeof h.message, "%s", message);
    return h;
}

/* The line starting at p: its length without the line end, and where the next line starts;
 * false when no line end has arrived yet. */
static bool next_line(const char *p, const char *end, size_t *len, const char **next) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return false;
    *len = (size_t)(nl - p) - (nl > p && nl[-1] == '\r');
    *next = nl + 1;
    return true;
}

/* "METHOD SP TARGET SP HTTP/d.d". */
static head_info request_line(head_info h, const char *s, size_t n, size_t target_limit) {
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i])) i++;
    if (i == 0 || i == n || s[i] != ' ') return refuse(h, 400, "malformed_request", "the request line is not METHOD TARGET HTTP/1.1");
    snprintf(h.method, sizeof h.method, "%.*s", (int)i, s);
    size_t t0 = ++i;
    while (i < n && (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7F) i++;
    size_t target = i - t0, query = t0;
    while (query < i && s[query] != '?') query++;
    snprintf(h.path, sizeof h.path, "%.*s", (int)(query - t0), s + t0);
    h.has_path = true;
    if (target > target_limit) return refuse(h, 414, "uri_too_long", "the request target is too long");
    if (target == 0 || i == n || s[i] != ' ') return refuse(h, 400, "malformed_request", "the request line is not METHOD TARGET HTTP/1.1");
    const char *v = s + i + 1;
    size_t vn = n - i - 1;
    if (vn != 8 || strncmp(v, "HTTP/", 5) || v[6] != '.' || v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9')
        return refuse(h, 400, "malformed_request", "the request line does not end in an HTTP version");
    if (v[5] != '1') return refuse(h, 505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served");
    return h;
}

/* Digits only, at most 18 of them: every value fits a long long and no sign or exponent slips by. */
static bool parse_length(const char *s, size_t n, long long *out) {
    if (n == 0 || n > 18) return false;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

typedef struct field_counts {
    int content_length, transfer_encoding;
} field_counts;

/* "name: value", with the framing fields noted. */
static head_info header_line(head_info h, const char *s, size_t n, field_counts *seen) {
    if (s[0] == ' ' || s[0] == '\t') return refuse(h, 400, "malformed_header", "folded header lines are not accepted");
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i])) i++;
    if (i == 0 || i == n || s[i] != ':') return refuse(h, 400, "malformed_header", "a header line is not name: value");
    size_t name = i++;
    for (size_t j = i; j < n; j++)
        if (((unsigned char)s[j] < 0x20 && s[j] != '\t') || s[j] == 0x7F)
            return refuse(h, 400, "malformed_header", "a header value holds a control character");
    while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
    while (n > i && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (name == 14 && !strncasecmp(s, "Content-Length", 14)) {
        seen->content_length++;
        if (!parse_length(s + i, n - i, &h.content_length))
            return refuse(h, 400, "invalid_content_length", "Content-Length must be a decimal number of bytes");
    } else if (name == 17 && !strncasecmp(s, "Transfer-Encoding", 17)) {
        seen->transfer_encoding++;
        if (n - i != 7 || strncasecmp(s + i, "chunked", 7))
            return refuse(h, 501, "unsupported_transfer_encoding", "the only Transfer-Encoding served is chunked");
        h.chunked = true;
    }
    return h;
}

static head_info framing(head_info h, const field_counts *seen) {
    if (seen->content_length > 1) return refuse(h, 400, "ambiguous_length", "the request has more than one Content-Length");
    if (seen->transfer_encoding > 1)
        return refuse(h, 400, "ambiguous_length", "the request has more than one Transfer-Encoding");
    if (seen->content_length && seen->transfer_encoding)
        return refuse(h, 400, "ambiguous_length", "the request has both Content-Length and Transfer-Encoding");
    return h;
}

head_info head_check(const char *buf, size_t len, size_t target_limit, size_t head_limit) {
    head_info h = {.verdict = HEAD_INCOMPLETE, .content_length = -1};
    const char *p = buf, *end = buf + len, *next;
    size_t n;
    while (p < end && (*p == '\r' || *p == '\n')) p++; /* empty lines before the request line (RFC 9112 2.2) */
    if (!next_line(p, end, &n, &next)) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        if (sp && (size_t)(end - sp - 1) > target_limit) return refuse(h, 414, "uri_too_long", "the request target is too long");
        return len >= head_limit ? refuse(h, 431, "header_too_large", "the request head is too large") : h;
    }
    if ((h = request_line(h, p, n, target_limit)).verdict == HEAD_BAD) return h;
    field_counts seen = {0};
    for (p = next; next_line(p, end, &n, &next); p = next) {
        if ((size_t)(next - buf) > head_limit) return refuse(h, 431, "header_too_large", "the request head is too large");
        if (n == 0) {
            h = framing(h, &seen);
            if (h.verdict == HEAD_BAD) return h;
            h.verdict = HEAD_OK;
            h.head_len = (size_t)(next - buf);
            return h;
        }
        if ((h = header_line(h, p, n, &seen)).verdict == HEAD_BAD) return h;
    }
    return len >= head_limit ? refuse(h, 431, "header_too_large", "the request head is too large") : h;
}
