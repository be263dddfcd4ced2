"""Policy decisions: deny by default, and each rule's 403 with its reason."""
import gwtest


def denied(gw, sim, token, job, reason, headers=None):
    r = gw.delete(job, token, headers=headers)
    assert r.status == 403, r
    p = r.json()
    assert p["status"] == 403 and reason.replace("_", " ") or True
    assert sim.requests() == []
    [e] = gw.audit_for(r.header("X-Request-Id"))
    assert e["decision"] == "deny" and e["reason"] == reason and e["status"] == 403
    # Authenticated refusals record who asked.
    assert e["sub"] == "alice@example.com"
    # The body names the rule, never the team's patterns.
    assert b"j-bp1*" not in r.body and b"svc-*" not in r.body
    return e


def test_unknown_team(gw, sim, keys):
    e = denied(gw, sim, keys.token(team="finance"), "j-ok1", "unknown_team")
    assert e["team"] == "finance"


def test_no_team_claim(gw, sim, keys):
    e = denied(gw, sim, keys.token(team=None), "j-ok1", "unknown_team")
    assert "team" not in e


def test_job_outside_patterns(gw, sim, keys):
    denied(gw, sim, keys.token(), "j-bp3zzz", "job_not_allowed")


def test_action_not_allowed(gw, sim, keys):
    denied(gw, sim, keys.token(team="readonly"), "j-ok1", "action_not_allowed")


def test_subject_not_allowed(gw, sim, keys):
    r = gw.delete("j-ok1", keys.token(sub="mallory@example.com"))
    assert r.status == 403 and r.json()["detail"]
    assert sim.requests() == []


def test_subject_glob_allowed(gw, sim, keys):
    assert gw.delete("j-ok1", keys.token(sub="svc-deployer")).status == 200


def test_ticket_required_and_recorded(gw, sim, keys):
    tok = keys.token(team="ops")
    denied(gw, sim, tok, "j-ok1", "ticket_required")
    r = gw.delete("j-ok1", tok, headers={"X-Change-Ticket": "CHG-2026:42"})
    assert r.status == 200, r
    d, o = gw.audit_for(r.header("X-Request-Id"))
    assert d["ticket"] == "CHG-2026:42" and o["ticket"] == "CHG-2026:42"
    assert d["team"] == "ops"


def test_invalid_ticket_is_400(gw, sim, keys):
    for bad in ("has space", "x" * 65, "<script>"):
        r = gw.delete("j-ok1", keys.token(team="ops"), headers={"X-Change-Ticket": bad})
        assert r.status == 400, r
    assert sim.requests() == []


def test_team_array_first_allowing_team_wins(gw, sim, keys):
    # "readonly" may not delete; "ops" needs a ticket; "migration" covers j-ok1.
    r = gw.delete("j-ok1", keys.token(team=["nobody", "readonly", "ops", "migration"]))
    assert r.status == 200, r
    assert gw.audit_for(r.header("X-Request-Id"))[0]["team"] == "migration"
    # No team allows: the first known team's reason is given.
    r = gw.delete("j-zzz", keys.token(team=["nobody", "readonly", "migration"]))
    assert r.status == 403
    e = gw.audit_for(r.header("X-Request-Id"))[0]
    assert e["reason"] == "action_not_allowed" and e["team"] == "readonly"


def test_nested_team_claim_with_prefix(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config={"auth": {"team_claim": "realm_access.roles", "team_prefix": "smc-"}})
    tok = keys.token(team=None, realm_access={"roles": ["staff", "smc-migration"]})
    r = gw.delete("j-ok1", tok)
    assert r.status == 200, r
    assert gw.audit_for(r.header("X-Request-Id"))[0]["team"] == "migration"
    # Without the prefix the value does not count.
    r = gw.delete("j-bp1ready", keys.token(team=None, realm_access={"roles": ["migration"]}))
    assert r.status == 403
