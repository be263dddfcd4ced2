/*
 * curlev: curl multi on libevent (see curlev.h).
 */
#include "curlev.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

struct cev {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct cev_sock **socks; /* by descriptor: the sockets curl has opened and told us of */
    size_t nsocks;
};

/* One per transfer, found through CURLOPT_PRIVATE. */
struct cev_xfer {
    cev_done_fn done;
    void *arg;
};

/*
 * One per socket curl has asked us to watch, kept until curl closes it. A
 * kept-alive connection between transfers stays in the poll set ("parked",
 * read interest only): the next transfer on it then needs no epoll change,
 * where adding it for every response and removing it after cost two
 * epoll_ctl calls per request. A parked socket that turns readable (the
 * server closed it) is taken out of the poll set; curl finds it dead when
 * it next looks. Only connection sockets are parked: they are opened and
 * closed through our callbacks, so no watch outlives its descriptor. Others
 * curl may watch (its resolver's socketpair) it closes by itself, so their
 * watch goes with their removal.
 */
struct cev_sock {
    struct event *ev;
    short kind; /* what ev waits for while added; 0: not added */
    int parked; /* curl is not watching it (between transfers) */
    int ours;   /* opened through open_cb: close_cb will see it closed */
};

static void check_multi_info(struct cev *c)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        struct cev_xfer *x = NULL;
        CURL *easy = msg->easy_handle;
        CURLcode res = msg->data.result;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(c->multi, easy);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        if (x != NULL) {
            cev_done_fn done = x->done;
            void *arg = x->arg;
            free(x);
            done(arg, easy, res);
        }
    }
}

static struct cev_sock *sock_of(const struct cev *c, curl_socket_t s)
{
    return s >= 0 && (size_t)s < c->nsocks ? c->socks[s] : NULL;
}

static void sock_unwatch(struct cev_sock *cs)
{
    if (cs->kind != 0) {
        event_del(cs->ev);
        cs->kind = 0;
    }
}

static void sock_free(struct cev *c, curl_socket_t s)
{
    struct cev_sock *cs = sock_of(c, s);

    if (cs != NULL) {
        sock_unwatch(cs);
        event_free(cs->ev);
        free(cs);
        c->socks[s] = NULL;
    }
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    struct cev *c = arg;
    struct cev_sock *cs = sock_of(c, fd);
    int running = 0;
    int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);

    if (cs != NULL && cs->parked) {
        sock_unwatch(cs);
        return;
    }
    curl_multi_socket_action(c->multi, fd, flags, &running);
    check_multi_info(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct cev *c = arg;
    int running = 0;

    (void)fd;
    (void)what;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(c);
}

/* The socket's entry, made on first sight; NULL without memory. */
static struct cev_sock *sock_get(struct cev *c, curl_socket_t s)
{
    struct cev_sock *cs = sock_of(c, s);

    if (cs != NULL || s < 0)
        return cs;
    if ((size_t)s >= c->nsocks) {
        size_t n = c->nsocks ? c->nsocks : 64;
        struct cev_sock **ns;
        while (n <= (size_t)s)
            n *= 2;
        if ((ns = realloc(c->socks, n * sizeof(*ns))) == NULL)
            return NULL;
        memset(ns + c->nsocks, 0, (n - c->nsocks) * sizeof(*ns));
        c->socks = ns;
        c->nsocks = n;
    }
    cs = calloc(1, sizeof(*cs));
    if (cs == NULL || (cs->ev = event_new(c->base, s, EV_READ | EV_PERSIST, on_socket_event, c)) == NULL) {
        free(cs);
        return NULL;
    }
    c->socks[s] = cs;
    return cs;
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct cev *c = userp;
    struct cev_sock *cs;
    short kind;

    (void)easy;
    (void)socketp;
    if (what == CURL_POLL_REMOVE) {
        if ((cs = sock_of(c, s)) == NULL)
            return 0;
        if (!cs->ours) {
            sock_free(c, s);
            return 0;
        }
        /* Between transfers: keep a read watch (parked), drop a write one. */
        cs->parked = 1;
        if (cs->kind != (EV_READ | EV_PERSIST))
            sock_unwatch(cs);
        return 0;
    }
    if ((cs = sock_get(c, s)) == NULL)
        return -1;
    cs->parked = 0;
    kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (cs->kind == kind)
        return 0; /* already watched so: no epoll change needed */
    sock_unwatch(cs);
    event_assign(cs->ev, c->base, s, kind, on_socket_event, c);
    if (event_add(cs->ev, NULL) != 0)
        return -1;
    cs->kind = kind;
    return 0;
}

/* curl opens a connection's socket: known as ours from the start. */
static curl_socket_t open_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct cev *c = clientp;
    curl_socket_t s;
    struct cev_sock *cs;

    (void)purpose;
    s = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (s == CURL_SOCKET_BAD)
        return s;
    sock_free(c, s); /* an entry left for this number belongs to no socket now */
    if ((cs = sock_get(c, s)) == NULL) {
        close(s);
        return CURL_SOCKET_BAD;
    }
    cs->ours = 1;
    return s;
}

/* curl closes a socket: its watch goes first (the number may be reused at once). */
static int close_cb(void *clientp, curl_socket_t s)
{
    sock_free(clientp, s);
    return close(s);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct cev *c = userp;
    struct timeval tv;

    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
        return 0;
    }
    /* Zero means "act now": run it from the loop, not from inside curl,
     * in this loop pass (a zero timer would cost a poll round first). */
    if (timeout_ms == 0) {
        evtimer_del(c->timer);
        event_active(c->timer, EV_TIMEOUT, 1);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    evtimer_add(c->timer, &tv);
    return 0;
}

struct cev *cev_new(struct event_base *base, long max_connections)
{
    struct cev *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->base = base;
    c->multi = curl_multi_init();
    c->timer = evtimer_new(base, on_timer, c);
    if (c->multi == NULL || c->timer == NULL) {
        cev_free(c);
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, max_connections);
    return c;
}

void cev_free(struct cev *c)
{
    if (c == NULL)
        return;
    /* Closes the connections it keeps, through close_cb. */
    if (c->multi != NULL)
        curl_multi_cleanup(c->multi);
    for (size_t i = 0; i < c->nsocks; i++) {
        if (c->socks[i] != NULL) {
            sock_unwatch(c->socks[i]);
            event_free(c->socks[i]->ev);
            free(c->socks[i]);
        }
    }
    free(c->socks);
    if (c->timer != NULL)
        event_free(c->timer);
    free(c);
}

int cev_add(struct cev *c, CURL *easy, cev_done_fn done, void *arg)
{
    struct cev_xfer *x = calloc(1, sizeof(*x));

    if (x == NULL)
        return -1;
    x->done = done;
    x->arg = arg;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
    /* Connections this transfer opens are opened and closed through us. */
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_cb);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, c);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, c);
    /* A transfer stopped during a name lookup must not wait for the
     * resolver thread (that would stop the whole loop). */
    curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
    if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        free(x);
        return -1;
    }
    return 0;
}

void cev_remove(struct cev *c, CURL *easy)
{
    struct cev_xfer *x = NULL;

    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    curl_multi_remove_handle(c->multi, easy);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    free(x);
}
