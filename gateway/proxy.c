/*
 * proxy: trusted-proxy ranges, X-Forwarded-For and the PROXY protocol (see
 * proxy.h). Addresses are parsed with inet_pton only: nothing else of the
 * headers is trusted.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_addr(const char *s, int *family, uint8_t out[16])
{
    memset(out, 0, 16);
    if (inet_pton(AF_INET, s, out) == 1) {
        *family = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, s, out) == 1) {
        /* An IPv4-mapped IPv6 peer is matched as IPv4. */
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(out, mapped, 12) == 0) {
            memmove(out, out + 12, 4);
            memset(out + 4, 0, 12);
            *family = 4;
        } else {
            *family = 6;
        }
        return 0;
    }
    return -1;
}

int px_cidr_parse(const char *s, struct px_cidr *out)
{
    int rc = -1;
    char tmp[PX_ADDR_MAX];
    char *slash, *end;
    long bits;

    if (strlen(s) >= sizeof(tmp))
        goto out;
    snprintf(tmp, sizeof(tmp), "%s", s);
    slash = strchr(tmp, '/');
    if (slash != NULL)
        *slash = '\0';
    if (parse_addr(tmp, &out->family, out->addr) != 0)
        goto out;
    bits = out->family == 4 ? 32 : 128;
    if (slash != NULL) {
        errno = 0;
        long b = strtol(slash + 1, &end, 10);
        if (errno != 0 || *end != '\0' || end == slash + 1 || b < 0 || b > bits)
            goto out;
        bits = b;
    }
    out->bits = (int)bits;
    rc = 0;
out:
    return rc;
}

static int in_range(const struct px_cidr *c, int family, const uint8_t a[16])
{
    int full = c->bits / 8, rest = c->bits % 8;

    if (c->family != family)
        return 0;
    if (memcmp(c->addr, a, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    return ((c->addr[full] ^ a[full]) & (uint8_t)(0xFF << (8 - rest))) == 0;
}

static int trusted_addr(const struct px_cidr *list, size_t n, int family, const uint8_t a[16])
{
    for (size_t i = 0; i < n; i++)
        if (in_range(&list[i], family, a))
            return 1;
    return 0;
}

int px_trusted(const struct px_cidr *list, size_t n, const char *addr)
{
    int family;
    uint8_t a[16];

    return parse_addr(addr, &family, a) == 0 && trusted_addr(list, n, family, a);
}

/* One X-Forwarded-For element, trimmed, into out and parsed into *family
 * and a; -1 if it is no address. */
static int xff_item(const char *p, size_t len, char *out, size_t outlen, int *family, uint8_t a[16])
{
    while (len > 0 && (*p == ' ' || *p == '\t'))
        p++, len--;
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= outlen)
        return -1;
    memcpy(out, p, len);
    out[len] = '\0';
    return parse_addr(out, family, a);
}

int px_xff_client(const struct px_cidr *list, size_t n, const char *const *values, size_t nvalues, char *client,
                  size_t clientlen)
{
    char item[PX_ADDR_MAX];
    int rc = -1, family;
    uint8_t a[16];

    for (size_t v = nvalues; v > 0; v--) {
        const char *xff = values[v - 1];
        size_t end = strlen(xff), start;
        for (;;) {
            start = end;
            while (start > 0 && xff[start - 1] != ',')
                start--;
            /* A malformed hop: do not guess past it (what is left of it
             * may be the client's own words). */
            if (xff_item(xff + start, end - start, item, sizeof(item), &family, a) != 0)
                goto out;
            snprintf(client, clientlen, "%s", item);
            rc = 0;
            if (!trusted_addr(list, n, family, a))
                goto out;
            if (start == 0)
                break;
            end = start - 1;
        }
    }
out:
    return rc;
}

static const unsigned char v2sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static long proxy_v2(const unsigned char *d, size_t len, char *src, size_t srclen)
{
    size_t total;
    unsigned char cmd, fam;

    if (len < 16)
        return 0;
    cmd = d[12];
    fam = d[13] & 0xF0;
    total = 16 + ((size_t)d[14] << 8 | d[15]);
    /* Version 2; LOCAL (0) or PROXY (1), any other command means drop. */
    if ((cmd & 0xF0) != 0x20 || (cmd & 0x0F) > 0x01 || total > 16 + 1024)
        return -1;
    /* PROXY over AF_INET/AF_INET6 with fewer address bytes than the family has. */
    if ((cmd & 0x0F) == 0x01 && ((fam == 0x10 && total < 16 + 12) || (fam == 0x20 && total < 16 + 36)))
        return -1;
    if (len < total)
        return 0;
    src[0] = '\0';
    /* LOCAL keeps the peer whatever addresses follow, as do AF_UNSPEC and AF_UNIX. */
    if ((cmd & 0x0F) == 0x01 && fam == 0x10)
        inet_ntop(AF_INET, d + 16, src, (socklen_t)srclen);
    else if ((cmd & 0x0F) == 0x01 && fam == 0x20)
        inet_ntop(AF_INET6, d + 16, src, (socklen_t)srclen);
    return (long)total;
}

static long proxy_v1(const unsigned char *d, size_t len, char *src, size_t srclen)
{
    char line[108], proto[8], a[PX_ADDR_MAX], b[PX_ADDR_MAX];
    const unsigned char *nl;
    size_t n;
    int family;
    uint8_t tmp[16];

    nl = memchr(d, '\n', len < sizeof(line) ? len : sizeof(line));
    if (nl == NULL)
        return len >= sizeof(line) ? -1 : 0;
    n = (size_t)(nl - d);
    if (n < 1 || d[n - 1] != '\r')
        return -1;
    memcpy(line, d, n - 1);
    line[n - 1] = '\0';
    src[0] = '\0';
    if (strcmp(line, "PROXY UNKNOWN") == 0 || strncmp(line, "PROXY UNKNOWN ", 14) == 0)
        return (long)(n + 1);
    if (sscanf(line, "PROXY %7s %63s %63s", proto, a, b) != 3 ||
        (strcmp(proto, "TCP4") != 0 && strcmp(proto, "TCP6") != 0) || parse_addr(a, &family, tmp) != 0)
        return -1;
    snprintf(src, srclen, "%s", a);
    return (long)(n + 1);
}

long px_proxy_header(const unsigned char *data, size_t len, char *src, size_t srclen)
{
    size_t cmp = len < 12 ? len : 12;

    if (memcmp(data, v2sig, cmp) == 0)
        return len < 12 ? 0 : proxy_v2(data, len, src, srclen);
    cmp = len < 6 ? len : 6;
    if (memcmp(data, "PROXY ", cmp) == 0)
        return len < 6 ? 0 : proxy_v1(data, len, src, srclen);
    return -1;
}
