#!/usr/bin/python3
"""Exercise the SMC simulator (build/smc-sim) end to end.

Starts the simulator given by $SMC_SIM on a free port with throwaway
credentials and jobs, signs DeleteReplicationJob requests with a small
independent Python signer, and checks the RPC answers, the fault modes and
the control API.  Exits non-zero on the first failed group of checks.

    SMC_SIM=build/smc-sim /usr/bin/python3 tests/sim/test_sim_manual.py

Only the standard library is used (no `requests`).  Set SMC_SIM_TLS=0 to
skip the HTTPS part (it needs the `openssl` command to make a certificate).
"""

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
import warnings

AK, SECRET = "LTAIsimtest", "sim-secret-1"
STS_AK, STS_SECRET, STS_TOKEN = "STS.simtest", "sim-secret-2", "tok-abc=="
UUID_RE_LEN = 36

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what)
    return cond


# ---------------------------------------------------------------- signing

def pct(s):
    return urllib.parse.quote(s, safe="-_.~")


def sign(method, params, secret):
    items = sorted(((pct(k), pct(v)) for k, v in params.items()
                    if k != "Signature"))
    canon = "&".join(f"{k}={v}" for k, v in items)
    sts = f"{method}&{pct('/')}&{pct(canon)}"
    mac = hmac.new((secret + "&").encode(), sts.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def now_ts(offset_s=0):
    t = datetime.datetime.now(datetime.timezone.utc)
    t += datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def base_params(job="j-ready1", ak=AK, **over):
    p = {
        "Action": "DeleteReplicationJob",
        "Version": "2019-06-01",
        "Format": "JSON",
        "AccessKeyId": ak,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex,
        "Timestamp": now_ts(),
        "RegionId": "cn-hangzhou",
    }
    if job is not None:
        p["JobId"] = job
    p.update(over)
    return {k: v for k, v in p.items() if v is not None}


def signed(method="POST", secret=SECRET, **kw):
    p = base_params(**kw)
    p["Signature"] = sign(method, p, secret)
    return p


# ------------------------------------------------------------- transport

class Sim:
    def __init__(self, binary, workdir, tls=False):
        self.tls = tls
        self.workdir = workdir
        creds = {
            "main": {"access_key_id": AK, "access_key_secret": SECRET},
            "sts": {"access_key_id": STS_AK, "access_key_secret": STS_SECRET,
                    "security_token": STS_TOKEN},
            "_comment": "non-object members are ignored",
        }
        jobs = {"j-ready1": "Ready", "j-run1": "Running",
                "j-del1": "Deleting", "j-stop1": "Stopped"}
        self.creds_path = os.path.join(workdir, "creds.json")
        self.jobs_path = os.path.join(workdir, "jobs.json")
        self.port_file = os.path.join(workdir, "port")
        with open(self.creds_path, "w") as f:
            json.dump(creds, f)
        with open(self.jobs_path, "w") as f:
            json.dump(jobs, f)
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        cmd = [binary, "--listen", "127.0.0.1:0", "--port-file",
               self.port_file, "--credentials", self.creds_path,
               "--jobs", self.jobs_path]
        if tls:
            cmd += ["--tls-cert", os.path.join(workdir, "cert.pem"),
                    "--tls-key", os.path.join(workdir, "key.pem")]
        self.log = open(os.path.join(workdir, "sim.log"), "w")
        self.proc = subprocess.Popen(cmd, stderr=self.log)
        deadline = time.time() + 10
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("simulator did not start; see "
                                   + self.log.name)
            time.sleep(0.02)
        with open(self.port_file) as f:
            self.port = int(f.read())

    def conn(self, timeout=10):
        if self.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection("127.0.0.1", self.port,
                                               timeout=timeout, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10):
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def rpc(self, params, method="POST", timeout=10):
        q = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
        if method == "GET":
            st, h, b = self.request("GET", "/?" + q, timeout=timeout)
        else:
            st, h, b = self.request(
                "POST", "/", body=q, timeout=timeout,
                headers={"Content-Type": "application/x-www-form-urlencoded"})
        return st, h, b

    def ctl(self, method, path, obj=None):
        body = json.dumps(obj) if obj is not None else None
        st, _, b = self.request(method, "/_sim/" + path, body=body)
        return st, (json.loads(b) if b else None)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = -9
        self.log.close()
        return rc


def expect_error(sim, params, status, code, method="POST", what=None):
    st, h, b = sim.rpc(params, method)
    try:
        j = json.loads(b)
    except ValueError:
        j = {}
    ok = check(st == status and j.get("Code") == code,
               f"{what or code}: want {status} {code}, got {st} {b[:200]!r}")
    if ok:
        check(j.get("HostId") == "smc.aliyuncs.com" and
              len(j.get("RequestId", "")) == UUID_RE_LEN and
              j.get("Recommend", "").endswith("q=" + code) and
              j.get("Message"), f"{code}: error shape {j}")
    return j


# ---------------------------------------------------------------- checks

def test_signer_vector():
    p = {"AccessKeyId": "testid", "Action": "DescribeRegions",
         "Format": "XML", "SignatureMethod": "HMAC-SHA1",
         "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
         "SignatureVersion": "1.0", "Timestamp": "2016-02-23T12:46:24Z",
         "Version": "2014-05-26"}
    check(sign("GET", p, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY=",
          "python signer vector")


def test_self_test(binary):
    r = subprocess.run([binary, "--self-test"], capture_output=True,
                       text=True)
    check(r.returncode == 0 and r.stdout.count(" ok ") == 4,
          f"--self-test: rc={r.returncode} {r.stdout}")


def test_rpc(sim):
    st, body = sim.ctl("GET", "health")
    check(st == 200 and body == {"ok": True}, f"health {st} {body}")
    sim.ctl("POST", "reset")

    # Success, then the job is gone.
    st, h, b = sim.rpc(signed(job="j-ready1"))
    j = json.loads(b) if st == 200 else {}
    check(st == 200 and list(j) == ["RequestId"] and
          len(j["RequestId"]) == UUID_RE_LEN and
          j["RequestId"] == j["RequestId"].upper() and
          h.get("Content-Type") == "application/json;charset=utf-8",
          f"delete ok: {st} {h} {b!r}")
    expect_error(sim, signed(job="j-ready1"), 404, "InvalidJobId.NotFound",
                 what="second delete")
    # GET with the query string works too, and Stopped is deletable.
    st, _, b = sim.rpc(signed("GET", job="j-stop1"), "GET")
    check(st == 200, f"GET delete: {st} {b!r}")
    # Signed for GET but sent as POST: the method is part of the signature.
    expect_error(sim, signed("GET", job="j-x1"), 400, "SignatureDoesNotMatch",
                 what="method mismatch")
    expect_error(sim, signed(job="j-run1"), 400,
                 "ReplicationJob.InvalidStatus", what="Running job")
    expect_error(sim, signed(job="j-del1"), 400,
                 "ReplicationJob.InvalidStatus", what="Deleting job")
    expect_error(sim, signed(job="j-nope"), 404, "InvalidJobId.NotFound")

    p = signed(job="j-run1")
    p["Signature"] = sign("POST", p, "wrong-secret")
    expect_error(sim, p, 400, "SignatureDoesNotMatch")

    p = signed(job="j-nope")
    expect_error(sim, p, 404, "InvalidJobId.NotFound", what="nonce first use")
    expect_error(sim, p, 400, "SignatureNonceUsed")

    expect_error(sim, signed(Timestamp=now_ts(-16 * 60)), 400,
                 "InvalidTimeStamp.Expired", what="old timestamp")
    expect_error(sim, signed(Timestamp=now_ts(16 * 60)), 400,
                 "InvalidTimeStamp.Expired", what="future timestamp")
    check(sim.rpc(signed(job="j-nope", Timestamp=now_ts(-14 * 60)))[0] == 404,
          "14 minutes old timestamp accepted")
    expect_error(sim, signed(Timestamp="2024-01-01 00:00:00"), 400,
                 "InvalidTimeStamp.Format")
    expect_error(sim, signed(Timestamp="2024-02-30T00:00:00Z"), 400,
                 "InvalidTimeStamp.Format", what="Feb 30")

    for name in ["Action", "Version", "Format", "AccessKeyId",
                 "SignatureMethod", "SignatureVersion", "SignatureNonce",
                 "Timestamp", "Signature"]:
        p = base_params(**{name: None})
        if name != "Signature":
            p["Signature"] = sign("POST", p, SECRET)
        j = expect_error(sim, p, 400, "MissingParameter",
                         what=f"missing {name}")
        check(name in j.get("Message", ""), f"message names {name}: {j}")

    expect_error(sim, signed(SignatureMethod="HMAC-SHA256"), 400,
                 "InvalidParameter", what="SignatureMethod")
    expect_error(sim, signed(SignatureVersion="2.0"), 400,
                 "InvalidParameter", what="SignatureVersion")
    expect_error(sim, signed(ak="LTAIunknown"), 404,
                 "InvalidAccessKeyId.NotFound")
    expect_error(sim, signed(Version="2014-05-26"), 400, "InvalidVersion")
    expect_error(sim, signed(Format="XML"), 400, "InvalidParameter.Format")
    expect_error(sim, signed(Action="DescribeReplicationJobs"), 404,
                 "InvalidAction.NotFound")
    expect_error(sim, signed(job=None), 400, "MissingJobId")
    expect_error(sim, signed(job="job-1"), 400, "InvalidParameter",
                 what="malformed JobId")
    expect_error(sim, signed(job="j-" + "a" * 65), 400, "InvalidParameter",
                 what="too long JobId")

    # STS credentials: the token is part of what is checked.
    expect_error(sim, signed(ak=STS_AK, secret=STS_SECRET, job="j-nope"),
                 400, "InvalidSecurityToken.Mismatch", what="token missing")
    expect_error(sim, signed(ak=STS_AK, secret=STS_SECRET, job="j-nope",
                             SecurityToken="other"),
                 400, "InvalidSecurityToken.Mismatch", what="token wrong")
    expect_error(sim, signed(ak=STS_AK, secret=STS_SECRET, job="j-nope",
                             SecurityToken=STS_TOKEN),
                 404, "InvalidJobId.NotFound", what="token right")

    # Duplicate parameter (query + body) and a bad %-escape.
    p = signed(job="j-nope")
    q = urllib.parse.urlencode(p, quote_via=urllib.parse.quote)
    st, _, b = sim.request("POST", "/?JobId=j-nope", body=q, headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    check(st == 400 and json.loads(b)["Code"] == "InvalidParameter",
          f"duplicate param: {st} {b!r}")
    st, _, b = sim.request("GET", "/?Action=%zz")
    check(st == 400 and json.loads(b)["Code"] == "InvalidParameter",
          f"bad escape: {st} {b!r}")
    # Values with spaces, '*' and non-ASCII must round-trip the signer.
    p = signed(job="j-nope", RegionId="cn hz*~é/+")
    expect_error(sim, p, 404, "InvalidJobId.NotFound", what="odd value")
    # Form body with '+' for a space, as form encoders send it.
    p = base_params(job="j-nope", RegionId="a b")
    p["Signature"] = sign("POST", p, SECRET)
    body = urllib.parse.urlencode(p)  # quote_plus: space -> '+'
    st, _, b = sim.request("POST", "/", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    check(st == 404, f"'+' as space: {st} {b!r}")
    # Other paths and methods.
    st, _, b = sim.request("PUT", "/", body="x")
    check(st == 400 and json.loads(b)["Code"] == "UnsupportedHTTPMethod",
          f"PUT: {st} {b!r}")
    st, _, _ = sim.request("GET", "/other")
    check(st == 404, f"other path: {st}")


def test_requests_log(sim):
    st, _ = sim.ctl("DELETE", "requests")
    check(st == 204, f"DELETE requests {st}")
    sim.ctl("POST", "jobs", {"j-log1": "Ready"})
    good = signed(job="j-log1")
    bad = signed(job="j-log1")
    bad["Signature"] = "AAAA" + bad["Signature"][4:]
    sim.rpc(bad)
    sim.rpc(good)
    sim.rpc(signed("GET", job="j-log1"), "GET")
    st, body = sim.ctl("GET", "requests")
    reqs = body["requests"]
    check(st == 200 and len(reqs) == 3, f"3 requests recorded: {body}")
    if len(reqs) != 3:
        return
    r0, r1, r2 = reqs
    check(r0["signature_valid"] is False and r0["status"] == 400 and
          r0["code"] == "SignatureDoesNotMatch", f"bad record {r0}")
    check(r1["signature_valid"] is True and r1["status"] == 200 and
          r1["code"] == "" and r1["params"] == good and
          r1["method"] == "POST" and r1["path"] == "/" and
          r1["query"] == "" and
          r1["content_type"] == "application/x-www-form-urlencoded" and
          abs(r1["received_ms"] - time.time() * 1000) < 60000 and
          "host" in r1["headers"], f"good record {r1}")
    check(r2["method"] == "GET" and r2["query"].startswith("Action=") and
          r2["params"]["JobId"] == "j-log1" and r2["status"] == 404 and
          r2["code"] == "InvalidJobId.NotFound", f"GET record {r2}")
    check(r0["seq"] < r1["seq"] < r2["seq"], "records in order")
    st, body = sim.ctl("GET", f"requests?since={r2['seq']}")
    check(len(body["requests"]) == 1, f"since filter {body}")


def test_jobs_api(sim):
    st, body = sim.ctl("DELETE", "jobs")
    check(st == 204, f"DELETE jobs {st}")
    st, body = sim.ctl("POST", "jobs", {"j-a1": "Ready", "j-b1": "Running"})
    check(st == 200 and body == {"jobs": {"j-a1": "Ready",
                                          "j-b1": "Running"}},
          f"POST jobs {st} {body}")
    st, body = sim.ctl("POST", "jobs", {"j-b1": "Finished"})
    st, body = sim.ctl("GET", "jobs")
    check(body == {"jobs": {"j-a1": "Ready", "j-b1": "Finished"}},
          f"GET jobs {body}")
    check(sim.rpc(signed(job="j-b1"))[0] == 200, "Finished deletable")
    st, body = sim.ctl("GET", "jobs")
    check(body == {"jobs": {"j-a1": "Ready"}}, f"deleted job gone {body}")
    st, body = sim.ctl("POST", "jobs", {"j-c1": 5})
    check(st == 400, f"bad job state refused {st} {body}")


def timed_concurrent(sim, n, params_fn, timeout=10):
    results = [None] * n
    def run(i):
        try:
            results[i] = sim.rpc(params_fn(), timeout=timeout)[0]
        except Exception as e:  # noqa: BLE001 - report any failure
            results[i] = repr(e)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.time() - t0, results


def test_faults(sim):
    sim.ctl("POST", "reset")
    sim.ctl("POST", "jobs", {"j-f1": "Ready"})

    # delay: 40 concurrent requests, 300 ms each, must overlap.
    st, body = sim.ctl("POST", "fault", {"mode": "delay", "delay_ms": 300})
    check(st == 200 and body["mode"] == "delay", f"set delay {st} {body}")
    took, res = timed_concurrent(sim, 40, lambda: signed(job="j-nope"))
    check(all(r == 404 for r in res), f"delayed answers {res}")
    check(0.3 <= took < 3.0, f"40 x 300 ms delays took {took:.2f}s")

    # error with count: only the next request fails.
    sim.ctl("POST", "fault", {"mode": "error", "status": 503,
                              "code": "ServiceUnavailable", "count": 1})
    expect_error(sim, signed(job="j-nope"), 503, "ServiceUnavailable")
    check(sim.rpc(signed(job="j-nope"))[0] == 404, "error count ran out")
    sim.ctl("POST", "fault", {"mode": "error", "status": 400,
                              "code": "Throttling.User"})
    expect_error(sim, signed(job="j-f1"), 400, "Throttling.User")
    expect_error(sim, signed(job="j-f1"), 400, "Throttling.User",
                 what="error until changed")
    st, body = sim.ctl("GET", "jobs")
    check("j-f1" in body["jobs"], "error fault does not delete the job")

    # garbage
    sim.ctl("POST", "fault", {"mode": "garbage", "count": 1})
    st, h, b = sim.rpc(signed(job="j-f1"))
    check(st == 200 and b == b"<html>oops</html>", f"garbage {st} {b!r}")

    # hang: no answer; the client gives up; the sim notices the close.
    sim.ctl("POST", "fault", {"mode": "hang", "count": 1})
    t0 = time.time()
    try:
        sim.rpc(signed(job="j-f1"), timeout=0.7)
        check(False, "hang answered")
    except (socket.timeout, TimeoutError):
        check(time.time() - t0 >= 0.6, "hang timed out early")
    st, stats = sim.ctl("GET", "stats")
    deadline = time.time() + 3
    while stats["pending"] and time.time() < deadline:
        time.sleep(0.05)
        st, stats = sim.ctl("GET", "stats")
    check(stats["pending"] == 0 and stats["abandoned"] >= 1,
          f"hung request freed after client close: {stats}")

    # reset: the client sees a connection reset, no response.
    sim.ctl("POST", "fault", {"mode": "reset", "count": 1})
    try:
        r = sim.rpc(signed(job="j-f1"))
        check(False, f"reset answered {r}")
    except ConnectionResetError:
        pass
    except Exception as e:  # noqa: BLE001
        check(False, f"reset: want ConnectionResetError, got {e!r}")
    # delay combined with reset.
    sim.ctl("POST", "fault", {"mode": "reset", "delay_ms": 200, "count": 1})
    t0 = time.time()
    try:
        sim.rpc(signed(job="j-f1"))
        check(False, "delayed reset answered")
    except ConnectionResetError:
        check(time.time() - t0 >= 0.18, "reset came before the delay")

    # base latency, independent of mode, persistent until changed.
    sim.ctl("POST", "fault", {"latency_ms": 150})
    t0 = time.time()
    st = sim.rpc(signed(job="j-nope"))[0]
    check(st == 404 and time.time() - t0 >= 0.14, "latency applied")
    st, body = sim.ctl("GET", "fault")
    check(body["latency_ms"] == 150 and body["mode"] == "none",
          f"fault state {body}")
    st, body = sim.ctl("POST", "fault", {"mode": "bogus"})
    check(st == 400, f"bad mode refused {st}")
    st, body = sim.ctl("POST", "fault", {"delay": 5})
    check(st == 400, f"unknown key refused {st}")

    # A client closing during a delay must not upset the simulator.
    sim.ctl("POST", "fault", {"latency_ms": 0, "mode": "delay",
                              "delay_ms": 500})
    for _ in range(5):
        try:
            sim.rpc(signed(job="j-nope"), timeout=0.1)
        except (socket.timeout, TimeoutError):
            pass
    time.sleep(0.7)

    # Faulted requests are recorded with what was answered (0 = nothing).
    sim.ctl("POST", "reset")
    for f in ({"mode": "hang", "count": 1}, {"mode": "reset", "count": 1},
              {"mode": "garbage", "count": 1},
              {"mode": "error", "status": 500, "code": "InternalError",
               "count": 1}):
        sim.ctl("POST", "fault", f)
        try:
            sim.rpc(signed(job="j-f1"), timeout=0.5)
        except (OSError, http.client.HTTPException):
            pass
    time.sleep(0.2)
    st, body = sim.ctl("GET", "requests")
    got = [(r["status"], r["code"], r["signature_valid"])
           for r in body["requests"]]
    check(got == [(0, "", True), (0, "", True), (200, "", True),
                  (500, "InternalError", True)], f"faulted records {got}")
    st, body = sim.ctl("GET", "jobs")
    check("j-f1" in body["jobs"], "faults never delete")
    sim.ctl("POST", "reset")
    check(sim.rpc(signed(job="j-f1"))[0] == 200, "normal after reset")


def test_tls(binary, workdir):
    if os.environ.get("SMC_SIM_TLS") == "0" or not shutil.which("openssl"):
        print("skip: TLS")
        return
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", os.path.join(workdir, "key.pem"),
                    "-out", os.path.join(workdir, "cert.pem"), "-days", "1",
                    "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    sim = Sim(binary, workdir, tls=True)
    try:
        st, h, b = sim.rpc(signed(job="j-ready1"))
        check(st == 200, f"TLS delete {st} {b!r}")
        sim.ctl("POST", "fault", {"mode": "reset", "count": 1})
        try:
            sim.rpc(signed(job="j-stop1"))
            check(False, "TLS reset answered")
        except (ConnectionResetError, ssl.SSLError, http.client.HTTPException):
            pass
        sim.ctl("POST", "fault", {"mode": "hang", "count": 1})
        try:
            sim.rpc(signed(job="j-stop1"), timeout=0.3)
        except (socket.timeout, TimeoutError):
            pass
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            with socket.create_connection(("127.0.0.1", sim.port), 5) as s:
                with ctx.wrap_socket(s):
                    check(False, "TLS 1.1 accepted")
        except (ssl.SSLError, OSError):
            pass
    finally:
        rc = sim.stop()
        check(rc == 0, f"TLS simulator exit status {rc}; see {sim.log.name}")


def main():
    binary = os.environ.get("SMC_SIM")
    if not binary or not os.access(binary, os.X_OK):
        print("set SMC_SIM to the smc-sim binary", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="smc-sim-test-")
    test_signer_vector()
    test_self_test(binary)
    sim = Sim(binary, workdir)
    try:
        for t in (test_rpc, test_requests_log, test_jobs_api, test_faults):
            print("--", t.__name__)
            t(sim)
    finally:
        rc = sim.stop()
        check(rc == 0, f"simulator exit status {rc}; see {sim.log.name}")
    print("-- test_tls")
    test_tls(binary, workdir)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed; logs in {workdir}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    print("all simulator checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
