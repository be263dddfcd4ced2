/*
 * auth: JWT verification (see auth.h). The order of checks is: shape and size,
 * header (alg allow-listed, typ, crit), claims JSON and types, key selection,
 * signature over the received bytes, then claim values (times, iss, aud).
 */
#include "auth.h"

#include "codec.h"

#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_HEADER_MAX 2048   /* decoded header bytes */
#define AUTH_CLAIMS_MAX 18432  /* decoded claims bytes */
#define AUTH_SIG_MAX 1024      /* decoded signature bytes (RSA 8192) */
#define AUTH_KEYFILE_MAX 65536 /* key file bytes */

static const struct {
    const char *name;
    int alg;
} alg_names[] = {
    {"HS256", AUTH_HS256}, {"HS384", AUTH_HS384}, {"HS512", AUTH_HS512}, {"RS256", AUTH_RS256}, {"RS384", AUTH_RS384},
    {"RS512", AUTH_RS512}, {"ES256", AUTH_ES256}, {"ES384", AUTH_ES384}, {"ES512", AUTH_ES512},
};

int auth_alg_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++)
        if (strcmp(name, alg_names[i].name) == 0)
            return alg_names[i].alg;
    return 0;
}

const char *auth_alg_name(int alg)
{
    for (size_t i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++)
        if (alg_names[i].alg == alg)
            return alg_names[i].name;
    return "?";
}

static const struct {
    const char *code;
    const char *text;
} err_names[] = {
    [AUTH_OK] = {"ok", "token verified"},
    [AUTH_E_NO_TOKEN] = {"no_token", "no bearer token was sent"},
    [AUTH_E_MALFORMED] = {"malformed", "the token is not a well-formed compact JWT"},
    [AUTH_E_HEADER] = {"bad_header", "the token header is not a valid JSON object"},
    [AUTH_E_ALG] = {"alg_not_allowed", "the token's algorithm is not accepted"},
    [AUTH_E_TYP] = {"typ_not_allowed", "the token's typ is not accepted"},
    [AUTH_E_CRIT] = {"crit_not_supported", "the token has critical header parameters"},
    [AUTH_E_CLAIMS] = {"bad_claims", "the token's claims are invalid (JSON, types, exp or sub)"},
    [AUTH_E_NO_KEY] = {"no_key", "no verification key matches the token"},
    [AUTH_E_SIGNATURE] = {"bad_signature", "the token's signature is invalid"},
    [AUTH_E_EXPIRED] = {"expired", "the token has expired"},
    [AUTH_E_NOT_YET_VALID] = {"not_yet_valid", "the token is not valid yet (nbf)"},
    [AUTH_E_IAT_FUTURE] = {"iat_in_future", "the token was issued in the future (iat)"},
    [AUTH_E_TOO_OLD] = {"too_old", "the token is older than the accepted age (iat)"},
    [AUTH_E_ISSUER] = {"bad_issuer", "the token's issuer is not accepted"},
    [AUTH_E_AUDIENCE] = {"bad_audience", "the token is not meant for this audience"},
    [AUTH_E_INTERNAL] = {"internal", "the token could not be checked"},
};

const char *auth_err_code(enum auth_err e)
{
    return (unsigned)e < sizeof(err_names) / sizeof(err_names[0]) ? err_names[e].code : "internal";
}

const char *auth_err_text(enum auth_err e)
{
    return (unsigned)e < sizeof(err_names) / sizeof(err_names[0]) ? err_names[e].text : "internal error";
}

static const EVP_MD *alg_md(int alg)
{
    if (alg & (AUTH_HS256 | AUTH_RS256 | AUTH_ES256))
        return EVP_sha256();
    if (alg & (AUTH_HS384 | AUTH_RS384 | AUTH_ES384))
        return EVP_sha384();
    return EVP_sha512();
}

int auth_pkey_algs(EVP_PKEY *pkey)
{
    char group[64];

    if (EVP_PKEY_is_a(pkey, "RSA"))
        return EVP_PKEY_get_bits(pkey) >= 2048 ? AUTH_ALGS_RSA : 0;
    if (EVP_PKEY_is_a(pkey, "EC") && EVP_PKEY_get_group_name(pkey, group, sizeof(group), NULL) == 1) {
        if (strcmp(group, "prime256v1") == 0)
            return AUTH_ES256;
        if (strcmp(group, "secp384r1") == 0)
            return AUTH_ES384;
        if (strcmp(group, "secp521r1") == 0)
            return AUTH_ES512;
    }
    return 0;
}

int auth_pkey_check(EVP_PKEY *pkey, const char **why)
{
    int rc = -1, is_rsa = EVP_PKEY_is_a(pkey, "RSA"), is_ec = EVP_PKEY_is_a(pkey, "EC"), bits, explicit = 0;
    BIGNUM *e = NULL;
    EVP_PKEY_CTX *ctx = NULL;

    if (is_rsa) {
        /* e = 1 makes every signature verify; small e invites the e = 3
         * forgeries of lax PKCS#1 parsers; a huge e makes each verification a
         * full modular exponentiation. NIST SP 800-56B and FIPS 186-5 ask
         * for an odd e with 2^16 < e < 2^256, and IdPs use 65537. */
        if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1) {
            *why = "RSA key without a public exponent";
            goto out;
        }
        bits = BN_num_bits(e);
        if (!BN_is_odd(e) || bits <= 16 || bits > 256) {
            *why = "RSA key whose public exponent is not an odd number between 2^16 and 2^256 (65537 is usual)";
            goto out;
        }
    }
    if (is_ec && EVP_PKEY_get_int_param(pkey, OSSL_PKEY_PARAM_EC_DECODED_FROM_EXPLICIT_PARAMS, &explicit) == 1 &&
        explicit != 0) {
        /* Explicit parameters can name a generator of the attacker's choice. */
        *why = "EC key with explicit curve parameters (only named curves are accepted)";
        goto out;
    }
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (ctx == NULL || EVP_PKEY_public_check(ctx) != 1) {
        *why = is_ec    ? "EC key whose point is not on the curve or is the point at infinity"
               : is_rsa ? "RSA key whose modulus fails OpenSSL's public-key check"
                        : "public key that fails OpenSSL's public-key check";
        goto out;
    }
    rc = 0;
out:
    ERR_clear_error();
    EVP_PKEY_CTX_free(ctx);
    BN_free(e);
    return rc;
}

uint64_t auth_keyset_next_id(void)
{
    /* Sets are made on more than one thread (start-up, reload, JWKS fetches):
     * an id used twice would let the token cache serve one set's tokens to
     * another. */
    static _Atomic uint64_t next;

    return atomic_fetch_add(&next, 1) + 1;
}

struct auth_keyset *auth_keyset_ref(struct auth_keyset *ks)
{
    if (ks != NULL)
        atomic_fetch_add(&ks->refs, 1);
    return ks;
}

void auth_keyset_free(struct auth_keyset *ks)
{
    /* refs counts the references beyond the first (calloc'ed sets start at 0). */
    if (ks == NULL || atomic_fetch_sub(&ks->refs, 1) > 0)
        return;
    for (size_t i = 0; i < ks->n; i++) {
        EVP_PKEY_free(ks->keys[i].pkey);
        if (ks->keys[i].secret != NULL) {
            OPENSSL_cleanse(ks->keys[i].secret, ks->keys[i].secret_len);
            free(ks->keys[i].secret);
        }
    }
    free(ks->keys);
    free(ks);
}

int auth_keyset_from_bytes(const char *path, const char *bytes, size_t nbytes, int algs, struct auth_keyset **out,
                           struct buf *err)
{
    int rc = -1;
    struct auth_keyset *ks = NULL;
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;
    const char *why = NULL;

    ks = calloc(1, sizeof(*ks));
    if (ks == NULL || (ks->keys = calloc(1, sizeof(*ks->keys))) == NULL)
        goto out;
    if (algs & AUTH_ALGS_HMAC) {
        size_t len = nbytes;
        if (len > 0 && bytes[len - 1] == '\n')
            len--;
        if (len > 0 && bytes[len - 1] == '\r')
            len--;
        if (len < AUTH_HMAC_MIN) {
            buf_printf(err, "%s: HMAC secret is %zu bytes, at least %d are required\n", path, len, AUTH_HMAC_MIN);
            goto out;
        }
        if (memmem(bytes, len, "-----BEGIN", 10) != NULL) {
            /* A PEM as an HMAC secret is the key-confusion attack's shape. */
            buf_printf(err, "%s: HS* algorithms need a shared secret, not a PEM key\n", path);
            goto out;
        }
        ks->keys[0].secret = malloc(len);
        if (ks->keys[0].secret == NULL)
            goto out;
        memcpy(ks->keys[0].secret, bytes, len);
        ks->keys[0].secret_len = len;
        ks->keys[0].algs = AUTH_ALGS_HMAC;
    } else {
        int usable;
        if (nbytes == 0) {
            buf_printf(err, "%s: key file is empty\n", path);
            goto out;
        }
        bio = BIO_new_mem_buf(bytes, (int)nbytes);
        pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
        ERR_clear_error();
        if (pkey == NULL) {
            buf_printf(err, "%s: not a PEM public key\n", path);
            goto out;
        }
        if (auth_pkey_check(pkey, &why) != 0) {
            buf_printf(err, "%s: refused: %s\n", path, why);
            goto out;
        }
        usable = auth_pkey_algs(pkey);
        if ((algs & ~usable) != 0) {
            buf_printf(err,
                       "%s: this key cannot verify %s (RSA keys of at least 2048 bits for RS*, EC keys of the "
                       "matching curve for ES*)\n",
                       path, auth_alg_name(algs & ~usable & -(algs & ~usable)));
            goto out;
        }
        ks->keys[0].pkey = pkey;
        ks->keys[0].algs = usable;
        pkey = NULL;
    }
    ks->n = 1;
    ks->id = auth_keyset_next_id();
    *out = ks;
    ks = NULL;
    rc = 0;
out:
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    auth_keyset_free(ks);
    return rc;
}

int auth_keyset_load_file(const char *path, int algs, struct auth_keyset **out, struct buf *err)
{
    int rc = -1;
    struct buf data;

    buf_init(&data, AUTH_KEYFILE_MAX);
    if (buf_read_file(&data, path) != 0)
        buf_printf(err, "%s: cannot read: %s\n", path, errno == EFBIG ? "file too large" : strerror(errno));
    else
        rc = auth_keyset_from_bytes(path, data.p, data.len, algs, out, err);
    buf_wipe(&data);
    return rc;
}

/* Point sub, iss and jti into id->claims (so they live as long as it does). */
static void identity_point(struct auth_identity *id)
{
    id->sub = json_string_value(json_object_get(id->claims, "sub"));
    id->iss = json_string_value(json_object_get(id->claims, "iss"));
    id->jti = json_string_value(json_object_get(id->claims, "jti"));
}

void auth_identity_clear(struct auth_identity *id)
{
    json_decref(id->claims);
    memset(id, 0, sizeof(*id));
}

static json_t *decode_json_segment(const char *seg, size_t len, size_t max)
{
    json_t *j = NULL;
    unsigned char *raw;
    long n;

    raw = malloc(max);
    if (raw == NULL)
        return NULL;
    n = codec_b64url_decode(raw, max, seg, len);
    if (n >= 0)
        j = json_loadb((const char *)raw, (size_t)n, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, NULL);
    free(raw);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* ES* signatures are r||s of fixed width; OpenSSL verifies DER. */
static int ecdsa_raw_to_der(const unsigned char *sig, size_t len, unsigned char **der, size_t *derlen)
{
    int rc = -1, n;
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL, *s = NULL;
    unsigned char *p = NULL;

    if (len == 0 || len % 2 != 0)
        goto out;
    r = BN_bin2bn(sig, (int)(len / 2), NULL);
    s = BN_bin2bn(sig + len / 2, (int)(len / 2), NULL);
    es = ECDSA_SIG_new();
    if (r == NULL || s == NULL || es == NULL || ECDSA_SIG_set0(es, r, s) != 1)
        goto out;
    r = s = NULL;
    n = i2d_ECDSA_SIG(es, &p);
    if (n <= 0)
        goto out;
    *der = p;
    *derlen = (size_t)n;
    rc = 0;
out:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return rc;
}

static size_t es_sig_len(int alg)
{
    return alg == AUTH_ES256 ? 64 : alg == AUTH_ES384 ? 96 : 132;
}

static int verify_signature(const struct auth_key *k, int alg, const char *input, size_t inlen,
                            const unsigned char *sig, size_t siglen)
{
    int ok = 0;
    EVP_MD_CTX *ctx = NULL;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    unsigned char *der = NULL;
    size_t derlen = 0;

    if ((k->algs & alg) == 0)
        goto out;
    if (alg & AUTH_ALGS_HMAC) {
        /* Never without a key: an empty secret is refused at load and here. */
        if (k->secret == NULL || k->secret_len < AUTH_HMAC_MIN)
            goto out;
        if (HMAC(alg_md(alg), k->secret, (int)k->secret_len, (const unsigned char *)input, inlen, mac, &maclen) == NULL)
            goto out;
        ok = maclen == siglen && CRYPTO_memcmp(mac, sig, siglen) == 0;
        goto out;
    }
    if (k->pkey == NULL)
        goto out;
    if (alg & AUTH_ALGS_EC) {
        if (siglen != es_sig_len(alg) || ecdsa_raw_to_der(sig, siglen, &der, &derlen) != 0)
            goto out;
        sig = der;
        siglen = derlen;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestVerifyInit(ctx, NULL, alg_md(alg), NULL, k->pkey) != 1)
        goto out;
    ok = EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)input, inlen) == 1;
out:
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok;
}

/* Pick the key: by kid when the token names one, else the only usable key. */
static const struct auth_key *select_key(const struct auth_keyset *ks, const char *kid, int alg)
{
    const struct auth_key *found = NULL;
    size_t usable = 0;

    if (ks == NULL)
        return NULL;
    for (size_t i = 0; i < ks->n; i++) {
        const struct auth_key *k = &ks->keys[i];
        if ((k->algs & alg) == 0)
            continue;
        if (kid != NULL && k->kid[0] != '\0') {
            if (strcmp(k->kid, kid) == 0)
                return k;
            continue;
        }
        found = k;
        usable++;
    }
    /* Keys without a kid (a single key file) serve any kid; a set of several
     * keys without a kid match is ambiguous and refused. */
    return usable == 1 ? found : NULL;
}

static int aud_matches(const json_t *aud, const char *want)
{
    size_t i;
    json_t *v;

    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    json_array_foreach(aud, i, v) if (strcmp(json_string_value(v), want) == 0) return 1;
    return 0;
}

/* Types of the registered claims, strictly: refuses what libjwt would coerce. */
static int claims_types_ok(const json_t *c)
{
    json_t *v;
    size_t i;
    json_t *e;

    v = json_object_get(c, "exp");
    if (v == NULL || !json_is_number(v))
        return 0;
    if ((v = json_object_get(c, "nbf")) != NULL && !json_is_number(v))
        return 0;
    if ((v = json_object_get(c, "iat")) != NULL && !json_is_number(v))
        return 0;
    v = json_object_get(c, "sub");
    if (v == NULL || !json_is_string(v) || json_string_length(v) == 0)
        return 0;
    if ((v = json_object_get(c, "iss")) != NULL && !json_is_string(v))
        return 0;
    if ((v = json_object_get(c, "jti")) != NULL && !json_is_string(v))
        return 0;
    if ((v = json_object_get(c, "aud")) != NULL) {
        if (json_is_array(v)) {
            json_array_foreach(v, i, e) if (!json_is_string(e)) return 0;
        } else if (!json_is_string(v)) {
            return 0;
        }
    }
    return 1;
}

enum auth_err auth_verify(const struct auth_params *p, const struct auth_keyset *ks, const char *token, size_t len,
                          double now_s, struct auth_identity *id)
{
    enum auth_err rc = AUTH_E_MALFORMED;
    const char *dot1, *dot2, *sigtxt;
    json_t *hdr = NULL, *claims = NULL, *v;
    const char *algname, *kid = NULL;
    const struct auth_key *key;
    unsigned char sig[AUTH_SIG_MAX];
    long siglen;
    int alg;
    double exp, nbf, iat = 0;

    memset(id, 0, sizeof(*id));
    if (len == 0) {
        rc = AUTH_E_NO_TOKEN;
        goto out;
    }
    if (len > AUTH_TOKEN_MAX || memchr(token, '\0', len) != NULL)
        goto out;
    dot1 = memchr(token, '.', len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot1 == NULL || dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        goto out;
    sigtxt = dot2 + 1;
    /* An empty signature is "alg: none" in disguise. */
    if (sigtxt == token + len)
        goto out;

    hdr = decode_json_segment(token, (size_t)(dot1 - token), AUTH_HEADER_MAX);
    if (hdr == NULL) {
        rc = AUTH_E_HEADER;
        goto out;
    }
    v = json_object_get(hdr, "alg");
    algname = json_is_string(v) ? json_string_value(v) : NULL;
    alg = algname ? auth_alg_parse(algname) : 0;
    if (alg == 0 || (alg & p->algs) == 0) {
        rc = AUTH_E_ALG;
        goto out;
    }
    v = json_object_get(hdr, "typ");
    if (v != NULL && (!json_is_string(v) ||
                      (strcmp(json_string_value(v), "JWT") != 0 && strcmp(json_string_value(v), "at+jwt") != 0))) {
        rc = AUTH_E_TYP;
        goto out;
    }
    if (json_object_get(hdr, "crit") != NULL) {
        rc = AUTH_E_CRIT;
        goto out;
    }
    v = json_object_get(hdr, "kid");
    if (v != NULL) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > AUTH_KID_MAX) {
            rc = AUTH_E_HEADER;
            goto out;
        }
        kid = json_string_value(v);
    }

    claims = decode_json_segment(dot1 + 1, (size_t)(dot2 - dot1 - 1), AUTH_CLAIMS_MAX);
    if (claims == NULL || !claims_types_ok(claims)) {
        rc = AUTH_E_CLAIMS;
        goto out;
    }

    key = select_key(ks, kid, alg);
    if (key == NULL) {
        rc = AUTH_E_NO_KEY;
        goto out;
    }
    siglen = codec_b64url_decode(sig, sizeof(sig), sigtxt, (size_t)(token + len - sigtxt));
    if (siglen <= 0 || !verify_signature(key, alg, token, (size_t)(dot2 - token), sig, (size_t)siglen)) {
        rc = AUTH_E_SIGNATURE;
        goto out;
    }

    exp = json_number_value(json_object_get(claims, "exp"));
    if (now_s >= exp + (double)p->leeway_s) {
        rc = AUTH_E_EXPIRED;
        goto out;
    }
    v = json_object_get(claims, "nbf");
    if (v != NULL && (nbf = json_number_value(v)) > now_s + (double)p->leeway_s) {
        rc = AUTH_E_NOT_YET_VALID;
        goto out;
    }
    v = json_object_get(claims, "iat");
    if (v != NULL) {
        iat = json_number_value(v);
        if (iat > now_s + (double)p->leeway_s) {
            rc = AUTH_E_IAT_FUTURE;
            goto out;
        }
    }
    if (p->max_age_s > 0 && (v == NULL || now_s - iat > (double)(p->max_age_s + p->leeway_s))) {
        rc = AUTH_E_TOO_OLD;
        goto out;
    }
    v = json_object_get(claims, "iss");
    if (p->issuer != NULL && (v == NULL || strcmp(json_string_value(v), p->issuer) != 0)) {
        rc = AUTH_E_ISSUER;
        goto out;
    }
    v = json_object_get(claims, "aud");
    if (p->audience != NULL && (v == NULL || !aud_matches(v, p->audience))) {
        rc = AUTH_E_AUDIENCE;
        goto out;
    }

    id->claims = claims;
    claims = NULL;
    identity_point(id);
    id->alg = alg;
    snprintf(id->kid, sizeof(id->kid), "%s", kid ? kid : key->kid);
    id->exp = exp;
    id->iat = iat;
    rc = AUTH_OK;
out:
    OPENSSL_cleanse(sig, sizeof(sig));
    json_decref(hdr);
    json_decref(claims);
    return rc;
}

/* Follow team_claim: the literal top-level name first, then a dotted path. */
static const json_t *team_value(const json_t *claims, const char *path)
{
    const json_t *cur = claims;
    const char *p = path;
    char seg[256];

    cur = json_object_get(claims, path);
    if (cur != NULL)
        return cur;
    cur = claims;
    while (cur != NULL && *p != '\0') {
        size_t n = strcspn(p, ".");
        if (n == 0 || n >= sizeof(seg) || !json_is_object(cur))
            return NULL;
        memcpy(seg, p, n);
        seg[n] = '\0';
        cur = json_object_get(cur, seg);
        p += n;
        if (*p == '.')
            p++;
    }
    return cur;
}

static size_t add_team(const json_t *v, const char *prefix, const char **teams, size_t n, size_t max)
{
    const char *s;
    size_t plen = prefix ? strlen(prefix) : 0;

    if (n >= max || !json_is_string(v))
        return n;
    s = json_string_value(v);
    if (plen > 0) {
        if (strncmp(s, prefix, plen) != 0)
            return n;
        s += plen;
    }
    if (*s == '\0')
        return n;
    teams[n++] = s;
    return n;
}

size_t auth_teams(const json_t *claims, const char *team_claim, const char *prefix, const char **teams, size_t max)
{
    const json_t *v = team_value(claims, team_claim);
    size_t n = 0, i;
    json_t *e;

    if (json_is_array(v)) {
        json_array_foreach(v, i, e) n = add_team(e, prefix, teams, n, max);
    } else {
        n = add_team(v, prefix, teams, n, max);
    }
    return n;
}

int auth_token_kid(const char *token, size_t len, char *out)
{
    const char *dot = memchr(token, '.', len);
    json_t *hdr;
    const char *kid;
    int rc = -1;

    if (dot == NULL)
        return -1;
    hdr = decode_json_segment(token, (size_t)(dot - token), AUTH_HEADER_MAX);
    kid = json_string_value(json_object_get(hdr, "kid"));
    if (kid != NULL && strlen(kid) > 0 && strlen(kid) <= AUTH_KID_MAX) {
        snprintf(out, AUTH_KID_MAX + 1, "%s", kid);
        rc = 0;
    }
    json_decref(hdr);
    return rc;
}

struct cache_entry {
    unsigned char digest[32];
    uint64_t keyset_id;
    uint64_t cfg_gen;
    struct auth_identity id; /* id.claims NULL: empty slot; sub/iss/jti point into id.claims */
};

struct auth_cache {
    struct cache_entry *slots;
    size_t n;
};

struct auth_cache *auth_cache_new(size_t slots)
{
    struct auth_cache *c = calloc(1, sizeof(*c));

    if (c != NULL && (c->slots = calloc(slots, sizeof(*c->slots))) == NULL) {
        free(c);
        return NULL;
    }
    if (c != NULL)
        c->n = slots;
    return c;
}

void auth_cache_free(struct auth_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        auth_identity_clear(&c->slots[i].id);
    free(c->slots);
    free(c);
}

static struct cache_entry *cache_slot(struct auth_cache *c, const char *token, size_t len, unsigned char d[32])
{
    uint64_t h;

    codec_sha256(token, len, d);
    memcpy(&h, d, sizeof(h));
    return &c->slots[h % c->n];
}

int auth_cache_get(struct auth_cache *c, const struct auth_params *p, const char *token, size_t len, uint64_t keyset_id,
                   uint64_t cfg_gen, double now_s, struct auth_identity *id)
{
    unsigned char d[32];
    struct cache_entry *e;

    memset(id, 0, sizeof(*id));
    if (c == NULL || len == 0 || len > AUTH_TOKEN_MAX)
        return 0;
    e = cache_slot(c, token, len, d);
    if (e->id.claims == NULL || CRYPTO_memcmp(e->digest, d, 32) != 0 || e->keyset_id != keyset_id ||
        e->cfg_gen != cfg_gen)
        return 0;
    /* Time moves on: the checks that depend on now are made again. */
    if (now_s >= e->id.exp + (double)p->leeway_s ||
        (p->max_age_s > 0 && now_s - e->id.iat > (double)(p->max_age_s + p->leeway_s)))
        return 0;
    *id = e->id;
    json_incref(id->claims);
    return 1;
}

void auth_cache_put(struct auth_cache *c, const char *token, size_t len, uint64_t keyset_id, uint64_t cfg_gen,
                    const struct auth_identity *id)
{
    unsigned char d[32];
    struct cache_entry *e;

    if (c == NULL || id->claims == NULL || len == 0 || len > AUTH_TOKEN_MAX)
        return;
    e = cache_slot(c, token, len, d);
    auth_identity_clear(&e->id);
    memcpy(e->digest, d, 32);
    e->keyset_id = keyset_id;
    e->cfg_gen = cfg_gen;
    e->id = *id;
    json_incref(e->id.claims);
    identity_point(&e->id);
}
