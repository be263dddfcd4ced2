/*
 * map: turn what the upstream did (an HTTP answer, or a transport failure)
 * into what the caller gets: status, result for the audit, problem type, and
 * whether another attempt is allowed. Pure: unit tests feed it bodies.
 */
#ifndef GW_MAP_H
#define GW_MAP_H

#include <stddef.h>

#define MAP_CODE_MAX 96
#define MAP_RID_MAX 96

/* How an attempt ended before any answer was judged. */
enum map_transport {
    MAP_ANSWERED = 0,       /* an HTTP answer arrived (status, body) */
    MAP_CONNECT_FAILED,     /* nothing was sent: refused, unreachable, DNS */
    MAP_CONNECT_TIMEOUT,    /* nothing was sent: connect did not finish in time */
    MAP_TLS_FAILED,         /* TLS handshake or verification failed */
    MAP_TIMEOUT_AFTER_SEND, /* sent, no answer in time: the delete may have happened */
    MAP_BROKEN_AFTER_SEND,  /* sent, then reset or garbled: may have happened */
    MAP_INTERNAL,           /* the gateway could not make the call */
};

struct map_result {
    int status;            /* for the caller */
    const char *result;    /* "deleted", "refused", "failed", "unknown" */
    const char *type;      /* problem type slug (NULL on 200) */
    const char *title;     /* problem title */
    int retryable;         /* another attempt may be made (5xx, Throttling*, nothing sent) */
    int throttled;         /* upstream answered Throttling* */
    int upstream_answered; /* upstream_code/request_id come from the upstream */
    char upstream_code[MAP_CODE_MAX];
    char upstream_request_id[MAP_RID_MAX];
    /* The upstream's Message is never kept: Alibaba's can quote the string
     * it signed, AccessKeyId and SecurityToken included. */
};

/* Judge one attempt. body may be NULL for transport failures. */
void map_answer(enum map_transport t, long http_status, const char *body, size_t body_len, struct map_result *out);

/*
 * Re-judge a later attempt's answer when an earlier one reached the upstream
 * and may have acted (it answered 5xx): a refusal (the job is gone, or in a
 * state that forbids deletion) may be that earlier attempt's doing, so it
 * becomes 502 "unknown" (upstream-ambiguous). Other results stand.
 */
void map_after_uncertain(struct map_result *r);

#endif
