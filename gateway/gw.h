/*
 * gw: the running daemon's parts, wired together by main.c.
 *
 * Threads: the main thread runs the control loop (signals, reload, drain,
 * the admin listener, the JWKS source, timers); each worker thread runs an
 * event loop of its own serving the API (its own listener on a dup of the
 * one bound socket, its own curl multi, token cache and audit port).
 * The audit writer is one more thread, shared by all.
 *
 * What is shared lives in struct gw and is reached under the named lock or
 * through atomics; what a worker owns lives in struct worker and is touched
 * only from its thread. The configuration snapshot is the one piece that
 * changes at run time: gw_config_get() hands out a reference, and a request
 * keeps the snapshot it started with.
 */
#ifndef GW_GW_H
#define GW_GW_H

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>

#include "ratelimit.h"

struct gw_config;
struct audit;
struct audit_port;
struct up;
struct srv;
struct rl_refusals;
struct metrics;
struct ar;
struct jwksrc;
struct auth_cache;
struct job;
struct team_bucket;
struct gw;

/* Control requests the main thread posts to a worker (bit flags). */
enum { WORKER_RECONFIGURE = 1, WORKER_STOP_ACCEPTING = 2 };

struct worker {
    struct gw *gw;
    pthread_t thread;
    int started;
    struct event_base *base;        /* owned */
    struct srv *srv;                /* the API listener and its connections (owned) */
    struct up *up;                  /* upstream calls (owned) */
    struct ar *reader;              /* GET /audit reads (owned) */
    struct auth_cache *token_cache; /* verified tokens (owned) */
    struct audit_port *port;        /* owned by the audit */
    struct event *control;          /* woken by other threads, see control_flags */
    atomic_int control_flags;
    atomic_long jobs_in_flight; /* requests to /jobs and /audit not finished */
    atomic_int drained;         /* draining and nothing left: no request, no unsent reply */
    struct event *drain_tick;   /* while draining: checks whether the worker is done */
    /* Upstream slots: the concurrency cap and queue are per worker (written
     * by the worker, read by /metrics from any thread). */
    atomic_long upstream_active;
    atomic_long upstream_queued;
    struct job *queue_head; /* FIFO of waiting requests */
    struct job **queue_tail;
};

struct gw {
    struct event_base *base;      /* the main thread's loop */
    pthread_mutex_t cfg_mu;       /* guards cfg (the pointer, not the snapshot) */
    struct gw_config *cfg;        /* current snapshot (owned reference) */
    struct audit *audit;          /* owned, thread-safe */
    struct metrics *metrics;      /* owned, thread-safe */
    struct srv *admin;            /* the admin listener on the main loop, or NULL (owned) */
    struct jwksrc *jwks;          /* keys of auth.jwks_url, kept fresh (owned, thread-safe), or NULL */
    struct event *sweep;          /* periodic refusal-summary timer */
    pthread_mutex_t rl_mu;        /* guards refusals, buckets, upstream_bucket */
    struct rl_refusals *refusals; /* anonymous refusals per client (owned) */
    struct team_bucket *buckets;  /* per-team rate limits (owned array) */
    size_t nbuckets;
    struct rl_bucket upstream_bucket; /* gateway-wide rate limit (zeroed until first used) */
    atomic_int draining;              /* shutting down: no new work */
    atomic_long connections;          /* API connections open, all workers */
    struct worker *workers;           /* owned array of nworkers */
    int nworkers;
};

/* The current configuration, with a reference the caller drops (cfg_unref). */
struct gw_config *gw_config_get(struct gw *gw);
/* Post control flags to a worker (any thread). */
void gw_worker_post(struct worker *w, int flags);
/* Sums over the workers, for /metrics and /readyz. */
long gw_jobs_in_flight(struct gw *gw);
long gw_upstream_in_flight(struct gw *gw);
long gw_upstream_queued(struct gw *gw);

#endif
