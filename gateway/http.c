/*
 * http: request-head parsing and response heads (see http.h).
 */
#include "http.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define HTTP_LEADING_EMPTY_MAX 4 /* empty lines tolerated before a request line (RFC 9112 2.2) */

/* tchar of RFC 9110 5.6.2: what method and field names are made of. */
static int is_tchar(unsigned char c)
{
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return 1;
    default:
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    }
}

/* Bytes allowed in a field value: VCHAR, obs-text, SP and HTAB. */
static int is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7F);
}

/* Offset past the empty lines a head may start with. */
static size_t skip_leading_empty(const char *buf, size_t len)
{
    size_t pos = 0;

    for (int n = 0; n < HTTP_LEADING_EMPTY_MAX; n++) {
        if (pos < len && buf[pos] == '\n')
            pos++;
        else if (pos + 1 < len && buf[pos] == '\r' && buf[pos + 1] == '\n')
            pos += 2;
        else
            break;
    }
    return pos;
}

int http_is_head_request(const char *buf, size_t len)
{
    size_t pos = skip_leading_empty(buf, len);

    return len - pos >= 5 && memcmp(buf + pos, "HEAD ", 5) == 0;
}

size_t http_head_end(const char *buf, size_t len, size_t *scanned)
{
    size_t i = skip_leading_empty(buf, len);
    const char *nl = NULL;

    if (i < *scanned)
        i = *scanned;
    while (i < len && (nl = memchr(buf + i, '\n', len - i)) != NULL) {
        i = (size_t)(nl - buf);
        if (i + 1 >= len)
            break; /* the next byte decides */
        if (buf[i + 1] == '\n')
            return i + 2;
        if (buf[i + 1] == '\r') {
            if (i + 2 >= len)
                break;
            if (buf[i + 2] == '\n')
                return i + 3;
        }
        i++;
    }
    if (i > len || nl == NULL)
        i = len;
    *scanned = i;
    return 0;
}

/*
 * The line at *pos: its start, its length without the line end, and *pos
 * moved past the line end. -1 when the line has a CR that does not end it.
 */
static int next_line(char *buf, size_t len, size_t *pos, char **line, size_t *linelen)
{
    char *start = buf + *pos, *nl = memchr(start, '\n', len - *pos);
    size_t n;

    if (nl == NULL)
        return -1;
    n = (size_t)(nl - start);
    *pos += n + 1;
    if (n > 0 && start[n - 1] == '\r')
        n--;
    if (memchr(start, '\r', n) != NULL)
        return -1;
    *line = start;
    *linelen = n;
    return 0;
}

/* The known methods' names, indexed by enum http_method. */
static const char *const method_names[] = {"OTHER",  "GET",     "HEAD",  "POST",  "PUT",
                                           "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"};
#define HTTP_METHODS (sizeof(method_names) / sizeof(method_names[0]))

static enum http_method method_of(const char *m, size_t n)
{
    for (size_t i = HTTP_M_OTHER + 1; i < HTTP_METHODS; i++)
        if (strlen(method_names[i]) == n && memcmp(method_names[i], m, n) == 0)
            return (enum http_method)i;
    return HTTP_M_OTHER;
}

const char *http_method_name(enum http_method m)
{
    return (size_t)m < HTTP_METHODS ? method_names[m] : "OTHER";
}

/* "method SP request-target SP HTTP-version": 0, or the status to refuse with. */
static int parse_request_line(char *line, size_t n, struct http_head *h)
{
    size_t i = 0, m, t0;

    while (i < n && is_tchar((unsigned char)line[i]))
        i++;
    if (i == 0 || i >= n || line[i] != ' ')
        return 400;
    m = i;
    t0 = ++i;
    /* Visible ASCII, and bytes above it: route.c decides what a target
     * means, and the audit records what was sent (escaped). */
    while (i < n && (unsigned char)line[i] > 0x20 && (unsigned char)line[i] != 0x7F)
        i++;
    if (i == t0 || i >= n || line[i] != ' ')
        return 400;
    line[m] = '\0';
    line[i] = '\0';
    h->method_name = line;
    h->method = method_of(line, m);
    h->target = line + t0;
    line += i + 1;
    n -= i + 1;
    if (n != 8 || memcmp(line, "HTTP/", 5) != 0 || line[5] < '0' || line[5] > '9' || line[6] != '.' || line[7] < '0' ||
        line[7] > '9')
        return 400;
    if (line[5] != '1' || (line[7] != '0' && line[7] != '1'))
        return 505;
    h->minor = line[7] - '0';
    return 0;
}

/* Does the comma-separated list v hold token tok (case-insensitive)? */
static int list_has(const char *v, const char *tok)
{
    size_t tl = strlen(tok);

    while (*v != '\0') {
        size_t n;
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        n = strcspn(v, ", \t");
        if (n == tl && strncasecmp(v, tok, tl) == 0)
            return 1;
        v += n;
        while (*v != '\0' && *v != ',')
            v++;
    }
    return 0;
}

/* A Content-Length value: 1 to 15 digits and nothing else, else -1. */
static long long content_length_of(const char *v)
{
    long long n = 0;
    size_t i;

    for (i = 0; v[i] >= '0' && v[i] <= '9' && i < 15; i++)
        n = n * 10 + (v[i] - '0');
    return i > 0 && v[i] == '\0' ? n : -1;
}

/* What the fields say about framing and the connection. 0 or 400. */
static int apply_semantics(struct http_head *h)
{
    int hosts = 0, lengths = 0, close = 0, keep = 0, te = 0;
    const char *cl = NULL;

    for (size_t i = 0; i < h->nfields; i++) {
        const char *name = h->fields[i].name, *value = h->fields[i].value;
        if (strcasecmp(name, "Host") == 0) {
            hosts++;
        } else if (strcasecmp(name, "Content-Length") == 0) {
            lengths++;
            cl = value;
        } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
            te = 1;
        } else if (strcasecmp(name, "Connection") == 0) {
            close |= list_has(value, "close");
            keep |= list_has(value, "keep-alive");
        }
    }
    /* RFC 9112 3.2: exactly one Host in HTTP/1.1, never two. */
    if (hosts > 1 || (h->minor == 1 && hosts == 0))
        return 400;
    /* With Transfer-Encoding a Content-Length means nothing (RFC 9112 6.3). */
    h->content_length = lengths == 1 && !te ? content_length_of(cl) : -1;
    h->has_body = te || lengths > 1 || (lengths == 1 && h->content_length != 0);
    h->keep_alive = !close && (h->minor == 1 || keep) && !h->has_body;
    return 0;
}

int http_parse_head(char *buf, size_t len, struct http_head *h)
{
    size_t pos = skip_leading_empty(buf, len), n;
    char *line;
    int rc;

    memset(h, 0, offsetof(struct http_head, fields));
    h->content_length = -1;
    if (next_line(buf, len, &pos, &line, &n) != 0)
        return 400;
    if ((rc = parse_request_line(line, n, h)) != 0)
        return rc;
    for (;;) {
        size_t i = 0, v0, v1;
        if (next_line(buf, len, &pos, &line, &n) != 0)
            return 400;
        if (n == 0)
            break;
        /* No obs-fold, no space before the colon (RFC 9112 5.1, 5.2). */
        while (i < n && is_tchar((unsigned char)line[i]))
            i++;
        if (i == 0 || i >= n || line[i] != ':')
            return 400;
        v0 = i + 1;
        while (v0 < n && (line[v0] == ' ' || line[v0] == '\t'))
            v0++;
        v1 = n;
        while (v1 > v0 && (line[v1 - 1] == ' ' || line[v1 - 1] == '\t'))
            v1--;
        for (size_t k = v0; k < v1; k++)
            if (!is_value_char((unsigned char)line[k]))
                return 400;
        if (h->nfields == HTTP_MAX_FIELDS)
            return 431;
        line[i] = '\0';
        line[v1] = '\0';
        h->fields[h->nfields].name = line;
        h->fields[h->nfields].value = line + v0;
        h->nfields++;
    }
    return apply_semantics(h);
}

const char *http_field(const struct http_head *h, const char *name)
{
    for (size_t i = 0; i < h->nfields; i++)
        if (strcasecmp(h->fields[i].name, name) == 0)
            return h->fields[i].value;
    return NULL;
}

int http_field_count(const struct http_head *h, const char *name)
{
    int n = 0;

    for (size_t i = 0; i < h->nfields; i++)
        if (strcasecmp(h->fields[i].name, name) == 0)
            n++;
    return n;
}

const char *http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Status";
    }
}

/* A response field value must not be able to end its line. */
static int safe_value(const char *v)
{
    for (; *v != '\0'; v++)
        if ((unsigned char)*v < 0x20 && *v != '\t')
            return 0;
    return 1;
}

int http_write_head(struct buf *out, int status, const char *date, const char *const (*fields)[2], size_t n,
                    size_t content_length, int close)
{
    int rc = -1;

    if (status < 100 || status > 999)
        goto out;
    if (buf_adds(out, "HTTP/1.1 ") != 0 || buf_addu(out, (unsigned long long)status) != 0 || buf_addc(out, ' ') != 0 ||
        buf_adds(out, http_reason(status)) != 0 || buf_adds(out, "\r\nDate: ") != 0 || buf_adds(out, date) != 0 ||
        buf_adds(out, "\r\n") != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (!safe_value(fields[i][0]) || !safe_value(fields[i][1]))
            goto out;
        if (buf_adds(out, fields[i][0]) != 0 || buf_adds(out, ": ") != 0 || buf_adds(out, fields[i][1]) != 0 ||
            buf_adds(out, "\r\n") != 0)
            goto out;
    }
    if (status != 204 && status != 304 &&
        (buf_adds(out, "Content-Length: ") != 0 || buf_addu(out, content_length) != 0 || buf_adds(out, "\r\n") != 0))
        goto out;
    if (close && buf_adds(out, "Connection: close\r\n") != 0)
        goto out;
    rc = buf_adds(out, "\r\n");
out:
    return rc;
}

void http_date(char *out, size_t outlen, long long unix_s)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)unix_s;
    struct tm tm;

    if (outlen == 0)
        return;
    if (gmtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 || tm.tm_mon > 11) {
        out[0] = '\0';
        return;
    }
    snprintf(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}
