/*
 * sim_util.c - small helpers of the SMC simulator: wall-clock time,
 * Alibaba-style request ids, a JSON string writer that never emits invalid
 * UTF-8 (recorded parameters are arbitrary bytes), a non-cryptographic hash
 * for the in-memory tables, and reading a whole file.
 */
#include "sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

int64_t sim_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* RAND_bytes is fetched in blocks because every answer needs 16 bytes and
 * the DRBG call has a fixed cost that shows under load tests. */
static unsigned char rnd_buf[4096];
static size_t rnd_left;

static void rnd_take(unsigned char *out, size_t n)
{
    if (rnd_left < n) {
        if (RAND_bytes(rnd_buf, (int)sizeof(rnd_buf)) != 1) {
            /* Uniqueness, not secrecy, is what the ids need; fall back to
             * a counter mixed with the clock rather than failing. */
            static uint64_t ctr;
            for (size_t i = 0; i < sizeof(rnd_buf); i += 8) {
                uint64_t v = sim_hash64(&ctr, sizeof(ctr),
                                        (uint64_t)sim_now_ms());
                ctr++;
                memcpy(rnd_buf + i, &v, 8);
            }
        }
        rnd_left = sizeof(rnd_buf);
    }
    memcpy(out, rnd_buf + sizeof(rnd_buf) - rnd_left, n);
    rnd_left -= n;
}

void sim_request_id(char out[37])
{
    static const char hex[] = "0123456789ABCDEF";
    unsigned char b[16];
    size_t o = 0;

    rnd_take(b, sizeof(b));
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* Reject overlongs, surrogates and code points past U+10FFFF. */
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    return n;
}

void sim_json_str(struct evbuffer *out, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;

    evbuffer_add(out, "\"", 1);
    while (i < len) {
        unsigned char c = u[i];
        size_t n = utf8_seq(u + i, len - i);
        const char *esc = NULL;
        char tmp[8];

        if (n == 1 && c >= 0x20 && c != '"' && c != '\\') {
            i++;
            run++;
            continue;
        }
        if (n > 1) {
            i += n;
            run += n;
            continue;
        }
        /* Flush the plain run before writing an escape. */
        if (run)
            evbuffer_add(out, u + i - run, run);
        run = 0;
        if (n == 0) {
            esc = "\\ufffd";
        } else if (c == '"') {
            esc = "\\\"";
        } else if (c == '\\') {
            esc = "\\\\";
        } else if (c == '\n') {
            esc = "\\n";
        } else if (c == '\r') {
            esc = "\\r";
        } else if (c == '\t') {
            esc = "\\t";
        } else {
            snprintf(tmp, sizeof(tmp), "\\u%04x", c);
            esc = tmp;
        }
        evbuffer_add(out, esc, strlen(esc));
        i++;
    }
    if (run)
        evbuffer_add(out, u + i - run, run);
    evbuffer_add(out, "\"", 1);
}

/* 64-bit multiply-xorshift hash (wyhash-like mixing, 8 bytes a step).
 * Only for bucketing and nonce keys; the seed is random per run. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t sim_hash64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = mix64(seed ^ (0x9e3779b97f4a7c15ULL * (len + 1)));

    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix64(h ^ w) + 0x9e3779b97f4a7c15ULL;
        p += 8;
        len -= 8;
    }
    if (len) {
        uint64_t w = 0;
        memcpy(&w, p, len);
        h = mix64(h ^ w ^ ((uint64_t)len << 56));
    }
    return mix64(h);
}

char *sim_read_file(const char *path, size_t *len_out)
{
    FILE *f = NULL;
    char *buf = NULL, *ret = NULL;
    size_t cap = 4096, len = 0;

    f = fopen(path, "rb");
    if (!f)
        goto out;
    buf = malloc(cap);
    if (!buf)
        goto out;
    for (;;) {
        size_t got;
        if (len + 1 >= cap) {
            char *nb;
            if (cap > (64u << 20)) {
                errno = EFBIG;
                goto out;
            }
            nb = realloc(buf, cap * 2);
            if (!nb)
                goto out;
            buf = nb;
            cap *= 2;
        }
        got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) {
            if (ferror(f))
                goto out;
            break;
        }
    }
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    ret = buf;
    buf = NULL;
out:
    free(buf);
    if (f)
        fclose(f);
    return ret;
}
