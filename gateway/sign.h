/*
 * sign: Alibaba Cloud RPC signature V1 (HMAC-SHA1) and the percent-encoding it
 * depends on. Pure functions: no I/O, no event loop, so unit tests reproduce
 * the published vectors directly.
 */
#ifndef GW_SIGN_H
#define GW_SIGN_H

#include "buf.h"

#include <stddef.h>

#define SIGN_MAX_PARAMS 16
#define SIGN_SIG_LEN 32 /* base64 of a 20-byte HMAC-SHA1 is 28 characters */

struct sign_param {
    const char *name;  /* borrowed */
    const char *value; /* borrowed */
};

/* Append s percent-encoded: only A-Z a-z 0-9 - _ . ~ stay as they are. */
int sign_encode(struct buf *out, const char *s, size_t len);

/*
 * Signature of params for an RPC call made with HTTP method ("GET"/"POST"):
 * base64(HMAC-SHA1(secret + "&", METHOD + "&%2F&" + encode(canonical query))).
 * sig receives the NUL-terminated base64 text (at least SIGN_SIG_LEN bytes).
 * If canonical is not NULL it receives the sorted, encoded query without the
 * signature. Every temporary copy of the key is wiped.
 */
int sign_rpc(const char *method, const struct sign_param *params, size_t n, const char *secret, char *sig,
             struct buf *canonical);

struct sign_call {
    const char *method;         /* "GET" or "POST" */
    const char *action;         /* e.g. "DeleteReplicationJob" */
    const char *version;        /* e.g. "2019-06-01" */
    const char *job_id;         /* JobId parameter */
    const char *access_key_id;  /* borrowed */
    const char *secret;         /* borrowed; never copied outside wiped buffers */
    const char *security_token; /* NULL when the credential has none */
    const char *nonce;          /* fresh for every attempt */
    const char *timestamp;      /* "yyyy-MM-ddTHH:mm:ssZ" */
};

/*
 * Build the signed parameter string "k=v&...&Signature=..." for a call; it is
 * the form body for POST and the query string for GET. The caller wipes and
 * frees out (buf_wipe).
 */
int sign_call(const struct sign_call *c, struct buf *out);

/* A new SignatureNonce: 128 random bits from OpenSSL's RNG as 32 hex digits. */
int sign_nonce(char out[33]);

#endif
