/*
 * auditread: GET /audit's reading of the trail, off the event loop. Each
 * read runs on a thread of its own (a few at a time at most), scans the
 * audit file and its size-rotated predecessors newest first, applies the
 * filters, and hands a page of entries back to the loop.
 */
#ifndef GW_AUDITREAD_H
#define GW_AUDITREAD_H

#include "buf.h"

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

#define AR_LIMIT_MAX 1000
#define AR_VALUE_MAX 256

struct ar_query {
    char path[4096];   /* the current audit file */
    char instance[80]; /* only this instance's entries */
    char team[AR_VALUE_MAX], sub[AR_VALUE_MAX], job[AR_VALUE_MAX];
    char decision[AR_VALUE_MAX], result[AR_VALUE_MAX], event[AR_VALUE_MAX];
    int64_t since_ms, until_ms; /* 0: unbounded */
    long limit;
    uint64_t cursor; /* 0: from the newest; else entries with seq < cursor */
};

/* Parse "team=..&sub=..&..." (a query string, percent-encoded) into q.
 * Returns 0, or -1 with a reason for the caller's 400 in why. */
int ar_parse_query(const char *query, struct ar_query *q, const char **why);

/*
 * Scan: append the matching entries, newest first, as JSON objects
 * separated by commas, to out; *count gets how many, *next the cursor for
 * the next page (0 when there is none). Pure file reading: unit-testable.
 */
int ar_scan(const struct ar_query *q, struct buf *out, size_t *count, uint64_t *next);

struct ar;
/* Done on the loop: ok, the page (caller frees), its size and next cursor. */
typedef void (*ar_done_fn)(void *arg, int ok, char *page, size_t count, uint64_t next);

struct ar *ar_new(struct event_base *base, int max_running);
/* Waits for running reads; their callbacks are not run. NULL-safe. */
void ar_free(struct ar *r);
/* Start a read; -1 when too many are running (the caller answers 503). */
int ar_start(struct ar *r, const struct ar_query *q, ar_done_fn done, void *arg);

#endif
