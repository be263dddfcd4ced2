"""The allowed delete, end to end, and the answers the upstream can give."""
import json
import re

import gwtest


def test_allowed_delete_reaches_upstream_signed_and_exact(gw, sim, keys):
    r = gw.delete("j-bp1ready", keys.token(), headers={"X-Request-Id": "req-allowed-1"})
    assert r.status == 200, r
    body = r.json()
    assert body["job_id"] == "j-bp1ready"
    assert body["request_id"] == "req-allowed-1"
    assert re.fullmatch(r"[0-9A-F-]{36}", body["upstream_request_id"])
    assert r.header("X-Request-Id") == "req-allowed-1"
    assert r.header("Content-Type") == "application/json"

    reqs = sim.requests()
    assert len(reqs) == 1
    up = reqs[0]
    assert up["signature_valid"] is True
    assert up["method"] == "POST"
    assert up["content_type"].startswith("application/x-www-form-urlencoded")
    p = up["params"]
    assert p["Action"] == "DeleteReplicationJob"
    assert p["JobId"] == "j-bp1ready"
    assert p["Version"] == "2019-06-01"
    assert p["Format"] == "JSON"
    assert p["AccessKeyId"] == gwtest.ACCESS_KEY_ID
    assert p["SignatureMethod"] == "HMAC-SHA1"
    assert p["SignatureVersion"] == "1.0"
    assert re.fullmatch(r"[0-9a-f]{32}", p["SignatureNonce"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", p["Timestamp"])
    assert set(p) == {"Action", "JobId", "Version", "Format", "AccessKeyId", "SignatureMethod",
                      "SignatureVersion", "SignatureNonce", "Timestamp", "Signature"}
    assert up["query"] == ""
    # The job is gone at the simulator.
    assert "j-bp1ready" not in sim.jobs()

    entries = gw.audit_for("req-allowed-1")
    assert [e["event"] for e in entries] == ["decision", "outcome"]
    d, o = entries
    assert d["decision"] == "allow" and d["sub"] == "alice@example.com" and d["team"] == "migration"
    assert d["credential"] == "prod"
    assert d["access_key_id"] == "LTAI****0001"
    assert d["job_id"] == "j-bp1ready" and d["method"] == "DELETE" and d["path"] == "/jobs/j-bp1ready"
    assert d["client_ip"] == "127.0.0.1" and d["instance"] == "gw-test"
    assert o["status"] == 200 and o["result"] == "deleted" and o["upstream_status"] == 200
    assert o["upstream_request_id"] == body["upstream_request_id"]
    assert o["attempts"] == 1 and isinstance(o["duration_ms"], int)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", o["ts"])


def test_get_method_signs_query_string(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config={"upstream": {"method": "GET"}})
    r = gw.delete("j-ok1", keys.token())
    assert r.status == 200, r
    up = sim.requests()[0]
    assert up["method"] == "GET" and up["signature_valid"] is True
    assert "Signature=" in up["query"] and "JobId=j-ok1" in up["query"]


def test_security_token_is_signed_and_sent(make_gateway, sim, keys):
    sim.stop()
    import os
    creds = os.path.join(sim.folder, "sts-creds.json")
    with open(creds, "w") as f:
        json.dump({"prod": {"access_key_id": gwtest.ACCESS_KEY_ID, "access_key_secret": gwtest.ACCESS_KEY_SECRET,
                            "security_token": "CAIS-sts+token/1"}}, f)
    os.chmod(creds, 0o600)
    s2 = gwtest.Sim(sim.folder, jobs={"j-ok1": "Ready"}, credentials=creds)
    try:
        gw = make_gateway(s2.url, credentials=json.load(open(creds)))
        r = gw.delete("j-ok1", keys.token())
        assert r.status == 200, r
        up = s2.requests()[0]
        assert up["params"]["SecurityToken"] == "CAIS-sts+token/1"
        assert up["signature_valid"] is True
    finally:
        s2.stop()


def test_invalid_status_is_409(gw, sim, keys):
    r = gw.delete("j-bp1running", keys.token())
    assert r.status == 409, r
    p = r.json()
    assert r.header("Content-Type") == "application/problem+json"
    assert p["status"] == 409 and p["upstream_code"] == "ReplicationJob.InvalidStatus"
    assert p["type"] and p["title"] and p["request_id"] == r.header("X-Request-Id")
    assert p["upstream_request_id"]
    o = gw.audit_for(p["request_id"])[-1]
    assert o["result"] == "refused" and o["status"] == 409 and o["upstream_code"] == "ReplicationJob.InvalidStatus"
    assert o["upstream_status"] == 400


def test_missing_job_is_404_and_repeat_is_safe(gw, sim, keys):
    assert gw.delete("j-ok1", keys.token()).status == 200
    r = gw.delete("j-ok1", keys.token())
    assert r.status == 404, r
    assert r.json()["upstream_code"] == "InvalidJobId.NotFound"
    assert gw.audit_for(r.json()["request_id"])[-1]["result"] == "refused"


def test_credential_errors_are_502_not_the_callers_fault(make_gateway, sim, keys):
    gw = make_gateway(sim.url, credentials={"prod": {"access_key_id": gwtest.ACCESS_KEY_ID,
                                                     "access_key_secret": "wrong-secret-wrong-secret"}})
    r = gw.delete("j-ok1", keys.token())
    assert r.status == 502, r
    assert r.json()["upstream_code"] == "SignatureDoesNotMatch"
    assert len(sim.requests()) == 1  # not retried: a retry cannot fix a signature
    gw2 = make_gateway(sim.url, credentials={"prod": {"access_key_id": "LTAIunknownKey000009",
                                                      "access_key_secret": "x" * 30}})
    r = gw2.delete("j-ok1", keys.token())
    assert r.status == 502 and r.json()["upstream_code"] == "InvalidAccessKeyId.NotFound"
