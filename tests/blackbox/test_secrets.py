"""Secrets, tokens and signatures never show up in logs, audit entries or
error bodies; the process cannot dump core."""
import gwtest


def test_no_secret_token_or_signature_anywhere(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config={"log_level": "debug"})
    good = keys.token()
    bad = keys.token(key=keys.rsa2)
    bodies = []
    bodies.append(gw.delete("j-ok1", good).body)
    bodies.append(gw.delete("j-ok1", good).body)            # 404 from upstream
    bodies.append(gw.delete("j-bp1running", good).body)     # 409
    bodies.append(gw.delete("j-ok1", bad).body)             # 401
    sim.fault(mode="error", status=400, code="SignatureDoesNotMatch", count=1)
    bodies.append(gw.delete("j-bp1ready", good).body)       # 502
    signatures = [r["params"]["Signature"] for r in sim.requests()]
    assert signatures
    assert gw.stop() == 0
    log = gw.log()
    audit = open(gw.audit_file).read()
    for text in [log, audit] + [b.decode() for b in bodies]:
        assert gwtest.ACCESS_KEY_SECRET not in text
        assert good not in text and good.split(".")[2] not in text
        assert bad not in text and bad.split(".")[2] not in text
        for s in signatures:
            assert s not in text
        assert gwtest.ACCESS_KEY_ID not in text  # only the masked form


def test_core_dumps_disabled(gw):
    limits = open("/proc/%d/limits" % gw.proc.pid).read()
    line = [l for l in limits.splitlines() if l.startswith("Max core file size")][0]
    assert line.split()[4:6] == ["0", "0"], line
