/*
 * server: listeners, connections, routing and reply helpers (see server.h).
 *
 * Each connection is a socket with a persistent read watcher, a write
 * watcher used only while a reply waits for room in the socket, and one
 * timer (the head deadline, the keep-alive idle timeout, or the send
 * timeout, by state). Reads go into the connection's own capped buffer;
 * when it holds a whole head, the head is parsed in place and dispatched.
 * Replies are written at once and the write watcher is armed only when the
 * kernel takes less than all of it, so a request costs one read and one
 * write on the caller's socket and no change of the poll set. TLS runs on
 * the same socket through OpenSSL's non-blocking calls.
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

#include <arpa/inet.h>
#include <errno.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SRV_PROXY_HDR_MAX 536          /* largest PROXY header accepted (v1 is at most 107 bytes) */
#define SRV_IN_FIRST 2048              /* first size of a connection's input buffer */
#define SRV_REPLY_FIELDS 16            /* fields a handler may add to a reply */
#define SRV_REPLY_FIELD_BYTES 8192     /* their names and values together */
#define SRV_OUT_MAX (20 * 1024 * 1024) /* a reply, head and body (GET /audit pages are the largest) */
#define SRV_ACCEPT_BACKOFF_MS 100      /* pause after a failed accept() */

enum conn_state {
    CONN_HEAD, /* a head is arriving (the head deadline runs) */
    CONN_BUSY, /* a request is being handled */
    CONN_IDLE, /* between requests (the idle timeout runs) */
};

struct srv_req {
    struct srv_conn *conn;
    struct http_head head;
    size_t nfields;                        /* reply fields added */
    size_t field_off[SRV_REPLY_FIELDS][2]; /* name and value offsets in fields */
    struct buf fields;                     /* their text, NUL-separated */
    int close;                             /* Connection: close was added */
    int head_only;                         /* the request line says HEAD: no body in the answer */
};

struct srv_conn {
    struct srv *srv;
    int fd;
    SSL *ssl;            /* NULL on a plain listener */
    struct event *rev;   /* readable (persistent, added while reading) */
    struct event *wev;   /* writable (added only while output waits) */
    struct event *timer; /* deadline of the current state */
    enum conn_state state;
    int reading;          /* rev is added */
    int writing;          /* wev is added */
    int peer_eof;         /* the caller sent FIN (or the socket failed) */
    int close_after;      /* close once the reply is out */
    int read_wants_write; /* TLS: a read is waiting for the socket to be writable */
    int write_wants_read; /* TLS: a write is waiting for the socket to be readable */
    int resume;           /* rev was activated to look at buffered bytes */
    int in_process;       /* process() is on the stack: freeing waits for it */
    int dead;             /* to be freed when process() returns */
    int proxy_pending;    /* the PROXY header has not been read yet */
    struct buf in;        /* bytes read; the head being served starts at 0 */
    size_t scanned;       /* http_head_end progress */
    size_t consumed;      /* bytes of in that belong to the request served */
    struct buf out;       /* reply being sent */
    size_t out_off;
    char peer[PX_ADDR_MAX];
    char proxy_client[PX_ADDR_MAX];
    struct srv_req req;
    struct srv_conn *next, **pprev; /* all connections */
};

struct srv {
    struct gw *gw;
    struct worker *w;        /* the API worker serving this listener; NULL: the admin listener */
    struct event_base *base; /* the loop this listener runs on */
    struct evconnlistener *listener;
    struct srv_conn *conns; /* every live connection (list) */
    long nconns;
    long max_conns;
    long head_timeout_ms;
    long idle_timeout_ms;
    size_t max_head;
    long long max_body;
    int paused;                 /* accepting paused at max_conns */
    int backoff;                /* accepting paused after accept() failed (out of descriptors) */
    struct event *accept_again; /* ends the backoff */
    int proxy_protocol;
    SSL_CTX *ssl_ctx; /* the config's context, for new connections */
    uint64_t rid_prefix;
    uint64_t rid_counter;
    long long date_s; /* the second date is for */
    char date[40];    /* IMF-fixdate of now, for Date */
};

static void dispatch(struct srv *s, struct srv_req *r);
static int cors_headers(struct srv_req *req, const struct gw_config *cfg);
static void process(struct srv_conn *c);
static void flush(struct srv_conn *c);

static void update_accepting(struct srv *s)
{
    if (s->listener == NULL)
        return;
    if (!s->paused && s->nconns >= s->max_conns) {
        evconnlistener_disable(s->listener);
        s->paused = 1;
        met_inc(s->gw->metrics, MET_CONN_LIMIT_HITS);
        log_warn("limits.max_connections (%ld) reached: accepting paused", s->max_conns);
    } else if (s->paused && s->nconns < s->max_conns) {
        s->paused = 0;
        if (!s->backoff)
            evconnlistener_enable(s->listener);
    }
}

static void on_accept_again(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;

    (void)fd;
    (void)what;
    s->backoff = 0;
    if (s->listener != NULL && !s->paused)
        evconnlistener_enable(s->listener);
}

/* accept() failed. Out of descriptors the listening socket stays readable:
 * pause for a moment instead of spinning on it (as nginx does). */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct srv *s = arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {0, SRV_ACCEPT_BACKOFF_MS * 1000};

    log_warn("accept failed: %s; accepting paused for %d ms", strerror(err), SRV_ACCEPT_BACKOFF_MS);
    if (!s->backoff && s->accept_again != NULL) {
        evconnlistener_disable(l);
        s->backoff = 1;
        evtimer_add(s->accept_again, &tv);
    }
}

/* Free a connection. Bytes the caller sent that were never read are
 * discarded first: closing a socket with unread bytes sends a reset, which
 * can destroy the reply still on its way. */
static void conn_free(struct srv_conn *c)
{
    struct srv *s = c->srv;
    char sink[4096];
    int rounds = 64;

    if (c->ssl != NULL) {
        if (!c->peer_eof && SSL_is_init_finished(c->ssl))
            SSL_shutdown(c->ssl); /* close_notify, best effort (non-blocking) */
        SSL_free(c->ssl);
    }
    /* The watches go before the descriptor (its number may be reused at once). */
    if (c->rev != NULL)
        event_free(c->rev);
    if (c->wev != NULL)
        event_free(c->wev);
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->fd >= 0) {
        while (!c->peer_eof && rounds-- > 0 && recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
            ;
        close(c->fd);
    }
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->req.fields);
    *c->pprev = c->next;
    if (c->next != NULL)
        c->next->pprev = c->pprev;
    free(c);
    s->nconns--;
    if (s->w != NULL)
        atomic_fetch_sub(&s->gw->connections, 1);
    update_accepting(s);
}

/* Close now, or as soon as process() is off the stack. */
static void conn_close(struct srv_conn *c)
{
    if (c->in_process)
        c->dead = 1;
    else
        conn_free(c);
}

static void set_reading(struct srv_conn *c, int on)
{
    if (on && !c->reading && event_add(c->rev, NULL) == 0)
        c->reading = 1;
    else if (!on && c->reading && event_del(c->rev) == 0)
        c->reading = 0;
}

static void set_writing(struct srv_conn *c, int on)
{
    if (on && !c->writing && event_add(c->wev, NULL) == 0)
        c->writing = 1;
    else if (!on && c->writing && event_del(c->wev) == 0)
        c->writing = 0;
}

static void arm_timer(struct srv_conn *c, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    evtimer_add(c->timer, &tv);
}

/* State change with the timer that goes with it. */
static void enter(struct srv_conn *c, enum conn_state st)
{
    c->state = st;
    if (st == CONN_HEAD)
        arm_timer(c, c->srv->head_timeout_ms);
    else if (st == CONN_IDLE)
        arm_timer(c, c->srv->idle_timeout_ms);
    else
        evtimer_del(c->timer);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct srv_conn *c = arg;

    (void)fd;
    (void)what;
    if (c->state == CONN_BUSY) {
        return; /* the request has deadlines of its own */
    } else if (c->writing) {
        log_info("closing connection from %s: the reply was not taken within limits.idle_timeout_ms (%ld)", c->peer,
                 c->srv->idle_timeout_ms);
    } else if (c->state == CONN_HEAD) {
        met_inc(c->srv->gw->metrics, MET_HEAD_TIMEOUTS);
        log_info("closing connection from %s: no complete request within limits.header_timeout_ms (%ld)", c->peer,
                 c->srv->head_timeout_ms);
    }
    conn_close(c);
}

/* Drop the bytes of the request served last (its head is no longer used). */
static void compact(struct srv_conn *c)
{
    if (c->consumed > 0 && c->state != CONN_BUSY) {
        memmove(c->in.p, c->in.p + c->consumed, c->in.len - c->consumed);
        buf_truncate(&c->in, c->in.len - c->consumed);
        c->consumed = 0;
        c->scanned = 0;
    }
}

/* Take a PROXY header off the socket (before TLS, which it precedes).
 * 0: taken or not complete yet (proxy_pending tells); -1: close. */
static int take_proxy_header(struct srv_conn *c)
{
    unsigned char hdr[SRV_PROXY_HDR_MAX];
    ssize_t n = recv(c->fd, hdr, sizeof(hdr), MSG_PEEK);
    long used;

    if (n <= 0)
        return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ? -1 : 0;
    used = px_proxy_header(hdr, (size_t)n, c->proxy_client, sizeof(c->proxy_client));
    if (used <= 0) {
        /* Not a header, or one split across packets: proxies send it whole. */
        log_info("closing connection from %s: no complete PROXY protocol header", c->peer);
        return -1;
    }
    if (recv(c->fd, hdr, (size_t)used, 0) != used)
        return -1;
    c->proxy_pending = 0;
    return 0;
}

/*
 * Read what the socket has into c->in (TLS: until OpenSSL wants more).
 * Sets peer_eof at end of stream or on an error; stops reading when the
 * buffer is at its cap. -1 when the connection must close now.
 */
static int fill(struct srv_conn *c)
{
    size_t room;
    int rc = 0;

    if (c->proxy_pending) {
        if (take_proxy_header(c) != 0)
            return -1;
        if (c->proxy_pending)
            return 0;
    }
    compact(c);
    for (;;) {
        /* The cap is the head limit (a reload may lower it below what is held). */
        c->in.max = c->srv->max_head > c->in.len ? c->srv->max_head : c->in.len;
        room = c->in.cap > c->in.len + 1 ? c->in.cap - c->in.len - 1 : 0;
        /* Never while a request is served: its head points into the buffer. */
        if (room == 0 && c->in.len < c->in.max && c->state != CONN_BUSY) {
            size_t more = c->in.cap ? c->in.cap : SRV_IN_FIRST;
            if (more > c->in.max - c->in.len)
                more = c->in.max - c->in.len;
            if (buf_grow(&c->in, more) != 0)
                return -1; /* out of memory: this connection goes */
            room = c->in.cap - c->in.len - 1;
        }
        if (room == 0) {
            /* Full: no more until the request is served (or, at the head
             * cap, until process() refuses the head). */
            set_reading(c, 0);
            break;
        }
        if (c->ssl == NULL) {
            ssize_t n = recv(c->fd, c->in.p + c->in.len, room, 0);
            if (n > 0) {
                c->in.len += (size_t)n;
                c->in.p[c->in.len] = '\0';
            } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                c->peer_eof = 1;
            }
            break; /* one read a wakeup: the poll says when there is more */
        } else {
            size_t n = 0;
            int r = SSL_read_ex(c->ssl, c->in.p + c->in.len, room, &n), e;
            if (r == 1) {
                c->in.len += n;
                c->in.p[c->in.len] = '\0';
                continue;
            }
            e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_WRITE) {
                /* Reading resumes when the socket takes bytes (on_write). */
                c->read_wants_write = 1;
                set_reading(c, 0);
                set_writing(c, 1);
            } else if (e == SSL_ERROR_ZERO_RETURN) {
                c->peer_eof = 1;
            } else if (e != SSL_ERROR_WANT_READ) {
                /* A failed handshake (OpenSSL has sent its alert) or a broken
                 * stream: close now, unless a request is being served (its
                 * reply will find the connection gone). */
                ERR_clear_error();
                c->peer_eof = 1;
                if (c->state != CONN_BUSY)
                    rc = -1;
            }
            break;
        }
    }
    if (c->peer_eof)
        set_reading(c, 0);
    return rc;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct srv_conn *c = arg;
    int resume = c->resume;

    (void)fd;
    (void)what;
    c->resume = 0;
    if (c->write_wants_read) {
        c->write_wants_read = 0;
        flush(c); /* may free c */
        return;
    }
    /* fill() asks to close only a connection that serves no request. */
    if (!resume && fill(c) != 0) {
        conn_free(c);
        return;
    }
    process(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    struct srv_conn *c = arg;

    (void)fd;
    (void)what;
    if (c->read_wants_write) {
        c->read_wants_write = 0;
        if (c->out.len == c->out_off)
            set_writing(c, 0);
        if (!c->peer_eof)
            set_reading(c, 1);
        on_read(c->fd, EV_READ, c);
        return;
    }
    flush(c);
}

/* "<16 hex digits of the listener's random prefix>-<8 or more of a counter>" (out: at least 40 bytes). */
static void make_request_id(struct srv *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t n = ++s->rid_counter;
    char tail[17];
    size_t i = 0, t = 0;

    for (int shift = 60; shift >= 0 && i + 1 < outlen; shift -= 4)
        out[i++] = hex[(s->rid_prefix >> shift) & 15];
    do {
        tail[t++] = hex[n & 15];
        n >>= 4;
    } while (n != 0 || t < 8);
    if (i + 1 < outlen)
        out[i++] = '-';
    while (t > 0 && i + 1 < outlen)
        out[i++] = tail[--t];
    out[i] = '\0';
}

/* Refuse a head that cannot be served, with a problem body; the connection
 * closes after it (what follows a broken head cannot be trusted). */
static void refuse_head(struct srv_conn *c, int status, const char *type, const char *title, const char *detail)
{
    char rid[64];

    memset(&c->req.head, 0, offsetof(struct http_head, fields));
    c->req.head.method = HTTP_M_OTHER;
    c->close_after = 1;
    make_request_id(c->srv, rid, sizeof(rid));
    c->state = CONN_BUSY;
    srv_problem(&c->req, rid, status, type, title, detail, NULL);
}

/* Serve the heads that are in c->in, one at a time. May free c. */
static void process(struct srv_conn *c)
{
    struct srv *s = c->srv;
    size_t end;
    int rc;

    c->in_process = 1;
    /* One request at a time, and none while a reply is still going out. */
    while (!c->dead && c->state != CONN_BUSY && !c->writing && c->out_off == c->out.len && !c->close_after) {
        compact(c);
        if (c->in.len == 0)
            break;
        end = http_head_end(c->in.p, c->in.len, &c->scanned);
        /* Decided from the raw bytes, before parsing: refusals reset the
         * parsed method, and a head refused as malformed has none. */
        c->req.head_only = http_is_head_request(c->in.p, c->in.len);
        if (end == 0) {
            if (c->in.len >= s->max_head) {
                refuse_head(c, 431, "request-head-too-large", "The request head is too large",
                            "The request line and header fields exceed limits.max_header_bytes");
            } else if (c->state == CONN_IDLE) {
                enter(c, CONN_HEAD); /* the deadline runs from a head's first byte */
            }
            break;
        }
        c->consumed = end;
        c->req.nfields = 0;
        c->req.close = 0;
        buf_reset(&c->req.fields);
        rc = http_parse_head(c->in.p, end, &c->req.head);
        if (rc == 505) {
            refuse_head(c, 505, "http-version-not-supported", "Only HTTP/1.0 and HTTP/1.1 are served", NULL);
        } else if (rc == 431) {
            refuse_head(c, 431, "request-head-too-large", "The request has too many header fields", NULL);
        } else if (rc != 0) {
            refuse_head(c, 400, "bad-request", "The request head is malformed",
                        "See RFC 9112: a request line, then header fields, each line ending in CRLF");
        } else if (s->max_body >= 0 && c->req.head.content_length > s->max_body) {
            /* The head is well-formed: its Origin counts, as on any answer. */
            if (s->w != NULL) {
                struct gw_config *cfg = gw_config_get(s->gw);
                cors_headers(&c->req, cfg);
                cfg_unref(cfg);
            }
            refuse_head(c, 413, "content-too-large", "The request body is too large",
                        "The body exceeds limits.max_body_bytes");
        } else {
            c->close_after = !c->req.head.keep_alive;
            enter(c, CONN_BUSY);
            dispatch(s, &c->req);
        }
    }
    c->in_process = 0;
    /* Past its reply, or the caller is gone (or done): nothing more will come. */
    if (c->dead || (c->peer_eof && c->state != CONN_BUSY && !c->writing)) {
        conn_free(c);
        return;
    }
    if (c->state == CONN_BUSY || c->writing || c->out_off < c->out.len || c->close_after)
        return;
    /* Between requests with room again (reading may have paused on a full
     * buffer): read on, and what OpenSSL already holds needs no poll event. */
    if (!c->peer_eof && !c->read_wants_write)
        set_reading(c, 1);
    if (c->ssl != NULL && SSL_pending(c->ssl) > 0) {
        c->resume = 0;
        event_active(c->rev, EV_READ, 1);
    }
}

/* Send what is left of c->out. May free c. */
static void flush(struct srv_conn *c)
{
    while (c->out_off < c->out.len) {
        size_t left = c->out.len - c->out_off;
        if (c->ssl == NULL) {
            ssize_t n = send(c->fd, c->out.p + c->out_off, left, MSG_NOSIGNAL);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
                set_writing(c, 1);
                arm_timer(c, c->srv->idle_timeout_ms);
                return;
            }
            if (n <= 0)
                goto broken;
            c->out_off += (size_t)n;
        } else {
            size_t n = 0;
            int r = SSL_write_ex(c->ssl, c->out.p + c->out_off, left, &n), e;
            if (r == 1) {
                c->out_off += n;
                continue;
            }
            e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                if (e == SSL_ERROR_WANT_READ) {
                    c->write_wants_read = 1;
                    set_reading(c, 1);
                }
                set_writing(c, e == SSL_ERROR_WANT_WRITE);
                arm_timer(c, c->srv->idle_timeout_ms);
                return;
            }
            ERR_clear_error();
            goto broken;
        }
    }
    set_writing(c, 0);
    buf_reset(&c->out);
    c->out_off = 0;
    if (c->close_after || (c->peer_eof && c->consumed >= c->in.len)) {
        conn_close(c);
        return;
    }
    enter(c, CONN_IDLE);
    if (!c->peer_eof)
        set_reading(c, 1);
    /* A pipelined head (or TLS bytes OpenSSL holds) is served from the
     * loop, never from inside the handler that replied. */
    if (!c->in_process && (c->consumed < c->in.len || (c->ssl != NULL && SSL_pending(c->ssl) > 0))) {
        c->resume = c->ssl == NULL || SSL_pending(c->ssl) == 0;
        event_active(c->rev, EV_READ, 1);
    }
    return;
broken:
    c->peer_eof = 1;
    conn_close(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct srv *s = arg;
    struct srv_conn *c = calloc(1, sizeof(*c));
    int one = 1;

    (void)l;
    (void)salen;
    if (c == NULL) {
        close(fd);
        return;
    }
    c->srv = s;
    c->fd = (int)fd;
    c->req.conn = c;
    c->proxy_pending = s->proxy_protocol;
    buf_init(&c->in, s->max_head);
    buf_init(&c->out, SRV_OUT_MAX);
    buf_init(&c->req.fields, SRV_REPLY_FIELD_BYTES);
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof(c->peer));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->peer, sizeof(c->peer));
    /* Replies go out whole in one write: no reason to hold them back. */
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->rev = event_new(s->base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->wev = event_new(s->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    c->timer = evtimer_new(s->base, on_timer, c);
    if (s->ssl_ctx != NULL && (c->ssl = SSL_new(s->ssl_ctx)) != NULL) {
        SSL_set_fd(c->ssl, (int)fd);
        SSL_set_accept_state(c->ssl);
        SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        /* A FIN without close_notify ends the stream like one with it: the
         * heads already received are still answered (requests are framed
         * by their heads; a cut one is never complete). */
        SSL_set_options(c->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    }
    c->next = s->conns;
    if (c->next != NULL)
        c->next->pprev = &c->next;
    c->pprev = &s->conns;
    s->conns = c;
    s->nconns++;
    /* The gauge and the counter are the API's (the admin port's probes are not callers). */
    if (s->w != NULL) {
        atomic_fetch_add(&s->gw->connections, 1);
        met_inc(s->gw->metrics, MET_CONNECTIONS);
    }
    if (c->rev == NULL || c->wev == NULL || c->timer == NULL || (s->ssl_ctx != NULL && c->ssl == NULL)) {
        conn_free(c);
        return;
    }
    /* The first head (and a TLS handshake) must come within the deadline. */
    enter(c, CONN_HEAD);
    set_reading(c, 1);
    update_accepting(s);
}

long srv_unsent_replies(const struct srv *s)
{
    long n = 0;

    for (const struct srv_conn *c = s->conns; c != NULL; c = c->next)
        if (c->out_off < c->out.len)
            n++;
    return n;
}

const struct http_head *srv_head(const struct srv_req *r)
{
    return &r->head;
}

int srv_add_header(struct srv_req *r, const char *name, const char *value)
{
    size_t at = r->fields.len;

    if (strcasecmp(name, "Connection") == 0 && strcasecmp(value, "close") == 0) {
        r->close = 1;
        return 0;
    }
    if (r->nfields == SRV_REPLY_FIELDS || buf_add(&r->fields, name, strlen(name) + 1) != 0 ||
        buf_add(&r->fields, value, strlen(value) + 1) != 0) {
        buf_truncate(&r->fields, at);
        log_warn("reply field %s left out: more than %d fields or %d bytes", name, SRV_REPLY_FIELDS,
                 SRV_REPLY_FIELD_BYTES);
        return -1;
    }
    r->field_off[r->nfields][0] = at;
    r->field_off[r->nfields][1] = at + strlen(name) + 1;
    r->nfields++;
    return 0;
}

static const char *date_now(struct srv *s)
{
    long long now = clock_wall_ms() / 1000;

    if (now != s->date_s) {
        http_date(s->date, sizeof(s->date), now);
        s->date_s = now;
    }
    return s->date;
}

/* Reply with a body of any type (borrowed, len bytes; ctype NULL for none). Ends r. */
static void srv_reply(struct srv_req *r, const char *request_id, int status, const char *ctype, const char *body,
                      size_t len)
{
    struct srv_conn *c = r->conn;
    const char *f[5 + SRV_REPLY_FIELDS][2];
    size_t n = 0;

    if (ctype != NULL) {
        f[n][0] = "Content-Type";
        f[n++][1] = ctype;
    }
    f[n][0] = "X-Request-Id";
    f[n++][1] = request_id;
    if (ctype != NULL) {
        f[n][0] = "Cache-Control";
        f[n++][1] = "no-store";
        f[n][0] = "X-Content-Type-Options";
        f[n++][1] = "nosniff";
    }
    for (size_t i = 0; i < r->nfields; i++) {
        f[n][0] = r->fields.p + r->field_off[i][0];
        f[n++][1] = r->fields.p + r->field_off[i][1];
    }
    if (status == 204)
        len = 0;
    c->close_after |= r->close;
    if (r->head.minor == 0 && !c->close_after) {
        f[n][0] = "Connection";
        f[n++][1] = "keep-alive";
    }
    buf_reset(&c->out);
    c->out_off = 0;
    if (http_write_head(&c->out, status, date_now(c->srv), (const char *const(*)[2])f, n, len, c->close_after) != 0 ||
        (!r->head_only && r->head.method != HTTP_M_HEAD && len > 0 && buf_add(&c->out, body, len) != 0)) {
        /* Only a reply over SRV_OUT_MAX or a field a handler got wrong lands here. */
        log_msg(LOG_LVL_ERROR, request_id, "reply %d could not be written (%zu bytes): connection closed", status, len);
        buf_reset(&c->out);
        c->close_after = 1;
    }
    buf_reset(&r->fields);
    r->nfields = 0;
    c->state = CONN_IDLE;
    flush(c);
}

void srv_reply_json(struct srv_req *r, const char *request_id, int status, const char *json)
{
    srv_reply(r, request_id, status, "application/json", json, strlen(json));
}

void srv_problem(struct srv_req *r, const char *request_id, int status, const char *type, const char *title,
                 const char *detail, const char *extra)
{
    struct buf b;

    buf_init(&b, 16 * 1024);
    buf_adds(&b, "{\"type\":\"urn:smc-gateway:problem:");
    buf_adds(&b, type);
    buf_adds(&b, "\",\"title\":");
    buf_json_str(&b, title, strlen(title));
    buf_adds(&b, ",\"status\":");
    buf_addi(&b, status);
    if (detail != NULL) {
        buf_adds(&b, ",\"detail\":");
        buf_json_str(&b, detail, strlen(detail));
    }
    buf_adds(&b, ",\"request_id\":");
    buf_json_str(&b, request_id, strlen(request_id));
    if (extra != NULL)
        buf_adds(&b, extra);
    buf_addc(&b, '}');
    srv_reply(r, request_id, status, "application/problem+json", b.p ? b.p : "{}", b.p ? b.len : 2);
    buf_free(&b);
}

void srv_addresses(const struct srv_req *r, const struct gw_config *cfg, char *peer, size_t peerlen, char *client,
                   size_t clientlen)
{
    const struct srv_conn *c = r->conn;
    const struct http_head *h = &r->head;
    const char *xff[HTTP_MAX_FIELDS];
    size_t nxff = 0;

    buf_copy(peer, peerlen, c->peer);
    buf_copy(client, clientlen, peer);
    if (cfg->ntrusted == 0 || !px_trusted(cfg->trusted, cfg->ntrusted, peer))
        goto out;
    /* Behind the PROXY protocol the balancer works at L4: it vouches for
     * the address in its header and for nothing in the request, so
     * X-Forwarded-For is never read (a header without an address, v1
     * UNKNOWN or v2 LOCAL, leaves the peer). The listener's own setting
     * counts: proxy_protocol changes only at restart. */
    if (c->srv->proxy_protocol) {
        if (c->proxy_client[0] != '\0')
            buf_copy(client, clientlen, c->proxy_client);
        goto out;
    }
    /* Every X-Forwarded-For field, in order, read from the last (proxy.h);
     * never joined, so no field can crowd out another. */
    for (size_t i = 0; i < h->nfields && nxff < HTTP_MAX_FIELDS; i++)
        if (strcasecmp(h->fields[i].name, "X-Forwarded-For") == 0)
            xff[nxff++] = h->fields[i].value;
    if (px_xff_client(cfg->trusted, cfg->ntrusted, xff, nxff, client, clientlen) != 0)
        buf_copy(client, clientlen, peer);
out:
    return;
}

size_t srv_client_cert(const struct srv_req *r, char ids[][TLS_ID_MAX], size_t max)
{
    return r->conn->ssl != NULL ? tls_peer_ids(r->conn->ssl, ids, max) : 0;
}

static void reply_health(struct srv *s, struct srv_req *req, const char *rid, enum route_kind kind)
{
    struct gw *gw = s->gw;
    struct buf b;
    const char *why = NULL;
    struct met_gauges g;
    int status = 200;
    int64_t t0 = clock_mono_ms();
    const char *route = kind == ROUTE_HEALTHZ ? "healthz" : kind == ROUTE_READYZ ? "readyz" : "metrics";

    if (req->head.method != HTTP_M_GET && req->head.method != HTTP_M_HEAD) {
        srv_add_header(req, "Allow", "GET, HEAD");
        srv_problem(req, rid, 405, "method-not-allowed", "Only GET is allowed on this resource", NULL, NULL);
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
        buf_adds(&b, why ? "{\"ready\":false" : "{\"ready\":true");
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
        srv_reply(req, rid, 200, "text/plain; version=0.0.4; charset=utf-8", b.p ? b.p : "", b.len);
    else
        srv_reply(req, rid, status, "application/json", b.p ? b.p : "{}", b.p ? b.len : 2);
    buf_free(&b);
    met_request(gw->metrics, route, status, NULL, (double)(clock_mono_ms() - t0) / 1000.0);
}

/*
 * CORS headers of an answer on the API listener, whatever its status (a
 * dashboard must be able to read a problem body too): with cors
 * configured, Vary: Origin, and for an allowed Origin the headers that let
 * its page read the answer. 1 when the Origin is allowed.
 */
static int cors_headers(struct srv_req *req, const struct gw_config *cfg)
{
    const char *origin = http_field(&req->head, "Origin");
    int allowed = 0;

    if (cfg->cors.origins == NULL)
        goto out;
    for (size_t i = 0; origin != NULL && cfg->cors.origins[i] != NULL && !allowed; i++)
        allowed = strcmp(cfg->cors.origins[i], origin) == 0;
    srv_add_header(req, "Vary", "Origin");
    if (allowed) {
        srv_add_header(req, "Access-Control-Allow-Origin", origin);
        srv_add_header(req, "Access-Control-Expose-Headers", "X-Request-Id");
    }
out:
    return allowed;
}

/* A CORS preflight of any path under /jobs (so that a DELETE of a bad
 * JobId reaches the route that refuses it readably), after cors_headers. */
static void reply_preflight(struct srv *s, struct srv_req *req, const char *rid, int allowed,
                            const struct gw_config *cfg)
{
    char age[32];

    if (!allowed) {
        srv_problem(req, rid, 403, "cors-origin-not-allowed", "This origin may not call the gateway", NULL, NULL);
        met_request(s->gw->metrics, "jobs", 403, NULL, 0);
        return;
    }
    snprintf(age, sizeof(age), "%ld", cfg->cors.max_age_s);
    srv_add_header(req, "Access-Control-Allow-Methods", "DELETE");
    srv_add_header(req, "Access-Control-Allow-Headers", "Authorization, X-Request-Id, X-Change-Ticket");
    srv_add_header(req, "Access-Control-Max-Age", age);
    srv_reply(req, rid, 204, NULL, NULL, 0);
    met_request(s->gw->metrics, "jobs", 204, NULL, 0);
}

static void dispatch(struct srv *s, struct srv_req *req)
{
    struct gw_config *cfg;
    const char *uri = req->head.target;
    const char *given = http_field(&req->head, "X-Request-Id");
    char request_id[160], job_id[ROUTE_JOB_ID_MAX + 1];
    enum route_kind kind;
    int admin = s->w == NULL, health_here, health, allowed;

    if (given != NULL && route_valid_request_id(given))
        buf_copy(request_id, sizeof(request_id), given);
    else
        make_request_id(s, request_id, sizeof(request_id));
    kind = route_parse(uri, job_id, sizeof(job_id));
    health = kind == ROUTE_HEALTHZ || kind == ROUTE_READYZ || kind == ROUTE_METRICS;
    if (admin && !health) {
        srv_problem(req, request_id, 404, "not-found", "No such resource",
                    "The admin listener serves /healthz, /readyz and /metrics", NULL);
        return;
    }
    cfg = gw_config_get(s->gw);
    health_here = admin || cfg->admin_host == NULL;
    /* The admin listener is for probes and scrapers, not browsers. */
    allowed = !admin && cors_headers(req, cfg);
    if (!admin && !health && atomic_load(&s->gw->draining)) {
        srv_add_header(req, "Connection", "close");
        srv_add_header(req, "Retry-After", "1");
        srv_problem(req, request_id, 503, "shutting-down", "The gateway is shutting down", "Retry on another replica",
                    NULL);
        cfg_unref(cfg);
        return;
    }
    if (cfg->cors.origins != NULL && req->head.method == HTTP_M_OPTIONS &&
        (kind == ROUTE_JOB || kind == ROUTE_BAD_JOB_ID || kind == ROUTE_JOBS_OTHER)) {
        reply_preflight(s, req, request_id, allowed, cfg);
        cfg_unref(cfg);
        return;
    }
    cfg_unref(cfg);
    switch (kind) {
    case ROUTE_JOB:
    case ROUTE_BAD_JOB_ID:
    case ROUTE_JOBS_OTHER:
        jobs_handle(s->w, req, kind, job_id, request_id);
        break;
    case ROUTE_NOT_FOUND:
        srv_problem(req, request_id, 404, "not-found", "No such resource", NULL, NULL);
        break;
    case ROUTE_BAD_TARGET:
        srv_problem(req, request_id, 400, "bad-request-target", "The request target must be a path (origin-form)", NULL,
                    NULL);
        break;
    case ROUTE_HEALTHZ:
    case ROUTE_READYZ:
    case ROUTE_METRICS:
        if (health_here)
            reply_health(s, req, request_id, kind);
        else
            srv_problem(req, request_id, 404, "not-found", "No such resource", "See the admin listener", NULL);
        break;
    case ROUTE_AUDIT:
        jobs_audit_read(s->w, req, request_id);
        break;
    }
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
 * Bind host:port with a listen backlog that fits the connection cap (a
 * short backlog drops connects in bursts, and their clients wait a SYN
 * retry, a second or more). With reuseport, SO_REUSEPORT: each worker has
 * its own socket and the kernel spreads new connections over them by
 * address hash. (One socket watched by every worker let whichever woke
 * first take a whole burst: one worker at 99%, the other idle.)
 */
static struct evconnlistener *bind_listener(struct srv *s, const char *host, int port, int backlog, int reuseport)
{
    struct addrinfo *ai = listen_addr(host, port);
    struct evconnlistener *l = NULL;

    if (ai != NULL)
        l = evconnlistener_new_bind(s->base, on_accept, s,
                                    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
                                        (reuseport ? LEV_OPT_REUSEABLE_PORT : 0),
                                    backlog, ai->ai_addr, (int)ai->ai_addrlen);
    if (ai != NULL)
        freeaddrinfo(ai);
    if (l != NULL)
        evconnlistener_set_error_cb(l, on_accept_error);
    return l;
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
    s->idle_timeout_ms = cfg->limits.idle_timeout_ms;
    s->max_head = (size_t)cfg->limits.max_header_bytes;
    s->max_body = cfg->limits.max_body_bytes;
    /* The listener keeps the context of the snapshot it was given; a reload
     * gives it the new one (SSL objects hold their own references). */
    SSL_CTX_free(s->ssl_ctx);
    s->ssl_ctx = s->w != NULL ? cfg->ssl_ctx : NULL;
    if (s->ssl_ctx != NULL)
        SSL_CTX_up_ref(s->ssl_ctx);
    update_accepting(s);
}

int srv_listen_fd(const struct srv *s)
{
    return s->listener ? (int)evconnlistener_get_fd(s->listener) : -1;
}

struct srv *srv_new(struct gw *gw, struct worker *w, struct event_base *base, const struct gw_config *cfg, int first_fd,
                    struct buf *err)
{
    struct srv *s = calloc(1, sizeof(*s)), *ret = NULL;
    const char *host = w ? cfg->listen_host : cfg->admin_host;
    int port = w ? cfg->listen_port : cfg->admin_port;
    int backlog = cfg->limits.max_connections < SOMAXCONN ? SOMAXCONN : (int)cfg->limits.max_connections;

    if (s == NULL)
        return NULL;
    s->gw = gw;
    s->w = w;
    s->base = base;
    s->proxy_protocol = w ? cfg->proxy_protocol : 0;
    s->date_s = -1;
    s->accept_again = evtimer_new(base, on_accept_again, s);
    if (RAND_bytes((unsigned char *)&s->rid_prefix, sizeof(s->rid_prefix)) != 1)
        s->rid_prefix = (uint64_t)clock_wall_ms();
    srv_reconfigure(s, cfg);
    if (s->accept_again == NULL)
        goto out;
    /* With several workers each binds its own socket with SO_REUSEPORT; the
     * first checks that the port is free, the others take its port (the
     * configured one may be 0: any). */
    if (first_fd >= 0 && (port = bound_port(first_fd)) < 0)
        s->listener = NULL;
    else if (w != NULL && cfg->workers > 1 && first_fd < 0 && port != 0 && port_is_free(host, port) != 0)
        s->listener = NULL;
    else
        s->listener = bind_listener(s, host, port, backlog, w != NULL && cfg->workers > 1);
    if (s->listener == NULL) {
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
    if (s != NULL && s->listener != NULL) {
        evconnlistener_free(s->listener);
        s->listener = NULL;
    }
}

void srv_free(struct srv *s)
{
    if (s == NULL)
        return;
    srv_stop_accepting(s);
    while (s->conns != NULL)
        conn_free(s->conns);
    if (s->accept_again != NULL)
        event_free(s->accept_again);
    SSL_CTX_free(s->ssl_ctx);
    free(s);
}
