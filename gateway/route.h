/*
 * route: what a request target asks for, decided from the raw bytes before
 * anything else looks at them. Pure: no libevent, so the fuzzer and unit
 * tests call it directly. The query string is ignored and never forwarded.
 */
#ifndef GW_ROUTE_H
#define GW_ROUTE_H

#include <stddef.h>

#define ROUTE_JOB_ID_MAX 66 /* "j-" + 64 characters */

enum route_kind {
    ROUTE_NOT_FOUND = 0, /* 404 */
    ROUTE_BAD_TARGET,    /* not origin-form ("/..."): 400 */
    ROUTE_BAD_JOB_ID,    /* /jobs/<something that is not a JobId>: 400 */
    ROUTE_JOB,           /* /jobs/<JobId>; job_id filled in */
    ROUTE_JOBS_OTHER,    /* /jobs, /jobs/, /jobs/<x>/...: no such job resource (404, audited) */
    ROUTE_HEALTHZ,
    ROUTE_READYZ,
    ROUTE_METRICS,
    ROUTE_AUDIT,
};

/* Classify uri; job_id receives the JobId (at least ROUTE_JOB_ID_MAX+1 bytes). */
enum route_kind route_parse(const char *uri, char *job_id, size_t job_id_size);
/* "j-" followed by 1 to 64 ASCII letters or digits. */
int route_valid_job_id(const char *s, size_t len);
/* 1 to max characters, each an ASCII letter or digit or one of extra. */
int route_valid_chars(const char *s, size_t max, const char *extra);
/* 1-128 characters of A-Za-z0-9._- */
int route_valid_request_id(const char *s);
/* 1-64 characters of A-Za-z0-9._:/- */
int route_valid_ticket(const char *s);

#endif
