"""build/smc-gateway-audit against audit files written here, in Python, to
the smc-gateway-audit-v1 format (seq/prev hash chain, Ed25519-signed
checkpoints). The writer below is an independent reading of the format: the
C verifier accepting its files is itself a check that both agree. Then each
kind of tampering an auditor must catch is applied to a good log, and the
tool must name the first broken line. Last, query's filters and its escaping
of hostile text."""
import base64
import datetime
import hashlib
import json
import os
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import gwtest

TOOL = os.path.join(gwtest.BUILD, "smc-gateway-audit")
ZERO = "0" * 64
T0 = datetime.datetime(2026, 11, 28, 12, 0, 0, tzinfo=datetime.timezone.utc)


def key_id(private_key):
    der = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def write_pem(folder, name, private_key, public=True):
    path = os.path.join(folder, name)
    if public:
        data = private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        data = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
    with open(path, "wb") as f:
        f.write(data)
    return path


def line_bytes(obj):
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


class Writer:
    """Writes one instance's chain the way the gateway does; rotate() starts a new file."""

    def __init__(self, key, instance="gw-1"):
        self.key = key
        self.instance = instance
        self.seq = 0
        self.prev = ZERO
        self.since_checkpoint = 0
        self.files = [[]]  # lists of line bytes

    def ts(self):
        """The next entry's time: seq n is written at T0 + n seconds and n milliseconds."""
        n = self.seq + 1
        t = T0 + datetime.timedelta(seconds=n)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (n % 1000)

    def add(self, event, **fields):
        obj = {"seq": self.seq + 1, "prev": self.prev, "ts": self.ts(), "instance": self.instance, "event": event}
        obj.update(fields)
        line = line_bytes(obj)
        self.files[-1].append(line)
        self.seq += 1
        self.prev = hashlib.sha256(line).hexdigest()
        if event != "checkpoint":
            self.since_checkpoint += 1
        return line

    def request(self, n, team="migration", sub="alice@example.com", job="j-bp1ready", decision="allow", **kw):
        rid = "req-%04d" % n
        if decision == "allow":
            self.add("decision", request_id=rid, client_ip="127.0.0.1", method="DELETE", path="/jobs/" + job,
                     job_id=job, sub=sub, team=team, decision="allow", credential="prod",
                     access_key_id="LTAI****0001")
            self.add("outcome", request_id=rid, job_id=job, sub=sub, team=team, decision="allow",
                     status=kw.get("status", 200), result=kw.get("result", "deleted"), upstream_status=200,
                     upstream_request_id="up-%d" % n, attempts=1, duration_ms=12)
        else:
            self.add("decision", request_id=rid, client_ip="127.0.0.1", method="DELETE", path="/jobs/" + job,
                     job_id=job, sub=sub, team=team, decision="deny", reason=kw.get("reason", "job_not_allowed"),
                     status=kw.get("status", 403), result="refused")

    def checkpoint(self, key=None, count=None):
        key = key or self.key
        seq = self.seq + 1
        msg = ("smc-gateway-audit-v1|%s|%d|%s" % (self.instance, seq, self.prev)).encode()
        sig = base64.b64encode(key.sign(msg)).decode()
        self.add("checkpoint", count=self.since_checkpoint if count is None else count, key_id=key_id(key), sig=sig)
        self.since_checkpoint = 0

    def rotate(self):
        self.checkpoint()
        self.files.append([])

    def save(self, folder, base="audit"):
        paths = []
        n = len(self.files)
        for i, lines in enumerate(self.files):
            name = "%s.jsonl" % base if i == n - 1 else "%s.jsonl.%d" % (base, n - 1 - i)
            path = os.path.join(folder, name)
            with open(path, "wb") as f:
                f.write(b"".join(lines))
            paths.append(path)
        return paths  # oldest first


def run(*args):
    p = subprocess.run([TOOL] + list(args), capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def verify(*args):
    return run("verify", *args)


@pytest.fixture(scope="module")
def signer():
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def pub(signer, workdir):
    return write_pem(workdir, "audit-sign.pub.pem", signer)


def good_log(signer, requests=8, checkpoint_every=4):
    """A log ending with a checkpoint: 8 requests, a checkpoint after every 4."""
    w = Writer(signer)
    for i in range(1, requests + 1):
        w.request(i, decision="deny" if i % 3 == 0 else "allow")
        if i % checkpoint_every == 0:
            w.checkpoint()
    return w


def lines_of(path):
    with open(path, "rb") as f:
        return f.read().splitlines(keepends=True)


def write_lines(path, lines):
    with open(path, "wb") as f:
        f.write(b"".join(lines))


def rechain(lines, start=0):
    """Recompute seq-preserving prev links from index start on, as a forger with no key would."""
    out = list(lines)
    for i in range(max(start, 1), len(out)):
        obj = json.loads(out[i])
        obj["prev"] = hashlib.sha256(out[i - 1]).hexdigest()
        out[i] = line_bytes(obj)
    return out


# ---- verify: the good cases ----

def test_good_log_verifies_with_exact_output(signer, pub, workdir):
    w = good_log(signer)
    [path] = w.save(workdir)
    rc, out, err = verify("--pubkey", pub, path)
    assert (rc, out, err) == (0, "OK %d entries, sealed through seq %d\n" % (w.seq, w.seq), "")
    # 8 requests, 2 denied (1 line each), 6 allowed (2 lines), 2 checkpoints.
    assert w.seq == 2 + 12 + 2


def test_private_key_pem_is_accepted_as_pubkey(signer, workdir):
    [path] = good_log(signer).save(workdir)
    priv = write_pem(workdir, "audit-sign.pem", signer, public=False)
    rc, out, _ = verify("--pubkey", priv, path)
    assert rc == 0 and out.startswith("OK 16 entries, sealed through seq 16"), out


def test_rotated_files_verify_as_one_chain(signer, pub, workdir):
    w = Writer(signer)
    for i in range(1, 10):
        w.request(i)
        if i % 3 == 0:
            w.rotate()
    w.request(10)
    w.checkpoint()
    paths = w.save(workdir)
    assert len(paths) == 4
    rc, out, _ = verify("--pubkey", pub, *paths)
    assert (rc, out) == (0, "OK %d entries, sealed through seq %d\n" % (w.seq, w.seq))


def test_unsealed_tail_is_a_warning(signer, pub, workdir):
    w = good_log(signer)
    sealed = w.seq
    w.request(100)
    w.request(101, decision="deny")
    [path] = w.save(workdir)
    rc, out, _ = verify("--pubkey", pub, path)
    assert rc == 0
    assert out.splitlines() == [
        "OK %d entries, sealed through seq %d" % (w.seq, sealed),
        "WARNING: entries seq %d..%d after the last checkpoint are not sealed by a signature" % (sealed + 1, w.seq),
    ]


def test_log_without_any_checkpoint(signer, pub, workdir):
    w = Writer(signer)
    w.request(1)
    [path] = w.save(workdir)
    rc, out, _ = verify("--pubkey", pub, path)
    assert rc == 0
    assert out.splitlines() == ["OK 2 entries, sealed through seq 0",
                                "WARNING: entries seq 1..2 are not sealed by a signature: there is no checkpoint"]


def test_without_pubkey_signatures_are_not_checked(signer, workdir):
    [path] = good_log(signer).save(workdir)
    rc, out, _ = verify(path)
    assert rc == 0
    assert out.splitlines()[0] == "OK 16 entries, signatures not checked"
    assert "WARNING: no --pubkey given" in out and "not checked" in out.splitlines()[1]


def test_retention_start_says_which_range_is_proven(signer, pub, workdir):
    w = Writer(signer)
    for i in range(1, 13):
        w.request(i)
        if i % 4 == 0:
            w.rotate()
    w.request(13)
    paths = w.save(workdir)
    kept = paths[1:]  # the oldest file is gone
    first = json.loads(lines_of(kept[0])[0])["seq"]
    sealed = json.loads(lines_of(kept[-2])[-1])["seq"]
    rc, out, _ = verify("--pubkey", pub, *kept)
    assert rc == 0, out
    assert out.splitlines() == [
        "OK %d entries (seq %d..%d), sealed through seq %d; history before seq %d is not present"
        % (w.seq - first + 1, first, w.seq, sealed, first),
        "WARNING: entries seq %d..%d after the last checkpoint are not sealed by a signature" % (sealed + 1, w.seq),
    ]


def test_empty_file(workdir):
    path = os.path.join(workdir, "audit.jsonl")
    open(path, "wb").close()
    rc, out, _ = verify(path)
    assert rc == 1
    assert out == "%s is empty: no entries to verify\n" % path


def test_empty_current_file_after_rotation_is_a_warning(signer, pub, workdir):
    w = good_log(signer)
    w.rotate()
    paths = w.save(workdir)
    rc, out, _ = verify("--pubkey", pub, *paths)
    assert rc == 0
    assert out.splitlines() == ["OK %d entries, sealed through seq %d" % (w.seq, w.seq),
                                "WARNING: %s is empty" % paths[-1]]


# ---- verify: tampering, each named at the first broken line ----

def tampered(signer, workdir, change):
    """Save a good log, apply change(lines) -> lines to its file, return the path."""
    [path] = good_log(signer).save(workdir)
    write_lines(path, change(lines_of(path)))
    return path


def expect_broken(pub, paths, where, *phrases):
    rc, out, err = verify("--pubkey", pub, *paths)
    assert rc == 1, (out, err)
    assert out.count("\n") == 1, out
    assert out.startswith(where + ": "), out
    for p in phrases:
        assert p in out, out
    return out


def test_edited_byte(signer, pub, workdir):
    def edit(lines):
        lines[2] = lines[2].replace(b"j-bp1ready", b"j-bp1readz")
        return lines

    path = tampered(signer, workdir, edit)
    expect_broken(pub, [path], "%s:4" % path, "prev does not match the hash of line 3",
                  "line 3 was changed, or a line was removed or inserted before line 4")


def test_edited_line_that_is_no_longer_json(signer, pub, workdir):
    def edit(lines):
        lines[5] = lines[5].replace(b'"seq":6,', b'"seq":6,,')
        return lines

    path = tampered(signer, workdir, edit)
    expect_broken(pub, [path], "%s:6" % path, "not JSON")


def test_deleted_line(signer, pub, workdir):
    path = tampered(signer, workdir, lambda lines: lines[:4] + lines[5:])
    expect_broken(pub, [path], "%s:5" % path, "seq 6 follows seq 4", "entry seq 5 is missing")


def test_swapped_lines(signer, pub, workdir):
    path = tampered(signer, workdir, lambda lines: lines[:3] + [lines[4], lines[3]] + lines[5:])
    expect_broken(pub, [path], "%s:4" % path, "seq 5 comes before seq 4 (line 5)", "reordered")


def test_inserted_forged_line(signer, pub, workdir):
    def insert(lines):
        before = json.loads(lines[5])
        forged = {"seq": before["seq"] + 1, "prev": hashlib.sha256(lines[5]).hexdigest(),
                  "ts": before["ts"], "instance": "gw-1", "event": "decision", "decision": "allow",
                  "team": "migration", "sub": "mallory@example.com", "job_id": "j-bp1ready"}
        return lines[:6] + [line_bytes(forged)] + lines[6:]

    path = tampered(signer, workdir, insert)
    expect_broken(pub, [path], "%s:8" % path, "line 7 or line 8 was inserted")


def test_rewritten_history_breaks_the_checkpoint_signature(signer, pub, workdir):
    """A forger edits an entry and recomputes every later prev: the chain holds, the seal does not."""
    def rewrite(lines):
        lines[1] = lines[1].replace(b'"result":"deleted"', b'"result":"refused"')
        return rechain(lines, 2)

    path = tampered(signer, workdir, rewrite)
    lines = lines_of(path)
    cp = next(i for i, l in enumerate(lines) if json.loads(l)["event"] == "checkpoint")
    expect_broken(pub, [path], "%s:%d" % (path, cp + 1), "checkpoint signature does not verify",
                  "entries through seq %d were changed" % cp)
    # Without the key, the rewritten chain is consistent: that is why checkpoints are signed.
    rc, out, _ = verify(path)
    assert rc == 0 and out.startswith("OK 16 entries, signatures not checked")


def test_forged_checkpoint_count(signer, pub, workdir):
    w = Writer(signer)
    for i in range(1, 4):
        w.request(i)
    w.checkpoint(count=5)  # correctly signed, but 6 entries precede it
    [path] = w.save(workdir)
    expect_broken(pub, [path], "%s:7" % path, "checkpoint count is 5 but 6 entries precede it")


def test_deleted_middle_rotated_file(signer, pub, workdir):
    w = Writer(signer)
    for i in range(1, 10):
        w.request(i)
        if i % 3 == 0:
            w.rotate()
    paths = w.save(workdir)
    first_of_third = json.loads(lines_of(paths[2])[0])["seq"]
    last_of_first = json.loads(lines_of(paths[0])[-1])["seq"]
    expect_broken(pub, [paths[0]] + paths[2:], "%s:1" % paths[2],
                  "seq %d follows seq %d at the end of %s" % (first_of_third, last_of_first, paths[0]),
                  "a rotated file was deleted")


def test_files_given_out_of_order(signer, pub, workdir):
    w = Writer(signer)
    for i in range(1, 7):
        w.request(i)
        if i % 3 == 0:
            w.rotate()
    paths = w.save(workdir)
    expect_broken(pub, [paths[1], paths[0]], "%s:1" % paths[0], "not given oldest first")


def test_torn_last_line(signer, pub, workdir):
    def tear(lines):
        lines[-1] = lines[-1][:40]
        return lines

    path = tampered(signer, workdir, tear)
    expect_broken(pub, [path], "%s:%d" % (path, len(lines_of(path))), "incomplete last line")


def test_missing_final_newline(signer, pub, workdir):
    def tear(lines):
        lines[-1] = lines[-1].rstrip(b"\n")
        return lines

    path = tampered(signer, workdir, tear)
    expect_broken(pub, [path], "%s:16" % path, "incomplete last line (no newline at the end)")


def test_checkpoint_by_another_keypair(signer, workdir):
    other = ed25519.Ed25519PrivateKey.generate()
    [path] = good_log(signer).save(workdir)
    other_pub = write_pem(workdir, "other.pub.pem", other)
    expect_broken(other_pub, [path], "%s:8" % path, "checkpoint signed by an unknown key",
                  "key_id %s" % key_id(signer), "key_id %s" % key_id(other))


def test_checkpoint_forged_with_another_key_under_the_right_key_id(signer, pub, workdir):
    w = good_log(signer)
    w.request(50)
    mallory = ed25519.Ed25519PrivateKey.generate()
    seq = w.seq + 1
    msg = ("smc-gateway-audit-v1|gw-1|%d|%s" % (seq, w.prev)).encode()
    w.add("checkpoint", count=2, key_id=key_id(signer), sig=base64.b64encode(mallory.sign(msg)).decode())
    [path] = w.save(workdir)
    expect_broken(pub, [path], "%s:%d" % (path, seq), "checkpoint signature does not verify")


def test_two_keys_for_key_rotation(signer, pub, workdir):
    new_key = ed25519.Ed25519PrivateKey.generate()
    w = good_log(signer)
    w.request(60)
    w.checkpoint(key=new_key)
    [path] = w.save(workdir)
    new_pub = write_pem(workdir, "new.pub.pem", new_key)
    rc, out, _ = verify("--pubkey", pub, "--pubkey", new_pub, path)
    assert (rc, out) == (0, "OK %d entries, sealed through seq %d\n" % (w.seq, w.seq))
    expect_broken(pub, [path], "%s:%d" % (path, w.seq), "unknown key")


def test_mixed_instances(signer, pub, workdir):
    w = Writer(signer)
    w.request(1)
    w.instance = "gw-2"
    w.request(2)
    [path] = w.save(workdir)
    expect_broken(pub, [path], "%s:3" % path, 'instance "gw-2" differs from "gw-1"', "mixed instances")


def test_line_without_seq_or_prev(signer, pub, workdir):
    def edit(lines):
        lines.insert(3, b'{"ts":"2026-11-28T12:00:00.000Z","instance":"gw-1","event":"decision"}\n')
        return lines

    path = tampered(signer, workdir, edit)
    expect_broken(pub, [path], "%s:4" % path, '"seq" and "prev" must be the first two members')


def test_chain_that_does_not_start_at_zero(signer, pub, workdir):
    def edit(lines):
        obj = json.loads(lines[0])
        obj["prev"] = "1" * 64
        lines[0] = line_bytes(obj)
        return lines

    path = tampered(signer, workdir, edit)
    expect_broken(pub, [path], "%s:1" % path, "seq 1 starts the chain, so its prev must be 64 zeros")


def test_hostile_text_in_an_error_is_escaped(signer, pub, workdir):
    w = Writer(signer)
    w.request(1)
    w.files[-1].append(b'{"seq":3,"prev":"' + ZERO.encode() + b'",\x1b[31m}\n')
    [path] = w.save(workdir)
    p = subprocess.run([TOOL, "verify", path], capture_output=True, timeout=30)
    assert p.returncode == 1
    assert b"\x1b" not in p.stdout and b"\x1b" not in p.stderr
    assert p.stdout.startswith(("%s:3: not JSON" % path).encode()), p.stdout


# ---- usage ----

def test_help_version_and_usage_errors(workdir):
    rc, out, _ = run("--help")
    assert rc == 0 and "verify" in out and "query" in out
    rc, out, _ = run("--version")
    assert rc == 0 and out.startswith("smc-gateway-audit ")
    assert run()[0] == 2
    assert run("frobnicate")[0] == 2
    assert run("verify")[0] == 2
    assert run("verify", "--no-such-option", "x")[0] == 2
    assert run("query")[0] == 2
    assert run("query", "--decision", "maybe", "x")[0] == 2
    assert run("query", "--since", "yesterday", "x")[0] == 2
    rc, _, err = verify(os.path.join(workdir, "missing.jsonl"))
    assert rc == 1 and "cannot open" in err
    bad_key = os.path.join(workdir, "bad.pem")
    with open(bad_key, "w") as f:
        f.write("not a key\n")
    rc, _, err = verify("--pubkey", bad_key, bad_key)
    assert rc == 2 and bad_key in err


def test_non_ed25519_key_is_refused(workdir, keys):
    rc, _, err = verify("--pubkey", keys.rsa_pub, keys.rsa_pub)
    assert rc == 2
    assert keys.rsa_pub in err and "not an Ed25519 key" in err


# ---- query ----

@pytest.fixture
def query_log(signer, workdir):
    w = Writer(signer)
    w.request(1, team="migration", sub="alice@example.com", job="j-bp1aaa")
    w.request(2, team="ops", sub="bob@example.com", job="j-bp1bbb", decision="deny", reason="ticket_required")
    w.request(3, team="migration", sub="svc-\u001b[31mred", job="j-bp1ccc", status=409, result="refused")
    w.add("refusals_suppressed", client_ip="10.0.0.9", count=50, window_start="2026-11-28T12:00:00.000Z")
    w.checkpoint()
    w.request(4, team="ops", sub="carol@example.com\u009b2J\u007f", job="j-bp1ddd")
    return w.save(workdir)


def query(*args):
    p = subprocess.run([TOOL, "query"] + list(args), capture_output=True, timeout=30)
    assert b"\x1b" not in p.stdout and b"\x9b" not in p.stdout and b"\x7f" not in p.stdout
    return p.returncode, p.stdout.decode("ascii" if "--json" in args else "utf-8"), p.stderr.decode()


def rids(out):
    return [json.loads(l).get("request_id") for l in out.splitlines()]


def test_query_filters(query_log):
    rc, out, _ = query("--json", "--team", "ops", *query_log)
    assert rc == 0 and rids(out) == ["req-0002", "req-0004", "req-0004"]
    assert rids(query("--json", "--sub", "bob@example.com", *query_log)[1]) == ["req-0002"]
    assert rids(query("--json", "--job", "j-bp1aaa", *query_log)[1]) == ["req-0001", "req-0001"]
    assert rids(query("--json", "--decision", "deny", *query_log)[1]) == ["req-0002"]
    assert rids(query("--json", "--result", "refused", *query_log)[1]) == ["req-0002", "req-0003"]
    assert rids(query("--json", "--event", "outcome", "--team", "migration", *query_log)[1]) == ["req-0001",
                                                                                                  "req-0003"]
    rc, out, _ = query("--json", "--event", "refusals_suppressed", *query_log)
    assert [json.loads(l)["count"] for l in out.splitlines()] == [50]
    assert query("--json", "--team", "nobody", *query_log)[1] == ""


def test_query_since_until_compare_instants(query_log):
    all_ts = [json.loads(l)["ts"] for l in query("--json", *query_log)[1].splitlines()]
    assert len(all_ts) == 9
    # seq n has ts T0 + n.00n seconds; since is inclusive, until exclusive.
    rc, out, _ = query("--json", "--since", "2026-11-28T12:00:04.004Z", "--until", "2026-11-28T12:00:07.007Z",
                       *query_log)
    assert rc == 0
    assert [json.loads(l)["seq"] for l in out.splitlines()] == [4, 5, 6]
    # The same instants written with an offset.
    rc, out2, _ = query("--json", "--since", "2026-11-28T13:00:04.004+01:00", "--until",
                        "2026-11-28T13:00:07.007+01:00", *query_log)
    assert out2 == out


def test_query_json_is_ascii_and_escaped(query_log):
    rc, out, _ = query("--json", "--sub", "svc-\x1b[31mred", *query_log)
    assert rc == 0 and out.isascii()
    assert "\\u001b[31m" in out.lower()
    for l in out.splitlines():
        assert json.loads(l)["sub"] == "svc-\x1b[31mred"
    rc, out, _ = query("--json", "--team", "ops", "--event", "outcome", *query_log)
    assert "\\u007f" in out.lower() and json.loads(out)["sub"] == "carol@example.com\u009b2J\x7f"


def test_query_table_escapes_control_characters(query_log):
    rc, out, _ = query(*query_log)
    assert rc == 0
    rows = out.splitlines()
    assert rows[0].split() == ["TS", "EVENT", "DECISION", "STATUS", "RESULT", "TEAM", "SUB", "JOB_ID", "REQUEST_ID",
                               "REASON/CODE"]
    assert len(rows) == 10
    assert "svc-\\x1b[31mred" in out
    assert "carol@example.com\\u009b2J\\x7f" in out
    deny = [r for r in rows if "req-0002" in r]
    assert deny[0].split() == ["2026-11-28T12:00:03.003Z", "decision", "deny", "403", "refused", "ops",
                               "bob@example.com", "j-bp1bbb", "req-0002", "ticket_required"]
    summary = [r for r in rows if "refusals_suppressed" in r][0]
    assert summary.endswith("count=50 client_ip=10.0.0.9")


def test_query_skips_unreadable_lines_and_says_so(query_log, workdir):
    path = query_log[-1]
    with open(path, "ab") as f:
        f.write(b'{"seq":99,"prev":"x", torn')
    rc, out, err = query("--json", "--team", "ops", path)
    assert rc == 1
    assert rids(out) == ["req-0002", "req-0004", "req-0004"]
    assert "%s:10: skipped: not a JSON object" % path in err


# ---- the gateway's own log ----

def test_the_gateways_audit_log_verifies(gw, sim, keys):
    gw.delete("j-ok1", keys.token())
    gw.delete("j-bp1running", keys.token())
    gw.delete("j-bad!", keys.token())
    assert gw.stop() == 0
    rc, out, _ = verify(gw.audit_file)
    assert rc == 0, out
    assert out.splitlines()[0] == "OK 5 entries, signatures not checked"
