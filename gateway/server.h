/*
 * server: the HTTP/1.1 listeners. Each worker's API listener (plain or TLS,
 * optionally behind the PROXY protocol) serves /jobs and /audit; the admin
 * listener, on the main thread when configured, serves /healthz, /readyz
 * and /metrics (otherwise the API listeners do). The server owns the
 * connections on its loop: it reads and parses request heads (http.c),
 * counts connections against limits.max_connections, enforces the head
 * deadline and the keep-alive idle timeout, and knows each connection's
 * peer, PROXY-protocol client and verified client certificate. It also owns
 * the reply helpers, so every answer carries X-Request-Id (and CORS headers
 * for allowed origins) and every error is a problem body.
 *
 * A connection serves one request at a time. The request (struct srv_req)
 * is borrowed by its handler from dispatch until the handler replies;
 * exactly one reply ends it, and after the reply it must not be touched.
 */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include "buf.h"
#include "gw.h"
#include "http.h"
#include "tls.h"

struct gw_config;
struct srv_req;

/*
 * A listener on base: the API listener of worker w (cfg->listen; with
 * several workers each has its own SO_REUSEPORT socket, and first_fd >= 0
 * is the first worker's, whose port the others bind), or with w NULL the
 * admin listener (cfg->admin_listen). NULL with a message in err.
 */
struct srv *srv_new(struct gw *gw, struct worker *w, struct event_base *base, const struct gw_config *cfg, int first_fd,
                    struct buf *err);
/* The listening socket (the first worker's, for the others' port), or -1. */
int srv_listen_fd(const struct srv *s);
/* Close every connection and the listener. Requests still being handled
 * are abandoned: call it only once their handlers can no longer run. */
void srv_free(struct srv *s);
/* Close the listening socket; open connections are served (503 while draining). */
void srv_stop_accepting(struct srv *s);
/* Apply limits of a reloaded configuration (listen addresses stay). */
void srv_reconfigure(struct srv *s, const struct gw_config *cfg);
/* Connections whose reply is not fully handed to the kernel yet (drain waits). */
long srv_unsent_replies(const struct srv *s);

/* The request's parsed head: method, target and fields (borrowed). */
const struct http_head *srv_head(const struct srv_req *r);
/*
 * Add a field to the reply (both strings are copied). "Connection: close"
 * closes the connection after the reply. -1 when the reply's fields are
 * over their cap (the field is then left out).
 */
int srv_add_header(struct srv_req *r, const char *name, const char *value);

/*
 * Who sent r: the peer's address, and the client's address (PROXY
 * protocol or X-Forwarded-For from a trusted peer, else the peer).
 */
void srv_addresses(const struct srv_req *r, const struct gw_config *cfg, char *peer, size_t peerlen, char *client,
                   size_t clientlen);
/* The verified client certificate's identities ("CN=..", "DNS:..", "URI:.."). */
size_t srv_client_cert(const struct srv_req *r, char ids[][TLS_ID_MAX], size_t max);

/* Reply with a JSON body (borrowed). Ends r. */
void srv_reply_json(struct srv_req *r, const char *request_id, int status, const char *json);
/*
 * Reply with an RFC 9457 problem body: type is a slug (becomes
 * "urn:smc-gateway:problem:<slug>"), detail may be NULL, extra is more JSON
 * members starting with ',' (or NULL). Adds request_id. Ends r.
 */
void srv_problem(struct srv_req *r, const char *request_id, int status, const char *type, const char *title,
                 const char *detail, const char *extra);

#endif
