/*
 * sim_sign.c - the simulator's own implementation of Alibaba Cloud's RPC
 * signature V1 (HMAC-SHA1): form decoding, RFC 3986 encoding, sorting
 * parameters into the canonical query, the StringToSign, and the published
 * test vectors behind --self-test.  It shares no code with the gateway's
 * signer on purpose: the two are independent implementations of the same
 * published algorithm, so a bug in one shows up as a mismatch in tests.
 */
#include "sim.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

static const char HEX[] = "0123456789ABCDEF";

/* Alibaba leaves exactly RFC 3986's unreserved set unencoded. */
static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
           c == '~';
}

size_t sim_pct_encode(const char *in, size_t len, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (unreserved(c)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = HEX[c >> 4];
            out[o++] = HEX[c & 15];
        }
    }
    return o;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Form decoding: %XX and '+' as space.  A '%' not followed by two hex
 * digits is an error rather than a literal, so that the gateway's encoder
 * cannot get away with sending something Alibaba would reject. */
int sim_pct_decode(const char *in, size_t len, char *out, size_t *out_len)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return -1;
            hi = hexval((unsigned char)in[i + 1]);
            lo = hexval((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            out[o++] = (char)((hi << 4) | lo);
            i += 2;
        } else if (c == '+') {
            out[o++] = ' ';
        } else {
            out[o++] = (char)c;
        }
    }
    *out_len = o;
    return 0;
}

int sim_params_init(struct sim_params *p, size_t raw_bytes)
{
    p->n = 0;
    p->arena_used = 0;
    /* Per source byte: at most one decoded byte and three encoded ones,
     * plus four NUL terminators per parameter; 5x covers both. */
    p->arena_cap = raw_bytes * 5 + 64;
    p->arena = malloc(p->arena_cap);
    return p->arena ? 0 : -1;
}

void sim_params_free(struct sim_params *p)
{
    free(p->arena);
    p->arena = NULL;
    p->n = 0;
}

static char *arena_take(struct sim_params *p, size_t n)
{
    char *r;

    if (p->arena_cap - p->arena_used < n)
        return NULL;
    r = p->arena + p->arena_used;
    p->arena_used += n;
    return r;
}

/* Adds a parameter whose decoded name/value already sit in the arena (or
 * anywhere stable); computes the encodings into the arena. */
static int add_decoded(struct sim_params *p, const char *name, size_t nlen,
                       const char *value, size_t vlen)
{
    struct sim_param *prm;
    char *en, *ev;

    if (p->n >= SIM_MAX_PARAMS)
        return SIM_PARSE_TOO_MANY;
    en = arena_take(p, nlen * 3 + 1);
    if (!en)
        return SIM_PARSE_NOMEM;
    ev = arena_take(p, vlen * 3 + 1);
    if (!ev)
        return SIM_PARSE_NOMEM;
    prm = &p->v[p->n++];
    prm->name = name;
    prm->name_len = nlen;
    prm->value = value;
    prm->value_len = vlen;
    prm->ename = en;
    prm->ename_len = sim_pct_encode(name, nlen, en);
    en[prm->ename_len] = '\0';
    prm->evalue = ev;
    prm->evalue_len = sim_pct_encode(value, vlen, ev);
    ev[prm->evalue_len] = '\0';
    /* Give back what the value's encoding did not use (it is the last
     * allocation, so this is exact). */
    p->arena_used -= (vlen * 3 + 1) - (prm->evalue_len + 1);
    return SIM_PARSE_OK;
}

int sim_params_add(struct sim_params *p, const char *name, size_t name_len,
                   const char *value, size_t value_len)
{
    char *n, *v;

    n = arena_take(p, name_len + 1);
    v = n ? arena_take(p, value_len + 1) : NULL;
    if (!n || !v)
        return SIM_PARSE_NOMEM;
    memcpy(n, name, name_len);
    n[name_len] = '\0';
    memcpy(v, value, value_len);
    v[value_len] = '\0';
    return add_decoded(p, n, name_len, v, value_len);
}

int sim_params_parse(struct sim_params *p, const char *src, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t end = i, eq;
        char *n, *v;
        size_t nlen = 0, vlen = 0;
        int rc;

        while (end < len && src[end] != '&')
            end++;
        if (end == i) { /* "a=1&&b=2": empty pieces carry nothing */
            i = end + 1;
            continue;
        }
        eq = i;
        while (eq < end && src[eq] != '=')
            eq++;
        n = arena_take(p, (eq - i) + 1);
        if (!n)
            return SIM_PARSE_NOMEM;
        if (sim_pct_decode(src + i, eq - i, n, &nlen) != 0)
            return SIM_PARSE_MALFORMED;
        n[nlen] = '\0';
        p->arena_used -= (eq - i) - nlen;
        {
            size_t vsrc = eq < end ? eq + 1 : end;
            v = arena_take(p, (end - vsrc) + 1);
            if (!v)
                return SIM_PARSE_NOMEM;
            if (sim_pct_decode(src + vsrc, end - vsrc, v, &vlen) != 0)
                return SIM_PARSE_MALFORMED;
            v[vlen] = '\0';
            p->arena_used -= (end - vsrc) - vlen;
        }
        rc = add_decoded(p, n, nlen, v, vlen);
        if (rc != SIM_PARSE_OK)
            return rc;
        i = end + 1;
    }
    return SIM_PARSE_OK;
}

static int cmp_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t m = alen < blen ? alen : blen;
    int c = memcmp(a, b, m);

    if (c != 0)
        return c;
    return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

static int cmp_param(const void *a, const void *b)
{
    const struct sim_param *x = a, *y = b;

    return cmp_bytes(x->ename, x->ename_len, y->ename, y->ename_len);
}

const struct sim_param *sim_params_sort(struct sim_params *p)
{
    if (p->n > 1)
        qsort(p->v, p->n, sizeof(p->v[0]), cmp_param);
    for (size_t i = 1; i < p->n; i++) {
        /* Equal encodings <=> equal decoded names. */
        if (cmp_param(&p->v[i - 1], &p->v[i]) == 0)
            return &p->v[i];
    }
    return NULL;
}

bool sim_param_equals(const struct sim_param *prm, const char *lit)
{
    size_t l = strlen(lit);

    return prm && prm->value_len == l && memcmp(prm->value, lit, l) == 0;
}

const struct sim_param *sim_params_find(const struct sim_params *p,
                                        const char *name)
{
    size_t l = strlen(name);

    for (size_t i = 0; i < p->n; i++) {
        if (p->v[i].name_len == l && memcmp(p->v[i].name, name, l) == 0)
            return &p->v[i];
    }
    return NULL;
}

static bool is_signature(const struct sim_param *prm)
{
    return prm->name_len == 9 && memcmp(prm->name, "Signature", 9) == 0;
}

int sim_sign(const char *http_method, const struct sim_params *p,
             const char *key, size_t key_len, char out[SIM_SIG_MAX])
{
    int rc = -1;
    char *canon = NULL, *sts = NULL;
    size_t clen = 0, mlen = strlen(http_method), slen;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    for (size_t i = 0; i < p->n; i++) {
        if (!is_signature(&p->v[i]))
            clen += p->v[i].ename_len + p->v[i].evalue_len + 2;
    }
    canon = malloc(clen + 1);
    /* METHOD & %2F & encode(canonical) */
    sts = malloc(mlen + 5 + clen * 3 + 1);
    if (!canon || !sts)
        goto out;
    clen = 0;
    for (size_t i = 0; i < p->n; i++) {
        const struct sim_param *prm = &p->v[i];
        if (is_signature(prm))
            continue;
        if (clen)
            canon[clen++] = '&';
        memcpy(canon + clen, prm->ename, prm->ename_len);
        clen += prm->ename_len;
        canon[clen++] = '=';
        memcpy(canon + clen, prm->evalue, prm->evalue_len);
        clen += prm->evalue_len;
    }
    memcpy(sts, http_method, mlen);
    memcpy(sts + mlen, "&%2F&", 5);
    slen = mlen + 5;
    slen += sim_pct_encode(canon, clen, sts + slen);
    if (key_len > (size_t)0x7fffffff)
        goto out;
    if (!HMAC(EVP_sha1(), key, (int)key_len, (const unsigned char *)sts,
              slen, md, &mdlen))
        goto out;
    if (EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen) <= 0)
        goto out;
    rc = 0;
out:
    free(canon);
    free(sts);
    return rc;
}

/* ------------------------------------------------------------ self-test */

struct kv {
    const char *k, *v;
};

static const struct kv VEC_HOSTS[] = {
    {"AccessKeyId", "testid"},
    {"Action", "DescribeDedicatedHosts"},
    {"Format", "JSON"},
    {"RegionId", "cn-beijing"},
    {"SignatureMethod", "HMAC-SHA1"},
    {"SignatureNonce", "edb2b34af0af9a6d14deaf7c1a5315eb"},
    {"SignatureVersion", "1.0"},
    {"Timestamp", "2023-03-13T08:34:30Z"},
    {"Version", "2014-05-26"},
    {NULL, NULL},
};

static const struct kv VEC_REGIONS[] = {
    /* Deliberately not in sorted order: sorting is part of the test. */
    {"Version", "2014-05-26"},
    {"Timestamp", "2016-02-23T12:46:24Z"},
    {"AccessKeyId", "testid"},
    {"SignatureVersion", "1.0"},
    {"Format", "XML"},
    {"SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"},
    {"Action", "DescribeRegions"},
    {"SignatureMethod", "HMAC-SHA1"},
    {NULL, NULL},
};

static int run_vector(FILE *out, const char *label, const char *method,
                      const struct kv *kv, const char *want)
{
    int rc = -1;
    struct sim_params p;
    char got[SIM_SIG_MAX] = "";
    size_t raw = 0;

    for (const struct kv *e = kv; e->k; e++)
        raw += strlen(e->k) + strlen(e->v) + 2;
    if (sim_params_init(&p, raw) != 0)
        goto out;
    for (const struct kv *e = kv; e->k; e++) {
        if (sim_params_add(&p, e->k, strlen(e->k), e->v, strlen(e->v)) != 0)
            goto out;
    }
    if (sim_params_sort(&p) != NULL)
        goto out;
    if (sim_sign(method, &p, "testsecret&", 11, got) != 0)
        goto out;
    if (strcmp(got, want) == 0)
        rc = 0;
out:
    fprintf(out, "self-test %-36s %s (got %s, want %s)\n", label,
            rc == 0 ? "ok  " : "FAIL", got, want);
    sim_params_free(&p);
    return rc;
}

int sim_self_test(FILE *out)
{
    int fails = 0;
    static const char enc_in[] = "123abc!@#$%^&*()-=_+ ~|\\/";
    static const char enc_want[] =
        "123abc%21%40%23%24%25%5E%26%2A%28%29-%3D_%2B%20~%7C%5C%2F";
    char enc_got[sizeof(enc_in) * 3 + 1];
    size_t n;

    fails += run_vector(out, "GET DescribeDedicatedHosts", "GET", VEC_HOSTS,
                        "9NaGiOspFP5UPcwX8Iwt2YJXXuk=") != 0;
    fails += run_vector(out, "GET DescribeRegions", "GET", VEC_REGIONS,
                        "OLeaidS1JvxuMvnyHOwuJ+uX5qY=") != 0;
    fails += run_vector(out, "POST DescribeRegions", "POST", VEC_REGIONS,
                        "MxbnVAM4w6sft9xjVpe/GCKueuk=") != 0;

    n = sim_pct_encode(enc_in, sizeof(enc_in) - 1, enc_got);
    enc_got[n] = '\0';
    if (strcmp(enc_got, enc_want) == 0) {
        fprintf(out, "self-test %-36s ok   (%s)\n", "percent-encoding",
                enc_got);
    } else {
        fprintf(out, "self-test %-36s FAIL (got %s, want %s)\n",
                "percent-encoding", enc_got, enc_want);
        fails++;
    }
    fprintf(out, "self-test: %d of 4 vectors failed\n", fails);
    return fails ? -1 : 0;
}
