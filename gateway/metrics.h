/*
 * metrics: counters and histograms rendered in the Prometheus text format
 * for /metrics. Label values come only from fixed sets (routes, statuses,
 * reasons, results) or from the policy's team names ("unknown" otherwise),
 * and the number of series has a hard cap, so no caller input can grow it.
 * Histograms are lock-free so the audit writer thread can observe into them.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include "buf.h"

#include <stdatomic.h>
#include <stdint.h>

#define MET_BUCKETS 14

/* The count is the buckets' sum, so a scrape during an observation still
 * shows a +Inf bucket equal to _count (another thread may be observing). */
struct met_hist {
    _Atomic uint64_t bucket[MET_BUCKETS + 1]; /* last one is +Inf */
    _Atomic uint64_t sum_us;
};
void met_hist_observe(struct met_hist *h, double seconds);

enum met_counter {
    MET_RELOADS,
    MET_RELOAD_FAILURES,
    MET_CONNECTIONS,
    MET_HEAD_TIMEOUTS,
    MET_CONN_LIMIT_HITS,
    MET_UPSTREAM_QUEUE_FULL,
    MET_TOKEN_CACHE_HITS,
    MET_TOKEN_CACHE_MISSES,
    MET_JWKS_REFRESHES,
    MET_JWKS_REFRESH_FAILURES,
    MET__COUNTERS
};

struct metrics;

struct metrics *met_new(void);
void met_free(struct metrics *m);
void met_inc(struct metrics *m, enum met_counter c);

/* route: "jobs", "audit", "healthz", ...; team NULL → "unknown". */
void met_request(struct metrics *m, const char *route, int status, const char *team, double seconds);
void met_decision(struct metrics *m, const char *decision, const char *reason);
/* outcome: the audit result; code: upstream code or "" */
void met_upstream(struct metrics *m, const char *outcome, const char *code, double seconds);

/* Values the renderer reads from elsewhere at scrape time. */
struct met_gauges {
    long in_flight;
    long connections;
    long upstream_in_flight;
    long upstream_queued;
    int audit_healthy;
    int draining;
    uint64_t config_generation;
    uint64_t audit_seq;
    const struct met_hist *audit_write; /* may be NULL */
    const struct met_hist *audit_sync;  /* may be NULL */
};

int met_render(struct metrics *m, const struct met_gauges *g, struct buf *out);

#endif
