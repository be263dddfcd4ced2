/* HTTP/1.1 request heads (http.c): where a head ends, strict parsing, reply heads. */
#include "http.h"
#include "unit.h"

#include <stdlib.h>

/* Parse text (copied: the parser writes into its buffer); the status, h filled. */
static int parse(const char *text, struct http_head *h, char *copy, size_t copylen)
{
    size_t scanned = 0, len = strlen(text), end;

    if (len >= copylen)
        return -1;
    memcpy(copy, text, len + 1);
    end = http_head_end(copy, len, &scanned);
    if (end == 0)
        return -2; /* incomplete */
    return http_parse_head(copy, end, h);
}

UNIT_TEST(http_head_end_is_incremental)
{
    const char *head = "DELETE /jobs/j-1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\nNEXT";
    size_t total = strlen(head) - 4, scanned = 0, end = 0, n;

    /* Fed one byte at a time, the end is found exactly when the empty line completes. */
    for (n = 1; n <= strlen(head) && end == 0; n++) {
        end = http_head_end(head, n, &scanned);
        if (end == 0)
            CHECK(scanned <= n);
    }
    CHECK_INT(end, total);
    CHECK_INT(n - 1, total);
    scanned = 0;
    CHECK_INT(http_head_end("GET / HTTP/1.1\nHost: x\n\n", 24, &scanned), 24);
    scanned = 0;
    CHECK_INT(http_head_end("GET / HTTP/1.1\r\nHost: x\r\n\r", 26, &scanned), 0);
    /* Up to four empty lines before a request line are skipped, not taken for the end. */
    scanned = 0;
    head = "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK_INT(http_head_end(head, strlen(head), &scanned), strlen(head));
}

UNIT_TEST(http_parse_request)
{
    char buf[4096];
    struct http_head h;

    CHECK_INT(parse("DELETE /jobs/j-1?x=1 HTTP/1.1\r\nHost: gw\r\nAuthorization:  Bearer abc \t\r\n"
                    "X-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: 10.0.0.2\r\n\r\n",
                    &h, buf, sizeof(buf)),
              0);
    CHECK_INT(h.method, HTTP_M_DELETE);
    CHECK_STR(h.method_name, "DELETE");
    CHECK_STR(h.target, "/jobs/j-1?x=1");
    CHECK_INT(h.minor, 1);
    CHECK_INT(h.keep_alive, 1);
    CHECK_INT(h.has_body, 0);
    CHECK_INT(h.content_length, -1);
    CHECK_INT(h.nfields, 4);
    CHECK_STR(http_field(&h, "authorization"), "Bearer abc");
    CHECK_STR(http_field(&h, "X-FORWARDED-FOR"), "10.0.0.1");
    CHECK_INT(http_field_count(&h, "X-Forwarded-For"), 2);
    CHECK(http_field(&h, "Origin") == NULL);

    CHECK_INT(parse("PURGE / HTTP/1.1\r\nHost: x\r\n\r\n", &h, buf, sizeof(buf)), 0);
    CHECK_INT(h.method, HTTP_M_OTHER);
    CHECK_STR(http_method_name(h.method), "OTHER");
    /* Bytes above ASCII reach route.c (and, escaped, the audit). */
    CHECK_INT(parse("DELETE /jobs/j-\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", &h, buf, sizeof(buf)), 0);
    CHECK_STR(h.target, "/jobs/j-\xff\xfe");
    /* Bare LF line ends are read too. */
    CHECK_INT(parse("GET /healthz HTTP/1.1\nHost: x\n\n", &h, buf, sizeof(buf)), 0);
    CHECK_STR(h.target, "/healthz");
}

UNIT_TEST(http_parse_refuses_ambiguous_heads)
{
    char buf[8192], big[8192];
    struct http_head h;
    size_t n = 0;

    CHECK_INT(parse("DELETE /jobs/j-1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", &h, buf, sizeof(buf)), 400);
    CHECK_INT(parse("DELETE /jobs/j-1 HTTP/1.1\r\nHost: x\r\nAuthorization : Bearer t\r\n\r\n", &h, buf, sizeof(buf)),
              400);
    CHECK_INT(parse("DELETE /jobs/j-1 HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", &h, buf, sizeof(buf)), 400);
    CHECK_INT(parse("DELETE /jobs/j-1 HTTP/1.1\r\nHost: x\r\nX-A: a\001b\r\n\r\n", &h, buf, sizeof(buf)), 400);
    CHECK_INT(parse("DELETE /jobs/j-1 HTTP/1.1\r\nHost: x\r\n: empty name\r\n\r\n", &h, buf, sizeof(buf)), 400);
    CHECK_INT(parse("DELETE  /jobs/j-1 HTTP/1.1\r\nHost: x\r\n\r\n", &h, buf, sizeof(buf)), 400);
    CHECK_INT(parse("DELETE /jobs/j-1\r\nHost: x\r\n\r\n", &h, buf, sizeof(buf)), 400);
    CHECK_INT(parse("DELETE /jobs/j-1 HTTP/1.1 \r\nHost: x\r\n\r\n", &h, buf, sizeof(buf)), 400);
    CHECK_INT(parse("DELETE /jobs/j 1 HTTP/1.1\r\nHost: x\r\n\r\n", &h, buf, sizeof(buf)), 400);
    CHECK_INT(parse("DEL(ETE /jobs/j-1 HTTP/1.1\r\nHost: x\r\n\r\n", &h, buf, sizeof(buf)), 400);
    CHECK_INT(parse("DELETE /jobs/j-1 http/1.1\r\nHost: x\r\n\r\n", &h, buf, sizeof(buf)), 400);
    CHECK_INT(parse("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &h, buf, sizeof(buf)), 505);
    CHECK_INT(parse("DELETE /jobs/j-1 HTTP/1.2\r\nHost: x\r\n\r\n", &h, buf, sizeof(buf)), 505);
    /* One Host in HTTP/1.1, never two. */
    CHECK_INT(parse("DELETE /jobs/j-1 HTTP/1.1\r\n\r\n", &h, buf, sizeof(buf)), 400);
    CHECK_INT(parse("DELETE /jobs/j-1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", &h, buf, sizeof(buf)), 400);
    CHECK_INT(parse("DELETE /jobs/j-1 HTTP/1.0\r\n\r\n", &h, buf, sizeof(buf)), 0);
    /* More than HTTP_MAX_FIELDS fields. */
    n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < HTTP_MAX_FIELDS; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "X-%d: v\r\n", i);
    snprintf(big + n, sizeof(big) - n, "\r\n");
    CHECK_INT(parse(big, &h, buf, sizeof(buf)), 431);
}

UNIT_TEST(http_parse_framing_and_connection)
{
    char buf[4096];
    struct http_head h;

    CHECK_INT(parse("DELETE /jobs/j-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", &h, buf, sizeof(buf)), 0);
    CHECK_INT(h.has_body, 0);
    CHECK_INT(h.content_length, 0);
    CHECK_INT(h.keep_alive, 1);
    CHECK_INT(parse("DELETE /jobs/j-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", &h, buf, sizeof(buf)), 0);
    CHECK_INT(h.has_body, 1);
    CHECK_INT(h.content_length, 5);
    CHECK_INT(h.keep_alive, 0);
    CHECK_INT(parse("DELETE /jobs/j-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", &h, buf,
                    sizeof(buf)),
              0);
    CHECK_INT(h.has_body, 1);
    CHECK_INT(h.content_length, -1);
    CHECK_INT(parse("DELETE /jobs/j-1 HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", &h, buf, sizeof(buf)), 0);
    CHECK_INT(h.has_body, 1);
    CHECK_INT(h.content_length, -1);
    CHECK_INT(parse("DELETE /jobs/j-1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", &h, buf, sizeof(buf)),
              0);
    CHECK_INT(h.has_body, 1);
    CHECK_INT(h.keep_alive, 0);
    CHECK_INT(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n", &h, buf, sizeof(buf)), 0);
    CHECK_INT(h.keep_alive, 0);
    CHECK_INT(parse("GET / HTTP/1.0\r\n\r\n", &h, buf, sizeof(buf)), 0);
    CHECK_INT(h.keep_alive, 0);
    CHECK_INT(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &h, buf, sizeof(buf)), 0);
    CHECK_INT(h.keep_alive, 1);
    CHECK_INT(h.minor, 0);
}

UNIT_TEST(http_reply_head)
{
    struct buf b;
    const char *const fields[][2] = {{"Content-Type", "application/json"}, {"X-Request-Id", "abc"}};
    const char *const bad[][2] = {{"X-Evil", "a\r\nSet-Cookie: x"}};
    char date[40];

    buf_init(&b, 4096);
    http_date(date, sizeof(date), 784111777);
    CHECK_STR(date, "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK_INT(http_write_head(&b, 200, date, fields, 2, 17, 0), 0);
    CHECK_STR(b.p, "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: application/json\r\n"
                   "X-Request-Id: abc\r\nContent-Length: 17\r\n\r\n");
    buf_reset(&b);
    CHECK_INT(http_write_head(&b, 204, date, NULL, 0, 0, 1), 0);
    CHECK_STR(b.p, "HTTP/1.1 204 No Content\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n");
    buf_reset(&b);
    /* A value that would end its line is refused (no response splitting). */
    CHECK_INT(http_write_head(&b, 200, date, bad, 1, 0, 0), -1);
    CHECK_STR(http_reason(431), "Request Header Fields Too Large");
    buf_free(&b);
}

UNIT_TEST(test_http_is_head_request)
{
    CHECK(http_is_head_request("HEAD / HTTP/1.1\r\n\r\n", 19));
    CHECK(http_is_head_request("HEAD /healthz HTTP/1.1\r\nX: \x01\r\n\r\n", 32)); /* malformed, still HEAD */
    CHECK(http_is_head_request("\r\n\nHEAD / HTTP/2.0\r\n", 20));
    CHECK(http_is_head_request("HEAD ", 5)); /* a head cut at the cap */
    CHECK(!http_is_head_request("HEAD", 4));
    CHECK(!http_is_head_request("head / HTTP/1.1\r\n\r\n", 19)); /* methods are case-sensitive */
    CHECK(!http_is_head_request("HEADER / HTTP/1.1\r\n\r\n", 21));
    CHECK(!http_is_head_request("GET / HTTP/1.1\r\n\r\n", 18));
    CHECK(!http_is_head_request(" HEAD / HTTP/1.1\r\n\r\n", 20));
    CHECK(!http_is_head_request("", 0));
}
