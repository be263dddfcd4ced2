/*
 * worker: API worker threads and the accessors of shared state (see gw.h
 * and worker.h). Cross-thread requests go through each worker's control
 * event (event_active is thread-safe once libevent's pthreads support is
 * on, see main.c); the worker reads and clears its flags on its own thread.
 */
#include "worker.h"

#include "auditread.h"
#include "audit.h"
#include "auth.h"
#include "config.h"
#include "log.h"
#include "server.h"
#include "upstream.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define WORKER_AUDIT_READS 2     /* concurrent GET /audit scans per worker */
#define WORKER_TOKEN_CACHE 16384 /* slots */
#define WORKER_DRAIN_TICK_MS 20

struct gw_config *gw_config_get(struct gw *gw)
{
    struct gw_config *c;

    pthread_mutex_lock(&gw->cfg_mu);
    c = cfg_ref(gw->cfg);
    pthread_mutex_unlock(&gw->cfg_mu);
    return c;
}

void gw_worker_post(struct worker *w, int flags)
{
    atomic_fetch_or(&w->control_flags, flags);
    event_active(w->control, EV_TIMEOUT, 0);
}

long gw_jobs_in_flight(struct gw *gw)
{
    long n = 0;

    for (int i = 0; i < gw->nworkers; i++)
        n += atomic_load(&gw->workers[i].jobs_in_flight);
    return n;
}

long gw_upstream_in_flight(struct gw *gw)
{
    long n = 0;

    for (int i = 0; i < gw->nworkers; i++)
        n += atomic_load(&gw->workers[i].upstream_active);
    return n;
}

long gw_upstream_queued(struct gw *gw)
{
    long n = 0;

    for (int i = 0; i < gw->nworkers; i++)
        n += atomic_load(&gw->workers[i].upstream_queued);
    return n;
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    (void)fd;
    (void)what;
    if (atomic_load(&w->jobs_in_flight) == 0 && srv_unsent_replies(w->srv) == 0)
        atomic_store(&w->drained, 1);
}

static void on_control(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    int flags = atomic_exchange(&w->control_flags, 0);
    struct timeval tick = {0, WORKER_DRAIN_TICK_MS * 1000};

    (void)fd;
    (void)what;
    if (flags & WORKER_RECONFIGURE) {
        struct gw_config *cfg = gw_config_get(w->gw);
        srv_reconfigure(w->srv, cfg);
        cfg_unref(cfg);
    }
    if (flags & WORKER_STOP_ACCEPTING) {
        srv_stop_accepting(w->srv);
        event_add(w->drain_tick, &tick);
    }
}

int worker_init(struct worker *w, struct gw *gw, const struct gw_config *cfg, int first_fd, struct buf *err)
{
    int rc = -1;

    memset(w, 0, sizeof(*w));
    w->gw = gw;
    w->queue_tail = &w->queue_head;
    /* Not EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST: it defers epoll_ctl to the
     * next loop turn, when a closed descriptor's number may already belong
     * to another worker's new connection (ThreadSanitizer saw exactly that). */
    w->base = event_base_new();
    if (w->base == NULL)
        goto out;
    w->port = audit_port_new(gw->audit, w->base);
    w->up = up_new(w->base, 1024);
    w->reader = ar_new(w->base, WORKER_AUDIT_READS);
    w->token_cache = auth_cache_new(WORKER_TOKEN_CACHE);
    w->control = event_new(w->base, -1, 0, on_control, w);
    w->drain_tick = event_new(w->base, -1, EV_PERSIST, on_drain_tick, w);
    if (w->port == NULL || w->up == NULL || w->reader == NULL || w->token_cache == NULL || w->control == NULL ||
        w->drain_tick == NULL)
        goto out;
    w->srv = srv_new(gw, w, w->base, cfg, first_fd, err);
    if (w->srv == NULL)
        goto out;
    rc = 0;
out:
    return rc;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    sigset_t all;

    /* Signals are the main thread's business. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

int worker_start(struct worker *w)
{
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return -1;
    w->started = 1;
    return 0;
}

void worker_stop(struct worker *w)
{
    if (!w->started)
        return;
    event_base_loopbreak(w->base);
    pthread_join(w->thread, NULL);
    w->started = 0;
}

void worker_free(struct worker *w)
{
    srv_free(w->srv);
    ar_free(w->reader);
    up_free(w->up);
    auth_cache_free(w->token_cache);
    if (w->control != NULL)
        event_free(w->control);
    if (w->drain_tick != NULL)
        event_free(w->drain_tick);
    w->srv = NULL;
    w->reader = NULL;
    w->up = NULL;
    w->token_cache = NULL;
    w->control = NULL;
    w->drain_tick = NULL;
}

void worker_free_base(struct worker *w)
{
    if (w->base != NULL)
        event_base_free(w->base);
    w->base = NULL;
}
