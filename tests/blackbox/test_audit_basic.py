"""What the audit log holds for each kind of request, that it is chained,
that anonymous floods are bounded, and that an unwritable log stops
deletions."""
import json
import os

import gwtest


def test_chain_links_every_line(gw, sim, keys):
    gw.delete("j-ok1", keys.token())
    gw.delete("j-bp1running", keys.token())
    gw.delete("j-ok1", None)
    gw.delete("j-bad!", keys.token())
    gw.stop()
    raw = open(gw.audit_file, "rb").read()
    assert gwtest.verify_chain(raw) == 6


def test_chain_continues_across_restarts(make_gateway, sim, keys):
    gw = make_gateway(sim.url)
    gw.delete("j-ok1", keys.token())
    assert gw.stop() == 0
    gw.start()
    gw.delete("j-bp1ready", keys.token())
    assert gw.stop() == 0
    raw = open(gw.audit_file, "rb").read()
    assert gwtest.verify_chain(raw) == 4


def test_every_line_is_json_even_with_hostile_bytes(gw, sim, keys):
    out = gwtest.raw_request(gw.port, b"DELETE /jobs/j-\xff\xfe\"\\%0a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    [e] = [json.loads(l) for l in open(gw.audit_file, "rb").read().splitlines()]
    assert e["path"] == "/jobs/j-%FF%FE%22%5C%0a"


def test_anonymous_flood_is_bounded_and_summarized(gw, sim, keys):
    for i in range(60):
        r = gw.delete("j-ok1", "not-a-token" if i % 2 else None)
        assert r.status == 401
    entries = gw.audit()
    assert len(entries) == 10
    assert all(e["decision"] == "deny" for e in entries)
    # An authenticated caller is still recorded in full.
    r = gw.delete("j-ok1", keys.token())
    assert r.status == 200
    assert gw.stop() == 0
    entries = gw.audit()
    summary = [e for e in entries if e["event"] == "refusals_suppressed"]
    assert len(summary) == 1 and summary[0]["count"] == 50 and summary[0]["client_ip"] == "127.0.0.1"
    assert len(entries) == 10 + 2 + 1


def test_unwritable_audit_log_is_503_and_nothing_forwarded(make_gateway, sim, keys, workdir):
    os.symlink("/dev/full", os.path.join(workdir, "audit.jsonl"))
    gw = make_gateway(sim.url)
    r = gw.delete("j-ok1", keys.token())
    assert r.status == 503, r
    assert r.header("Content-Type") == "application/problem+json"
    assert "Nothing was forwarded" in r.json()["detail"]
    assert sim.requests() == []
    r = gw.delete("j-bp1ready", keys.token())
    assert r.status == 503
    assert sim.requests() == []
    assert "audit log" in gw.log()


def test_audit_folder_missing_refuses_to_start(make_gateway, sim, keys):
    g = gwtest.Gateway(sim.folder, keys, sim.url, config={"audit": {"file": "/nonexistent/dir/audit.jsonl"}},
                       start=False)
    rc, out = g.run_expect_exit()
    assert rc == 1
    assert "/nonexistent/dir/audit.jsonl" in out
