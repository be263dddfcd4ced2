/* The status mapping table of README.md, row by row. */
#include "map.h"
#include "unit.h"

static struct map_result m(long status, const char *body)
{
    struct map_result r;
    map_answer(MAP_ANSWERED, status, body, body ? strlen(body) : 0, &r);
    return r;
}

UNIT_TEST(map_table)
{
    struct map_result r;

    r = m(200, "{\"RequestId\":\"473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E\"}");
    CHECK_INT(r.status, 200);
    CHECK_STR(r.result, "deleted");
    CHECK_STR(r.upstream_request_id, "473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E");
    r = m(400, "{\"RequestId\":\"R1\",\"HostId\":\"smc.aliyuncs.com\",\"Code\":\"ReplicationJob.InvalidStatus\","
               "\"Message\":\"no\"}");
    CHECK_INT(r.status, 409);
    CHECK_STR(r.result, "refused");
    CHECK_STR(r.upstream_code, "ReplicationJob.InvalidStatus");
    CHECK(!r.retryable);
    r = m(404, "{\"RequestId\":\"R2\",\"Code\":\"InvalidJobId.NotFound\"}");
    CHECK_INT(r.status, 404);
    r = m(404, "{\"RequestId\":\"R3\",\"Code\":\"InvalidAccessKeyId.NotFound\"}");
    CHECK_INT(r.status, 502);
    r = m(400, "{\"RequestId\":\"R4\",\"Code\":\"SignatureDoesNotMatch\"}");
    CHECK_INT(r.status, 502);
    CHECK(!r.retryable);
    r = m(403, "{\"RequestId\":\"R5\",\"Code\":\"Forbidden.RAM\"}");
    CHECK_INT(r.status, 502);
    r = m(400, "{\"RequestId\":\"R6\",\"Code\":\"Throttling.User\"}");
    CHECK_INT(r.status, 429);
    CHECK(r.retryable && r.throttled);
    r = m(503, "{\"RequestId\":\"R7\",\"Code\":\"ServiceUnavailable\"}");
    CHECK_INT(r.status, 502);
    CHECK(r.retryable);
    r = m(500, "{\"RequestId\":\"R8\",\"Code\":\"InternalError\"}");
    CHECK_INT(r.status, 502);
    CHECK_STR(r.result, "failed");
    r = m(502, "<html>bad gateway</html>");
    CHECK_INT(r.status, 502);
    CHECK(r.retryable);
    r = m(200, "<html>oops</html>");
    CHECK_INT(r.status, 502);
    CHECK_STR(r.result, "unknown");
    /* Upstream strings outside the allowed characters are dropped. */
    r = m(400, "{\"RequestId\":\"R\\r\\nX-Evil: 1\",\"Code\":\"Bad Code\\n\"}");
    CHECK_STR(r.upstream_request_id, "");
    CHECK_STR(r.upstream_code, "");
}

UNIT_TEST(map_transport)
{
    struct map_result r;

    map_answer(MAP_TIMEOUT_AFTER_SEND, 0, NULL, 0, &r);
    CHECK_INT(r.status, 504);
    CHECK_STR(r.result, "unknown");
    CHECK(!r.retryable);
    map_answer(MAP_CONNECT_FAILED, 0, NULL, 0, &r);
    CHECK_INT(r.status, 502);
    CHECK(r.retryable);
    map_answer(MAP_TLS_FAILED, 0, NULL, 0, &r);
    CHECK_INT(r.status, 502);
    CHECK(!r.retryable);
    CHECK(!r.upstream_answered);
    map_answer(MAP_BROKEN_AFTER_SEND, 0, NULL, 0, &r);
    CHECK_STR(r.result, "unknown");
    CHECK(!r.retryable);
}

UNIT_TEST(map_nonce_used_and_refusals_after_an_uncertain_attempt)
{
    struct map_result r;

    /* Only an earlier copy of the same request can have used its nonce. */
    r = m(400, "{\"RequestId\":\"R9\",\"Code\":\"SignatureNonceUsed\"}");
    CHECK_INT(r.status, 502);
    CHECK_STR(r.result, "unknown");
    CHECK_STR(r.type, "upstream-ambiguous");
    CHECK(!r.retryable);
    /* After an attempt answered 5xx, "the job is gone" may be its doing. */
    r = m(404, "{\"RequestId\":\"R2\",\"Code\":\"InvalidJobId.NotFound\"}");
    map_after_uncertain(&r);
    CHECK_INT(r.status, 502);
    CHECK_STR(r.result, "unknown");
    CHECK_STR(r.type, "upstream-ambiguous");
    r = m(400, "{\"RequestId\":\"R1\",\"Code\":\"ReplicationJob.InvalidStatus\"}");
    map_after_uncertain(&r);
    CHECK_STR(r.result, "unknown");
    /* Other results stand. */
    r = m(200, "{\"RequestId\":\"R0\"}");
    map_after_uncertain(&r);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.result, "deleted");
    r = m(500, "{\"RequestId\":\"R8\",\"Code\":\"InternalError\"}");
    map_after_uncertain(&r);
    CHECK_STR(r.result, "failed");
    CHECK(r.retryable);
}
