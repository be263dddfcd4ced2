/*
 * jwksrc: the verification keys of an identity provider's JWKS URL, kept
 * fresh. Fetched with libcurl on the event loop (never blocking it), https
 * only (loopback http for tests), TLS verified, size-capped, with timeouts;
 * refreshed every jwks_refresh_seconds, and early when a token names an
 * unknown kid — at most once per 30 s whatever the number of such tokens.
 * A failed refresh keeps the last good key set; a reload that changes the
 * URL, the CA file or the algorithms drops it at once (tokens are refused
 * until the new URL answers). Logs show the URL without userinfo or query.
 *
 * Fetching runs on the loop that created the source (the main thread); the
 * key set and the waits are reached from any worker thread.
 */
#ifndef GW_JWKSRC_H
#define GW_JWKSRC_H

#include "auth.h"
#include "buf.h"

#include <event2/event.h>

#define JWKSRC_EARLY_MIN_MS 30000 /* at most one early refresh per 30 s */
#define JWKSRC_WAIT_MS 2000       /* a request waits at most this for it */

struct metrics;
struct jwksrc;

struct jwksrc_opts {
    const char *url;     /* borrowed for the call */
    const char *ca_file; /* or NULL: system store */
    int algs;
    long refresh_s; /* >= 1; config validates it */
};

/*
 * Fetch once, blocking (start-up and --check-config only, before the loop
 * serves anything). Returns the number of usable keys and *out, or -1 with
 * the reason in report; report also gets one line per skipped key.
 */
int jwksrc_fetch_blocking(const struct jwksrc_opts *o, struct auth_keyset **out, struct buf *report);

/* Keep the keys of o->url fresh; initial (owned, may be NULL) is the set to
 * start with. NULL on failure. */
struct jwksrc *jwksrc_new(struct event_base *base, struct metrics *m, const struct jwksrc_opts *o,
                          struct auth_keyset *initial);
/* Waiting requests are dropped (their callbacks do not run). NULL-safe. */
void jwksrc_free(struct jwksrc *j);
/* Adopt new options (reload). When the URL, the CA file or the algorithms
 * change, the current set is dropped (no token verifies with it any more)
 * and the new URL is fetched at once. Main thread. */
void jwksrc_reconfigure(struct jwksrc *j, const struct jwksrc_opts *o);
/* The current key set, with a reference the caller drops (auth_keyset_free);
 * NULL while there is none. Any thread. */
struct auth_keyset *jwksrc_keys_get(struct jwksrc *j);

/*
 * A token names a kid the current set lacks. Returns 1 when a refresh is
 * running or may start now: fn(arg) then runs on the caller's loop (base)
 * once the refresh is done or after JWKSRC_WAIT_MS, whichever comes first.
 * Returns 0 when no refresh is allowed now (the caller decides at once).
 * Any thread.
 */
int jwksrc_wait_refresh(struct jwksrc *j, struct event_base *base, void (*fn)(void *arg), void *arg);

/* url as logs may show it: scheme://host[:port]/path, without userinfo,
 * query or fragment (they may carry credentials); "(unparsable URL)" when
 * curl cannot parse it. Caller frees; NULL only when out of memory. */
char *jwksrc_url_for_log(const char *url);

#endif
