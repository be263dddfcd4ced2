"""Bad configuration refuses to start, naming the file and the key."""
import json
import os

import pytest

import gwtest


def cfg(sim, keys, start=False, **kw):
    return gwtest.Gateway(sim.folder, keys, sim.url, start=start, **kw)


def refused(g, *needles):
    rc, out = g.check_config()
    assert rc == 1, out
    for n in needles:
        assert n in out, out
    rc, out = g.run_expect_exit()
    assert rc == 1
    for n in needles:
        assert n in out, out
    return out


def test_good_config_checks_ok(sim, keys):
    g = cfg(sim, keys)
    rc, out = g.check_config()
    assert rc == 0 and "OK" in out


def test_empty_hs_key_refused(sim, keys, workdir):
    empty = os.path.join(workdir, "empty.secret")
    open(empty, "w").close()
    os.chmod(empty, 0o600)
    refused(cfg(sim, keys, algorithms=("HS256",), key_file=empty), empty, "at least 32")


def test_mixing_hs_and_rs_refused(sim, keys):
    refused(cfg(sim, keys, algorithms=("HS256", "RS256")), "auth.algorithms", "mixes symmetric")


def test_world_readable_credentials_refused(sim, keys):
    g = cfg(sim, keys)
    os.chmod(g.creds_file, 0o644)
    refused(g, g.creds_file, "mode 0644")


def test_secrecy_is_checked_on_the_file_that_is_read(sim, keys):
    # The credentials path is a symlink that another process keeps swapping
    # between a private file (not JSON) and a world-readable one (valid). A
    # check of the path followed by a second open of it could pass the one
    # and read the other; a check of the opened descriptor never can.
    import threading
    g = cfg(sim, keys)
    folder = os.path.dirname(g.creds_file)
    readable = os.path.join(folder, "creds-0644.json")
    private = os.path.join(folder, "creds-0600.json")
    os.rename(g.creds_file, readable)
    os.chmod(readable, 0o644)
    with open(private, "w") as f:
        f.write("not json")
    os.chmod(private, 0o600)
    os.symlink(private, g.creds_file)
    stop = threading.Event()

    def swap():
        tmp = g.creds_file + ".tmp"
        while not stop.is_set():
            for target in (readable, private):
                os.symlink(target, tmp)
                os.replace(tmp, g.creds_file)

    t = threading.Thread(target=swap, daemon=True)
    t.start()
    try:
        outs = [g.check_config() for _ in range(150)]
    finally:
        stop.set()
        t.join()
    accepted = [o for rc, o in outs if rc == 0]
    assert not accepted, accepted[0]
    # Both files were met: refused for the mode, and for the content.
    assert any("mode 0644" in o for _, o in outs) and any("invalid JSON" in o for _, o in outs)


def test_group_readable_credentials_allowed(sim, keys):
    g = cfg(sim, keys)
    os.chmod(g.creds_file, 0o440)
    assert g.check_config()[0] == 0


def test_unknown_keys_and_wrong_types_named(sim, keys):
    out = refused(cfg(sim, keys, config={"upstream": {"timeout_ms": "10s", "retries": 3}, "listen": 8080,
                                         "extra": True}),
                  "upstream.timeout_ms: must be an integer", "upstream.retries: unknown key",
                  "listen: must be a non-empty string", "extra: unknown key")
    assert out.count("gateway.json") >= 4


def test_plain_http_upstream_only_to_loopback(sim, keys):
    refused(cfg(sim, keys, config={"upstream": {"endpoint": "http://smc.aliyuncs.com/"}}), "upstream.endpoint")
    # Names that only look like loopback resolve through DNS to anywhere.
    for url in ("http://127.attacker.example/", "http://127.0.0.1.nip.io/", "http://[::2]:1/"):
        refused(cfg(sim, keys, config={"upstream": {"endpoint": url}}), "upstream.endpoint", "loopback")
    for url in ("http://127.0.0.1:1/", "http://127.8.9.10:1/", "http://[::1]:1/", "http://localhost:1/"):
        g = cfg(sim, keys, config={"upstream": {"endpoint": url}})
        rc, out = g.check_config()
        assert rc == 0, (url, out)


def test_policy_naming_unknown_credential(sim, keys):
    policy = json.loads(json.dumps(gwtest.DEFAULT_POLICY))
    policy["teams"]["ops"]["credential"] = "staging"
    refused(cfg(sim, keys, policy=policy), "policy.json: teams.ops.credential", "staging")


def test_default_credential_from_environment(sim, keys):
    policy = json.loads(json.dumps(gwtest.DEFAULT_POLICY))
    policy["teams"]["migration"]["credential"] = "default"
    g = cfg(sim, keys, policy=policy)
    refused(g, "default")
    g.env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": gwtest.ACCESS_KEY_ID,
             "ALIBABA_CLOUD_ACCESS_KEY_SECRET": gwtest.ACCESS_KEY_SECRET}
    g.start()
    try:
        # The variables are gone from the process environment block.
        environ = open("/proc/%d/environ" % g.proc.pid, "rb").read()
        assert gwtest.ACCESS_KEY_SECRET.encode() not in environ
        assert gw_delete_ok(g, sim, keys)
    finally:
        assert g.stop() == 0


def gw_delete_ok(g, sim, keys):
    r = g.delete("j-ok1", keys.token())
    return r.status == 200 and sim.requests()[-1]["signature_valid"]


def test_timeouts_must_nest(sim, keys):
    refused(cfg(sim, keys, config={"upstream": {"timeout_ms": 30000, "deadline_ms": 1000}}),
            "upstream.timeout_ms: must not exceed upstream.deadline_ms")


def test_rsa_key_for_es_algorithm_refused(sim, keys):
    refused(cfg(sim, keys, algorithms=("ES256",), key_file=keys.rsa_pub), keys.rsa_pub, "cannot verify ES256")


def test_command_line(sim, keys):
    import subprocess
    out = subprocess.run([gwtest.GATEWAY, "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("smc-gateway ")
    out = subprocess.run([gwtest.GATEWAY, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--check-config" in out.stdout
    out = subprocess.run([gwtest.GATEWAY], capture_output=True, text=True)
    assert out.returncode == 2


@pytest.mark.parametrize("key,bad,good", [
    ("group_commit_us", (-1, 100001, "1ms"), (0, 100000)),
    ("slow_sync_warn_ms", (-1, 60001, "100ms"), (0, 60000)),
])
def test_audit_timing_keys_are_bounded(sim, keys, key, bad, good):
    for v in bad:
        refused(cfg(sim, keys, config={"audit": {key: v}}), "audit." + key)
    for v in good:
        g = cfg(sim, keys, config={"audit": {key: v}})
        assert g.check_config()[0] == 0, v
