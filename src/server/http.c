/* The HTTP side of the server, on libmicrohttpd: listening, per-connection threads, the limits a
 * public endpoint needs, routing, and writing replies (JSON, the chat page, event streams).
 *
 * Threads: libmicrohttpd's internal polling thread accepts connections and gives each its own
 * thread (MHD_USE_THREAD_PER_CONNECTION), so a handler may block while the engine works: a
 * non-streamed completion waits in its handler, a streamed one waits inside the content callback
 * between events. Waiting threads look at their socket every few hundred milliseconds, so a
 * client that hangs up has its sequence cancelled and its KV pages freed.
 *
 * Limits, in the order a request meets them:
 *   --max-connections N  the N+1-th open connection is answered 503 (JSON, Connection: close);
 *                        libmicrohttpd itself refuses connections only past N + 32 (threads);
 *   unknown path 404, wrong method 405 (with Allow);
 *   --api-key KEY        "Authorization: Bearer KEY" on every path but /, /health and /metrics,
 *                        else 401;
 *   --max-body BYTES     a larger Content-Length, or body, is answered 413;
 *   idle connections     closed after 60 s without traffic (streams send a comment every 10 s).
 * Errors are OpenAI's shape everywhere: {"error": {"message", "type", "param", "code"}}. */
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "base/error.h"
#include "server/chat_page.h"
#include "server/internal.h"

#define IDLE_TIMEOUT_S 60
#define EXTRA_CONNECTIONS 32 /* answered 503 beyond --max-connections before MHD refuses */
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
    sbuf b = {0};
    if (v) sbuf_put_json(&b, v);
    json_decref(v);
    if (!v || b.failed) {
        sbuf_free(&b);
        return (http_reply){.status = 500, .content_type = "application/json",
                            .static_body = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                                           "\"param\":null,\"code\":null}}"};
    }
    r.body = b.data;
    r.body_len = b.len;
    return r;
}

http_reply reply_error(const api_error *err) {
    json_t *e = json_pack("{s:o, s:s, s:o, s:o}", "message", json_text(err->message, strlen(err->message)),
                          "type", err->status >= 500 ? "server_error" : "invalid_request_error",
                          "param", err->param[0] ? json_string(err->param) : json_null(),
                          "code", err->code ? json_string(err->code) : json_null());
    http_reply r = reply_json(err->status, e ? json_pack("{s:o}", "error", e) : NULL);
    r.retry_after = err->retry_after;
    return r;
}

/* A hung-up peer shows as POLLRDHUP (its FIN arrived) or an error. A client that shuts down only
 * its sending side after the request would read as gone too; HTTP clients do not do that. */
bool http_client_gone(const http_request *r) {
    struct pollfd p = {.fd = r->fd, .events = POLLRDHUP};
    return r->fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
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

static bool authorized(q3_server *srv, struct MHD_Connection *c) {
    if (!srv->api_key) return true;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    return auth && !strncasecmp(auth, "Bearer ", 7) && same_secret(auth + 7, srv->api_key);
}

/* ---- writing replies ---- */

/* A streamed reply's state on its connection's thread. */
typedef struct stream_state {
    http_stream src;
    sbuf out;
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
    sbuf_free(&s->out);
    free(s);
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

static enum MHD_Result send_reply(q3_server *srv, struct MHD_Connection *c, http_reply r, bool close) {
    struct MHD_Response *resp = make_response(&r);
    if (!resp) return MHD_NO;
    if (close) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)r.status, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES) metrics_count_response(&srv->metrics, r.status);
    return ok;
}

static enum MHD_Result send_error(q3_server *srv, struct MHD_Connection *c, int status, const char *code,
                                  const char *message, bool close) {
    api_error err;
    api_fail(&err, status, code, NULL, "%s", message);
    if (status == 503) err.retry_after = 1;
    return send_reply(srv, c, reply_error(&err), close);
}

/* ---- one request ---- */

/* What a request carries between libmicrohttpd's calls: its route and its body so far. */
typedef struct request_state {
    const struct route *route;
    sbuf body;
    bool too_big;
    bool answered;  /* a reply went out before the body: whatever still arrives is dropped */
} request_state;

static void *OVER_LIMIT = &OVER_LIMIT; /* a connection's socket context when it is one too many */

/* The first call, with the headers only: answers whatever can be answered without the body.
 * Returns true when it answered (*ok: whether the reply was queued); the request is then over. */
static bool answer_from_headers(q3_server *srv, struct MHD_Connection *c, const char *url, const char *method,
                                request_state *rs, enum MHD_Result *ok) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    char msg[512];
    rs->route = find_route(url);
    if (ci && ci->socket_context == OVER_LIMIT) {
        *ok = send_error(srv, c, 503, "too_many_connections", "too many open connections; try again shortly", true);
    } else if (atomic_load(&srv->stopping)) {
        *ok = send_error(srv, c, 503, "shutting_down", "the server is stopping", true);
    } else if (!rs->route) {
        snprintf(msg, sizeof msg, "Invalid URL (%s %s)", method, url);
        *ok = send_error(srv, c, 404, "not_found", msg, false);
    } else if (!method_allowed(rs->route, method)) {
        api_error err;
        api_fail(&err, 405, "method_not_allowed", NULL, "method %s is not allowed on %s; use %s", method, url,
                 rs->route->method);
        http_reply r = reply_error(&err);
        r.allow = rs->route->method;
        *ok = send_reply(srv, c, r, false);
    } else if (rs->route->needs_key && !authorized(srv, c)) {
        *ok = send_error(srv, c, 401, "invalid_api_key", "a valid API key is required (Authorization: Bearer KEY)",
                         false);
    } else {
        const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (!length || strtoull(length, NULL, 10) <= srv->o.max_body) return false;
        snprintf(msg, sizeof msg, "the request body is over the limit of %zu bytes", srv->o.max_body);
        *ok = send_error(srv, c, 413, "request_too_large", msg, true);
    }
    return true;
}

/* libmicrohttpd calls this with the headers, then with each piece of the body, then once more with
 * nothing: that last call runs the handler. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state) {
    (void)version;
    q3_server *srv = cls;
    request_state *rs = *state;
    if (!rs) {
        if (!(rs = calloc(1, sizeof *rs))) return MHD_NO;
        *state = rs;
        enum MHD_Result ok = MHD_YES;
        rs->answered = answer_from_headers(srv, c, url, method, rs, &ok);
        return ok;
    }
    if (rs->answered) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        if (rs->body.len + *upload_size > srv->o.max_body) rs->too_big = true;
        else sbuf_put(&rs->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (rs->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is over the limit of %zu bytes", srv->o.max_body);
        return send_error(srv, c, 413, "request_too_large", msg, true);
    }
    if (rs->body.failed) return send_error(srv, c, 500, NULL, "out of memory", true);
    const union MHD_ConnectionInfo *fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    http_request req = {.srv = srv, .method = method, .path = url, .body = rs->body.data ? rs->body.data : "",
                        .body_len = rs->body.len, .fd = fd ? fd->connect_fd : -1};
    return send_reply(srv, c, rs->route->handler(&req), false);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode why) {
    (void)cls, (void)c, (void)why;
    request_state *rs = *state;
    if (!rs) return;
    sbuf_free(&rs->body);
    free(rs);
    *state = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode what) {
    (void)c;
    q3_server *srv = cls;
    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
        int open = atomic_fetch_add(&srv->connections, 1) + 1;
        *socket_context = open > srv->o.max_connections ? OVER_LIMIT : NULL;
    } else {
        atomic_fetch_sub(&srv->connections, 1);
    }
}

static void on_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    fprintf(stderr, "q3moe serve: http: ");
    vfprintf(stderr, fmt, ap);
}

/* ---- starting and stopping ---- */

q3_server_options q3_server_defaults(void) {
    return (q3_server_options){.host = "127.0.0.1", .port = 8080, .max_body = 8u << 20, .max_connections = 64,
                               .model_name = "q3moe", .max_context = 4096, .cache_tokens = 16384,
                               .sampling = q3_sampling_defaults()};
}

static q3_status resolve(const char *host, int port, struct sockaddr_storage *addr, q3_error *e) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc) return q3_fail(e, Q3_EIO, "cannot resolve host %s: %s", host, gai_strerror(rc));
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return Q3_OK;
}

static void server_free(q3_server *s) {
    metrics_destroy(&s->metrics);
    free(s->host);
    free(s->api_key);
    free(s->model_name);
    free(s);
}

q3_status q3_server_start(q3_server **out, q3_engine *en, const q3_tokenizer *tok, const q3_server_options *o,
                          q3_error *e) {
    *out = NULL;
    q3_server *s = calloc(1, sizeof *s);
    if (!s) return q3_fail(e, Q3_ENOMEM, "out of memory");
    metrics_init(&s->metrics);
    s->o = *o;
    s->host = strdup(o->host);
    s->api_key = o->api_key && *o->api_key ? strdup(o->api_key) : NULL;
    s->model_name = strdup(o->model_name);
    if (!s->host || !s->model_name || (o->api_key && *o->api_key && !s->api_key)) {
        server_free(s);
        return q3_fail(e, Q3_ENOMEM, "out of memory");
    }
    s->o.host = s->host;
    s->o.api_key = s->api_key;
    s->o.model_name = s->model_name;
    s->engine = en;
    s->tok = tok;
    s->started = (long long)time(NULL);

    struct sockaddr_storage addr;
    q3_status st = resolve(o->host, o->port, &addr, e);
    if (st) {
        server_free(s);
        return st;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO |
                     MHD_USE_ERROR_LOG | (addr.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s,
        MHD_OPTION_EXTERNAL_LOGGER, on_log, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(o->max_connections + EXTRA_CONNECTIONS),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_END);
    if (!s->daemon) {
        server_free(s);
        return q3_fail(e, Q3_EIO, "cannot listen on %s port %d (in use, or not an address of this machine?)",
                       o->host, o->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di && di->port ? di->port : o->port;
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
    MHD_stop_daemon(s->daemon);
    server_free(s);
}
