/*
 * smc-token: mint a JWT for the demo and the tests with libjwt (the gateway
 * itself never trusts libjwt to verify; see gateway/auth.c).
 *
 *   smc-token --alg RS256 --key certs/dev/jwt-rs256.key --sub alice@example.com
 *             --team migration [--iss URL] [--aud A] [--ttl SECONDS] [--kid K]
 *
 * Prints the compact token on stdout.
 *
 *   smc-token --jwks PUBKEY.pem:KID [PUBKEY.pem:KID ...]
 *
 * Prints a JWKS document of those public keys (RSA or EC P-256/384/521),
 * for the demo's identity-provider variant and the tests.
 */
#include <errno.h>
#include <getopt.h>
#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int read_file(const char *path, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *p = NULL;
    size_t n = 0, cap = 0, r;

    if (f == NULL)
        return -1;
    for (;;) {
        if (cap - n < 4096) {
            unsigned char *np = realloc(p, cap + 8192);
            if (np == NULL)
                break;
            p = np;
            cap += 8192;
        }
        r = fread(p + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    /* A shared secret file's trailing newline is not part of the secret. */
    if (n > 0 && p[n - 1] == '\n' && memmem(p, n, "-----BEGIN", 10) == NULL)
        n--;
    *out = p;
    *len = n;
    return p ? 0 : -1;
}

static long parse_long(const char *s)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        fprintf(stderr, "smc-token: not a number: %s\n", s);
        exit(2);
    }
    return v;
}

static void print_b64url_bn(const BIGNUM *bn, int pad)
{
    unsigned char raw[1024], enc[1400];
    int n = pad ? BN_bn2binpad(bn, raw, pad) : BN_bn2bin(bn, raw);
    int len = EVP_EncodeBlock(enc, raw, n);

    for (int i = 0; i < len && enc[i] != '='; i++)
        putchar(enc[i] == '+' ? '-' : enc[i] == '/' ? '_' : enc[i]);
}

/* One JWK per "file:kid" argument; 0 on success. */
static int print_jwks(int n, char **args)
{
    int rc = 1;

    printf("{\"keys\":[");
    for (int i = 0; i < n; i++) {
        char path[4096], *colon;
        FILE *f;
        EVP_PKEY *k;
        BIGNUM *a = NULL, *b = NULL;
        char group[64];
        snprintf(path, sizeof(path), "%s", args[i]);
        colon = strrchr(path, ':');
        if (colon == NULL) {
            fprintf(stderr, "smc-token: --jwks wants FILE:KID, got %s\n", args[i]);
            return 1;
        }
        *colon = '\0';
        f = fopen(path, "r");
        k = f ? PEM_read_PUBKEY(f, NULL, NULL, NULL) : NULL;
        if (f != NULL)
            fclose(f);
        if (k == NULL) {
            fprintf(stderr, "smc-token: %s: not a PEM public key\n", path);
            return 1;
        }
        printf("%s{\"kid\":\"%s\",\"use\":\"sig\",", i ? "," : "", colon + 1);
        if (EVP_PKEY_is_a(k, "RSA") && EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &a) == 1 &&
            EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &b) == 1) {
            printf("\"kty\":\"RSA\",\"alg\":\"RS256\",\"n\":\"");
            print_b64url_bn(a, 0);
            printf("\",\"e\":\"");
            print_b64url_bn(b, 0);
            printf("\"}");
        } else if (EVP_PKEY_is_a(k, "EC") && EVP_PKEY_get_group_name(k, group, sizeof(group), NULL) == 1 &&
                   EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &a) == 1 &&
                   EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, &b) == 1) {
            int size = strcmp(group, "prime256v1") == 0 ? 32 : strcmp(group, "secp384r1") == 0 ? 48 : 66;
            printf("\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"", size == 32 ? "P-256" : size == 48 ? "P-384" : "P-521");
            print_b64url_bn(a, size);
            printf("\",\"y\":\"");
            print_b64url_bn(b, size);
            printf("\"}");
        } else {
            fprintf(stderr, "smc-token: %s: neither an RSA nor an EC key\n", path);
            EVP_PKEY_free(k);
            return 1;
        }
        BN_free(a);
        BN_free(b);
        EVP_PKEY_free(k);
    }
    printf("]}\n");
    rc = 0;
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"alg", required_argument, NULL, 'a'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"sub", required_argument, NULL, 's'},
                                         {"team", required_argument, NULL, 't'},
                                         {"iss", required_argument, NULL, 'i'},
                                         {"aud", required_argument, NULL, 'u'},
                                         {"ttl", required_argument, NULL, 'l'},
                                         {"kid", required_argument, NULL, 'd'},
                                         {NULL, 0, NULL, 0}};
    const char *algname = "RS256", *keyfile = NULL, *sub = "alice@example.com", *team = "migration";
    const char *iss = "https://idp.example.com", *aud = "smc-gateway", *kid = NULL;
    long ttl = 3600;
    int opt, rc = 1;
    jwt_t *jwt = NULL;
    unsigned char *key = NULL;
    size_t keylen = 0;
    char *out = NULL;
    time_t now = time(NULL);
    jwt_alg_t alg;

    if (argc > 1 && strcmp(argv[1], "--jwks") == 0)
        return print_jwks(argc - 2, argv + 2);
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'a':
            algname = optarg;
            break;
        case 'k':
            keyfile = optarg;
            break;
        case 's':
            sub = optarg;
            break;
        case 't':
            team = optarg;
            break;
        case 'i':
            iss = optarg;
            break;
        case 'u':
            aud = optarg;
            break;
        case 'l':
            ttl = parse_long(optarg);
            break;
        case 'd':
            kid = optarg;
            break;
        default:
            return 2;
        }
    }
    alg = jwt_str_alg(algname);
    if (keyfile == NULL || alg == JWT_ALG_INVAL || alg == JWT_ALG_NONE) {
        fprintf(stderr, "usage: smc-token --alg RS256|ES256|HS256 --key FILE [--sub S] [--team T] [--iss I] "
                        "[--aud A] [--ttl S] [--kid K]\n");
        return 2;
    }
    if (read_file(keyfile, &key, &keylen) != 0) {
        fprintf(stderr, "smc-token: cannot read %s\n", keyfile);
        goto out;
    }
    if (jwt_new(&jwt) != 0 || jwt_set_alg(jwt, alg, key, (int)keylen) != 0)
        goto out;
    if (kid != NULL && jwt_add_header(jwt, "kid", kid) != 0)
        goto out;
    jwt_add_grant(jwt, "sub", sub);
    jwt_add_grant(jwt, "team", team);
    jwt_add_grant(jwt, "iss", iss);
    jwt_add_grant(jwt, "aud", aud);
    jwt_add_grant_int(jwt, "iat", now);
    jwt_add_grant_int(jwt, "exp", now + ttl);
    out = jwt_encode_str(jwt);
    if (out == NULL)
        goto out;
    printf("%s\n", out);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "smc-token: could not mint a token\n");
    free(out);
    jwt_free(jwt);
    free(key);
    return rc;
}
