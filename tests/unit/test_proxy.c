/*
 * proxy.c: X-Forwarded-For read from the last field backwards (nothing a
 * client sends can push out what a trusted proxy appended), the rule at a
 * malformed hop, and PROXY protocol headers without a client address.
 */
#include "proxy.h"
#include "unit.h"

#include <stdlib.h>

static struct px_cidr trusted[2];

static void init_trusted(void)
{
    CHECK_INT(px_cidr_parse("10.0.0.0/8", &trusted[0]), 0);
    CHECK_INT(px_cidr_parse("2001:db8::/32", &trusted[1]), 0);
}

/* The client for the given fields, or "-" when px_xff_client keeps the peer. */
static const char *xff(const char *const *values, size_t n)
{
    static char client[PX_ADDR_MAX];

    if (px_xff_client(trusted, 2, values, n, client, sizeof(client)) != 0)
        return "-";
    return client;
}

UNIT_TEST(test_xff_rightmost_untrusted_across_fields)
{
    const char *one[] = {"1.1.1.1, 2.2.2.2, 10.0.0.5"};
    const char *many[] = {"6.6.6.6", "1.1.1.1, 6.6.6.6", "198.51.100.7"};
    const char *inner[] = {"6.6.6.6", "198.51.100.8 , 10.1.1.1", "\t10.2.2.2"};
    const char *all[] = {"10.0.0.1", "10.0.0.2, 2001:db8::9"};
    const char *v6[] = {"6.6.6.6", "2001:db9::1, 2001:db8::1"};
    const char *mapped[] = {"6.6.6.6", "::ffff:10.0.0.3"};

    init_trusted();
    CHECK_STR(xff(one, 1), "2.2.2.2");
    CHECK_STR(xff(many, 3), "198.51.100.7");
    CHECK_STR(xff(inner, 3), "198.51.100.8");
    CHECK_STR(xff(all, 2), "10.0.0.1"); /* every hop trusted: the leftmost */
    CHECK_STR(xff(v6, 2), "2001:db9::1");
    CHECK_STR(xff(mapped, 2), "6.6.6.6"); /* an IPv4-mapped trusted hop is skipped */
    CHECK_STR(xff(NULL, 0), "-");
}

/* The reviewer's attack: a client field of exactly the old 8192-byte join
 * buffer, ending in a spoofed hop, then the proxy's own field. */
UNIT_TEST(test_xff_client_bytes_cannot_crowd_out_the_proxys_field)
{
    const char *tail = ",6.6.6.6";
    size_t cap = 8192;
    char *spoof = malloc(cap + 1), *huge = malloc(4 * cap + 64);
    const char *fields[3];

    init_trusted();
    CHECK(spoof != NULL && huge != NULL);
    if (spoof == NULL || huge == NULL)
        goto out;
    memset(spoof, 'x', cap - strlen(tail));
    memcpy(spoof + cap - strlen(tail), tail, strlen(tail) + 1);
    CHECK_INT(strlen(spoof), cap);
    fields[0] = spoof;
    fields[1] = "203.0.113.9";
    CHECK_STR(xff(fields, 2), "203.0.113.9");
    fields[1] = "203.0.113.9, 10.0.0.7";
    CHECK_STR(xff(fields, 2), "203.0.113.9");
    fields[0] = "6.6.6.6";
    fields[1] = spoof;
    fields[2] = "203.0.113.10";
    CHECK_STR(xff(fields, 3), "203.0.113.10");
    /* One field, the client's part over four old caps, the proxy's appended. */
    memset(huge, '9', 4 * cap);
    snprintf(huge + 4 * cap, 64, ",6.6.6.6, 203.0.113.11");
    fields[0] = huge;
    CHECK_STR(xff(fields, 1), "203.0.113.11");
out:
    free(spoof);
    free(huge);
}

/* The rule at a hop that is no address: stop, and the client is the last
 * trusted hop read, or the peer when there was none. */
UNIT_TEST(test_xff_malformed_hop_stops_at_the_last_trusted_hop)
{
    const char *bad[] = {"6.6.6.6", "junk"};
    const char *trailing[] = {"6.6.6.6", "198.51.100.1,"};
    const char *empty[] = {"6.6.6.6", ""};
    const char *after_trusted[] = {"6.6.6.6", "junk, 10.0.0.9"};
    const char *long_hop[] = {"6.6.6.6", "1111111111111111111111111111111111111111111111111111111111111111111111111",
                              "10.0.0.9"};
    const char *empty_field[] = {"6.6.6.6", "", "10.0.0.8"};
    const char *middle[] = {"6.6.6.6", "198.51.100.2,,10.0.0.7"};
    const char *port[] = {"203.0.113.5:4444"};
    const char *brackets[] = {"[2001:db9::1]"};
    const char *untrusted_first[] = {"junk", "198.51.100.3"};

    init_trusted();
    CHECK_STR(xff(bad, 2), "-");
    CHECK_STR(xff(trailing, 2), "-");
    CHECK_STR(xff(empty, 2), "-");
    CHECK_STR(xff(after_trusted, 2), "10.0.0.9");
    CHECK_STR(xff(long_hop, 3), "10.0.0.9");
    CHECK_STR(xff(empty_field, 3), "10.0.0.8");
    CHECK_STR(xff(middle, 2), "10.0.0.7");
    CHECK_STR(xff(port, 1), "-");
    CHECK_STR(xff(brackets, 1), "-");
    CHECK_STR(xff(untrusted_first, 2), "198.51.100.3"); /* found before the bad hop is reached */
}

static long proxy_hdr(const void *p, size_t len, char *src)
{
    memset(src, 'x', PX_ADDR_MAX);
    return px_proxy_header(p, len, src, PX_ADDR_MAX);
}

UNIT_TEST(test_proxy_headers_without_an_address)
{
    static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    unsigned char v2[16 + 216];
    char src[PX_ADDR_MAX];

    CHECK_INT(proxy_hdr("PROXY UNKNOWN\r\nGET", 18, src), 15);
    CHECK_STR(src, "");
    CHECK_INT(proxy_hdr("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", 35, src), 35);
    CHECK_STR(src, "");
    CHECK_INT(proxy_hdr("PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n", 42, src), 42);
    CHECK_STR(src, "203.0.113.7");

    memset(v2, 0, sizeof(v2));
    memcpy(v2, sig, 12);
    v2[12] = 0x20; /* LOCAL, with an AF_INET block: the addresses are not the client's */
    v2[13] = 0x11;
    v2[15] = 12;
    v2[16] = 6;
    CHECK_INT(proxy_hdr(v2, 28, src), 28);
    CHECK_STR(src, "");
    v2[12] = 0x21; /* PROXY, AF_INET */
    v2[16] = 203;
    v2[19] = 8;
    CHECK_INT(proxy_hdr(v2, 28, src), 28);
    CHECK_STR(src, "203.0.0.8");
    v2[15] = 4; /* PROXY, AF_INET, 4 address bytes: malformed */
    CHECK_INT(proxy_hdr(v2, 20, src), -1);
    CHECK_INT(proxy_hdr(v2, 16, src), -1);
    v2[13] = 0x21; /* AF_INET6 with 12 bytes */
    v2[15] = 12;
    CHECK_INT(proxy_hdr(v2, 28, src), -1);
    v2[13] = 0x00; /* AF_UNSPEC */
    v2[15] = 0;
    CHECK_INT(proxy_hdr(v2, 16, src), 16);
    CHECK_STR(src, "");
    v2[13] = 0x31; /* AF_UNIX */
    v2[15] = 216;
    CHECK_INT(proxy_hdr(v2, 16 + 216, src), 16 + 216);
    CHECK_STR(src, "");
    v2[12] = 0x22; /* neither LOCAL nor PROXY */
    v2[13] = 0x00;
    v2[15] = 0;
    CHECK_INT(proxy_hdr(v2, 16, src), -1);
}
