/* The OpenAI-compatible HTTP server: what `q3moe serve` starts and stops.
 *
 * The server answers on its own threads (one per connection, libmicrohttpd's internal polling)
 * and hands every completion to an engine that the caller made and keeps: the caller loads the
 * model and tokenizer, starts the engine, starts the server, waits for a signal, stops the server
 * and only then frees the engine. Endpoints, limits and error shapes are described in http.c
 * (plumbing) and openai.c (the API). */
#ifndef Q3_SERVER_H
#define Q3_SERVER_H

#include "engine/engine.h"
#include "text/sampler.h"
#include "text/tokenizer.h"

typedef struct q3_server_options {
    const char *host;        /* address to listen on: "127.0.0.1", "0.0.0.0", "::1", a name */
    int port;                /* 0: any free port (q3_server_port says which) */
    const char *api_key;     /* NULL: no authentication */
    size_t max_body;         /* request bodies above it are answered 413 */
    int max_connections;     /* open connections beyond it are answered 503 (but /health, /metrics) */
    double header_timeout_s; /* a connection's request head must arrive within it (408) */
    const char *cors_origin; /* NULL: no CORS headers; else Access-Control-Allow-Origin's value */
    double timeout_s;        /* a completion's wall-clock budget; 0: none (see openai.c) */
    const char *model_name;  /* the id /v1/models lists and requests must name */
    /* What the engine was started with, for answers that depend on it. */
    int max_context;         /* prompt + completion tokens of one request */
    int cache_tokens;        /* KV cache tokens: a prompt must fit in them */
    q3_sampling sampling;    /* the defaults that a request's fields override */
} q3_server_options;

typedef struct q3_server q3_server;

/* Listening on 127.0.0.1:8080, no key, 8 MiB bodies, 64 connections, 10 s for a request head, no
 * CORS, no timeout. Cannot fail. */
q3_server_options q3_server_defaults(void);

/* Starts listening. The engine and tokenizer must outlive the server. Q3_EIO when the address
 * cannot be bound. */
q3_status q3_server_start(q3_server **out, q3_engine *en, const q3_tokenizer *tok,
                          const q3_server_options *o, q3_error *e);
/* The port it listens on; cannot fail. */
int q3_server_port(const q3_server *s);
/* Ends every request still running (their sequences are cancelled), closes every connection and
 * frees the server. Cannot fail. */
void q3_server_stop(q3_server *s);

#endif
