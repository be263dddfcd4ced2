/*
 * JWT verification: every libjwt 1.10 defect named in the issue has a case
 * here, plus the claim checks. Tokens are made in this file with OpenSSL,
 * independently of the code under test.
 */
#include "auth.h"
#include "buf.h"
#include "unit.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <time.h>

static const char *secret = "0123456789abcdef0123456789abcdef-test-secret";

static void b64url(struct buf *b, const unsigned char *p, size_t n)
{
    unsigned char *tmp = malloc(n * 2 + 8);
    int len = EVP_EncodeBlock(tmp, p, (int)n);

    for (int i = 0; i < len; i++) {
        char c = (char)tmp[i];
        if (c == '=')
            break;
        buf_addc(b, c == '+' ? '-' : c == '/' ? '_' : c);
    }
    free(tmp);
}

/* header.claims signed with alg using an HMAC secret or a private key. */
static char *make_token(const char *header, const char *claims, const char *alg, const void *key, size_t keylen,
                        EVP_PKEY *pkey)
{
    struct buf b;
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    unsigned int maclen;
    const EVP_MD *md = strstr(alg, "384") ? EVP_sha384() : strstr(alg, "512") ? EVP_sha512() : EVP_sha256();

    buf_init(&b, 65536);
    b64url(&b, (const unsigned char *)header, strlen(header));
    buf_addc(&b, '.');
    b64url(&b, (const unsigned char *)claims, strlen(claims));
    if (alg[0] == 'H') {
        HMAC(md, key, (int)keylen, (unsigned char *)b.p, b.len, sig, &maclen);
        siglen = maclen;
    } else {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_DigestSignInit(ctx, NULL, md, NULL, pkey);
        EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)b.p, b.len);
        EVP_MD_CTX_free(ctx);
        if (alg[0] == 'E') {
            /* DER → raw r||s, 32 bytes each for P-256. */
            const unsigned char *p = sig;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
            BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
            BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
            siglen = 64;
            ECDSA_SIG_free(es);
        }
    }
    buf_addc(&b, '.');
    b64url(&b, sig, siglen);
    return buf_take(&b);
}

static struct auth_keyset *hmac_keyset(void)
{
    struct auth_keyset *ks = calloc(1, sizeof(*ks));

    ks->keys = calloc(1, sizeof(*ks->keys));
    ks->n = 1;
    ks->keys[0].algs = AUTH_ALGS_HMAC;
    ks->keys[0].secret_len = strlen(secret);
    ks->keys[0].secret = malloc(ks->keys[0].secret_len);
    memcpy(ks->keys[0].secret, secret, ks->keys[0].secret_len);
    return ks;
}

static struct auth_params params(int algs)
{
    struct auth_params p = {algs, "https://idp.example.com", "smc-gateway", 60, 0};
    return p;
}

static char claims_buf[2048];
static const char *claims(const char *extra)
{
    long now = (long)time(NULL);
    snprintf(claims_buf, sizeof(claims_buf),
             "{\"sub\":\"alice@example.com\",\"iss\":\"https://idp.example.com\",\"aud\":\"smc-gateway\","
             "\"exp\":%ld,\"iat\":%ld,\"team\":\"migration\"%s}",
             now + 600, now, extra);
    return claims_buf;
}

static enum auth_err verify_hs(const char *header, const char *cl, int algs, struct auth_identity *id)
{
    struct auth_keyset *ks = hmac_keyset();
    struct auth_params p = params(algs);
    char *t = make_token(header, cl, "HS256", secret, strlen(secret), NULL);
    enum auth_err e = auth_verify(&p, ks, t, strlen(t), (double)time(NULL), id);
    free(t);
    auth_keyset_free(ks);
    return e;
}

static enum auth_err hs(const char *header, const char *cl)
{
    struct auth_identity id;
    enum auth_err e = verify_hs(header, cl, AUTH_HS256, &id);
    auth_identity_clear(&id);
    return e;
}

UNIT_TEST(auth_hs256_valid_and_identity)
{
    struct auth_identity id;

    CHECK_INT(verify_hs("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims(",\"jti\":\"t-1\""), AUTH_HS256, &id), AUTH_OK);
    CHECK_STR(id.sub, "alice@example.com");
    CHECK_STR(id.jti, "t-1");
    auth_identity_clear(&id);
}

UNIT_TEST(auth_header_checks)
{
    CHECK_INT(hs("{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", claims("")), AUTH_OK);
    CHECK_INT(hs("{\"alg\":\"HS256\"}", claims("")), AUTH_OK);
    CHECK_INT(hs("{\"alg\":\"hs256\"}", claims("")), AUTH_E_ALG);
    CHECK_INT(hs("{\"alg\":\"HS384\"}", claims("")), AUTH_E_ALG);
    CHECK_INT(hs("{\"alg\":\"none\"}", claims("")), AUTH_E_ALG);
    CHECK_INT(hs("{\"typ\":\"JWT\"}", claims("")), AUTH_E_ALG);
    CHECK_INT(hs("{\"alg\":\"HS256\",\"typ\":\"JOSE+JSON\"}", claims("")), AUTH_E_TYP);
    CHECK_INT(hs("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", claims("")), AUTH_E_CRIT);
    CHECK_INT(hs("{\"alg\":\"HS256\",\"alg\":\"HS256\"}", claims("")), AUTH_E_HEADER);
    CHECK_INT(hs("[1]", claims("")), AUTH_E_HEADER);
}

UNIT_TEST(auth_claim_types)
{
    long now = (long)time(NULL);
    char c[512];

    CHECK_INT(hs("{\"alg\":\"HS256\"}", claims(",\"nbf\":\"0\"")), AUTH_E_CLAIMS);
    CHECK_INT(hs("{\"alg\":\"HS256\"}", claims(",\"sub\":\"bob\"")), AUTH_E_CLAIMS); /* duplicate key */
    snprintf(c, sizeof(c),
             "{\"sub\":\"a\",\"exp\":\"%ld\",\"iss\":\"https://idp.example.com\",\"aud\":\"smc-gateway\"}", now + 60);
    CHECK_INT(hs("{\"alg\":\"HS256\"}", c), AUTH_E_CLAIMS);
    snprintf(c, sizeof(c), "{\"sub\":\"a\",\"iss\":\"https://idp.example.com\",\"aud\":\"smc-gateway\"}");
    CHECK_INT(hs("{\"alg\":\"HS256\"}", c), AUTH_E_CLAIMS); /* no exp */
    snprintf(c, sizeof(c), "{\"sub\":\"\",\"exp\":%ld,\"iss\":\"https://idp.example.com\",\"aud\":\"smc-gateway\"}",
             now + 60);
    CHECK_INT(hs("{\"alg\":\"HS256\"}", c), AUTH_E_CLAIMS); /* empty sub */
    snprintf(c, sizeof(c), "{\"exp\":%ld,\"iss\":\"https://idp.example.com\",\"aud\":\"smc-gateway\"}", now + 60);
    CHECK_INT(hs("{\"alg\":\"HS256\"}", c), AUTH_E_CLAIMS); /* no sub */
    CHECK_INT(hs("{\"alg\":\"HS256\"}", claims(",\"aud\":[\"x\",1]")), AUTH_E_CLAIMS);
}

UNIT_TEST(auth_claim_values)
{
    long now = (long)time(NULL);
    char c[512];
    struct auth_identity id;

    snprintf(c, sizeof(c), "{\"sub\":\"a\",\"exp\":%ld,\"iss\":\"https://idp.example.com\",\"aud\":\"smc-gateway\"}",
             now - 61);
    CHECK_INT(hs("{\"alg\":\"HS256\"}", c), AUTH_E_EXPIRED);
    snprintf(c, sizeof(c), "{\"sub\":\"a\",\"exp\":%ld,\"iss\":\"https://idp.example.com\",\"aud\":\"smc-gateway\"}",
             now - 30); /* within leeway */
    CHECK_INT(hs("{\"alg\":\"HS256\"}", c), AUTH_OK);
    snprintf(c, sizeof(c), ",\"nbf\":%ld", now + 3600);
    CHECK_INT(hs("{\"alg\":\"HS256\"}", claims(c)), AUTH_E_NOT_YET_VALID);
    CHECK_INT(hs("{\"alg\":\"HS256\"}", claims(",\"iss\":\"https://evil.example.com\"")), AUTH_E_CLAIMS);
    snprintf(c, sizeof(c), "{\"sub\":\"a\",\"exp\":%ld,\"iss\":\"https://evil\",\"aud\":\"smc-gateway\"}", now + 60);
    CHECK_INT(hs("{\"alg\":\"HS256\"}", c), AUTH_E_ISSUER);
    snprintf(c, sizeof(c), "{\"sub\":\"a\",\"exp\":%ld,\"iss\":\"https://idp.example.com\",\"aud\":\"other\"}",
             now + 60);
    CHECK_INT(hs("{\"alg\":\"HS256\"}", c), AUTH_E_AUDIENCE);
    snprintf(c, sizeof(c),
             "{\"sub\":\"a\",\"exp\":%ld,\"iss\":\"https://idp.example.com\",\"aud\":[\"other\",\"smc-gateway\"]}",
             now + 60);
    CHECK_INT(hs("{\"alg\":\"HS256\"}", c), AUTH_OK);
    snprintf(c, sizeof(c),
             "{\"sub\":\"a\",\"exp\":%ld,\"iss\":\"https://idp.example.com\",\"aud\":\"smc-gateway\","
             "\"iat\":%ld}",
             now + 600, now + 3600);
    CHECK_INT(hs("{\"alg\":\"HS256\"}", c), AUTH_E_IAT_FUTURE);
    {
        struct auth_keyset *ks = hmac_keyset();
        struct auth_params p = params(AUTH_HS256);
        char *t;
        p.max_age_s = 300;
        snprintf(c, sizeof(c),
                 "{\"sub\":\"a\",\"exp\":%ld,\"iss\":\"https://idp.example.com\",\"aud\":\"smc-gateway\","
                 "\"iat\":%ld}",
                 now + 600, now - 1000);
        t = make_token("{\"alg\":\"HS256\"}", c, "HS256", secret, strlen(secret), NULL);
        CHECK_INT(auth_verify(&p, ks, t, strlen(t), (double)now, &id), AUTH_E_TOO_OLD);
        free(t);
        snprintf(c, sizeof(c),
                 "{\"sub\":\"a\",\"exp\":%ld,\"iss\":\"https://idp.example.com\",\"aud\":\"smc-gateway\"}", now + 600);
        t = make_token("{\"alg\":\"HS256\"}", c, "HS256", secret, strlen(secret), NULL);
        CHECK_INT(auth_verify(&p, ks, t, strlen(t), (double)now, &id), AUTH_E_TOO_OLD); /* iat required */
        free(t);
        auth_keyset_free(ks);
    }
}

UNIT_TEST(auth_signature_and_shape)
{
    struct auth_keyset *ks = hmac_keyset();
    struct auth_params p = params(AUTH_HS256);
    struct auth_identity id;
    char *t = make_token("{\"alg\":\"HS256\"}", claims(""), "HS256", "another-secret-another-secret-xx", 32, NULL);
    char *dot;

    CHECK_INT(auth_verify(&p, ks, t, strlen(t), (double)time(NULL), &id), AUTH_E_SIGNATURE);
    CHECK(id.claims == NULL && id.sub == NULL); /* nothing of a failed token is exposed */
    /* Strip the signature: alg none in disguise. */
    dot = strrchr(t, '.');
    dot[1] = '\0';
    CHECK_INT(auth_verify(&p, ks, t, strlen(t), (double)time(NULL), &id), AUTH_E_MALFORMED);
    CHECK_INT(auth_verify(&p, ks, "garbage", 7, (double)time(NULL), &id), AUTH_E_MALFORMED);
    CHECK_INT(auth_verify(&p, ks, "a.b.c.d", 7, (double)time(NULL), &id), AUTH_E_MALFORMED);
    CHECK_INT(auth_verify(&p, ks, "", 0, (double)time(NULL), &id), AUTH_E_NO_TOKEN);
    /* No key at all: never verified (libjwt accepts any signature then). */
    free(t);
    t = make_token("{\"alg\":\"HS256\"}", claims(""), "HS256", "", 0, NULL);
    CHECK_INT(auth_verify(&p, NULL, t, strlen(t), (double)time(NULL), &id), AUTH_E_NO_KEY);
    ks->keys[0].secret_len = 0;
    CHECK_INT(auth_verify(&p, ks, t, strlen(t), (double)time(NULL), &id), AUTH_E_SIGNATURE);
    free(t);
    auth_keyset_free(ks);
}

static char *pubkey_pem(EVP_PKEY *pkey)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *out;
    long n;

    PEM_write_bio_PUBKEY(bio, pkey);
    n = BIO_get_mem_data(bio, &data);
    /* The BIO's memory is not NUL-terminated: copy exactly n bytes. */
    out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(bio);
    return out;
}

UNIT_TEST(auth_rs256_and_key_confusion)
{
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    char *pem = pubkey_pem(rsa);
    const char *path = unit_file("rs.pub.pem", pem, 0644);
    struct auth_keyset *ks = NULL;
    struct buf err;
    struct auth_params p = params(AUTH_RS256);
    struct auth_identity id;
    char *t;

    buf_init(&err, 4096);
    CHECK(auth_keyset_load_file(path, AUTH_RS256, &ks, &err) == 0);
    t = make_token("{\"alg\":\"RS256\"}", claims(""), "RS256", NULL, 0, rsa);
    CHECK_INT(auth_verify(&p, ks, t, strlen(t), (double)time(NULL), &id), AUTH_OK);
    auth_identity_clear(&id);
    free(t);
    /* HS256 keyed with the RSA public key's PEM text: the classic confusion. */
    t = make_token("{\"alg\":\"HS256\"}", claims(""), "HS256", pem, strlen(pem), NULL);
    CHECK_INT(auth_verify(&p, ks, t, strlen(t), (double)time(NULL), &id), AUTH_E_ALG);
    p.algs = AUTH_RS256 | AUTH_HS256; /* even if a config slipped through */
    CHECK_INT(auth_verify(&p, ks, t, strlen(t), (double)time(NULL), &id), AUTH_E_NO_KEY);
    free(t);
    auth_keyset_free(ks);
    ks = NULL;
    /* The PEM as an HS secret file is refused at load. */
    CHECK(auth_keyset_load_file(path, AUTH_HS256, &ks, &err) != 0);
    CHECK(ks == NULL);
    /* An RSA key cannot serve ES256. */
    CHECK(auth_keyset_load_file(path, AUTH_ES256, &ks, &err) != 0);
    free(pem);
    EVP_PKEY_free(rsa);
    buf_free(&err);
}

UNIT_TEST(auth_es256)
{
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    char *pem = pubkey_pem(ec);
    const char *path = unit_file("es.pub.pem", pem, 0644);
    struct auth_keyset *ks = NULL;
    struct buf err;
    struct auth_params p = params(AUTH_ES256);
    struct auth_identity id;
    char *t;

    buf_init(&err, 4096);
    CHECK(auth_keyset_load_file(path, AUTH_ES256, &ks, &err) == 0);
    t = make_token("{\"alg\":\"ES256\",\"typ\":\"at+jwt\"}", claims(""), "ES256", NULL, 0, ec);
    CHECK_INT(auth_verify(&p, ks, t, strlen(t), (double)time(NULL), &id), AUTH_OK);
    auth_identity_clear(&id);
    t[strlen(t) - 3] ^= 1;
    CHECK_INT(auth_verify(&p, ks, t, strlen(t), (double)time(NULL), &id), AUTH_E_SIGNATURE);
    free(t);
    auth_keyset_free(ks);
    ks = NULL;
    /* A P-256 key cannot serve ES384. */
    CHECK(auth_keyset_load_file(path, AUTH_ES384, &ks, &err) != 0);
    CHECK(ks == NULL);
    free(pem);
    EVP_PKEY_free(ec);
    buf_free(&err);
}

/* rsa's modulus with public exponent e: a key no one holds the private half of. */
static EVP_PKEY *rsa_with_e(EVP_PKEY *rsa, unsigned long e)
{
    BIGNUM *n = NULL, *be = BN_new();
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *out = NULL;

    EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_N, &n);
    BN_set_word(be, e);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be);
    params = OSSL_PARAM_BLD_to_param(bld);
    if (EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &out, EVP_PKEY_PUBLIC_KEY, params) != 1)
        out = NULL;
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    BN_free(n);
    BN_free(be);
    return out;
}

/* With e = 1 the "signature" is the PKCS#1 v1.5 encoding of the digest itself. */
static char *forge_rs256_e1(const char *header, const char *cl, size_t modlen)
{
    static const unsigned char sha256_prefix[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                                  0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
    unsigned char em[1024], *p;
    struct buf b;

    buf_init(&b, 65536);
    b64url(&b, (const unsigned char *)header, strlen(header));
    buf_addc(&b, '.');
    b64url(&b, (const unsigned char *)cl, strlen(cl));
    memset(em, 0xff, modlen);
    em[0] = 0x00;
    em[1] = 0x01;
    p = em + modlen - 32 - sizeof(sha256_prefix) - 1;
    *p++ = 0x00;
    memcpy(p, sha256_prefix, sizeof(sha256_prefix));
    EVP_Digest(b.p, b.len, p + sizeof(sha256_prefix), NULL, EVP_sha256(), NULL);
    buf_addc(&b, '.');
    b64url(&b, em, modlen);
    return buf_take(&b);
}

/* A key file whose RSA exponent is 1 made every RS* token forgeable; small
 * and even exponents are refused too (SP 800-56B range: odd, 2^16 < e < 2^256). */
UNIT_TEST(auth_key_file_rsa_exponent)
{
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    static const unsigned long bad[] = {1, 3, 17, 65536, 65538};
    struct auth_keyset *ks = NULL;
    struct buf err;
    struct auth_params p = params(AUTH_RS256);
    struct auth_identity id;
    char *t;

    buf_init(&err, 4096);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        EVP_PKEY *k = rsa_with_e(rsa, bad[i]);
        char *pem;
        const char *path;
        CHECK(k != NULL);
        if (k == NULL)
            continue;
        pem = pubkey_pem(k);
        path = unit_file("rs-e.pub.pem", pem, 0644);
        buf_reset(&err);
        CHECK(auth_keyset_load_file(path, AUTH_RS256, &ks, &err) != 0);
        CHECK(ks == NULL);
        CHECK(err.p != NULL && strstr(err.p, path) != NULL && strstr(err.p, "public exponent") != NULL);
        if (ks != NULL && bad[i] == 1) {
            /* What the old code let through: a token anyone can make. */
            t = forge_rs256_e1("{\"alg\":\"RS256\"}", claims(""), 256);
            CHECK_INT(auth_verify(&p, ks, t, strlen(t), (double)time(NULL), &id), AUTH_E_SIGNATURE);
            auth_identity_clear(&id);
            free(t);
        }
        auth_keyset_free(ks);
        ks = NULL;
        free(pem);
        EVP_PKEY_free(k);
    }
    /* 65537, the usual exponent, and a larger odd one are fine. */
    for (unsigned long e = 65537; e <= 65539; e += 2) {
        EVP_PKEY *k = rsa_with_e(rsa, e);
        char *pem = pubkey_pem(k);
        buf_reset(&err);
        CHECK(auth_keyset_load_file(unit_file("rs-e.pub.pem", pem, 0644), AUTH_RS256, &ks, &err) == 0);
        auth_keyset_free(ks);
        ks = NULL;
        free(pem);
        EVP_PKEY_free(k);
    }
    EVP_PKEY_free(rsa);
    buf_free(&err);
}

/* The SPKI of the P-256 point at infinity (the encoding 0x00): with it, any
 * r, s of the right shape verifies, so anyone could make ES256 tokens. */
static const char inf_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                              "MBkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDAgAA\n"
                              "-----END PUBLIC KEY-----\n";

UNIT_TEST(auth_key_file_ec_checked)
{
    const char *path = unit_file("inf.pub.pem", inf_pem, 0644);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    struct auth_keyset *ks = NULL;
    struct buf err;
    char *pem;

    buf_init(&err, 4096);
    CHECK(auth_keyset_load_file(path, AUTH_ES256, &ks, &err) != 0);
    CHECK(ks == NULL);
    CHECK(err.p != NULL && strstr(err.p, path) != NULL && strstr(err.p, "point at infinity") != NULL);
    auth_keyset_free(ks);
    ks = NULL;
    /* A real key written with explicit curve parameters: refused as well. */
    buf_reset(&err);
    CHECK(EVP_PKEY_set_utf8_string_param(ec, OSSL_PKEY_PARAM_EC_ENCODING, OSSL_PKEY_EC_ENCODING_EXPLICIT) == 1);
    pem = pubkey_pem(ec);
    path = unit_file("explicit.pub.pem", pem, 0644);
    CHECK(auth_keyset_load_file(path, AUTH_ES256, &ks, &err) != 0);
    CHECK(err.p != NULL && strstr(err.p, "explicit curve parameters") != NULL);
    auth_keyset_free(ks);
    free(pem);
    EVP_PKEY_free(ec);
    buf_free(&err);
}

UNIT_TEST(auth_key_files)
{
    struct auth_keyset *ks = NULL;
    struct buf err;

    buf_init(&err, 4096);
    CHECK(auth_keyset_load_file(unit_file("empty.key", "", 0600), AUTH_HS256, &ks, &err) != 0);
    CHECK(strstr(err.p, "at least 32") != NULL);
    CHECK(auth_keyset_load_file(unit_file("short.key", "short\n", 0600), AUTH_HS256, &ks, &err) != 0);
    CHECK(auth_keyset_load_file(unit_file("empty.pem", "", 0644), AUTH_RS256, &ks, &err) != 0);
    CHECK(auth_keyset_load_file("/nonexistent/key", AUTH_RS256, &ks, &err) != 0);
    CHECK(ks == NULL);
    CHECK(auth_keyset_load_file(unit_file("ok.key", "0123456789abcdef0123456789abcdef\n", 0600), AUTH_HS256, &ks,
                                &err) == 0);
    CHECK_INT(ks->keys[0].secret_len, 32); /* trailing newline removed */
    auth_keyset_free(ks);
    buf_free(&err);
}

UNIT_TEST(auth_team_claims)
{
    json_t *c = json_loads("{\"team\":\"migration\",\"groups\":[\"staff\",\"smc-migration\",\"smc-ops\"],"
                           "\"realm_access\":{\"roles\":[\"a\",\"b\"]},\"realm_access.roles\":\"literal\","
                           "\"x\":{\"y\":{\"z\":\"deep\"}},\"n\":5}",
                           0, NULL);
    const char *t[8];

    CHECK_INT(auth_teams(c, "team", NULL, t, 8), 1);
    CHECK_STR(t[0], "migration");
    CHECK_INT(auth_teams(c, "groups", "smc-", t, 8), 2);
    CHECK_STR(t[0], "migration");
    CHECK_STR(t[1], "ops");
    CHECK_INT(auth_teams(c, "groups", NULL, t, 8), 3);
    /* A top-level claim literally named with dots wins over the path. */
    CHECK_INT(auth_teams(c, "realm_access.roles", NULL, t, 8), 1);
    CHECK_STR(t[0], "literal");
    CHECK_INT(auth_teams(c, "x.y.z", NULL, t, 8), 1);
    CHECK_STR(t[0], "deep");
    CHECK_INT(auth_teams(c, "n", NULL, t, 8), 0);
    CHECK_INT(auth_teams(c, "missing.path", NULL, t, 8), 0);
    CHECK_INT(auth_teams(c, "groups", NULL, t, 1), 1);
    json_decref(c);
}
