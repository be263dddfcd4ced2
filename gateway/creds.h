/*
 * creds: the AccessKeys the gateway signs with, loaded from the credentials
 * file (and the ALIBABA_CLOUD_* variables for "default"). Secrets live only
 * in memory that is wiped when freed; they are never logged or copied into
 * anything but the HMAC key.
 */
#ifndef GW_CREDS_H
#define GW_CREDS_H

#include "buf.h"

#include <stddef.h>

struct cred {
    char *name;
    char *access_key_id;
    char *secret;         /* wiped on free */
    char *security_token; /* NULL without STS; wiped on free */
};

struct creds {
    struct cred *v; /* owned array of n */
    size_t n;
};

/*
 * Read a secret file into out (at most out's cap; the caller wipes out),
 * refusing one that grants anything to others or write to the group (group
 * read is allowed, as Kubernetes mounts secrets 0440 with fsGroup), or that
 * belongs to another user than us or root. The checks are made on the open
 * descriptor that is then read, so swapping the file (or a symlink to it)
 * between check and read changes nothing. -1 with "FILE: why" in err.
 */
int creds_read_secret(const char *path, struct buf *out, struct buf *err);

/* Copy the ALIBABA_CLOUD_* variables and wipe them from the environment.
 * Call once at start, before anything else reads the environment. */
void creds_capture_env(void);
void creds_release_env(void);

/* Load and validate; the caller frees *out with creds_free. */
int creds_load(const char *path, struct creds **out, struct buf *err);
void creds_free(struct creds *c);
const struct cred *creds_find(const struct creds *c, const char *name);

/* "LTAI****wxyz" (first and last 4 when at least 12 long), else "****". */
void creds_mask(const char *id, char *out, size_t outlen);

#endif
