/*
 * fuzz_creds: the credentials file through creds_load, served from a memfd
 * set to mode 0600 (creds_load refuses a file others may read, and a memfd
 * starts out 0777). The ALIBABA_CLOUD_* variables are set and captured at
 * start, so the "default" entry they provide is merged as in production.
 * Checked: every loaded entry has a name, a key ID of the allowed characters
 * and a secret; the masked key ID shows at most its first and last four
 * characters; and the messages of a refused file do not depend on the
 * secret values in it (nor quote the one from the environment).
 */
#include "creds.h"

#include "fuzz_util.h"

#include <jansson.h>

static struct fuzz_file creds_file;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tEnvFuzz000000001", 1);
    setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-fuzz-secret", 1);
    setenv("ALIBABA_CLOUD_SECURITY_TOKEN", "env-fuzz-sts-token", 1);
    creds_capture_env();
    /* The values are wiped from the environment once captured. */
    FUZZ_CHECK(getenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET") == NULL);
    fuzz_file_open(&creds_file, "fuzz-creds", 0600);
    return 0;
}

static int id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

/* The messages creds_load gives for text (its result freed). */
static char *messages(const char *text)
{
    struct creds *c = NULL;
    struct buf err;
    char *m;

    fuzz_file_set(&creds_file, text, strlen(text));
    buf_init(&err, 65536);
    creds_load(creds_file.path, &c, &err);
    creds_free(c);
    m = buf_take(&err);
    return m;
}

/*
 * Messages must not depend on the secrets: load the input again (as jansson
 * writes it) with every secret value replaced by another of the same length,
 * and compare. Only for inputs that parse, since a syntax error's position
 * is the only thing messages say about the layout.
 */
static void check_secrets_unquoted(const uint8_t *data, size_t size)
{
    static const char *const secret_keys[] = {"access_key_secret", "security_token"};
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL), *entry;
    const char *name;
    char *orig, *changed, *m1, *m2;

    if (!json_is_object(root)) {
        json_decref(root);
        return;
    }
    orig = json_dumps(root, JSON_PRESERVE_ORDER);
    json_object_foreach(root, name, entry)
    {
        for (size_t k = 0; k < 2; k++) {
            json_t *v = json_object_get(entry, secret_keys[k]);
            char *other;
            if (!json_is_string(v))
                continue;
            other = fuzz_dup(json_string_value(v), json_string_length(v), 1);
            for (size_t i = 0; i < json_string_length(v); i++)
                other[i] = json_string_value(v)[i] == 'Q' ? 'R' : 'Q';
            json_object_set_new(entry, secret_keys[k], json_stringn(other, json_string_length(v)));
            free(other);
        }
    }
    changed = json_dumps(root, JSON_PRESERVE_ORDER);
    FUZZ_CHECK(orig != NULL && changed != NULL);
    m1 = messages(orig);
    m2 = messages(changed);
    if (strcmp(m1, m2) != 0) {
        fprintf(stderr, "creds: messages depend on the secret values:\n%s---\n%s", m1, m2);
        abort();
    }
    free(m1);
    free(m2);
    free(orig);
    free(changed);
    json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct creds *c = NULL;
    struct buf err;

    fuzz_file_set(&creds_file, data, size);
    buf_init(&err, 65536);
    if (creds_load(creds_file.path, &c, &err) != 0) {
        FUZZ_SAY("creds: refused\n%s", err.p ? err.p : "");
        FUZZ_CHECK(c == NULL && err.len > 0);
        goto out;
    }
    FUZZ_CHECK(c != NULL);
    FUZZ_SAY("creds: %zu entries\n", c->n);
    FUZZ_CHECK(creds_find(c, "default") != NULL);
    for (size_t i = 0; i < c->n; i++) {
        const struct cred *cr = &c->v[i];
        char masked[64];
        size_t n;
        FUZZ_CHECK(cr->name != NULL && cr->access_key_id != NULL && cr->secret != NULL);
        FUZZ_CHECK(creds_find(c, cr->name) != NULL);
        for (const char *p = cr->access_key_id; *p != '\0'; p++)
            FUZZ_CHECK(id_char(*p));
        creds_mask(cr->access_key_id, masked, sizeof(masked));
        n = strlen(cr->access_key_id);
        if (n >= 12) {
            FUZZ_CHECK(strlen(masked) == 12 && memcmp(masked, cr->access_key_id, 4) == 0 &&
                       memcmp(masked + 4, "****", 4) == 0 && memcmp(masked + 8, cr->access_key_id + n - 4, 4) == 0);
        } else {
            FUZZ_CHECK(strcmp(masked, "****") == 0);
        }
    }
    creds_free(c);
out:
    /* Refusals name the file and keys, never a secret: not the one from the
     * environment (unless the input holds the same text) ... */
    if (err.p != NULL && memmem(data, size, "env-fuzz-secret", 15) == NULL)
        FUZZ_CHECK(strstr(err.p, "env-fuzz-secret") == NULL);
    buf_free(&err);
    /* ... nor those of the file. */
    check_secrets_unquoted(data, size);
    return 0;
}
