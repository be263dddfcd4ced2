/*
 * fuzz_jwt: JWT verification up to and including the claim checks, then the
 * team claims of a verified token.
 *
 * Two modes, chosen by the input:
 *   - without a NUL byte, the input is a compact token as a caller sends it,
 *     verified against four key sets: an HS* secret, an RSA public key
 *     (loaded from a PEM through auth_keyset_load_file), an EC P-256 key,
 *     and a set of keys with kids as a JWKS gives (two of them for ES256,
 *     so the token's kid decides).
 *     The secret is fixed, so committed HS256 seeds verify and reach the
 *     claim checks;
 *   - with one, the input is HEADER-JSON NUL CLAIMS-JSON: both are base64url
 *     encoded here and signed with the key the header's "alg" names, so that
 *     mutations of the JSON reach the claim checks instead of dying at the
 *     signature.
 * A verified token is also put in a verified-token cache and must come back
 * from it for the same key set and configuration generation only, and
 * auth_token_kid (which reads a header before any verification) must agree
 * with the kid verification reports.
 * "now" is fixed (2025-11-28T12:00:00Z) so that runs are reproducible.
 */
#include "auth.h"

#include "fuzz_util.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#define FUZZ_NOW 1764331200.0
/* The HS* secret; tests/fuzz/make-seeds.py signs the seed tokens with it. */
static const char hs_secret[] = "fuzz-secret-0123456789abcdef0123456789";

static struct auth_keyset *ks_hs, *ks_rs, *ks_es, *ks_kids;
static EVP_PKEY *rsa_priv, *ec_priv;

static struct auth_keyset *hmac_keyset(void)
{
    struct auth_keyset *ks = calloc(1, sizeof(*ks));

    FUZZ_CHECK(ks != NULL && (ks->keys = calloc(1, sizeof(*ks->keys))) != NULL);
    ks->n = 1;
    ks->id = auth_keyset_next_id();
    ks->keys[0].algs = AUTH_ALGS_HMAC;
    ks->keys[0].secret_len = strlen(hs_secret);
    ks->keys[0].secret = malloc(ks->keys[0].secret_len);
    FUZZ_CHECK(ks->keys[0].secret != NULL);
    memcpy(ks->keys[0].secret, hs_secret, ks->keys[0].secret_len);
    return ks;
}

/* The public half of priv, written as PEM to a memfd and loaded the way the gateway loads key_file. */
static struct auth_keyset *pem_keyset(EVP_PKEY *priv, int algs)
{
    struct fuzz_file f;
    struct auth_keyset *ks = NULL;
    struct buf err;
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem;
    long n;

    FUZZ_CHECK(bio != NULL && PEM_write_bio_PUBKEY(bio, priv) == 1);
    n = BIO_get_mem_data(bio, &pem);
    fuzz_file_open(&f, "fuzz-jwt-key", 0);
    fuzz_file_set(&f, pem, (size_t)n);
    buf_init(&err, 4096);
    if (auth_keyset_load_file(f.path, algs, &ks, &err) != 0) {
        fprintf(stderr, "fuzz_jwt: %s", err.p ? err.p : "key not loaded\n");
        abort();
    }
    buf_free(&err);
    BIO_free(bio);
    close(f.fd);
    return ks;
}

/* A set like one from a JWKS: keys with kids, two of them for ES256 ("ec-1" is ec_priv). */
static struct auth_keyset *kid_keyset(void)
{
    static const char *const kids[] = {"ec-1", "ec-2", "rsa-1"};
    struct auth_keyset *ks = calloc(1, sizeof(*ks));
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    FUZZ_CHECK(ks != NULL && other != NULL && (ks->keys = calloc(3, sizeof(*ks->keys))) != NULL);
    ks->n = 3;
    ks->id = auth_keyset_next_id();
    ks->keys[0].pkey = ec_priv;
    ks->keys[1].pkey = other;
    ks->keys[2].pkey = rsa_priv;
    FUZZ_CHECK(EVP_PKEY_up_ref(ec_priv) == 1 && EVP_PKEY_up_ref(rsa_priv) == 1);
    for (size_t i = 0; i < 3; i++) {
        snprintf(ks->keys[i].kid, sizeof(ks->keys[i].kid), "%s", kids[i]);
        ks->keys[i].algs = auth_pkey_algs(ks->keys[i].pkey);
    }
    return ks;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rsa_priv = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    ec_priv = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    FUZZ_CHECK(rsa_priv != NULL && ec_priv != NULL);
    ks_hs = hmac_keyset();
    ks_rs = pem_keyset(rsa_priv, AUTH_RS256 | AUTH_RS384 | AUTH_RS512);
    ks_es = pem_keyset(ec_priv, AUTH_ES256);
    ks_kids = kid_keyset();
    return 0;
}

static void b64url(struct buf *b, const unsigned char *p, size_t n)
{
    char *tmp = malloc(4 * (n / 3 + 1) + 1);

    FUZZ_CHECK(tmp != NULL);
    buf_add(b, tmp, fuzz_b64url(tmp, p, n));
    free(tmp);
}

/* Sign b (header.claims) with what alg names; unknown names get HS256. */
static void sign(struct buf *b, const char *alg)
{
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    const EVP_MD *md = strstr(alg, "384") ? EVP_sha384() : strstr(alg, "512") ? EVP_sha512() : EVP_sha256();
    EVP_PKEY *pkey = strncmp(alg, "RS", 2) == 0 ? rsa_priv : strcmp(alg, "ES256") == 0 ? ec_priv : NULL;

    if (pkey == NULL) {
        unsigned int maclen = 0;
        FUZZ_CHECK(HMAC(md, hs_secret, (int)strlen(hs_secret), (unsigned char *)b->p, b->len, sig, &maclen) != NULL);
        siglen = maclen;
    } else {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        FUZZ_CHECK(ctx != NULL && EVP_DigestSignInit(ctx, NULL, md, NULL, pkey) == 1 &&
                   EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)b->p, b->len) == 1);
        EVP_MD_CTX_free(ctx);
        if (pkey == ec_priv) {
            /* DER → the raw r||s that JWS uses. */
            const unsigned char *p = sig;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
            FUZZ_CHECK(es != NULL);
            BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
            BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
            siglen = 64;
            ECDSA_SIG_free(es);
        }
    }
    buf_addc(b, '.');
    b64url(b, sig, siglen);
}

/* The "alg" of a header, or "" (only to pick the signing key). */
static void header_alg(const char *hdr, size_t len, char *out, size_t outlen)
{
    json_t *h = json_loadb(hdr, len, 0, NULL);
    json_t *a = json_object_get(h, "alg");

    snprintf(out, outlen, "%s", json_is_string(a) ? json_string_value(a) : "");
    json_decref(h);
}

static void check_teams(const json_t *claims)
{
    static const struct {
        const char *claim, *prefix;
    } ways[] = {{"team", NULL}, {"groups", "smc-"}, {"realm_access.roles", NULL}, {"a.b.c", "x"}};
    const char *teams[AUTH_MAX_TEAMS];

    for (size_t w = 0; w < sizeof(ways) / sizeof(ways[0]); w++) {
        size_t n = auth_teams(claims, ways[w].claim, ways[w].prefix, teams, AUTH_MAX_TEAMS);
        FUZZ_CHECK(n <= AUTH_MAX_TEAMS);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(teams[i] != NULL && teams[i][0] != '\0');
        FUZZ_CHECK(auth_teams(claims, ways[w].claim, ways[w].prefix, teams, 1) == (n > 0 ? 1u : 0u));
    }
}

/* A verified token in the cache: found again with the same key set and config generation only. */
static void check_cache(const struct auth_params *p, const struct auth_keyset *ks, const char *tok, size_t len,
                        uint64_t gen, const struct auth_identity *id)
{
    struct auth_cache *c = auth_cache_new(1);
    struct auth_identity hit;

    FUZZ_CHECK(c != NULL);
    FUZZ_CHECK(auth_cache_get(c, p, tok, len, ks->id, gen, FUZZ_NOW, &hit) == 0 && hit.claims == NULL);
    auth_cache_put(c, tok, len, ks->id, gen, id);
    FUZZ_CHECK(auth_cache_get(c, p, tok, len, ks->id, gen, FUZZ_NOW, &hit) == 1);
    FUZZ_CHECK(hit.claims == id->claims && hit.alg == id->alg && hit.exp == id->exp && hit.iat == id->iat);
    FUZZ_CHECK(strcmp(hit.sub, id->sub) == 0 && strcmp(hit.kid, id->kid) == 0);
    auth_identity_clear(&hit);
    FUZZ_CHECK(auth_cache_get(c, p, tok, len, ks->id + 1, gen, FUZZ_NOW, &hit) == 0);
    FUZZ_CHECK(auth_cache_get(c, p, tok, len, ks->id, gen + 1, FUZZ_NOW, &hit) == 0);
    /* Once expired, never served. */
    FUZZ_CHECK(auth_cache_get(c, p, tok, len, ks->id, gen, id->exp + (double)p->leeway_s, &hit) == 0);
    auth_cache_free(c);
}

static void verify(const struct auth_params *p, const struct auth_keyset *ks, const char *tok, size_t len)
{
    struct auth_identity id;
    enum auth_err e = auth_verify(p, ks, tok, len, FUZZ_NOW, &id);
    char kid[AUTH_KID_MAX + 1];
    int has_kid = auth_token_kid(tok, len, kid) == 0;

    FUZZ_CHECK(e >= AUTH_OK && e <= AUTH_E_INTERNAL);
    FUZZ_CHECK(auth_err_code(e) != NULL && auth_err_text(e) != NULL);
    FUZZ_SAY("jwt: %s key: %s\n",
             ks == ks_hs   ? "HS"
             : ks == ks_rs ? "RS"
             : ks == ks_es ? "ES"
                           : "kids",
             auth_err_code(e));
    if (e == AUTH_OK) {
        FUZZ_CHECK(id.claims != NULL && json_is_object(id.claims));
        FUZZ_CHECK(id.sub != NULL && id.sub[0] != '\0');
        int key_algs = 0;
        for (size_t k = 0; k < ks->n; k++)
            key_algs |= ks->keys[k].algs;
        FUZZ_CHECK((id.alg & p->algs) != 0 && (id.alg & key_algs) != 0);
        FUZZ_CHECK(FUZZ_NOW < id.exp + (double)p->leeway_s);
        FUZZ_CHECK(memchr(id.kid, '\0', sizeof(id.kid)) != NULL);
        if (p->issuer != NULL)
            FUZZ_CHECK(id.iss != NULL && strcmp(id.iss, p->issuer) == 0);
        /* The kid reported is the header's, else that of a key for the algorithm. */
        if (has_kid) {
            FUZZ_CHECK(strcmp(id.kid, kid) == 0);
        } else {
            size_t k;
            for (k = 0; k < ks->n && !((ks->keys[k].algs & id.alg) && strcmp(ks->keys[k].kid, id.kid) == 0); k++)
                ;
            FUZZ_CHECK(k < ks->n);
        }
        check_teams(id.claims);
        check_cache(p, ks, tok, len, p->max_age_s > 0 ? 2 : 1, &id);
    } else {
        /* Claims of a refused token are never exposed. */
        FUZZ_CHECK(id.claims == NULL && id.sub == NULL && id.iss == NULL && id.jti == NULL);
    }
    if (has_kid)
        FUZZ_CHECK(kid[0] != '\0' && strlen(kid) <= AUTH_KID_MAX);
    auth_identity_clear(&id);
    FUZZ_CHECK(id.claims == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct auth_params strict = {AUTH_ALGS_HMAC | AUTH_ALGS_RSA | AUTH_ES256, "https://idp.example.com", "smc-gateway",
                                 60, 0};
    struct auth_params aged = {AUTH_HS256 | AUTH_RS256 | AUTH_ES256, NULL, NULL, 0, 300};
    const uint8_t *nul = memchr(data, '\0', size);

    if (nul == NULL) {
        char *tok = fuzz_dup(data, size, 0);
        verify(&strict, ks_hs, tok, size);
        verify(&strict, ks_rs, tok, size);
        verify(&strict, ks_es, tok, size);
        verify(&strict, ks_kids, tok, size);
        free(tok);
    } else {
        size_t hlen = (size_t)(nul - data), clen = size - hlen - 1;
        char alg[16];
        struct buf b;
        char *tok;
        size_t len;

        if (hlen > 4096 || clen > 16384)
            return 0;
        buf_init(&b, 65536);
        b64url(&b, data, hlen);
        buf_addc(&b, '.');
        b64url(&b, nul + 1, clen);
        header_alg((const char *)data, hlen, alg, sizeof(alg));
        sign(&b, alg);
        len = b.len;
        tok = fuzz_dup(b.p, len, 0);
        buf_free(&b);
        verify(&strict, ks_hs, tok, len);
        verify(&aged, ks_hs, tok, len);
        if (strncmp(alg, "RS", 2) == 0)
            verify(&strict, ks_rs, tok, len);
        if (strncmp(alg, "ES", 2) == 0)
            verify(&strict, ks_es, tok, len);
        if (strncmp(alg, "RS", 2) == 0 || strncmp(alg, "ES", 2) == 0)
            verify(&strict, ks_kids, tok, len);
        free(tok);
    }
    return 0;
}
