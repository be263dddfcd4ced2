/* GET /audit's scan: newest first, filters, cursor, a line still being written. */
#include "auditread.h"
#include "unit.h"

#include <stdlib.h>
#include <unistd.h>

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

/* A line of the test logs: seq n, a decision. */
static void add_entry(struct buf *b, unsigned n)
{
    buf_printf(b,
               "{\"seq\":%u,\"prev\":\"x\",\"ts\":\"2026-01-01T00:00:00.000Z\",\"instance\":\"gw\","
               "\"event\":\"decision\"}\n",
               n);
}

/* The seqs of a page, in order, as "5,4,3". */
static void page_seqs(const struct buf *page, char *out, size_t outlen)
{
    const char *p = page->p;
    size_t n = 0;

    out[0] = '\0';
    while (p != NULL && (p = strstr(p, "\"seq\":")) != NULL && n + 12 < outlen) {
        p += 6;
        n += (size_t)snprintf(out + n, outlen - n, "%s%lu", n > 0 ? "," : "", strtoul(p, NULL, 10));
    }
}

/*
 * A size rotation while a read runs: the reader scanned audit.jsonl (1..3),
 * then lists the folder and finds that very file under its rotated name
 * (the same inode), and a newer rotated file (4..5) of a second rotation.
 * Neither may show again: the page stays 3,2,1, newest first, no repeats.
 */
UNIT_TEST(auditread_scan_skips_the_current_file_under_its_rotated_name)
{
    struct ar_query q;
    struct buf text, out;
    size_t count = 0;
    uint64_t next = 0;
    char seqs[256], dir[256], path[256], rot[320], newer[320];
    const char *cur;

    buf_init(&text, 65536);
    for (unsigned i = 1; i <= 3; i++)
        add_entry(&text, i);
    cur = unit_file("race.jsonl", text.p, 0600);
    snprintf(path, sizeof(path), "%s", cur);
    snprintf(dir, sizeof(dir), "%s", cur);
    *strrchr(dir, '/') = '\0';
    snprintf(rot, sizeof(rot), "%s/race-20260101T000000-1.jsonl", dir);
    unlink(rot);
    CHECK(link(path, rot) == 0);
    buf_reset(&text);
    for (unsigned i = 4; i <= 5; i++)
        add_entry(&text, i);
    snprintf(newer, sizeof(newer), "%s",
             unit_file("race-20260101T000001-4.jsonl", text.p, 0600)); /* rotated after the scan began */
    memset(&q, 0, sizeof(q));
    snprintf(q.path, sizeof(q.path), "%s", path);
    snprintf(q.instance, sizeof(q.instance), "gw");
    q.limit = 100;
    buf_init(&out, 65536);
    CHECK(ar_scan(&q, &out, &count, &next) == 0);
    page_seqs(&out, seqs, sizeof(seqs));
    CHECK_STR(seqs, "3,2,1");
    CHECK_INT(count, 3);
    CHECK_INT(next, 0);
    unlink(rot);
    unlink(newer);
    buf_free(&out);
    buf_free(&text);
}
