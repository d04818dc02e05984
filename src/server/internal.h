/* What the server's files share: the server itself, the request a handler sees, the reply it
 * gives back, and a few small helpers for building text and JSON.
 *
 *   gate.c     the front door: listening, request heads checked before libmicrohttpd, header
 *              timeout, connection limit (head.c checks a head)
 *   http.c     libmicrohttpd plumbing: body limit, API key, CORS, routing, turning an http_reply
 *              into a response (a server-sent-event stream included)
 *   completion.c   what every API's completion shares: fields, grammars, prompt, lengths
 *   generation.c   a completion in flight: engine sequences per choice, their text split
 *   openai*.c      the OpenAI API (chat completions, completions, models, tokenize)
 *   anthropic*.c   the Anthropic Messages API
 *   responses*.c   the OpenAI Responses API
 *   job.c      one request in flight: the queue between the engine thread and the HTTP thread
 *   metrics.c  counters and histograms, written as Prometheus text
 *   text.c     a growable buffer, UTF-8 checks, JSON strings from bytes
 * Nothing outside src/server includes this. */
#ifndef Q3_SERVER_INTERNAL_H
#define Q3_SERVER_INTERNAL_H

#include <jansson.h>
#include <stdatomic.h>
#include "base/buf.h"
#include "base/utf8.h"

#include "server/metrics.h"
#include "server/server.h"

struct q3_server {
    q3_server_options o;      /* strings point into the copies below */
    char *host, *api_key, *model_name, *cors_origin;
    q3_engine *engine;
    const q3_tokenizer *tok;
    struct MHD_Daemon *daemon;
    struct gate *gate;
    int port;
    long long started;        /* unix time, the models' "created" */
    q3_metrics metrics;
    atomic_int connections;   /* open right now: in the gate or in libmicrohttpd */
    atomic_int mhd_connections; /* of those, libmicrohttpd's */
    atomic_int answers;       /* completions in flight (openai_reply.c) */
    atomic_bool stopping;     /* q3_server_stop has begun: waits end, nothing new is submitted */
};

/* ---- text helpers (text.c) ---- */

/* Appends v as compact JSON. */
void buf_put_json(q3_buf *b, const json_t *v);
/* A JSON string of n bytes; bytes that are not valid UTF-8 become U+FFFD. NULL only without
 * memory. */
json_t *json_text(const char *s, size_t n);

/* ---- requests and replies (http.c) ---- */

typedef struct http_request {
    q3_server *srv;
    const char *method, *path;
    const char *body;         /* NUL-terminated; body_len excludes the NUL */
    size_t body_len;
    int fd;                   /* the client's socket, to notice that it went away */
    bool http11;              /* HTTP/1.1: interim (1xx) responses may be sent */
} http_request;

typedef enum stream_step {
    STREAM_MORE,  /* wrote something; call again */
    STREAM_END,   /* wrote the last bytes */
    STREAM_ABORT, /* the client is gone or the server stops: close the connection */
} stream_step;

/* A body written while it is produced (server-sent events). produce runs on the connection's
 * thread and may block until it has something to write; close runs once, when the response is
 * finished with, whether the client read it all or went away. */
typedef struct http_stream {
    stream_step (*produce)(void *ctx, q3_buf *out);
    void (*close)(void *ctx);
    void *ctx;
} http_stream;

typedef struct http_reply {
    int status;
    const char *content_type;
    char *body;               /* malloc'd, handed over; or */
    const char *static_body;  /* lives forever (the chat page) */
    size_t body_len;
    http_stream stream;       /* produce set: a text/event-stream */
    int retry_after;          /* seconds, for 503; 0: no header */
    const char *allow;        /* methods, for 405 */
} http_reply;

/* An OpenAI error: {"error": {"message", "type", "param", "code"}}. */
typedef struct api_error {
    int status;
    const char *code;         /* NULL: null */
    char param[64];           /* "": null */
    char message[512];
    int retry_after;
} api_error;

/* The error body in the shape of the API that path belongs to: Anthropic's
 * {"type": "error", "error": {"type", "message"}} under /v1/messages, OpenAI's
 * {"error": {"message", "type", "param", "code"}} everywhere else. NULL only without memory. */
json_t *error_json(const char *path, const api_error *err);

/* Fills err and returns false, for `return api_fail(err, 400, NULL, "n", "n must be 1");`. */
bool api_fail(api_error *err, int status, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
http_reply reply_error(const api_error *err);
/* An error in the shape of path's API (error_json). */
http_reply reply_error_at(const char *path, const api_error *err);
/* Takes v (its reference is stolen). */
http_reply reply_json(int status, json_t *v);
typedef enum client_state {
    CLIENT_HERE,
    CLIENT_HALF_CLOSED, /* it shut its sending side (as `nc -N` and some HTTP/1.0 clients do): it may
                         * still read, or it may have closed altogether; only a write can tell */
    CLIENT_GONE,        /* reset, or it hung up and a write since has been refused */
} client_state;

client_state http_client_state(const http_request *r);
/* Writes an interim "100 Continue" (HTTP/1.1 only; clients skip interim responses) before the
 * response has begun: a client that has closed answers it with a reset, which the next
 * http_client_state reports as CLIENT_GONE. A no-op for HTTP/1.0. */
void http_probe_client(const http_request *r);

/* ---- the endpoints ---- */

http_reply openai_chat_completions(const http_request *r);
http_reply openai_completions(const http_request *r);
http_reply openai_models(const http_request *r);
http_reply openai_tokenize(const http_request *r);
http_reply openai_detokenize(const http_request *r);
http_reply metrics_page(const http_request *r);
http_reply anthropic_messages(const http_request *r);
http_reply anthropic_count_tokens(const http_request *r);
http_reply responses_create(const http_request *r);

#endif
