/*
 * fuzz_http: the bytes a client sends on a connection, through the server's
 * request-head parser (http.h), before anything else looks at them:
 *   - http_head_end must find the same end whether the bytes arrive at once
 *     or in pieces (the first input byte picks the piece size), and never
 *     claim an end past the bytes it was given;
 *   - http_parse_head on a complete head either refuses it with 400, 431 or
 *     505, or returns a head whose strings all lie inside the head, whose
 *     method and field names are tokens, whose values hold no line break,
 *     and whose framing is never ambiguous (a body announced in any way
 *     means no keep-alive);
 *   - the head that follows a served one (pipelining) parses the same way.
 */
#include "http.h"

#include "fuzz_util.h"

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int all_tchars(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (!is_tchar((unsigned char)*s))
            return 0;
    return 1;
}

static int inside(const char *p, const char *buf, size_t len)
{
    return p >= buf && p < buf + len && memchr(p, '\0', (size_t)(buf + len - p)) != NULL;
}

/* One head at the start of data (size bytes); the bytes it used, or 0. */
static size_t check_one(const uint8_t *data, size_t size, size_t piece)
{
    char *buf = fuzz_dup(data, size, 0);
    size_t scanned = 0, end = 0, whole_scanned = 0, whole, n;
    struct http_head *h = calloc(1, sizeof(*h));
    int rc;

    FUZZ_CHECK(h != NULL);
    whole = http_head_end(buf, size, &whole_scanned);
    FUZZ_CHECK(whole <= size);
    if (whole == 0)
        FUZZ_CHECK(whole_scanned <= size);
    /* The same bytes in pieces find the same end. */
    for (n = piece < size ? piece : size; end == 0; n = n + piece < size ? n + piece : size) {
        end = http_head_end(buf, n, &scanned);
        FUZZ_CHECK(end <= n);
        if (end == 0)
            FUZZ_CHECK(scanned <= n);
        if (n == size)
            break;
    }
    FUZZ_CHECK(end == whole);
    if (whole == 0)
        goto out;
    FUZZ_CHECK(buf[whole - 1] == '\n');
    rc = http_parse_head(buf, whole, h);
    FUZZ_SAY("http: head of %zu bytes: %d\n", whole, rc);
    FUZZ_CHECK(rc == 0 || rc == 400 || rc == 431 || rc == 505);
    if (rc != 0)
        goto out;
    FUZZ_CHECK(inside(h->method_name, buf, whole) && all_tchars(h->method_name));
    FUZZ_CHECK(strcmp(http_method_name(h->method), h->method_name) == 0 || h->method == HTTP_M_OTHER);
    FUZZ_CHECK(inside(h->target, buf, whole) && h->target[0] != '\0');
    for (const char *t = h->target; *t != '\0'; t++)
        FUZZ_CHECK((unsigned char)*t > 0x20 && (unsigned char)*t != 0x7F);
    FUZZ_CHECK(h->minor == 0 || h->minor == 1);
    FUZZ_CHECK(h->nfields <= HTTP_MAX_FIELDS);
    for (size_t i = 0; i < h->nfields; i++) {
        const char *v = h->fields[i].value;
        FUZZ_CHECK(inside(h->fields[i].name, buf, whole) && all_tchars(h->fields[i].name));
        FUZZ_CHECK(inside(v, buf, whole));
        FUZZ_CHECK(strchr(v, '\r') == NULL && strchr(v, '\n') == NULL);
        FUZZ_CHECK(*v != ' ' && *v != '\t');
        FUZZ_CHECK(*v == '\0' || (v[strlen(v) - 1] != ' ' && v[strlen(v) - 1] != '\t'));
        FUZZ_CHECK(http_field(h, h->fields[i].name) != NULL);
    }
    FUZZ_CHECK(h->minor == 0 || http_field_count(h, "Host") == 1);
    if (http_field_count(h, "Transfer-Encoding") > 0 || http_field_count(h, "Content-Length") > 1)
        FUZZ_CHECK(h->has_body && h->content_length == -1);
    if (h->has_body)
        FUZZ_CHECK(!h->keep_alive);
    if (h->content_length > 0)
        FUZZ_CHECK(h->has_body && http_field_count(h, "Content-Length") == 1);
out:
    free(h);
    free(buf);
    return whole;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t piece, used;

    if (size < 1)
        return 0;
    piece = (size_t)data[0] % 16 + 1;
    used = check_one(data + 1, size - 1, piece);
    /* A pipelined second head right after the first. */
    if (used > 0 && used < size - 1)
        check_one(data + 1 + used, size - 1 - used, piece);
    return 0;
}
