/*
 * auth: JSON Web Token verification with OpenSSL's EVP, written so that none
 * of libjwt 1.10's defects can matter: header and claims are parsed here with
 * jansson (duplicate keys refused, types checked strictly), the algorithm must
 * be one the configuration names (exact case) and match the key's type, a
 * verification never runs without a key, and the signature is checked over
 * exactly the bytes received. No libevent: unit tests and fuzzers call it.
 */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum auth_alg {
    AUTH_HS256 = 1 << 0,
    AUTH_HS384 = 1 << 1,
    AUTH_HS512 = 1 << 2,
    AUTH_RS256 = 1 << 3,
    AUTH_RS384 = 1 << 4,
    AUTH_RS512 = 1 << 5,
    AUTH_ES256 = 1 << 6,
    AUTH_ES384 = 1 << 7,
    AUTH_ES512 = 1 << 8,
};
#define AUTH_ALGS_HMAC (AUTH_HS256 | AUTH_HS384 | AUTH_HS512)
#define AUTH_ALGS_RSA (AUTH_RS256 | AUTH_RS384 | AUTH_RS512)
#define AUTH_ALGS_EC (AUTH_ES256 | AUTH_ES384 | AUTH_ES512)

#define AUTH_TOKEN_MAX 24576 /* bytes of compact JWT accepted (IdP tokens exceed 8 KiB) */
#define AUTH_HMAC_MIN 32     /* shortest HS* secret accepted */
#define AUTH_KID_MAX 128
#define AUTH_MAX_TEAMS 32

/* "RS256" → AUTH_RS256 (exact case); 0 when unknown. */
int auth_alg_parse(const char *name);
const char *auth_alg_name(int alg);

/* Why a token was refused; auth_err_code gives a stable snake_case code. */
enum auth_err {
    AUTH_OK = 0,
    AUTH_E_NO_TOKEN,
    AUTH_E_MALFORMED,
    AUTH_E_HEADER,
    AUTH_E_ALG,
    AUTH_E_TYP,
    AUTH_E_CRIT,
    AUTH_E_CLAIMS,
    AUTH_E_NO_KEY,
    AUTH_E_SIGNATURE,
    AUTH_E_EXPIRED,
    AUTH_E_NOT_YET_VALID,
    AUTH_E_IAT_FUTURE,
    AUTH_E_TOO_OLD,
    AUTH_E_ISSUER,
    AUTH_E_AUDIENCE,
    AUTH_E_INTERNAL,
};
const char *auth_err_code(enum auth_err e);
const char *auth_err_text(enum auth_err e);

/* One verification key: an HMAC secret or a public key. */
struct auth_key {
    char kid[AUTH_KID_MAX + 1]; /* "" when the source names none */
    int algs;                   /* algorithms this key may verify */
    EVP_PKEY *pkey;             /* owned; NULL for HMAC */
    unsigned char *secret;      /* owned, wiped on free; NULL for public keys */
    size_t secret_len;
};

struct auth_keyset {
    struct auth_key *keys; /* owned array */
    size_t n;
    uint64_t id;     /* unique per loaded set: cache entries name the set they were verified with */
    atomic_int refs; /* 0 means 1: sets are made with one reference */
};

/* A fresh keyset id (sets made elsewhere, e.g. from a JWKS, take one). */
uint64_t auth_keyset_next_id(void);

/*
 * Load the key file for the configured algorithms: for HS* the file is the
 * shared secret (one trailing newline removed, at least AUTH_HMAC_MIN bytes),
 * otherwise a PEM public key whose type fits every configured algorithm.
 * On error returns -1 and appends a message (without key material) to err.
 * The caller frees *out with auth_keyset_free.
 */
int auth_keyset_load_file(const char *path, int algs, struct auth_keyset **out, struct buf *err);
/* The same from the file's nbytes bytes, read by the caller (an HS* secret
 * through creds_read_secret, which checks its mode; the caller wipes them);
 * path names the file in messages. */
int auth_keyset_from_bytes(const char *path, const char *bytes, size_t nbytes, int algs, struct auth_keyset **out,
                           struct buf *err);
/* Take another reference; auth_keyset_free drops one (the last frees). */
struct auth_keyset *auth_keyset_ref(struct auth_keyset *ks);
void auth_keyset_free(struct auth_keyset *ks);
/* Which algorithms a public key can verify (RSA ≥ 2048 bits, EC by curve). */
int auth_pkey_algs(EVP_PKEY *pkey);
/*
 * Whether a public key is safe to verify tokens with, whatever its source
 * (key_file or a JWKS): OpenSSL's full public-key check (EC: the point is on
 * the curve and not the point at infinity; RSA: SP 800-56B, an odd composite
 * modulus without small factors), EC only on a named curve (not decoded from
 * explicit parameters), RSA only with an odd public exponent e, 2^16 < e <
 * 2^256. A key failing any of these lets tokens be forged without the
 * private key (e = 1, the point at infinity, a prime modulus). Returns 0, or
 * -1 with *why set to a static reason (no key material).
 */
int auth_pkey_check(EVP_PKEY *pkey, const char **why);

struct auth_params {
    int algs;             /* accepted algorithms */
    const char *issuer;   /* required iss, or NULL */
    const char *audience; /* required member of aud, or NULL */
    long leeway_s;        /* clock skew allowed on exp, nbf, iat */
    long max_age_s;       /* > 0: iat required and no older than this */
};

/* What a verified token says. Strings are borrowed from claims. */
struct auth_identity {
    json_t *claims;  /* owned */
    const char *sub; /* non-empty */
    const char *iss; /* or NULL */
    const char *jti; /* or NULL */
    int alg;
    char kid[AUTH_KID_MAX + 1];
    double exp;
    double iat; /* 0 when absent */
};

/*
 * Verify token (len bytes, not NUL-terminated necessarily) at time now_s.
 * On success fills id (release with auth_identity_clear) and returns AUTH_OK;
 * otherwise id is left empty: claims of a failed token are never exposed.
 */
enum auth_err auth_verify(const struct auth_params *p, const struct auth_keyset *ks, const char *token, size_t len,
                          double now_s, struct auth_identity *id);
void auth_identity_clear(struct auth_identity *id);

/* The kid of a token's header (without verifying anything); 0 when it has
 * one (copied to out, at least AUTH_KID_MAX+1 bytes), -1 otherwise. */
int auth_token_kid(const char *token, size_t len, char *out);

/*
 * Verified-token cache, keyed by the SHA-256 of the whole token. An entry is
 * valid until the earlier of the token's exp (plus leeway) and a change of
 * key set or configuration: it remembers the key set's id and the config
 * generation, so a reload or a JWKS rotation invalidates it. Fixed size;
 * a new entry replaces whatever held its slot.
 */
struct auth_cache;
struct auth_cache *auth_cache_new(size_t slots);
void auth_cache_free(struct auth_cache *c);
/* 1 and id filled (release with auth_identity_clear) on a hit; 0 otherwise. */
int auth_cache_get(struct auth_cache *c, const struct auth_params *p, const char *token, size_t len, uint64_t keyset_id,
                   uint64_t cfg_gen, double now_s, struct auth_identity *id);
void auth_cache_put(struct auth_cache *c, const char *token, size_t len, uint64_t keyset_id, uint64_t cfg_gen,
                    const struct auth_identity *id);

/*
 * The teams a verified token names: the claim team_claim (a top-level claim
 * of that exact name wins, else a dotted path into nested objects), a string
 * or an array of strings; with prefix, only values starting with it, prefix
 * stripped. Fills at most max borrowed pointers, in the token's order.
 */
size_t auth_teams(const json_t *claims, const char *team_claim, const char *prefix, const char **teams, size_t max);

#endif
