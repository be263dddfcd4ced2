/* Alibaba RPC signature V1: the published vectors, reproduced exactly. */
#include "sign.h"
#include "unit.h"

#include <stdlib.h>

static const char *sig_of(const char *method, const struct sign_param *p, size_t n)
{
    static char sig[SIGN_SIG_LEN];

    if (sign_rpc(method, p, n, "testsecret", sig, NULL) != 0)
        return "(error)";
    return sig;
}

UNIT_TEST(sign_vector_describe_dedicated_hosts)
{
    /* Deliberately out of order: sign_rpc sorts. */
    struct sign_param p[] = {
        {"Version", "2014-05-26"},
        {"AccessKeyId", "testid"},
        {"Action", "DescribeDedicatedHosts"},
        {"Format", "JSON"},
        {"RegionId", "cn-beijing"},
        {"SignatureMethod", "HMAC-SHA1"},
        {"SignatureNonce", "edb2b34af0af9a6d14deaf7c1a5315eb"},
        {"SignatureVersion", "1.0"},
        {"Timestamp", "2023-03-13T08:34:30Z"},
    };
    CHECK_STR(sig_of("GET", p, 9), "9NaGiOspFP5UPcwX8Iwt2YJXXuk=");
}

UNIT_TEST(sign_vector_describe_regions_get_and_post)
{
    struct sign_param p[] = {
        {"AccessKeyId", "testid"},
        {"Action", "DescribeRegions"},
        {"Format", "XML"},
        {"SignatureMethod", "HMAC-SHA1"},
        {"SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"},
        {"SignatureVersion", "1.0"},
        {"Timestamp", "2016-02-23T12:46:24Z"},
        {"Version", "2014-05-26"},
    };
    CHECK_STR(sig_of("GET", p, 8), "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
    CHECK_STR(sig_of("POST", p, 8), "MxbnVAM4w6sft9xjVpe/GCKueuk=");
}

UNIT_TEST(sign_percent_encoding)
{
    struct buf b;
    const char *in = "123abc!@#$%^&*()-=_+ ~|\\/";

    buf_init(&b, 1024);
    CHECK(sign_encode(&b, in, strlen(in)) == 0);
    CHECK_STR(b.p, "123abc%21%40%23%24%25%5E%26%2A%28%29-%3D_%2B%20~%7C%5C%2F");
    buf_reset(&b);
    /* UTF-8 bytes are encoded one by one, upper-case hex. */
    CHECK(sign_encode(&b, "\xc3\xa9", 2) == 0);
    CHECK_STR(b.p, "%C3%A9");
    buf_free(&b);
}

UNIT_TEST(sign_call_builds_sorted_signed_form)
{
    struct sign_call c = {
        "POST",   "DeleteReplicationJob", "2019-06-01", "j-bp17m1vi6x21qhqk", "testid", "testsecret", NULL,
        "nonce1", "2026-01-01T00:00:00Z"};
    struct buf b;
    struct sign_param p[] = {
        {"AccessKeyId", "testid"},       {"Action", "DeleteReplicationJob"},    {"Format", "JSON"},
        {"JobId", "j-bp17m1vi6x21qhqk"}, {"SignatureMethod", "HMAC-SHA1"},      {"SignatureNonce", "nonce1"},
        {"SignatureVersion", "1.0"},     {"Timestamp", "2026-01-01T00:00:00Z"}, {"Version", "2019-06-01"},
    };
    char sig[SIGN_SIG_LEN], want[1024];
    struct buf enc;

    buf_init(&b, 4096);
    buf_init(&enc, 256);
    CHECK(sign_call(&c, &b) == 0);
    CHECK(sign_rpc("POST", p, 9, "testsecret", sig, NULL) == 0);
    sign_encode(&enc, sig, strlen(sig));
    snprintf(want, sizeof(want),
             "AccessKeyId=testid&Action=DeleteReplicationJob&Format=JSON&JobId=j-bp17m1vi6x21qhqk&SignatureMethod="
             "HMAC-SHA1&SignatureNonce=nonce1&SignatureVersion=1.0&Timestamp=2026-01-01T00%%3A00%%3A00Z&Version="
             "2019-06-01&Signature=%s",
             enc.p);
    CHECK_STR(b.p, want);
    /* A security token joins the signed set. */
    c.security_token = "sts/token+x";
    buf_reset(&b);
    CHECK(sign_call(&c, &b) == 0);
    CHECK(strstr(b.p, "&SecurityToken=sts%2Ftoken%2Bx&") != NULL);
    buf_free(&b);
    buf_free(&enc);
}

UNIT_TEST(sign_nonce_is_fresh)
{
    char a[33], b[33];

    CHECK(sign_nonce(a) == 0 && sign_nonce(b) == 0);
    CHECK_INT(strlen(a), 32);
    CHECK(strcmp(a, b) != 0);
}

static int cmp_nonce(const void *x, const void *y)
{
    return strcmp(x, y);
}

/* Across several refills of the per-thread pool: all distinct, all hex. */
UNIT_TEST(sign_nonces_stay_distinct_across_pool_refills)
{
    enum { N = 1000 };
    static char n[N][33];
    int bad = 0;

    for (int i = 0; i < N; i++) {
        bad |= sign_nonce(n[i]) != 0 || strlen(n[i]) != 32 || strspn(n[i], "0123456789abcdef") != 32;
    }
    CHECK(!bad);
    qsort(n, N, sizeof(n[0]), cmp_nonce);
    for (int i = 1; i < N; i++)
        bad |= strcmp(n[i - 1], n[i]) == 0;
    CHECK(!bad);
}
