"""The audit writer's failure paths, driven by a fault-injection shim
(tests/fault/fault.c, preloaded): a failed fdatasync of a decision batch, of
the lazy sync of entries nobody waits for and of the recovery entry itself,
a checkpoint that cannot be written, a restart followed by a size rotation
or by a signing key added by reload, and GET /audit racing a rotation. In
every case the file the gateway leaves must verify, and what was not known
durable must be in PATH.torn, not in the chain."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

import gwtest
from test_audit_trust import AUDIT_TOOL, POLICY, signing_key, verify  # noqa: F401

SHIM = os.path.join(gwtest.BUILD, "fault.so")


@pytest.fixture
def faults(workdir):
    """env for make_gateway (the shim preloaded) and arm(name, text): set a trigger file."""
    if not os.path.exists(SHIM):
        pytest.skip("fault shim not built (make builds %s)" % SHIM)
    env = {"LD_PRELOAD": SHIM}
    for name in ("FDATASYNC", "WRITE_CP", "SLOW_OPENDIR"):
        env["FAULT_" + name] = os.path.join(workdir, "fault-" + name.lower())
    if os.environ.get("GW_SANITIZED"):
        # The shim comes before the ASan runtime in the library list.
        env["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"

    def arm(name, text=""):
        path = env["FAULT_" + name]
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)  # the shim never sees a half-written trigger

    def armed(name):
        return os.path.exists(env["FAULT_" + name])

    return env, arm, armed


def lines(path):
    return open(path, "rb").read().splitlines(keepends=True) if os.path.exists(path) else []


def entries(path):
    return [json.loads(l) for l in lines(path)]


def wait_readyz(gw, status, timeout):
    """Poll /readyz until it answers status (200 ready, 503 not)."""
    end = time.time() + timeout
    while time.time() < end:
        if gwtest.request(gw.port, "GET", "/readyz").status == status:
            return True
        time.sleep(0.05)
    return False


def wait_ready(gw, timeout=8):
    return wait_readyz(gw, 200, timeout)


def wait_unready(gw, timeout=3):
    return wait_readyz(gw, 503, timeout)


def verify_plain(*files):
    p = subprocess.run([AUDIT_TOOL, "verify"] + list(files), capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def recoveries(path):
    return [e for e in entries(path) if e["event"] == "recovery"]


def test_failed_sync_of_a_decision_moves_the_batch_aside(make_gateway, sim, keys, faults):
    env, arm, armed = faults
    gw = make_gateway(sim.url, env=env)
    assert gw.delete("j-ok1", keys.token()).status == 200
    time.sleep(0.4)  # the outcome's lazy sync is done: everything so far is durable
    size = os.path.getsize(gw.audit_file)
    arm("FDATASYNC")
    seen = len(sim.requests())
    r = gw.delete("j-ok2", keys.token())
    assert r.status == 503
    assert len(sim.requests()) == seen
    assert wait_ready(gw)
    assert gw.delete("j-bp1ready", keys.token()).status == 200
    assert gw.stop() == 0
    rc, out = verify_plain(gw.audit_file)
    assert rc == 0, out
    got = entries(gw.audit_file)
    # The refused decision is not in the chain; it is in the .torn file.
    assert not any(e.get("job_id") == "j-ok2" for e in got)
    torn = open(gw.audit_file + ".torn", "rb").read()
    assert b'"job_id":"j-ok2"' in torn
    rec = recoveries(gw.audit_file)
    assert len(rec) == 1
    assert rec[0]["torn_bytes"] == len(torn) - 1 and "moved aside" in rec[0]["reason"], rec[0]
    # The recovery entry follows the last durable entry directly.
    assert open(gw.audit_file, "rb").read()[:size].count(b"\n") == rec[0]["seq"] - 1


def test_failed_sync_of_the_recovery_entry_is_moved_aside_too(make_gateway, sim, keys, faults):
    env, arm, armed = faults
    gw = make_gateway(sim.url, env=env)
    assert gw.delete("j-ok1", keys.token()).status == 200
    time.sleep(0.4)
    arm("FDATASYNC", "2")  # the decision batch's sync and the first recovery's sync fail
    assert gw.delete("j-ok2", keys.token()).status == 503
    assert wait_ready(gw)
    assert not armed("FDATASYNC")
    assert gw.delete("j-bp1ready", keys.token()).status == 200
    assert gw.stop() == 0
    rc, out = verify_plain(gw.audit_file)
    assert rc == 0, out
    rec = recoveries(gw.audit_file)
    assert len(rec) == 1, rec  # the first attempt's entry went to .torn with the batch
    torn = open(gw.audit_file + ".torn", "rb").read()
    assert b'"job_id":"j-ok2"' in torn and b'"event":"recovery"' in torn


def test_entries_written_without_a_sync_are_not_claimed_durable(make_gateway, sim, keys, faults):
    env, arm, armed = faults
    gw = make_gateway(sim.url, env=env)
    # The decision's sync passes; the next one (the outcome's lazy sync,
    # 100 ms later) fails: the outcome was written but never known durable.
    arm("FDATASYNC", "1 1")
    assert gw.delete("j-ok1", keys.token()).status == 200
    assert wait_unready(gw)
    assert wait_ready(gw)
    assert gw.stop() == 0
    rc, out = verify_plain(gw.audit_file)
    assert rc == 0, out
    got = entries(gw.audit_file)
    assert [e["event"] for e in got] == ["decision", "recovery"], got
    assert "nothing past the last durable entry" not in got[1]["reason"]
    torn = open(gw.audit_file + ".torn", "rb").read()
    assert b'"event":"outcome"' in torn and got[1]["torn_bytes"] == len(torn) - 1


def signed(make_gateway, sim, signing_key, env, **audit):
    a = {"signing_key_file": signing_key[0], "checkpoint_every": 1000}
    a.update(audit)
    return make_gateway(sim.url, policy=POLICY, config={"audit": a}, env=env)


def serves_and_verifies_after_one_recovery(gw, keys, signing_key):
    """Deletions go through again, and the whole file verifies with one recovery entry."""
    assert gw.delete("j-bp1ready", keys.token()).status == 200
    assert gw.stop() == 0
    rc, out = verify(signing_key[1], gw.audit_file)
    assert rc == 0, out
    assert len(recoveries(gw.audit_file)) == 1


def test_failed_checkpoint_before_a_reopen_rolls_the_chain_back(make_gateway, sim, keys, faults, signing_key):
    env, arm, armed = faults
    gw = signed(make_gateway, sim, signing_key, env)
    assert gw.delete("j-ok1", keys.token()).status == 200
    time.sleep(0.4)
    arm("WRITE_CP")
    gw.proc.send_signal(signal.SIGUSR1)  # reopen: the sealing checkpoint's write fails
    assert wait_unready(gw)
    assert not armed("WRITE_CP")
    assert wait_ready(gw)
    serves_and_verifies_after_one_recovery(gw, keys, signing_key)


def test_failed_periodic_checkpoint_rolls_the_chain_back(make_gateway, sim, keys, faults, signing_key):
    env, arm, armed = faults
    arm("WRITE_CP")  # the first checkpoint (checkpoint_seconds) fails
    gw = signed(make_gateway, sim, signing_key, env, checkpoint_seconds=1)
    assert gw.delete("j-ok1", keys.token()).status == 200
    assert wait_unready(gw)
    assert wait_ready(gw)
    serves_and_verifies_after_one_recovery(gw, keys, signing_key)


def rotated(workdir):
    return sorted(f for f in os.listdir(workdir) if f.startswith("audit-") and f.endswith(".jsonl"))


def test_rotated_names_carry_the_first_seq_after_a_restart(make_gateway, sim, keys, workdir):
    gw = make_gateway(sim.url, config={"audit": {"rotate_bytes": 4096}})
    for i in range(2):
        gw.delete("j-ok%d" % i, keys.token())
    assert gw.stop() == 0
    assert rotated(workdir) == []
    gw.start()  # the file already holds entries 1..4
    for i in range(12):
        gw.delete("j-ok%d" % i, keys.token())
    assert gw.stop() == 0
    names = rotated(workdir)
    assert names
    for f in names:
        first = json.loads(open(os.path.join(workdir, f), "rb").readline())["seq"]
        assert f.endswith("-%d.jsonl" % first), (f, first)
    assert json.loads(open(os.path.join(workdir, names[0]), "rb").readline())["seq"] == 1
    by_seq = sorted(names, key=lambda f: int(f.rsplit("-", 1)[1].split(".")[0]))
    rc, out = verify_plain(*[os.path.join(workdir, f) for f in by_seq] + [gw.audit_file])
    assert rc == 0, out


def assert_counts(got):
    """The first checkpoint counts every entry since the chain's start, each later one those since the last."""
    last = 0
    cps = [e for e in got if e["event"] == "checkpoint"]
    assert cps
    for e in cps:
        assert e["count"] == e["seq"] - last - 1, (e["seq"], e["count"], last)
        last = e["seq"]


def add_key_by_reload_and_verify(gw, keys, signing_key):
    """Add the signing key by reload, serve one more request, stop: the counts hold and the chain verifies."""
    gw.config["audit"]["signing_key_file"] = signing_key[0]
    gw.write_config()
    gw.proc.send_signal(signal.SIGHUP)  # reload adopts the key
    time.sleep(0.5)
    gw.delete("j-ok3", keys.token())
    assert gw.stop() == 0
    assert_counts(entries(gw.audit_file))
    rc, out = verify(signing_key[1], gw.audit_file)
    assert rc == 0, out


def test_signing_key_added_by_reload_after_a_restart(make_gateway, sim, keys, signing_key):
    gw = make_gateway(sim.url)  # no signing key yet
    gw.delete("j-ok1", keys.token())
    assert gw.stop() == 0
    gw.start()
    gw.delete("j-ok2", keys.token())
    add_key_by_reload_and_verify(gw, keys, signing_key)


def test_signing_key_added_by_reload_after_a_crash(make_gateway, sim, keys, signing_key):
    gw = make_gateway(sim.url)
    gw.delete("j-ok1", keys.token())
    assert gw.stop() == 0
    gw.start()
    gw.delete("j-ok2", keys.token())
    time.sleep(0.3)
    gw.stop(sig=signal.SIGKILL)  # .state is now behind the file
    gw.start()
    add_key_by_reload_and_verify(gw, keys, signing_key)


def test_audit_read_racing_a_size_rotation(make_gateway, sim, keys, workdir, faults):
    env, arm, armed = faults
    gw = make_gateway(sim.url, policy=POLICY, config={"audit": {"rotate_bytes": 8192}}, env=env)
    for i in range(3):
        gw.delete("j-ok%d" % i, keys.token())
    h = {"Authorization": "Bearer " + keys.token(team="audit-team", sub="auditor@example.com")}
    arm("SLOW_OPENDIR")  # the read scans audit.jsonl, then waits before listing the folder
    out = {}
    t = threading.Thread(target=lambda: out.update(r=gwtest.request(gw.port, "GET", "/audit?limit=1000", headers=h)))
    t.start()
    time.sleep(0.4)
    for i in range(20):  # a size rotation meanwhile (or two)
        gw.delete("j-ok%d" % i, keys.token())
    t.join()
    assert rotated(workdir)
    assert out["r"].status == 200
    seqs = [e["seq"] for e in out["r"].json()["entries"]]
    assert seqs and seqs == sorted(set(seqs), reverse=True), seqs
    assert gw.stop() == 0
