/* The front door (see gate.h): one thread, one epoll set holding the listening socket, a stop
 * signal and every connection whose request head has not arrived yet.
 *
 * A connection moves  accepted -> reading its head -> handed to libmicrohttpd,  or
 *                     accepted -> reading its head -> answered here -> closing -> closed.
 * Reading is peeking (MSG_PEEK): the bytes stay in the socket for libmicrohttpd. The sockets are
 * edge-triggered, so a peek that finds the head incomplete waits for the next arrival of bytes
 * instead of spinning on data that is already there. A connection answered here shuts its
 * sending side and reads what the client still sends until it hangs up (at most LINGER_S), so the
 * answer is not lost to a reset from unread request bytes. */
#include "server/gate.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "server/head.h"
#include "server/internal.h"

#define LINGER_S 2.0
#define TICK_MS 200
#define BACKLOG 512
#define STOP_KEY UINT32_MAX
#define LISTEN_KEY (UINT32_MAX - 1)

typedef enum door_state { DOOR_FREE, DOOR_READING, DOOR_CLOSING } door_state;

/* One connection in the gate. */
typedef struct door {
    door_state state;
    int fd;
    double deadline;        /* monotonic seconds: its head, or its lingering, ends then */
    bool got_bytes;         /* something arrived: a timeout is answered 408 rather than just closed */
    struct sockaddr_storage addr;
    socklen_t addr_len;
} door;

struct gate {
    q3_server *srv;
    int listen_fd, epoll_fd, stop_fd, port;
    pthread_t thread;
    bool running;
    door *doors;            /* [n_doors] */
    int n_doors;
    int *free_doors, n_free;
    char *peek;             /* [GATE_HEAD_LIMIT + 1] */
};

/* ---- answering ---- */

static const char *reason_phrase(int status) {
    switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* The whole response, written at once: it is small, and the socket's buffer is empty. */
static void send_error(gate *g, int fd, const char *path, const api_error *err) {
    q3_buf body = {0}, out = {0};
    json_t *v = error_json(path, err);
    if (v) buf_put_json(&body, v);
    json_decref(v);
    q3_buf_printf(&out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n", err->status, reason_phrase(err->status), body.len);
    if (err->retry_after > 0) q3_buf_printf(&out, "Retry-After: %d\r\n", err->retry_after);
    if (g->srv->o.cors_origin) q3_buf_printf(&out, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", g->srv->o.cors_origin);
    q3_buf_puts(&out, "\r\n");
    if (body.data) q3_buf_put(&out, body.data, body.len);
    if (!out.failed && !body.failed && send(fd, out.data, out.len, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)out.len)
        metrics_count_response(&g->srv->metrics, err->status);
    q3_buf_free(&body);
    q3_buf_free(&out);
}

/* ---- doors ---- */

static void door_close(gate *g, int i) {
    door *d = &g->doors[i];
    close(d->fd); /* which also takes it out of the epoll set */
    d->state = DOOR_FREE;
    d->fd = -1;
    g->free_doors[g->n_free++] = i;
    atomic_fetch_sub(&g->srv->connections, 1);
}

/* Answers and starts closing: the client reads the answer, then hangs up (or LINGER_S passes). */
static void door_answer(gate *g, int i, const char *path, int status, const char *code, const char *message) {
    door *d = &g->doors[i];
    api_error err;
    api_fail(&err, status, code, NULL, "%s", message);
    if (status == 503) err.retry_after = 1;
    send_error(g, d->fd, path, &err);
    shutdown(d->fd, SHUT_WR);
    d->state = DOOR_CLOSING;
    d->deadline = q3_now_s() + LINGER_S;
}

/* Leaves the gate for libmicrohttpd, which counts the connection from here on (http.c). */
static void door_hand_over(gate *g, int i) {
    door *d = &g->doors[i];
    int fd = d->fd;
    struct sockaddr_storage addr = d->addr;
    socklen_t len = d->addr_len;
    epoll_ctl(g->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
    d->state = DOOR_FREE;
    d->fd = -1;
    g->free_doors[g->n_free++] = i;
    atomic_fetch_sub(&g->srv->connections, 1);
    /* On failure libmicrohttpd has closed the socket: no memory or no thread, nothing to answer with. */
    MHD_add_connection(g->srv->daemon, fd, (const struct sockaddr *)&addr, len);
}

static bool always_served(const head_info *h) {
    return (!strcmp(h->method, "GET") || !strcmp(h->method, "HEAD")) &&
           (!strcmp(h->path, "/health") || !strcmp(h->path, "/metrics"));
}

/* A whole, well-formed head: through to libmicrohttpd, or answered here when the server is full. */
static void door_admit(gate *g, int i, const head_info *h) {
    q3_server *srv = g->srv;
    int open = atomic_load(&srv->connections), handled = atomic_load(&srv->mhd_connections);
    char msg[128];
    if (handled >= srv->o.max_connections + GATE_HEALTH_RESERVE || (open > srv->o.max_connections && !always_served(h))) {
        door_answer(g, i, h->path, 503, "too_many_connections", "too many open connections; try again shortly");
    } else if (h->content_length > 0 && (unsigned long long)h->content_length > srv->o.max_body) {
        snprintf(msg, sizeof msg, "the request body is over the limit of %zu bytes", srv->o.max_body);
        door_answer(g, i, h->path, 413, "request_too_large", msg);
    } else {
        door_hand_over(g, i);
    }
}

/* New bytes (or a hang-up) on a connection still reading its head. */
static void door_readable(gate *g, int i, uint32_t events) {
    door *d = &g->doors[i];
    ssize_t n = recv(d->fd, g->peek, GATE_HEAD_LIMIT + 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {
        door_close(g, i);
        return;
    }
    d->got_bytes = true;
    head_info h = head_check(g->peek, (size_t)n, GATE_TARGET_LIMIT, GATE_HEAD_LIMIT);
    if (h.verdict == HEAD_OK) door_admit(g, i, &h);
    else if (h.verdict == HEAD_BAD) door_answer(g, i, h.has_path ? h.path : "", h.status, h.code, h.message);
    else if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) door_close(g, i); /* gone before its head was whole */
}

/* A connection answered here: what the client still sends is read and dropped until it hangs up. */
static void door_drain(gate *g, int i) {
    char sink[4096];
    for (;;) {
        ssize_t n = recv(g->doors[i].fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n > 0) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        door_close(g, i);
        return;
    }
}

static void expire(gate *g, double now) {
    for (int i = 0; i < g->n_doors; i++) {
        door *d = &g->doors[i];
        if (d->state == DOOR_FREE || now < d->deadline) continue;
        if (d->state == DOOR_READING && d->got_bytes)
            door_answer(g, i, "", 408, "request_timeout", "the request head did not arrive in time (--header-timeout)");
        else
            door_close(g, i);
    }
}

/* ---- accepting ---- */

static void accept_all(gate *g) {
    for (;;) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        int fd = accept4(g->listen_fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return; /* EAGAIN: all taken; anything else (EMFILE, ...): tried again next tick */
        atomic_fetch_add(&g->srv->connections, 1);
        if (g->n_free == 0) { /* every door busy: answer at once, without reading */
            api_error err;
            api_fail(&err, 503, "too_many_connections", NULL, "too many connections are opening; try again shortly");
            err.retry_after = 1;
            send_error(g, fd, "", &err);
            close(fd);
            atomic_fetch_sub(&g->srv->connections, 1);
            continue;
        }
        int i = g->free_doors[--g->n_free];
        g->doors[i] = (door){.state = DOOR_READING, .fd = fd, .addr = addr, .addr_len = len,
                             .deadline = q3_now_s() + g->srv->o.header_timeout_s};
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.u32 = (uint32_t)i};
        if (epoll_ctl(g->epoll_fd, EPOLL_CTL_ADD, fd, &ev)) door_close(g, i);
    }
}

static void *gate_loop(void *arg) {
    gate *g = arg;
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(g->epoll_fd, evs, 64, TICK_MS);
        for (int k = 0; k < n; k++) {
            uint32_t key = evs[k].data.u32;
            if (key == STOP_KEY) return NULL;
            if (key == LISTEN_KEY) accept_all(g);
            else if (g->doors[key].state == DOOR_READING) door_readable(g, (int)key, evs[k].events);
            else if (g->doors[key].state == DOOR_CLOSING) door_drain(g, (int)key);
        }
        expire(g, q3_now_s());
    }
}

/* ---- starting and stopping ---- */

static q3_status listen_on(gate *g, const char *host, int port, q3_error *e) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc) return q3_fail(e, Q3_EIO, "cannot resolve host %s: %s", host, gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd >= 0 && res->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    bool ok = fd >= 0 && !bind(fd, res->ai_addr, res->ai_addrlen) && !listen(fd, BACKLOG);
    freeaddrinfo(res);
    if (!ok) {
        if (fd >= 0) close(fd);
        return q3_fail(e, Q3_EIO, "cannot listen on %s port %d (in use, or not an address of this machine?)", host, port);
    }
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    getsockname(fd, (struct sockaddr *)&bound, &len);
    g->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    g->listen_fd = fd;
    return Q3_OK;
}

static q3_status watch(gate *g, int fd, uint32_t key, q3_error *e) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = key};
    if (epoll_ctl(g->epoll_fd, EPOLL_CTL_ADD, fd, &ev)) return q3_fail(e, Q3_EIO, "gate: epoll: %s", strerror(errno));
    return Q3_OK;
}

q3_status gate_start(gate **out, q3_server *srv, q3_error *e) {
    *out = NULL;
    gate *g = calloc(1, sizeof *g);
    if (!g) return q3_fail(e, Q3_ENOMEM, "out of memory");
    g->srv = srv;
    g->listen_fd = g->epoll_fd = g->stop_fd = -1;
    /* Room for every connection the limit allows, its health reserve, and as many again opening. */
    g->n_doors = 2 * (srv->o.max_connections + GATE_HEALTH_RESERVE);
    g->doors = calloc((size_t)g->n_doors, sizeof *g->doors);
    g->free_doors = malloc((size_t)g->n_doors * sizeof *g->free_doors);
    g->peek = malloc(GATE_HEAD_LIMIT + 1);
    q3_status st = Q3_OK;
    if (!g->doors || !g->free_doors || !g->peek) st = q3_fail(e, Q3_ENOMEM, "out of memory");
    for (int i = 0; !st && i < g->n_doors; i++) g->doors[i].fd = -1, g->free_doors[g->n_free++] = g->n_doors - 1 - i;
    if (!st) st = listen_on(g, srv->o.host, srv->o.port, e);
    if (!st && ((g->epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0 || (g->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0))
        st = q3_fail(e, Q3_EIO, "gate: %s", strerror(errno));
    if (!st && !(st = watch(g, g->listen_fd, LISTEN_KEY, e)) && !(st = watch(g, g->stop_fd, STOP_KEY, e)) &&
        pthread_create(&g->thread, NULL, gate_loop, g))
        st = q3_fail(e, Q3_ENOMEM, "gate: cannot start its thread");
    g->running = !st;
    if (st) {
        gate_stop(g);
        return st;
    }
    *out = g;
    return Q3_OK;
}

int gate_port(const gate *g) { return g->port; }

void gate_stop(gate *g) {
    if (!g) return;
    if (g->running) {
        uint64_t one = 1;
        if (write(g->stop_fd, &one, sizeof one) == sizeof one) pthread_join(g->thread, NULL);
    }
    for (int i = 0; g->doors && i < g->n_doors; i++)
        if (g->doors[i].state != DOOR_FREE) door_close(g, i);
    int fds[] = {g->listen_fd, g->epoll_fd, g->stop_fd};
    for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
        if (fds[i] >= 0) close(fds[i]);
    free(g->doors);
    free(g->free_doors);
    free(g->peek);
    free(g);
}
