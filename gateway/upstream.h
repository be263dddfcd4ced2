/*
 * upstream: calls to the cloud API through libcurl's multi interface on the
 * gateway's libevent loop (curlev.c), so one slow call never delays another.
 * Connections are reused. Retries (jittered exponential backoff, re-signed
 * for every attempt) happen only when they are safe, all within one deadline
 * per call.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include "buf.h"
#include "map.h"

#include <event2/event.h>

struct up;
struct up_call;

struct up_params {
    const char *endpoint; /* borrowed for the call's lifetime */
    int post;             /* POST form body, else GET query */
    long connect_timeout_ms;
    long timeout_ms;
    long deadline_ms; /* whole call, retries and backoff included */
    long max_retries;
    const char *proxy;      /* or NULL: no proxy (environment ignored) */
    const char *ca_file;    /* or NULL: system store */
    const char *request_id; /* for the service log (borrowed), or NULL */
};

struct up_outcome {
    struct map_result map; /* the last attempt's judgement */
    long upstream_status;  /* HTTP status of the last answer, 0 if none */
    int attempts;
    long duration_ms;
    long retry_after_s;     /* for 429: seconds the caller should wait */
    char gateway_error[64]; /* transport error class, "" when none */
};

/*
 * Produce the signed parameter string for attempt number `attempt` (1-based):
 * a fresh nonce and timestamp every time. Return 0 and fill out, or -1.
 */
typedef int (*up_sign_fn)(void *arg, int attempt, struct buf *out);
/* The call is over; o is valid during the callback only. Runs on the loop,
 * never from inside up_prepare or up_launch. */
typedef void (*up_done_fn)(void *arg, const struct up_outcome *o);

struct up *up_new(struct event_base *base, long max_connections);
/* Abort every call still running (their done callbacks are not run). */
void up_free(struct up *u);

/*
 * A call in two steps: up_prepare signs the first attempt and sets up its
 * transfer, but sends nothing (NULL when out of memory); up_launch sends it
 * (or, if that cannot be done, tries again from the loop), and done runs
 * later, never inside either. A caller that waits for something before it
 * may forward (the audit decision) prepares meanwhile; up_cancel drops a
 * prepared call that will not be launched (done does not run). The deadline
 * counts from up_launch. p is copied; its strings are borrowed until done
 * runs or up_cancel.
 */
struct up_call *up_prepare(struct up *u, const struct up_params *p, up_sign_fn sign, up_done_fn done, void *arg);
void up_launch(struct up_call *c);
void up_cancel(struct up_call *c);

#endif
