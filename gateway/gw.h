/*
 * gw: the running daemon's parts, wired together by main.c and handed to
 * every module that serves requests. The configuration snapshot is the one
 * piece that changes at run time (reload swaps it); each request takes its
 * own reference to the snapshot it started with.
 */
#ifndef GW_GW_H
#define GW_GW_H

#include <event2/event.h>

struct gw_config;
struct audit;
struct up;
struct srv;
struct rl_refusals;
struct metrics;
struct ar;
struct jwksrc;
struct auth_cache;
struct job;
struct team_bucket;
struct rl_bucket;

struct gw {
    struct event_base *base;
    struct gw_config *cfg;          /* current snapshot (owned reference) */
    struct audit *audit;            /* owned */
    struct up *up;                  /* owned */
    struct srv *srv;                /* owned */
    struct rl_refusals *refusals;   /* anonymous refusals per client (owned) */
    struct event *sweep;            /* periodic refusal-summary timer */
    struct metrics *metrics;        /* owned */
    struct ar *reader;              /* GET /audit reads, off the loop (owned) */
    struct jwksrc *jwks;            /* keys of auth.jwks_url, kept fresh (owned), or NULL */
    struct auth_cache *token_cache; /* verified tokens (owned) */
    int draining;                   /* shutting down: no new work */
    long jobs_in_flight;            /* /jobs requests not yet finished */
    long upstream_active;           /* requests holding an upstream slot */
    long upstream_queued;           /* requests waiting for one */
    struct job *queue_head;         /* FIFO of waiting requests */
    struct job **queue_tail;
    struct team_bucket *buckets; /* per-team rate limits (owned array) */
    size_t nbuckets;
    struct rl_bucket *upstream_bucket; /* gateway-wide rate limit, or NULL (owned) */
};

#endif
