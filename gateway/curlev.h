/*
 * curlev: libcurl's multi interface driven by the libevent loop (the
 * CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION pattern of curl's
 * hiperfifo.c). Every HTTP client of the gateway (upstream calls, JWKS
 * fetches) runs its transfers here, so nothing ever blocks on the network.
 * Transfers are finished in one place (check_multi_info), never inside a
 * curl callback; connections are reused across transfers.
 */
#ifndef GW_CURLEV_H
#define GW_CURLEV_H

#include <curl/curl.h>
#include <event2/event.h>

struct cev;

/* A transfer ended: the easy handle is out of the multi and the caller's
 * again (it cleans it up). Runs on the loop, never inside cev_add. */
typedef void (*cev_done_fn)(void *arg, CURL *easy, CURLcode result);

struct cev *cev_new(struct event_base *base, long max_connections);
/* Abort every transfer still running (their callbacks do not run). */
void cev_free(struct cev *c);
/* Start easy (CURLOPT_PRIVATE is cev's). 0, or -1 (then easy is the caller's). */
int cev_add(struct cev *c, CURL *easy, cev_done_fn done, void *arg);
/* Stop a running transfer without its callback; easy is the caller's again. */
void cev_remove(struct cev *c, CURL *easy);

#endif
