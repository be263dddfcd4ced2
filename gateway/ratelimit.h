/*
 * ratelimit: bounded counting of refusals per client address (so that an
 * anonymous client cannot fill the audit disk) and token buckets (per-team
 * and gateway-wide call rates). Pure data structures with explicit time
 * arguments: no clock reads, no I/O, unit-testable.
 */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

struct rl_refusals;

/* Called for a window that suppressed entries: client, how many, window start. */
typedef void (*rl_summary_fn)(void *arg, const char *client, uint64_t suppressed, int64_t window_start_ms);

/* At most per_window recorded refusals per client per window_ms; at most
 * max_clients tracked (beyond that, clients share one "other" record). */
struct rl_refusals *rl_refusals_new(unsigned per_window, int64_t window_ms, size_t max_clients);
void rl_refusals_free(struct rl_refusals *r);
/* 1: record this refusal; 0: suppressed (counted for the summary). An ended
 * window with suppressed refusals is summarized through fn first. */
int rl_refusal_admit(struct rl_refusals *r, const char *client, int64_t now_ms, rl_summary_fn fn, void *arg);
/* Summarize and forget every ended window (call periodically, and with
 * now_ms = INT64_MAX at shutdown to flush all). */
void rl_refusals_sweep(struct rl_refusals *r, int64_t now_ms, rl_summary_fn fn, void *arg);

/* A token bucket: capacity `burst`, refilled at rate tokens per second. */
struct rl_bucket {
    double tokens;
    double burst;
    double rate;
    int64_t last_ms;
};
void rl_bucket_init(struct rl_bucket *b, double burst, double per_second, int64_t now_ms);
/* Take one token: 0 on success, else the seconds until one is available (≥ 1). */
long rl_bucket_take(struct rl_bucket *b, int64_t now_ms);

#endif
