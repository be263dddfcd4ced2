/*
 * map: the status table of README.md, "Status mapping", in code (see map.h).
 * Upstream strings are copied only when they match a strict character set,
 * so nothing the upstream sends can inject into headers or the audit log.
 */
#include "map.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define MAP_BODY_MAX (64 * 1024)

static void copy_token(char *dst, size_t dstlen, const char *src, const char *extra)
{
    size_t n = 0;

    dst[0] = '\0';
    if (src == NULL)
        return;
    for (const char *p = src; *p != '\0'; p++) {
        char c = *p;
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr(extra, c);
        if (!ok || n + 1 >= dstlen) {
            dst[0] = '\0';
            return;
        }
        dst[n++] = c;
    }
    dst[n] = '\0';
}

static void set(struct map_result *r, int status, const char *result, const char *type, const char *title)
{
    r->status = status;
    r->result = result;
    r->type = type;
    r->title = title;
}

static void set_ambiguous(struct map_result *r)
{
    set(r, 502, "unknown", "upstream-ambiguous",
        "The upstream API received this call more than once; the job may or may not have been deleted by it");
    r->retryable = 0;
    r->throttled = 0;
}

void map_after_uncertain(struct map_result *r)
{
    if (strcmp(r->result, "refused") == 0)
        set_ambiguous(r);
}

void map_answer(enum map_transport t, long http_status, const char *body, size_t body_len, struct map_result *r)
{
    json_t *j = NULL, *v;
    const char *code;

    memset(r, 0, sizeof(*r));
    switch (t) {
    case MAP_CONNECT_FAILED:
        set(r, 502, "failed", "upstream-unreachable", "The upstream API could not be reached");
        r->retryable = 1;
        goto out;
    case MAP_CONNECT_TIMEOUT:
        set(r, 504, "failed", "upstream-timeout", "The upstream API did not accept the connection in time");
        r->retryable = 1;
        goto out;
    case MAP_TLS_FAILED:
        set(r, 502, "failed", "upstream-tls", "The upstream API's TLS identity could not be verified");
        goto out;
    case MAP_TIMEOUT_AFTER_SEND:
        set(r, 504, "unknown", "upstream-timeout",
            "The upstream API did not answer in time; the job may or may not have been deleted");
        goto out;
    case MAP_BROKEN_AFTER_SEND:
        set(r, 502, "unknown", "upstream-broken",
            "The upstream connection broke after the call was sent; the job may or may not have been deleted");
        goto out;
    case MAP_INTERNAL:
        set(r, 502, "failed", "gateway-error", "The gateway could not make the upstream call");
        goto out;
    case MAP_ANSWERED:
        break;
    }

    r->upstream_answered = 1;
    if (body != NULL && body_len > 0 && body_len <= MAP_BODY_MAX)
        j = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, NULL);
    if (json_is_object(j)) {
        v = json_object_get(j, "RequestId");
        copy_token(r->upstream_request_id, sizeof(r->upstream_request_id), json_string_value(v), "-_.");
        v = json_object_get(j, "Code");
        copy_token(r->upstream_code, sizeof(r->upstream_code), json_string_value(v), "-_.:");
    }
    code = r->upstream_code;

    if (http_status == 200) {
        if (json_is_object(j) && r->upstream_request_id[0] != '\0' && code[0] == '\0')
            set(r, 200, "deleted", NULL, NULL);
        else
            set(r, 502, "unknown", "upstream-invalid-answer",
                "The upstream API answered 200 with a body that is not a DeleteReplicationJob result");
    } else if (!json_is_object(j) || code[0] == '\0') {
        set(r, 502, "failed", "upstream-invalid-answer", "The upstream API's answer could not be understood");
        r->retryable = http_status >= 500;
    } else if (strncmp(code, "Throttling", 10) == 0) {
        set(r, 429, "failed", "upstream-throttled", "The upstream API is throttling calls; retry later");
        r->retryable = 1;
        r->throttled = 1;
    } else if (strcmp(code, "SignatureNonceUsed") == 0) {
        /* Every attempt has a fresh 128-bit nonce: an earlier copy of this
         * very request reached the upstream (something on the way resent
         * it), and whether that copy deleted the job is not known. */
        set_ambiguous(r);
    } else if (strcmp(code, "ReplicationJob.InvalidStatus") == 0) {
        set(r, 409, "refused", "job-invalid-status", "The replication job's state does not allow deletion");
    } else if (http_status == 404 && strcmp(code, "InvalidAccessKeyId.NotFound") != 0) {
        set(r, 404, "refused", "job-not-found", "The replication job does not exist");
    } else if (http_status >= 500) {
        set(r, 502, "failed", "upstream-error", "The upstream API failed");
        r->retryable = 1;
    } else {
        /* Signature, credential and permission errors: the caller cannot fix them. */
        set(r, 502, "failed", "upstream-rejected", "The upstream API rejected the gateway's call");
    }
out:
    json_decref(j);
}
