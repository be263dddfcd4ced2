/*
 * chain: the smc-gateway-audit-v1 format (see chain.h): hashing, checkpoint
 * messages and Ed25519 signatures, key loading, and the streaming verifier.
 * The verifier keeps only the last accepted line's hash and position, so a
 * log of any length is checked in constant memory, and it names the first
 * broken line with the most likely cause, because that is what an auditor
 * acts on.
 */
#include "chain.h"

#include "clock.h"
#include "codec.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHAIN_KEY_FILE_MAX (64 * 1024) /* a PEM key is a few hundred bytes */
#define CHAIN_ERR_MAX (16 * 1024)      /* the first error, file name included */
#define CHAIN_FILE_NAME_MAX 4096       /* file names kept for messages */

static const char zero_prev[] = "0000000000000000000000000000000000000000000000000000000000000000";

void chain_hash(const void *line, size_t len, unsigned char out[32])
{
    codec_sha256(line, len, out);
}

int chain_message(char *out, size_t outlen, const char *instance, uint64_t seq, const char *prev_hex)
{
    int n = snprintf(out, outlen, "%s|%s|%" PRIu64 "|%s", CHAIN_FORMAT, instance, seq, prev_hex);

    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int chain_key_id(EVP_PKEY *key, char out[17])
{
    int rc = -1, len;
    unsigned char *der = NULL, md[32];

    if (key == NULL)
        goto out;
    /* i2d_PUBKEY encodes only the public half, also of a private key. */
    len = i2d_PUBKEY(key, &der);
    if (len <= 0)
        goto out;
    chain_hash(der, (size_t)len, md);
    codec_hex(out, md, 8);
    rc = 0;
out:
    OPENSSL_free(der);
    return rc;
}

static int is_ed25519(EVP_PKEY *key)
{
    return key != NULL && EVP_PKEY_is_a(key, "ED25519");
}

int chain_sign(EVP_PKEY *priv, const char *msg, char *sig_b64, size_t sig_b64_len)
{
    int rc = -1;
    EVP_MD_CTX *ctx = NULL;
    unsigned char sig[64];
    size_t siglen = sizeof(sig);

    if (!is_ed25519(priv) || sig_b64_len < CHAIN_SIG_B64_MAX)
        goto out;
    ctx = EVP_MD_CTX_new();
    /* Ed25519 is one-shot: no digest, the whole message at once. */
    if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, NULL, NULL, priv) != 1 ||
        EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)msg, strlen(msg)) != 1 || siglen != 64)
        goto out;
    codec_b64(sig_b64, sig, siglen);
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

int chain_verify_sig(EVP_PKEY *pub, const char *msg, const char *sig_b64)
{
    int ok = 0;
    EVP_MD_CTX *ctx = NULL;
    unsigned char sig[64];
    size_t b64len;

    if (!is_ed25519(pub) || msg == NULL || sig_b64 == NULL)
        goto out;
    b64len = strlen(sig_b64);
    if (b64len != CHAIN_SIG_B64_MAX - 1 || codec_b64_decode(sig, sizeof(sig), sig_b64, b64len) != 64)
        goto out;
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) != 1)
        goto out;
    ok = EVP_DigestVerify(ctx, sig, sizeof(sig), (const unsigned char *)msg, strlen(msg)) == 1;
out:
    EVP_MD_CTX_free(ctx);
    /* A failed verification leaves an error on OpenSSL's queue; it is not news. */
    ERR_clear_error();
    return ok;
}

/* The public half of key as a key of its own (DER round trip). */
static EVP_PKEY *public_half(EVP_PKEY *key)
{
    EVP_PKEY *pub = NULL;
    unsigned char *der = NULL;
    const unsigned char *p;
    int len = i2d_PUBKEY(key, &der);

    if (len > 0) {
        p = der;
        pub = d2i_PUBKEY(NULL, &p, len);
    }
    OPENSSL_free(der);
    return pub;
}

/* Parse len bytes of PEM (named name in messages): the private key
 * (want_private) or a public key, Ed25519 only. */
static EVP_PKEY *parse_key(const char *name, const char *pem, size_t len, int want_private, struct buf *err)
{
    EVP_PKEY *key = NULL, *ret = NULL;
    BIO *bio = NULL;

    if (len == 0) {
        buf_printf(err, "%s: empty file: not a PEM key\n", name);
        goto out;
    }
    if (!want_private) {
        bio = BIO_new_mem_buf(pem, (int)len);
        if (bio == NULL)
            goto out;
        key = PEM_read_bio_PUBKEY(bio, NULL, codec_no_passphrase, NULL);
        BIO_free(bio);
        bio = NULL;
    }
    if (key == NULL) {
        EVP_PKEY *priv;
        bio = BIO_new_mem_buf(pem, (int)len);
        if (bio == NULL)
            goto out;
        priv = PEM_read_bio_PrivateKey(bio, NULL, codec_no_passphrase, NULL);
        if (priv != NULL && !want_private) {
            key = public_half(priv);
            EVP_PKEY_free(priv);
        } else {
            key = priv;
        }
    }
    if (key == NULL) {
        buf_printf(err, "%s: not a PEM %s (encrypted keys are not supported)\n", name,
                   want_private ? "private key" : "public or private key");
        goto out;
    }
    if (!is_ed25519(key)) {
        buf_printf(err, "%s: not an Ed25519 key (it is %s); audit checkpoints are signed with Ed25519\n", name,
                   EVP_PKEY_get0_type_name(key) ? EVP_PKEY_get0_type_name(key) : "another type");
        goto out;
    }
    ret = key;
    key = NULL;
out:
    BIO_free(bio);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return ret;
}

EVP_PKEY *chain_private_key(const char *name, const char *pem, size_t len, struct buf *err)
{
    return parse_key(name, pem, len, 1, err);
}

EVP_PKEY *chain_load_public_key(const char *path, struct buf *err)
{
    EVP_PKEY *key = NULL;
    struct buf data;

    buf_init(&data, CHAIN_KEY_FILE_MAX);
    if (buf_read_file(&data, path) != 0) {
        if (errno == EFBIG)
            buf_printf(err, "%s: larger than %d bytes: not a PEM key\n", path, CHAIN_KEY_FILE_MAX);
        else
            buf_printf(err, "%s: cannot read: %s\n", path, strerror(errno));
        goto out;
    }
    key = parse_key(path, data.p, data.len, 0, err);
out:
    buf_wipe(&data);
    return key;
}

int chain_checkpoint_line(struct buf *out, EVP_PKEY *priv, const char *instance, uint64_t seq,
                          const unsigned char prev[32], int64_t wall_ms, uint64_t count)
{
    int rc = -1;
    size_t start = out->len;
    char prev_hex[65], msg[CHAIN_MSG_MAX], key_id[17], sig[CHAIN_SIG_B64_MAX], ts[32];

    codec_hex(prev_hex, prev, 32);
    clock_rfc3339_ms(ts, sizeof(ts), wall_ms);
    if (chain_message(msg, sizeof(msg), instance, seq, prev_hex) != 0 || chain_key_id(priv, key_id) != 0 ||
        chain_sign(priv, msg, sig, sizeof(sig)) != 0)
        goto out;
    if (buf_printf(out, "{\"seq\":%" PRIu64 ",\"prev\":\"%s\",\"ts\":\"%s\",\"instance\":", seq, prev_hex, ts) != 0 ||
        buf_json_str(out, instance, strlen(instance)) != 0 ||
        buf_printf(out, ",\"event\":\"checkpoint\",\"count\":%" PRIu64 ",\"key_id\":\"%s\",\"sig\":\"%s\"}\n", count,
                   key_id, sig) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        buf_truncate(out, start);
    return rc;
}

/* ---- the verifier ---- */

struct chain_verifier {
    EVP_PKEY *keys[CHAIN_KEYS_MAX]; /* own references */
    char key_ids[CHAIN_KEYS_MAX][17];
    size_t nkeys;
    int failed;
    int finished;
    struct buf err;          /* "FILE:LINE: why" of the first broken line */
    struct chain_result res; /* counters of the accepted lines */
    /* The last accepted line: what the next one must link to. */
    unsigned char last_hash[32];
    char last_prev[65];
    struct buf last_file;
    unsigned long last_lineno;
    int last_was_file_end;
    int have_checkpoint;
    uint64_t last_checkpoint_seq;
    /*
     * A seq that jumps ahead is a deleted line, unless the next line holds
     * the missing seq: then two lines were swapped. The verdict on the
     * jumping line waits for one more line.
     */
    int gap_pending;
    struct buf gap_file;
    unsigned long gap_lineno;
    uint64_t gap_seq;
};

/* One parsed line; strings are borrowed from root. */
struct centry {
    json_t *root;
    uint64_t seq;
    const char *prev;
    const char *instance;
    const char *event;
    int checkpoint;
    uint64_t count;
    const char *key_id;
    const char *sig;
};

struct chain_verifier *chain_verifier_new(EVP_PKEY *pub)
{
    struct chain_verifier *v = calloc(1, sizeof(*v)), *ret = NULL;

    if (v == NULL)
        goto out;
    buf_init(&v->err, CHAIN_ERR_MAX);
    buf_init(&v->last_file, CHAIN_FILE_NAME_MAX);
    buf_init(&v->gap_file, CHAIN_FILE_NAME_MAX);
    if (pub != NULL && chain_verifier_add_key(v, pub) != 0)
        goto out;
    ret = v;
    v = NULL;
out:
    chain_verifier_free(v);
    return ret;
}

int chain_verifier_add_key(struct chain_verifier *v, EVP_PKEY *pub)
{
    int rc = -1;

    if (v->nkeys >= CHAIN_KEYS_MAX || !is_ed25519(pub) || chain_key_id(pub, v->key_ids[v->nkeys]) != 0 ||
        EVP_PKEY_up_ref(pub) != 1)
        goto out;
    v->keys[v->nkeys++] = pub;
    rc = 0;
out:
    return rc;
}

void chain_verifier_free(struct chain_verifier *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->nkeys; i++)
        EVP_PKEY_free(v->keys[i]);
    buf_free(&v->err);
    buf_free(&v->last_file);
    buf_free(&v->gap_file);
    free(v);
}

/* Record the first broken line as "FILE:LINE: why". Values quoted from the
 * log must already be escaped by the caller (see esc()). */
__attribute__((format(printf, 4, 5))) static void fail(struct chain_verifier *v, const char *file, unsigned long lineno,
                                                       const char *fmt, ...)
{
    va_list ap;

    v->failed = 1;
    buf_reset(&v->err);
    /* When the message does not fit, a shorter one still must. */
    if (buf_term_str(&v->err, file, strlen(file)) != 0)
        buf_adds(&v->err, "(file name too long)");
    buf_printf(&v->err, ":%lu: ", lineno);
    va_start(ap, fmt);
    if (buf_vprintf(&v->err, fmt, ap) != 0)
        buf_adds(&v->err, "broken line (message too long)");
    va_end(ap);
}

/* Terminal-safe copy of a value from the log, at most 200 bytes of it. */
static const char *esc(struct buf *b, const char *s, size_t len)
{
    buf_init(b, 1024);
    if (buf_term_str(b, s, len > 200 ? 200 : len) != 0 || b->p == NULL)
        return "?";
    if (len > 200)
        buf_adds(b, "...");
    return b->p;
}

static int is_hex(const char *s, size_t want)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return i == want;
}

static int instance_ok(const char *s)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return i >= 1 && i <= CHAIN_INSTANCE_MAX;
}

/* Exactly the writer's form: 2026-11-28T12:03:48.421Z. */
static int ts_ok(const char *s)
{
    int64_t ms;

    return strlen(s) == 24 && s[19] == '.' && s[23] == 'Z' && s[20] >= '0' && s[20] <= '9' && s[21] >= '0' &&
           s[21] <= '9' && s[22] >= '0' && s[22] <= '9' && clock_parse_rfc3339(s, &ms) == 0;
}

static const char *str_member(json_t *o, const char *key)
{
    json_t *j = json_object_get(o, key);

    return json_is_string(j) ? json_string_value(j) : NULL;
}

/*
 * Parse and check one line on its own (no chain context). Returns 0, or -1
 * with the reason written to why (a capped buffer).
 */
static int parse_line(const char *line, size_t len, struct centry *e, struct buf *why)
{
    int rc = -1;
    json_error_t je;
    json_t *j;
    void *it;
    struct buf t;

    memset(e, 0, sizeof(*e));
    buf_init(&t, 0);
    if (len > CHAIN_LINE_MAX) {
        buf_printf(why, "line is longer than %d bytes", CHAIN_LINE_MAX);
        goto out;
    }
    if (len == 0 || line[len - 1] != '\n') {
        buf_adds(why, "incomplete last line (no newline at the end): torn by a crash, or the file was cut");
        goto out;
    }
    if (len == 1) {
        buf_adds(why, "empty line");
        goto out;
    }
    e->root = json_loadb(line, len - 1, JSON_REJECT_DUPLICATES, &je);
    if (e->root == NULL) {
        /* jansson quotes the offending input: escape it. */
        buf_printf(why, "not JSON: %s (column %d)", esc(&t, je.text, strlen(je.text)), je.column);
        goto out;
    }
    if (!json_is_object(e->root)) {
        buf_adds(why, "not a JSON object");
        goto out;
    }
    /* jansson keeps members in file order. */
    it = json_object_iter(e->root);
    if (it == NULL || strcmp(json_object_iter_key(it), "seq") != 0 ||
        (it = json_object_iter_next(e->root, it)) == NULL || strcmp(json_object_iter_key(it), "prev") != 0) {
        buf_adds(why, "not an " CHAIN_FORMAT " entry: \"seq\" and \"prev\" must be the first two members");
        goto out;
    }
    j = json_object_get(e->root, "seq");
    if (!json_is_integer(j) || json_integer_value(j) < 1) {
        buf_adds(why, "\"seq\" must be an integer >= 1");
        goto out;
    }
    e->seq = (uint64_t)json_integer_value(j);
    e->prev = str_member(e->root, "prev");
    if (e->prev == NULL || !is_hex(e->prev, 64)) {
        buf_adds(why, "\"prev\" must be 64 lowercase hex digits");
        goto out;
    }
    e->instance = str_member(e->root, "instance");
    if (e->instance == NULL || !instance_ok(e->instance)) {
        buf_adds(why, "\"instance\" must be a string of 1-64 characters A-Za-z0-9._-");
        goto out;
    }
    e->event = str_member(e->root, "event");
    if (e->event == NULL || e->event[0] == '\0') {
        buf_adds(why, "\"event\" must be a non-empty string");
        goto out;
    }
    if (str_member(e->root, "ts") == NULL || !ts_ok(str_member(e->root, "ts"))) {
        buf_adds(why, "\"ts\" must be an RFC 3339 UTC time with milliseconds (2026-11-28T12:03:48.421Z)");
        goto out;
    }
    e->checkpoint = strcmp(e->event, "checkpoint") == 0;
    if (e->checkpoint) {
        unsigned char raw[64];
        j = json_object_get(e->root, "count");
        if (!json_is_integer(j) || json_integer_value(j) < 0) {
            buf_adds(why, "checkpoint \"count\" must be an integer >= 0");
            goto out;
        }
        e->count = (uint64_t)json_integer_value(j);
        e->key_id = str_member(e->root, "key_id");
        if (e->key_id == NULL || !is_hex(e->key_id, 16)) {
            buf_adds(why, "checkpoint \"key_id\" must be 16 lowercase hex digits");
            goto out;
        }
        e->sig = str_member(e->root, "sig");
        if (e->sig == NULL || strlen(e->sig) != CHAIN_SIG_B64_MAX - 1 ||
            codec_b64_decode(raw, sizeof(raw), e->sig, strlen(e->sig)) != 64) {
            buf_adds(why, "checkpoint \"sig\" must be the base64 of a 64-byte Ed25519 signature");
            goto out;
        }
    }
    rc = 0;
out:
    buf_free(&t);
    return rc;
}

/* Settle a pending gap now that the line after it is known (next may be NULL). */
static void settle_gap(struct chain_verifier *v, const struct centry *next, const char *next_file,
                       unsigned long next_lineno)
{
    uint64_t want = v->res.last_seq + 1;
    const char *gf = v->gap_file.p ? v->gap_file.p : "-";

    v->gap_pending = 0;
    if (next != NULL && next->seq == want) {
        if (strcmp(next_file, gf) == 0)
            fail(v, gf, v->gap_lineno, "seq %" PRIu64 " comes before seq %" PRIu64 " (line %lu): lines were reordered",
                 v->gap_seq, want, next_lineno);
        else
            fail(v, gf, v->gap_lineno,
                 "seq %" PRIu64 " comes before seq %" PRIu64 " (%s line %lu): lines were reordered", v->gap_seq, want,
                 next_file, next_lineno);
    } else if (v->gap_seq == want + 1) {
        fail(v, gf, v->gap_lineno,
             "seq %" PRIu64 " follows seq %" PRIu64 ": entry seq %" PRIu64 " is missing (a line was deleted)",
             v->gap_seq, v->res.last_seq, want);
    } else {
        fail(v, gf, v->gap_lineno,
             "seq %" PRIu64 " follows seq %" PRIu64 ": entries seq %" PRIu64 "..%" PRIu64
             " are missing (lines were deleted)",
             v->gap_seq, v->res.last_seq, want, v->gap_seq - 1);
    }
}

/* The first line of the set: nothing to link to, unless it claims to start the chain. */
static int check_first(struct chain_verifier *v, const struct centry *e, const char *file, unsigned long lineno)
{
    int rc = -1;

    if (e->seq == 1 && strcmp(e->prev, zero_prev) != 0) {
        fail(v, file, lineno, "seq 1 starts the chain, so its prev must be 64 zeros");
        goto out;
    }
    if (e->seq != 1 && strcmp(e->prev, zero_prev) == 0) {
        fail(v, file, lineno, "prev is 64 zeros, which only seq 1 (the start of the chain) may have");
        goto out;
    }
    rc = 0;
out:
    return rc;
}

/*
 * Link a line to the last accepted one. Returns 0 when it links, 1 when a
 * gap was put on hold (see gap_pending), -1 when broken.
 */
static int check_link(struct chain_verifier *v, const struct centry *e, const char *file, unsigned long lineno,
                      int new_file)
{
    int rc = -1;
    uint64_t last = v->res.last_seq;
    char hex[65];
    const char *lf = v->last_file.p ? v->last_file.p : "-";
    struct buf t1, t2;

    buf_init(&t1, 0);
    buf_init(&t2, 0);
    if (strcmp(e->instance, v->res.instance) != 0) {
        fail(v, file, lineno, "instance \"%s\" differs from \"%s\" of the chain so far (mixed instances in one chain)",
             esc(&t1, e->instance, strlen(e->instance)), esc(&t2, v->res.instance, strlen(v->res.instance)));
        goto out;
    }
    if (e->seq > last + 1) {
        if (!new_file) {
            v->gap_pending = 1;
            v->gap_lineno = lineno;
            v->gap_seq = e->seq;
            buf_reset(&v->gap_file);
            if (buf_adds(&v->gap_file, file) != 0)
                buf_adds(&v->gap_file, "(file name too long)");
            rc = 1;
            goto out;
        }
        fail(v, file, lineno,
             "seq %" PRIu64 " follows seq %" PRIu64 " at the end of %s: entries seq %" PRIu64 "..%" PRIu64
             " are missing (a rotated file was deleted, or the files are not given oldest first)",
             e->seq, last, esc(&t1, lf, strlen(lf)), last + 1, e->seq - 1);
        goto out;
    }
    if (e->seq == last) {
        int same_place = strcmp(e->prev, v->last_prev) == 0;
        if (new_file)
            fail(v, file, lineno,
                 "seq %" PRIu64 " repeats the seq of the last line of %s: the files overlap, or one is given twice",
                 e->seq, esc(&t1, lf, strlen(lf)));
        else if (same_place)
            fail(v, file, lineno,
                 "seq %" PRIu64 " and prev repeat those of line %lu: line %lu or line %lu was inserted (both claim "
                 "the same place in the chain)",
                 e->seq, v->last_lineno, v->last_lineno, lineno);
        else
            fail(v, file, lineno, "seq %" PRIu64 " repeats the seq of line %lu: a line was inserted or duplicated",
                 e->seq, v->last_lineno);
        goto out;
    }
    if (e->seq < last) {
        if (new_file)
            fail(v, file, lineno,
                 "seq %" PRIu64 " after seq %" PRIu64 " at the end of %s: the files are not given oldest first, "
                 "or belong to different chains",
                 e->seq, last, esc(&t1, lf, strlen(lf)));
        else
            fail(v, file, lineno,
                 "seq %" PRIu64 " after seq %" PRIu64 " goes backwards: lines were reordered or copied", e->seq, last);
        goto out;
    }
    codec_hex(hex, v->last_hash, 32);
    if (strcmp(e->prev, hex) != 0) {
        if (new_file)
            fail(v, file, lineno,
                 "prev does not match the hash of the last line of %s (line %lu): that line was changed, or a line "
                 "was removed or inserted between the files",
                 esc(&t1, lf, strlen(lf)), v->last_lineno);
        else
            fail(v, file, lineno,
                 "prev does not match the hash of line %lu: line %lu was changed, or a line was removed or inserted "
                 "before line %lu",
                 v->last_lineno, v->last_lineno, lineno);
        goto out;
    }
    rc = 0;
out:
    buf_free(&t1);
    buf_free(&t2);
    return rc;
}

/* A checkpoint's key, signature and count. */
static int check_checkpoint(struct chain_verifier *v, const struct centry *e, const char *file, unsigned long lineno)
{
    int rc = -1;
    size_t k;
    char msg[CHAIN_MSG_MAX];
    uint64_t before;

    if (v->nkeys > 0) {
        for (k = 0; k < v->nkeys && strcmp(v->key_ids[k], e->key_id) != 0; k++)
            ;
        if (k == v->nkeys) {
            if (v->nkeys == 1)
                fail(v, file, lineno,
                     "checkpoint signed by an unknown key: key_id %s, but the given public key has key_id %s",
                     e->key_id, v->key_ids[0]);
            else
                fail(v, file, lineno, "checkpoint signed by an unknown key: key_id %s is none of the %zu given keys",
                     e->key_id, v->nkeys);
            goto out;
        }
        if (chain_message(msg, sizeof(msg), e->instance, e->seq, e->prev) != 0 ||
            !chain_verify_sig(v->keys[k], msg, e->sig)) {
            fail(v, file, lineno,
                 "checkpoint signature does not verify: entries through seq %" PRIu64
                 " were changed after they were sealed, or the checkpoint is forged",
                 e->seq - 1);
            goto out;
        }
    }
    if (v->have_checkpoint) {
        before = e->seq - v->last_checkpoint_seq - 1;
        if (e->count != before) {
            fail(v, file, lineno,
                 "checkpoint count is %" PRIu64 " but %" PRIu64 " entries follow the previous checkpoint (seq %" PRIu64
                 ")",
                 e->count, before, v->last_checkpoint_seq);
            goto out;
        }
    } else if (v->res.from_start) {
        before = e->seq - 1;
        if (e->count != before) {
            fail(v, file, lineno,
                 "checkpoint count is %" PRIu64 " but %" PRIu64 " entries precede it since the start of the chain",
                 e->count, before);
            goto out;
        }
    } else {
        /* History before first_seq is gone: the previous checkpoint is older than it. */
        before = e->seq - v->res.first_seq;
        if (e->count < before || e->count > e->seq - 1) {
            fail(v, file, lineno,
                 "checkpoint count is %" PRIu64 " but at least %" PRIu64
                 " entries precede it since the first line present (seq %" PRIu64 ")",
                 e->count, before, v->res.first_seq);
            goto out;
        }
    }
    rc = 0;
out:
    return rc;
}

int chain_verifier_feed(struct chain_verifier *v, const char *file, unsigned long lineno, const char *line, size_t len,
                        int last_in_file)
{
    int rc = -1, link = 0, new_file;
    struct centry e;
    struct buf why;

    memset(&e, 0, sizeof(e));
    buf_init(&why, 4096);
    if (v == NULL || v->failed || v->finished)
        goto out;
    if (file == NULL)
        file = "-";
    new_file =
        v->res.entries > 0 && (v->last_was_file_end || v->last_file.p == NULL || strcmp(file, v->last_file.p) != 0);
    if (parse_line(line, len, &e, &why) != 0) {
        if (v->gap_pending)
            settle_gap(v, NULL, file, lineno);
        else
            fail(v, file, lineno, "%s", why.p ? why.p : "broken line");
        goto out;
    }
    if (v->gap_pending) {
        settle_gap(v, &e, file, lineno);
        goto out;
    }
    if (v->res.entries == 0)
        link = check_first(v, &e, file, lineno);
    else
        link = check_link(v, &e, file, lineno, new_file);
    if (link < 0)
        goto out;
    if (link == 0 && e.checkpoint && check_checkpoint(v, &e, file, lineno) != 0)
        goto out;
    if (link == 1) {
        /* Held: the line is neither accepted nor refused yet. */
        rc = 0;
        goto out;
    }
    /* Accepted: it becomes the line the next one must link to. */
    if (v->res.entries == 0) {
        v->res.first_seq = e.seq;
        v->res.from_start = e.seq == 1;
        snprintf(v->res.instance, sizeof(v->res.instance), "%s", e.instance);
    }
    v->res.entries++;
    v->res.last_seq = e.seq;
    chain_hash(line, len, v->last_hash);
    memcpy(v->last_prev, e.prev, 65);
    buf_reset(&v->last_file);
    if (buf_adds(&v->last_file, file) != 0)
        buf_adds(&v->last_file, "(file name too long)");
    v->last_lineno = lineno;
    v->last_was_file_end = last_in_file;
    if (e.checkpoint) {
        v->res.checkpoints++;
        v->have_checkpoint = 1;
        v->last_checkpoint_seq = e.seq;
        if (v->nkeys > 0) {
            v->res.checkpoints_verified++;
            v->res.sealed_seq = e.seq;
        }
    }
    rc = 0;
out:
    json_decref(e.root);
    buf_free(&why);
    return rc;
}

int chain_verifier_finish(struct chain_verifier *v, struct chain_result *res)
{
    if (v->gap_pending && !v->failed)
        settle_gap(v, NULL, "", 0);
    v->finished = 1;
    *res = v->res;
    res->sigs_checked = v->nkeys > 0;
    res->ok = !v->failed;
    res->error = v->failed ? (v->err.p ? v->err.p : "broken line") : NULL;
    return v->failed ? -1 : 0;
}

static int filter_str(const json_t *e, const char *key, const char *want)
{
    const json_t *j = json_object_get(e, key);

    return want == NULL || (json_is_string(j) && strcmp(json_string_value(j), want) == 0);
}

void chain_path_stem(const char *path, char *dir, size_t dirlen, char *stem, size_t stemlen)
{
    char dirbuf[4096], basebuf[4096], *dot;

    snprintf(dirbuf, sizeof(dirbuf), "%s", path);
    snprintf(basebuf, sizeof(basebuf), "%s", path);
    snprintf(dir, dirlen, "%s", dirname(dirbuf));
    snprintf(stem, stemlen, "%s", basename(basebuf));
    dot = strrchr(stem, '.');
    if (dot != NULL && dot != stem)
        *dot = '\0';
}

void chain_rotated_name(char *out, size_t outlen, const char *path, uint64_t first_seq, time_t now)
{
    char dir[4096], stem[4096], stamp[32];
    struct tm tm;

    chain_path_stem(path, dir, sizeof(dir), stem, sizeof(stem));
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
    snprintf(out, outlen, "%s/%s-%s-%" PRIu64 ".jsonl", dir, stem, stamp, first_seq);
}

int chain_rotated_match(const char *stem, const char *name, uint64_t *first)
{
    size_t sl = strlen(stem), nl = strlen(name);
    unsigned long long n;
    char ts[32];
    int used = 0;

    if (nl < sl + 8 || strncmp(name, stem, sl) != 0 || strcmp(name + nl - 6, ".jsonl") != 0 ||
        sscanf(name + sl, "-%15[0-9T]-%llu.jsonl%n", ts, &n, &used) != 2 || (size_t)used != nl - sl)
        return 0;
    *first = n;
    return 1;
}

int chain_filter_match(const struct chain_filter *f, const json_t *e)
{
    int64_t ms;
    const json_t *ts;

    if (!filter_str(e, "instance", f->instance) || !filter_str(e, "team", f->team) || !filter_str(e, "sub", f->sub) ||
        !filter_str(e, "job_id", f->job) || !filter_str(e, "decision", f->decision) ||
        !filter_str(e, "result", f->result) || !filter_str(e, "event", f->event))
        return 0;
    if (f->has_since || f->has_until) {
        ts = json_object_get(e, "ts");
        if (!json_is_string(ts) || clock_parse_rfc3339(json_string_value(ts), &ms) != 0)
            return 0;
        if ((f->has_since && ms < f->since_ms) || (f->has_until && ms >= f->until_ms))
            return 0;
    }
    return 1;
}
