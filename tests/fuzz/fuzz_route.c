/*
 * fuzz_route: the request target as libevent hands it over (a C string of
 * any bytes), and the two header values with a syntax of their own
 * (X-Request-Id, X-Change-Ticket). A JobId that route_parse returns must be
 * valid and must be the bytes of the path, not something made up.
 */
#include "route.h"

#include "fuzz_util.h"

static int in_set(unsigned char c, const char *extra)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr(extra, c) != NULL);
}

/* The syntax rule of route.h, written again independently. */
static int ref_valid(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);

    if (n < 1 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!in_set((unsigned char)s[i], extra))
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *uri = fuzz_dup(data, size, 1);
    char job_id[ROUTE_JOB_ID_MAX + 1];
    char small[8];
    enum route_kind kind;
    size_t pathlen = strcspn(uri, "?");

    memset(job_id, 'x', sizeof(job_id));
    kind = route_parse(uri, job_id, sizeof(job_id));
    FUZZ_SAY("route: kind %d job_id \"%s\"\n", (int)kind, job_id);
    FUZZ_CHECK(kind >= ROUTE_NOT_FOUND && kind <= ROUTE_AUDIT);
    FUZZ_CHECK(memchr(job_id, '\0', sizeof(job_id)) != NULL);
    if (uri[0] != '/')
        FUZZ_CHECK(kind == ROUTE_BAD_TARGET);
    if (kind == ROUTE_JOB) {
        size_t n = strlen(job_id);
        FUZZ_CHECK(route_valid_job_id(job_id, n));
        FUZZ_CHECK(n >= 3 && n <= ROUTE_JOB_ID_MAX);
        /* Exactly the one segment after "/jobs/", before any query. */
        FUZZ_CHECK(pathlen == 6 + n);
        FUZZ_CHECK(memcmp(uri, "/jobs/", 6) == 0 && memcmp(uri + 6, job_id, n) == 0);
        FUZZ_CHECK(strstr(uri, job_id) != NULL);
        FUZZ_CHECK(ref_valid(job_id + 2, 64, ""));
    } else {
        FUZZ_CHECK(job_id[0] == '\0');
    }
    if (kind == ROUTE_HEALTHZ || kind == ROUTE_READYZ || kind == ROUTE_METRICS || kind == ROUTE_AUDIT)
        FUZZ_CHECK(pathlen <= 8 && uri[0] == '/');

    /* A buffer too small for the JobId is refused, never overrun. */
    kind = route_parse(uri, small, sizeof(small));
    FUZZ_CHECK(memchr(small, '\0', sizeof(small)) != NULL);
    if (kind == ROUTE_JOB)
        FUZZ_CHECK(strlen(small) + 1 <= sizeof(small) && strstr(uri, small) != NULL);
    FUZZ_CHECK(route_parse(uri, NULL, 0) != ROUTE_JOB);

    FUZZ_CHECK(route_valid_request_id(uri) == ref_valid(uri, 128, "._-"));
    FUZZ_CHECK(route_valid_ticket(uri) == ref_valid(uri, 64, "._:/-"));
    FUZZ_CHECK(route_valid_job_id(uri, strlen(uri)) ==
               (strlen(uri) >= 3 && uri[0] == 'j' && uri[1] == '-' && ref_valid(uri + 2, 64, "")));
    free(uri);
    return 0;
}
