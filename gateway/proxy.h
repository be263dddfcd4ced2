/*
 * proxy: who the client is when the gateway sits behind a load balancer.
 * CIDR lists of trusted proxies, the rightmost untrusted hop of
 * X-Forwarded-For (read from the last field backwards), and the PROXY protocol v1/v2 header. Pure: no I/O.
 */
#ifndef GW_PROXY_H
#define GW_PROXY_H

#include <stddef.h>
#include <stdint.h>

#define PX_ADDR_MAX 64 /* text form of an address, NUL included */

struct px_cidr {
    int family; /* 4 or 6 */
    uint8_t addr[16];
    int bits;
};

/* Parse "10.0.0.0/8", "192.0.2.7", "2001:db8::/32"; 0 on success. */
int px_cidr_parse(const char *s, struct px_cidr *out);
/* Is the textual address addr inside any of the n ranges? */
int px_trusted(const struct px_cidr *list, size_t n, const char *addr);

/*
 * The client behind trusted proxies, from the nvalues X-Forwarded-For field
 * values of one request, in the order they arrived (borrowed; no copy or
 * join is made, so no length of what a client sends can push out what a
 * proxy appended). Hops are read from the end: the last field first, each
 * value's comma-separated hops right to left. Trusted hops are skipped; the
 * first untrusted hop is the client. The walk stops without looking further
 * left at a hop that is empty, longer than PX_ADDR_MAX - 1 or not a bare
 * IPv4/IPv6 address (no port, no brackets): then, and when every hop is
 * trusted, the client is the last trusted hop read. Returns 0 and fills
 * client, or -1 when no hop was read (then the caller keeps the peer).
 */
int px_xff_client(const struct px_cidr *list, size_t n, const char *const *values, size_t nvalues, char *client,
                  size_t clientlen);

/*
 * PROXY protocol header at the start of data (len bytes).
 * Returns the header's length (> 0) and fills src (the client address) when
 * a complete header is present, 0 when more bytes are needed, -1 when the
 * bytes are not a PROXY header (a v2 command other than LOCAL and PROXY, or
 * an address block shorter than its TCP/UDP family needs, is not one).
 * Headers without a client address give src = "": v1 UNKNOWN, v2 LOCAL, v2
 * PROXY with the family AF_UNSPEC or AF_UNIX.
 */
long px_proxy_header(const unsigned char *data, size_t len, char *src, size_t srclen);

#endif
