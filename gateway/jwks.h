/*
 * jwks: JSON Web Key Sets (RFC 7517) to verification keys. RSA (n, e) and
 * EC (crv P-256/P-384/P-521, x, y) keys become OpenSSL public keys; keys of
 * other types, keys whose "use" is not "sig", keys whose "alg" is not one of
 * the configured algorithms, malformed keys, and keys that fail
 * auth_pkey_check (the same checks as a key file's) are skipped with a reason.
 * Pure: no I/O; the caller fetches or reads the document.
 */
#ifndef GW_JWKS_H
#define GW_JWKS_H

#include "auth.h"
#include "buf.h"

#include <stddef.h>

#define JWKS_DOC_MAX (1024 * 1024) /* largest JWKS document accepted */
#define JWKS_KEYS_MAX 64           /* keys taken from one document */

/*
 * Parse doc (len bytes) for the configured algorithms. On success *out holds
 * at least one usable key (caller frees with auth_keyset_free) and report
 * has one line per skipped key ("kid X: why"). Returns the number of usable
 * keys, or -1 (with the reason in report) when the document is not a JWKS
 * or holds no usable key.
 */
int jwks_parse(const char *doc, size_t len, int algs, struct auth_keyset **out, struct buf *report);

#endif
