/* The server's front door: it owns the listening socket and holds every new connection until
 * its request head has arrived whole and passed head_check (head.h); only then is the
 * connection handed to libmicrohttpd (MHD_add_connection), which reads the same bytes again
 * (the gate only peeks at them).
 *
 * Why a gate in front of libmicrohttpd 0.9.75 (Debian 12's):
 *   - a head that libmicrohttpd refuses itself (431, 414, 505, a Content-Length of -1 or 1e20)
 *     gets its fixed HTML page, for the last two with the status line and headers sent twice,
 *     and the server never hears of it: no JSON, no /metrics count. The gate answers these in
 *     JSON and counts them, so libmicrohttpd only ever parses heads it accepts;
 *   - two Content-Length fields, or Transfer-Encoding with Content-Length, pass libmicrohttpd:
 *     the gate refuses them (400);
 *   - libmicrohttpd's timeout is an idle timeout, so a client that sends a header line every
 *     20 s keeps its connection and thread forever, and once the connection limit is reached
 *     new connections wait unanswered in the listen backlog. Connections in the gate cost no
 *     thread, each has --header-timeout seconds for its whole head (then 408), and a connection
 *     over --max-connections is answered 503 in JSON, except GET /health and /metrics, which a
 *     few places kept in reserve always let through.
 * Every response ends its connection (Connection: close), so every request passes the gate.
 * What stays libmicrohttpd's own: errors in a chunked request body (a bad chunk size is answered
 * 400 with its HTML page; the body is past the head, where the gate cannot look without taking
 * the bytes libmicrohttpd needs). http.c counts those in /metrics. */
#ifndef Q3_SERVER_GATE_H
#define Q3_SERVER_GATE_H

#include "base/error.h"

struct q3_server;
typedef struct gate gate;

#define GATE_TARGET_LIMIT 8192  /* bytes of a request target (414 beyond) */
#define GATE_HEAD_LIMIT 16384   /* bytes of a request head (431 beyond); within libmicrohttpd's 32 KiB pool */
#define GATE_HEALTH_RESERVE 16  /* connections past --max-connections kept for /health and /metrics */

/* Binds host:port (srv->o) and starts the gate's thread, which hands connections to
 * srv->daemon. Q3_EIO when the address cannot be bound; Q3_ENOMEM. */
q3_status gate_start(gate **out, struct q3_server *srv, q3_error *e);
/* The port it listens on (the one chosen, for port 0). Cannot fail. */
int gate_port(const gate *g);
/* Stops the thread and closes the listening socket and every connection still in the gate.
 * Cannot fail; NULL is fine. */
void gate_stop(gate *g);

#endif
