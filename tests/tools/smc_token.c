/*
 * smc-token: mint a JWT for the demo and the tests with libjwt (the gateway
 * itself never trusts libjwt to verify; see gateway/auth.c).
 *
 *   smc-token --alg RS256 --key certs/dev/jwt-rs256.key --sub alice@example.com
 *             --team migration [--iss URL] [--aud A] [--ttl SECONDS] [--kid K]
 *
 * Prints the compact token on stdout.
 */
#include <errno.h>
#include <getopt.h>
#include <jwt.h>
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

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"alg", required_argument, NULL, 'a'}, {"key", required_argument, NULL, 'k'},
        {"sub", required_argument, NULL, 's'}, {"team", required_argument, NULL, 't'},
        {"iss", required_argument, NULL, 'i'}, {"aud", required_argument, NULL, 'u'},
        {"ttl", required_argument, NULL, 'l'}, {"kid", required_argument, NULL, 'd'},
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

    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'a': algname = optarg; break;
        case 'k': keyfile = optarg; break;
        case 's': sub = optarg; break;
        case 't': team = optarg; break;
        case 'i': iss = optarg; break;
        case 'u': aud = optarg; break;
        case 'l': ttl = parse_long(optarg); break;
        case 'd': kid = optarg; break;
        default: return 2;
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
