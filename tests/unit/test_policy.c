/* Policy matching, globbing and policy-file validation. */
#include "policy.h"
#include "unit.h"

UNIT_TEST(policy_glob)
{
    CHECK(pol_glob("j-bp1*", "j-bp1abc"));
    CHECK(pol_glob("j-bp1*", "j-bp1"));
    CHECK(!pol_glob("j-bp1*", "j-bp2abc"));
    CHECK(pol_glob("j-?", "j-a"));
    CHECK(!pol_glob("j-?", "j-ab"));
    CHECK(pol_glob("*", ""));
    CHECK(pol_glob("a*b*c", "aXXbYYc"));
    CHECK(!pol_glob("a*b*c", "aXXbYY"));
    CHECK(pol_glob("svc-*", "svc-deployer"));
    CHECK(!pol_glob("alice@example.com", "alice@example.com.evil"));
    CHECK(pol_glob("*@example.com", "bob@example.com"));
}

static struct policy *load(const char *text, struct buf *err)
{
    struct policy *p = NULL;

    buf_reset(err);
    pol_load(unit_file("policy.json", text, 0644), &p, err);
    return p;
}

UNIT_TEST(policy_decide)
{
    struct buf err;
    struct policy *p;
    const struct pol_team *t;
    const char *teams1[] = {"migration"};
    const char *teams2[] = {"nobody", "ops", "migration"};
    struct pol_request r = {"DeleteReplicationJob", "j-bp1x", "alice@example.com", NULL, teams1, 1, NULL, 0};

    buf_init(&err, 8192);
    p = load("{\"teams\":{"
             "\"migration\":{\"credential\":\"prod\",\"allow\":[\"DeleteReplicationJob\"],\"jobs\":[\"j-bp1*\","
             "\"j-bp2abcdef\"],\"subjects\":[\"alice@example.com\",\"svc-*\"]},"
             "\"ops\":{\"credential\":\"prod\",\"allow\":[\"DeleteReplicationJob\"],\"require_ticket\":true},"
             "\"empty\":{\"credential\":\"prod\",\"allow\":[\"DeleteReplicationJob\"],\"jobs\":[]}},"
             "\"auditors\":[\"ops\"]}",
             &err);
    CHECK(p != NULL);
    if (p == NULL) {
        fprintf(stderr, "%s", err.p);
        buf_free(&err);
        return;
    }
    CHECK_INT(pol_decide(p, &r, &t), POL_ALLOW);
    CHECK_STR(t->name, "migration");
    r.job_id = "j-bp3x";
    CHECK_INT(pol_decide(p, &r, &t), POL_JOB);
    r.job_id = "j-bp2abcdef";
    r.sub = "mallory@example.com";
    CHECK_INT(pol_decide(p, &r, &t), POL_SUBJECT);
    r.sub = "svc-x";
    r.action = "DeleteSourceServer";
    CHECK_INT(pol_decide(p, &r, &t), POL_ACTION);
    r.action = "DeleteReplicationJob";
    /* Several teams: the first that allows wins; unknown ones are skipped. */
    r.teams = teams2;
    r.nteams = 3;
    r.job_id = "j-zzz";
    CHECK_INT(pol_decide(p, &r, &t), POL_TICKET); /* ops needs a ticket, migration does not cover j-zzz */
    CHECK_STR(t->name, "ops");
    r.ticket = "CHG-1";
    CHECK_INT(pol_decide(p, &r, &t), POL_ALLOW);
    CHECK_STR(t->name, "ops");
    r.nteams = 1;
    CHECK_INT(pol_decide(p, &r, &t), POL_UNKNOWN_TEAM);
    CHECK(t == NULL);
    r.nteams = 0;
    CHECK_INT(pol_decide(p, &r, &t), POL_UNKNOWN_TEAM);
    /* "jobs": [] covers no job at all. */
    {
        const char *te[] = {"empty"};
        struct pol_request r2 = {"DeleteReplicationJob", "j-1", "a", NULL, te, 1, NULL, 0};
        CHECK_INT(pol_decide(p, &r2, &t), POL_JOB);
    }
    CHECK(pol_is_auditor(p, "ops"));
    CHECK(!pol_is_auditor(p, "migration"));
    pol_free(p);
    buf_free(&err);
}

UNIT_TEST(policy_validation_names_file_and_key)
{
    struct buf err;
    struct policy *p;

    buf_init(&err, 8192);
    p = load("{\"teams\":{\"a\":{\"credential\":\"prod\",\"allow\":[\"DeleteEverything\"],\"jobz\":[]}}}", &err);
    CHECK(p == NULL);
    CHECK(strstr(err.p, "policy.json: teams.a.allow[0]: unknown action") != NULL);
    CHECK(strstr(err.p, "policy.json: teams.a.jobz: unknown key") != NULL);
    p = load("{\"teams\":{\"a\":{\"allow\":[\"DeleteReplicationJob\"],\"jobs\":\"j-*\"}}}", &err);
    CHECK(p == NULL);
    CHECK(strstr(err.p, "teams.a.credential: is required") != NULL);
    CHECK(strstr(err.p, "teams.a.jobs: must be an array of strings") != NULL);
    p = load("{\"teams\":{},\"auditors\":[\"ghost\"]}", &err);
    CHECK(p == NULL);
    CHECK(strstr(err.p, "auditors: team \"ghost\" is not defined") != NULL);
    p = load("{\"teams\":{\"a\":{}},\"teams\":{}}", &err);
    CHECK(p == NULL);
    CHECK(strstr(err.p, "invalid JSON") != NULL);
    p = load("{\"teams\":{\"a\":{\"credential\":\"p\",\"allow\":[\"DeleteReplicationJob\"],"
             "\"client_certs\":[\"O=x\"],\"rate_limit\":{\"requests\":0}}}}",
             &err);
    CHECK(p == NULL);
    CHECK(strstr(err.p, "teams.a.client_certs[0]: must start with") != NULL);
    CHECK(strstr(err.p, "teams.a.rate_limit.requests: must be an integer") != NULL);
    buf_free(&err);
}
