/*
 * policy: loading and evaluating team policies (see policy.h).
 */
#include "policy.h"

#include "jcheck.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POL_FILE_MAX (1024 * 1024)

static const char *const known_actions[] = {"DeleteReplicationJob", NULL};

static const struct {
    const char *code, *text;
} reasons[] = {
    [POL_ALLOW] = {"allowed", "allowed"},
    [POL_UNKNOWN_TEAM] = {"unknown_team", "the token names no team known to the policy"},
    [POL_ACTION] = {"action_not_allowed", "the team may not call this action"},
    [POL_JOB] = {"job_not_allowed", "the team's policy does not cover this job"},
    [POL_SUBJECT] = {"subject_not_allowed", "the team's policy does not cover this subject"},
    [POL_TICKET] = {"ticket_required", "the team's policy requires an X-Change-Ticket header"},
    [POL_CLIENT_CERT] = {"client_cert_required", "the team's policy requires a matching client certificate"},
};

const char *pol_reason_code(enum pol_reason r)
{
    return reasons[r].code;
}

const char *pol_reason_text(enum pol_reason r)
{
    return reasons[r].text;
}

int pol_glob(const char *pat, const char *s)
{
    const char *star = NULL, *resume = NULL;

    while (*s != '\0') {
        if (*pat == '*') {
            star = pat++;
            resume = s;
        } else if (*pat == '?' || *pat == *s) {
            pat++;
            s++;
        } else if (star != NULL) {
            pat = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

static int any_glob(char *const *pats, const char *s)
{
    if (pats == NULL)
        return 1;
    for (size_t i = 0; pats[i] != NULL; i++)
        if (pol_glob(pats[i], s))
            return 1;
    return 0;
}

static int in_list(char *const *list, const char *s)
{
    for (size_t i = 0; list != NULL && list[i] != NULL; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

const struct pol_team *pol_find(const struct policy *p, const char *name)
{
    for (size_t i = 0; p != NULL && i < p->n; i++)
        if (strcmp(p->teams[i].name, name) == 0)
            return &p->teams[i];
    return NULL;
}

int pol_is_auditor(const struct policy *p, const char *team)
{
    return p != NULL && in_list(p->auditors, team);
}

static enum pol_reason decide_team(const struct pol_team *t, const struct pol_request *r)
{
    if (!in_list(t->allow, r->action))
        return POL_ACTION;
    if (!any_glob(t->jobs, r->job_id))
        return POL_JOB;
    if (!any_glob(t->subjects, r->sub))
        return POL_SUBJECT;
    if (t->require_ticket && r->ticket == NULL)
        return POL_TICKET;
    if (t->client_certs != NULL) {
        int ok = 0;
        for (size_t i = 0; i < r->ncert_ids && !ok; i++)
            ok = in_list(t->client_certs, r->cert_ids[i]);
        if (!ok)
            return POL_CLIENT_CERT;
    }
    return POL_ALLOW;
}

enum pol_reason pol_decide(const struct policy *p, const struct pol_request *r, const struct pol_team **team)
{
    enum pol_reason first = POL_UNKNOWN_TEAM;
    const struct pol_team *first_team = NULL;

    for (size_t i = 0; i < r->nteams; i++) {
        const struct pol_team *t = pol_find(p, r->teams[i]);
        enum pol_reason why;
        if (t == NULL)
            continue;
        why = decide_team(t, r);
        if (why == POL_ALLOW) {
            *team = t;
            return POL_ALLOW;
        }
        if (first_team == NULL) {
            first_team = t;
            first = why;
        }
    }
    *team = first_team;
    return first;
}

static void team_free(struct pol_team *t)
{
    free(t->name);
    free(t->credential);
    jc_strv_free(t->allow);
    jc_strv_free(t->jobs);
    jc_strv_free(t->subjects);
    jc_strv_free(t->client_certs);
}

void pol_free(struct policy *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        team_free(&p->teams[i]);
    free(p->teams);
    jc_strv_free(p->auditors);
    free(p);
}

static void load_team(struct jc *jc, const char *name, const json_t *obj, struct pol_team *t)
{
    static const char *const keys[] = {"credential",   "allow",      "jobs",        "subjects", "require_ticket",
                                       "client_certs", "rate_limit", "description", NULL};
    char path[512], p2[600];
    const json_t *rl;

    snprintf(path, sizeof(path), "teams.%s", name);
    t->name = strdup(name);
    if (!json_is_object(obj)) {
        jc_error(jc, path, "must be an object");
        return;
    }
    jc_only_keys(jc, obj, path, keys);
    jc_string(jc, obj, path, "credential", 1, &t->credential);
    /* "allow": [] is a team that may call nothing (an auditors' team). */
    if (json_object_get(obj, "allow") == NULL)
        jc_error(jc, path, "allow is required (use [] for a team that may call no action)");
    if (jc_strv(jc, obj, path, "allow", 0, &t->allow, NULL) == 0 && t->allow != NULL) {
        for (size_t i = 0; t->allow[i] != NULL; i++)
            if (!in_list((char *const *)known_actions, t->allow[i])) {
                snprintf(p2, sizeof(p2), "%s.allow[%zu]", path, i);
                jc_error(jc, p2, "unknown action \"%s\" (known: DeleteReplicationJob)", t->allow[i]);
            }
    }
    jc_strv(jc, obj, path, "jobs", 0, &t->jobs, NULL);
    jc_strv(jc, obj, path, "subjects", 0, &t->subjects, NULL);
    jc_bool(jc, obj, path, "require_ticket", &t->require_ticket);
    if (jc_strv(jc, obj, path, "client_certs", 0, &t->client_certs, NULL) == 0 && t->client_certs != NULL) {
        for (size_t i = 0; t->client_certs[i] != NULL; i++) {
            const char *c = t->client_certs[i];
            if (strncmp(c, "CN=", 3) != 0 && strncmp(c, "DNS:", 4) != 0 && strncmp(c, "URI:", 4) != 0) {
                snprintf(p2, sizeof(p2), "%s.client_certs[%zu]", path, i);
                jc_error(jc, p2, "must start with CN=, DNS: or URI:");
            }
        }
    }
    jc_path(p2, sizeof(p2), path, "rate_limit");
    rl = jc_object(jc, obj, path, "rate_limit", 0);
    if (rl != NULL) {
        static const char *const rlkeys[] = {"requests", "per_seconds", NULL};
        jc_only_keys(jc, rl, p2, rlkeys);
        if (json_object_get(rl, "requests") == NULL || json_object_get(rl, "per_seconds") == NULL)
            jc_error(jc, p2, "needs both requests and per_seconds");
        jc_int(jc, rl, p2, "requests", 1, 1000000, &t->rate_requests);
        jc_int(jc, rl, p2, "per_seconds", 1, 86400, &t->rate_per_seconds);
    }
}

int pol_load(const char *path, struct policy **out, struct buf *err)
{
    static const char *const keys[] = {"teams", "auditors", "description", NULL};
    int rc = -1;
    struct jc jc;
    json_t *root = NULL, *v;
    const json_t *teams;
    struct policy *p = NULL;
    const char *name;
    size_t i = 0;

    jc_init(&jc, path, err);
    if (jc_load_file(&jc, POL_FILE_MAX, 0, &root) != 0)
        goto out;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        goto out;
    jc_only_keys(&jc, root, "", keys);
    teams = jc_object(&jc, root, "", "teams", 1);
    if (teams != NULL) {
        p->teams = calloc(json_object_size(teams) + 1, sizeof(*p->teams));
        if (p->teams == NULL)
            goto out;
        json_object_foreach((json_t *)teams, name, v)
        {
            load_team(&jc, name, v, &p->teams[i++]);
            p->n = i;
        }
    }
    if (jc_strv(&jc, root, "", "auditors", 0, &p->auditors, NULL) == 0 && p->auditors != NULL) {
        for (i = 0; p->auditors[i] != NULL; i++)
            if (pol_find(p, p->auditors[i]) == NULL)
                jc_error(&jc, "auditors", "team \"%s\" is not defined under teams", p->auditors[i]);
    }
    if (jc.nerr > 0)
        goto out;
    *out = p;
    p = NULL;
    rc = 0;
out:
    pol_free(p);
    json_decref(root);
    return rc;
}
