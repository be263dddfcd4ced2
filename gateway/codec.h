/*
 * codec: hex, base64 and base64url. Decoders are strict (no whitespace, no
 * stray characters, canonical padding) because their input is attacker text.
 */
#ifndef GW_CODEC_H
#define GW_CODEC_H

#include <stddef.h>

/* SHA-256 of len bytes (the digest implementation is fetched once). */
void codec_sha256(const void *data, size_t len, unsigned char out[32]);
/* HMAC-SHA1 of data under key into out (20 bytes); 0 or -1. */
int codec_hmac_sha1(const void *key, size_t keylen, const void *data, size_t len, unsigned char out[20]);

/* Lower-case hex of len bytes into out (2*len+1 bytes). */
void codec_hex(char *out, const unsigned char *in, size_t len);
/* Decode 2*len hex digits (either case) into len bytes of out; 0, or -1 on
 * anything that is not a hex digit. */
int codec_unhex(unsigned char *out, const char *in, size_t len);
/* Standard base64 with padding into out (4*ceil(len/3)+1 bytes); returns length. */
size_t codec_b64(char *out, const unsigned char *in, size_t len);
/*
 * base64url without padding (RFC 7515). Decodes at most outmax bytes; returns
 * the decoded length, or -1 on any malformed input or overflow.
 */
long codec_b64url_decode(unsigned char *out, size_t outmax, const char *in, size_t inlen);
/* Standard base64 (padding required); same contract as codec_b64url_decode. */
long codec_b64_decode(unsigned char *out, size_t outmax, const char *in, size_t inlen);

/* A pem_password_cb that never prompts on the terminal: encrypted PEM keys
 * are refused. */
int codec_no_passphrase(char *buf, int size, int rwflag, void *u);

#endif
