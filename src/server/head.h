/* Checking an HTTP/1.x request head (request line and header fields) before libmicrohttpd sees
 * it, so that every head libmicrohttpd parses is one it accepts, and a malformed or dangerous one
 * is answered by us, in JSON (gate.c does the answering).
 *
 * What is refused, with the status a client gets:
 *   414  a request target over the target limit;
 *   431  a head over the head limit (the target within it);
 *   505  an HTTP version other than 1.x;
 *   400  a request line or header line that is not "METHOD SP TARGET SP HTTP/d.d" or
 *        "name: value" (obs-fold continuation lines included, which RFC 9112 lets a server
 *        refuse), a Content-Length that is not a plain decimal of at most 18 digits, two
 *        Content-Length fields, two Transfer-Encoding fields, or Transfer-Encoding together
 *        with Content-Length (the request-smuggling patterns of RFC 9112 section 6.3);
 *   501  a Transfer-Encoding other than "chunked".
 * Lines may end in CRLF or a bare LF, as libmicrohttpd accepts both. */
#ifndef Q3_SERVER_HEAD_H
#define Q3_SERVER_HEAD_H

#include <stdbool.h>
#include <stddef.h>

typedef enum head_verdict {
    HEAD_INCOMPLETE, /* no end of head yet, and within the limits: wait for more bytes */
    HEAD_OK,         /* a whole head, acceptable */
    HEAD_BAD,        /* refused: status, code and message say why */
} head_verdict;

typedef struct head_info {
    head_verdict verdict;
    int status;                 /* HEAD_BAD: 400, 414, 431, 501 or 505 */
    const char *code;           /* HEAD_BAD: a short machine-readable reason */
    char message[160];          /* HEAD_BAD: for people */
    char method[16];            /* HEAD_OK: the method, cut to fit */
    char path[256];             /* HEAD_OK or any verdict past the request line: the path, no query, cut to fit */
    bool has_path;
    long long content_length;   /* -1: none given */
    bool chunked;
    size_t head_len;            /* HEAD_OK: bytes up to and including the blank line */
} head_info;

/* Examines the first len bytes received on a connection. target_limit and head_limit are the
 * largest request target and whole head accepted. Cannot fail. */
head_info head_check(const char *buf, size_t len, size_t target_limit, size_t head_limit);

#endif
