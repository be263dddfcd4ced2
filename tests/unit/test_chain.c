/*
 * The audit chain format (chain.c): checkpoint messages, key ids, Ed25519
 * signatures, key loading, terminal escaping, and the streaming verifier
 * against a good log and each kind of tampering it must name. Logs are built
 * here line by line (with chain_checkpoint_line for the signed entries) and
 * fed to the verifier as the tool would feed it.
 */
#include "buf.h"
#include "chain.h"
#include "codec.h"
#include "unit.h"

#include <inttypes.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdlib.h>

#define TLOG_MAX 64

/* A log under construction: lines with their newlines, and the chain state. */
struct tlog {
    char *line[TLOG_MAX];
    size_t n;
    uint64_t seq;
    unsigned char prev[32];
    uint64_t since_checkpoint;
    const char *instance;
};

static void tlog_init(struct tlog *t)
{
    memset(t, 0, sizeof(*t));
    t->instance = "gw-1";
}

static void tlog_free(struct tlog *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->line[i]);
    t->n = 0;
}

static void tlog_push(struct tlog *t, struct buf *b)
{
    chain_hash(b->p, b->len, t->prev);
    t->seq++;
    if (t->n < TLOG_MAX)
        t->line[t->n++] = buf_take(b);
    else
        buf_free(b);
}

/* An entry; extra is more members (",\"k\":\"v\"") or "". */
static void tlog_entry(struct tlog *t, const char *event, const char *extra)
{
    struct buf b;
    char hex[65];

    buf_init(&b, 4096);
    codec_hex(hex, t->prev, 32);
    buf_printf(&b,
               "{\"seq\":%" PRIu64 ",\"prev\":\"%s\",\"ts\":\"2026-11-28T12:%02d:%02d.%03dZ\",\"instance\":\"%s\","
               "\"event\":\"%s\"%s}\n",
               t->seq + 1, hex, (int)((t->seq + 1) / 60 % 60), (int)((t->seq + 1) % 60), (int)(t->seq + 1), t->instance,
               event, extra);
    tlog_push(t, &b);
    t->since_checkpoint++;
}

static void tlog_requests(struct tlog *t, int n)
{
    for (int i = 0; i < n; i++) {
        tlog_entry(t, "decision", ",\"job_id\":\"j-bp1ready\",\"team\":\"migration\",\"decision\":\"allow\"");
        tlog_entry(t, "outcome", ",\"job_id\":\"j-bp1ready\",\"status\":200,\"result\":\"deleted\"");
    }
}

static void tlog_checkpoint_count(struct tlog *t, EVP_PKEY *key, uint64_t count)
{
    struct buf b;

    buf_init(&b, 4096);
    CHECK(chain_checkpoint_line(&b, key, t->instance, t->seq + 1, t->prev, 1795867428421LL, count) == 0);
    tlog_push(t, &b);
    t->since_checkpoint = 0;
}

static void tlog_checkpoint(struct tlog *t, EVP_PKEY *key)
{
    tlog_checkpoint_count(t, key, t->since_checkpoint);
}

/* Recompute every prev from line index `from` on, as a forger without the key would. */
static void tlog_rechain(struct tlog *t, size_t from)
{
    unsigned char h[32];
    char hex[65];

    for (size_t i = from; i < t->n && i > 0; i++) {
        char *p = strstr(t->line[i], "\"prev\":\"");
        chain_hash(t->line[i - 1], strlen(t->line[i - 1]), h);
        codec_hex(hex, h, 32);
        if (p != NULL)
            memcpy(p + 8, hex, 64);
    }
}

/* Which lines go to which file, in feeding order. */
struct tfile {
    const char *name;
    size_t from, to; /* line indexes [from, to) */
};

/* Feed the files; the error text or "OK" (static copy), and the result. */
static const char *verify_files(EVP_PKEY *pub, const struct tlog *t, const struct tfile *files, size_t nfiles,
                                struct chain_result *res)
{
    static char out[2048];
    struct chain_verifier *v = chain_verifier_new(pub);

    snprintf(out, sizeof(out), "(no verifier)");
    if (v == NULL)
        return out;
    for (size_t f = 0; f < nfiles; f++)
        for (size_t i = files[f].from; i < files[f].to; i++)
            chain_verifier_feed(v, files[f].name, (unsigned long)(i - files[f].from + 1), t->line[i],
                                strlen(t->line[i]), i + 1 == files[f].to);
    if (chain_verifier_finish(v, res) == 0)
        snprintf(out, sizeof(out), "OK");
    else
        snprintf(out, sizeof(out), "%s", res->error);
    chain_verifier_free(v);
    return out;
}

static const char *verify_log(EVP_PKEY *pub, const struct tlog *t, struct chain_result *res)
{
    struct tfile f = {"a.jsonl", 0, t->n};

    return verify_files(pub, t, &f, 1, res);
}

static int has(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) != NULL)
        return 1;
    fprintf(stderr, "    \"%s\"\n    does not contain \"%s\"\n", haystack, needle);
    return 0;
}

static EVP_PKEY *ed25519_key(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
}

/* 3 requests, checkpoint, 2 requests and a refusal, checkpoint: 13 lines, checkpoints at seq 7 and 13. */
static void good_log(struct tlog *t, EVP_PKEY *key)
{
    tlog_init(t);
    tlog_requests(t, 3);
    tlog_checkpoint(t, key);
    tlog_requests(t, 2);
    tlog_entry(t, "decision", ",\"decision\":\"deny\",\"reason\":\"no_token\",\"status\":401");
    tlog_checkpoint(t, key);
}

UNIT_TEST(chain_message_format)
{
    char msg[CHAIN_MSG_MAX], small[20];
    const char *prev = "00000000000000000000000000000000000000000000000000000000000000ff";

    CHECK(chain_message(msg, sizeof(msg), "gw-1", 42, prev) == 0);
    CHECK_STR(msg, "smc-gateway-audit-v1|gw-1|42|00000000000000000000000000000000000000000000000000000000000000ff");
    CHECK(chain_message(small, sizeof(small), "gw-1", 42, prev) == -1);
    CHECK(chain_message(msg, sizeof(msg), "a-64-character-instance-name-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                        UINT64_MAX, prev) == 0);
}

UNIT_TEST(chain_key_id_is_the_public_der_hash)
{
    EVP_PKEY *k1 = ed25519_key(), *k2 = ed25519_key(), *pub = NULL;
    char id1[17], id1b[17], id2[17], idpub[17], hex[65];
    unsigned char *der = NULL, md[32];
    const unsigned char *p;
    int len;

    CHECK(chain_key_id(k1, id1) == 0 && chain_key_id(k1, id1b) == 0);
    CHECK_STR(id1, id1b);
    CHECK_INT(strlen(id1), 16);
    CHECK(chain_key_id(k2, id2) == 0);
    CHECK(strcmp(id1, id2) != 0);
    /* From the private key and from its public half alone: the same id. */
    len = i2d_PUBKEY(k1, &der);
    p = der;
    pub = d2i_PUBKEY(NULL, &p, len);
    CHECK(chain_key_id(pub, idpub) == 0);
    CHECK_STR(idpub, id1);
    /* Independently: SHA-256 of the SubjectPublicKeyInfo DER, first 8 bytes. */
    chain_hash(der, (size_t)len, md);
    codec_hex(hex, md, 32);
    hex[16] = '\0';
    CHECK_STR(id1, hex);
    CHECK(chain_key_id(NULL, id1) == -1);
    OPENSSL_free(der);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
}

UNIT_TEST(chain_sign_verify_roundtrip)
{
    EVP_PKEY *k1 = ed25519_key(), *k2 = ed25519_key(), *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    char sig[CHAIN_SIG_B64_MAX], sig2[CHAIN_SIG_B64_MAX], bad[CHAIN_SIG_B64_MAX];
    const char *msg = "smc-gateway-audit-v1|gw-1|7|0000000000000000000000000000000000000000000000000000000000000000";

    CHECK(chain_sign(k1, msg, sig, sizeof(sig)) == 0);
    CHECK_INT(strlen(sig), 88);
    CHECK(sig[87] == '=' && sig[86] == '=');
    /* Ed25519 is deterministic. */
    CHECK(chain_sign(k1, msg, sig2, sizeof(sig2)) == 0);
    CHECK_STR(sig2, sig);
    CHECK_INT(chain_verify_sig(k1, msg, sig), 1);
    CHECK_INT(chain_verify_sig(k1, "smc-gateway-audit-v1|gw-1|8|00", sig), 0);
    CHECK_INT(chain_verify_sig(k2, msg, sig), 0);
    memcpy(bad, sig, sizeof(bad));
    bad[10] = bad[10] == 'A' ? 'B' : 'A';
    CHECK_INT(chain_verify_sig(k1, msg, bad), 0);
    CHECK_INT(chain_verify_sig(k1, msg, "not base64"), 0);
    CHECK_INT(chain_verify_sig(k1, msg, ""), 0);
    memcpy(bad, sig, sizeof(bad));
    bad[85] = bad[85] == 'A' ? 'B' : 'A'; /* non-zero leftover bits: not canonical */
    CHECK_INT(chain_verify_sig(k1, msg, bad), 0);
    CHECK(chain_sign(k1, msg, sig, 40) == -1);
    CHECK(chain_sign(ec, msg, sig, sizeof(sig)) == -1);
    CHECK_INT(chain_verify_sig(ec, msg, sig2), 0);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(ec);
}

static char *pem_of(EVP_PKEY *k, int private)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *out;
    long len;

    if (private)
        PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL);
    else
        PEM_write_bio_PUBKEY(bio, k);
    len = BIO_get_mem_data(bio, &data);
    out = malloc((size_t)len + 1);
    memcpy(out, data, (size_t)len);
    out[len] = '\0';
    BIO_free(bio);
    return out;
}

UNIT_TEST(chain_key_loading)
{
    EVP_PKEY *k = ed25519_key(), *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), *got;
    char *priv_pem = pem_of(k, 1), *pub_pem = pem_of(k, 0), *ec_pem = pem_of(ec, 1);
    char want[17], id[17], path[256];
    struct buf err;

    buf_init(&err, 4096);
    chain_key_id(k, want);
    got = chain_private_key("audit.pem", priv_pem, strlen(priv_pem), &err);
    CHECK(got != NULL && chain_key_id(got, id) == 0 && strcmp(id, want) == 0);
    EVP_PKEY_free(got);
    got = chain_load_public_key(unit_file("audit.pub.pem", pub_pem, 0644), &err);
    CHECK(got != NULL && chain_key_id(got, id) == 0 && strcmp(id, want) == 0);
    EVP_PKEY_free(got);
    /* The public half of a private key file; the private half is not kept. */
    got = chain_load_public_key(unit_file("audit2.pem", priv_pem, 0600), &err);
    CHECK(got != NULL && chain_key_id(got, id) == 0 && strcmp(id, want) == 0);
    CHECK(got != NULL && EVP_PKEY_get_raw_private_key(got, NULL, &(size_t){0}) != 1);
    EVP_PKEY_free(got);
    CHECK_INT(err.len, 0);
    /* Refusals name the file. */
    CHECK(chain_private_key("ec.pem", ec_pem, strlen(ec_pem), &err) == NULL);
    CHECK(has(err.p ? err.p : "", "ec.pem: ") && has(err.p ? err.p : "", "not an Ed25519 key"));
    buf_reset(&err);
    CHECK(chain_private_key("pubonly.pem", pub_pem, strlen(pub_pem), &err) == NULL);
    CHECK(has(err.p ? err.p : "", "pubonly.pem: "));
    buf_reset(&err);
    CHECK(chain_private_key("empty.pem", "", 0, &err) == NULL);
    CHECK(has(err.p ? err.p : "", "empty.pem: empty file"));
    buf_reset(&err);
    snprintf(path, sizeof(path), "%s", unit_file("junk.pem", "-----BEGIN PUBLIC KEY-----\nzzz\n", 0644));
    CHECK(chain_load_public_key(path, &err) == NULL);
    CHECK(has(err.p ? err.p : "", path));
    buf_reset(&err);
    CHECK(chain_load_public_key("/nonexistent/key.pem", &err) == NULL);
    CHECK(has(err.p ? err.p : "", "/nonexistent/key.pem: cannot read"));
    buf_free(&err);
    free(priv_pem);
    free(pub_pem);
    free(ec_pem);
    EVP_PKEY_free(k);
    EVP_PKEY_free(ec);
}

UNIT_TEST(chain_escape_for_terminals)
{
    struct buf b;

    buf_init(&b, 1024);
    CHECK(buf_term_str(&b, "ok \x1b[31mred\x7f\\ \t", 15) == 0);
    CHECK_STR(b.p, "ok \\x1b[31mred\\x7f\\\\ \\x09");
    buf_reset(&b);
    /* C1 CSI (U+009B), a bidi override (U+202E), invalid UTF-8, and é kept. */
    CHECK(buf_term_str(&b,
                       "\xc2\x9b"
                       "2J\xe2\x80\xae"
                       "x\xff\xc3\xa9",
                       11) == 0);
    CHECK_STR(b.p, "\\u009b2J\\u202ex\\xff\xc3\xa9");
    buf_reset(&b);
    CHECK(buf_term_str(&b, "a\0b", 3) == 0);
    CHECK_STR(b.p, "a\\x00b");
    buf_free(&b);
    buf_init(&b, 8);
    CHECK(buf_term_str(&b, "\x1b\x1b\x1b", 3) == -1);
    CHECK_INT(b.len, 0);
    buf_free(&b);
}

UNIT_TEST(chain_checkpoint_line_format)
{
    EVP_PKEY *k = ed25519_key();
    struct buf b;
    unsigned char prev[32];
    char id[17], want[512], sig[CHAIN_SIG_B64_MAX], msg[CHAIN_MSG_MAX], hex[65];

    memset(prev, 0xab, sizeof(prev));
    codec_hex(hex, prev, 32);
    chain_key_id(k, id);
    chain_message(msg, sizeof(msg), "gw-1", 101, hex);
    chain_sign(k, msg, sig, sizeof(sig));
    snprintf(want, sizeof(want),
             "{\"seq\":101,\"prev\":\"%s\",\"ts\":\"2026-11-28T12:03:48.421Z\",\"instance\":\"gw-1\","
             "\"event\":\"checkpoint\",\"count\":100,\"key_id\":\"%s\",\"sig\":\"%s\"}\n",
             hex, id, sig);
    buf_init(&b, 4096);
    CHECK(chain_checkpoint_line(&b, k, "gw-1", 101, prev, 1795867428421LL, 100) == 0);
    CHECK_STR(b.p, want);
    buf_free(&b);
    /* All or nothing. */
    buf_init(&b, 64);
    buf_adds(&b, "x");
    CHECK(chain_checkpoint_line(&b, k, "gw-1", 101, prev, 0, 100) == -1);
    CHECK_STR(b.p, "x");
    buf_free(&b);
    EVP_PKEY_free(k);
}

UNIT_TEST(chain_verifier_good_log)
{
    EVP_PKEY *k = ed25519_key();
    struct tlog t;
    struct chain_result r;

    good_log(&t, k);
    CHECK_STR(verify_log(k, &t, &r), "OK");
    CHECK_INT(r.entries, 13);
    CHECK_INT(r.first_seq, 1);
    CHECK_INT(r.last_seq, 13);
    CHECK_INT(r.sealed_seq, 13);
    CHECK_INT(r.checkpoints, 2);
    CHECK_INT(r.checkpoints_verified, 2);
    CHECK(r.from_start && r.sigs_checked && r.ok);
    CHECK_STR(r.instance, "gw-1");
    /* Without a key: the chain holds, nothing is sealed. */
    CHECK_STR(verify_log(NULL, &t, &r), "OK");
    CHECK_INT(r.sealed_seq, 0);
    CHECK_INT(r.checkpoints, 2);
    CHECK_INT(r.checkpoints_verified, 0);
    CHECK(!r.sigs_checked);
    tlog_free(&t);
    EVP_PKEY_free(k);
}

UNIT_TEST(chain_verifier_unsealed_tail_and_retention)
{
    EVP_PKEY *k = ed25519_key();
    struct tlog t;
    struct chain_result r;
    struct tfile rotated[] = {{"a.1", 0, 7}, {"a.0", 7, 16}};
    struct tfile kept[] = {{"a.0", 7, 16}};

    good_log(&t, k);
    tlog_requests(&t, 1);
    tlog_entry(&t, "recovery", ",\"moved_to\":\"audit.jsonl.torn\"");
    CHECK_STR(verify_log(k, &t, &r), "OK");
    CHECK_INT(r.last_seq, 16);
    CHECK_INT(r.sealed_seq, 13);
    /* The same log as two rotated files, then with the older one gone. */
    CHECK_STR(verify_files(k, &t, rotated, 2, &r), "OK");
    CHECK_STR(verify_files(k, &t, kept, 1, &r), "OK");
    CHECK(!r.from_start);
    CHECK_INT(r.first_seq, 8);
    CHECK_INT(r.entries, 9);
    CHECK_INT(r.sealed_seq, 13);
    tlog_free(&t);
    EVP_PKEY_free(k);
}

/* Verify t and expect the error to start with want_at and contain why. */
static void expect_broken(int line, EVP_PKEY *pub, struct tlog *t, const char *want_at, const char *why)
{
    struct chain_result r;
    const char *got = verify_log(pub, t, &r);

    if (r.ok || strncmp(got, want_at, strlen(want_at)) != 0 || strstr(got, why) == NULL) {
        unit_failures++;
        fprintf(stderr, "  FAIL %s:%d: verifier said\n    %s\n    want %s...%s\n", __FILE__, line, got, want_at, why);
    }
}
#define EXPECT_BROKEN(pub, t, at, why) expect_broken(__LINE__, pub, t, at, why)

UNIT_TEST(chain_verifier_edited_line)
{
    EVP_PKEY *k = ed25519_key();
    struct tlog t;

    good_log(&t, k);
    strstr(t.line[2], "j-bp1ready")[9] = 'z';
    EXPECT_BROKEN(k, &t, "a.jsonl:4: ",
                  "prev does not match the hash of line 3: line 3 was changed, or a line was removed or inserted "
                  "before line 4");
    tlog_free(&t);
    EVP_PKEY_free(k);
}

UNIT_TEST(chain_verifier_deleted_line)
{
    EVP_PKEY *k = ed25519_key();
    struct tlog t;

    good_log(&t, k);
    free(t.line[4]);
    memmove(&t.line[4], &t.line[5], (t.n - 5) * sizeof(t.line[0]));
    t.n--;
    EXPECT_BROKEN(k, &t, "a.jsonl:5: ", "seq 6 follows seq 4: entry seq 5 is missing (a line was deleted)");
    /* Two in a row. */
    free(t.line[4]);
    memmove(&t.line[4], &t.line[5], (t.n - 5) * sizeof(t.line[0]));
    t.n--;
    EXPECT_BROKEN(k, &t, "a.jsonl:5: ", "entries seq 5..6 are missing");
    tlog_free(&t);
    EVP_PKEY_free(k);
}

UNIT_TEST(chain_verifier_swapped_lines)
{
    EVP_PKEY *k = ed25519_key();
    struct tlog t;
    char *tmp;

    good_log(&t, k);
    tmp = t.line[3];
    t.line[3] = t.line[4];
    t.line[4] = tmp;
    EXPECT_BROKEN(k, &t, "a.jsonl:4: ", "seq 5 comes before seq 4 (line 5): lines were reordered");
    /* The last two lines swapped. */
    tmp = t.line[3];
    t.line[3] = t.line[4];
    t.line[4] = tmp;
    tmp = t.line[11];
    t.line[11] = t.line[12];
    t.line[12] = tmp;
    EXPECT_BROKEN(k, &t, "a.jsonl:12: ", "seq 13 comes before seq 12 (line 13)");
    tlog_free(&t);
    EVP_PKEY_free(k);
}

UNIT_TEST(chain_verifier_inserted_and_duplicated_lines)
{
    EVP_PKEY *k = ed25519_key();
    struct tlog t;
    unsigned char h[32];
    char hex[65], forged[512];

    /* A forged seq 4 that links correctly to line 3 pushes the real seq 4 down to line 5. */
    good_log(&t, k);
    chain_hash(t.line[2], strlen(t.line[2]), h);
    codec_hex(hex, h, 32);
    snprintf(forged, sizeof(forged),
             "{\"seq\":4,\"prev\":\"%s\",\"ts\":\"2026-11-28T12:00:04.004Z\",\"instance\":\"gw-1\","
             "\"event\":\"decision\",\"sub\":\"mallory\",\"decision\":\"allow\"}\n",
             hex);
    memmove(&t.line[4], &t.line[3], (t.n - 3) * sizeof(t.line[0]));
    t.n++;
    t.line[3] = strdup(forged);
    EXPECT_BROKEN(k, &t, "a.jsonl:5: ",
                  "seq 4 and prev repeat those of line 4: line 4 or line 5 was inserted (both claim the same place "
                  "in the chain)");
    tlog_free(&t);

    /* A line copied again right after itself. */
    good_log(&t, k);
    memmove(&t.line[3], &t.line[2], (t.n - 2) * sizeof(t.line[0]));
    t.n++;
    t.line[2] = strdup(t.line[3]);
    EXPECT_BROKEN(k, &t, "a.jsonl:4: ", "seq 3 and prev repeat those of line 3");
    tlog_free(&t);
    EVP_PKEY_free(k);
}

UNIT_TEST(chain_verifier_rewritten_history_breaks_the_seal)
{
    EVP_PKEY *k = ed25519_key();
    struct tlog t;
    struct chain_result r;

    good_log(&t, k);
    memcpy(strstr(t.line[1], "deleted"), "refused", 7);
    tlog_rechain(&t, 2);
    EXPECT_BROKEN(k, &t, "a.jsonl:7: ",
                  "checkpoint signature does not verify: entries through seq 6 were changed after they were sealed");
    /* Only the signature could tell. */
    CHECK_STR(verify_log(NULL, &t, &r), "OK");
    tlog_free(&t);
    EVP_PKEY_free(k);
}

UNIT_TEST(chain_verifier_checkpoint_keys_and_counts)
{
    EVP_PKEY *k = ed25519_key(), *other = ed25519_key();
    struct tlog t;
    struct chain_result r;
    char id[17], ido[17], want[128];
    struct chain_verifier *v;

    chain_key_id(k, id);
    chain_key_id(other, ido);
    good_log(&t, k);
    snprintf(want, sizeof(want),
             "checkpoint signed by an unknown key: key_id %s, but the given public key has key_id %s", id, ido);
    EXPECT_BROKEN(other, &t, "a.jsonl:7: ", want);
    /* Both keys given (rotation): fine. */
    v = chain_verifier_new(other);
    CHECK(v != NULL && chain_verifier_add_key(v, k) == 0);
    for (size_t i = 0; i < t.n; i++)
        chain_verifier_feed(v, "a", i + 1, t.line[i], strlen(t.line[i]), i + 1 == t.n);
    CHECK(chain_verifier_finish(v, &r) == 0 && r.sealed_seq == 13);
    chain_verifier_free(v);
    tlog_free(&t);

    tlog_init(&t);
    tlog_requests(&t, 2);
    tlog_checkpoint_count(&t, k, 3);
    EXPECT_BROKEN(k, &t, "a.jsonl:5: ", "checkpoint count is 3 but 4 entries precede it since the start of the chain");
    tlog_free(&t);

    tlog_init(&t);
    tlog_requests(&t, 2);
    tlog_checkpoint(&t, k);
    tlog_requests(&t, 1);
    tlog_checkpoint_count(&t, k, 1);
    EXPECT_BROKEN(k, &t, "a.jsonl:8: ", "checkpoint count is 1 but 2 entries follow the previous checkpoint (seq 5)");
    tlog_free(&t);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
}

UNIT_TEST(chain_verifier_across_files)
{
    EVP_PKEY *k = ed25519_key();
    struct tlog t;
    struct chain_result r;
    /* Three rotated files of 5 lines (4 entries and a checkpoint), then the current one of 6. */
    struct tfile ok[] = {{"a.3", 0, 5}, {"a.2", 5, 10}, {"a.1", 10, 15}, {"a", 15, 21}};
    struct tfile missing_middle[] = {{"a.3", 0, 5}, {"a.1", 10, 15}, {"a", 15, 21}};
    struct tfile out_of_order[] = {{"a.2", 5, 10}, {"a.3", 0, 5}};
    struct tfile twice[] = {{"a.3", 0, 5}, {"a.3", 0, 5}};

    tlog_init(&t);
    for (int i = 0; i < 3; i++) {
        tlog_requests(&t, 2);
        tlog_checkpoint(&t, k);
    }
    tlog_requests(&t, 3);
    CHECK_STR(verify_files(k, &t, ok, 4, &r), "OK");
    CHECK_INT(r.sealed_seq, 15);
    CHECK_INT(r.last_seq, 21);
    CHECK(has(verify_files(k, &t, missing_middle, 3, &r),
              "a.1:1: seq 11 follows seq 5 at the end of a.3: entries seq 6..10 are missing (a rotated file was "
              "deleted"));
    CHECK(has(verify_files(k, &t, out_of_order, 2, &r), "a.3:1: seq 1 after seq 10 at the end of a.2"));
    CHECK(has(verify_files(k, &t, twice, 2, &r), "a.3:1: seq 1 after seq 5"));
    /* The last line of a rotated file changed: the next file's first line says so. */
    memcpy(strstr(t.line[9], ".421Z"), ".422Z", 5);
    CHECK(has(verify_files(k, &t, ok, 4, &r),
              "a.1:1: prev does not match the hash of the last line of a.2 (line 5): that line was changed"));
    tlog_free(&t);
    EVP_PKEY_free(k);
}

UNIT_TEST(chain_verifier_malformed_lines)
{
    EVP_PKEY *k = ed25519_key();
    struct tlog t;
    static const struct {
        const char *line;
        const char *why;
    } cases[] = {
        {"\n", "empty line"},
        {"not json\n", "not JSON"},
        {"[1,2]\n", "not a JSON object"},
        {"{\"prev\":\"00\",\"seq\":4}\n", "\"seq\" and \"prev\" must be the first two members"},
        {"{\"seq\":4}\n", "\"seq\" and \"prev\" must be the first two members"},
        {"{\"seq\":\"4\",\"prev\":\"00\"}\n", "\"seq\" must be an integer >= 1"},
        {"{\"seq\":0,\"prev\":\"00\"}\n", "\"seq\" must be an integer >= 1"},
        {"{\"seq\":4,\"prev\":\"ABC\"}\n", "\"prev\" must be 64 lowercase hex digits"},
        {"{\"seq\":4,\"prev\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"seq\":5}\n",
         "not JSON: duplicate object key"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        good_log(&t, k);
        free(t.line[3]);
        t.line[3] = strdup(cases[i].line);
        EXPECT_BROKEN(k, &t, "a.jsonl:4: ", cases[i].why);
        tlog_free(&t);
    }
    /* Field checks, on a line that links correctly. */
    tlog_init(&t);
    tlog_requests(&t, 1);
    tlog_entry(&t, "decision", ",\"instance\":\"gw-1\"");
    EXPECT_BROKEN(k, &t, "a.jsonl:3: ", "not JSON: duplicate object key");
    tlog_free(&t);
    tlog_init(&t);
    t.instance = "gw 1";
    tlog_requests(&t, 1);
    EXPECT_BROKEN(k, &t, "a.jsonl:1: ", "\"instance\" must be a string of 1-64 characters");
    tlog_free(&t);
    tlog_init(&t);
    tlog_requests(&t, 1);
    t.instance = "gw-2";
    tlog_requests(&t, 1);
    EXPECT_BROKEN(k, &t, "a.jsonl:3: ", "instance \"gw-2\" differs from \"gw-1\" of the chain so far (mixed instances");
    tlog_free(&t);
    tlog_init(&t);
    tlog_requests(&t, 1);
    tlog_entry(&t, "", "");
    EXPECT_BROKEN(k, &t, "a.jsonl:3: ", "\"event\" must be a non-empty string");
    tlog_free(&t);
    tlog_init(&t);
    tlog_requests(&t, 1);
    tlog_entry(&t, "checkpoint", ",\"count\":2,\"key_id\":\"0123456789abcdef\",\"sig\":\"c2ln\"");
    EXPECT_BROKEN(k, &t, "a.jsonl:3: ", "checkpoint \"sig\" must be the base64 of a 64-byte Ed25519 signature");
    tlog_free(&t);
    tlog_init(&t);
    tlog_requests(&t, 1);
    memcpy(strstr(t.line[1], ".002Z"), ".002+", 5);
    EXPECT_BROKEN(k, &t, "a.jsonl:2: ", "\"ts\" must be an RFC 3339 UTC time with milliseconds");
    tlog_free(&t);
    /* The first line must not pretend to start the chain. */
    good_log(&t, k);
    memcpy(strstr(t.line[0], "\"prev\":\"") + 8, "1", 1);
    EXPECT_BROKEN(k, &t, "a.jsonl:1: ", "seq 1 starts the chain, so its prev must be 64 zeros");
    tlog_free(&t);
    EVP_PKEY_free(k);
}

UNIT_TEST(chain_verifier_torn_and_long_lines)
{
    EVP_PKEY *k = ed25519_key();
    struct tlog t;
    struct chain_result r;
    struct chain_verifier *v;
    char *big;

    good_log(&t, k);
    t.line[12][strlen(t.line[12]) - 1] = '\0';
    EXPECT_BROKEN(k, &t, "a.jsonl:13: ", "incomplete last line (no newline at the end)");
    t.line[12][20] = '\0';
    EXPECT_BROKEN(k, &t, "a.jsonl:13: ", "incomplete last line");
    tlog_free(&t);
    /* Longer than the cap: refused before parsing. */
    big = malloc(CHAIN_LINE_MAX + 2);
    memset(big, ' ', CHAIN_LINE_MAX + 1);
    big[CHAIN_LINE_MAX] = '\n';
    v = chain_verifier_new(NULL);
    CHECK(chain_verifier_feed(v, "big", 1, big, CHAIN_LINE_MAX + 1, 1) == -1);
    CHECK(chain_verifier_finish(v, &r) == -1);
    CHECK(has(r.error, "big:1: line is longer than 1048576 bytes"));
    chain_verifier_free(v);
    free(big);
    /* Nothing fed: no error, no entries. */
    v = chain_verifier_new(k);
    CHECK(chain_verifier_finish(v, &r) == 0 && r.entries == 0 && r.ok);
    CHECK(chain_verifier_feed(v, "late", 1, "x\n", 2, 1) == -1);
    chain_verifier_free(v);
    EVP_PKEY_free(k);
}

UNIT_TEST(chain_verifier_hostile_bytes)
{
    /* What a fuzzer would do, briefly: arbitrary bytes never crash and never reach a message raw. */
    struct chain_result r;
    uint32_t x = 12345;
    char line[300];

    for (int round = 0; round < 200; round++) {
        struct chain_verifier *v = chain_verifier_new(NULL);
        for (int l = 0; l < 5; l++) {
            size_t len = 1 + (x % 299);
            for (size_t i = 0; i < len; i++) {
                x = x * 1103515245u + 12345u;
                line[i] = (char)(x >> 16);
            }
            if (l == 0 && round % 2 == 0)
                memcpy(line, "{\"seq\":1,\"prev\":\"", len > 17 ? 17 : len);
            chain_verifier_feed(v, "fuzz", (unsigned long)l + 1, line, len, l == 4);
        }
        chain_verifier_finish(v, &r);
        for (const char *p = r.error; p != NULL && *p != '\0'; p++)
            CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p != 0x7F);
        chain_verifier_free(v);
    }
}
