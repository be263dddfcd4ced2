/*
 * jcheck: strict reading of JSON configuration files. Every problem is
 * reported as "FILE: KEY: what is wrong" and reading goes on, so one run of
 * --check-config lists every mistake, not just the first. Unknown keys and
 * wrong types are errors. Used by config, policy and credentials loading.
 */
#ifndef GW_JCHECK_H
#define GW_JCHECK_H

#include "buf.h"

#include <jansson.h>

struct jc {
    const char *file; /* borrowed: named in every message */
    struct buf *err;  /* borrowed: messages are appended, one per line */
    int nerr;
};

void jc_init(struct jc *jc, const char *file, struct buf *err);
void jc_error(struct jc *jc, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Read and parse file (at most max bytes, duplicate keys refused) into *out.
 * With wipe, the raw bytes are overwritten before they are freed (secrets). */
int jc_load_file(struct jc *jc, size_t max, int wipe, json_t **out);
/* Parse len bytes already read from jc's file (as jc_load_file does after
 * reading; with wipe, a parse error does not quote the text). */
int jc_parse(struct jc *jc, const char *data, size_t len, int wipe, json_t **out);

/* Child key path: "a" + "b" → "a.b" (or "b" when parent is ""). */
void jc_path(char *out, size_t outlen, const char *parent, const char *key);

/* Error for each key of obj not in the NULL-terminated list keys. */
void jc_only_keys(struct jc *jc, const json_t *obj, const char *path, const char *const *keys);

/* Typed getters: 0 when absent (and not required) or valid, -1 on error.
 * Strings are strdup'ed (caller frees); *out is left alone when absent. */
int jc_string(struct jc *jc, const json_t *obj, const char *path, const char *key, int required, char **out);
int jc_int(struct jc *jc, const json_t *obj, const char *path, const char *key, long min, long max, long *out);
int jc_bool(struct jc *jc, const json_t *obj, const char *path, const char *key, int *out);
/* An array of non-empty strings; NULL-terminated result (caller frees with jc_strv_free). */
int jc_strv(struct jc *jc, const json_t *obj, const char *path, const char *key, int required, char ***out, size_t *n);
/* The object at key (borrowed), NULL when absent or not an object (error then). */
const json_t *jc_object(struct jc *jc, const json_t *obj, const char *path, const char *key, int required);
void jc_strv_free(char **v);

#endif
