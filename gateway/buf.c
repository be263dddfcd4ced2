/*
 * buf: capped growable buffers (see buf.h). Appends are all-or-nothing so a
 * failed append never leaves half a field in an audit line or a signature.
 */
#include "buf.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void buf_init(struct buf *b, size_t max)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void buf_free(struct buf *b)
{
    if (b == NULL)
        return;
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void buf_wipe(struct buf *b)
{
    if (b == NULL)
        return;
    if (b->p != NULL)
        OPENSSL_cleanse(b->p, b->cap);
    buf_free(b);
}

void buf_reset(struct buf *b)
{
    buf_truncate(b, 0);
}

void buf_truncate(struct buf *b, size_t len)
{
    if (len < b->len) {
        b->len = len;
        b->p[len] = '\0';
    }
}

/* Make room for `more` bytes plus the NUL; -1 when the cap forbids it. */
static int buf_reserve(struct buf *b, size_t more)
{
    int rc = -1;
    size_t need, ncap;
    char *np;

    if (more > b->max - b->len)
        goto out;
    need = b->len + more + 1;
    if (need <= b->cap) {
        rc = 0;
        goto out;
    }
    /* The first block fits what most buffers on a request's path hold
     * (entries, replies, signed queries: a few hundred bytes), so they
     * grow, copy and wipe at most once. */
    ncap = b->cap ? b->cap : 512;
    while (ncap < need)
        ncap *= 2;
    if (ncap > b->max + 1)
        ncap = b->max + 1;
    np = malloc(ncap);
    if (np == NULL)
        goto out;
    if (b->p != NULL) {
        memcpy(np, b->p, b->len + 1);
        /* Old copies may hold secrets (signing keys, form bodies). */
        OPENSSL_cleanse(b->p, b->cap);
        free(b->p);
    }
    b->p = np;
    b->cap = ncap;
    rc = 0;
out:
    return rc;
}

int buf_grow(struct buf *b, size_t more)
{
    return buf_reserve(b, more);
}

int buf_add(struct buf *b, const void *data, size_t len)
{
    /* Fast path: room already there (the common case once a buffer grew). */
    if (!(b->p != NULL && len < b->cap - b->len && len <= b->max - b->len) && buf_reserve(b, len) != 0)
        return -1;
    if (len > 0)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return 0;
}

int buf_adds(struct buf *b, const char *s)
{
    return buf_add(b, s, strlen(s));
}

int buf_addc(struct buf *b, char c)
{
    if (b->p != NULL && b->len + 1 < b->cap && b->len < b->max) {
        b->p[b->len++] = c;
        b->p[b->len] = '\0';
        return 0;
    }
    return buf_add(b, &c, 1);
}

int buf_addu(struct buf *b, unsigned long long v)
{
    char tmp[24];
    size_t n = sizeof(tmp);

    do {
        tmp[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return buf_add(b, tmp + n, sizeof(tmp) - n);
}

int buf_addi(struct buf *b, long long v)
{
    if (v < 0)
        return buf_addc(b, '-') != 0 ? -1 : buf_addu(b, (unsigned long long)(-(v + 1)) + 1);
    return buf_addu(b, (unsigned long long)v);
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    int rc = -1;
    int n;
    va_list ap2;

    /* One pass when the text fits the room left; a second after growing. */
    va_copy(ap2, ap);
    if (b->p != NULL) {
        size_t room = b->cap - b->len;
        n = vsnprintf(b->p + b->len, room, fmt, ap2);
        if (n >= 0 && (size_t)n < room && (size_t)n <= b->max - b->len) {
            b->len += (size_t)n;
            rc = 0;
            va_end(ap2);
            goto out;
        }
        b->p[b->len] = '\0';
    } else {
        n = vsnprintf(NULL, 0, fmt, ap2);
    }
    va_end(ap2);
    if (n < 0 || buf_reserve(b, (size_t)n) != 0)
        goto out;
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    rc = 0;
out:
    return rc;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    int rc;
    va_list ap;

    va_start(ap, fmt);
    rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

size_t buf_copy(char *dst, size_t dstlen, const char *src)
{
    size_t n = strnlen(src, dstlen - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

char *buf_take(struct buf *b)
{
    char *p = b->p;

    if (p == NULL)
        p = calloc(1, 1);
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

size_t buf_utf8_len(const unsigned char *s, size_t avail)
{
    size_t n = 0;
    unsigned int cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        n = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        n = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        n = 4;
    if (n == 0 || n > avail)
        return 0;
    cp = s[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

int buf_json_str(struct buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    int rc = -1;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, start = b->len;

    if (buf_addc(b, '"') != 0)
        goto out;
    while (i < len) {
        unsigned char c = u[i];
        size_t n = i;
        int r;
        /* Runs of printable ASCII go in whole (most strings are nothing else). */
        while (n < len && u[n] >= 0x20 && u[n] < 0x7F && u[n] != '"' && u[n] != '\\')
            n++;
        if (n > i) {
            r = buf_add(b, u + i, n - i);
            n -= i;
        } else if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            r = buf_add(b, e, 2);
            n = 1;
        } else if (c < 0x20 || c == 0x7F) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            r = buf_add(b, e, 6);
            n = 1;
        } else if ((n = buf_utf8_len(u + i, len - i)) == 0) {
            r = buf_add(b, "\\ufffd", 6);
            n = 1;
        } else {
            r = buf_add(b, u + i, n);
        }
        if (r != 0)
            goto out;
        i += n;
    }
    if (buf_addc(b, '"') != 0)
        goto out;
    rc = 0;
out:
    /* All or nothing, like every append. */
    if (rc != 0)
        buf_truncate(b, start);
    return rc;
}

int buf_read_fd(struct buf *b, int fd)
{
    int rc = -1, saved;
    char chunk[4096];
    ssize_t n;

    while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
        if (buf_add(b, chunk, (size_t)n) != 0) {
            errno = EFBIG;
            goto out;
        }
    }
    rc = n < 0 ? -1 : 0;
out:
    saved = errno;
    OPENSSL_cleanse(chunk, sizeof(chunk));
    errno = saved;
    return rc;
}

int buf_read_file(struct buf *b, const char *path)
{
    int rc, fd, saved;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    rc = buf_read_fd(b, fd);
    saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* Code points that change how a terminal shows the text around them. */
static int unsafe_codepoint(unsigned int cp)
{
    return (cp >= 0x80 && cp <= 0x9F) ||     /* C1 controls (CSI, OSC, ...) */
           (cp >= 0x200B && cp <= 0x200F) || /* zero-width and direction marks */
           (cp >= 0x2028 && cp <= 0x202E) || /* line separators, bidi embeddings and overrides */
           (cp >= 0x2060 && cp <= 0x2069) || /* invisible operators, bidi isolates */
           cp == 0xFEFF;
}

int buf_term_str(struct buf *out, const char *s, size_t len)
{
    int rc = -1;
    const unsigned char *u = (const unsigned char *)s;
    size_t start = out->len, i = 0, n;

    while (i < len) {
        unsigned char c = u[i];
        int r;
        if (c == '\\') {
            r = buf_add(out, "\\\\", 2);
            n = 1;
        } else if (c >= 0x20 && c < 0x7F) {
            r = buf_addc(out, (char)c);
            n = 1;
        } else if (c < 0x80 || (n = buf_utf8_len(u + i, len - i)) == 0) {
            r = buf_printf(out, "\\x%02x", c);
            n = 1;
        } else {
            unsigned int cp = c & (0x7F >> n);
            for (size_t k = 1; k < n; k++)
                cp = (cp << 6) | (u[i + k] & 0x3F);
            r = unsafe_codepoint(cp) ? buf_printf(out, "\\u%04x", cp) : buf_add(out, u + i, n);
        }
        if (r != 0)
            goto out;
        i += n;
    }
    rc = 0;
out:
    if (rc != 0)
        buf_truncate(out, start);
    return rc;
}
