/*
 * fuzz_config: the configuration file, through cfg_load as the daemon and
 * --check-config call it. The input is the file's content, served from a
 * memfd at /proc/self/fd/N.
 *
 * cfg_load also opens the key, policy and credentials files the config
 * names, resolved against the config's folder (here /proc/self/fd, since a
 * memfd has no real path). So that a config can load completely, fixture
 * files are set up at start on fixed descriptors, which a config names as
 * "200" ... "206" (see FIX_*); tests/fuzz/corpus/config has such configs.
 * Other names mostly do not exist, which is fine; but a name that reaches a
 * terminal, a pipe or a /proc, /sys or /dev file could block a read forever
 * (stdin is just "0" here), which would be a harness artefact, not a
 * finding: such inputs are skipped. Nothing here creates files: cfg_load
 * only reads, and the fixtures are memfds.
 */
#include "config.h"

#include "fuzz_util.h"

#include <limits.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>

enum { FIX_POLICY = 200, FIX_CREDS, FIX_RSA_PEM, FIX_HMAC_KEY, FIX_EC_PEM, FIX_ED25519_PRIV, FIX_JWKS, FIX_END };

static struct fuzz_file cfg_file;
static struct stat fixtures[FIX_END - FIX_POLICY + 1]; /* the fixtures and cfg_file */

static const char policy_json[] =
    "{\"teams\": {\"migration\": {\"credential\": \"prod\", \"allow\": [\"DeleteReplicationJob\"],\n"
    "  \"jobs\": [\"j-bp1*\"], \"subjects\": [\"alice@example.com\", \"svc-*\"]},\n"
    " \"ops\": {\"credential\": \"prod\", \"allow\": [\"DeleteReplicationJob\"], \"require_ticket\": true}},\n"
    " \"auditors\": [\"ops\"]}\n";
static const char creds_json[] = "{\"prod\": {\"access_key_id\": \"LTAI5tFuzzFixture0001\", "
                                 "\"access_key_secret\": \"fuzz-fixture-secret\"}}\n";
static const char hmac_key[] = "fuzz-fixture-hmac-secret-0123456789abcdef\n";

/* Put data on descriptor fd as a memfd of the given mode. */
static void fixture(int fd, const char *data, size_t len, mode_t mode)
{
    struct fuzz_file f;

    fuzz_file_open(&f, "fuzz-config-fixture", mode);
    fuzz_file_set(&f, data, len);
    FUZZ_CHECK(dup2(f.fd, fd) == fd);
    close(f.fd);
    FUZZ_CHECK(fstat(fd, &fixtures[fd - FIX_POLICY]) == 0);
}

/* The public half of key as PEM on fd (the key stays the caller's). */
static void pem_fixture(int fd, EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem;
    long n;

    FUZZ_CHECK(key != NULL && bio != NULL && PEM_write_bio_PUBKEY(bio, key) == 1);
    n = BIO_get_mem_data(bio, &pem);
    fixture(fd, pem, (size_t)n, 0644);
    BIO_free(bio);
}

/* A JWKS document with the RSA and EC keys (RFC 7517 / 7518 members). */
static void jwks_fixture(int fd, EVP_PKEY *rsa, EVP_PKEY *ec)
{
    unsigned char n[512], e[8], point[65];
    char nb[700], eb[16], xb[64], yb[64], doc[2048];
    BIGNUM *bn = NULL, *be = NULL;
    size_t plen = 0;

    FUZZ_CHECK(EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_N, &bn) == 1 &&
               EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_E, &be) == 1);
    FUZZ_CHECK(EVP_PKEY_get_octet_string_param(ec, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point), &plen) == 1 &&
               plen == 65);
    fuzz_b64url(nb, n, (size_t)BN_bn2bin(bn, n));
    fuzz_b64url(eb, e, (size_t)BN_bn2bin(be, e));
    fuzz_b64url(xb, point + 1, 32);
    fuzz_b64url(yb, point + 33, 32);
    snprintf(
        doc, sizeof(doc),
        "{\"keys\":[{\"kty\":\"RSA\",\"use\":\"sig\",\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"n\":\"%s\",\"e\":\"%s\"},"
        "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"ec-1\",\"x\":\"%s\",\"y\":\"%s\"},"
        "{\"kty\":\"oct\",\"kid\":\"skipped\",\"k\":\"c2VjcmV0\"}]}\n",
        nb, eb, xb, yb);
    fixture(fd, doc, strlen(doc), 0644);
    BN_free(bn);
    BN_free(be);
}

/* The audit checkpoint signing key: a private key, so 0600. */
static void ed25519_fixture(int fd)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem;
    long n;

    FUZZ_CHECK(key != NULL && bio != NULL && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1);
    n = BIO_get_mem_data(bio, &pem);
    fixture(fd, pem, (size_t)n, 0600);
    BIO_free(bio);
    EVP_PKEY_free(key);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    (void)argc;
    (void)argv;
    FUZZ_CHECK(rsa != NULL && ec != NULL);
    fixture(FIX_POLICY, policy_json, strlen(policy_json), 0644);
    fixture(FIX_CREDS, creds_json, strlen(creds_json), 0600);
    pem_fixture(FIX_RSA_PEM, rsa);
    fixture(FIX_HMAC_KEY, hmac_key, strlen(hmac_key), 0600);
    pem_fixture(FIX_EC_PEM, ec);
    jwks_fixture(FIX_JWKS, rsa, ec);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    ed25519_fixture(FIX_ED25519_PRIV);
    fuzz_file_open(&cfg_file, "fuzz-config", 0);
    FUZZ_CHECK(fstat(cfg_file.fd, &fixtures[FIX_END - FIX_POLICY]) == 0);
    return 0;
}

/* 1 when name, as cfg_load resolves it, is safe to open and read. */
static int safe_path(const char *dir, const json_t *name)
{
    char joined[PATH_MAX * 2], real[PATH_MAX];
    const char *s;
    struct stat st;

    if (!json_is_string(name))
        return 1;
    s = json_string_value(name);
    if (s[0] == '/')
        snprintf(joined, sizeof(joined), "%s", s);
    else
        snprintf(joined, sizeof(joined), "%s/%s", dir, s);
    if (stat(joined, &st) != 0)
        return 1; /* does not exist: open fails, fine */
    for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
        if (st.st_dev == fixtures[i].st_dev && st.st_ino == fixtures[i].st_ino)
            return 1;
    if (!S_ISREG(st.st_mode) || realpath(joined, real) == NULL)
        return 0;
    return strncmp(real, "/proc/", 6) != 0 && strncmp(real, "/sys/", 5) != 0 && strncmp(real, "/dev/", 5) != 0;
}

/* Every string in the config may be a path (new path keys appear): check them all. */
static int strings_safe(const char *dir, const json_t *j)
{
    const char *k;
    json_t *v;
    size_t i;

    if (json_is_string(j))
        return safe_path(dir, j);
    if (json_is_object(j)) {
        json_object_foreach((json_t *)j, k, v) if (!strings_safe(dir, v)) return 0;
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) if (!strings_safe(dir, v)) return 0;
    }
    return 1;
}

static int names_safe_files(const uint8_t *data, size_t size)
{
    char dir[PATH_MAX], *real, *slash;
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    int ok;

    if (root == NULL)
        return 1;
    /* The folder cfg_load resolves against: that of realpath(), else of the path. */
    real = realpath(cfg_file.path, NULL);
    snprintf(dir, sizeof(dir), "%s", real ? real : cfg_file.path);
    free(real);
    slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    ok = strings_safe(dir, root);
    json_decref(root);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_config *c;
    struct buf err;

    if (!names_safe_files(data, size)) {
        FUZZ_SAY("config: skipped (names a file that could block)\n");
        return 0;
    }
    fuzz_file_set(&cfg_file, data, size);
    buf_init(&err, 65536);
    /* Flags 0: a jwks_url is never fetched (no network in a fuzzer). */
    c = cfg_load(cfg_file.path, 0, &err);
    FUZZ_SAY("config: %s\n%s", c ? "loaded" : "refused", err.p ? err.p : "");
    if (c != NULL) {
        FUZZ_CHECK(c->refs == 1);
        FUZZ_CHECK(c->listen_host != NULL && c->listen_port >= 0 && c->listen_port <= 65535);
        FUZZ_CHECK(c->instance != NULL && c->auth.issuer != NULL);
        FUZZ_CHECK(c->auth.algs != 0 && c->policy != NULL && c->creds != NULL);
        /* Exactly one key source; its keys are loaded unless they come from a URL. */
        FUZZ_CHECK(!!c->auth.key_file + !!c->auth.jwks_file + !!c->auth.jwks_url == 1);
        FUZZ_CHECK((c->keys != NULL) == (c->auth.jwks_url == NULL));
        if (c->keys != NULL)
            FUZZ_CHECK(c->keys->n >= 1);
        FUZZ_CHECK(!((c->auth.algs & AUTH_ALGS_HMAC) && (c->auth.algs & ~AUTH_ALGS_HMAC)));
        FUZZ_CHECK(c->upstream.endpoint != NULL && c->audit.file != NULL);
        FUZZ_CHECK(c->upstream.connect_timeout_ms <= c->upstream.timeout_ms &&
                   c->upstream.timeout_ms <= c->upstream.deadline_ms);
        /* Every path is absolute once loaded. */
        FUZZ_CHECK(c->policy_file[0] == '/' && c->credentials_file[0] == '/');
        FUZZ_CHECK(c->auth.key_file == NULL || c->auth.key_file[0] == '/');
        FUZZ_CHECK(c->auth.jwks_file == NULL || c->auth.jwks_file[0] == '/');
        FUZZ_CHECK(cfg_ref(c) == c && c->refs == 2);
        cfg_unref(c);
    } else {
        /* A refused config always says why. */
        FUZZ_CHECK(err.len > 0);
    }
    cfg_unref(c);
    buf_free(&err);
    return 0;
}
