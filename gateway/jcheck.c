/*
 * jcheck: strict JSON config reading with file-and-key error messages (see
 * jcheck.h).
 */
#include "jcheck.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jc_init(struct jc *jc, const char *file, struct buf *err)
{
    jc->file = file;
    jc->err = err;
    jc->nerr = 0;
}

void jc_error(struct jc *jc, const char *key, const char *fmt, ...)
{
    va_list ap;

    jc->nerr++;
    if (key != NULL && key[0] != '\0')
        buf_printf(jc->err, "%s: %s: ", jc->file, key);
    else
        buf_printf(jc->err, "%s: ", jc->file);
    va_start(ap, fmt);
    buf_vprintf(jc->err, fmt, ap);
    va_end(ap);
    buf_addc(jc->err, '\n');
}

int jc_load_file(struct jc *jc, size_t max, int wipe, json_t **out)
{
    int rc = -1;
    struct buf data;

    buf_init(&data, max);
    if (buf_read_file(&data, jc->file) != 0) {
        if (errno == EFBIG)
            jc_error(jc, NULL, "file is larger than %zu bytes", max);
        else
            jc_error(jc, NULL, "cannot read: %s", strerror(errno));
        goto out;
    }
    rc = jc_parse(jc, data.p, data.len, wipe, out);
out:
    if (wipe)
        buf_wipe(&data);
    else
        buf_free(&data);
    return rc;
}

int jc_parse(struct jc *jc, const char *data, size_t len, int wipe, json_t **out)
{
    int rc = -1;
    json_error_t je;

    *out = json_loadb(data ? data : "", len, JSON_REJECT_DUPLICATES, &je);
    if (*out == NULL) {
        /* je.text can quote file content; for secret files say only where. */
        if (wipe)
            jc_error(jc, NULL, "invalid JSON at line %d, column %d", je.line, je.column);
        else
            jc_error(jc, NULL, "invalid JSON at line %d, column %d: %s", je.line, je.column, je.text);
        goto out;
    }
    if (!json_is_object(*out)) {
        jc_error(jc, NULL, "the top level must be a JSON object");
        json_decref(*out);
        *out = NULL;
        goto out;
    }
    rc = 0;
out:
    return rc;
}

void jc_path(char *out, size_t outlen, const char *parent, const char *key)
{
    if (parent == NULL || parent[0] == '\0')
        snprintf(out, outlen, "%s", key);
    else
        snprintf(out, outlen, "%s.%s", parent, key);
}

void jc_only_keys(struct jc *jc, const json_t *obj, const char *path, const char *const *keys)
{
    const char *k;
    json_t *v;
    char p[512];

    json_object_foreach((json_t *)obj, k, v)
    {
        int known = 0;
        for (size_t i = 0; keys[i] != NULL && !known; i++)
            known = strcmp(keys[i], k) == 0;
        if (!known) {
            jc_path(p, sizeof(p), path, k);
            jc_error(jc, p, "unknown key");
        }
    }
}

/* A JSON string that is not empty and holds no NUL. */
static int nonempty_string(const json_t *v)
{
    return json_is_string(v) && json_string_length(v) > 0 && strlen(json_string_value(v)) == json_string_length(v);
}

int jc_string(struct jc *jc, const json_t *obj, const char *path, const char *key, int required, char **out)
{
    json_t *v = json_object_get(obj, key);
    char p[512];

    jc_path(p, sizeof(p), path, key);
    if (v == NULL) {
        if (!required)
            return 0;
        jc_error(jc, p, "is required");
        return -1;
    }
    if (!nonempty_string(v)) {
        jc_error(jc, p, "must be a non-empty string");
        return -1;
    }
    free(*out);
    *out = strdup(json_string_value(v));
    return *out ? 0 : -1;
}

int jc_int(struct jc *jc, const json_t *obj, const char *path, const char *key, long min, long max, long *out)
{
    json_t *v = json_object_get(obj, key);
    char p[512];

    if (v == NULL)
        return 0;
    jc_path(p, sizeof(p), path, key);
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        jc_error(jc, p, "must be an integer from %ld to %ld", min, max);
        return -1;
    }
    *out = (long)json_integer_value(v);
    return 0;
}

int jc_bool(struct jc *jc, const json_t *obj, const char *path, const char *key, int *out)
{
    json_t *v = json_object_get(obj, key);
    char p[512];

    if (v == NULL)
        return 0;
    if (!json_is_boolean(v)) {
        jc_path(p, sizeof(p), path, key);
        jc_error(jc, p, "must be true or false");
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

void jc_strv_free(char **v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

int jc_strv(struct jc *jc, const json_t *obj, const char *path, const char *key, int required, char ***out, size_t *n)
{
    int rc = -1;
    json_t *v = json_object_get(obj, key), *e;
    char p[512], pe[600];
    char **arr = NULL;
    size_t i;

    jc_path(p, sizeof(p), path, key);
    if (v == NULL) {
        if (required)
            jc_error(jc, p, "is required");
        else
            rc = 0;
        goto out;
    }
    if (!json_is_array(v) || (required && json_array_size(v) == 0)) {
        jc_error(jc, p, required ? "must be a non-empty array of strings" : "must be an array of strings");
        goto out;
    }
    arr = calloc(json_array_size(v) + 1, sizeof(*arr));
    if (arr == NULL)
        goto out;
    json_array_foreach(v, i, e)
    {
        if (!nonempty_string(e)) {
            snprintf(pe, sizeof(pe), "%s[%zu]", p, i);
            jc_error(jc, pe, "must be a non-empty string");
            goto out;
        }
        if ((arr[i] = strdup(json_string_value(e))) == NULL)
            goto out;
    }
    jc_strv_free(*out);
    *out = arr;
    arr = NULL;
    if (n != NULL)
        *n = json_array_size(v);
    rc = 0;
out:
    jc_strv_free(arr);
    return rc;
}

const json_t *jc_object(struct jc *jc, const json_t *obj, const char *path, const char *key, int required)
{
    json_t *v = json_object_get(obj, key);
    char p[512];

    jc_path(p, sizeof(p), path, key);
    if (v == NULL) {
        if (required)
            jc_error(jc, p, "is required");
        return NULL;
    }
    if (!json_is_object(v)) {
        jc_error(jc, p, "must be an object");
        return NULL;
    }
    return v;
}
