/*
 * fuzz_jwks: the JSON Web Key Set an identity provider serves at jwks_url
 * (or an operator puts in jwks_file), through jwks_parse, for three sets of
 * configured algorithms. Checked: a parsed set has 1..JWKS_KEYS_MAX public
 * keys, each usable for a configured algorithm that fits it (and that the
 * JWK's "alg" names, when it names one); a refused document leaves *out
 * alone; and the report is what jwks.h promises: one line per skipped key
 * (plus one when nothing is usable), with nothing a terminal would act on,
 * since --check-config prints it and the document comes from the network.
 */
#include "jwks.h"

#include "fuzz_util.h"

static void check_report(const struct buf *r)
{
    for (size_t i = 0; i < r->len; i++) {
        unsigned char c = (unsigned char)r->p[i];
        FUZZ_CHECK(c != '\0' && (c >= 0x20 || c == '\n') && c != 0x7F);
    }
    FUZZ_CHECK(r->len == 0 || r->p[r->len - 1] == '\n');
}

static size_t lines(const struct buf *r)
{
    size_t n = 0;

    for (size_t i = 0; i < r->len; i++)
        n += r->p[i] == '\n';
    return n;
}

static void parse(const char *doc, size_t len, int algs)
{
    struct auth_keyset *ks = (struct auth_keyset *)1;
    struct buf report;
    json_t *root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *keys = json_object_get(root, "keys");
    int n;

    buf_init(&report, 1024 * 1024);
    n = jwks_parse(doc, len, algs, &ks, &report);
    FUZZ_SAY("jwks: algs %#x: %d keys\n%s", (unsigned)algs, n, report.p ? report.p : "");
    check_report(&report);
    if (n < 0) {
        FUZZ_CHECK(n == -1 && ks == (struct auth_keyset *)1 && report.len > 0);
        if (!json_is_array(keys))
            FUZZ_CHECK(lines(&report) == 1);
        else
            FUZZ_CHECK(lines(&report) == json_array_size(keys) + 1);
    } else {
        FUZZ_CHECK(n >= 1 && n <= JWKS_KEYS_MAX && ks != NULL && ks->n == (size_t)n && ks->id != 0);
        FUZZ_CHECK(json_is_array(keys) && lines(&report) == json_array_size(keys) - (size_t)n);
        for (size_t i = 0; i < ks->n; i++) {
            const struct auth_key *k = &ks->keys[i];
            FUZZ_CHECK(k->pkey != NULL && k->secret == NULL && k->secret_len == 0);
            FUZZ_CHECK(k->algs != 0 && (k->algs & ~algs) == 0 && (k->algs & ~auth_pkey_algs(k->pkey)) == 0);
            FUZZ_CHECK(memchr(k->kid, '\0', sizeof(k->kid)) != NULL);
        }
        auth_keyset_free(ks);
    }
    buf_free(&report);
    json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *doc = fuzz_dup(data, size, 0);

    parse(doc, size, AUTH_ALGS_RSA | AUTH_ALGS_EC);
    parse(doc, size, AUTH_RS256);
    parse(doc, size, AUTH_ES384 | AUTH_ES512);
    free(doc);
    return 0;
}
