/*
 * proxy: who the client is when the gateway sits behind a load balancer.
 * CIDR lists of trusted proxies, the rightmost untrusted hop of
 * X-Forwarded-For, and the PROXY protocol v1/v2 header. Pure: no I/O.
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
 * The client behind trusted proxies: walk X-Forwarded-For (comma-separated,
 * all headers joined in order) from the right, skipping trusted hops; the
 * first untrusted, well-formed address is the client. When every hop is
 * trusted, the leftmost is. Returns 0 and fills client, or -1 when xff holds
 * no usable address (then the caller keeps the peer).
 */
int px_xff_client(const struct px_cidr *list, size_t n, const char *xff, char *client, size_t clientlen);

/*
 * PROXY protocol header at the start of data (len bytes).
 * Returns the header's length (> 0) and fills src (the client address) when
 * a complete header is present, 0 when more bytes are needed, -1 when the
 * bytes are not a PROXY header. "LOCAL"/"UNKNOWN" headers give src = "".
 */
long px_proxy_header(const unsigned char *data, size_t len, char *src, size_t srclen);

#endif
