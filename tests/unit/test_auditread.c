/* GET /audit's scan: newest first, filters, cursor, a line still being written. */
#include "auditread.h"
#include "unit.h"

#include <stdlib.h>

UNIT_TEST(auditread_scan_pages_newest_first)
{
    struct ar_query q;
    struct buf out;
    size_t count = 0;
    uint64_t next = 0;
    const char *why = NULL;
    const char *text =
        "{\"seq\":1,\"prev\":\"x\",\"ts\":\"2026-01-01T00:00:00.000Z\",\"instance\":\"gw\",\"event\":\"decision\","
        "\"team\":\"a\"}\n"
        "{\"seq\":2,\"prev\":\"x\",\"ts\":\"2026-01-02T00:00:00.000Z\",\"instance\":\"gw\",\"event\":\"decision\","
        "\"team\":\"b\"}\n"
        "{\"seq\":3,\"prev\":\"x\",\"ts\":\"2026-01-03T00:00:00.000Z\",\"instance\":\"gw\",\"event\":\"decision\","
        "\"team\":\"a\"}\n"
        "{\"seq\":4,\"prev\":\"x\",\"ts\":\"2026-01-04T00:00:00.000Z\",\"instance\":\"gw\",\"event\":\"deci";

    memset(&q, 0, sizeof(q));
    snprintf(q.path, sizeof(q.path), "%s", unit_file("audit.jsonl", text, 0600));
    snprintf(q.instance, sizeof(q.instance), "gw");
    CHECK(ar_parse_query("limit=2", &q, &why) == 0);
    buf_init(&out, 65536);
    CHECK(ar_scan(&q, &out, &count, &next) == 0);
    /* The torn line 4 is skipped; 3 and 2 come first. */
    CHECK_INT(count, 2);
    CHECK_INT(next, 2);
    CHECK(out.p != NULL && strstr(out.p, "\"seq\":3") < strstr(out.p, "\"seq\":2"));
    CHECK(strstr(out.p, "\"seq\":4") == NULL);
    buf_reset(&out);
    q.cursor = next;
    CHECK(ar_scan(&q, &out, &count, &next) == 0);
    CHECK_INT(count, 1);
    CHECK_INT(next, 0);
    CHECK(strstr(out.p, "\"seq\":1") != NULL);
    buf_reset(&out);
    memset(&q, 0, sizeof(q));
    snprintf(q.path, sizeof(q.path), "%s", unit_file("audit2.jsonl", text, 0600));
    CHECK(ar_parse_query("team=a&since=2026-01-02T00:00:00Z", &q, &why) == 0);
    CHECK(ar_scan(&q, &out, &count, &next) == 0);
    CHECK_INT(count, 1);
    CHECK(strstr(out.p, "\"seq\":3") != NULL);
    CHECK(ar_parse_query("limit=0", &q, &why) != 0);
    CHECK(ar_parse_query("team=%zz", &q, &why) != 0);
    CHECK(ar_parse_query("bogus=1", &q, &why) != 0);
    buf_free(&out);
}
