/*
 * codec: byte encodings (see codec.h).
 */
#include "codec.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <pthread.h>

/*
 * OpenSSL 3 looks an algorithm up in its provider store on every implicit
 * use (EVP_sha256(), HMAC()); on the request path that lookup costs more
 * than hashing a short line. Fetch once; the objects are read-only and safe
 * to share between threads, and they live as long as the process.
 */
static EVP_MD *md_sha256;
static EVP_MAC_CTX *hmac_sha1_template;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_algorithms(void)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    OSSL_PARAM params[2];

    md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA1", 0);
    params[1] = OSSL_PARAM_construct_end();
    hmac_sha1_template = mac ? EVP_MAC_CTX_new(mac) : NULL;
    if (hmac_sha1_template != NULL && EVP_MAC_CTX_set_params(hmac_sha1_template, params) != 1) {
        EVP_MAC_CTX_free(hmac_sha1_template);
        hmac_sha1_template = NULL;
    }
    EVP_MAC_free(mac); /* the context keeps its own reference */
}

void codec_sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 32;

    pthread_once(&fetch_once, fetch_algorithms);
    EVP_Digest(data, len, out, &n, md_sha256 ? md_sha256 : EVP_sha256(), NULL);
}

int codec_hmac_sha1(const void *key, size_t keylen, const void *data, size_t len, unsigned char out[20])
{
    int rc = -1;
    EVP_MAC_CTX *ctx;
    size_t outlen = 0;

    pthread_once(&fetch_once, fetch_algorithms);
    ctx = hmac_sha1_template ? EVP_MAC_CTX_dup(hmac_sha1_template) : NULL;
    if (ctx != NULL && EVP_MAC_init(ctx, key, keylen, NULL) == 1 && EVP_MAC_update(ctx, data, len) == 1 &&
        EVP_MAC_final(ctx, out, &outlen, 20) == 1 && outlen == 20)
        rc = 0;
    EVP_MAC_CTX_free(ctx);
    return rc;
}

void codec_hex(char *out, const unsigned char *in, size_t len)
{
    static const char d[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * len] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int codec_unhex(unsigned char *out, const char *in, size_t len)
{
    int rc = 0;

    for (size_t i = 0; i < len && rc == 0; i++) {
        int hi = hexval(in[2 * i]), lo = hi < 0 ? -1 : hexval(in[2 * i + 1]);
        if (lo < 0)
            rc = -1;
        else
            out[i] = (unsigned char)(hi << 4 | lo);
    }
    return rc;
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

int codec_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}
