/*
 * route: request-target parsing and the syntax of the identifiers a caller
 * may send (see route.h). Everything here is an allow-list.
 */
#include "route.h"

#include <string.h>

static int is_alnum(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int route_valid_job_id(const char *s, size_t len)
{
    if (len < 3 || len > ROUTE_JOB_ID_MAX || s[0] != 'j' || s[1] != '-')
        return 0;
    for (size_t i = 2; i < len; i++)
        if (!is_alnum((unsigned char)s[i]))
            return 0;
    return 1;
}

int route_valid_chars(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);

    if (n < 1 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum((unsigned char)s[i]) && strchr(extra, s[i]) == NULL)
            return 0;
    return 1;
}

int route_valid_request_id(const char *s)
{
    return route_valid_chars(s, 128, "._-");
}

int route_valid_ticket(const char *s)
{
    return route_valid_chars(s, 64, "._:/-");
}

static int path_is(const char *path, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(path, want, len) == 0;
}

enum route_kind route_parse(const char *uri, char *job_id, size_t job_id_size)
{
    enum route_kind kind = ROUTE_NOT_FOUND;
    size_t len;
    const char *seg;
    size_t seglen;

    if (job_id_size > 0)
        job_id[0] = '\0';
    if (uri == NULL || uri[0] != '/') {
        kind = ROUTE_BAD_TARGET;
        goto out;
    }
    len = strcspn(uri, "?");
    if (path_is(uri, len, "/healthz"))
        kind = ROUTE_HEALTHZ;
    else if (path_is(uri, len, "/readyz"))
        kind = ROUTE_READYZ;
    else if (path_is(uri, len, "/metrics"))
        kind = ROUTE_METRICS;
    else if (path_is(uri, len, "/audit"))
        kind = ROUTE_AUDIT;
    if (kind != ROUTE_NOT_FOUND || (!path_is(uri, len, "/jobs") && (len < 6 || memcmp(uri, "/jobs/", 6) != 0)))
        goto out;
    seg = uri + 6;
    seglen = len > 6 ? len - 6 : 0;
    /* The collection itself, or a further path segment ("/jobs/x/", "/jobs/x/y"). */
    if (seglen == 0 || memchr(seg, '/', seglen) != NULL) {
        kind = ROUTE_JOBS_OTHER;
        goto out;
    }
    if (!route_valid_job_id(seg, seglen) || seglen + 1 > job_id_size) {
        kind = ROUTE_BAD_JOB_ID;
        goto out;
    }
    memcpy(job_id, seg, seglen);
    job_id[seglen] = '\0';
    kind = ROUTE_JOB;
out:
    return kind;
}
