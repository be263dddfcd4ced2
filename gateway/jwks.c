/*
 * jwks: JWK → EVP_PKEY with OpenSSL 3's EVP_PKEY_fromdata (see jwks.h).
 * A kid is only a lookup key; nothing else of a JWK is trusted beyond the
 * key material, and a token header's jku/x5u/jwk/x5c are never consulted.
 */
#include "jwks.h"

#include "codec.h"

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JWK_FIELD_MAX 1024 /* decoded bytes of n, e, x or y (RSA 8192 = 1024) */

/* base64url field of a JWK into bytes; -1 when absent or malformed. */
static long field(const json_t *jwk, const char *name, unsigned char *out, size_t outmax)
{
    const char *s = json_string_value(json_object_get(jwk, name));

    if (s == NULL)
        return -1;
    return codec_b64url_decode(out, outmax, s, strlen(s));
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;

    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

static EVP_PKEY *rsa_key(const json_t *jwk, const char **why)
{
    unsigned char n[JWK_FIELD_MAX], e[16];
    long nl = field(jwk, "n", n, sizeof(n)), el = field(jwk, "e", e, sizeof(e));
    BIGNUM *bn = NULL, *be = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;

    if (nl <= 0 || el <= 0) {
        *why = "RSA key without valid n and e";
        goto out;
    }
    bn = BN_bin2bn(n, (int)nl, NULL);
    be = BN_bin2bn(e, (int)el, NULL);
    if (bld == NULL || bn == NULL || be == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) || (pkey = from_params("RSA", bld)) == NULL) {
        *why = "RSA key OpenSSL refused";
        goto out;
    }
    if (EVP_PKEY_get_bits(pkey) < 2048) {
        *why = "RSA key shorter than 2048 bits";
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
out:
    BN_free(bn);
    BN_free(be);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

static EVP_PKEY *ec_key(const json_t *jwk, const char **why)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv")), *group;
    unsigned char x[80], y[80], point[1 + 2 * 66];
    long xl, yl;
    size_t coord;
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pkey = NULL;

    if (crv != NULL && strcmp(crv, "P-256") == 0) {
        group = "prime256v1";
        coord = 32;
    } else if (crv != NULL && strcmp(crv, "P-384") == 0) {
        group = "secp384r1";
        coord = 48;
    } else if (crv != NULL && strcmp(crv, "P-521") == 0) {
        group = "secp521r1";
        coord = 66;
    } else {
        *why = "EC key on a curve other than P-256, P-384, P-521";
        return NULL;
    }
    xl = field(jwk, "x", x, sizeof(x));
    yl = field(jwk, "y", y, sizeof(y));
    if (xl != (long)coord || yl != (long)coord) {
        *why = "EC key whose x and y are not the curve's size";
        return NULL;
    }
    point[0] = 0x04;
    memcpy(point + 1, x, coord);
    memcpy(point + 1 + coord, y, coord);
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * coord) ||
        (pkey = from_params("EC", bld)) == NULL) {
        *why = "EC key OpenSSL refused";
        goto out;
    }
out:
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

int jwks_parse(const char *doc, size_t len, int algs, struct auth_keyset **out, struct buf *report)
{
    int rc = -1;
    json_t *root = NULL, *keys, *jwk;
    struct auth_keyset *ks = NULL;
    size_t i;
    json_error_t je;

    if (len > JWKS_DOC_MAX) {
        buf_printf(report, "the JWKS document is larger than %d bytes\n", JWKS_DOC_MAX);
        goto out;
    }
    root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &je);
    keys = json_object_get(root, "keys");
    if (!json_is_array(keys)) {
        /* je.text quotes the document: the IdP's bytes, escaped for terminals. */
        buf_adds(report, "not a JWKS document (an object with a \"keys\" array)");
        if (root == NULL) {
            buf_printf(report, ": line %d, column %d: ", je.line, je.column);
            buf_term_str(report, je.text, strlen(je.text));
        }
        buf_addc(report, '\n');
        goto out;
    }
    ks = calloc(1, sizeof(*ks));
    if (ks == NULL || (ks->keys = calloc(JWKS_KEYS_MAX, sizeof(*ks->keys))) == NULL)
        goto out;
    json_array_foreach(keys, i, jwk)
    {
        const char *kty = json_string_value(json_object_get(jwk, "kty"));
        const char *use = json_string_value(json_object_get(jwk, "use"));
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        const char *alg = json_string_value(json_object_get(jwk, "alg"));
        const char *why = NULL;
        EVP_PKEY *pkey = NULL;
        int usable = 0, jalg = 0;
        struct buf label;

        /* The kid is the IdP's text: escaped, so a report line stays one line. */
        buf_init(&label, 4 * AUTH_KID_MAX + 32);
        if (kid != NULL && strlen(kid) <= AUTH_KID_MAX) {
            buf_adds(&label, "kid \"");
            buf_term_str(&label, kid, strlen(kid));
            buf_addc(&label, '"');
        } else {
            buf_printf(&label, "key #%zu", i);
        }
        if (!json_is_object(jwk))
            why = "not a JSON object";
        else if (kid != NULL && (strlen(kid) == 0 || strlen(kid) > AUTH_KID_MAX))
            why = "kid empty or longer than 128 characters";
        else if (json_object_get(jwk, "kid") != NULL && kid == NULL)
            why = "kid is not a string";
        else if (use != NULL && strcmp(use, "sig") != 0)
            why = "use is not \"sig\"";
        else if (json_object_get(jwk, "use") != NULL && use == NULL)
            why = "use is not a string";
        else if (alg != NULL && (jalg = auth_alg_parse(alg)) == 0)
            why = "alg is not a JWS algorithm the gateway knows";
        else if (kty == NULL)
            why = "no kty";
        else if (strcmp(kty, "RSA") == 0)
            pkey = rsa_key(jwk, &why);
        else if (strcmp(kty, "EC") == 0)
            pkey = ec_key(jwk, &why);
        else
            why = "kty is neither RSA nor EC";
        /* The checks a key file gets too: the point on the curve and not at
         * infinity, the RSA exponent and modulus (auth_pkey_check). */
        if (pkey != NULL && auth_pkey_check(pkey, &why) != 0) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
        if (pkey != NULL) {
            usable = auth_pkey_algs(pkey) & algs;
            if (jalg != 0)
                usable &= jalg; /* the JWK's alg pins the token's alg */
            if (usable == 0) {
                why = jalg ? "its alg is not in auth.algorithms or does not fit the key"
                           : "no algorithm in auth.algorithms fits this key";
                EVP_PKEY_free(pkey);
                pkey = NULL;
            }
        }
        ERR_clear_error();
        if (pkey == NULL) {
            buf_printf(report, "%s: skipped: %s\n", label.p ? label.p : "key", why ? why : "unusable");
            buf_free(&label);
            continue;
        }
        if (ks->n >= JWKS_KEYS_MAX) {
            buf_printf(report, "%s: skipped: more than %d keys\n", label.p ? label.p : "key", JWKS_KEYS_MAX);
            buf_free(&label);
            EVP_PKEY_free(pkey);
            continue;
        }
        buf_free(&label);
        snprintf(ks->keys[ks->n].kid, sizeof(ks->keys[ks->n].kid), "%s", kid ? kid : "");
        ks->keys[ks->n].algs = usable;
        ks->keys[ks->n].pkey = pkey;
        ks->n++;
    }
    if (ks->n == 0) {
        buf_printf(report, "no usable key in the JWKS document\n");
        goto out;
    }
    rc = (int)ks->n;
    ks->id = auth_keyset_next_id();
    *out = ks;
    ks = NULL;
out:
    auth_keyset_free(ks);
    json_decref(root);
    return rc;
}
