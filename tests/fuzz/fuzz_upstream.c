/*
 * fuzz_upstream: what the SMC API (or anything that answers in its place)
 * sends back, through map_answer. The first two input bytes are the HTTP
 * status (big-endian, so 0x00 0xC8 is 200), the rest is the body. Checked:
 * the caller only ever gets one of the statuses of the README's table, and
 * the upstream strings the gateway copies into headers, problem bodies and
 * the audit log are NUL-terminated and of their allowed characters.
 */
#include "map.h"

#include "fuzz_util.h"

static int alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static void check_token(const char *s, size_t cap, const char *extra)
{
    const char *end = memchr(s, '\0', cap);

    FUZZ_CHECK(end != NULL);
    for (; s < end; s++)
        FUZZ_CHECK(alnum(*s) || strchr(extra, *s) != NULL);
}

static void check_result(const struct map_result *r, long http_status)
{
    struct map_result again;

    FUZZ_CHECK(r->status == 200 || r->status == 404 || r->status == 409 || r->status == 429 || r->status == 502 ||
               r->status == 504);
    FUZZ_CHECK(r->result != NULL);
    FUZZ_CHECK(strcmp(r->result, "deleted") == 0 || strcmp(r->result, "refused") == 0 ||
               strcmp(r->result, "failed") == 0 || strcmp(r->result, "unknown") == 0);
    /* Only a 200 with a RequestId and no error code is a deletion. */
    FUZZ_CHECK((r->status == 200) == (strcmp(r->result, "deleted") == 0));
    if (r->status == 200)
        FUZZ_CHECK(http_status == 200 && r->type == NULL && r->upstream_request_id[0] != '\0' &&
                   r->upstream_code[0] == '\0');
    else
        FUZZ_CHECK(r->type != NULL && r->title != NULL);
    if (r->throttled)
        FUZZ_CHECK(r->status == 429 && r->retryable);
    check_token(r->upstream_request_id, sizeof(r->upstream_request_id), "-_.");
    check_token(r->upstream_code, sizeof(r->upstream_code), "-_.:");
    /* A later attempt's refusal after an uncertain one is never "refused". */
    again = *r;
    map_after_uncertain(&again);
    FUZZ_CHECK(strcmp(again.result, "refused") != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct map_result r;
    long status;
    char *body;
    size_t len;

    if (size < 2)
        return 0;
    status = (long)data[0] << 8 | data[1];
    len = size - 2;
    body = fuzz_dup(data + 2, len, 0);
    memset(&r, 0xA5, sizeof(r));
    map_answer(MAP_ANSWERED, status, body, len, &r);
    FUZZ_SAY("upstream: %ld -> %d %s %s code \"%s\" rid \"%s\"\n", status, r.status, r.result, r.type ? r.type : "-",
             r.upstream_code, r.upstream_request_id);
    check_result(&r, status);
    FUZZ_CHECK(r.upstream_answered);
    /* A transport failure ignores whatever body came with it. */
    for (int t = MAP_CONNECT_FAILED; t <= MAP_INTERNAL; t++) {
        memset(&r, 0xA5, sizeof(r));
        map_answer((enum map_transport)t, status, body, len, &r);
        check_result(&r, status);
        FUZZ_CHECK(!r.upstream_answered && r.upstream_code[0] == '\0' && r.upstream_request_id[0] == '\0');
    }
    free(body);
    return 0;
}
