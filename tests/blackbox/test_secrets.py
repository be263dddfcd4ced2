"""Secrets, tokens and signatures never show up in logs, audit entries or
error bodies; the process cannot dump core."""
import time

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


def scan_memory(pid, needle):
    """Where needle sits in the process's writable private memory (heap, stacks)."""
    import re
    hits = []
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)", line)
            lo, hi, perm, name = int(m.group(1), 16), int(m.group(2), 16), m.group(3), m.group(4)
            # Regions of a GiB and more are sanitizer shadow, not the heap.
            if ("r" not in perm or "w" not in perm or name.startswith("/") or name in ("[vvar]", "[vsyscall]")
                    or hi - lo >= 1 << 30):
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except OSError:
                continue
            hits += [(name or "anon", hex(lo + x.start())) for x in re.finditer(re.escape(needle), data)]
    return hits


def test_the_signed_request_does_not_stay_in_memory(gw, sim, keys):
    # The form body holds the signature and nonce (and, with STS, the token):
    # the gateway wipes its own copy, and libcurl's copies are wiped when it
    # frees them (curl_global_init_mem).
    import urllib.parse
    assert gw.delete("j-ok1", keys.token()).status == 200
    assert gw.delete("j-bp1ready", keys.token()).status == 200
    time.sleep(0.3)
    for req in sim.requests():
        sig = urllib.parse.quote(req["params"]["Signature"], safe="").encode()
        assert scan_memory(gw.proc.pid, b"Signature=" + sig) == []
        assert scan_memory(gw.proc.pid, b"SignatureNonce=" + req["params"]["SignatureNonce"].encode()) == []
