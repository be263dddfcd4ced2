/*
 * curlev: curl multi on libevent (see curlev.h).
 */
#include "curlev.h"

#include <stdlib.h>

struct cev {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
};

/* One per transfer, found through CURLOPT_PRIVATE. */
struct cev_xfer {
    cev_done_fn done;
    void *arg;
};

/* One per socket curl watches. */
struct cev_sock {
    struct event *ev;
    short kind; /* what ev waits for */
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

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    struct cev *c = arg;
    int running = 0;
    int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);

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

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct cev *c = userp;
    struct cev_sock *cs = socketp;
    short kind;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (cs != NULL) {
            event_free(cs->ev);
            free(cs);
            curl_multi_assign(c->multi, s, NULL);
        }
        return 0;
    }
    kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (cs == NULL) {
        cs = calloc(1, sizeof(*cs));
        if (cs == NULL || (cs->ev = event_new(c->base, s, kind, on_socket_event, c)) == NULL) {
            free(cs);
            return -1;
        }
        curl_multi_assign(c->multi, s, cs);
    } else if (cs->kind == kind) {
        return 0; /* curl repeats itself: no epoll change needed */
    } else {
        event_del(cs->ev);
        event_assign(cs->ev, c->base, s, kind, on_socket_event, c);
    }
    cs->kind = kind;
    return event_add(cs->ev, NULL) == 0 ? 0 : -1;
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
    if (c->multi != NULL)
        curl_multi_cleanup(c->multi);
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
