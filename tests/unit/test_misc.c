/* Encoders, JSON escaping, rate limiting, credentials, clock parsing, metrics. */
#include "buf.h"
#include "clock.h"
#include "codec.h"
#include "creds.h"
#include "metrics.h"
#include "ratelimit.h"
#include "unit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

UNIT_TEST(codec_b64url_strict)
{
    unsigned char out[64];

    CHECK_INT(codec_b64url_decode(out, sizeof(out), "aGVsbG8", 7), 5);
    CHECK(memcmp(out, "hello", 5) == 0);
    CHECK_INT(codec_b64url_decode(out, sizeof(out), "aGVsbG8=", 8), -1); /* no padding in JWS */
    CHECK_INT(codec_b64url_decode(out, sizeof(out), "aGVs+G8", 7), -1);  /* standard alphabet */
    CHECK_INT(codec_b64url_decode(out, sizeof(out), "aGVsbG9", 7), -1);  /* non-zero leftover bits */
    CHECK_INT(codec_b64url_decode(out, 4, "aGVsbG8", 7), -1);            /* overflow */
    CHECK_INT(codec_b64url_decode(out, sizeof(out), "a", 1), -1);
    CHECK_INT(codec_b64_decode(out, sizeof(out), "aGVsbG8=", 8), 5);
    CHECK_INT(codec_b64_decode(out, sizeof(out), "aGVsbG8", 7), -1);
}

UNIT_TEST(buf_json_escaping)
{
    struct buf b;

    buf_init(&b, 1024);
    buf_json_str(&b, "a\"b\\c\n\x01\xff\xc3\xa9", 10);
    CHECK_STR(b.p, "\"a\\\"b\\\\c\\u000a\\u0001\\ufffd\xc3\xa9\"");
    buf_reset(&b);
    buf_json_str(&b, "\xed\xa0\x80", 3); /* an encoded surrogate is not UTF-8 */
    CHECK_STR(b.p, "\"\\ufffd\\ufffd\\ufffd\"");
    buf_free(&b);
    buf_init(&b, 4);
    CHECK(buf_adds(&b, "12345") != 0);
    CHECK(b.len == 0);
    CHECK(buf_adds(&b, "1234") == 0);
    buf_free(&b);
}

static int summaries;
static uint64_t last_count;
static void on_summary(void *arg, const char *client, uint64_t n, int64_t start)
{
    (void)arg;
    (void)client;
    (void)start;
    summaries++;
    last_count = n;
}

UNIT_TEST(buf_numbers)
{
    struct buf b;

    buf_init(&b, 256);
    buf_addu(&b, 0);
    buf_addc(&b, ' ');
    buf_addu(&b, 18446744073709551615ULL);
    buf_addc(&b, ' ');
    buf_addi(&b, -9223372036854775807LL - 1);
    buf_addc(&b, ' ');
    buf_addi(&b, 42);
    CHECK_STR(b.p, "0 18446744073709551615 -9223372036854775808 42");
    buf_reset(&b);
    buf_printf(&b, "%s-%d", "x", 7);
    buf_printf(&b, "%0300d", 1); /* over the cap: refused, nothing added */
    CHECK_STR(b.p, "x-7");
    buf_free(&b);
}

UNIT_TEST(ratelimit_refusals)
{
    struct rl_refusals *r = rl_refusals_new(10, 60000, 2);
    int admitted = 0;

    for (int i = 0; i < 25; i++)
        admitted += rl_refusal_admit(r, "10.0.0.1", 1000 + i, on_summary, NULL);
    CHECK_INT(admitted, 10);
    CHECK_INT(summaries, 0);
    /* Next window: the summary of 15 comes first, then recording resumes. */
    CHECK_INT(rl_refusal_admit(r, "10.0.0.1", 62000, on_summary, NULL), 1);
    CHECK_INT(summaries, 1);
    CHECK_INT(last_count, 15);
    /* The table is capped: extra clients share "other". */
    rl_refusal_admit(r, "10.0.0.2", 62000, on_summary, NULL);
    for (int i = 0; i < 20; i++)
        rl_refusal_admit(r, "10.0.0.3", 62000, on_summary, NULL);
    rl_refusals_sweep(r, INT64_MAX, on_summary, NULL);
    CHECK_INT(summaries, 2);
    rl_refusals_free(r);
}

UNIT_TEST(ratelimit_bucket)
{
    struct rl_bucket b;

    rl_bucket_init(&b, 3, 3.0 / 60.0, 0);
    CHECK_INT(rl_bucket_take(&b, 0), 0);
    CHECK_INT(rl_bucket_take(&b, 0), 0);
    CHECK_INT(rl_bucket_take(&b, 0), 0);
    CHECK_INT(rl_bucket_take(&b, 0), 20);
    CHECK_INT(rl_bucket_take(&b, 20000), 0);
}

UNIT_TEST(creds_secrecy_and_mask)
{
    struct buf err;
    struct creds *c = NULL;
    char m[32];

    buf_init(&err, 4096);
    CHECK(creds_load(unit_file("c1.json",
                               "{\"prod\":{\"access_key_id\":\"LTAI5tAbcdEfgh\",\"access_key_secret\":\"s\"}}", 0644),
                     &c, &err) != 0);
    CHECK(strstr(err.p, "mode 0644") != NULL);
    CHECK(creds_load(unit_file("c2.json",
                               "{\"prod\":{\"access_key_id\":\"LTAI5tAbcdEfgh\",\"access_key_secret\":\"s\"}}", 0460),
                     &c, &err) != 0);
    CHECK(creds_load(unit_file("c3.json",
                               "{\"prod\":{\"access_key_id\":\"LTAI5tAbcdEfgh\",\"access_key_secret\":\"s\"}}", 0440),
                     &c, &err) == 0);
    CHECK_STR(creds_find(c, "prod")->secret, "s");
    creds_free(c);
    c = NULL;
    buf_reset(&err);
    CHECK(creds_load(unit_file("c4.json",
                               "{\"prod\":{\"access_key_id\":\"x\",\"access_key_secret\":\"topsecret\",\"x\":1", 0600),
                     &c, &err) != 0);
    CHECK(strstr(err.p, "topsecret") == NULL); /* parse errors never quote a secret file */
    creds_mask("LTAI5tAbcdEfgh12", m, sizeof(m));
    CHECK_STR(m, "LTAI****gh12");
    creds_mask("LTAIshort", m, sizeof(m));
    CHECK_STR(m, "****");
    buf_free(&err);
}

UNIT_TEST(clock_rfc3339)
{
    int64_t ms;
    char out[40];

    CHECK(clock_parse_rfc3339("2026-11-28T11:48:04Z", &ms) == 0);
    CHECK_INT(ms, 1795866484000LL);
    CHECK(clock_parse_rfc3339("2026-11-28T12:48:04.5+01:00", &ms) == 0);
    CHECK_INT(ms, 1795866484500LL);
    CHECK(clock_parse_rfc3339("2026-11-28 11:48:04", &ms) != 0);
    clock_rfc3339_ms(out, sizeof(out), 1795866484007LL);
    CHECK_STR(out, "2026-11-28T11:48:04.007Z");
    clock_iso8601_s(out, sizeof(out), 1795866484007LL);
    CHECK_STR(out, "2026-11-28T11:48:04Z");
}

UNIT_TEST(buf_copy_cuts_and_terminates)
{
    char small[4], big[16];

    CHECK_INT(buf_copy(big, sizeof(big), "abc"), 3);
    CHECK_STR(big, "abc");
    CHECK_INT(buf_copy(small, sizeof(small), "abcdef"), 3);
    CHECK_STR(small, "abc");
    CHECK_INT(buf_copy(small, 1, "abc"), 0);
    CHECK_STR(small, "");
}

/* Another thread observing while a scrape renders: every scrape's +Inf
 * bucket equals its _count (a Prometheus histogram that reads otherwise is
 * rejected by checkers, and tests/blackbox checks it too). */
struct hist_hammer {
    struct met_hist *h;
    atomic_int stop;
};

static void *hammer_hist(void *arg)
{
    struct hist_hammer *hh = arg;

    while (!atomic_load(&hh->stop))
        met_hist_observe(hh->h, 0.0005);
    return NULL;
}

UNIT_TEST(metrics_histogram_scrape_is_consistent)
{
    static struct met_hist h;
    struct hist_hammer hh = {&h, 0};
    struct metrics *m = met_new();
    struct met_gauges g;
    struct buf out;
    pthread_t t;
    int bad = 0;

    memset(&g, 0, sizeof(g));
    g.audit_write = &h;
    buf_init(&out, 1 << 20);
    CHECK(m != NULL && pthread_create(&t, NULL, hammer_hist, &hh) == 0);
    for (int i = 0; i < 2000 && m != NULL; i++) {
        static const char inf_key[] = "smc_gateway_audit_write_seconds_bucket{le=\"+Inf\"} ";
        static const char cnt_key[] = "smc_gateway_audit_write_seconds_count{} ";
        const char *inf, *cnt;
        buf_reset(&out);
        CHECK_INT(met_render(m, &g, &out), 0);
        inf = strstr(out.p, inf_key);
        cnt = strstr(out.p, cnt_key);
        CHECK(inf != NULL && cnt != NULL);
        if (inf != NULL && cnt != NULL &&
            strtoull(inf + sizeof(inf_key) - 1, NULL, 10) != strtoull(cnt + sizeof(cnt_key) - 1, NULL, 10))
            bad++;
    }
    atomic_store(&hh.stop, 1);
    pthread_join(t, NULL);
    CHECK_INT(bad, 0);
    buf_free(&out);
    met_free(m);
}
