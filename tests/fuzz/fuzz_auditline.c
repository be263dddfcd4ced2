/*
 * fuzz_auditline: the audit-line parser of `smc-gateway-audit verify`, i.e.
 * the streaming verifier of chain.h, fed the input line by line (split after
 * each '\n', every line in an allocation of its own). A line that is exactly
 * "\x1e\n" (ASCII record separator) is not fed: it starts the next file, so
 * the checks across rotated files run too.
 *
 * Two verifiers see the same lines: one without a key (checkpoint syntax
 * only) and one with an Ed25519 public key, so the signature paths run. The
 * key is made from a fixed seed (FUZZ_ED25519_SEED) rather than at random, so
 * that the committed seeds (tests/fuzz/make-seeds.py) carry checkpoints that
 * verify and the fuzzer starts past them.
 *
 * Checked: the keyed verifier is never more lenient than the other; an error
 * is one terminal-safe line; the counts agree with what was fed.
 */
#include "chain.h"

#include "fuzz_util.h"

#define FUZZ_ED25519_SEED "smc-gateway fuzz audit key seed!" /* 32 bytes */

static EVP_PKEY *pub;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    EVP_PKEY *priv;
    unsigned char raw[32];
    size_t rawlen = sizeof(raw);

    (void)argc;
    (void)argv;
    priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, (const unsigned char *)FUZZ_ED25519_SEED, 32);
    FUZZ_CHECK(priv != NULL && EVP_PKEY_get_raw_public_key(priv, raw, &rawlen) == 1);
    pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, rawlen);
    FUZZ_CHECK(pub != NULL);
    EVP_PKEY_free(priv);
    return 0;
}

/* The error must be one line a terminal shows as it is: no C0 or C1 controls, no bidi or line separators, UTF-8. */
static void check_terminal_safe(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s), i = 0;

    while (i < len) {
        unsigned int cp;
        size_t n;
        if (u[i] < 0x80) {
            FUZZ_CHECK(u[i] >= 0x20 && u[i] != 0x7F);
            i++;
            continue;
        }
        n = buf_utf8_len(u + i, len - i);
        FUZZ_CHECK(n >= 2);
        cp = u[i] & (0x7F >> n);
        for (size_t k = 1; k < n; k++)
            cp = cp << 6 | (u[i + k] & 0x3F);
        FUZZ_CHECK(!(cp >= 0x80 && cp <= 0x9F) && !(cp >= 0x200B && cp <= 0x200F) && !(cp >= 0x2028 && cp <= 0x202E) &&
                   !(cp >= 0x2060 && cp <= 0x2069) && cp != 0xFEFF);
        i += n;
    }
}

static void check_result(const struct chain_result *r, int rc, uint64_t fed, int keyed)
{
    FUZZ_CHECK((rc == 0) == (r->ok == 1));
    FUZZ_CHECK(r->entries <= fed);
    FUZZ_CHECK(r->checkpoints_verified <= r->checkpoints && r->checkpoints <= r->entries);
    FUZZ_CHECK(r->sigs_checked == keyed);
    FUZZ_CHECK(memchr(r->instance, '\0', sizeof(r->instance)) != NULL);
    if (!keyed)
        FUZZ_CHECK(r->checkpoints_verified == 0 && r->sealed_seq == 0);
    if (r->entries > 0)
        FUZZ_CHECK(r->first_seq >= 1 && r->last_seq >= r->first_seq && r->instance[0] != '\0' &&
                   r->sealed_seq <= r->last_seq);
    else
        FUZZ_CHECK(r->first_seq == 0 && r->checkpoints == 0);
    if (r->ok) {
        FUZZ_CHECK(r->error == NULL);
        /* An intact chain has no gaps: one seq per accepted line. */
        if (r->entries > 0)
            FUZZ_CHECK(r->last_seq - r->first_seq + 1 == r->entries);
    } else {
        FUZZ_CHECK(r->error != NULL && r->error[0] != '\0');
        check_terminal_safe(r->error);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const files[] = {"audit.jsonl.2", "audit.jsonl.1", "audit.jsonl"};
    struct chain_verifier *plain = chain_verifier_new(NULL), *keyed = chain_verifier_new(pub);
    struct chain_result rp, rk;
    size_t off = 0, nfile = 0;
    unsigned long lineno = 0;
    uint64_t fed = 0;
    int rcp, rck;

    FUZZ_CHECK(plain != NULL && keyed != NULL);
    while (off < size) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (data + off)) + 1 : size - off;
        int last;
        char *line;

        if (len == 2 && data[off] == 0x1e) {
            nfile++;
            lineno = 0;
            off += len;
            continue;
        }
        /* The last line of a file: the input ends, or a separator follows. */
        last = off + len == size || (off + len + 2 <= size && data[off + len] == 0x1e && data[off + len + 1] == '\n');
        line = fuzz_dup(data + off, len, 0);
        lineno++;
        fed++;
        chain_verifier_feed(plain, files[nfile % 3], lineno, line, len, last);
        chain_verifier_feed(keyed, files[nfile % 3], lineno, line, len, last);
        free(line);
        off += len;
    }
    rcp = chain_verifier_finish(plain, &rp);
    rck = chain_verifier_finish(keyed, &rk);
    FUZZ_SAY("auditline: %llu lines; plain: %s; keyed: %s (%llu checkpoints verified)\n", (unsigned long long)fed,
             rp.ok ? "ok" : rp.error, rk.ok ? "ok" : rk.error, (unsigned long long)rk.checkpoints_verified);
    check_result(&rp, rcp, fed, 0);
    check_result(&rk, rck, fed, 1);
    /* A key only adds checks. */
    if (rk.ok)
        FUZZ_CHECK(rp.ok && rp.entries == rk.entries && rp.checkpoints == rk.checkpoints);
    FUZZ_CHECK(rk.entries <= rp.entries);
    /* Finished verifiers take nothing more. */
    FUZZ_CHECK(chain_verifier_feed(plain, NULL, 1, "\n", 1, 1) == -1);
    chain_verifier_free(plain);
    chain_verifier_free(keyed);
    return 0;
}
