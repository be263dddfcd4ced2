/* Request-target parsing and identifier syntax. */
#include "route.h"
#include "unit.h"

UNIT_TEST(route_jobs)
{
    char id[ROUTE_JOB_ID_MAX + 1];
    char longid[80];

    CHECK_INT(route_parse("/jobs/j-bp17m1vi6x21qhqk", id, sizeof(id)), ROUTE_JOB);
    CHECK_STR(id, "j-bp17m1vi6x21qhqk");
    CHECK_INT(route_parse("/jobs/j-1?Action=DeleteSourceServer", id, sizeof(id)), ROUTE_JOB);
    CHECK_STR(id, "j-1");
    CHECK_INT(route_parse("/jobs/j-1%26Action%3DDeleteSourceServer", id, sizeof(id)), ROUTE_BAD_JOB_ID);
    CHECK_INT(route_parse("/jobs/j-1&Action=x", id, sizeof(id)), ROUTE_BAD_JOB_ID);
    CHECK_INT(route_parse("/jobs/j-1%2Fx", id, sizeof(id)), ROUTE_BAD_JOB_ID);
    CHECK_INT(route_parse("/jobs/j-1%00", id, sizeof(id)), ROUTE_BAD_JOB_ID);
    CHECK_INT(route_parse("/jobs/x-1", id, sizeof(id)), ROUTE_BAD_JOB_ID);
    CHECK_INT(route_parse("/jobs/j-", id, sizeof(id)), ROUTE_BAD_JOB_ID);
    CHECK_INT(route_parse("/jobs/j-1/", id, sizeof(id)), ROUTE_JOBS_OTHER);
    CHECK_INT(route_parse("/jobs/j-1/x", id, sizeof(id)), ROUTE_JOBS_OTHER);
    CHECK_INT(route_parse("/jobs/", id, sizeof(id)), ROUTE_JOBS_OTHER);
    CHECK_INT(route_parse("/jobs", id, sizeof(id)), ROUTE_JOBS_OTHER);
    CHECK_INT(route_parse("/jobs?x=1", id, sizeof(id)), ROUTE_JOBS_OTHER);
    CHECK_INT(route_parse("/jobsx", id, sizeof(id)), ROUTE_NOT_FOUND);
    CHECK_INT(route_parse("/job", id, sizeof(id)), ROUTE_NOT_FOUND);
    CHECK_INT(route_parse("/", id, sizeof(id)), ROUTE_NOT_FOUND);
    CHECK_INT(route_parse("http://x/jobs/j-1", id, sizeof(id)), ROUTE_BAD_TARGET);
    CHECK_INT(route_parse("/healthz", id, sizeof(id)), ROUTE_HEALTHZ);
    CHECK_INT(route_parse("/readyz?x", id, sizeof(id)), ROUTE_READYZ);
    memset(longid, 'a', sizeof(longid));
    memcpy(longid, "/jobs/j-", 8);
    longid[8 + 64] = '\0';
    CHECK_INT(route_parse(longid, id, sizeof(id)), ROUTE_JOB);
    longid[8 + 64] = 'a';
    longid[8 + 65] = '\0';
    CHECK_INT(route_parse(longid, id, sizeof(id)), ROUTE_BAD_JOB_ID);
}

UNIT_TEST(route_identifiers)
{
    char big[200];

    CHECK(route_valid_request_id("abc-123_x.y"));
    CHECK(!route_valid_request_id(""));
    CHECK(!route_valid_request_id("a b"));
    memset(big, 'a', sizeof(big));
    big[128] = '\0';
    CHECK(route_valid_request_id(big));
    big[128] = 'a';
    big[129] = '\0';
    CHECK(!route_valid_request_id(big));
    CHECK(route_valid_ticket("CHG-2026:42/a.b_c"));
    CHECK(!route_valid_ticket("CHG 1"));
    CHECK(!route_valid_ticket("<script>"));
    big[64] = '\0';
    CHECK(route_valid_ticket(big));
    big[64] = 'a';
    big[65] = '\0';
    CHECK(!route_valid_ticket(big));
}
