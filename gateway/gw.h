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

struct gw {
    struct event_base *base;
    struct gw_config *cfg;        /* current snapshot (owned reference) */
    struct audit *audit;          /* owned */
    struct up *up;                /* owned */
    struct srv *srv;              /* owned */
    struct rl_refusals *refusals; /* anonymous refusals per client (owned) */
    struct event *sweep;          /* periodic refusal-summary timer */
    int draining;                 /* shutting down: no new work */
    long jobs_in_flight;          /* /jobs requests not yet finished */
};

#endif
