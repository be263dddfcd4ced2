/*
 * policy: who may do what. A team entry names the credential used on its
 * behalf, the actions it may call, and optional glob patterns for job IDs and
 * subjects. Deny by default. Pure: no I/O beyond loading the file.
 */
#ifndef GW_POLICY_H
#define GW_POLICY_H

#include "buf.h"

#include <stddef.h>

struct pol_team {
    char *name;
    char *credential;
    char **allow;        /* actions, NULL-terminated */
    char **jobs;         /* glob patterns, NULL = every job */
    char **subjects;     /* glob patterns, NULL = every subject */
    char **client_certs; /* "CN=..", "DNS:..", "URI:.."; NULL = no certificate needed */
    int require_ticket;
    long rate_requests; /* 0 = no per-team rate limit */
    long rate_per_seconds;
};

struct policy {
    struct pol_team *teams; /* owned array of n */
    size_t n;
    char **auditors; /* teams that may read /audit; NULL-terminated or NULL */
};

enum pol_reason {
    POL_ALLOW = 0,
    POL_UNKNOWN_TEAM,
    POL_ACTION,
    POL_JOB,
    POL_SUBJECT,
    POL_TICKET,
    POL_CLIENT_CERT,
};
/* Stable snake_case reason for audit entries and problem bodies. */
const char *pol_reason_code(enum pol_reason r);
const char *pol_reason_text(enum pol_reason r);

struct pol_request {
    const char *action;
    const char *job_id;
    const char *sub;
    const char *ticket;       /* NULL when none was sent */
    const char *const *teams; /* from the token, in its order */
    size_t nteams;
    const char *const *cert_ids; /* "CN=..", "DNS:..", "URI:.." of the client certificate */
    size_t ncert_ids;
};

/*
 * Decide: the first team, in the token's order, whose entry allows the call.
 * *team receives that team on allow, or the first known team (NULL if none)
 * on deny; its reason is the rule that failed for that team.
 */
enum pol_reason pol_decide(const struct policy *p, const struct pol_request *r, const struct pol_team **team);
const struct pol_team *pol_find(const struct policy *p, const char *name);
int pol_is_auditor(const struct policy *p, const char *team);

/* Load and validate the policy file; messages appended to err. Caller frees *out. */
int pol_load(const char *path, struct policy **out, struct buf *err);
void pol_free(struct policy *p);

/* Whole-string glob match: '*' any run (also empty), '?' one byte. */
int pol_glob(const char *pattern, const char *s);

#endif
