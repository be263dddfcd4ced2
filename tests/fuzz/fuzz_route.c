/*
 * fuzz_route: what a client controls in a request's head, before anything
 * is authenticated. The same bytes go to every parser of it:
 *   - the request target as libevent hands it over (a C string of any
 *     bytes), through route_parse: a JobId it returns must be valid and must
 *     be the bytes of the path, not something made up;
 *   - the header values with a syntax of their own (X-Request-Id,
 *     X-Change-Ticket), checked against an independent implementation;
 *   - X-Forwarded-For fields (the input split at newlines) behind fixed
 *     trusted proxies (px_xff_client): the last field is read first; and the
 *     PROXY protocol v1/v2 header at the start of a connection
 *     (px_proxy_header, raw bytes), which must be stream-consistent: a
 *     header found in n bytes is "need more" in fewer, never "not a header";
 *   - a trusted_proxies entry (px_cidr_parse);
 *   - GET /audit's query string (ar_parse_query).
 */
#include "auditread.h"
#include "proxy.h"
#include "route.h"

#include "fuzz_util.h"

#include <arpa/inet.h>

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

static int is_addr(const char *s)
{
    unsigned char a[16];

    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

static struct px_cidr trusted[3];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FUZZ_CHECK(px_cidr_parse("10.0.0.0/8", &trusted[0]) == 0 && px_cidr_parse("192.168.1.7", &trusted[1]) == 0 &&
               px_cidr_parse("fd00::/8", &trusted[2]) == 0);
    return 0;
}

static void check_proxy(const uint8_t *data, size_t size)
{
    char src[PX_ADDR_MAX];
    long n;

    memset(src, 'x', sizeof(src));
    n = px_proxy_header(data, size, src, sizeof(src));
    FUZZ_SAY("route: PROXY header %ld \"%.*s\"\n", n, n > 0 ? (int)sizeof(src) : 0, src);
    FUZZ_CHECK(n >= -1 && n <= (long)size && n <= 16 + 1024);
    if (n <= 0)
        return;
    FUZZ_CHECK(memchr(src, '\0', sizeof(src)) != NULL);
    if (src[0] != '\0')
        FUZZ_CHECK(is_addr(src));
    /* Stream consistency: the same header in exactly its bytes, and "need more" before that. */
    FUZZ_CHECK(px_proxy_header(data, (size_t)n, src, sizeof(src)) == n);
    FUZZ_CHECK(px_proxy_header(data, (size_t)n - 1, src, sizeof(src)) == 0);
    FUZZ_CHECK(px_proxy_header(data, (size_t)n / 2, src, sizeof(src)) == 0);
    FUZZ_CHECK(px_proxy_header(data, 0, src, sizeof(src)) == 0);
}

/* s split at newlines is a request's X-Forwarded-For fields, in order. */
static void check_xff(const char *s)
{
    char client[PX_ADDR_MAX];
    struct px_cidr c;
    char *copy = strdup(s), *p, *nl;
    const char *fields[8];
    size_t n = 0;

    FUZZ_CHECK(copy != NULL);
    for (p = copy; n < 8; p = nl + 1) {
        fields[n++] = p;
        if ((nl = strchr(p, '\n')) == NULL)
            break;
        *nl = '\0';
    }
    memset(client, 'x', sizeof(client));
    if (px_xff_client(trusted, 3, fields, n, client, sizeof(client)) == 0) {
        int inside = 0;
        for (size_t i = 0; i < n; i++)
            inside |= strstr(fields[i], client) != NULL;
        FUZZ_CHECK(memchr(client, '\0', sizeof(client)) != NULL && is_addr(client) && inside);
        FUZZ_SAY("route: X-Forwarded-For client %s\n", client);
    }
    /* When the last field alone names an untrusted client, the fields before it change nothing. */
    if (n > 1 && px_xff_client(trusted, 3, fields + n - 1, 1, client, sizeof(client)) == 0 &&
        !px_trusted(trusted, 3, client)) {
        char again[PX_ADDR_MAX];
        FUZZ_CHECK(px_xff_client(trusted, 3, fields, n, again, sizeof(again)) == 0 && strcmp(again, client) == 0);
    }
    if (px_cidr_parse(s, &c) == 0)
        FUZZ_CHECK((c.family == 4 && c.bits >= 0 && c.bits <= 32) || (c.family == 6 && c.bits >= 0 && c.bits <= 128));
    free(copy);
}

static void check_query(const char *s)
{
    struct ar_query q;
    const char *why = NULL;
    const char *query = strchr(s, '?') ? strchr(s, '?') + 1 : s;

    memset(&q, 0, sizeof(q));
    if (ar_parse_query(query, &q, &why) != 0) {
        FUZZ_CHECK(why != NULL);
        return;
    }
    FUZZ_CHECK(q.limit >= 1 && q.limit <= AR_LIMIT_MAX);
    FUZZ_CHECK(memchr(q.team, '\0', sizeof(q.team)) && memchr(q.sub, '\0', sizeof(q.sub)) &&
               memchr(q.job, '\0', sizeof(q.job)) && memchr(q.decision, '\0', sizeof(q.decision)) &&
               memchr(q.result, '\0', sizeof(q.result)) && memchr(q.event, '\0', sizeof(q.event)));
    FUZZ_CHECK(q.decision[0] == '\0' || strcmp(q.decision, "allow") == 0 || strcmp(q.decision, "deny") == 0);
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
    /* Everything under /jobs goes to the jobs handler (audited), nothing else does. */
    {
        int under_jobs = (pathlen == 5 && memcmp(uri, "/jobs", 5) == 0) || (pathlen >= 6 && memcmp(uri, "/jobs/", 6) == 0);
        FUZZ_CHECK(under_jobs == (kind == ROUTE_JOB || kind == ROUTE_BAD_JOB_ID || kind == ROUTE_JOBS_OTHER));
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
    check_proxy(data, size);
    check_xff(uri);
    check_query(uri);
    free(uri);
    return 0;
}
