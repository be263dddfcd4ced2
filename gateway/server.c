/*
 * server: listeners, connections, routing and reply helpers (see server.h).
 *
 * libevent 2.1's evhttp has no connection hooks, so the server builds them
 * from public pieces. It creates each connection's bufferevent (bevcb) and
 * holds a reference to it until the end of that loop pass, when evhttp has
 * attached its connection object (the bufferevent's callback argument);
 * then it asks evhttp for the close callback, which is where a connection
 * stops counting. A read watcher of a higher priority than evhttp's own sees
 * the first bytes of each request head first: it starts the head deadline
 * and, with the PROXY protocol, takes the PROXY header off the socket before
 * evhttp reads it.
 */
#include "server.h"

#include "audit.h"
#include "clock.h"
#include "config.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "proxy.h"
#include "route.h"
#include "upstream.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SRV_PROXY_HDR_MAX 536 /* largest PROXY header accepted (v1 is at most 107 bytes) */

enum conn_state { CONN_HEAD, CONN_BUSY, CONN_IDLE };

struct srv_conn {
    struct srv *srv;
    struct bufferevent *bev; /* owned by evhttp once adopted */
    struct event *timer;     /* head deadline */
    struct event *watch;     /* first bytes of the next head (one-shot) */
    enum conn_state state;
    int fd;
    int adopted;
    int proxy_pending;
    char proxy_client[PX_ADDR_MAX];
    struct srv_conn *next, **pprev; /* all connections */
    struct srv_conn *adopt_next;    /* waiting for adoption */
};

struct srv {
    struct gw *gw;
    struct worker *w;        /* the API worker serving this listener; NULL: the admin listener */
    struct event_base *base; /* the loop this listener runs on */
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct srv_conn *conns; /* every live connection (list) */
    struct srv_conn **byfd; /* lookup by socket */
    size_t nfd;
    struct srv_conn *adopt; /* made this pass, not adopted yet */
    struct event *adopt_ev;
    long nconns;
    long max_conns;
    long head_timeout_ms;
    int paused; /* accepting paused at max_conns */
    int proxy_protocol;
    SSL_CTX *ssl_ctx; /* the config's context, for new connections */
    uint64_t rid_prefix;
    uint64_t rid_counter;
};

static struct srv_conn *conn_of(struct srv *s, struct evhttp_request *req)
{
    struct evhttp_connection *ec = req ? evhttp_request_get_connection(req) : NULL;
    struct bufferevent *bev = ec ? evhttp_connection_get_bufferevent(ec) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;

    if (fd < 0 || (size_t)fd >= s->nfd || s->byfd[fd] == NULL || s->byfd[fd]->bev != bev)
        return NULL;
    return s->byfd[fd];
}

static void update_accepting(struct srv *s)
{
    struct evconnlistener *l = s->bound ? evhttp_bound_socket_get_listener(s->bound) : NULL;

    if (l == NULL)
        return;
    if (!s->paused && s->nconns >= s->max_conns) {
        evconnlistener_disable(l);
        s->paused = 1;
        met_inc(s->gw->metrics, MET_CONN_LIMIT_HITS);
        log_warn("limits.max_connections (%ld) reached: accepting paused", s->max_conns);
    } else if (s->paused && s->nconns < s->max_conns) {
        evconnlistener_enable(l);
        s->paused = 0;
    }
}

/* The connection is over (evhttp is freeing it, or never took it). */
static void conn_gone(struct srv_conn *c)
{
    struct srv *s = c->srv;

    if (c->fd >= 0 && (size_t)c->fd < s->nfd && s->byfd[c->fd] == c)
        s->byfd[c->fd] = NULL;
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->watch != NULL)
        event_free(c->watch);
    *c->pprev = c->next;
    if (c->next != NULL)
        c->next->pprev = c->pprev;
    free(c);
    s->nconns--;
    atomic_fetch_sub(&s->gw->connections, 1);
    update_accepting(s);
}

static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    conn_gone(arg);
}

/*
 * Close a connection under evhttp's feet: discard what it has not read yet
 * (after shutdown Linux still delivers queued bytes, and evhttp would act on
 * them), then shut the socket; evhttp sees end-of-file and frees it.
 */
static void kill_conn(struct srv_conn *c)
{
    char sink[4096];
    int rounds = 64;

    while (rounds-- > 0 && recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
        ;
    shutdown(c->fd, SHUT_RDWR);
}

static void on_head_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct srv_conn *c = arg;

    (void)fd;
    (void)what;
    if (c->state != CONN_HEAD || c->fd < 0)
        return;
    met_inc(c->srv->gw->metrics, MET_HEAD_TIMEOUTS);
    log_info("closing connection fd %d: no complete request within limits.header_timeout_ms (%ld)", c->fd,
             c->srv->head_timeout_ms);
    kill_conn(c);
}

static void arm_head_deadline(struct srv_conn *c)
{
    struct timeval tv = {c->srv->head_timeout_ms / 1000, (c->srv->head_timeout_ms % 1000) * 1000};

    c->state = CONN_HEAD;
    evtimer_add(c->timer, &tv);
}

/* Take a PROXY header off the socket before evhttp reads; -1 to close. */
static int take_proxy_header(struct srv_conn *c)
{
    unsigned char hdr[SRV_PROXY_HDR_MAX];
    ssize_t n = recv(c->fd, hdr, sizeof(hdr), MSG_PEEK);
    long used;

    if (n <= 0)
        return n == 0 ? -1 : 0;
    used = px_proxy_header(hdr, (size_t)n, c->proxy_client, sizeof(c->proxy_client));
    if (used <= 0) {
        /* Not a header, or one split across packets: proxies send it whole. */
        log_info("closing connection fd %d: no complete PROXY protocol header", c->fd);
        return -1;
    }
    if (recv(c->fd, hdr, (size_t)used, 0) != used)
        return -1;
    c->proxy_pending = 0;
    return 0;
}

/* Bytes arrived (before evhttp reads them: this watcher has priority). */
static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    struct srv_conn *c = arg;

    (void)fd;
    (void)what;
    if (c->proxy_pending && take_proxy_header(c) != 0) {
        kill_conn(c);
        return;
    }
    if (c->state == CONN_IDLE)
        arm_head_deadline(c);
}

/* End of the loop pass that accepted: evhttp's connection object now exists. */
static void on_adopt(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    struct srv_conn *c;

    (void)fd;
    (void)what;
    while ((c = s->adopt) != NULL) {
        void *cbarg = NULL;
        bufferevent_event_cb eventcb = NULL;
        s->adopt = c->adopt_next;
        bufferevent_getcb(c->bev, NULL, NULL, &eventcb, &cbarg);
        if (eventcb == NULL || cbarg == NULL) {
            /* evhttp already dropped it (it failed to set up). */
            struct bufferevent *bev = c->bev;
            conn_gone(c);
            bufferevent_decref(bev);
            continue;
        }
        c->adopted = 1;
        c->fd = (int)bufferevent_getfd(c->bev);
        if (c->fd >= 0 && (size_t)c->fd < s->nfd)
            s->byfd[c->fd] = c;
        evhttp_connection_set_closecb(cbarg, on_conn_close, c);
        c->watch = event_new(s->base, c->fd, EV_READ, on_watch, c);
        if (c->watch != NULL) {
            event_priority_set(c->watch, 0);
            if (c->proxy_pending)
                event_add(c->watch, NULL);
        }
        bufferevent_decref(c->bev);
    }
}

static struct bufferevent *make_conn(struct event_base *base, void *arg)
{
    struct srv *s = arg;
    struct srv_conn *c = calloc(1, sizeof(*c));
    SSL *ssl = NULL;

    if (c == NULL)
        return NULL;
    c->srv = s;
    c->fd = -1;
    c->proxy_pending = s->proxy_protocol;
    if (s->ssl_ctx != NULL) {
        ssl = SSL_new(s->ssl_ctx);
        c->bev = ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE)
                     : NULL;
        if (c->bev != NULL)
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        else
            SSL_free(ssl);
    } else {
        c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    c->timer = evtimer_new(base, on_head_deadline, c);
    if (c->bev == NULL || c->timer == NULL) {
        if (c->bev != NULL)
            bufferevent_free(c->bev);
        if (c->timer != NULL)
            event_free(c->timer);
        free(c);
        return NULL;
    }
    /* Kept alive until on_adopt, whatever evhttp does meanwhile. */
    bufferevent_incref(c->bev);
    c->next = s->conns;
    if (c->next != NULL)
        c->next->pprev = &c->next;
    c->pprev = &s->conns;
    s->conns = c;
    c->adopt_next = s->adopt;
    s->adopt = c;
    event_active(s->adopt_ev, EV_TIMEOUT, 0);
    s->nconns++;
    atomic_fetch_add(&s->gw->connections, 1);
    met_inc(s->gw->metrics, MET_CONNECTIONS);
    /* The first head (and a TLS handshake) must come within the deadline. */
    arm_head_deadline(c);
    update_accepting(s);
    return c->bev;
}

/* A reply is being sent: the next head may come; watch for its first byte. */
static void conn_replied(struct srv *s, struct evhttp_request *req)
{
    struct srv_conn *c = conn_of(s, req);

    if (c == NULL || c->state != CONN_BUSY)
        return;
    c->state = CONN_IDLE;
    if (c->watch != NULL)
        event_add(c->watch, NULL);
}

long srv_unsent_replies(const struct srv *s)
{
    long n = 0;

    for (const struct srv_conn *c = s->conns; c != NULL; c = c->next)
        if (c->adopted && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
            n++;
    return n;
}

static void add_common_headers(struct evhttp_request *req, const char *request_id, const char *ctype)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "X-Request-Id", request_id);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Status";
    }
}

/* Reply with a body of any type (borrowed, len bytes; ctype NULL for none). */
static void srv_reply(struct srv *s, struct evhttp_request *req, const char *request_id, int status, const char *ctype,
                      const char *body, size_t len)
{
    struct evbuffer *b = evbuffer_new();

    if (ctype != NULL)
        add_common_headers(req, request_id, ctype);
    else
        evhttp_add_header(evhttp_request_get_output_headers(req), "X-Request-Id", request_id);
    if (b != NULL && len > 0)
        evbuffer_add(b, body, len);
    conn_replied(s, req);
    evhttp_send_reply(req, status, reason_phrase(status), b);
    if (b != NULL)
        evbuffer_free(b);
}

void srv_reply_json(struct srv *s, struct evhttp_request *req, const char *request_id, int status, const char *json)
{
    srv_reply(s, req, request_id, status, "application/json", json, strlen(json));
}

void srv_problem(struct srv *s, struct evhttp_request *req, const char *request_id, int status, const char *type,
                 const char *title, const char *detail, const char *extra)
{
    struct buf b;

    buf_init(&b, 16 * 1024);
    buf_printf(&b, "{\"type\":\"urn:smc-gateway:problem:%s\",\"title\":", type);
    buf_json_str(&b, title, strlen(title));
    buf_printf(&b, ",\"status\":%d", status);
    if (detail != NULL) {
        buf_adds(&b, ",\"detail\":");
        buf_json_str(&b, detail, strlen(detail));
    }
    buf_adds(&b, ",\"request_id\":");
    buf_json_str(&b, request_id, strlen(request_id));
    if (extra != NULL)
        buf_adds(&b, extra);
    buf_addc(&b, '}');
    srv_reply(s, req, request_id, status, "application/problem+json", b.p ? b.p : "{}", b.p ? b.len : 2);
    buf_free(&b);
}

void srv_addresses(struct srv *s, struct evhttp_request *req, const struct gw_config *cfg, char *peer, size_t peerlen,
                   char *client, size_t clientlen)
{
    struct evhttp_connection *ec = evhttp_request_get_connection(req);
    struct srv_conn *c = conn_of(s, req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct buf xff;

    if (ec != NULL)
        evhttp_connection_get_peer(ec, &addr, &port);
    snprintf(peer, peerlen, "%s", addr ? addr : "");
    snprintf(client, clientlen, "%s", peer);
    if (cfg->ntrusted == 0 || !px_trusted(cfg->trusted, cfg->ntrusted, peer))
        return;
    if (c != NULL && c->proxy_client[0] != '\0') {
        snprintf(client, clientlen, "%s", c->proxy_client);
        return;
    }
    /* Several X-Forwarded-For headers form one list, in order. */
    buf_init(&xff, 8192);
    for (struct evkeyval *kv = h->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
        if (strcasecmp(kv->key, "X-Forwarded-For") != 0)
            continue;
        if (xff.len > 0)
            buf_addc(&xff, ',');
        buf_adds(&xff, kv->value);
    }
    if (xff.p != NULL && px_xff_client(cfg->trusted, cfg->ntrusted, xff.p, client, clientlen) != 0)
        snprintf(client, clientlen, "%s", peer);
    buf_free(&xff);
}

size_t srv_client_cert(struct srv *s, struct evhttp_request *req, char ids[][TLS_ID_MAX], size_t max)
{
    struct srv_conn *c = conn_of(s, req);

    if (c == NULL || c->bev == NULL)
        return 0;
    return tls_peer_ids(bufferevent_openssl_get_ssl(c->bev), ids, max);
}

static void make_request_id(struct srv *s, char *out, size_t outlen)
{
    snprintf(out, outlen, "%016llx-%08llx", (unsigned long long)s->rid_prefix, (unsigned long long)++s->rid_counter);
}

static void reply_health(struct srv *s, struct evhttp_request *req, const char *rid, enum route_kind kind)
{
    struct gw *gw = s->gw;
    struct buf b;
    const char *why = NULL;
    struct met_gauges g;
    int status = 200;
    int64_t t0 = clock_mono_ms();
    const char *route = kind == ROUTE_HEALTHZ ? "healthz" : kind == ROUTE_READYZ ? "readyz" : "metrics";

    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        srv_problem(s, req, rid, 405, "method-not-allowed", "Only GET is allowed on this resource", NULL, NULL);
        met_request(gw->metrics, route, 405, NULL, 0);
        return;
    }
    buf_init(&b, 4 * 1024 * 1024);
    if (kind == ROUTE_HEALTHZ) {
        buf_adds(&b, "{\"status\":\"alive\"}");
    } else if (kind == ROUTE_READYZ) {
        if (atomic_load(&gw->draining))
            why = "draining";
        else if (!audit_healthy(gw->audit))
            why = "audit log not writable";
        status = why ? 503 : 200;
        buf_printf(&b, "{\"ready\":%s", why ? "false" : "true");
        if (why != NULL) {
            buf_adds(&b, ",\"reason\":");
            buf_json_str(&b, why, strlen(why));
        }
        buf_addc(&b, '}');
    } else {
        struct gw_config *cfg = gw_config_get(gw);
        memset(&g, 0, sizeof(g));
        g.in_flight = gw_jobs_in_flight(gw);
        g.connections = atomic_load(&gw->connections);
        g.upstream_in_flight = gw_upstream_in_flight(gw);
        g.upstream_queued = gw_upstream_queued(gw);
        g.audit_healthy = audit_healthy(gw->audit);
        g.draining = atomic_load(&gw->draining);
        g.config_generation = cfg->generation;
        cfg_unref(cfg);
        audit_metrics(gw->audit, &g);
        met_render(gw->metrics, &g, &b);
    }
    if (kind == ROUTE_METRICS)
        srv_reply(s, req, rid, 200, "text/plain; version=0.0.4; charset=utf-8", b.p ? b.p : "", b.len);
    else
        srv_reply(s, req, rid, status, "application/json", b.p ? b.p : "{}", b.p ? b.len : 2);
    buf_free(&b);
    met_request(gw->metrics, route, status, NULL, (double)(clock_mono_ms() - t0) / 1000.0);
}

/* CORS: headers for an allowed Origin; preflight answered here. 1 = replied. */
static int handle_cors(struct srv *s, struct evhttp_request *req, const char *rid, enum route_kind kind,
                       const struct gw_config *cfg)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req), *out = evhttp_request_get_output_headers(req);
    const char *origin = evhttp_find_header(in, "Origin");
    int allowed = 0;
    char age[32];

    if (cfg->cors.origins == NULL || kind != ROUTE_JOB)
        return 0;
    for (size_t i = 0; origin != NULL && cfg->cors.origins[i] != NULL && !allowed; i++)
        allowed = strcmp(cfg->cors.origins[i], origin) == 0;
    evhttp_add_header(out, "Vary", "Origin");
    if (allowed) {
        evhttp_add_header(out, "Access-Control-Allow-Origin", origin);
        evhttp_add_header(out, "Access-Control-Expose-Headers", "X-Request-Id");
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_OPTIONS)
        return 0;
    if (!allowed) {
        srv_problem(s, req, rid, 403, "cors-origin-not-allowed", "This origin may not call the gateway", NULL, NULL);
        met_request(s->gw->metrics, "jobs", 403, NULL, 0);
        return 1;
    }
    snprintf(age, sizeof(age), "%ld", cfg->cors.max_age_s);
    evhttp_add_header(out, "Access-Control-Allow-Methods", "DELETE");
    evhttp_add_header(out, "Access-Control-Allow-Headers", "Authorization, X-Request-Id, X-Change-Ticket");
    evhttp_add_header(out, "Access-Control-Max-Age", age);
    srv_reply(s, req, rid, 204, NULL, NULL, 0);
    met_request(s->gw->metrics, "jobs", 204, NULL, 0);
    return 1;
}

static void dispatch(struct srv *s, struct evhttp_request *req, int admin)
{
    struct gw_config *cfg;
    const char *uri = evhttp_request_get_uri(req);
    const char *given = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Id");
    char request_id[160], job_id[ROUTE_JOB_ID_MAX + 1];
    enum route_kind kind;
    struct srv_conn *c = conn_of(s, req);
    int health_here, health;

    if (c != NULL) {
        c->state = CONN_BUSY;
        evtimer_del(c->timer);
    }
    if (given != NULL && route_valid_request_id(given))
        snprintf(request_id, sizeof(request_id), "%s", given);
    else
        make_request_id(s, request_id, sizeof(request_id));
    kind = route_parse(uri, job_id, sizeof(job_id));
    health = kind == ROUTE_HEALTHZ || kind == ROUTE_READYZ || kind == ROUTE_METRICS;
    if (admin && !health) {
        srv_problem(s, req, request_id, 404, "not-found", "No such resource",
                    "The admin listener serves /healthz, /readyz and /metrics", NULL);
        return;
    }
    if (!admin && !health && atomic_load(&s->gw->draining)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        srv_problem(s, req, request_id, 503, "shutting-down", "The gateway is shutting down",
                    "Retry on another replica", NULL);
        return;
    }
    cfg = gw_config_get(s->gw);
    health_here = admin || cfg->admin_host == NULL;
    if (handle_cors(s, req, request_id, kind, cfg)) {
        cfg_unref(cfg);
        return;
    }
    cfg_unref(cfg);
    switch (kind) {
    case ROUTE_JOB:
    case ROUTE_BAD_JOB_ID:
        jobs_handle(s->w, req, kind, job_id, request_id);
        break;
    case ROUTE_NOT_FOUND:
        if (uri != NULL && strncmp(uri, "/jobs", 5) == 0 && (uri[5] == '/' || uri[5] == '?' || uri[5] == '\0'))
            jobs_handle(s->w, req, kind, job_id, request_id);
        else
            srv_problem(s, req, request_id, 404, "not-found", "No such resource", NULL, NULL);
        break;
    case ROUTE_BAD_TARGET:
        srv_problem(s, req, request_id, 400, "bad-request-target", "The request target must be a path (origin-form)",
                    NULL, NULL);
        break;
    case ROUTE_HEALTHZ:
    case ROUTE_READYZ:
    case ROUTE_METRICS:
        if (health_here)
            reply_health(s, req, request_id, kind);
        else
            srv_problem(s, req, request_id, 404, "not-found", "No such resource", "See the admin listener", NULL);
        break;
    case ROUTE_AUDIT:
        jobs_audit_read(s->w, req, request_id);
        break;
    }
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct srv *s = arg;

    dispatch(s, req, s->w == NULL);
}

static void setup_http(struct evhttp *h, const struct gw_config *cfg)
{
    struct timeval idle = {cfg->limits.idle_timeout_ms / 1000, (cfg->limits.idle_timeout_ms % 1000) * 1000};

    evhttp_set_allowed_methods(h, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                      EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
                                      EVHTTP_REQ_PATCH);
    evhttp_set_max_headers_size(h, (ev_ssize_t)cfg->limits.max_header_bytes);
    evhttp_set_max_body_size(h, (ev_ssize_t)cfg->limits.max_body_bytes);
    evhttp_set_timeout_tv(h, &idle);
    evhttp_set_default_content_type(h, "application/json");
}

/* host:port for a listening socket, or NULL (freeaddrinfo the result). */
static struct addrinfo *listen_addr(const char *host, int port)
{
    struct addrinfo hints, *ai = NULL;
    char portstr[16];

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof(portstr), "%d", port);
    if (getaddrinfo(host, portstr, &hints, &ai) != 0)
        ai = NULL;
    return ai;
}

/*
 * Bind host:port with a listen backlog that fits the connection cap
 * (evhttp_bind_socket's is 128: bursts of connects would be dropped and
 * their clients would wait a SYN retry, a second or more). With reuseport,
 * SO_REUSEPORT: each worker has its own socket and the kernel spreads new
 * connections over them by address hash. (One socket watched by every
 * worker let whichever woke first take a whole burst: one worker at 99%,
 * the other idle.)
 */
static struct evhttp_bound_socket *bind_listener(struct evhttp *h, struct event_base *base, const char *host, int port,
                                                 int backlog, int reuseport)
{
    struct addrinfo *ai = listen_addr(host, port);
    struct evconnlistener *l = NULL;
    struct evhttp_bound_socket *b = NULL;

    if (ai == NULL)
        goto out;
    l = evconnlistener_new_bind(base, NULL, NULL,
                                LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
                                    (reuseport ? LEV_OPT_REUSEABLE_PORT : 0),
                                backlog, ai->ai_addr, (int)ai->ai_addrlen);
    if (l == NULL)
        goto out;
    b = evhttp_bind_listener(h, l);
    if (b == NULL)
        evconnlistener_free(l);
out:
    if (ai != NULL)
        freeaddrinfo(ai);
    return b;
}

/*
 * 0 when nothing listens on host:port: a plain bind (no SO_REUSEPORT)
 * succeeds. Run before the workers bind with SO_REUSEPORT, so that a second
 * gateway started by mistake on the same port fails instead of silently
 * taking a share of the connections (its own check fails on our sockets).
 */
static int port_is_free(const char *host, int port)
{
    struct addrinfo *ai = listen_addr(host, port);
    int fd = -1, one = 1, rc = -1;

    if (ai == NULL)
        goto out;
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
        goto out;
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (ai != NULL)
        freeaddrinfo(ai);
    return rc;
}

/* The port a listening socket is bound to, or -1. */
static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

void srv_reconfigure(struct srv *s, const struct gw_config *cfg)
{
    s->max_conns = cfg->limits.max_connections;
    s->head_timeout_ms = cfg->limits.header_timeout_ms;
    /* The listener keeps the context of the snapshot it was given; a reload
     * gives it the new one (SSL objects hold their own references). */
    SSL_CTX_free(s->ssl_ctx);
    s->ssl_ctx = s->w != NULL ? cfg->ssl_ctx : NULL;
    if (s->ssl_ctx != NULL)
        SSL_CTX_up_ref(s->ssl_ctx);
    setup_http(s->http, cfg);
    update_accepting(s);
}

int srv_listen_fd(const struct srv *s)
{
    struct evconnlistener *l = s->bound ? evhttp_bound_socket_get_listener(s->bound) : NULL;

    return l ? (int)evconnlistener_get_fd(l) : -1;
}

struct srv *srv_new(struct gw *gw, struct worker *w, struct event_base *base, const struct gw_config *cfg, int first_fd,
                    struct buf *err)
{
    struct srv *s = calloc(1, sizeof(*s)), *ret = NULL;
    struct rlimit rl;
    const char *host = w ? cfg->listen_host : cfg->admin_host;
    int port = w ? cfg->listen_port : cfg->admin_port;
    int backlog = cfg->limits.max_connections < SOMAXCONN ? SOMAXCONN : (int)cfg->limits.max_connections;

    if (s == NULL)
        return NULL;
    s->gw = gw;
    s->w = w;
    s->base = base;
    s->proxy_protocol = w ? cfg->proxy_protocol : 0;
    if (RAND_bytes((unsigned char *)&s->rid_prefix, sizeof(s->rid_prefix)) != 1)
        s->rid_prefix = (uint64_t)clock_wall_ms();
    /* The API's connections are found by socket: one slot per possible
     * descriptor (the admin listener's are evhttp's, see make_conn). */
    if (w != NULL) {
        s->nfd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4 * 1024 * 1024 ? (size_t)rl.rlim_cur : 65536;
        s->byfd = calloc(s->nfd, sizeof(*s->byfd));
    }
    s->http = evhttp_new(base);
    s->adopt_ev = event_new(base, -1, 0, on_adopt, s);
    if ((w != NULL && s->byfd == NULL) || s->http == NULL || s->adopt_ev == NULL)
        goto out;
    /* The API's connections are the server's own (see make_conn); the admin
     * listener's are left to evhttp. */
    if (w != NULL)
        evhttp_set_bevcb(s->http, make_conn, s);
    evhttp_set_gencb(s->http, on_request, s);
    srv_reconfigure(s, cfg);
    /* With several workers each binds its own socket with SO_REUSEPORT; the
     * first checks that the port is free, the others take its port (the
     * configured one may be 0: any). */
    if (first_fd >= 0 && (port = bound_port(first_fd)) < 0)
        s->bound = NULL;
    else if (w != NULL && cfg->workers > 1 && first_fd < 0 && port != 0 && port_is_free(host, port) != 0)
        s->bound = NULL;
    else
        s->bound = bind_listener(s->http, base, host, port, backlog, w != NULL && cfg->workers > 1);
    if (s->bound == NULL) {
        buf_printf(err, "%s: %s: cannot bind %s:%d\n", cfg->path, w ? "listen" : "admin_listen", host,
                   w ? cfg->listen_port : cfg->admin_port);
        goto out;
    }
    ret = s;
    s = NULL;
out:
    srv_free(s);
    return ret;
}

void srv_stop_accepting(struct srv *s)
{
    if (s != NULL && s->bound != NULL) {
        evhttp_del_accept_socket(s->http, s->bound);
        s->bound = NULL;
    }
}

void srv_free(struct srv *s)
{
    if (s == NULL)
        return;
    s->bound = NULL;
    /* Connections not adopted yet hold a reference of ours. */
    if (s->adopt_ev != NULL)
        on_adopt(-1, 0, s);
    /* evhttp_free frees its connections: each calls on_conn_close. */
    if (s->http != NULL)
        evhttp_free(s->http);
    SSL_CTX_free(s->ssl_ctx);
    while (s->conns != NULL)
        conn_gone(s->conns);
    if (s->adopt_ev != NULL)
        event_free(s->adopt_ev);
    free(s->byfd);
    free(s);
}
