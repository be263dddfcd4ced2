/*
 * http: HTTP/1.1 message syntax for the server (RFC 9110, RFC 9112). Finds
 * where a request head ends, parses it strictly (the rules that keep a
 * request from meaning two things to two parsers: no obs-fold, no space
 * before a colon, no bare CR, one Host), and writes response heads. Pure: no
 * I/O, so the unit tests and the fuzzer call it directly.
 *
 * The gateway never reads a request body: a request that announces one
 * (Transfer-Encoding, or a Content-Length other than 0) is answered and the
 * connection is closed after the reply, so no byte after a head is ever
 * taken for the start of the next request.
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include "buf.h"

#include <stddef.h>

#define HTTP_MAX_FIELDS 100 /* header fields per request head; more is 431 */

enum http_method {
    HTTP_M_OTHER = 0, /* a well-formed token the gateway does not know */
    HTTP_M_GET,
    HTTP_M_HEAD,
    HTTP_M_POST,
    HTTP_M_PUT,
    HTTP_M_DELETE,
    HTTP_M_OPTIONS,
    HTTP_M_PATCH,
    HTTP_M_TRACE,
    HTTP_M_CONNECT,
};

struct http_field {
    const char *name;  /* NUL-terminated, as sent (compare case-insensitively) */
    const char *value; /* NUL-terminated, surrounding whitespace removed */
};

/* A parsed request head. Every string points into the buffer given to
 * http_parse_head, which must outlive it. */
struct http_head {
    enum http_method method;
    const char *method_name; /* as sent */
    const char *target;      /* the request target, as sent */
    int minor;               /* HTTP/1.<minor>: 0 or 1 */
    int keep_alive;          /* the client lets the connection stay open */
    int has_body;            /* a body is announced (see above) */
    long long
        content_length; /* the one Content-Length; -1 when absent, not a plain number, or beside Transfer-Encoding */
    size_t nfields;
    struct http_field fields[HTTP_MAX_FIELDS];
};

/*
 * Where the head at the start of buf ends: the offset just past its empty
 * line, or 0 when it has not ended within len bytes. *scanned carries the
 * progress between calls on a growing buffer (start it at 0), so a head
 * trickled in byte by byte costs linear time.
 */
size_t http_head_end(const char *buf, size_t len, size_t *scanned);

/*
 * Parse the complete head of len bytes at buf (len from http_head_end). The
 * buffer is changed in place (strings are NUL-terminated there). 0 with h
 * filled, or the status to refuse the head with: 400 (malformed), 431 (more
 * than HTTP_MAX_FIELDS fields) or 505 (a version other than HTTP/1.0 and 1.1).
 */
int http_parse_head(char *buf, size_t len, struct http_head *h);

/*
 * Whether the len bytes at buf (a head, complete or not, parsed or not)
 * start with a request line whose method is HEAD, after the empty lines a
 * head may start with. An answer to it has no body, even a refusal of a
 * head http_parse_head would not take.
 */
int http_is_head_request(const char *buf, size_t len);

/* The first field named name (case-insensitive), or NULL. */
const char *http_field(const struct http_head *h, const char *name);
/* How many fields are named name. */
int http_field_count(const struct http_head *h, const char *name);
/* The method's name for a known method ("OTHER" for HTTP_M_OTHER). */
const char *http_method_name(enum http_method m);

/* The reason phrase of a status the gateway sends ("Status" otherwise). */
const char *http_reason(int status);

/*
 * Write a response head into out: the status line, Date (date is an
 * IMF-fixdate string), the fields given as n name/value pairs, then
 * Content-Length (unless status is 204 or 304), Connection: close when close
 * is set, and the empty line. 0, or -1 when out's cap is reached.
 */
int http_write_head(struct buf *out, int status, const char *date, const char *const (*fields)[2], size_t n,
                    size_t content_length, int close);

/* The IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") of a Unix time, into
 * out (at least 30 bytes). */
void http_date(char *out, size_t outlen, long long unix_s);

#endif
