/*
 * fuzz_policy: the team policy file through pol_load (served from a memfd),
 * then, when it loads, pol_decide on a few fixed requests, with the token
 * teams both fixed and taken from the policy itself so that the per-team
 * rules (jobs and subjects globs, tickets, client certificates) run.
 */
#include "policy.h"

#include "fuzz_util.h"

static struct fuzz_file pol_file;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_file_open(&pol_file, "fuzz-policy", 0);
    return 0;
}

static void decide(const struct policy *p, const struct pol_request *r)
{
    const struct pol_team *team = (const struct pol_team *)1;
    enum pol_reason why = pol_decide(p, r, &team);

    FUZZ_SAY("policy: %s (team %s)\n", pol_reason_code(why), team ? team->name : "-");

    FUZZ_CHECK(why >= POL_ALLOW && why <= POL_CLIENT_CERT);
    FUZZ_CHECK(pol_reason_code(why) != NULL && pol_reason_text(why) != NULL);
    if (why == POL_UNKNOWN_TEAM) {
        FUZZ_CHECK(team == NULL);
        return;
    }
    /* Allow and every other refusal name a team the request carries. */
    FUZZ_CHECK(team != NULL && pol_find(p, team->name) == team);
    int carried = 0;
    for (size_t i = 0; i < r->nteams; i++)
        carried |= strcmp(r->teams[i], team->name) == 0;
    FUZZ_CHECK(carried);
    if (why == POL_ALLOW) {
        FUZZ_CHECK(team->allow != NULL);
        if (team->require_ticket)
            FUZZ_CHECK(r->ticket != NULL);
        if (team->client_certs != NULL)
            FUZZ_CHECK(r->ncert_ids > 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const fixed_teams[] = {"migration", "ops", "auditors", "", "migration"};
    static const char *const certs[] = {"CN=gw-client", "DNS:client.example.com", "URI:spiffe://example/ci"};
    static const char *const jobs[] = {"j-bp17m1vi6x21qhqk", "j-demo1", "j-x"};
    static const char *const subs[] = {"alice@example.com", "svc-deployer", ""};
    struct policy *p = NULL;
    struct buf err;
    const char **teams;

    fuzz_file_set(&pol_file, data, size);
    buf_init(&err, 65536);
    if (pol_load(pol_file.path, &p, &err) != 0) {
        FUZZ_SAY("policy: refused\n%s", err.p ? err.p : "");
        FUZZ_CHECK(p == NULL && err.len > 0);
        buf_free(&err);
        return 0;
    }
    FUZZ_CHECK(p != NULL);
    for (size_t i = 0; i < p->n; i++) {
        FUZZ_CHECK(p->teams[i].name != NULL && p->teams[i].credential != NULL);
        FUZZ_CHECK(pol_find(p, p->teams[i].name) != NULL);
    }
    for (size_t i = 0; p->auditors != NULL && p->auditors[i] != NULL; i++)
        FUZZ_CHECK(pol_is_auditor(p, p->auditors[i]) && pol_find(p, p->auditors[i]) != NULL);

    /* The policy's own teams, in reverse order, then the fixed names. */
    teams = calloc(p->n + 5, sizeof(*teams));
    FUZZ_CHECK(teams != NULL);
    for (size_t i = 0; i < p->n; i++)
        teams[i] = p->teams[p->n - 1 - i].name;
    for (size_t i = 0; i < 5; i++)
        teams[p->n + i] = fixed_teams[i];
    for (size_t k = 0; k < 3; k++) {
        struct pol_request r = {
            .action = k == 2 ? "DescribeReplicationJobs" : "DeleteReplicationJob",
            .job_id = jobs[k],
            .sub = subs[k],
            .ticket = k == 1 ? "CHG-2041" : NULL,
            .teams = teams,
            .nteams = p->n + 5,
            .cert_ids = certs,
            .ncert_ids = k,
        };
        decide(p, &r);
        r.teams = fixed_teams;
        r.nteams = 5;
        decide(p, &r);
        r.nteams = 0;
        decide(p, &r);
    }
    free(teams);
    pol_free(p);
    buf_free(&err);
    return 0;
}
