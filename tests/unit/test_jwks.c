/* JWKS parsing and the verified-token cache. */
#include "auth.h"
#include "jwks.h"
#include "jwksrc.h"
#include "unit.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdlib.h>

static void b64u_bn(struct buf *b, const BIGNUM *bn, int pad)
{
    unsigned char raw[600], tmp[900];
    int n = pad ? BN_bn2binpad(bn, raw, pad) : BN_bn2bin(bn, raw);
    int len = EVP_EncodeBlock(tmp, raw, n);

    for (int i = 0; i < len && tmp[i] != '='; i++)
        buf_addc(b, tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i]);
}

UNIT_TEST(jwks_rsa_ec_and_junk)
{
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIGNUM *n = NULL, *e = NULL, *x = NULL, *y = NULL;
    struct buf doc, report;
    struct auth_keyset *ks = NULL;

    EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_N, &n);
    EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_E, &e);
    EVP_PKEY_get_bn_param(ec, OSSL_PKEY_PARAM_EC_PUB_X, &x);
    EVP_PKEY_get_bn_param(ec, OSSL_PKEY_PARAM_EC_PUB_Y, &y);
    buf_init(&doc, 65536);
    buf_init(&report, 65536);
    buf_adds(&doc, "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r1\",\"use\":\"sig\",\"alg\":\"RS256\",\"n\":\"");
    b64u_bn(&doc, n, 0);
    buf_adds(&doc, "\",\"e\":\"");
    b64u_bn(&doc, e, 0);
    buf_adds(&doc, "\"},{\"kty\":\"EC\",\"kid\":\"e1\",\"crv\":\"P-256\",\"x\":\"");
    b64u_bn(&doc, x, 32);
    buf_adds(&doc, "\",\"y\":\"");
    b64u_bn(&doc, y, 32);
    /* The same EC point with y off the curve, and keys of other kinds. */
    buf_adds(&doc, "\"},{\"kty\":\"EC\",\"kid\":\"off\",\"crv\":\"P-256\",\"x\":\"");
    b64u_bn(&doc, x, 32);
    buf_adds(&doc, "\",\"y\":\"");
    b64u_bn(&doc, x, 32);
    buf_adds(&doc,
             "\"},{\"kty\":\"oct\",\"kid\":\"k\",\"k\":\"AAAA\"},{\"kty\":\"RSA\",\"kid\":\"enc\",\"use\":\"enc\","
             "\"n\":\"AQAB\",\"e\":\"AQAB\"},{\"kty\":\"RSA\",\"kid\":\"small\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}");
    CHECK_INT(jwks_parse(doc.p, doc.len, AUTH_RS256 | AUTH_ES256, &ks, &report), 2);
    CHECK(ks != NULL && ks->n == 2 && ks->id != 0);
    if (ks != NULL) {
        CHECK_STR(ks->keys[0].kid, "r1");
        CHECK_INT(ks->keys[0].algs, AUTH_RS256);
        CHECK_STR(ks->keys[1].kid, "e1");
        CHECK_INT(ks->keys[1].algs, AUTH_ES256);
    }
    CHECK(strstr(report.p, "kid \"off\": skipped: EC key") != NULL);
    CHECK(strstr(report.p, "kid \"k\": skipped: kty is neither RSA nor EC") != NULL);
    CHECK(strstr(report.p, "kid \"enc\": skipped: use is not \"sig\"") != NULL);
    CHECK(strstr(report.p, "kid \"small\": skipped") != NULL);
    auth_keyset_free(ks);
    ks = NULL;
    /* Only ES256 configured: the RSA key (alg RS256) is unusable. */
    buf_reset(&report);
    CHECK_INT(jwks_parse(doc.p, doc.len, AUTH_ES256, &ks, &report), 1);
    auth_keyset_free(ks);
    ks = NULL;
    CHECK_INT(jwks_parse("{\"keys\":{}}", 11, AUTH_RS256, &ks, &report), -1);
    CHECK_INT(jwks_parse("[]", 2, AUTH_RS256, &ks, &report), -1);
    CHECK(ks == NULL);
    BN_free(n);
    BN_free(e);
    BN_free(x);
    BN_free(y);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    buf_free(&doc);
    buf_free(&report);
}

/* A JWK with e = 1 (any n) made every RS* token forgeable: now skipped with
 * a reason, like the other unusable keys; the good key beside it stays. */
UNIT_TEST(jwks_rsa_exponent_checked)
{
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    BIGNUM *n = NULL, *e = NULL;
    struct buf doc, report;
    struct auth_keyset *ks = NULL;
    static const char *const bad_e[] = {"AQ", "Aw", "AQAA"}; /* 1, 3, 65536 */

    EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_N, &n);
    EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_E, &e);
    buf_init(&doc, 65536);
    buf_init(&report, 65536);
    buf_adds(&doc, "{\"keys\":[");
    for (size_t i = 0; i < 3; i++) {
        buf_printf(&doc, "{\"kty\":\"RSA\",\"kid\":\"e%zu\",\"n\":\"", i);
        b64u_bn(&doc, n, 0);
        buf_printf(&doc, "\",\"e\":\"%s\"},", bad_e[i]);
    }
    buf_adds(&doc, "{\"kty\":\"RSA\",\"kid\":\"good\",\"n\":\"");
    b64u_bn(&doc, n, 0);
    buf_adds(&doc, "\",\"e\":\"");
    b64u_bn(&doc, e, 0);
    buf_adds(&doc, "\"}]}");
    CHECK_INT(jwks_parse(doc.p, doc.len, AUTH_RS256, &ks, &report), 1);
    CHECK(ks != NULL && ks->n == 1 && strcmp(ks->keys[0].kid, "good") == 0);
    CHECK(report.p != NULL && strstr(report.p, "kid \"e0\": skipped: RSA key whose public exponent") != NULL);
    CHECK(report.p != NULL && strstr(report.p, "kid \"e1\": skipped: RSA key whose public exponent") != NULL);
    CHECK(report.p != NULL && strstr(report.p, "kid \"e2\": skipped: RSA key whose public exponent") != NULL);
    auth_keyset_free(ks);
    BN_free(n);
    BN_free(e);
    EVP_PKEY_free(rsa);
    buf_free(&doc);
    buf_free(&report);
}

/* Logs name the JWKS URL without what may carry credentials. */
UNIT_TEST(jwks_url_for_log)
{
    static const char *const cases[][2] = {
        {"https://idp.example.com/.well-known/jwks.json", "https://idp.example.com/.well-known/jwks.json"},
        {"https://alice:s3cret@idp.example.com:8443/certs?api_key=K3Y#frag", "https://idp.example.com:8443/certs"},
        {"http://tok@127.0.0.1:9000/jwks.json?sig=abc&x=1", "http://127.0.0.1:9000/jwks.json"},
        {"https://[::1]:8443/j?k=v", "https://[::1]:8443/j"},
        {"https://idp.example.com", "https://idp.example.com/"},
        {"::not a url", "(unparsable URL)"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = jwksrc_url_for_log(cases[i][0]);
        CHECK_STR(got, cases[i][1]);
        free(got);
    }
}

UNIT_TEST(token_cache)
{
    struct auth_cache *c = auth_cache_new(64);
    struct auth_params p = {AUTH_RS256, NULL, NULL, 10, 0};
    struct auth_identity id, got;
    const char *tok = "header.claims.sig";

    memset(&id, 0, sizeof(id));
    id.claims = json_loads("{\"sub\":\"alice\",\"jti\":\"j1\",\"exp\":1000}", 0, NULL);
    id.sub = "alice";
    id.exp = 1000;
    auth_cache_put(c, tok, strlen(tok), 7, 3, &id);
    CHECK(auth_cache_get(c, &p, tok, strlen(tok), 7, 3, 900, &got) == 1);
    CHECK_STR(got.sub, "alice");
    CHECK_STR(got.jti, "j1");
    auth_identity_clear(&got);
    CHECK(auth_cache_get(c, &p, tok, strlen(tok), 8, 3, 900, &got) == 0);  /* another key set */
    CHECK(auth_cache_get(c, &p, tok, strlen(tok), 7, 4, 900, &got) == 0);  /* reloaded config */
    CHECK(auth_cache_get(c, &p, tok, strlen(tok), 7, 3, 1010, &got) == 0); /* exp + leeway passed */
    CHECK(auth_cache_get(c, &p, "other.token.x", 13, 7, 3, 900, &got) == 0);
    CHECK(got.claims == NULL);
    auth_identity_clear(&id);
    auth_cache_free(c);
}
