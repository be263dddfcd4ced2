/*
 * creds: credentials file loading with the secrecy rule (see creds.h).
 */
#include "creds.h"

#include "jcheck.h"
#include "route.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CREDS_FILE_MAX (256 * 1024)

/* Values captured from the environment at start-up (see creds_capture_env). */
static char *env_id, *env_secret, *env_token;

static char *take_env(const char *name)
{
    char *v = getenv(name), *copy = NULL;

    if (v == NULL)
        return NULL;
    if (v[0] != '\0')
        copy = strdup(v);
    /* Overwrite the environment block itself, then drop the variable. */
    OPENSSL_cleanse(v, strlen(v));
    unsetenv(name);
    return copy;
}

static void wipe_str(char *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

void creds_capture_env(void)
{
    env_id = take_env("ALIBABA_CLOUD_ACCESS_KEY_ID");
    env_secret = take_env("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
    env_token = take_env("ALIBABA_CLOUD_SECURITY_TOKEN");
}

void creds_release_env(void)
{
    wipe_str(env_id);
    wipe_str(env_secret);
    wipe_str(env_token);
    env_id = env_secret = env_token = NULL;
}

static int secrecy_ok(const char *path, const struct stat *st, struct buf *err)
{
    if (!S_ISREG(st->st_mode)) {
        buf_printf(err, "%s: not a regular file\n", path);
        return 0;
    }
    if (st->st_mode & (S_IWGRP | S_IRWXO)) {
        buf_printf(err, "%s: mode %04o grants access to others or write to the group; use 0600 or 0440\n", path,
                   (unsigned)(st->st_mode & 07777));
        return 0;
    }
    if (st->st_uid != geteuid() && st->st_uid != 0) {
        buf_printf(err, "%s: owned by uid %u, neither this user nor root\n", path, (unsigned)st->st_uid);
        return 0;
    }
    return 1;
}

int creds_read_secret(const char *path, struct buf *out, struct buf *err)
{
    int rc = -1, fd;
    struct stat st;

    /* O_NONBLOCK: a FIFO put in the file's place must not hang the start. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        buf_printf(err, "%s: cannot open: %s\n", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        buf_printf(err, "%s: cannot stat: %s\n", path, strerror(errno));
        goto out;
    }
    if (!secrecy_ok(path, &st, err))
        goto out;
    if (buf_read_fd(out, fd) != 0) {
        buf_printf(err, "%s: %s\n", path, errno == EFBIG ? "file too large" : strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

void creds_free(struct creds *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].name);
        free(c->v[i].access_key_id);
        wipe_str(c->v[i].secret);
        wipe_str(c->v[i].security_token);
    }
    free(c->v);
    free(c);
}

const struct cred *creds_find(const struct creds *c, const char *name)
{
    for (size_t i = 0; c != NULL && i < c->n; i++)
        if (strcmp(c->v[i].name, name) == 0)
            return &c->v[i];
    return NULL;
}

void creds_mask(const char *id, char *out, size_t outlen)
{
    size_t n = id ? strlen(id) : 0;

    if (n >= 12)
        snprintf(out, outlen, "%.4s****%s", id, id + n - 4);
    else
        snprintf(out, outlen, "****");
}

/* The secret values inside the parsed JSON are wiped before it is freed. */
static void wipe_json_strings(json_t *root)
{
    const char *k;
    json_t *entry, *v;
    const char *k2;

    json_object_foreach(root, k, entry)
    {
        if (!json_is_object(entry))
            continue;
        json_object_foreach(entry, k2, v) if (json_is_string(v))
            OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
    }
}

int creds_load(const char *path, struct creds **out, struct buf *err)
{
    static const char *const keys[] = {"access_key_id", "access_key_secret", "security_token", NULL};
    int rc = -1;
    struct jc jc;
    json_t *root = NULL, *v;
    struct creds *c = NULL;
    const char *name;
    struct buf data; /* the file's bytes, wiped */

    jc_init(&jc, path, err);
    buf_init(&data, CREDS_FILE_MAX);
    if (creds_read_secret(path, &data, err) != 0) {
        jc.nerr++;
        goto out;
    }
    if (jc_parse(&jc, data.p, data.len, 1, &root) != 0)
        goto out;
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->v = calloc(json_object_size(root) + 1, sizeof(*c->v))) == NULL)
        goto out;
    json_object_foreach(root, name, v)
    {
        struct cred *cr = &c->v[c->n++];
        cr->name = strdup(name);
        if (!json_is_object(v)) {
            jc_error(&jc, name, "must be an object");
            continue;
        }
        jc_only_keys(&jc, v, name, keys);
        jc_string(&jc, v, name, "access_key_id", 1, &cr->access_key_id);
        jc_string(&jc, v, name, "access_key_secret", 1, &cr->secret);
        jc_string(&jc, v, name, "security_token", 0, &cr->security_token);
        if (cr->access_key_id != NULL && !route_valid_chars(cr->access_key_id, SIZE_MAX, "._-"))
            jc_error(&jc, name, "access_key_id has characters other than A-Za-z0-9._-");
    }
    if (creds_find(c, "default") == NULL && env_id != NULL && env_secret != NULL) {
        struct cred *cr = &c->v[c->n++];
        cr->name = strdup("default");
        cr->access_key_id = strdup(env_id);
        cr->secret = strdup(env_secret);
        cr->security_token = env_token ? strdup(env_token) : NULL;
    }
    if (jc.nerr > 0)
        goto out;
    *out = c;
    c = NULL;
    rc = 0;
out:
    if (root != NULL) {
        wipe_json_strings(root);
        json_decref(root);
    }
    buf_wipe(&data);
    creds_free(c);
    return rc;
}
