/*
 * chain: the audit log format smc-gateway-audit-v1, shared by the writer
 * (audit.c) and the verifier (smc-gateway-audit). Every line is a JSON
 * object whose first members are "seq" (1, 2, 3 ... per instance, continuing
 * across rotated files) and "prev" (hex SHA-256 of the previous line's bytes
 * with its newline; 64 zeros before seq 1). Signed "checkpoint" entries carry
 * an Ed25519 signature over "smc-gateway-audit-v1|instance|seq|prev", so one
 * valid checkpoint seals every line before it.
 *
 * Pure: no libevent and no file I/O except the two key loaders, so the
 * streaming verifier can be fed arbitrary bytes by unit tests and fuzzers.
 */
#ifndef GW_CHAIN_H
#define GW_CHAIN_H

#include "buf.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define CHAIN_FORMAT "smc-gateway-audit-v1"
#define CHAIN_LINE_MAX (1024 * 1024) /* longest line accepted, newline included */
#define CHAIN_MSG_MAX 256            /* chain_message output for any valid instance */
#define CHAIN_SIG_B64_MAX 89         /* base64 of a 64-byte signature, plus NUL */
#define CHAIN_INSTANCE_MAX 64        /* instance names: 1-64 of A-Za-z0-9._- */
#define CHAIN_KEYS_MAX 16            /* public keys one verifier accepts */

/* SHA-256 of len bytes. */
void chain_hash(const void *line, size_t len, unsigned char out[32]);

/* "smc-gateway-audit-v1|<instance>|<seq>|<prev_hex>" into out; -1 if it does not fit. */
int chain_message(char *out, size_t outlen, const char *instance, uint64_t seq, const char *prev_hex);

/*
 * The first 16 hex digits of SHA-256 over the DER SubjectPublicKeyInfo of
 * key (i2d_PUBKEY). A private key gives the id of its public half. 0 or -1.
 */
int chain_key_id(EVP_PKEY *key, char out[17]);

/* Ed25519-sign msg (its strlen bytes) with priv; standard base64 with padding
 * into sig_b64 (at least CHAIN_SIG_B64_MAX bytes). 0, or -1 (also when priv is
 * not an Ed25519 key). */
int chain_sign(EVP_PKEY *priv, const char *msg, char *sig_b64, size_t sig_b64_len);

/* 1 when sig_b64 is canonical base64 of a valid Ed25519 signature of msg by
 * pub, 0 otherwise (including malformed input and internal errors). */
int chain_verify_sig(EVP_PKEY *pub, const char *msg, const char *sig_b64);

/*
 * An unencrypted PEM Ed25519 private key from len bytes of pem, which the
 * caller read (creds_read_secret checks the file's mode) and wipes. Other
 * key types and encrypted keys are refused (never prompts). NULL with
 * "NAME: why\n" appended to err. Caller frees with EVP_PKEY_free.
 */
EVP_PKEY *chain_private_key(const char *name, const char *pem, size_t len, struct buf *err);
/* Load an Ed25519 public key from a PUBLIC KEY PEM file, or the public half
 * of a private key PEM (the private half is not kept; the bytes are wiped).
 * Same refusals as above. */
EVP_PKEY *chain_load_public_key(const char *path, struct buf *err);

/*
 * Append a complete checkpoint line (newline included) to out, all or
 * nothing: {"seq":seq,"prev":hex(prev),"ts":...,"instance":...,
 * "event":"checkpoint","count":count,"key_id":...,"sig":...}. seq and prev
 * are the checkpoint's own chain position; count is the number of entries
 * since the previous checkpoint (or the start), excluding this one. 0 or -1.
 */
int chain_checkpoint_line(struct buf *out, EVP_PKEY *priv, const char *instance, uint64_t seq,
                          const unsigned char prev[32], int64_t wall_ms, uint64_t count);

/*
 * Rotated files: the file PATH = DIR/STEM.EXT, rotated at UTC time T when
 * its first entry was seq N, is renamed DIR/STEM-<yyyymmddThhmmss>-N.jsonl.
 * chain_path_stem splits path into DIR and STEM; chain_rotated_name builds
 * the new name; chain_rotated_match is 1 (and *first = N) when the base
 * name is a rotated file of STEM, else 0.
 */
void chain_path_stem(const char *path, char *dir, size_t dirlen, char *stem, size_t stemlen);
void chain_rotated_name(char *out, size_t outlen, const char *path, uint64_t first_seq, time_t now);
int chain_rotated_match(const char *stem, const char *name, uint64_t *first);

/*
 * Which entries a reader wants (smc-gateway-audit query, GET /audit). NULL
 * fields match everything; strings match exactly; times are compared as
 * instants (since inclusive, until exclusive) and an entry without a
 * readable ts matches no time range.
 */
struct chain_filter {
    const char *instance, *team, *sub, *job, *decision, *result, *event;
    int has_since, has_until;
    int64_t since_ms, until_ms;
};
int chain_filter_match(const struct chain_filter *f, const json_t *entry);

/*
 * The streaming verifier. Feed it every line of every file, oldest file
 * first, in order; it checks each line's syntax, the seq/prev chain within
 * and across files, every checkpoint's count, key and signature, and stops
 * at the first broken line. It does no I/O: the caller reads the files.
 */
struct chain_verifier;

struct chain_result {
    int ok;               /* 1: no broken line found */
    const char *error;    /* "FILE:LINE: why" (one line, no newline, terminal-safe);
                             NULL when ok; borrowed until chain_verifier_free */
    uint64_t entries;     /* lines accepted */
    uint64_t first_seq;   /* seq of the first line (0: no entries) */
    uint64_t last_seq;    /* seq of the last accepted line */
    int from_start;       /* the first line is seq 1 with a zero prev */
    uint64_t sealed_seq;  /* seq of the last checkpoint whose signature verified (0: none) */
    uint64_t checkpoints; /* checkpoint entries seen */
    uint64_t checkpoints_verified;
    int sigs_checked;                      /* at least one public key was given */
    char instance[CHAIN_INSTANCE_MAX + 1]; /* the chain's instance ("" before the first line) */
};

/*
 * New verifier. pub (may be NULL: signatures are then not checked, only the
 * checkpoints' syntax) is a public key the checkpoints may be signed with;
 * the verifier takes its own reference, the caller still frees its own.
 * NULL on allocation failure or when pub is not Ed25519.
 */
struct chain_verifier *chain_verifier_new(EVP_PKEY *pub);
/* Accept one more public key (key rotation). Same reference rule; 0 or -1. */
int chain_verifier_add_key(struct chain_verifier *v, EVP_PKEY *pub);
void chain_verifier_free(struct chain_verifier *v); /* NULL-safe */

/*
 * Feed one line: len bytes (any content), including its '\n' when it has
 * one. file (borrowed for the call; NULL reads as "-") and lineno (1-based)
 * only name the line in messages. last_in_file marks a file's last line, so
 * that the next line is known to start the next file. Returns 0, or -1 once
 * a broken line has been found (this one or an earlier one; further lines
 * are then ignored).
 */
int chain_verifier_feed(struct chain_verifier *v, const char *file, unsigned long lineno, const char *line, size_t len,
                        int last_in_file);

/* End of input: settle a pending decision and fill *res (its error points
 * into v). 0 when the chain holds, -1 when broken. Further feeds fail. */
int chain_verifier_finish(struct chain_verifier *v, struct chain_result *res);

#endif
