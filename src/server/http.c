/* The HTTP side of the server, on libmicrohttpd: per-connection threads, the limits a public
 * endpoint needs, routing, and writing replies (JSON, the chat page, event streams).
 *
 * Threads: the gate (gate.c) owns the listening socket and hands each connection whose request
 * head it accepted to libmicrohttpd, which gives it its own thread
 * (MHD_USE_THREAD_PER_CONNECTION), so a handler may block while the engine works: a
 * non-streamed completion waits in its handler, a streamed one waits inside the content callback
 * between events. Waiting threads look at their socket every few hundred milliseconds, so a
 * client that hangs up has its sequence cancelled and its KV pages freed.
 *
 * Limits, in the order a request meets them:
 *   the gate             a malformed or ambiguous head 400/414/431/501/505, the head's time
 *                        (--header-timeout, 408), --max-connections (503; /health and /metrics
 *                        still answered), a Content-Length over --max-body (413);
 *   unknown path 404, wrong method 405 (with Allow); OPTIONS answers 204 with Allow (and the
 *                        CORS preflight headers under --cors-origin);
 *   --api-key KEY        "Authorization: Bearer KEY" (or Anthropic's "x-api-key: KEY") on every
 *                        path but /, /health and /metrics, else 401;
 *   --max-body BYTES     a larger body is answered 413;
 *   idle connections     closed after 60 s without traffic (streams send a comment every 10 s);
 *                        a body must arrive within BODY_TIMEOUT_S.
 * Every response closes its connection, so that every request passes the gate.
 * Errors are OpenAI's shape, Anthropic's under /v1/messages (error_json). */
#include <microhttpd.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "base/error.h"
#include "base/clock.h"
#include "server/chat_page.h"
#include "server/gate.h"
#include "server/internal.h"

#define IDLE_TIMEOUT_S 60
#define BODY_TIMEOUT_S 120
#define PROBE_INTERIM "HTTP/1.1 100 Continue\r\n\r\n"
#define STREAM_BLOCK 16384
#define STOP_GRACE_MS 3000   /* for requests in flight to end when the server stops */

/* ---- replies ---- */

bool api_fail(api_error *err, int status, const char *code, const char *param, const char *fmt, ...) {
    err->status = status;
    err->code = code;
    err->retry_after = 0;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return false;
}

http_reply reply_json(int status, json_t *v) {
    http_reply r = {.status = status, .content_type = "application/json"};
    q3_buf b = {0};
    if (v) buf_put_json(&b, v);
    json_decref(v);
    if (!v || b.failed) {
        q3_buf_free(&b);
        return (http_reply){.status = 500, .content_type = "application/json",
                            .static_body = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                                           "\"param\":null,\"code\":null}}"};
    }
    r.body = b.data;
    r.body_len = b.len;
    return r;
}

static bool is_anthropic_path(const char *path) { return !strncmp(path, "/v1/messages", 12); }

/* Anthropic's error types, by status (its API reference, "Errors"). */
static const char *anthropic_error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: case 529: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

json_t *error_json(const char *path, const api_error *err) {
    json_t *message = json_text(err->message, strlen(err->message));
    if (is_anthropic_path(path))
        return json_pack("{s:s, s:{s:s, s:o}}", "type", "error", "error", "type", anthropic_error_type(err->status),
                         "message", message);
    return json_pack("{s:{s:o, s:s, s:o, s:o}}", "error", "message", message, "type",
                     err->status >= 500 ? "server_error" : "invalid_request_error", "param",
                     err->param[0] ? json_string(err->param) : json_null(), "code",
                     err->code ? json_string(err->code) : json_null());
}

http_reply reply_error_at(const char *path, const api_error *err) {
    http_reply r = reply_json(err->status, error_json(path, err));
    r.retry_after = err->retry_after;
    return r;
}

http_reply reply_error(const api_error *err) { return reply_error_at("", err); }

/* A reset shows as POLLERR / POLLHUP; the peer's FIN alone as POLLRDHUP, which is also what a
 * client that only shut its sending side looks like (see http_probe_client). */
client_state http_client_state(const http_request *r) {
    struct pollfd p = {.fd = r->fd, .events = POLLRDHUP};
    if (r->fd < 0 || poll(&p, 1, 0) <= 0) return CLIENT_HERE;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) return CLIENT_GONE;
    return p.revents & POLLRDHUP ? CLIENT_HALF_CLOSED : CLIENT_HERE;
}

void http_probe_client(const http_request *r) {
    if (r->fd >= 0 && r->http11) send(r->fd, PROBE_INTERIM, sizeof PROBE_INTERIM - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* ---- the endpoints that are not the OpenAI API ---- */

static http_reply serve_page(const http_request *r) {
    (void)r;
    return (http_reply){.status = 200, .content_type = "text/html; charset=utf-8",
                        .static_body = Q3_CHAT_PAGE, .body_len = sizeof Q3_CHAT_PAGE - 1};
}

static http_reply serve_health(const http_request *r) {
    (void)r;
    return reply_json(200, json_pack("{s:s}", "status", "ok"));
}

/* ---- routing ---- */

typedef http_reply (*handler_fn)(const http_request *r);

static const struct route {
    const char *path;
    const char *method;   /* GET also answers HEAD */
    handler_fn handler;
    bool needs_key;
    bool prefix;          /* path matches paths that start with it ("/v1/models/NAME") */
} ROUTES[] = {
    {"/", "GET", serve_page, false, false},
    {"/health", "GET", serve_health, false, false},
    {"/metrics", "GET", metrics_page, false, false},
    {"/v1/models", "GET", openai_models, true, false},
    {"/v1/models/", "GET", openai_models, true, true},
    {"/v1/chat/completions", "POST", openai_chat_completions, true, false},
    {"/v1/completions", "POST", openai_completions, true, false},
    {"/v1/messages", "POST", anthropic_messages, true, false},
    {"/v1/messages/count_tokens", "POST", anthropic_count_tokens, true, false},
    {"/v1/responses", "POST", responses_create, true, false},
    {"/tokenize", "POST", openai_tokenize, true, false},
    {"/detokenize", "POST", openai_detokenize, true, false},
};

static const struct route *find_route(const char *path) {
    for (size_t i = 0; i < sizeof ROUTES / sizeof *ROUTES; i++) {
        const struct route *rt = &ROUTES[i];
        if (rt->prefix ? !strncmp(path, rt->path, strlen(rt->path)) && path[strlen(rt->path)] : !strcmp(path, rt->path))
            return rt;
    }
    return NULL;
}

static bool method_allowed(const struct route *rt, const char *method) {
    return !strcmp(method, rt->method) || (!strcmp(rt->method, "GET") && !strcmp(method, "HEAD"));
}

/* Compares in time that does not depend on where the strings differ. */
static bool same_secret(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    unsigned char diff = na != nb;
    for (size_t i = 0; i < na; i++) diff |= (unsigned char)a[i] ^ (unsigned char)b[i % (nb ? nb : 1)];
    return diff == 0;
}

/* OpenAI's clients send "Authorization: Bearer KEY", Anthropic's "x-api-key: KEY". */
static bool authorized(q3_server *srv, struct MHD_Connection *c) {
    if (!srv->api_key) return true;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
    return (auth && !strncasecmp(auth, "Bearer ", 7) && same_secret(auth + 7, srv->api_key)) ||
           (key && same_secret(key, srv->api_key));
}

/* ---- writing replies ---- */

/* A streamed reply's state on its connection's thread. */
typedef struct stream_state {
    http_stream src;
    q3_buf out;
    size_t sent;
    stream_step last;
} stream_state;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_state *s = cls;
    while (s->sent == s->out.len) {
        if (s->last != STREAM_MORE) return s->last == STREAM_END ? MHD_CONTENT_READER_END_OF_STREAM
                                                                 : MHD_CONTENT_READER_END_WITH_ERROR;
        s->out.len = s->sent = 0;
        s->last = s->src.produce(s->src.ctx, &s->out);
        if (s->out.failed) s->last = STREAM_ABORT;
        if (s->last == STREAM_ABORT) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = s->out.len - s->sent < max ? s->out.len - s->sent : max;
    memcpy(buf, s->out.data + s->sent, n);
    s->sent += n;
    return (ssize_t)n;
}

static void stream_done(void *cls) {
    stream_state *s = cls;
    s->src.close(s->src.ctx);
    q3_buf_free(&s->out);
    free(s);
}

static void add_cors(const q3_server *srv, struct MHD_Response *resp) {
    if (!srv->o.cors_origin) return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", srv->o.cors_origin);
    MHD_add_response_header(resp, "Vary", "Origin");
}

static struct MHD_Response *make_response(http_reply *r) {
    struct MHD_Response *resp;
    if (r->stream.produce) {
        stream_state *s = calloc(1, sizeof *s);
        if (!s) {
            r->stream.close(r->stream.ctx);
            return NULL;
        }
        s->src = r->stream;
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, s, stream_done);
        if (!resp) {
            stream_done(s);
            return NULL;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    } else if (r->body) {
        resp = MHD_create_response_from_buffer(r->body_len, r->body, MHD_RESPMEM_MUST_FREE);
        if (!resp) free(r->body);
    } else {
        const char *b = r->static_body ? r->static_body : "";
        size_t n = r->static_body ? (r->body_len ? r->body_len : strlen(b)) : 0;
        resp = MHD_create_response_from_buffer(n, (void *)b, MHD_RESPMEM_PERSISTENT);
    }
    if (!resp) return NULL;
    if (r->content_type) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    if (r->allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->retry_after > 0) {
        char s[16];
        snprintf(s, sizeof s, "%d", r->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, s);
    }
    return resp;
}

/* Every response closes its connection, so the next request comes through the gate (gate.h). */
static enum MHD_Result send_reply(q3_server *srv, struct MHD_Connection *c, http_reply r) {
    struct MHD_Response *resp = make_response(&r);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    add_cors(srv, resp);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)r.status, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES) metrics_count_response(&srv->metrics, r.status);
    return ok;
}

static enum MHD_Result send_error(q3_server *srv, struct MHD_Connection *c, const char *path, int status,
                                  const char *code, const char *message) {
    api_error err;
    api_fail(&err, status, code, NULL, "%s", message);
    if (status == 503) err.retry_after = 1;
    return send_reply(srv, c, reply_error_at(path, &err));
}

/* OPTIONS: what the path allows, and the CORS preflight answer when --cors-origin is set. */
static enum MHD_Result send_options(q3_server *srv, struct MHD_Connection *c, const struct route *rt) {
    const char *allow = !strcmp(rt->method, "GET") ? "GET, HEAD, OPTIONS" : "POST, OPTIONS";
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (srv->o.cors_origin) {
        const char *asked = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
        add_cors(srv, resp);
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", allow);
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                asked ? asked : "Authorization, Content-Type, x-api-key, anthropic-version");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
    }
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_NO_CONTENT, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES) metrics_count_response(&srv->metrics, MHD_HTTP_NO_CONTENT);
    return ok;
}

/* ---- one request ---- */

/* What a request carries between libmicrohttpd's calls: its route and its body so far. */
typedef struct request_state {
    const struct route *route;
    q3_buf body;
    bool too_big;
    bool answered;  /* a reply went out before the body: whatever still arrives is dropped */
    bool replied;   /* a reply of ours was queued (else libmicrohttpd answered: on_completed counts it) */
    double started; /* monotonic seconds, for the body's time */
} request_state;

/* The first call, with the headers only: answers whatever can be answered without the body.
 * Returns true when it answered (*ok: whether the reply was queued); the request is then over. */
static bool answer_from_headers(q3_server *srv, struct MHD_Connection *c, const char *url, const char *method,
                                request_state *rs, enum MHD_Result *ok) {
    char msg[512];
    rs->route = find_route(url);
    if (atomic_load(&srv->stopping)) {
        *ok = send_error(srv, c, url, 503, "shutting_down", "the server is stopping");
    } else if (!rs->route) {
        snprintf(msg, sizeof msg, "Invalid URL (%s %s)", method, url);
        *ok = send_error(srv, c, url, 404, "not_found", msg);
    } else if (!strcmp(method, "OPTIONS")) {
        *ok = send_options(srv, c, rs->route);
    } else if (!method_allowed(rs->route, method)) {
        api_error err;
        api_fail(&err, 405, "method_not_allowed", NULL, "method %s is not allowed on %s; use %s", method, url,
                 rs->route->method);
        http_reply r = reply_error_at(url, &err);
        r.allow = rs->route->method;
        *ok = send_reply(srv, c, r);
    } else if (rs->route->needs_key && !authorized(srv, c)) {
        *ok = send_error(srv, c, url, 401, "invalid_api_key",
                         "a valid API key is required (Authorization: Bearer KEY, or x-api-key: KEY)");
    } else {
        /* The gate has checked that Content-Length is one plain number. */
        const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (!length || strtoull(length, NULL, 10) <= srv->o.max_body) return false;
        snprintf(msg, sizeof msg, "the request body is over the limit of %zu bytes", srv->o.max_body);
        *ok = send_error(srv, c, url, 413, "request_too_large", msg);
    }
    return true;
}

/* libmicrohttpd calls this with the headers, then with each piece of the body, then once more with
 * nothing: that last call runs the handler. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state) {
    q3_server *srv = cls;
    request_state *rs = *state;
    if (!rs) {
        if (!(rs = calloc(1, sizeof *rs))) return MHD_NO;
        *state = rs;
        rs->started = q3_now_s();
        enum MHD_Result ok = MHD_YES;
        rs->answered = rs->replied = answer_from_headers(srv, c, url, method, rs, &ok);
        return ok;
    }
    if (rs->answered) {
        *upload_size = 0;
        return MHD_YES;
    }
    /* A body trickling in a byte at a time keeps a connection busy for ever: it gets a bounded time.
     * libmicrohttpd only lets a response be queued before or after the body, so it is cut off. */
    if (q3_now_s() - rs->started > BODY_TIMEOUT_S) return MHD_NO;
    if (*upload_size) {
        if (rs->body.len + *upload_size > srv->o.max_body) rs->too_big = true;
        else q3_buf_put(&rs->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    rs->replied = true;
    if (rs->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is over the limit of %zu bytes", srv->o.max_body);
        return send_error(srv, c, url, 413, "request_too_large", msg);
    }
    if (rs->body.failed) return send_error(srv, c, url, 500, NULL, "out of memory");
    const union MHD_ConnectionInfo *fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    http_request req = {.srv = srv, .method = method, .path = url, .body = rs->body.data ? rs->body.data : "",
                        .body_len = rs->body.len, .fd = fd ? fd->connect_fd : -1,
                        .http11 = !strcmp(version, MHD_HTTP_VERSION_1_1)};
    return send_reply(srv, c, rs->route->handler(&req));
}

/* A request that ends without a reply of ours was answered by libmicrohttpd itself (a malformed
 * chunked body: see gate.h), or its client went away: the status it queued, if any, is counted. */
static void on_completed(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode why) {
    (void)why;
    q3_server *srv = cls;
    request_state *rs = *state;
    if (!rs) return;
    const union MHD_ConnectionInfo *status = MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
    if (!rs->replied && status && status->http_status) metrics_count_response(&srv->metrics, (int)status->http_status);
    q3_buf_free(&rs->body);
    free(rs);
    *state = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode what) {
    (void)c, (void)socket_context;
    q3_server *srv = cls;
    int delta = what == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1;
    atomic_fetch_add(&srv->connections, delta);
    atomic_fetch_add(&srv->mhd_connections, delta);
}

static void on_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    fprintf(stderr, "q3moe serve: http: ");
    vfprintf(stderr, fmt, ap);
}

/* ---- starting and stopping ---- */

q3_server_options q3_server_defaults(void) {
    return (q3_server_options){.host = "127.0.0.1", .port = 8080, .max_body = 8u << 20, .max_connections = 64,
                               .header_timeout_s = 10, .model_name = "q3moe", .max_context = 4096,
                               .cache_tokens = 16384, .sampling = q3_sampling_defaults()};
}

static void server_free(q3_server *s) {
    metrics_destroy(&s->metrics);
    free(s->host);
    free(s->api_key);
    free(s->model_name);
    free(s->cors_origin);
    free(s);
}

/* The options, with copies of their strings. */
static q3_server *server_new(const q3_server_options *o) {
    q3_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    metrics_init(&s->metrics);
    s->o = *o;
    bool key = o->api_key && *o->api_key, cors = o->cors_origin && *o->cors_origin;
    s->host = strdup(o->host);
    s->model_name = strdup(o->model_name);
    s->api_key = key ? strdup(o->api_key) : NULL;
    s->cors_origin = cors ? strdup(o->cors_origin) : NULL;
    if (!s->host || !s->model_name || (key && !s->api_key) || (cors && !s->cors_origin)) {
        server_free(s);
        return NULL;
    }
    s->o.host = s->host;
    s->o.api_key = s->api_key;
    s->o.model_name = s->model_name;
    s->o.cors_origin = s->cors_origin;
    return s;
}

q3_status q3_server_start(q3_server **out, q3_engine *en, const q3_tokenizer *tok, const q3_server_options *o,
                          q3_error *e) {
    *out = NULL;
    q3_server *s = server_new(o);
    if (!s) return q3_fail(e, Q3_ENOMEM, "out of memory");
    s->engine = en;
    s->tok = tok;
    s->started = (long long)time(NULL);
    /* No listening socket of its own: connections come from the gate (MHD_add_connection), which
     * needs the inter-thread channel to wake the daemon. The limit leaves room for the gate's
     * reserve for /health and /metrics. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO |
                     MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s,
        MHD_OPTION_EXTERNAL_LOGGER, on_log, s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(o->max_connections + GATE_HEALTH_RESERVE),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_END);
    if (!s->daemon) {
        server_free(s);
        return q3_fail(e, Q3_EIO, "cannot start the HTTP daemon (libmicrohttpd)");
    }
    q3_status st = gate_start(&s->gate, s, e);
    if (st) {
        MHD_stop_daemon(s->daemon);
        server_free(s);
        return st;
    }
    s->port = gate_port(s->gate);
    *out = s;
    return Q3_OK;
}

int q3_server_port(const q3_server *s) { return s->port; }

void q3_server_stop(q3_server *s) {
    if (!s) return;
    /* Completions in flight see the flag within a poll interval and cancel their sequences; the
     * engine confirms at its next step and the replies end properly (finish_reason "abort").
     * They get a few seconds for that before the daemon closes every connection and joins its
     * threads. New requests are answered 503 meanwhile. */
    atomic_store(&s->stopping, true);
    for (int waited_ms = 0; atomic_load(&s->answers) > 0 && waited_ms < STOP_GRACE_MS; waited_ms += 10)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    gate_stop(s->gate);
    MHD_stop_daemon(s->daemon);
    server_free(s);
}
