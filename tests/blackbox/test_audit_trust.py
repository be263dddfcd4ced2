"""The audit trail auditors can trust: signed checkpoints, every kind of
tampering detected by `smc-gateway-audit verify` on a log the gateway wrote,
crash safety, fail-closed on a full disk with recovery, rotation that keeps
the chain, and GET /audit for the policy's auditors."""
import concurrent.futures
import copy
import json
import os
import signal
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import gwtest

AUDIT_TOOL = os.path.join(gwtest.BUILD, "smc-gateway-audit")

POLICY = copy.deepcopy(gwtest.DEFAULT_POLICY)
POLICY["teams"]["audit-team"] = {"credential": "prod", "allow": []}
POLICY["auditors"] = ["audit-team"]


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory):
    d = tmp_path_factory.mktemp("sign")
    key = ed25519.Ed25519PrivateKey.generate()
    priv = d / "audit.key"
    pub = d / "audit.pub.pem"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(priv, 0o600)
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(priv), str(pub)


def verify(pub, *files):
    p = subprocess.run([AUDIT_TOOL, "verify", "--pubkey", pub] + list(files), capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def signed_gateway(make_gateway, sim, signing_key, every=5, **audit):
    a = {"signing_key_file": signing_key[0], "checkpoint_every": every}
    a.update(audit)
    return make_gateway(sim.url, policy=POLICY, config={"audit": a})


def mixed_run(gw, keys, n=6):
    for i in range(n):
        gw.delete("j-ok%d" % i, keys.token())
    gw.delete("j-bp1running", keys.token())
    gw.delete("j-ok1", None)
    gw.delete("j-bp3x", keys.token())


def test_checkpoints_seal_a_mixed_run(make_gateway, sim, keys, signing_key):
    gw = signed_gateway(make_gateway, sim, signing_key)
    mixed_run(gw, keys)
    assert gw.stop() == 0
    lines = open(gw.audit_file, "rb").read().splitlines(keepends=True)
    cps = [json.loads(l) for l in lines if b'"event":"checkpoint"' in l]
    assert len(cps) >= 3
    # The shutdown checkpoint seals the whole log.
    assert json.loads(lines[-1])["event"] == "checkpoint"
    rc, out = verify(signing_key[1], gw.audit_file)
    assert rc == 0, out
    assert out.startswith("OK %d entries, sealed through seq %d" % (len(lines), len(lines))), out
    # Signature format: Ed25519 over smc-gateway-audit-v1|instance|seq|prev.
    pub = serialization.load_pem_public_key(open(signing_key[1], "rb").read())
    import base64
    cp = cps[0]
    msg = ("smc-gateway-audit-v1|%s|%d|%s" % (cp["instance"], cp["seq"], cp["prev"])).encode()
    pub.verify(base64.b64decode(cp["sig"]), msg)  # raises on a bad signature


def tamper_and_verify(path, pub, mutate):
    lines = open(path, "rb").read().splitlines(keepends=True)
    lines = mutate(lines)
    bad = path + ".tampered"
    with open(bad, "wb") as f:
        f.writelines(lines)
    return verify(pub, bad)


def test_every_kind_of_tampering_is_detected(make_gateway, sim, keys, signing_key):
    gw = signed_gateway(make_gateway, sim, signing_key)
    mixed_run(gw, keys)
    assert gw.stop() == 0
    pub = signing_key[1]

    def edit(lines):
        lines[3] = lines[3].replace(b'"alice@example.com"', b'"mallory@exampl.com"', 1)
        return lines

    def delete(lines):
        del lines[4]
        return lines

    def swap(lines):
        lines[2], lines[3] = lines[3], lines[2]
        return lines

    def insert(lines):
        forged = json.loads(lines[2])
        forged["request_id"] = "forged"
        return lines[:3] + [json.dumps(forged, separators=(",", ":")).encode() + b"\n"] + lines[3:]

    def rewrite(lines):
        # Change an entry and recompute every hash after it: the chain holds,
        # but the checkpoints' signatures no longer match.
        import hashlib
        out = []
        prev = "0" * 64
        for i, l in enumerate(lines):
            e = json.loads(l)
            if i == 2:
                e["job_id"] = "j-other"
            e["prev"] = prev
            nl = json.dumps(e, separators=(",", ":")).encode() + b"\n"
            out.append(nl)
            prev = hashlib.sha256(nl).hexdigest()
        return out

    def torn(lines):
        lines[-1] = lines[-1][:-10]
        return lines

    for name, fn, why in [("edit", edit, "was changed"), ("delete", delete, "missing"),
                          ("swap", swap, "reordered"), ("insert", insert, "inserted"),
                          ("rewrite", rewrite, "signature does not verify"), ("torn", torn, "incomplete")]:
        rc, out = tamper_and_verify(gw.audit_file, pub, fn)
        assert rc == 1, (name, out)
        assert ".tampered:" in out and why in out, (name, out)


def test_rotation_by_size_and_by_signal_keep_the_chain(make_gateway, sim, keys, signing_key, workdir):
    gw = signed_gateway(make_gateway, sim, signing_key, rotate_bytes=4096)
    for i in range(12):
        assert gw.delete("j-ok%d" % i, keys.token()).status in (200, 404)
    # logrotate-style: move the file away, then SIGUSR1 makes the gateway reopen.
    os.rename(gw.audit_file, gw.audit_file + ".logrotated")
    gw.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.3)
    for i in range(3):
        gw.delete("j-ok%d" % (100 + i), keys.token())
    assert gw.stop() == 0
    rotated = sorted((f for f in os.listdir(workdir) if f.startswith("audit-") and f.endswith(".jsonl")),
                     key=lambda f: int(f.rsplit("-", 1)[1].split(".")[0]))
    assert len(rotated) >= 2, os.listdir(workdir)
    files = [os.path.join(workdir, f) for f in rotated] + [gw.audit_file + ".logrotated", gw.audit_file]
    rc, out = verify(signing_key[1], *files)
    assert rc == 0, out
    assert "sealed through" in out
    # Every file but the current one ends with a checkpoint written before the switch.
    for f in files[:-1]:
        last = open(f, "rb").read().splitlines()[-1]
        assert json.loads(last)["event"] == "checkpoint", f
    # A missing middle file shows as a gap.
    rc, out = verify(signing_key[1], files[0], *files[2:])
    assert rc == 1 and "missing" in out, out


def test_torn_line_from_a_crash_is_moved_aside_and_recorded(make_gateway, sim, keys, signing_key):
    gw = signed_gateway(make_gateway, sim, signing_key)
    gw.delete("j-ok1", keys.token())
    assert gw.stop() == 0
    with open(gw.audit_file, "ab") as f:
        f.write(b'{"seq":99,"prev":"abc","ts":"torn')
    gw.start()
    gw.delete("j-ok2", keys.token())
    assert gw.stop() == 0
    torn = open(gw.audit_file + ".torn", "rb").read()
    assert b'"ts":"torn' in torn
    entries = gw.audit()
    rec = [e for e in entries if e["event"] == "recovery"]
    assert len(rec) == 1 and rec[0]["torn_bytes"] == len(b'{"seq":99,"prev":"abc","ts":"torn')
    rc, out = verify(signing_key[1], gw.audit_file)
    assert rc == 0, out


def test_kill_9_under_load_then_restart(make_gateway, workdir, keys, signing_key):
    sim = gwtest.Sim(workdir, all_jobs=True)
    try:
        gw = signed_gateway(make_gateway, sim, signing_key, every=50)
        sim.fault(mode="delay", delay_ms=20, count=-1)

        def worker(k):
            for i in range(200):
                try:
                    gw.delete("j-okload%dx%d" % (k, i), keys.token(), timeout=5)
                except Exception:
                    return

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            futs = [ex.submit(worker, k) for k in range(8)]
            time.sleep(1.5)
            gw.proc.send_signal(signal.SIGKILL)
            gw.proc.wait()
            for f in futs:
                f.result()
        seen = {r["params"]["JobId"] for r in sim.requests() if "JobId" in r["params"]}
        assert len(seen) > 20
        gw.start()
        assert gw.delete("j-okafterrestart", keys.token()).status == 200
        assert gw.stop() == 0
        rc, out = verify(signing_key[1], gw.audit_file)
        assert rc == 0, out
        allowed = {e["job_id"] for e in gw.audit() if e["event"] == "decision" and e.get("decision") == "allow"}
        # Durable before forwarding: every job the upstream saw has its decision entry.
        assert seen <= allowed, sorted(seen - allowed)[:5]
    finally:
        sim.stop()


@pytest.fixture
def small_fs(workdir):
    mnt = os.path.join(workdir, "fs")
    os.mkdir(mnt)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", mnt])


def test_full_disk_is_503_then_recovers(make_gateway, sim, keys, small_fs):
    audit = os.path.join(small_fs, "audit.jsonl")
    gw = make_gateway(sim.url, config={"audit": {"file": audit}})
    assert gw.delete("j-ok1", keys.token()).status == 200
    filler = os.path.join(small_fs, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"x" * 4096) > 0:
            pass
    except OSError:
        pass
    os.close(fd)
    # The file's last page may still have room: write until the disk refuses.
    statuses = []
    for _ in range(60):
        statuses.append(gw.delete("j-ok1", keys.token()).status)
        if statuses[-1] == 503:
            break
    assert statuses[-1] == 503, statuses
    seen = len(sim.requests())
    for _ in range(3):
        r = gw.delete("j-bp1ready", keys.token())
        assert r.status == 503 and "Nothing was forwarded" in r.json()["detail"]
    assert len(sim.requests()) == seen  # nothing forwarded while the log cannot record
    r = gwtest.request(gw.port, "GET", "/readyz")
    assert r.status == 503 and "audit" in r.json()["reason"]
    os.unlink(filler)
    end = time.time() + 5
    while time.time() < end and gwtest.request(gw.port, "GET", "/readyz").status != 200:
        time.sleep(0.2)
    r = gw.delete("j-bp1ready", keys.token())
    assert r.status == 200, r
    assert gw.stop() == 0
    entries = [json.loads(l) for l in open(audit, "rb").read().splitlines()]
    assert any(e["event"] == "recovery" for e in entries)
    assert gwtest.verify_chain(open(audit, "rb").read()) == len(entries)


def test_audit_endpoint_for_auditors_only(make_gateway, sim, keys):
    gw = make_gateway(sim.url, policy=POLICY)
    for i in range(5):
        gw.delete("j-ok%d" % i, keys.token())
    gw.delete("j-bp1running", keys.token())
    gw.delete("j-bp3x", keys.token(sub="svc-x"))
    auditor = keys.token(team="audit-team", sub="auditor@example.com")
    h = {"Authorization": "Bearer " + auditor}

    r = gwtest.request(gw.port, "GET", "/audit", headers={"Authorization": "Bearer " + keys.token()})
    assert r.status == 403, r
    r = gwtest.request(gw.port, "GET", "/audit")
    assert r.status == 401

    r = gwtest.request(gw.port, "GET", "/audit?limit=3", headers=h)
    assert r.status == 200, r
    page = r.json()
    assert len(page["entries"]) == 3 and page["next_cursor"]
    seqs = [e["seq"] for e in page["entries"]]
    assert seqs == sorted(seqs, reverse=True)
    r = gwtest.request(gw.port, "GET", "/audit?limit=3&cursor=" + page["next_cursor"], headers=h)
    page2 = r.json()
    assert all(e["seq"] < seqs[-1] for e in page2["entries"])

    r = gwtest.request(gw.port, "GET", "/audit?decision=deny&sub=svc-x", headers=h)
    es = r.json()["entries"]
    assert len(es) == 1 and es[0]["reason"] == "job_not_allowed"
    r = gwtest.request(gw.port, "GET", "/audit?job=j-bp1running&result=refused", headers=h)
    assert [e["status"] for e in r.json()["entries"]] == [409]
    r = gwtest.request(gw.port, "GET", "/audit?since=2999-01-01T00:00:00Z", headers=h)
    assert r.json() == {"entries": [], "next_cursor": None}
    for bad in ["/audit?limit=1001", "/audit?color=red", "/audit?since=yesterday", "/audit?decision=maybe"]:
        assert gwtest.request(gw.port, "GET", bad, headers=h).status == 400, bad
    assert gwtest.request(gw.port, "POST", "/audit", headers=h).status == 405
    # Every read is itself audited, with who and which filters.
    reads = [e for e in gw.audit() if e["event"] == "audit_read"]
    assert len(reads) >= 5
    assert reads[0]["sub"] == "auditor@example.com" and reads[0]["team"] == "audit-team"
    assert any(e.get("filters") == "decision=deny&sub=svc-x" for e in reads)
