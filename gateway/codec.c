/*
 * codec: byte encodings (see codec.h).
 */
#include "codec.h"

#include <openssl/evp.h>

void codec_hex(char *out, const unsigned char *in, size_t len)
{
    static const char d[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * len] = '\0';
}

size_t codec_b64(char *out, const unsigned char *in, size_t len)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

static int b64val(unsigned char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

/* Shared decoder: url selects the alphabet; padding is refused for base64url
 * and required for base64, so every value has exactly one accepted text. */
static long b64_decode(unsigned char *out, size_t outmax, const char *in, size_t inlen, int url)
{
    long rc = -1;
    size_t n = 0, i, datalen = inlen;
    unsigned int acc = 0;
    int bits = 0;

    if (!url) {
        if (inlen % 4 != 0)
            goto out;
        while (datalen > 0 && in[datalen - 1] == '=' && inlen - datalen < 2)
            datalen--;
    }
    if (url && datalen % 4 == 1)
        goto out;
    for (i = 0; i < datalen; i++) {
        int v = b64val((unsigned char)in[i], url);
        if (v < 0)
            goto out;
        acc = (acc << 6) | (unsigned int)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= outmax)
                goto out;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    /* Leftover bits must be zero (canonical encoding). */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        goto out;
    rc = (long)n;
out:
    return rc;
}

long codec_b64url_decode(unsigned char *out, size_t outmax, const char *in, size_t inlen)
{
    return b64_decode(out, outmax, in, inlen, 1);
}

long codec_b64_decode(unsigned char *out, size_t outmax, const char *in, size_t inlen)
{
    return b64_decode(out, outmax, in, inlen, 0);
}
