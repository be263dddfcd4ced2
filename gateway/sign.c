/*
 * sign: Alibaba Cloud RPC signature V1 (see sign.h). The canonical query is
 * built from encoded pairs sorted by encoded name; the HMAC key is the secret
 * followed by "&" and lives only in a buffer that is wiped after use.
 */
#include "sign.h"

#include "codec.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

int sign_encode(struct buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = -1;
    char *w;

    /* Room for the worst case first, then write without per-byte checks. */
    if (len > (out->max - out->len) / 3 || buf_grow(out, 3 * len) != 0)
        goto out;
    w = out->p + out->len;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '~') {
            *w++ = (char)c;
        } else {
            *w++ = '%';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 15];
        }
    }
    out->len = (size_t)(w - out->p);
    out->p[out->len] = '\0';
    rc = 0;
out:
    return rc;
}

/* An encoded pair inside one buffer: offsets, so the buffer may grow. */
struct enc_pair {
    size_t name, value; /* offsets of NUL-terminated strings */
};

static int pair_cmp(const void *a, const void *b, void *base)
{
    const char *s = base;

    return strcmp(s + ((const struct enc_pair *)a)->name, s + ((const struct enc_pair *)b)->name);
}

int sign_rpc(const char *method, const struct sign_param *params, size_t n, const char *secret, char *sig,
             struct buf *canonical)
{
    int rc = -1;
    struct enc_pair pairs[SIGN_MAX_PARAMS];
    struct buf enc, query, sts, key;
    unsigned char mac[20];
    size_t i;

    buf_init(&enc, 64 * 1024);
    buf_init(&query, 64 * 1024);
    buf_init(&sts, 128 * 1024);
    buf_init(&key, 4096);
    if (n > SIGN_MAX_PARAMS)
        goto out;
    for (i = 0; i < n; i++) {
        pairs[i].name = enc.len;
        if (sign_encode(&enc, params[i].name, strlen(params[i].name)) != 0 || buf_addc(&enc, '\0') != 0)
            goto out;
        pairs[i].value = enc.len;
        if (sign_encode(&enc, params[i].value, strlen(params[i].value)) != 0 || buf_addc(&enc, '\0') != 0)
            goto out;
    }
    /* Sorted by encoded name. */
    qsort_r(pairs, n, sizeof(pairs[0]), pair_cmp, enc.p);
    for (i = 0; i < n; i++) {
        if ((i > 0 && buf_addc(&query, '&') != 0) || buf_adds(&query, enc.p + pairs[i].name) != 0 ||
            buf_addc(&query, '=') != 0 || buf_adds(&query, enc.p + pairs[i].value) != 0)
            goto out;
    }
    if (buf_adds(&sts, method) != 0 || buf_adds(&sts, "&%2F&") != 0 ||
        sign_encode(&sts, query.p ? query.p : "", query.len) != 0)
        goto out;
    if (buf_adds(&key, secret) != 0 || buf_addc(&key, '&') != 0)
        goto out;
    if (codec_hmac_sha1(key.p, key.len, sts.p, sts.len, mac) != 0)
        goto out;
    codec_b64(sig, mac, sizeof(mac));
    if (canonical != NULL && buf_add(canonical, query.p ? query.p : "", query.len) != 0)
        goto out;
    rc = 0;
out:
    OPENSSL_cleanse(mac, sizeof(mac));
    buf_wipe(&key);
    buf_wipe(&sts);
    buf_wipe(&query);
    buf_wipe(&enc);
    return rc;
}

int sign_call(const struct sign_call *c, struct buf *out)
{
    int rc = -1;
    struct sign_param p[SIGN_MAX_PARAMS];
    size_t n = 0;
    char sig[SIGN_SIG_LEN];

    p[n++] = (struct sign_param){"AccessKeyId", c->access_key_id};
    p[n++] = (struct sign_param){"Action", c->action};
    p[n++] = (struct sign_param){"Format", "JSON"};
    p[n++] = (struct sign_param){"JobId", c->job_id};
    p[n++] = (struct sign_param){"SignatureMethod", "HMAC-SHA1"};
    p[n++] = (struct sign_param){"SignatureNonce", c->nonce};
    p[n++] = (struct sign_param){"SignatureVersion", "1.0"};
    p[n++] = (struct sign_param){"Timestamp", c->timestamp};
    p[n++] = (struct sign_param){"Version", c->version};
    if (c->security_token != NULL)
        p[n++] = (struct sign_param){"SecurityToken", c->security_token};
    if (sign_rpc(c->method, p, n, c->secret, sig, out) != 0)
        goto out;
    if (buf_adds(out, "&Signature=") != 0 || sign_encode(out, sig, strlen(sig)) != 0)
        goto out;
    rc = 0;
out:
    OPENSSL_cleanse(sig, sizeof(sig));
    return rc;
}

/*
 * Nonces come from a per-thread pool filled by RAND_bytes 4 KiB at a time:
 * one DRBG call (and its fork check) per 256 requests instead of one each.
 * A nonce is public once sent; the pool is not a secret worth more than it.
 */
#define SIGN_NONCE_POOL 4096

int sign_nonce(char out[33])
{
    static _Thread_local unsigned char pool[SIGN_NONCE_POOL];
    static _Thread_local size_t used = SIGN_NONCE_POOL;
    int rc = -1;

    if (used + 16 > sizeof(pool)) {
        if (RAND_bytes(pool, (int)sizeof(pool)) != 1)
            goto out;
        used = 0;
    }
    codec_hex(out, pool + used, 16);
    used += 16;
    rc = 0;
out:
    return rc;
}
